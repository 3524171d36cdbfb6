"""GPU instance types as EC2 describes them: which types carry NVIDIA GPUs (DescribeInstanceTypes' GpuInfo),
the image with NVIDIA's driver a GPU type starts from when hosts.yml names none, whether a named image looks
like one, and the zones that offer a type when EC2 has no capacity for it."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..base import Shown, from_cloud
from .api import AwsError, Ec2Api

# AWS's Deep Learning Base OSS Nvidia Driver GPU AMI, by its public SSM parameter: "the parameter name format is
# /aws/service/deeplearning/ami/$architecture/$ami_type/latest/ami-id ... architecture can be either x86_64 or
# arm64 ... the ami_type by taking the DLAMI name and removing the keywords 'deep', 'learning', and 'ami'"
# (https://docs.aws.amazon.com/dlami/latest/devguide/find-dlami-id.html; the name "Deep Learning Base OSS Nvidia
# Driver GPU AMI (Ubuntu 24.04)", and its ARM64 sibling for G5g, from the DLAMI release notes,
# https://docs.aws.amazon.com/dlami/latest/devguide/appendix-ami-release-notes.html).  Its login is ubuntu.
DRIVER_IMAGE = "/aws/service/deeplearning/ami/{arch}/base-oss-nvidia-driver-gpu-ubuntu-{release}/latest/ami-id"
# A guess from DescribeImages' Name and Description (EC2 says nothing of an image's drivers): the Deep Learning
# AMIs' names ("Deep Learning ...", "... DLAMI ...") and images that name NVIDIA or CUDA.
DRIVER_WORDS = re.compile(r"deep learning|dlami|nvidia|cuda", re.IGNORECASE)


@dataclass(frozen=True)
class GpuSize(Shown):
    """An instance type's GPUs as DescribeInstanceTypes' GpuInfo gives them
    (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_GpuInfo.html, API_GpuDeviceInfo.html), its text
    cleaned (Shown)."""

    instance_type: str
    gpus: tuple[str, ...]  # each GPU model once per card: ("NVIDIA T4",)
    memory_mib: int  # each card's memory
    arch: str  # the DLAMI parameter's architecture: x86_64 or arm64

    @property
    def nvidia(self) -> bool:
        """Cards NVIDIA's driver runs (the driver AMI is for those; AMD's and Habana's are not)."""
        return any(gpu.startswith("NVIDIA ") for gpu in self.gpus)

    def words(self) -> str:
        """'1 NVIDIA T4 (16 GiB)': what `check` says of the type's GPUs."""
        names = sorted(set(self.gpus))
        return f"{len(self.gpus)} {' + '.join(names)} ({self.memory_mib / 1024:.0f} GiB)"


class Gpus:
    """The GPUs of instance types, asked of EC2 once per type."""

    def __init__(self, api: Ec2Api):
        self.api = api
        self.known: dict[str, GpuSize | None] = {}

    def of(self, instance_type: str) -> GpuSize | None:
        """The type's GPUs; None for a type without any."""
        if instance_type not in self.known:
            self.known[instance_type] = self._asked(instance_type)
        return self.known[instance_type]

    def _asked(self, instance_type: str) -> GpuSize | None:
        try:
            (found,) = self.api.read("describe_instance_types", InstanceTypes=[instance_type])["InstanceTypes"]
        except AwsError as e:
            if "InvalidInstanceType" not in e.code:
                raise
            return None  # no such type: the size check and RunInstances say so, with the names EC2 has
        info = found.get("GpuInfo") or {}
        cards = tuple(
            f"{gpu.get('Manufacturer', '')} {gpu.get('Name', '')}"
            for gpu in info.get("Gpus", [])
            for _ in range(int(gpu.get("Count", 0)))
        )
        if not cards:
            return None
        memory = max(int((gpu.get("MemoryInfo") or {}).get("SizeInMiB", 0)) for gpu in info["Gpus"])
        archs = (found.get("ProcessorInfo") or {}).get("SupportedArchitectures", [])
        return GpuSize(instance_type, cards, memory, "arm64" if "arm64" in archs else "x86_64")

    def driver_image(self, size: GpuSize, release: str) -> str:
        """The AMI id of the Deep Learning Base OSS Nvidia Driver GPU AMI for the type's architecture."""
        name = DRIVER_IMAGE.format(arch=size.arch, release=release)
        ssm = self.api.client("ssm")
        return self.api.call(ssm.get_parameter, Name=name)["Parameter"]["Value"]

    def zones_offering(self, instance_type: str) -> list[str]:
        """The region's availability zones that offer the type, as EC2 says (DescribeInstanceTypeOfferings)."""
        offered = self.api.read(
            "describe_instance_type_offerings",
            LocationType="availability-zone",
            Filters=[{"Name": "instance-type", "Values": [instance_type]}],
        )["InstanceTypeOfferings"]
        return sorted({from_cloud(o["Location"]) for o in offered})


def has_driver_by_name(image: dict) -> bool:
    """Whether DescribeImages' Name or Description suggests NVIDIA's driver (DRIVER_WORDS): a heuristic."""
    return bool(DRIVER_WORDS.search(f"{image.get('Name', '')} {image.get('Description', '')}"))


def no_capacity(error: AwsError, gpus: Gpus, instance_type: str, zone: str, step: str) -> AwsError:
    """EC2's InsufficientInstanceCapacity with the zones of the region that offer the type (asked of EC2) and
    `step`, the way to one of them; any other error as it was."""
    if error.code != "InsufficientInstanceCapacity":
        return error
    try:
        others = [z for z in gpus.zones_offering(instance_type) if z != zone]
    except AwsError:  # the refusal still says what happened; the zones were only the next step
        return error
    if not others:
        return AwsError(f"{error}; no other zone of {gpus.api.scope} offers {instance_type}", error.code)
    return AwsError(f"{error}; {instance_type} is offered in {', '.join(others)}: {step}", error.code)
