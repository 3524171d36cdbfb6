"""The data volume on the VM (issue 29): scripts/data.sh on real block devices (loop devices: real
mkfs, blkid, mount), and labvm.data_host reading its answer as the VM's untrusted word.

Each test gets its own loop devices and a copy of fstab (LABVM_DATA_FSTAB); every mount and loop
device is undone in the fixture's finally, whatever the test did.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from labvm import config as labvm_config
from labvm import answers, data_host
from labvm.config.schema import DataSpec
from labvm.errors import LabvmError
from labvm.providers.base import VOLUME_ATTACHED, Volume
from labvm.remote import LocalHost, SshHost
from labvm.sshconfig import SshHome
from realhost import ssh_profile

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "data.sh"
OWNER = "nobody"  # a login other than root: the folder of a volume labvm formats is theirs
FIRST_LINES = "# /etc/fstab of the test VM\nproc /proc proc defaults 0 0\n"
RAW_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")


def _can_loop() -> str:
    """Why loop devices cannot be used here ("" when they can)."""
    if os.geteuid() != 0:
        return "loop devices, mkfs and mount need root: run bin/test as root"
    missing = [
        tool for tool in ("losetup", "mkfs.ext4", "blkid", "wipefs", "findmnt", "flock") if not shutil.which(tool)
    ]
    if missing:
        return f"{', '.join(missing)} not installed"
    if not Path("/dev/loop-control").exists():
        return "no /dev/loop-control: this kernel or container gives no loop devices"
    return ""


pytestmark = pytest.mark.skipif(bool(_can_loop()), reason=_can_loop() or "loop devices available")


class Disks:
    """Loop devices over files in a test's folder, standing in for a cloud's volumes."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.devices: list[str] = []

    def blank(self, size_mb: int = 64) -> str:
        image = self.folder / f"volume{len(self.devices)}.img"
        with image.open("wb") as f:
            f.truncate(size_mb << 20)
        attached = subprocess.run(["losetup", "-f", "--show", str(image)], capture_output=True, text=True)
        if attached.returncode != 0:
            pytest.skip(f"losetup cannot attach a loop device here: {attached.stderr.strip()}")
        device = attached.stdout.strip()
        self.devices.append(device)
        return device

    def grow(self, device: str, size_mb: int) -> None:
        """The volume enlarged as a cloud enlarges one, and the guest told (the cloud's resize event)."""
        with (self.folder / f"volume{self.devices.index(device)}.img").open("r+b") as f:
            f.truncate(size_mb << 20)
        subprocess.run(["losetup", "-c", device], check=True)

    def by_id(self, device: str, name: str) -> str:
        """A /dev/disk/by-id style link to the device, as udev makes one for a cloud's volume."""
        folder = self.folder / "by-id"
        folder.mkdir(exist_ok=True)
        (folder / name).symlink_to(device)
        return str(folder / name)

    def undo(self) -> None:
        """Each mount of each device undone (named by the device: a hostile folder name cannot stop
        it), then the device detached."""
        for device in self.devices:
            for _ in range(10):
                if not _mounts_of(device):
                    break
                subprocess.run(["umount", "-l", device], capture_output=True)
            subprocess.run(["losetup", "-d", device], capture_output=True)


def _may_resize() -> bool:
    """This process holds CAP_SYS_RESOURCE (capability 24, linux/capability.h): ext4's online resize needs it."""
    effective = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("CapEff:"))
    return bool(int(effective.split()[1], 16) >> 24 & 1)


def _mounts_of(device: str) -> list[str]:
    """Where the device is mounted: findmnt -r writes each odd byte of a path as \\xNN, decoded here."""
    found = subprocess.run(["findmnt", "-n", "-r", "-S", device, "-o", "TARGET"], capture_output=True, text=True)
    return [re.sub(r"\\x([0-9a-f]{2})", _byte, line) for line in found.stdout.splitlines()]


def _byte(escaped: re.Match) -> str:
    return chr(int(escaped.group(1), 16))


@pytest.fixture
def disks(tmp_path):
    made = Disks(tmp_path)
    try:
        yield made
    finally:
        made.undo()


@pytest.fixture
def fstab(tmp_path) -> Path:
    path = tmp_path / "etc" / "fstab"
    path.parent.mkdir()
    path.write_text(FIRST_LINES)
    return path


def run(fstab: Path, folder: Path | str, *devices: str, wait: int = 5, path: str = "", args: tuple = (), **popen):
    env = {
        "PATH": path or os.environ["PATH"],
        "HOME": str(fstab.parent.parent),
        "LABVM_DATA_MOUNT": str(folder),
        "LABVM_DATA_OWNER": OWNER,
        "LABVM_DATA_DEVICES": "\n".join(devices),
        "LABVM_DATA_WAIT": str(wait),
        "LABVM_DATA_FSTAB": str(fstab),
    }
    command = ["sh", str(SCRIPT), *args]
    if popen:
        return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen)
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def answer(result) -> dict:
    """The script's answer: one JSON line on stdout, nothing else there."""
    assert result.returncode == 0, result.stderr
    [line] = result.stdout.splitlines()
    return answers.strict_json(line)


def refused(result, *fragments: str) -> str:
    """The script failed with one `error:` line on stderr, holding each fragment; no answer on stdout."""
    assert result.returncode != 0 and result.stdout == "", (result.stdout, result.stderr)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and result.stderr.strip().splitlines()[-1] == errors[0], result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


def probe(device: str) -> dict:
    out = subprocess.run(["blkid", "-p", "-o", "export", device], capture_output=True, text=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def labvm_lines(fstab: Path) -> list[str]:
    return [line for line in fstab.read_text().splitlines() if "x-labvm.data" in line]


def head(device: str) -> str:
    """A digest of the device's first MiB: where every signature labvm could overwrite lives."""
    with open(device, "rb") as f:
        return hashlib.sha256(f.read(1 << 20)).hexdigest()


def test_a_blank_volume_is_formatted_and_mounted_by_uuid(disks, fstab, tmp_path):
    device = disks.blank()
    link = disks.by_id(device, "virtio-0123456789abcdef0123")
    folder = tmp_path / "home" / "work" / "data"
    # The cloud's likeliest name first; the guest may know it by another (the first that exists is used).
    got = answer(run(fstab, folder, "/dev/disk/by-id/nvme-not-this-one", link))

    assert got["device"] == link and got["formatted"] is True and got["filesystem"] == "ext4"
    assert got["did"] == ["folder", "formatted", "mounted", "fstab"]
    assert got["mount"] == str(folder) and _mounts_of(device) == [str(folder)]
    assert probe(device)["UUID"] == got["uuid"] and probe(device)["LABEL"] == "labvm-data"
    assert 0 < got["free"] <= got["size"] <= 64 << 20
    assert fstab.read_text().startswith(FIRST_LINES)  # the lines that were there stay
    [line] = labvm_lines(fstab)
    spec, where, kind, options, dump, passno = line.split()
    assert (spec, where, kind, dump, passno) == (f"UUID={got['uuid']}", str(folder), "ext4", "0", "2")
    assert {"nofail", "x-systemd.device-timeout=30s"} <= set(options.split(","))
    # The login owns the new filesystem, and the folders made on the way to it.
    owner = subprocess.run(["id", "-u", OWNER], capture_output=True, text=True).stdout.strip()
    assert folder.stat().st_uid == int(owner) and folder.parent.stat().st_uid == int(owner)


def test_a_second_run_changes_nothing(disks, fstab, tmp_path):
    device = disks.blank()
    folder = tmp_path / "data"
    first = answer(run(fstab, folder, device))
    written = fstab.stat()

    second = answer(run(fstab, folder, device))

    assert second["did"] == [] and second["formatted"] is False
    assert second["uuid"] == first["uuid"] and probe(device)["UUID"] == first["uuid"]
    assert _mounts_of(device) == [str(folder)]  # mounted once, not twice
    assert fstab.stat().st_ino == written.st_ino and fstab.stat().st_mtime_ns == written.st_mtime_ns
    assert len(labvm_lines(fstab)) == 1


@pytest.mark.parametrize("filesystem", ["ext4", "xfs"])
def test_a_grown_volume_grows_its_filesystem_online_and_keeps_its_files(disks, fstab, tmp_path, filesystem):
    """`inv data --grow`: the cloud enlarged the volume; the next run grows the mounted filesystem to it, once."""
    if not shutil.which(f"mkfs.{filesystem}"):
        pytest.skip(f"mkfs.{filesystem} not installed (bin/test installs xfsprogs as root)")
    device = disks.blank(320)  # xfs's smallest filesystem is 300 MB
    if filesystem == "xfs":
        subprocess.run(["mkfs.xfs", "-q", device], check=True)
    folder = tmp_path / "data"
    first = answer(run(fstab, folder, device))
    (folder / "kept.csv").write_text("1,2\n")
    disks.grow(device, 640)

    if filesystem == "ext4" and not _may_resize():
        # ext4 grows online by an ioctl that needs CAP_SYS_RESOURCE (a cloud VM's root has it): without it
        # the filesystem keeps its size and its mount, the step says why, and the next run tries again.
        kept = run(fstab, folder, device)
        assert answer(kept)["did"] == [] and "data: resize2fs could not grow" in kept.stderr
        assert (folder / "kept.csv").read_text() == "1,2\n" and _mounts_of(device) == [str(folder)]
        pytest.skip("ext4's online growth needs CAP_SYS_RESOURCE, which this container lacks (its refusal was tested)")
    grown = answer(run(fstab, folder, device))
    assert grown["did"] == ["grown"] and grown["filesystem"] == filesystem
    assert first["size"] < 320 << 20 < grown["size"] <= 640 << 20 and grown["uuid"] == first["uuid"]
    assert (folder / "kept.csv").read_text() == "1,2\n" and _mounts_of(device) == [str(folder)]
    assert answer(run(fstab, folder, device))["did"] == []  # grown once


def test_a_volume_holding_a_filesystem_is_mounted_as_it_is_never_formatted(disks, fstab, tmp_path):
    device = disks.blank()
    subprocess.run(["mkfs.ext4", "-q", "-L", "results", device], check=True)
    before = probe(device)
    staging = tmp_path / "staging"
    staging.mkdir()
    subprocess.run(["mount", device, str(staging)], check=True)
    try:
        (staging / "results.csv").write_text("trial,score\n1,0.93\n")
    finally:
        subprocess.run(["umount", str(staging)], check=True)
    folder = tmp_path / "data"

    got = answer(run(fstab, folder, device))

    assert got["formatted"] is False and "formatted" not in got["did"]
    assert got["uuid"] == before["UUID"] and probe(device)["LABEL"] == "results"  # the same filesystem
    assert (folder / "results.csv").read_text() == "trial,score\n1,0.93\n"
    assert folder.stat().st_uid == 0  # someone else's filesystem: its owners are left as they are


def _swap(device: str) -> None:
    subprocess.run(["mkswap", device], check=True, capture_output=True)


def _partition_table(device: str) -> None:
    """An MBR with one Linux partition (what fdisk writes), no filesystem anywhere."""
    entry = bytes([0, 0, 0, 0, 0x83, 0, 0, 0]) + (2048).to_bytes(4, "little") + (8192).to_bytes(4, "little")
    with open(device, "r+b") as f:
        f.seek(446)
        f.write(entry)
        f.seek(510)
        f.write(b"\x55\xaa")


def _ext2(device: str) -> None:
    subprocess.run(["mkfs.ext2", "-q", device], check=True)


@pytest.mark.parametrize(
    "make, says",
    [(_swap, "holds swap"), (_partition_table, "holds a partition table (dos)"), (_ext2, "holds ext2")],
    ids=["swap", "partition-table", "ext2"],
)
def test_a_volume_holding_something_else_is_refused_untouched(disks, fstab, tmp_path, make, says):
    device = disks.blank()
    make(device)
    before = head(device)

    refused(run(fstab, tmp_path / "data", device), says, "labvm will not format it")

    assert head(device) == before and _mounts_of(device) == []
    assert fstab.read_text() == FIRST_LINES


def test_a_format_killed_halfway_is_done_again(disks, fstab, tmp_path):
    """kill -9 while mkfs runs: what it wrote carries the temporary label, which the next run formats
    again, and nothing was mounted or written to fstab meanwhile."""
    device = disks.blank()
    folder = tmp_path / "data"
    stuck = tmp_path / "stuck-bin"
    stuck.mkdir()
    began = tmp_path / "mkfs-wrote"
    real = shutil.which("mkfs.ext4")
    # mkfs that has written the filesystem and not yet returned: the script is killed there.
    (stuck / "mkfs.ext4").write_text(f'#!/bin/sh\n"{real}" "$@" || exit 1\n: > "{began}"\nexec sleep 600\n')
    (stuck / "mkfs.ext4").chmod(0o755)
    process = run(fstab, folder, device, path=f"{stuck}:{os.environ['PATH']}", start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not began.exists():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "mkfs did not finish writing within 60 s"
            time.sleep(0.05)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
    assert probe(device)["LABEL"] == "labvm-partial"  # half-made, and known to be
    assert _mounts_of(device) == [] and fstab.read_text() == FIRST_LINES

    got = answer(run(fstab, folder, device))

    assert got["formatted"] is True and probe(device)["LABEL"] == "labvm-data"
    assert _mounts_of(device) == [str(folder)] and len(labvm_lines(fstab)) == 1


def test_a_mount_path_with_spaces_is_one_fstab_field(disks, fstab, tmp_path):
    device = disks.blank()
    folder = tmp_path / "my data  x"
    got = answer(run(fstab, folder, device))

    [line] = labvm_lines(fstab)
    fields = line.split()
    assert len(fields) == 6 and fields[1].replace("\\040", " ") == str(folder), line
    assert got["mount"] == str(folder) and _mounts_of(device) == [str(folder)]


@pytest.mark.parametrize(
    "name",
    ["data\nUUID=0000 / ext4 defaults 0 0", "data\tx", "data\\040x", "data\x1b]0;x\x07"],
    ids=["newline", "tab", "backslash", "escape"],
)
def test_a_hostile_mount_path_cannot_break_fstab(disks, fstab, tmp_path, name):
    device = disks.blank()
    before = head(device)

    refused(run(fstab, tmp_path / name, device), "cannot go into fstab")

    assert fstab.read_text() == FIRST_LINES and head(device) == before
    assert not (tmp_path / name).exists()


@pytest.mark.parametrize("folder", ["/", "/etc", "/usr/local/data", "~"], ids=["root", "etc", "usr", "home"])
def test_a_system_folder_is_refused(disks, fstab, folder):
    device = disks.blank()
    refused(run(fstab, folder, device), "system folder")
    assert fstab.read_text() == FIRST_LINES and probe(device) == {}


def test_a_folder_holding_files_is_refused_and_nothing_is_hidden(disks, fstab, tmp_path):
    """Refused rather than moved aside: where those files belong (often inside the volume) is the
    user's call, and a refusal changes nothing, so the next run after they moved them just works."""
    device = disks.blank()
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")

    refused(run(fstab, folder, device), "holds 1 file(s)", "hide")

    assert (folder / "notes.txt").read_text() == "mine" and _mounts_of(device) == []
    assert probe(device) == {}  # not even formatted: the folder is checked first


def test_a_volume_that_never_appears_is_said_in_one_line(fstab, tmp_path):
    refused(run(fstab, tmp_path / "data", "/dev/disk/by-id/google-labvm-nothing", wait=1), "did not appear", "1s")
    assert fstab.read_text() == FIRST_LINES


def test_a_line_of_someone_elses_for_the_folder_is_left_and_refused(disks, fstab, tmp_path):
    device = disks.blank()
    folder = tmp_path / "data"
    theirs = FIRST_LINES + f"/dev/sdz9 {folder} ext4 defaults 0 2\n"
    fstab.write_text(theirs)

    refused(run(fstab, folder, device), "not labvm's")

    assert fstab.read_text() == theirs


# -- labvm.data_host: the step over a host connection, its answer as the VM's word ---------------------


def profile_at(tmp_path: Path, mount: str) -> labvm_config.Profile:
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump({"profiles": {"lab": {"provider": "local"}}}))
    profile = labvm_config.load(tmp_path / "hosts.yml").profile("lab")
    # A local profile may not have data: in hosts.yml; LocalHost runs the step here, as root, for real.
    return dataclasses.replace(profile, data=DataSpec(size=1, mount=mount))


def volume(*devices: str) -> Volume:
    return Volume("vol-0abc", "labvm-ada-lab-data", 1, VOLUME_ATTACHED, "zone-a", devices=devices)


def test_mount_data_through_a_host(disks, fstab, tmp_path, monkeypatch, capsys):
    device = disks.blank()
    folder = tmp_path / "data"
    monkeypatch.setenv("LABVM_DATA_FSTAB", str(fstab))  # LocalHost passes this process's environment on
    monkeypatch.setenv("LABVM_DATA_OWNER", OWNER)
    profile = profile_at(tmp_path, str(folder))

    mounted = data_host.mount_data(LocalHost(profile), profile, volume("/dev/disk/by-id/absent", device))
    again = data_host.mount_data(LocalHost(profile), profile, volume("/dev/disk/by-id/absent", device))

    assert mounted.device == device and mounted.formatted and mounted.mount == str(folder)
    assert mounted.uuid == probe(device)["UUID"] and 0 < mounted.free <= mounted.size
    assert mounted.summary().startswith(f"{folder}: 0.1 GB ext4, 0.1 GB free (made the folder;")
    assert again.did == () and again.summary().endswith("(already in place)")


def test_a_refusal_through_a_host_is_one_line_with_the_next_step(disks, fstab, tmp_path, monkeypatch):
    device = disks.blank()
    _swap(device)
    monkeypatch.setenv("LABVM_DATA_FSTAB", str(fstab))
    profile = profile_at(tmp_path, str(tmp_path / "data"))

    with pytest.raises(LabvmError) as raised:
        data_host.mount_data(LocalHost(profile), profile, volume(device))

    message = str(raised.value)
    assert "\n" not in message and message.startswith("lab: data failed: ")
    assert "holds swap" in message and message.endswith("then `inv up --host lab` mounts it")


class Saying:
    """A host whose data.sh printed `out`: the VM, or anyone on it, says what it likes."""

    label = "lab (ada@203.0.113.9:22)"

    def __init__(self, out: str):
        self.out = out

    def run(self, script: str, *args: str, env: dict[str, str] | None = None) -> str:
        return self.out


GOOD = {
    "device": "/dev/disk/by-id/virtio-vol0abc",
    "uuid": "56f2fbfc-b74d-419e-9816-3c8b06674afb",
    "filesystem": "ext4",
    "formatted": False,
    "mount": "/home/ada/work/data",
    "size": 20 * 10**9,
    "free": 10**9,
    "did": [],
}


@pytest.mark.parametrize(
    "changed, says",
    [
        ({"device": "/dev/sda"}, "data.device"),
        ({"uuid": "$(reboot)"}, "data.uuid"),
        ({"filesystem": "ntfs"}, "data.filesystem"),
        ({"formatted": "yes"}, "data.formatted"),
        ({"formatted": True}, "data.formatted"),  # says formatted, did says not
        ({"size": -1}, "data.size"),
        ({"free": 21 * 10**9}, "data.free"),  # more free than the filesystem holds
        ({"did": ["formatted", "rm -rf"]}, "data.did"),
        ({"mount": ["a"]}, "data.mount"),
    ],
)
def test_a_bad_answer_is_one_line(tmp_path, changed, says):
    import json

    profile = profile_at(tmp_path, "~/data")
    host = Saying("progress\n" + json.dumps({**GOOD, **changed}) + "\n")
    with pytest.raises(LabvmError) as raised:
        data_host.mount_data(host, profile, volume(GOOD["device"]))
    message = str(raised.value)
    assert "\n" not in message and says in message and message.startswith(Saying.label), message
    assert "inv setup --host lab" in message


@pytest.mark.parametrize("out", ["", "not json", '{"size": NaN}', "[" * 100000, "x" * (1 << 20)])
def test_no_answer_or_a_broken_one_is_one_line(tmp_path, out):
    profile = profile_at(tmp_path, "~/data")
    with pytest.raises(LabvmError) as raised:
        data_host.mount_data(Saying(out), profile, volume(GOOD["device"]))
    message = str(raised.value)
    assert "\n" not in message and len(message) < 600 and "inv setup --host lab" in message


def test_what_the_vm_says_is_cleaned_before_it_is_shown(tmp_path):
    import json

    profile = profile_at(tmp_path, "~/data")
    hostile = {**GOOD, "mount": "/home/ada/\x1b]52;c;ZWNobyBwd25lZA==\x07data\u202e"}
    mounted = data_host.mount_data(Saying(json.dumps(hostile)), profile, volume(GOOD["device"]))
    line = mounted.summary()
    assert not RAW_CONTROL.search(line) and "\u202e" not in line and "\\x1b" in line, repr(line)


# -- over the project's real test sshd: the step uploaded and run as the login ----------------------


def test_without_root_on_the_vm_the_step_says_so_in_one_line(user, sshd, lab, tmp_path):
    """The test VM's login is not root and may not sudo (no sudo here): data.sh, uploaded with put and
    run over the task's connection, stops before touching anything and says why, in one line."""
    lab.write_hosts({"vm": ssh_profile(user, sshd)})
    profile = dataclasses.replace(labvm_config.load(lab.hosts).profile("vm"), data=DataSpec(size=1))
    host = SshHost(profile, "127.0.0.1", SshHome(lab.ssh_dir))
    try:
        with pytest.raises(LabvmError) as raised:
            data_host.mount_data(host, profile, volume("/dev/disk/by-id/virtio-vol0abc"))
    finally:
        host.close()
    message = str(raised.value)
    assert "\n" not in message and message.startswith(f"vm ({user.name}@127.0.0.1:{sshd.port}): data failed: ")
    assert "needs root" in message and f"{user.name} may not run 'sudo -n'" in message
    assert message.endswith("then `inv up --host vm` mounts it")
    assert (user.home / ".labvm" / "scripts" / "data.sh").exists()  # put there, not piped through stdin


def test_a_by_id_name_that_appears_late_wins_over_a_kernel_name_there_at_once(disks, fstab, tmp_path):
    """OpenStack's /dev/vdb or EC2's /dev/xvdf may be another disk (a flavor's ephemeral one): where the cloud
    names the volume by its serial too, that name is waited for first, though the other exists already."""
    other, volume = disks.blank(), disks.blank()
    link = str(tmp_path / "by-id" / "virtio-0123456789abcdef0123")
    script = run(fstab, tmp_path / "data", link, other, wait=30, text=True)
    try:
        assert "waiting for the volume to appear" in script.stderr.readline()
        assert disks.by_id(volume, "virtio-0123456789abcdef0123") == link
        out, err = script.communicate(timeout=60)
    finally:
        if script.poll() is None:
            script.kill()
    assert script.returncode == 0, err
    assert answers.strict_json(out.strip())["device"] == link
    assert probe(other) == {}  # the other disk untouched


def test_usage_reads_the_mounted_volume_and_changes_nothing(disks, fstab, tmp_path):
    """`inv data`'s question (data.sh usage): size, used and free of the mounted filesystem; an unmounted
    folder says so; nothing mounted, formatted or written by asking."""
    from labvm.data_host import usage_fields

    device = disks.blank()
    folder = tmp_path / "data"
    folder.mkdir()
    assert usage_fields(answer(run(fstab, folder, device, args=("usage",)))) is None
    assert _mounts_of(device) == [] and probe(device) == {}  # asked, nothing done
    answer(run(fstab, folder, device))
    (folder / "payload").write_bytes(b"x" * (4 << 20))
    usage = usage_fields(answer(run(fstab, folder, device, args=("usage",))))
    assert usage is not None and usage.used >= 4 << 20 and usage.used + usage.free <= usage.size <= 64 << 20
    assert " used of " in usage.summary() and usage.summary().endswith(" free")


@pytest.mark.parametrize(
    "said",
    [
        {"mounted": "yes"},
        {"mounted": True, "size": 10, "used": 11, "free": 0},
        {"mounted": True, "size": -1, "used": 0, "free": 0},
        {"mounted": True, "size": 10},
        [],
    ],
)
def test_a_usage_answer_that_is_wrong_is_refused(said):
    from labvm.answers import BadAnswer
    from labvm.data_host import usage_fields

    with pytest.raises(BadAnswer):
        usage_fields(said)
