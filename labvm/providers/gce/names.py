"""What labvm calls and labels what it makes for one profile and owner on GCE: the instance, its firewall
rules, its static address and image family carry the profile and the owner, so lab members sharing a
project and a hosts.yml never meet."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..cloud import NameRules, cloud_name

# GCE resource names: RFC 1035, [a-z]([-a-z0-9]{0,61}[a-z0-9])?
# (https://cloud.google.com/compute/docs/naming-resources).
GCE_NAME = NameRules(r"a-z0-9\-", 63, lower=True, first_letter=True)
# GCE label values: lowercase letters, digits, "_" and "-", 63 characters
# (https://cloud.google.com/compute/docs/labeling-resources#requirements).
GCE_LABEL = NameRules(r"a-z0-9_\-", 63, lower=True)
# The instance's name leaves room for its firewall rule's NAME-ssh within GCE's 63 characters.
INSTANCE_NAME = dataclasses.replace(GCE_NAME, limit=GCE_NAME.limit - len("-ssh"))
# labvm's label values keep to the name characters (no "_"): the labels of VMs made before stay the same,
# so they are still found.
LABEL_VALUE = dataclasses.replace(GCE_LABEL, allowed=GCE_NAME.allowed)
# The label a restored data disk carries: the name of the backup (snapshot) it was made from.
RESTORED_FROM = "labvm-restored-from"
# The role a replaced data disk takes (restore): no longer found as the data disk, kept until the user deletes it.
REPLACED = "data-replaced"


@dataclass(frozen=True)
class GceNames:
    """The names and labels of one profile and owner.  The owner is kept as a label value (`owner`): a name
    that had to change (`Hedy.Lamarr`) is folded once, and every name is made from the folded one."""

    profile: str
    given_owner: str  # LABVM_OWNER or the login, as given

    @property
    def owner(self) -> str:
        """The owner as its label holds it."""
        return cloud_name(LABEL_VALUE, self.given_owner)

    @property
    def labels(self) -> dict[str, str]:
        """The labels labvm finds the profile's instances, addresses and images by."""
        return {"labvm-profile": cloud_name(LABEL_VALUE, self.profile), "labvm-owner": self.owner}

    @property
    def name(self) -> str:
        """The head's name, and its static address's."""
        return cloud_name(INSTANCE_NAME, "labvm", self.profile, self.owner)

    @property
    def rule(self) -> str:
        """The SSH firewall rule, and the network tag of the head and its workers."""
        return f"{self.name}-ssh"

    @property
    def cluster_rule(self) -> str:
        """The firewall rule between the cluster's machines."""
        return cloud_name(GCE_NAME, self.name, "dask")

    @property
    def family(self) -> str:
        """The image family of the profile's images."""
        return cloud_name(GCE_NAME, "labvm", self.profile, self.owner)

    @property
    def data_disk(self) -> str:
        """The data disk's name (hosts.yml data:), and the device name the guest sees it by: the head's + "-data"."""
        return cloud_name(GCE_NAME, self.name, "data")

    @property
    def data_labels(self) -> dict[str, str]:
        """The data disk's labels: the profile's, and its role (the head carries none, a worker "worker")."""
        return {**self.labels, "labvm-role": "data"}

    def restored_disk(self, stamp: str) -> str:
        """A data disk restored from a backup: the data disk's name and when it was made (cloud.backup_stamp), as a
        disk name is unique in its zone and the disk it replaces is kept there (a second insert is 409
        alreadyExists).  It is also the device name the guest sees it by (volumes.attach)."""
        return cloud_name(GCE_NAME, self.data_disk, stamp)

    def restored_labels(self, backup: str) -> dict[str, str]:
        """A restored data disk's labels: the data disk's, and the backup it was made from.  A snapshot's name is a
        label value as it is: RFC 1035 names (lowercase letters, digits, "-", at most 63) are within the label
        values' rules (lowercase letters, digits, "_", "-", at most 63)."""
        return {**self.data_labels, RESTORED_FROM: backup}

    def backup(self, stamp: str) -> str:
        """A backup of the data disk: a snapshot named after the disk and when it was taken (cloud.backup_stamp),
        as snapshot names are unique in the project (a second insert of one is 409 alreadyExists)."""
        return cloud_name(GCE_NAME, self.name, "data", stamp)

    @property
    def backup_labels(self) -> dict[str, str]:
        """A backup's labels: the profile's, and its role (its disk's is "data")."""
        return {**self.labels, "labvm-role": "data-backup"}

    def image(self, name: str, stamp: str) -> str:
        """An image's name."""
        return cloud_name(GCE_NAME, name, self.profile, self.owner, stamp)

    def worker(self, index: int) -> str:
        """Worker `index`'s name."""
        return cloud_name(GCE_NAME, "labvm", self.profile, self.owner, f"w{index}")

    def worker_labels(self, index: int) -> dict[str, str]:
        """Worker `index`'s labels: the profile's, and which cluster, role and index it has."""
        labels = self.labels
        return {**labels, "labvm-cluster": labels["labvm-profile"], "labvm-role": "worker", "labvm-index": str(index)}

    def filter(self, labels: dict[str, str] | None = None) -> str:
        """A list filter for what carries these labels (the profile's by default).  Several terms must each be
        in parentheses: the bare `a = "x" AND b = "y"` is a 400
        (https://cloud.google.com/compute/docs/reference/rest/v1/instances/list, `filter`)."""
        return " AND ".join(f'(labels.{k} = "{v}")' for k, v in (labels or self.labels).items())
