"""The data volume on the VM (hosts.yml data:): scripts/data.sh makes the attached volume the
profile's data folder, over the task's one connection, and says what it did in one JSON line.

That line is the VM's word, read as untrusted: bounded and strict (labvm.answers), each field of the
type labvm expects, the device one of those labvm named, every text cleaned before it is shown.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import answers, steps
from .answers import MAX_BYTES, BadAnswer
from .config import Member
from .errors import LabvmError
from .text import clean

if TYPE_CHECKING:
    from .config import Profile
    from .providers.base import Volume

WAIT_SECONDS = 60  # for the volume's device to appear once the cloud says attached (udev names it)
FILESYSTEMS = ("ext4", "xfs")  # what data.sh mounts; anything else it refuses
# What data.sh may say it changed, each in the words `up` prints.
CHANGES = {
    "folder": "made the folder",
    "formatted": "formatted the blank volume ext4",
    "mounted": "mounted it",
    "grown": "grew its filesystem to the volume's size",
    "fstab": "kept it in /etc/fstab by UUID",
}
_UUID = re.compile(r"[0-9A-Fa-f-]{8,64}")


@dataclass(frozen=True)
class DataMount:
    """The profile's data volume as mounted on the VM, as data.sh answered (every text cleaned)."""

    device: str  # the path of Volume.devices the VM found it at
    uuid: str  # its filesystem's UUID: what /etc/fstab mounts it by
    filesystem: str  # ext4 or xfs
    formatted: bool  # this run formatted it (it was blank)
    mount: str  # the folder, as the VM resolved it
    size: int  # bytes of the filesystem
    free: int  # bytes the login may still write
    did: tuple[str, ...]  # what this run changed (CHANGES' keys); empty: all was in place

    def summary(self) -> str:
        """What `up` says of the mounted volume after "data: ": where, how large, how much is free, what changed."""
        changed = "; ".join(CHANGES[change] for change in self.did) or "already in place"
        return (
            f"{clean(self.mount)}: {_gigabytes(self.size)} {self.filesystem}, {_gigabytes(self.free)} free ({changed})"
        )


def mount_data(host, profile: Profile, volume: Volume) -> DataMount:
    """The attached volume mounted at the profile's data folder (data.sh, as root on the VM): a blank
    volume formatted, one holding a filesystem mounted as it is, never formatted.  Run again, it changes
    nothing.  A refusal or a bad answer is one LabvmError line naming the profile and the next step."""
    again = f"then `inv up --host {Member.head_of(profile.name)}` mounts it"
    if not volume.devices:
        raise LabvmError(f"{profile.name}: the data volume {volume.name} has no device path the VM could find; {again}")
    env = {
        "LABVM_DATA_MOUNT": profile.data_mount,
        "LABVM_DATA_DEVICES": "\n".join(volume.devices),
        "LABVM_DATA_WAIT": str(WAIT_SECONDS),
    }
    try:
        out = steps.run(host, profile, "data.sh", env=env)
    except LabvmError as e:  # host.run's line: the host, the step, the script's last error line, cleaned
        raise LabvmError(f"{e}; {again}") from None
    fix = f"`inv setup --host {Member.head_of(profile.name)}` installs labvm's scripts on the host again"
    what = "the data step's answer"
    parsed = answers.json_line(out, host.label, what, fix)
    return answers.checked(lambda data: data_mount_fields(data, volume.devices), parsed, host.label, what, fix)


@dataclass(frozen=True)
class Usage:
    """The mounted data volume's filesystem as the VM's df sees it, in bytes."""

    size: int
    used: int
    free: int

    def summary(self) -> str:
        """`inv data`'s words for it."""
        return f"{_gigabytes(self.used)} used of {_gigabytes(self.size)}, {_gigabytes(self.free)} free"


def data_usage(host, profile: Profile) -> Usage | None:
    """The data folder's filesystem on the VM (data.sh usage: read only, no root); None where nothing is
    mounted there.  The answer is the VM's word: bounded and strict, as every answer."""
    env = {"LABVM_DATA_MOUNT": profile.data_mount}
    out = steps.run(host, profile, "data.sh", "usage", env=env)
    fix = f"`inv setup --host {Member.head_of(profile.name)}` installs labvm's scripts on the host again"
    what = "the data folder's usage"
    parsed = answers.json_line(out, host.label, what, fix)
    return answers.checked(usage_fields, parsed, host.label, what, fix)


def usage_fields(data) -> Usage | None:
    """data.sh usage's answer, field by field; raises BadAnswer naming the first field that is wrong."""
    data = answers.mapping(data, "usage")
    if not answers.flag(answers.required(data, "usage.", "mounted")["mounted"], "usage.mounted"):
        return None
    data = answers.required(data, "usage.", "size", "used", "free")
    size = answers.whole_number(data["size"], "usage.size", 0, MAX_BYTES)
    return Usage(
        size,
        answers.whole_number(data["used"], "usage.used", 0, size),
        answers.whole_number(data["free"], "usage.free", 0, size),
    )


def data_mount_fields(data, devices: tuple[str, ...]) -> DataMount:
    """data.sh's answer, field by field; raises BadAnswer naming the first field that is wrong."""
    keys = ("device", "uuid", "filesystem", "formatted", "mount", "size", "free", "did")
    data = answers.required(answers.mapping(data, "data"), "data.", *keys)
    if data["device"] not in devices:
        raise BadAnswer(f"data.device: {answers.shown(data['device'])} is not one of the volume's device paths")
    if not isinstance(data["uuid"], str) or not _UUID.fullmatch(data["uuid"]):
        raise BadAnswer(f"data.uuid: {answers.shown(data['uuid'])} is not a filesystem UUID")
    if data["filesystem"] not in FILESYSTEMS:
        raise BadAnswer(f"data.filesystem: {answers.shown(data['filesystem'])} is not one of {', '.join(FILESYSTEMS)}")
    did = data["did"]
    if not isinstance(did, list) or len(did) > len(CHANGES) or any(change not in CHANGES for change in did):
        raise BadAnswer(f"data.did: {answers.shown(did)} is not a list of {', '.join(CHANGES)}")
    size = answers.whole_number(data["size"], "data.size", 0, MAX_BYTES)
    formatted = answers.flag(data["formatted"], "data.formatted")
    if formatted != ("formatted" in did):
        raise BadAnswer(f"data.formatted: {answers.shown(formatted)} disagrees with data.did")
    return DataMount(
        device=data["device"],
        uuid=data["uuid"],
        filesystem=data["filesystem"],
        formatted=formatted,
        mount=answers.text(data["mount"], "data.mount"),
        size=size,
        free=answers.whole_number(data["free"], "data.free", 0, size),
        did=tuple(did),
    )


def _gigabytes(size: int) -> str:
    return f"{size / 1e9:.1f} GB"
