"""An aws profile's own hosts.yml keys, each declared once: its type, default and Kind (no SDK here: config
and the keeper read them without boto3)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ...config.kinds import FLAG, POSITIVE_INT, TEXT, TEXT_MAP
from ...config.schema import key
from ..base import Description, Settings

UBUNTU_IMAGE = "ubuntu-"  # labvm's Ubuntu image aliases (ubuntu-24.04, ...; images.UBUNTU_ALIASES)


@dataclass(frozen=True)
class AwsSettings(Settings):
    """An aws profile's keys, in the order hosts.yml's messages list them, with the defaults labvm uses."""

    region: str = field(default="", metadata=key(TEXT))  # "": boto3's own (AWS_DEFAULT_REGION, ~/.aws/config)
    instance_type: str = field(default="t3.small", metadata=key(TEXT))
    image: str = field(default=UBUNTU_IMAGE + "24.04", metadata=key(TEXT))  # an AMI id, or an Ubuntu alias
    volume_size: int = field(default=30, metadata=key(POSITIVE_INT))  # GB of the root volume
    # persistent spot requests, stopped (not terminated) on interruption
    spot: bool = field(default=False, metadata=key(FLAG))
    elastic_ip: bool = field(default=False, metadata=key(FLAG))  # the head keeps one address across stop and start
    # more tags on everything made
    tags: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), metadata=key(TEXT_MAP))
    ssh_cidr: str = field(default="", metadata=key(TEXT))  # who may reach port 22; "": this laptop's address
    subnet: str = field(default="", metadata=key(TEXT))  # "": the region's default VPC

    @classmethod
    def login(cls, written: Mapping[str, Any]) -> str | None:
        """ubuntu for labvm's Ubuntu image aliases (the login Canonical's images are built with); None for an
        AMI id, whose login only hosts.yml's user: can say."""
        image = str(written.get("image") or cls.image)
        return "ubuntu" if image.startswith(UBUNTU_IMAGE) else None

    def describe(self) -> Description:
        """The instance type, in the region."""
        return Description(self.instance_type, self.region, vm=True, spot=self.spot)
