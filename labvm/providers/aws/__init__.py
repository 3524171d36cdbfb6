"""AWS EC2 profiles on boto3 (imported only here, when an aws profile is used).

The instance and everything labvm makes for it carry the tags labvm:profile and
labvm:owner: labvm finds them by tag, never by a local state file.  Credentials come
from boto3's own chain (AWS_PROFILE, ~/.aws, environment); none goes to the VM.

One module per seam: `core` (client, errors, the mutation gate's EC2 form, retries), `lifecycle`
(the head and its images), `network` (group, key pair, Elastic IP), `workers` (a Dask cluster's),
`preflight` (`inv check`), `inventory` (`inv audit`), `price` (what a type costs an hour).
"""

from .core import AwsError
from .inventory import Inventory
from .lifecycle import Lifecycle
from .network import Networking
from .preflight import Preflight
from .price import Price
from .workers import Workers

__all__ = ["AwsError", "AwsProvider"]


class AwsProvider(Lifecycle, Workers, Networking, Preflight, Inventory, Price):
    """The provider of aws profiles: each verb of the contract from the part that does it."""
