"""OpenStack profiles (CADES) on openstacksdk (imported only in this package, when such a profile is used).

Credentials and endpoints come only from openstacksdk's clouds.yaml / OS_CLOUD
(`openstack.connect(cloud=...)`, `cloud: envvars` for an openrc's OS_* variables); labvm stores
no password.  The server carries the metadata labvm:profile and labvm:owner and is found by it,
never by local state; its name, security group, key pair and floating IP carry the owner too,
so several lab members can share one profile in one project.

Every call that changes the project passes `mutate` (the --plan gate); under --plan what it would
make is a stand-in whose id is PLANNED, and nothing is ever read by that id.

The provider is split along its seams: common (connection, errors, waits, --plan stand-ins),
lifecycle (the head and its images), network (group, key pair, floating IPs), workers (a Dask
cluster's servers), preflight (`inv check`), inventory (`inv audit`).
"""

from __future__ import annotations

from .inventory import Inventory
from .lifecycle import Lifecycle
from .network import Network
from .preflight import Preflight
from .workers import Workers

__all__ = ["OpenStackProvider"]


class OpenStackProvider(Lifecycle, Network, Workers, Preflight, Inventory):
    """An OpenStack profile: the contract of base.Provider on Nova, Neutron, Glance and Cinder."""

    # OpenStack publishes no prices: price_per_hour stays the contract's None; hosts.yml's price_per_hour:
    # gives one.  The flavor and the clouds.yaml entry name what it is priced for.
    def size(self) -> str:
        return str(self.settings.get("flavor") or "m1.small")

    def where(self) -> str:
        return self.entry
