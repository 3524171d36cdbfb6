"""What labvm calls and tags what it makes for one profile and owner on EC2: tags, not a local state file,
are how labvm finds each thing again."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..cloud import NameRules, cloud_name

# EC2: security group names and descriptions in a VPC, rule descriptions (botocore's ec2 service model,
# CreateSecurityGroup GroupName/GroupDescription, IpRange/UserIdGroupPair Description; "a-z, A-Z, 0-9,
# spaces, and ._-:/()#,@[]+=&;{}!$*", 255 characters).  Key pair names accept any ASCII; labvm uses the
# same safe set for them.
EC2_NAME = NameRules(r"a-zA-Z0-9 ._\-:/()#,@\[\]+=&;{}!$*", 255)


def tags_of(resource: dict) -> dict[str, str]:
    """An EC2 resource's tags as a mapping."""
    return {t["Key"]: t["Value"] for t in resource.get("Tags", [])}


@dataclass(frozen=True)
class AwsNames:
    """The names and tags of one profile and owner: lab members sharing a hosts.yml (a class) in one account
    each get their own instances, group and key pairs."""

    profile: str
    owner: str
    extra: Mapping[str, str]  # hosts.yml's tags:, on everything made

    @property
    def labels(self) -> dict[str, str]:
        """The tags labvm finds the profile's resources by."""
        return {"labvm:profile": self.profile, "labvm:owner": self.owner}

    @property
    def name(self) -> str:
        """The head's Name tag: free text to EC2."""
        return f"labvm-{self.profile}"

    @property
    def group(self) -> str:
        """labvm's security group of this profile and owner."""
        return cloud_name(EC2_NAME, "labvm", self.profile, self.owner)

    @property
    def key_prefix(self) -> str:
        """Where the names of this owner's key pairs start (each ends with its key's hash)."""
        return cloud_name(EC2_NAME, "labvm", self.owner) + "-"

    @property
    def data_name(self) -> str:
        """The data volume's Name tag: the head's, with -data (free text to EC2, as the head's is)."""
        return f"{self.name}-data"

    @property
    def data_labels(self) -> dict[str, str]:
        """The tags labvm finds the profile's data volume by: the head's root volume carries the profile's too."""
        return {**self.labels, "labvm:role": "data"}

    @property
    def backup_labels(self) -> dict[str, str]:
        """The tags labvm finds the data volume's backups by: an image's snapshots carry the profile's too."""
        return {**self.labels, "labvm:role": "data-backup"}

    def tag_list(self, name: str | None = None, labels: Mapping[str, str] | None = None) -> list[dict]:
        """The tags of something made, as EC2 takes them: its Name (the head's by default), hosts.yml's, labvm's
        (labels: the profile's and owner's by default)."""
        tags = {"Name": name or self.name, **self.extra, **(labels or self.labels)}
        return [{"Key": str(k), "Value": str(v)} for k, v in tags.items()]

    def filters(self, labels: Mapping[str, str] | None = None) -> list[dict]:
        """DescribeX filters for what carries these tags (this profile's and owner's by default)."""
        return [{"Name": f"tag:{k}", "Values": [v]} for k, v in (labels or self.labels).items()]
