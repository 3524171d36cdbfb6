"""A gce profile's own hosts.yml keys, each declared once: its type, default and Kind (no SDK here: config
and the keeper read them without google-cloud-compute)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ...config.kinds import FLAG, POSITIVE_INT, TEXT
from ...config.schema import key
from ..base import Description, Settings


@dataclass(frozen=True)
class GceSettings(Settings):
    """A gce profile's keys, in the order hosts.yml's messages list them, with the defaults labvm uses."""

    project: str = field(default="", metadata=key(TEXT))  # required
    zone: str = field(default="", metadata=key(TEXT))  # required
    machine_type: str = field(default="e2-small", metadata=key(TEXT))
    image_family: str = field(default="debian-12", metadata=key(TEXT))
    image_project: str = field(default="debian-cloud", metadata=key(TEXT))
    disk_size: int = field(default=10, metadata=key(POSITIVE_INT))  # GB of the boot disk
    static_ip: bool = field(default=False, metadata=key(FLAG))  # the head keeps one address across stop and start
    spot: bool = field(default=False, metadata=key(FLAG))  # Spot VMs, stopped (not deleted) when preempted
    ssh_cidr: str = field(default="", metadata=key(TEXT))  # who may reach port 22; "": this laptop's address
    network: str = field(default="", metadata=key(TEXT))  # "": the project's `default` network
    subnetwork: str = field(default="", metadata=key(TEXT))  # "": the network's own (an auto-mode network)

    @classmethod
    def login(cls, written: Mapping[str, Any]) -> str | None:
        """None needed (""): GCE decides the login once the VM exists (its ssh-keys metadata, or OS Login's
        POSIX user)."""
        return ""

    @property
    def region(self) -> str:
        """The zone's region: where addresses, subnetworks and CPU quotas are."""
        return self.zone.rsplit("-", 1)[0]

    def describe(self) -> Description:
        """The machine type, in the zone."""
        return Description(self.machine_type, self.zone, vm=True, spot=self.spot)
