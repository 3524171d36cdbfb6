"""AWS EC2 profiles on boto3 (imported only in this package, when an aws profile is used).

The instance and everything labvm makes for it carry the tags labvm:profile and labvm:owner: labvm
finds them by tag, never by a local state file.  Credentials come from boto3's own chain (AWS_PROFILE,
~/.aws, environment); none goes to the VM.

`AwsProvider` is the contract's template (cloud.CloudProvider) over these collaborators, one module each:
`settings` (the profile's keys), `names` (names and tags), `api` (the EC2 client, its errors, the mutation
gate's EC2 form, retries, waits), `network` (subnet, group, key pair, Elastic IP), `images` (AMIs),
`head` (the profile's instance), `workers` (a Dask cluster's), `preflight` (`inv check`), `inventory`
(`inv audit`), `price` (what a type costs an hour, and what bills a month).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .settings import AwsSettings

if TYPE_CHECKING:
    from .provider import AwsProvider

__all__ = ["AwsProvider", "AwsSettings"]


def __getattr__(name: str) -> Any:
    """AwsProvider, imported on first use: config reads AwsSettings (the profile's keys) without the parts
    the provider wires, and so without their imports."""
    if name == "AwsProvider":
        from .provider import AwsProvider

        return AwsProvider
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
