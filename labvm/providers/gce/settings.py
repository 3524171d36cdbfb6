"""A gce profile's own hosts.yml keys, each declared once: its type, default and Kind (no SDK here: config
and the keeper read them without google-cloud-compute)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ...config.kinds import FLAG, POSITIVE_INT, TEXT, Kind
from ...config.schema import key
from ..base import Description, Settings


@dataclass(frozen=True)
class GpuSpec:
    """gpu: GPUs attached to an N1 machine type (instances.insert's guestAccelerators); the accelerator-optimized
    types (a2, a3, g2) carry their own and take none."""

    type: str  # an accelerator type of the zone, e.g. nvidia-tesla-t4
    count: int


GPU_KEYS = (("type", TEXT), ("count", POSITIVE_INT))


def _gpu_problem(value: Any) -> str:
    """gpu: a mapping of type (required) and count (1 if left out)."""
    if not isinstance(value, dict) or set(value) - {"type", "count"} or "type" not in value:
        return f"must be a mapping like {{type: nvidia-tesla-t4, count: 1}} (count 1 if left out), not {value!r}"
    problems = (
        f"{name} {kind.check(value[name])}" for name, kind in GPU_KEYS if name in value and kind.check(value[name])
    )
    return next(problems, "")


GPU = Kind(_gpu_problem)


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
    # GPUs attached to an N1 type ({type: nvidia-tesla-t4, count: 1}); {}: the machine type's own GPUs only
    gpu: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), metadata=key(GPU))

    @classmethod
    def login(cls, written: Mapping[str, Any]) -> str | None:
        """None needed (""): GCE decides the login once the VM exists (its ssh-keys metadata, or OS Login's
        POSIX user)."""
        return ""

    @property
    def accelerator(self) -> GpuSpec | None:
        """gpu: as its type and count; None without it."""
        if not self.gpu:
            return None
        return GpuSpec(self.gpu["type"], int(self.gpu.get("count") or 1))

    @property
    def region(self) -> str:
        """The zone's region: where addresses, subnetworks and CPU quotas are."""
        return self.zone.rsplit("-", 1)[0]

    def describe(self) -> Description:
        """The machine type, in the zone."""
        return Description(self.machine_type, self.zone, vm=True, spot=self.spot)
