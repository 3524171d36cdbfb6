"""What labvm calls and labels what it makes for one profile and owner on OpenStack: the server, its
security group, key pair and floating IP carry the owner too, so lab members share a profile and a project."""

from __future__ import annotations

from dataclasses import dataclass

from ...config.member import shown
from ..cloud import NameRules, cloud_name

# Nova key pairs at the microversion openstacksdk sends (2.10): ^[_\- a-zA-Z0-9]+$, 255 characters
# (nova/api/openstack/compute/schemas/keypairs.py, create_v210; "." and "@" only from 2.92).
NOVA_KEYPAIR = NameRules(r"_\- a-zA-Z0-9", 255)
# Server, security group and floating IP description: Nova and Neutron take any printable text of 255;
# labvm keeps to letters, digits, "._-:+" so the names stay plain on every command line.
OPENSTACK_NAME = NameRules(r"a-zA-Z0-9._\-:+", 255)


@dataclass(frozen=True)
class OpenStackNames:
    """The names and labels of one profile and owner."""

    profile: str
    owner: str

    @property
    def labels(self) -> dict[str, str]:
        """The metadata labvm finds the profile's servers, images and volumes by."""
        return {"labvm:profile": self.profile, "labvm:owner": self.owner}

    @property
    def name(self) -> str:
        """The head's name, and labvm's security group's."""
        return cloud_name(OPENSTACK_NAME, "labvm", self.profile, self.owner)

    @property
    def data_name(self) -> str:
        """The data volume's name (hosts.yml data:): the head's, then -data."""
        return cloud_name(OPENSTACK_NAME, self.name, "data")

    @property
    def data_labels(self) -> dict[str, str]:
        """The data volume's metadata: the profile's, and its role, which tells it from the boot volume (labelled
        with the profile's too, head.boot)."""
        return {**self.labels, "labvm:role": "data"}

    def backup_name(self, stamp: str) -> str:
        """A backup's name (`inv data --backup`): the data volume's, then the stamp that tells backups apart."""
        return cloud_name(OPENSTACK_NAME, self.data_name, stamp)

    def restored_name(self, stamp: str) -> str:
        """A restored data volume's name (`inv data --restore`): the data volume's, then "restored" and the stamp,
        so it never reads as the volume it replaces, which stays until the user deletes it."""
        return cloud_name(OPENSTACK_NAME, self.data_name, "restored", stamp)

    @property
    def replaced_labels(self) -> dict[str, str]:
        """A data volume a restore replaced: no longer the data role, still the profile's (audit lists it)."""
        return {**self.labels, "labvm:role": "data-replaced"}

    def restored_labels(self, backup_id: str) -> dict[str, str]:
        """A restored data volume's metadata: the data volume's, and the backup it was made from, by which a
        restore stopped halfway is found and finished, never made twice."""
        return {**self.data_labels, "labvm:restored-from": backup_id}

    @property
    def backup_labels(self) -> dict[str, str]:
        """A backup's metadata: the profile's, and its role, which tells it from the Cinder snapshots behind a
        labvm image of a boot-from-volume server (images.make labels those with the profile's only)."""
        return {**self.labels, "labvm:role": "data-backup"}

    def worker(self, index: int) -> str:
        """Worker `index`'s name."""
        return cloud_name(OPENSTACK_NAME, self.name, f"w{index}")

    def worker_labels(self, index: int) -> dict[str, str]:
        """Worker `index`'s metadata: the profile's, and which cluster, role and index it has."""
        return {**self.labels, "labvm:cluster": self.profile, "labvm:role": "worker", "labvm:index": str(index)}

    def ip_tag(self, metadata: dict) -> str:
        """A floating IP's description: labvm:<profile>:<owner>, for a worker labvm:<profile>+w<index>:<owner>
        (Neutron takes any description of 255 characters; audit reads profile and owner back from it)."""
        member = self.profile
        if metadata.get("labvm:role") == "worker":
            member = shown(member, metadata.get("labvm:index"))
        return f"labvm:{member}:{self.owner}"
