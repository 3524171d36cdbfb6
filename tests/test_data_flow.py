"""Issue 29's whole flow on each cloud's test world, through `inv` as a user types it: a profile with
`data: {size: 1}` gets its volume, keeps a file through terminate and a new `up`, backs it up, grows it,
restores it, and deletes it.

The clouds: OpenStack on the stateful fake (tests/fake_openstack.py), AWS on moto's EC2 server in this process
(tests/aws_world.py), GCE on its fake (tests/fake_gce.py).  "The VM" is a real sshd on loopback pinned by
`address:` whose login may `sudo -n` (the cloud image's default user may), so data.sh runs as root for real:
mkfs, blkid, mount, resize2fs on a loop device.  The `Guest` plays the VM's kernel and udev: each data volume
is a loop device over a sparse file here, named in /dev/disk/by-id as the cloud's guest names it
(virtio-<first 20 characters of the Cinder id>, nvme-Amazon_Elastic_Block_Store_vol<id>, google-<disk name>)
while the cloud says it is attached, grown when the cloud grows it, and a backup is a copy of the volume's file
when the cloud takes the snapshot.  The VM's fstab is a copy (sshd's SetEnv gives the login LABVM_DATA_FSTAB).
What differs by cloud stays asserted: OpenStack deletes a volume's backups with it (terminate --delete-data
needs --force), EBS and Persistent Disk keep a last backup.  Whatever the test did, every mount, loop device,
link and sudo rule is undone.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import urllib.request
from pathlib import Path
from typing import Callable, NamedTuple

import openstack
import pytest
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import compute_v1
from moto.ec2.models.elastic_block_store import Snapshot

from aws_world import REGION, aws_env
from fake_openstack import FakeOpenStack
from gce_world import ZONE as GCE_ZONE
from gce_world import Clients, fake_gce_for
from moto_ec2_rules import SizeAtSnapshot, Watched
from realhost import Sshd, ssh_profile
from realhost import notebook_answers as answers

SERIAL = 20  # what the guest sees of a Cinder volume id (labvm.providers.openstack.volumes.SERIAL)
BY_ID = Path("/dev/disk/by-id")
GIB = 1 << 30  # Cinder's "GB" is GiB (cinder/volume/drivers: size * units.Gi)
FIRST_LINES = "# /etc/fstab of the test VM\nproc /proc proc defaults 0 0\n"
MARK = "x-labvm.data"
ALIAS = "labvm-cades"  # what `ssh` calls the profile's VM once `inv up` wrote the ssh config


def _why_not() -> str:
    """Why this machine cannot play the VM's block devices ("" when it can)."""
    if os.geteuid() != 0:
        return "loop devices, mount and a sudo rule need root: run bin/test as root"
    if not Path("/dev/loop-control").exists():
        return "no /dev/loop-control: this kernel or container gives no loop devices"
    missing = [tool for tool in ("sudo", "losetup", "mkfs.ext4", "blkid", "wipefs", "findmnt", "flock", "resize2fs")]
    missing = [tool for tool in missing if not shutil.which(tool)]
    if missing:
        return f"{', '.join(missing)} not installed (bin/test installs them as root)"
    return ""


pytestmark = pytest.mark.skipif(bool(_why_not()), reason=_why_not() or "a VM's block devices can be played here")


def _may_resize() -> bool:
    """This process holds CAP_SYS_RESOURCE (capability 24): ext4's online resize needs it, and the sshd this
    test starts, so data.sh under sudo, holds what this process holds."""
    effective = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("CapEff:"))
    return bool(int(effective.split()[1], 16) >> 24 & 1)


def _mounts_of(device: str) -> list[str]:
    found = subprocess.run(["findmnt", "-n", "-r", "-S", device, "-o", "TARGET"], capture_output=True, text=True)
    return found.stdout.splitlines()


def _probe(device: str) -> dict:
    out = subprocess.run(["blkid", "-p", "-o", "export", device], capture_output=True, text=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def _df_size(folder: Path) -> int:
    """The mounted filesystem's size in bytes, as df says it."""
    out = subprocess.run(["df", "-P", "-B1", str(folder)], capture_output=True, text=True, check=True).stdout
    return int(out.splitlines()[1].split()[1])


class Guest:
    """The VM's kernel and udev, as far as the profile's data volumes go.  Its cloud's eyes (below) tell it each
    volume and snapshot the moment the cloud changes one, in the cloud's server thread, before the answer that
    shows the change leaves: the guest has seen it before labvm, waiting on that answer, goes on: no watcher
    racing the test, no sleep.  What differs by cloud is only the name the guest's udev gives a volume
    (`name_of`) and how the guest learns of changes."""

    def __init__(self, folder: Path, name_of: Callable[[str], str]):
        self.folder, self.name_of = folder, name_of
        self.devices: dict[str, str] = {}  # volume id -> its loop device
        self.snapshots: dict[str, Path] = {}  # snapshot id -> the copy of its volume's file when it was taken
        self.links: list[Path] = []
        self.made_folders: list[Path] = []  # /dev/disk and /dev/disk/by-id, where this container had none
        self.problems: list[str] = []  # what went wrong inside the cloud's thread (raised there, it is a 500)

    def install(self) -> None:
        for folder in (BY_ID.parent, BY_ID):
            if not folder.exists():
                folder.mkdir()
                self.made_folders.append(folder)

    def told(self, look: Callable[..., None], *what) -> None:
        """`look(*what)`, its failure said by the test, not lost in the cloud's 500."""
        try:
            look(*what)
        except Exception as e:
            self.problems.append(f"{type(e).__name__}: {e}")
            raise

    def image(self, volume_id: str) -> Path:
        return self.folder / f"{volume_id}.img"

    def link(self, volume_id: str) -> Path:
        return BY_ID / self.name_of(volume_id)

    def volume(self, volume_id: str, size_gib: int, attached: bool, snapshot_id: str | None) -> None:
        """The volume as the cloud has it now: a loop device over its blocks (blank, or its snapshot's), as large
        as the cloud says, named in /dev/disk/by-id while attached."""
        image = self.image(volume_id)
        if volume_id not in self.devices:  # a new volume: blank, or its snapshot's blocks
            source = self.snapshots.get(snapshot_id or "")
            if source is not None:
                subprocess.run(["cp", "--sparse=always", str(source), str(image)], check=True)
            with image.open("ab") as f:
                f.truncate(size_gib * GIB)
            made = subprocess.run(["losetup", "-f", "--show", str(image)], capture_output=True, text=True)
            if made.returncode != 0:
                raise RuntimeError(f"losetup: {made.stderr.strip()}")
            self.devices[volume_id] = made.stdout.strip()
        elif image.stat().st_size < size_gib * GIB:  # the cloud grew it; the guest is told (losetup -c)
            with image.open("r+b") as f:
                f.truncate(size_gib * GIB)
            subprocess.run(["losetup", "-c", self.devices[volume_id]], check=True)
        link = self.link(volume_id)
        if attached:
            if not link.is_symlink():
                link.symlink_to(self.devices[volume_id])
                self.links.append(link)
        elif link in self.links and link.is_symlink():  # detached: udev removes its name
            link.unlink()

    def snapshot(self, snapshot_id: str, volume_id: str) -> None:
        """The blocks of the volume as the cloud snapshots them: what is on the device, not what the VM still
        caches (the user synced)."""
        if snapshot_id not in self.snapshots and volume_id in self.devices:
            copy = self.folder / f"{snapshot_id}.snapshot"
            subprocess.run(["cp", "--sparse=always", str(self.image(volume_id)), str(copy)], check=True)
            self.snapshots[snapshot_id] = copy

    def power_off(self, data: Path) -> None:
        """The VM stopped or gone: its mount of the data folder with it."""
        for device in self.devices.values():
            if str(data) in _mounts_of(device):
                subprocess.run(["umount", str(data)], check=True)

    def undo(self) -> None:
        """Every mount of each loop device undone, each device detached, each link and folder made removed."""
        for device in self.devices.values():
            for _ in range(10):
                if not _mounts_of(device):
                    break
                subprocess.run(["umount", "-l", device], capture_output=True)
            subprocess.run(["losetup", "-d", device], capture_output=True)
        self.devices = {}  # detached once: the number may be another's loop device by now
        for link in self.links:
            if link.is_symlink():
                link.unlink()
        for folder in reversed(self.made_folders):
            try:
                folder.rmdir()
            except OSError:  # someone else's link arrived meanwhile: theirs to keep
                pass
        self.made_folders = []

    def left_behind(self) -> list[str]:
        """Loop devices over this guest's files, and its links, still there."""
        loops = subprocess.run(["losetup", "-n", "-O", "NAME,BACK-FILE", "-l"], capture_output=True, text=True)
        mine = [line for line in loops.stdout.splitlines() if str(self.folder) in line]
        return mine + [str(link) for link in self.links if link.is_symlink()]


@pytest.fixture
def may_sudo(user):
    """The login may run `sudo -n`, as a cloud image's default user may: a rule for that user only, removed after."""
    rule = Path("/etc/sudoers.d") / user.name
    rule.parent.mkdir(exist_ok=True)
    rule.write_text(f"{user.name} ALL=(root) NOPASSWD: ALL\n")
    rule.chmod(0o440)
    try:
        checked = user.shell("sudo -n true")
        assert checked.returncode == 0, f"sudo -n refused the test's rule: {checked.stderr}"
        yield
    finally:
        rule.unlink(missing_ok=True)


class Disk(NamedTuple):
    """A data volume as the test reads it from its cloud's world, in one shape for the three clouds."""

    id: str
    name: str
    size: int  # GiB: Cinder's, EBS's and Persistent Disk's "GB" alike
    state: str  # "in-use" (attached) or "available" (detached and ready), or the cloud's word for another
    attached_to: str  # the machine's id as labvm says it, "" when detached
    source: str  # the snapshot it was made from, "" when blank
    zone: str


class Machine(NamedTuple):
    """A machine of the profile: how labvm names it, and what tells one machine from the next of that name
    (a GCE instance made again keeps its name, not its id)."""

    said: str
    serial: str


class Shot(NamedTuple):
    """A backup (a snapshot) as the test reads it from its cloud's world."""

    volume_id: str
    ready: bool
    role: str


class OpenStackWorld:
    """FakeOpenStack: the guest looks at each volume and snapshot a GET shows (FakeOpenStack.on_volume_look:
    each state change is applied at a GET, under the fake's lock, before its answer leaves)."""

    name, priced, backups_outlive = "openstack", False, False
    zone = "nova"  # the fake's one availability zone

    def __init__(self, fake: FakeOpenStack):
        self.fake = fake

    def settings(self) -> dict:
        return dict(
            provider="openstack",
            cloud="cades",
            image="Ubuntu 22.04",
            flavor="m1.medium",
            volume_size=40,
            network="lab-net",
            floating_ip_pool="public",
        )

    @staticmethod
    def name_of(volume_id: str) -> str:
        return f"virtio-{volume_id[:SERIAL]}"  # what the guest sees of a Cinder volume id

    def connect(self, guest: Guest) -> None:
        def look(item: dict) -> None:
            if self.fake.volumes.get(item["id"]) is item and item["metadata"].get("labvm:role", "").startswith("data"):
                attached = item["status"] == "in-use" and bool(item["attachments"])
                guest.volume(item["id"], item["size"], attached, item.get("snapshot_id"))
            elif self.fake.snapshots.get(item["id"]) is item:
                guest.snapshot(item["id"], item["volume_id"])

        self.fake.on_volume_look = lambda item: guest.told(look, item)

    def disconnect(self) -> None:
        self.fake.on_volume_look = None

    def machines(self) -> list[Machine]:
        servers = self.fake.servers.values()
        return [Machine(s["id"], s["id"]) for s in servers if s["metadata"].get("labvm:profile") == "cades"]

    def volumes(self, role: str = "data") -> list[Disk]:
        return [
            Disk(
                v["id"],
                v["name"],
                v["size"],
                v["status"],
                v["attachments"][0]["server_id"] if v["attachments"] else "",
                v.get("snapshot_id") or "",
                v["availability_zone"],
            )
            for v in self.fake.volumes.values()
            if v["metadata"].get("labvm:role") == role
        ]

    def labels(self, volume_id: str) -> dict:
        return self.fake.volumes[volume_id]["metadata"]

    def expected_labels(self) -> dict:
        return {"labvm:profile": "cades", "labvm:owner": "hedy", "labvm:role": "data"}

    def backup(self, backup_id: str) -> Shot:
        snapshot = self.fake.snapshots[backup_id]
        return Shot(snapshot["volume_id"], snapshot["status"] == "available", snapshot["metadata"]["labvm:role"])

    def backups(self) -> list[str]:
        return list(self.fake.snapshots)

    def delete(self, backup_ids: list[str], volume_ids: list[str]) -> None:
        """Through openstacksdk, as the user would."""
        conn = openstack.connect(cloud="cades")
        for backup_id in backup_ids:
            kept_backup = conn.block_storage.get_snapshot(backup_id)
            conn.block_storage.delete_snapshot(kept_backup)
            conn.block_storage.wait_for_delete(kept_backup, interval=0.05, wait=10)
        for volume_id in volume_ids:
            conn.block_storage.delete_volume(volume_id)

    def left(self) -> list[str]:
        """Whatever of the profile's is still in the cloud."""
        fake = self.fake
        return [
            *(v["id"] for v in fake.volumes.values() if v["metadata"].get("labvm:profile") == "cades"),
            *fake.snapshots,
            *(g["name"] for g in fake.security_groups.values() if g["name"] == "labvm-cades-hedy"),
            *(ip["id"] for ip in fake.floating_ips.values() if ip.get("port_id")),
        ]


def _tags(resource: dict) -> dict:
    return {t["Key"]: t["Value"] for t in resource.get("Tags", [])}


class AwsWorld:
    """moto's EC2 server in this process: the guest looks at each volume and snapshot as EBSBackend changes
    it (moto_ec2_rules.Watched), before the answer leaves."""

    name, priced, backups_outlive = "aws", False, True
    zone = f"{REGION}a"  # where moto places an instance that names no subnet
    MINE = [{"Name": "tag:labvm:profile", "Values": ["cades"]}]

    def __init__(self, ec2, image: str):
        self.ec2, self.image = ec2, image
        self.watching: Watched | None = None

    def settings(self) -> dict:
        return dict(provider="aws", region=REGION, instance_type="t3.small", image=self.image, volume_size=20)

    @staticmethod
    def name_of(volume_id: str) -> str:
        return f"nvme-Amazon_Elastic_Block_Store_{volume_id.replace('-', '')}"  # a Nitro instance's udev

    def connect(self, guest: Guest) -> None:
        def look(changed) -> None:
            if isinstance(changed, Snapshot):
                guest.snapshot(changed.id, changed.volume.id)
                return
            tags = {t["key"]: t["value"] for t in changed.get_tags()}  # none yet at CreateVolume: seen at attach
            if tags.get("labvm:role", "").startswith("data"):
                guest.volume(changed.id, changed.size, changed.attachment is not None, changed.snapshot_id)

        self.watching = Watched(lambda changed: guest.told(look, changed)).__enter__()

    def disconnect(self) -> None:
        if self.watching is not None:
            self.watching.__exit__(None, None, None)
            self.watching = None

    def machines(self) -> list[Machine]:
        alive = [{"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]}]
        reservations = self.ec2.describe_instances(Filters=self.MINE + alive)["Reservations"]
        return [Machine(i["InstanceId"], i["InstanceId"]) for r in reservations for i in r["Instances"]]

    def volumes(self, role: str = "data") -> list[Disk]:
        role_filter = [{"Name": "tag:labvm:role", "Values": [role]}]
        return [
            Disk(
                v["VolumeId"],
                _tags(v).get("Name", v["VolumeId"]),
                v["Size"],
                v["State"],
                v["Attachments"][0]["InstanceId"] if v["Attachments"] else "",
                v.get("SnapshotId") or "",
                v["AvailabilityZone"],
            )
            for v in self.ec2.describe_volumes(Filters=self.MINE + role_filter)["Volumes"]
        ]

    def labels(self, volume_id: str) -> dict:
        (volume,) = self.ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"]
        return {k: v for k, v in _tags(volume).items() if k.startswith("labvm:")}

    def expected_labels(self) -> dict:
        return {"labvm:profile": "cades", "labvm:owner": "hedy", "labvm:role": "data"}

    def backup(self, backup_id: str) -> Shot:
        (snapshot,) = self.ec2.describe_snapshots(SnapshotIds=[backup_id])["Snapshots"]
        return Shot(snapshot["VolumeId"], snapshot["State"] == "completed", _tags(snapshot)["labvm:role"])

    def backups(self) -> list[str]:
        return [s["SnapshotId"] for s in self.ec2.describe_snapshots(OwnerIds=["self"], Filters=self.MINE)["Snapshots"]]

    def delete(self, backup_ids: list[str], volume_ids: list[str]) -> None:
        """Through boto3, as the user would."""
        for backup_id in backup_ids:
            self.ec2.delete_snapshot(SnapshotId=backup_id)
        for volume_id in volume_ids:
            self.ec2.delete_volume(VolumeId=volume_id)

    def left(self) -> list[str]:
        groups = self.ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": ["labvm-cades-hedy"]}])
        return [
            *(v.id for v in self.volumes()),
            *(v.id for v in self.volumes("data-replaced")),
            *self.backups(),
            *(g["GroupName"] for g in groups["SecurityGroups"]),
            *(a["PublicIp"] for a in self.ec2.describe_addresses(Filters=self.MINE)["Addresses"]),
        ]


def _tail(link: str) -> str:
    return link.rsplit("/", 1)[-1]


class GceWorld:
    """fake_gce.FakeGce: the guest looks at every data disk and snapshot each time an operation is done
    (FakeGce.on_operation_done: under the fake's lock, before the answer that shows it done leaves)."""

    name, priced, backups_outlive = "gce", True, True
    zone = GCE_ZONE

    def __init__(self, fake, endpoint: str):
        self.fake, self.operations = fake, Clients(endpoint)  # Clients waits on the fake's operations
        self.clients = {
            kind: cls(
                credentials=AnonymousCredentials(),
                transport="rest",
                client_options=ClientOptions(api_endpoint=endpoint),
            )
            for kind, cls in (("disks", compute_v1.DisksClient), ("snapshots", compute_v1.SnapshotsClient))
        }

    def settings(self) -> dict:
        return dict(
            provider="gce",
            project="proj",
            zone=GCE_ZONE,
            machine_type="e2-small",
            image_family="debian-12",
            disk_size=10,
        )

    @staticmethod
    def name_of(volume_id: str) -> str:
        return f"google-{volume_id}"  # the disk attached with its name as deviceName (guest-configs' udev rules)

    def _disks(self) -> list[dict]:
        return [disk for disks in self.fake.zone_disks.values() for disk in disks.values()]

    def connect(self, guest: Guest) -> None:
        def look(_operation: dict) -> None:
            for disk in self._disks():
                if disk.get("labels", {}).get("labvm-role", "").startswith("data") and disk["status"] == "READY":
                    source = _tail(disk.get("sourceSnapshot", "")) or None
                    guest.volume(disk["name"], int(disk["sizeGb"]), bool(disk["users"]), source)
            for snapshot in self.fake.snapshots.values():
                if snapshot["status"] == "READY":
                    guest.snapshot(snapshot["name"], _tail(snapshot["sourceDisk"]))

        self.fake.on_operation_done = lambda operation: guest.told(look, operation)

    def disconnect(self) -> None:
        self.fake.on_operation_done = None

    def machines(self) -> list[Machine]:
        instances = self.fake.instances.values()
        return [Machine(i["name"], i["id"]) for i in instances if i.get("labels", {}).get("labvm-profile") == "cades"]

    def volumes(self, role: str = "data") -> list[Disk]:
        return [
            Disk(
                d["name"],
                d["name"],
                int(d["sizeGb"]),
                "in-use" if d["users"] else ("available" if d["status"] == "READY" else d["status"]),
                _tail(d["users"][0]) if d["users"] else "",
                _tail(d.get("sourceSnapshot", "")),
                _tail(d["zone"]),
            )
            for d in self._disks()
            if d.get("labels", {}).get("labvm-role") == role and d.get("labels", {}).get("labvm-profile") == "cades"
        ]

    def labels(self, volume_id: str) -> dict:
        return next(d["labels"] for d in self._disks() if d["name"] == volume_id)

    def expected_labels(self) -> dict:
        return {"labvm-profile": "cades", "labvm-owner": "hedy", "labvm-role": "data"}

    def backup(self, backup_id: str) -> Shot:
        snapshot = self.fake.snapshots[backup_id]
        return Shot(_tail(snapshot["sourceDisk"]), snapshot["status"] == "READY", snapshot["labels"]["labvm-role"])

    def backups(self) -> list[str]:
        return [n for n, s in self.fake.snapshots.items() if s.get("labels", {}).get("labvm-profile") == "cades"]

    def delete(self, backup_ids: list[str], volume_ids: list[str]) -> None:
        """Through google-cloud-compute, as the user would."""
        for backup_id in backup_ids:
            self.operations.wait_global(self.clients["snapshots"].delete(project="proj", snapshot=backup_id))
        for volume_id in volume_ids:
            self.operations.wait_zone(self.clients["disks"].delete(project="proj", zone=GCE_ZONE, disk=volume_id))

    def left(self) -> list[str]:
        fake = self.fake
        return [
            *(d["name"] for d in self._disks() if d.get("labels", {}).get("labvm-profile") == "cades"),
            *self.backups(),
            *fake.firewalls,
            *(name for name in fake.addresses if "cades" in name),
        ]


@pytest.fixture(params=["openstack", "aws", "gce"])
def world(request, lab, monkeypatch):
    """The cloud's world, `inv` pointed at it, and the profile's settings for it."""
    if request.param == "openstack":
        with FakeOpenStack() as fake:
            clouds = lab.directory / "clouds.yaml"
            clouds.write_text(fake.clouds_yaml("cades"))
            lab.extra_env.update(OS_CLIENT_CONFIG_FILE=str(clouds), LABVM_OWNER="hedy")
            lab.extra_env.pop("OS_CLOUD", None)
            monkeypatch.setenv(
                "OS_CLIENT_CONFIG_FILE", str(clouds)
            )  # the user's own `openstack` calls, in this process
            yield OpenStackWorld(fake)
    elif request.param == "aws":
        moto = request.getfixturevalue("moto")
        ec2 = request.getfixturevalue("ec2")
        urllib.request.urlopen(urllib.request.Request(f"{moto}/moto-api/reset", method="POST"), timeout=10)
        lab.extra_env.update(aws_env(moto), LABVM_OWNER="hedy")
        with SizeAtSnapshot():  # a backup taken at 1 GB restores at 1 GB, as EC2 does
            yield AwsWorld(ec2, ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"])
    else:
        with fake_gce_for(lab) as fake:
            yield GceWorld(fake, fake.endpoint)


@pytest.fixture
def guest(world, tmp_path):
    played = Guest(tmp_path, world.name_of)
    played.install()
    world.connect(played)
    try:
        yield played
    finally:
        world.disconnect()
        played.undo()


def data_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("data: ")]


def walks_data(output: str) -> bool:
    """The notebook sync (down, terminate) walked the data folder inside the workspace: mkfs's lost+found,
    root's and 0700, would be an rsync error line (sync's rules skip the data folder and lost+found)."""
    return any("lost+found" in line or "not synced" in line for line in sync_lines(output))


def sync_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("sync: ")]


def price(world) -> str:
    """What a line says of a price a month: nothing where the cloud publishes none (OpenStack) or the world has
    none (moto has no Price List API)."""
    return r", about \$\d+\.\d\d a month" if world.priced else ""


def test_a_data_volume_through_terminate_backup_grow_and_restore(lab, user, may_sudo, world, guest, tmp_path):
    fstab = tmp_path / "etc" / "fstab"
    fstab.parent.mkdir()
    fstab.write_text(FIRST_LINES)
    vm = Sshd(tmp_path / "vm", environment={"LABVM_DATA_FSTAB": str(fstab)})
    data = user.home / "work" / "data"  # data.mount's default: a folder inside Jupyter's workspace
    profile = ssh_profile(user, vm, **world.settings(), ssh_cidr="127.0.0.1/32", data={"size": 1})
    if world.name == "openstack":
        del profile["ssh_cidr"]  # the profile as it always was here
    lab.write_hosts({"cades": profile})
    try:
        # -- up: the volume made, attached, formatted (blank) and mounted before Jupyter starts ---------------
        first = lab.inv("up", "--host", "cades", "--no-browser").output
        assert answers(first), first
        (server,) = world.machines()
        (volume,) = world.volumes()
        volume_id, name = volume.id, volume.name
        assert volume.size == 1 and volume.state == "in-use"
        assert volume.attached_to == server.said
        assert world.labels(volume_id) == world.expected_labels()
        said = data_lines(first)
        assert f"data: {name} ({volume_id}, 1 GB) attached to {server.said}" in said, first
        mounted = next(line for line in said if line.startswith(f"data: {data}: "))
        assert re.fullmatch(
            rf"data: {re.escape(str(data))}: 1\.\d GB ext4, 1\.\d GB free \(made the folder; formatted the blank "
            r"volume ext4; mounted it; kept it in /etc/fstab by UUID\)",
            mounted,
        ), mounted
        device = guest.devices[volume_id]
        assert _mounts_of(device) == [str(data)]
        uuid = _probe(device)["UUID"]
        assert _probe(device)["LABEL"] == "labvm-data"
        assert fstab.read_text().startswith(FIRST_LINES)
        (line,) = [entry for entry in fstab.read_text().splitlines() if MARK in entry]
        assert line.split()[:3] == [f"UUID={uuid}", str(data), "ext4"]
        assert data.stat().st_uid == user.uid  # the login owns what labvm formatted

        # -- a file written there as the user, over the ssh the user types ------------------------------------
        wrote = lab.ssh(ALIAS, "printf 'trial,score\\n1,0.93\\n' > ~/work/data/results.csv && sync")
        assert wrote.returncode == 0, wrote.stderr

        shown = lab.inv("data", "--host", "cades").output  # what the VM says of it, while it runs
        assert re.search(r"^  \d+\.\d GB used of \d+\.\d GB, \d+\.\d GB free \(on the VM now\)$", shown, re.M), shown

        # -- data --backup: a snapshot of it, with the profile's labels -----------------------------------------
        backed = lab.inv("data", "--host", "cades", "--backup").output
        backup_id = re.search(r"^data: backed up as (\S+) \(", backed, re.M).group(1)
        assert world.backup(backup_id) == Shot(volume_id, True, "data-backup")
        assert "backups: 1" in backed and backup_id in backed
        later = lab.ssh(ALIAS, "echo after > ~/work/data/after-backup.txt && sync")
        assert later.returncode == 0, later.stderr

        # -- data --grow 2: the cloud extends it in use, the guest sees 2 GiB, data.sh grows the filesystem ----
        size_before = _df_size(data)
        grew = lab.inv("data", "--host", "cades", "--grow", "2")
        assert re.search(rf"^data: {re.escape(name)} \({volume_id}\) is 2 GB{price(world)}$", grew.output, re.M), (
            grew.output
        )
        (grown,) = world.volumes()
        assert grown.size == 2 and grown.state == "in-use"
        assert int(subprocess.check_output(["blockdev", "--getsize64", device])) == 2 * GIB
        assert (data / "results.csv").read_text() == "trial,score\n1,0.93\n"
        if _may_resize():
            assert "grew its filesystem to the volume's size" in grew.output, grew.output
            assert _df_size(data) > 1.5 * GIB > size_before
        else:
            # ext4 grows online by an ioctl that needs CAP_SYS_RESOURCE (a cloud VM's root has it; this container's
            # does not): the filesystem keeps its size and its mount, the step says why, the next mount tries again.
            (refused,) = [line for line in data_lines(grew.output) if "resize2fs could not grow" in line]
            assert "Permission denied to resize" in refused, refused  # resize2fs's reason, not its last stdout line
            assert f"data: {data}: 1." in grew.output and "(already in place)" in grew.output, grew.output
            assert _df_size(data) == size_before and _mounts_of(device) == [str(data)]

        # -- terminate: the VM goes, the data volume stays (and says so, with its price where there is one) ---
        ended = lab.inv("terminate", "--host", "cades", "--yes", "--force").output
        assert not walks_data(ended), ended
        kept = rf"data: {re.escape(name)} \({volume_id}, 2 GB\) kept{price(world)}; "
        assert re.search(rf"^{kept}the next `inv up --host cades` attaches it again$", ended, re.M), ended
        assert world.machines() == []
        (detached,) = world.volumes()
        assert detached.state == "available" and detached.attached_to == ""
        assert not guest.link(volume_id).exists()  # detached: the guest no longer names it
        user.end_processes()
        guest.power_off(data)
        fstab.write_text(FIRST_LINES)  # a new VM: a new root disk, its own fstab

        # -- up again: the SAME volume attached and mounted, the file there, nothing formatted ----------------
        again = lab.inv("up", "--host", "cades", "--no-browser").output
        assert answers(again), again
        (reborn,) = world.machines()
        assert reborn.serial != server.serial and [v.id for v in world.volumes()] == [volume_id]
        assert f"data: {name} ({volume_id}, 2 GB) attached to {reborn.said}" in data_lines(again), again
        assert "formatted" not in again
        assert _mounts_of(device) == [str(data)] and _probe(device)["UUID"] == uuid
        assert (data / "results.csv").read_text() == "trial,score\n1,0.93\n"
        remounted = next(line for line in data_lines(again) if line.startswith(f"data: {data}: "))
        assert remounted.endswith("(mounted it; kept it in /etc/fstab by UUID)"), remounted  # a new VM's fstab
        if _may_resize():
            assert _df_size(data) > 1.5 * GIB
        else:
            assert "data: resize2fs could not grow" in again  # tried again at the mount, said again
            assert _df_size(data) == size_before
        listed = lab.ssh(ALIAS, "cat ~/work/data/results.csv")  # as the user reads it on the new VM
        assert listed.stdout == "trial,score\n1,0.93\n", listed.stderr

        # -- down, then restore the backup: a new volume from the snapshot, the old one kept ------------------
        down = lab.inv("down", "--host", "cades").output
        assert re.search(rf"and its data volume \(2 GB{price(world)}\)", down), down  # what bills while stopped
        assert not walks_data(down), down
        user.end_processes()
        guest.power_off(data)
        restored = lab.inv("data", "--host", "cades", "--restore", backup_id).output
        (made,) = world.volumes()
        assert made.id != volume_id and made.source == backup_id and made.state == "available"
        assert made.zone == volume.zone == world.zone  # restored where the volume was
        (replaced,) = world.volumes("data-replaced")
        assert replaced.id == volume_id and replaced.state == "available"
        assert f"data: restored {backup_id} as {made.name} ({made.id}, 1 GB) in {made.zone}" in restored, restored
        assert f"data: {name} ({volume_id}) is kept, detached, no longer the profile's data volume" in restored

        back = lab.inv("up", "--host", "cades", "--no-browser").output
        assert answers(back), back
        assert f"data: {made.name} ({made.id}, 1 GB) attached to {reborn.said}" in data_lines(back), back
        assert "formatted" not in back
        remounted = next(line for line in data_lines(back) if line.startswith(f"data: {data}: "))
        assert re.fullmatch(r".*: 1\.\d GB ext4, 1\.\d GB free \(mounted it\)", remounted), remounted  # fstab as it was
        assert _mounts_of(guest.devices[made.id]) == [str(data)]
        assert (data / "results.csv").read_text() == "trial,score\n1,0.93\n"
        assert not (data / "after-backup.txt").exists()  # written after the backup: not in it

        # -- terminate --delete-data -------------------------------------------------------------------------
        gone = lab.inv("terminate", "--host", "cades", "--yes", "--force", "--delete-data").output
        assert not walks_data(gone), gone
        assert world.machines() == [] and world.volumes() == []
        user.end_processes()
        guest.power_off(data)
        if world.backups_outlive:
            # EBS and Persistent Disk keep a snapshot apart from its volume: a last backup, kept, and said.
            last = re.search(r"^data: backed up as (\S+) \(", gone, re.M).group(1)
            assert world.backup(last) == Shot(made.id, True, "data-backup")
            assert (
                f"data: deleted {made.name} ({made.id}, 1 GB); its backups are kept (`inv data --host cades` lists them)"
                in gone
            ), gone
            assert sorted(world.backups()) == sorted([backup_id, last])
            listed = lab.inv("data", "--host", "cades").output  # as the line above tells the user to look
            assert backup_id in listed and last in listed and "--restore BACKUP" in listed, listed
            pruned = lab.inv("data", "--host", "cades", "--prune", "--keep", "1").output
            assert f"data: deleted the backup {backup_id} (" in pruned, pruned
            assert world.backups() == [last]
            kept_backups = [last]
        else:
            # OpenStack keeps no backup past its volume, so --force: the volume's backups went with it.
            assert f"data: deleted {made.name} ({made.id}, 1 GB)" in gone, gone
            kept_backups = [backup_id]
        # The volume the restore replaced, and the backup inside it, stay until the user deletes them.
        assert [v.id for v in world.volumes("data-replaced")] == [volume_id]
        assert world.backups() == kept_backups
        world.delete(kept_backups, [volume_id])
        assert world.backups() == [] and world.volumes("data-replaced") == []
        assert world.left() == []
        assert guest.problems == []
    finally:
        lab.inv("terminate", "--host", "cades", "--yes", "--force", "--no-sync", "--delete-data", check=False)
        user.end_processes()
        guest.undo()
        vm.stop()
        if data.is_dir() and not os.path.ismount(data) and not any(data.iterdir()):
            data.rmdir()  # the empty mount point; the user's workspace stays for the session's other tests
    assert guest.left_behind() == [] and not os.path.ismount(data)
