"""Google Compute Engine profiles on google-cloud-compute (imported only here: it takes 1.5 s).

Credentials are Google Application Default Credentials only.  The instance carries the
labels labvm-profile and labvm-owner and is found by them; its name, its firewall rule and its
static address carry both too, so lab members sharing a project and a hosts.yml never meet.
Every change goes through `mutate` (the --plan gate); long operations are waited through our own
operation clients, built with the same options (ExtendedOperation.result() would poll through a
client that ignores a custom endpoint).  LABVM_GCE_ENDPOINT (an emulator on this machine, anonymous)
serves Compute and the other Google APIs labvm calls (OAuth tokeninfo, OS Login, Resource Manager)
at one address.

One module per seam, each a part of GceProvider: `api` (clients, credentials, call, waits, names),
`lifecycle` (the head VM and its images), `network` (network, SSH rule, static IP), `oslogin`,
`workers` (a Dask cluster's VMs), `preflight` (`inv check`, quota by machine family), `inventory` (`inv audit`), `price` (the billing catalog).
"""

from .api import loopback_endpoint
from .inventory import Inventory
from .lifecycle import Lifecycle
from .network import Network
from .oslogin import OsLogin
from .preflight import Preflight
from .price import Price
from .workers import Workers

__all__ = ["GceProvider", "loopback_endpoint"]


class GceProvider(Lifecycle, Workers, Network, Price, OsLogin, Preflight, Inventory):
    """A GCE profile: the head VM, its workers, network and login, `inv check` and `inv audit`, one module each."""
