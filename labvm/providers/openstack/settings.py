"""An openstack profile's own hosts.yml keys, each declared once: its type, default and Kind (no SDK here:
config and the keeper read them without openstacksdk)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ...config.kinds import POSITIVE_INT, TEXT, TEXT_LIST, one_of
from ...config.schema import key
from ..base import Description, Settings


@dataclass(frozen=True)
class OpenStackSettings(Settings):
    """An openstack profile's keys, in the order hosts.yml's messages list them, with the defaults labvm uses.
    Its login is the image's, which only hosts.yml's user: says (Settings.login)."""

    cloud: str = field(default="", metadata=key(TEXT))  # the clouds.yaml entry; "": OS_CLOUD's
    image: str = field(default="", metadata=key(TEXT))  # a Glance image's name or id
    flavor: str = field(default="m1.small", metadata=key(TEXT))
    # GB of a boot volume; 0: the server boots from the image's own disk
    volume_size: int = field(default=0, metadata=key(POSITIVE_INT))
    network: str = field(default="", metadata=key(TEXT))
    # "": no floating IP (the fixed address is reached, e.g. over a VPN)
    floating_ip_pool: str = field(default="", metadata=key(TEXT))
    # the project's groups, besides labvm's own
    security_groups: tuple[str, ...] = field(default=(), metadata=key(TEXT_LIST))
    # or "shelve": the host freed (the disk stays)
    stop_action: str = field(default="stop", metadata=key(one_of("stop", "shelve")))
    ssh_cidr: str = field(default="", metadata=key(TEXT))  # who may reach port 22; "": anywhere

    @property
    def entry(self) -> str:
        """The clouds.yaml entry the profile's credentials come from."""
        return self.cloud or os.environ.get("OS_CLOUD", "")

    def describe(self) -> Description:
        """The flavor, in the clouds.yaml entry."""
        return Description(self.flavor, self.entry, vm=True)
