"""A VM's GPUs: those its machine type carries (A2, A3, G2), those `gpu:` attaches to an N1 type, checked against
the zone's acceleratorTypes; the quota each draws from; the image with the NVIDIA driver; the zones that offer one."""

from __future__ import annotations

from typing import Any

from ...config import Profile
from ...errors import LabvmError
from ..base import from_cloud
from ..cloud import unknown
from .api import GceApi
from .settings import GceSettings

# Only N1 machine types take GPUs through guestAccelerators; the accelerator-optimized types carry theirs
# (https://cloud.google.com/compute/docs/gpus: "GPUs for N1 general-purpose machine types", "accelerator-optimized
# machine types have a fixed number of GPUs attached").
ATTACHABLE_SERIES = ("n1",)
# The Deep Learning VM images with the NVIDIA driver and CUDA, newest of the family
# (https://cloud.google.com/deep-learning-vm/docs/images: "common-cu<CUDA>-<os>-nvidia-<driver>", the driver in the
# image; the Debian 11 families ended with Debian 11's support; this family as `gcloud compute instances create
# --image-family=common-cu129-ubuntu-2404-nvidia-580 --image-project=deeplearning-platform-release` is used in
# public deployment scripts); install-nvidia-driver=True makes the image check the driver at first boot
# (https://cloud.google.com/deep-learning-vm/docs/cli: --metadata="install-nvidia-driver=True").
DRIVER_IMAGE_PROJECT = "deeplearning-platform-release"
DRIVER_IMAGE_FAMILY = "common-cu129-ubuntu-2404-nvidia-580"
DRIVER_METADATA = {"install-nvidia-driver": "True"}
# The regional quota each GPU model counts against, Spot VMs against its PREEMPTIBLE_ one where the region grants
# it; every GPU also against the project's GPUS_ALL_REGIONS (https://cloud.google.com/compute/resource-usage#gpu_quota).
GPU_QUOTA = {
    "nvidia-tesla-t4": "NVIDIA_T4_GPUS",
    "nvidia-l4": "NVIDIA_L4_GPUS",
    "nvidia-tesla-a100": "NVIDIA_A100_GPUS",
    "nvidia-a100-80gb": "NVIDIA_A100_80GB_GPUS",
    "nvidia-h100-80gb": "NVIDIA_H100_GPUS",
    "nvidia-h100-mega-80gb": "NVIDIA_H100_MEGA_GPUS",
    "nvidia-tesla-v100": "NVIDIA_V100_GPUS",
    "nvidia-tesla-p100": "NVIDIA_P100_GPUS",
    "nvidia-tesla-p4": "NVIDIA_P4_GPUS",
}
ALL_REGIONS = "GPUS_ALL_REGIONS"


def gpu_quota(accelerator_type: str, spot: bool = False, granted: frozenset[str] = frozenset()) -> str:
    """The regional quota metric a GPU of this type draws from; on spot, its preemptible one where granted."""
    metric = GPU_QUOTA.get(accelerator_type, f"{accelerator_type.upper().replace('-', '_')}_GPUS")
    return f"PREEMPTIBLE_{metric}" if spot and f"PREEMPTIBLE_{metric}" in granted else metric


class Gpus:
    """The GPUs of the profile's machines, as GCE answers them."""

    def __init__(self, api: GceApi, settings: GceSettings, profile: Profile):
        self.api, self.settings, self.profile = api, settings, profile
        self._own: dict[str, list[tuple[str, int]]] = {}  # a machine type's GPUs, asked once

    def carried(self, machine_type: str, head: bool = True) -> list[tuple[str, int]]:
        """(accelerator type, count) of a machine: its machine type's own (machineTypes.get accelerators, names
        cleaned), and for the head the profile's gpu:."""
        if machine_type not in self._own:
            found = self.api.get_or_none(
                self.api.machine_types.get, project=self.api.project, zone=self.api.zone, machine_type=machine_type
            )
            accelerators = found.accelerators if found else []
            self._own[machine_type] = [
                (from_cloud(a.guest_accelerator_type), int(a.guest_accelerator_count)) for a in accelerators
            ]
        gpu = self.settings.accelerator
        return self._own[machine_type] + ([(gpu.type, gpu.count)] if head and gpu else [])

    def check(self, machine_type: str) -> None:
        """gpu: goes on an N1 type only, names an accelerator type of the zone, and no more of them than one VM
        takes (acceleratorTypes.get maximumCardsPerInstance)."""
        gpu = self.settings.accelerator
        if gpu is None:
            return
        key = self.profile.key("gpu")
        if machine_type.split("-", 1)[0] not in ATTACHABLE_SERIES:
            raise LabvmError(
                f"{key}: GCE attaches GPUs to N1 machine types only, not {machine_type}; use an n1-standard-* "
                "machine_type, or an accelerator-optimized one (a2, a3, g2) without gpu:"
            )
        found = self.api.get_or_none(
            self.api.accelerator_types.get, project=self.api.project, zone=self.api.zone, accelerator_type=gpu.type
        )
        if found is None:
            raise unknown(
                f"{key}.type",
                f"accelerator type in {self.api.zone}",
                gpu.type,
                [t.name for t in self._zone_types()],
                f"gcloud compute accelerator-types list --filter zone:{self.api.zone}",
            )
        if gpu.count > found.maximum_cards_per_instance:
            raise LabvmError(
                f"{key}.count: {gpu.type} comes {found.maximum_cards_per_instance} at most to a VM in "
                f"{self.api.zone}, not {gpu.count}; set count to 1, 2, 4 or 8 up to that"
            )

    def guest_accelerators(self) -> list[Any]:
        """instances.insert's guestAccelerators for gpu: (none without it)."""
        gpu = self.settings.accelerator
        if gpu is None:
            return []
        compute = self.api.compute
        link = f"zones/{self.api.zone}/acceleratorTypes/{gpu.type}"
        return [compute.AcceleratorConfig(accelerator_type=link, accelerator_count=gpu.count)]

    def driver_image(self, machine_type: str) -> tuple[str, str] | None:
        """(image project, family) of the Deep Learning VM image for a GPU machine whose profile chose no image (names
        neither image_family nor image_project: their defaults are Debian's)."""
        written = {"image_family", "image_project"} & set(self.profile.cloud_settings)
        if written or not self.carried(machine_type):
            return None
        return DRIVER_IMAGE_PROJECT, DRIVER_IMAGE_FAMILY

    def zones_offering(self, accelerator_type: str) -> list[str]:
        """The zones of the profile's region that offer this accelerator type (acceleratorTypes.aggregatedList)."""
        request = self.api.compute.AggregatedListAcceleratorTypesRequest(
            project=self.api.project, filter=f"name = {accelerator_type}"
        )
        zones = []
        for scope, listed in self.api.call(self.api.accelerator_types.aggregated_list, request=request):
            zone = scope.rsplit("/", 1)[-1]
            if zone.rsplit("-", 1)[0] == self.api.region and any(
                t.name == accelerator_type for t in listed.accelerator_types
            ):
                zones.append(from_cloud(zone))
        return sorted(zones)

    def capacity_hint(self) -> str:
        """The next step when the zone has no capacity for a GPU machine: the region's zones that offer its GPU."""
        carried = self.carried(self.settings.machine_type)
        if not carried:
            return ""
        accelerator_type = carried[0][0]
        others = [z for z in self.zones_offering(accelerator_type) if z != self.api.zone]
        if not others:
            return f"; no other zone of {self.api.region} offers {accelerator_type}"
        return f"; zones of {self.api.region} that offer {accelerator_type}: {', '.join(others)}"

    def _zone_types(self) -> list[Any]:
        return list(self.api.call(self.api.accelerator_types.list, project=self.api.project, zone=self.api.zone))
