"""Issue 29's whole flow on the OpenStack world, through `inv` as a user types it: a profile with
`data: {size: 1}` gets its volume, keeps a file through terminate and a new `up`, backs it up, grows it,
restores it, and deletes it.

The cloud is the stateful fake (tests/fake_openstack.py); "the VM" is a real sshd on loopback pinned by
`address:` whose login may `sudo -n` (the cloud image's default user may), so data.sh runs as root for real:
mkfs, blkid, mount, resize2fs on a loop device.  The `Guest` plays the VM's kernel and udev: each data
volume of the fake is a loop device over a sparse file here, named /dev/disk/by-id/virtio-<first 20
characters of its id> while Cinder says it is attached, grown when Cinder grows it, and a backup is a copy
of the volume's file when Cinder takes the snapshot.  The VM's fstab is a copy (sshd's SetEnv gives the
login LABVM_DATA_FSTAB).  Whatever the test did, every mount, loop device, link and sudo rule is undone.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import openstack
import pytest

from fake_openstack import FakeOpenStack
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
    """The VM's kernel and udev, as far as the fake's data volumes go.  It looks at each volume and snapshot the
    moment the fake shows one (FakeOpenStack.on_volume_look: each state change is applied at a GET, under the
    fake's lock, before its answer leaves), so the guest has seen a change before labvm, waiting on that GET,
    goes on: no watcher racing the test, no sleep."""

    def __init__(self, fake: FakeOpenStack, folder: Path):
        self.fake, self.folder = fake, folder
        self.devices: dict[str, str] = {}  # volume id -> its loop device
        self.snapshots: dict[str, Path] = {}  # snapshot id -> the copy of its volume's file when it was taken
        self.links: list[Path] = []
        self.made_folders: list[Path] = []  # /dev/disk and /dev/disk/by-id, where this container had none
        self.problems: list[str] = []  # what went wrong inside the fake's thread (raised there, it is a 500)

    def install(self) -> None:
        for folder in (BY_ID.parent, BY_ID):
            if not folder.exists():
                folder.mkdir()
                self.made_folders.append(folder)
        self.fake.on_volume_look = self._seen

    def _seen(self, item: dict) -> None:
        try:
            if self.fake.volumes.get(item["id"]) is item and item["metadata"].get("labvm:role", "").startswith("data"):
                self._volume(item)
            elif self.fake.snapshots.get(item["id"]) is item and item["volume_id"] in self.devices:
                self._snapshot(item)
        except Exception as e:  # said by the test, not lost in the fake's 500
            self.problems.append(f"{type(e).__name__}: {e}")
            raise

    def image(self, volume_id: str) -> Path:
        return self.folder / f"{volume_id}.img"

    def link(self, volume_id: str) -> Path:
        return BY_ID / f"virtio-{volume_id[:SERIAL]}"

    def _volume(self, volume: dict) -> None:
        image = self.image(volume["id"])
        if volume["id"] not in self.devices:  # a new volume: blank, or its snapshot's blocks
            source = self.snapshots.get(volume.get("snapshot_id") or "")
            if source is not None:
                subprocess.run(["cp", "--sparse=always", str(source), str(image)], check=True)
            with image.open("ab") as f:
                f.truncate(volume["size"] * GIB)
            attached = subprocess.run(["losetup", "-f", "--show", str(image)], capture_output=True, text=True)
            if attached.returncode != 0:
                raise RuntimeError(f"losetup: {attached.stderr.strip()}")
            self.devices[volume["id"]] = attached.stdout.strip()
        elif image.stat().st_size < volume["size"] * GIB:  # Cinder grew it; the guest is told (losetup -c)
            with image.open("r+b") as f:
                f.truncate(volume["size"] * GIB)
            subprocess.run(["losetup", "-c", self.devices[volume["id"]]], check=True)
        link = self.link(volume["id"])
        if volume["status"] == "in-use" and volume["attachments"]:
            if not link.is_symlink():
                link.symlink_to(self.devices[volume["id"]])
                self.links.append(link)
        elif link in self.links and link.is_symlink():  # detached: udev removes its name
            link.unlink()

    def _snapshot(self, snapshot: dict) -> None:
        """The blocks of the volume as Cinder snapshots them: what is on the device, not what the VM still caches
        (the user synced)."""
        if snapshot["id"] not in self.snapshots:
            copy = self.folder / f"{snapshot['id']}.snapshot"
            subprocess.run(["cp", "--sparse=always", str(self.image(snapshot["volume_id"])), str(copy)], check=True)
            self.snapshots[snapshot["id"]] = copy

    def power_off(self, data: Path) -> None:
        """The VM stopped or gone: its mount of the data folder with it."""
        for device in self.devices.values():
            if str(data) in _mounts_of(device):
                subprocess.run(["umount", str(data)], check=True)

    def undo(self) -> None:
        """Every mount of each loop device undone, each device detached, each link and folder made removed."""
        self.fake.on_volume_look = None
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


@pytest.fixture
def cloud(lab, monkeypatch):
    with FakeOpenStack() as fake:
        clouds = lab.directory / "clouds.yaml"
        clouds.write_text(fake.clouds_yaml("cades"))
        lab.extra_env.update(OS_CLIENT_CONFIG_FILE=str(clouds), LABVM_OWNER="hedy")
        lab.extra_env.pop("OS_CLOUD", None)
        monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(clouds))  # the user's own `openstack` calls, in this process
        yield fake


@pytest.fixture
def guest(cloud, tmp_path):
    played = Guest(cloud, tmp_path)
    played.install()
    try:
        yield played
    finally:
        played.undo()


def data_volumes(fake: FakeOpenStack, role: str = "data") -> list[dict]:
    return [v for v in fake.volumes.values() if v["metadata"].get("labvm:role") == role]


def servers(fake: FakeOpenStack) -> list[dict]:
    return [s for s in fake.servers.values() if s["metadata"].get("labvm:profile") == "cades"]


def data_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("data: ")]


def walks_data(output: str) -> bool:
    """The notebook sync (down, terminate) walked the data folder inside the workspace: mkfs's lost+found,
    root's and 0700, would be an rsync error line (sync's rules skip the data folder and lost+found)."""
    return any("lost+found" in line or "not synced" in line for line in sync_lines(output))


def sync_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("sync: ")]


def test_a_data_volume_through_terminate_backup_grow_and_restore(lab, user, may_sudo, cloud, guest, tmp_path):
    fstab = tmp_path / "etc" / "fstab"
    fstab.parent.mkdir()
    fstab.write_text(FIRST_LINES)
    vm = Sshd(tmp_path / "vm", environment={"LABVM_DATA_FSTAB": str(fstab)})
    data = user.home / "work" / "data"  # data.mount's default: a folder inside Jupyter's workspace
    profile = ssh_profile(
        user,
        vm,
        provider="openstack",
        cloud="cades",
        image="Ubuntu 22.04",
        flavor="m1.medium",
        volume_size=40,
        network="lab-net",
        floating_ip_pool="public",
        data={"size": 1},
    )
    lab.write_hosts({"cades": profile})
    try:
        # -- up: the volume made, attached, formatted (blank) and mounted before Jupyter starts ---------------
        first = lab.inv("up", "--host", "cades", "--no-browser").output
        assert answers(first), first
        (server,) = servers(cloud)
        (volume,) = data_volumes(cloud)
        volume_id, name = volume["id"], volume["name"]
        assert volume["size"] == 1 and volume["status"] == "in-use"
        assert volume["attachments"][0]["server_id"] == server["id"]
        assert volume["metadata"] == {"labvm:profile": "cades", "labvm:owner": "hedy", "labvm:role": "data"}
        said = data_lines(first)
        assert f"data: {name} ({volume_id}, 1 GB) attached to {server['id']}" in said, first
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

        # -- data --backup: a Cinder snapshot of it, with the profile's metadata ------------------------------
        backed = lab.inv("data", "--host", "cades", "--backup").output
        backup_id = re.search(r"^data: backed up as (\S+) \(", backed, re.M).group(1)
        snapshot = cloud.snapshots[backup_id]
        assert snapshot["volume_id"] == volume_id and snapshot["status"] == "available"
        assert snapshot["metadata"]["labvm:role"] == "data-backup"
        assert "backups: 1" in backed and backup_id in backed
        later = lab.ssh(ALIAS, "echo after > ~/work/data/after-backup.txt && sync")
        assert later.returncode == 0, later.stderr

        # -- data --grow 2: Cinder extends it in use, the guest sees 2 GiB, data.sh grows the filesystem ------
        size_before = _df_size(data)
        grew = lab.inv("data", "--host", "cades", "--grow", "2")
        assert f"data: {name} ({volume_id}) is 2 GB" in grew.output, grew.output
        assert cloud.volumes[volume_id]["size"] == 2 and cloud.volumes[volume_id]["status"] == "in-use"
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

        # -- terminate: the VM goes, the data volume stays (and says so) ---------------------------------------
        ended = lab.inv("terminate", "--host", "cades", "--yes", "--force").output
        assert not walks_data(ended), ended
        # OpenStack publishes no prices: the line has none to give.
        assert f"data: {name} ({volume_id}, 2 GB) kept; the next `inv up --host cades` attaches it again" in ended, (
            ended
        )
        assert servers(cloud) == []
        assert cloud.volumes[volume_id]["status"] == "available" and cloud.volumes[volume_id]["attachments"] == []
        assert not guest.link(volume_id).exists()  # detached: the guest no longer names it
        user.end_processes()
        guest.power_off(data)
        fstab.write_text(FIRST_LINES)  # a new VM: a new root disk, its own fstab

        # -- up again: the SAME volume attached and mounted, the file there, nothing formatted ----------------
        again = lab.inv("up", "--host", "cades", "--no-browser").output
        assert answers(again), again
        (reborn,) = servers(cloud)
        assert reborn["id"] != server["id"] and [v["id"] for v in data_volumes(cloud)] == [volume_id]
        assert f"data: {name} ({volume_id}, 2 GB) attached to {reborn['id']}" in data_lines(again), again
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
        assert "and its data volume (2 GB)" in down, down  # what still bills while the VM is stopped
        assert not walks_data(down), down
        user.end_processes()
        guest.power_off(data)
        restored = lab.inv("data", "--host", "cades", "--restore", backup_id).output
        (made,) = data_volumes(cloud)
        assert made["id"] != volume_id and made["snapshot_id"] == backup_id and made["status"] == "available"
        (replaced,) = data_volumes(cloud, "data-replaced")
        assert replaced["id"] == volume_id and replaced["status"] == "available"
        assert f"data: restored {backup_id} as {made['name']} ({made['id']}, 1 GB) in nova" in restored, restored
        assert f"data: {name} ({volume_id}) is kept, detached, no longer the profile's data volume" in restored

        back = lab.inv("up", "--host", "cades", "--no-browser").output
        assert answers(back), back
        assert f"data: {made['name']} ({made['id']}, 1 GB) attached to {reborn['id']}" in data_lines(back), back
        assert "formatted" not in back
        remounted = next(line for line in data_lines(back) if line.startswith(f"data: {data}: "))
        assert re.fullmatch(r".*: 1\.\d GB ext4, 1\.\d GB free \(mounted it\)", remounted), remounted  # fstab as it was
        assert _mounts_of(guest.devices[made["id"]]) == [str(data)]
        assert (data / "results.csv").read_text() == "trial,score\n1,0.93\n"
        assert not (data / "after-backup.txt").exists()  # written after the backup: not in it

        # -- terminate --delete-data: OpenStack keeps no backup past its volume, so --force ----------------------
        gone = lab.inv("terminate", "--host", "cades", "--yes", "--force", "--delete-data").output
        assert not walks_data(gone), gone
        assert f"data: deleted {made['name']} ({made['id']}, 1 GB)" in gone, gone
        assert servers(cloud) == [] and data_volumes(cloud) == []
        user.end_processes()
        guest.power_off(data)
        # The volume the restore replaced, and the backup inside it, stay until the user deletes them.
        assert [v["id"] for v in data_volumes(cloud, "data-replaced")] == [volume_id]
        assert list(cloud.snapshots) == [backup_id]
        conn = openstack.connect(cloud="cades")
        kept_backup = conn.block_storage.get_snapshot(backup_id)
        conn.block_storage.delete_snapshot(kept_backup)
        conn.block_storage.wait_for_delete(kept_backup, interval=0.05, wait=10)
        conn.block_storage.delete_volume(volume_id)
        assert cloud.snapshots == {} and volume_id not in cloud.volumes
        assert [v for v in cloud.volumes.values() if v["metadata"].get("labvm:profile") == "cades"] == []
        assert not [g for g in cloud.security_groups.values() if g["name"] == "labvm-cades-hedy"]
        assert not [ip for ip in cloud.floating_ips.values() if ip.get("port_id")]
        assert guest.problems == []
    finally:
        lab.inv("terminate", "--host", "cades", "--yes", "--force", "--no-sync", "--delete-data", check=False)
        user.end_processes()
        guest.undo()
        vm.stop()
        if data.is_dir() and not os.path.ismount(data) and not any(data.iterdir()):
            data.rmdir()  # the empty mount point; the user's workspace stays for the session's other tests
    assert guest.left_behind() == [] and not os.path.ismount(data)
