"""OpenStack profiles (CADES) on openstacksdk (imported only in this package, when such a profile is used).

Credentials and endpoints come only from openstacksdk's clouds.yaml / OS_CLOUD
(`openstack.connect(cloud=...)`, `cloud: envvars` for an openrc's OS_* variables); labvm stores
no password.  The server carries the metadata labvm:profile and labvm:owner and is found by it,
never by local state; its name, security group, key pair and floating IP carry the owner too,
so several lab members can share one profile in one project.

Every call that changes the project passes `mutate` (the --plan gate); under --plan what it would
make is a stand-in whose id is PLANNED, and nothing is ever read by that id.

`OpenStackProvider` is the contract's template (cloud.CloudProvider) over these collaborators, one module
each: `settings`, `names`, `api` (connection, errors, waits, --plan stand-ins), `network` (group, key pair,
floating IPs), `images`, `head` (the profile's server), `workers` (a Dask cluster's servers), `preflight`
(`inv check`), `inventory` (`inv audit`).  OpenStack publishes no prices: hosts.yml's price_per_hour:
gives one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .settings import OpenStackSettings

if TYPE_CHECKING:
    from .provider import OpenStackProvider

__all__ = ["OpenStackProvider", "OpenStackSettings"]


def __getattr__(name: str) -> Any:
    """OpenStackProvider, imported on first use: config reads OpenStackSettings (the profile's keys) without the parts
    the provider wires, and so without their imports."""
    if name == "OpenStackProvider":
        from .provider import OpenStackProvider

        return OpenStackProvider
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
