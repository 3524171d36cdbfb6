"""The profile's data volume (hosts.yml data:) in Cinder: found by its metadata, made in the server's
availability zone, attached and detached through Nova's os-volume_attachments (the attach a user makes: Nova
tells Cinder), grown (os-extend), backed up as Cinder snapshots carrying the profile's metadata, restored as a new
volume from one, deleted; each change waited for on Cinder's own states."""

from __future__ import annotations

import dataclasses
import re
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any

from ...config import Profile
from ...errors import LabvmError
from ..base import (
    BACKUP_CREATING,
    BACKUP_FAILED,
    BACKUP_READY,
    VOLUME_ATTACHED,
    VOLUME_AVAILABLE,
    VOLUME_BUSY,
    VOLUME_CREATING,
    Backup,
    Instance,
    Volume,
    from_cloud,
    parse_time,
)
from ..cloud import PLANNED, backup_stamp
from .api import OpenStackApi
from .names import OpenStackNames

# Cinder's volume statuses (https://docs.openstack.org/api-ref/block-storage/v3/#volumes-volumes, "Volume
# statuses") in labvm's words; every other one (reserved, attaching, detaching, deleting, extending, error...)
# is VOLUME_BUSY.
STATES = {
    "creating": VOLUME_CREATING,
    "downloading": VOLUME_CREATING,
    "available": VOLUME_AVAILABLE,
    "in-use": VOLUME_ATTACHED,
}
WAIT = 600  # seconds a volume's change may take
# The guest's names of the volume, by the serial Nova gives it: the Cinder volume id (nova/virt/block_device.py
# sets connection_info['serial'] = volume_id; nova/virt/libvirt/volume/volume.py puts it in the disk's
# <serial>).  virtio-blk's serial holds 20 bytes (VIRTIO_BLK_ID_BYTES, linux include/uapi/linux/virtio_blk.h),
# udev names the disk virtio-<serial> (60-persistent-storage.rules); under virtio-scsi QEMU's VPD page 0x83
# carries the serial cut to 20 too (hw/scsi/scsi-disk.c), named scsi-0QEMU_QEMU_HARDDISK_<serial>.
SERIAL = 20
BY_ID = ("/dev/disk/by-id/virtio-{}", "/dev/disk/by-id/scsi-0QEMU_QEMU_HARDDISK_{}")
# Cinder's snapshot statuses (cinder/objects/fields.py SnapshotStatus) in labvm's words: a volume is made only
# from an available snapshot; every other status (creating, deleting, updating, backing-up, restoring, ...) is
# not ready yet.
BACKUP_STATES = {"available": BACKUP_READY, "error": BACKUP_FAILED, "error_deleting": BACKUP_FAILED}
BACKUP_WAIT = 3600  # seconds a snapshot may take: a backend that copies the volume copies all of it
# Cinder extends an in-use volume from microversion 3.42 (cinder/api/microversions.py VOLUME_EXTEND_INUSE;
# cinder/api/contrib/volume_actions.py _extend): before it, only an available one.
EXTEND_IN_USE = "3.42"
PROGRESS = re.compile(r"\d{1,3}%")  # os-extended-snapshot-attributes:progress, as Cinder words it ("45%")
EPOCH = datetime.fromtimestamp(0, timezone.utc)  # a snapshot without created_at: the oldest, pruned first


def volume_state(status: str) -> str:
    """Cinder's status in labvm's words."""
    return STATES.get(status, VOLUME_BUSY)


def devices(volume_id: str) -> tuple[str, ...]:
    """Where the guest finds the volume: its by-id names only.  Nova's device name ("/dev/vdb") is "not
    guaranteed to be the device name the guest sees" (https://docs.openstack.org/api-ref/compute/#attach-a-volume-
    to-an-instance), and on a flavor with an ephemeral disk /dev/vdb is that disk: never offered."""
    serial = volume_id[:SERIAL]
    return tuple(name.format(serial) for name in BY_ID)  # Volume (a Shown) cleans them


def volume_of(volume: Any) -> Volume:
    """Cinder's volume in labvm's words (Volume cleans its text); attached_to and devices from the attachment
    Cinder lists (an attached one only: cinder/api/v3/views/volumes.py _get_attachments)."""
    attachment = (volume.attachments or [{}])[0]
    server = attachment.get("server_id") or ""
    return Volume(
        volume.id,
        volume.name or "",
        volume.size,
        volume_state(volume.status),
        volume.availability_zone or "",
        volume.volume_type or "",
        server,
        devices(volume.id) if server else (),
    )


def backup_state(status: str) -> str:
    """Cinder's snapshot status in labvm's words."""
    return BACKUP_STATES.get(status, BACKUP_CREATING)


def backup_of(snapshot: Any) -> Backup:
    """Cinder's snapshot in labvm's words (Backup cleans its text); its size is the volume's when it was taken."""
    return Backup(
        snapshot.id,
        snapshot.name or "",
        snapshot.size,
        backup_state(snapshot.status),
        parse_time(snapshot.created_at) or EPOCH,
        snapshot.volume_id or "",
    )


class OpenStackVolumes:
    """The data volume of this profile and owner (the VolumesPart of cloud.Parts)."""

    # A Cinder snapshot lives inside its volume: Cinder deletes no volume that has one (cinder/volume/api.py
    # API.delete without cascade: volume_has_snapshots_filter), and a cascade delete takes the snapshots with it.
    backups_outlive_volume = False

    def __init__(self, api: OpenStackApi, names: OpenStackNames, profile: Profile):
        self.api, self.names, self.profile = api, names, profile
        self.conn = api.conn

    def find(self) -> Volume | None:
        """The oldest volume with the profile's, owner's and data role's metadata (Cinder filters no metadata
        for labvm: read all, as the servers are)."""
        labels = self.names.data_labels
        mine = [
            v
            for v in self.api.call(self.conn.block_storage.volumes)
            if all((v.metadata or {}).get(k) == value for k, value in labels.items())
        ]
        return volume_of(min(mine, key=lambda v: v.created_at or "")) if mine else None

    def create(self, zone: str) -> Volume:
        """Made in the server's zone (data.size GB, data.type or Cinder's default type), waited for until
        available.  Cinder refuses a zone it lacks (400) and one volume beyond its quota (413), in one line."""
        assert self.profile.data is not None  # CloudProvider._volumes: only with data:
        size, kind, name = self.profile.data.size, self.profile.data.type, self.names.data_name
        request: dict[str, Any] = dict(size=size, name=name, metadata=self.names.data_labels)
        request.update({"availability_zone": zone} if zone else {}, **({"volume_type": kind} if kind else {}))
        made = self.api.mutate(
            f"create data volume {name} ({size} GB{f' {kind}' if kind else ''}) in {zone or 'the default zone'}",
            self.conn.block_storage.create_volume,
            **request,
            planned=SimpleNamespace(id=PLANNED),
        )
        if self.api.plan:
            self.api.wait_until(f"data volume {name} is available", None, WAIT)
            return Volume(PLANNED, name, size, VOLUME_AVAILABLE, zone, kind)
        volume = self._wait(made.id, "available", f"data volume {made.id} is available")
        self.api.said(f"openstack: made data volume {made.id} ({size} GB) in {volume.availability_zone}")
        return volume_of(volume)

    def attach(self, volume: Volume, instance: Instance) -> Volume:
        """Attached through Nova (POST os-volume_attachments), waited for until Cinder says in-use."""
        self.api.mutate(
            f"attach data volume {volume.id} to {instance.id}",
            self.conn.compute.create_volume_attachment,
            instance.id,
            volume=volume.id,
        )
        if self.api.plan:
            self.api.wait_until(f"data volume {volume.id} is attached", None, WAIT)
            return dataclasses.replace(volume, state=VOLUME_ATTACHED, attached_to=instance.id)
        return volume_of(self._wait(volume.id, "in-use", f"data volume {volume.id} is attached to {instance.id}"))

    def detach(self, volume: Volume) -> Volume:
        """Detached through Nova (DELETE os-volume_attachments), waited for until Cinder says available."""
        self.api.mutate(
            f"detach data volume {volume.id} from {volume.attached_to}",
            self.conn.compute.delete_volume_attachment,
            volume.attached_to,
            volume.id,
            ignore_missing=False,
        )
        if self.api.plan:
            self.api.wait_until(f"data volume {volume.id} is detached", None, WAIT)
            return dataclasses.replace(volume, state=VOLUME_AVAILABLE, attached_to="", devices=())
        return volume_of(self._wait(volume.id, "available", f"data volume {volume.id} is detached"))

    def delete(self, volume: Volume) -> None:
        """Deleted (Cinder refuses an attached one: 400), waited for until gone.  A volume with snapshots is
        refused here in one line: Cinder deletes none (cinder/volume/api.py API.delete without cascade), and a
        Cinder snapshot, a backup included, lives and dies with its volume."""
        self._refuse_snapshots(volume)
        self.api.mutate(
            f"delete data volume {volume.id} ({volume.name})",
            self.conn.block_storage.delete_volume,
            volume.id,
            ignore_missing=False,
        )
        what = f"data volume {volume.id} is deleted"
        if self.api.plan:
            self.api.wait_until(what, None, WAIT)
            return

        def gone() -> bool:
            current = self.api.call(self.conn.block_storage.find_volume, volume.id, ignore_missing=True)
            if current is not None:
                self._refuse_error(current)
            return current is None

        self.api.wait_until(what, gone, WAIT, late=f"`{self.api.cli} volume show {volume.id}`")
        self.api.said(f"openstack: deleted data volume {volume.id}")

    def grow(self, volume: Volume, size_gb: int) -> Volume:
        """Enlarged through os-extend, waited for until Cinder shows the new size.  Attached, Cinder tells Nova
        once it has grown it (cinder/volume/manager.py extend_volume: the volume-extended event), and Nova tells
        the guest.  Refused here where Cinder would refuse: an attached volume before microversion 3.42."""
        if volume.state == VOLUME_ATTACHED and not self._grows_attached():
            raise LabvmError(
                f"data --grow: this cloud's Cinder grows an attached volume only from API microversion "
                f"{EXTEND_IN_USE} on, and offers less; nothing changed; {self._grow_detached(size_gb)}"
            )
        self.api.mutate(
            f"grow data volume {volume.id} from {volume.size_gb} to {size_gb} GB",
            self.conn.block_storage.extend_volume,
            volume.id,
            size_gb,
        )
        what = f"data volume {volume.id} has {size_gb} GB"
        if self.api.plan:
            self.api.wait_until(what, None, WAIT)
            return dataclasses.replace(volume, size_gb=size_gb)

        def grown() -> Any:
            current = self.api.call(self.conn.block_storage.get_volume, volume.id)
            if current.status == "extending":
                return None
            if current.status.startswith("error"):
                raise LabvmError(
                    f"openstack: growing data volume {volume.id} left it {from_cloud(current.status)} in Cinder "
                    f"(`{self.api.cli} volume message list` tells why); its data stays; only the cloud's admins "
                    f"reset that state (`openstack volume set --state`): ask them, then try again"
                )
            if current.size < size_gb:  # the scheduler found no backend to grow it (an attached one: NoValidBackend)
                raise LabvmError(
                    f"openstack: Cinder did not grow data volume {volume.id} (`{self.api.cli} volume message list` "
                    f"tells why: a backend that cannot grow an attached volume finds no valid backend); nothing "
                    f"changed; {self._grow_detached(size_gb)}"
                )
            return current

        current = self.api.wait_until(what, grown, WAIT, late=f"`{self.api.cli} volume show {volume.id}`")
        self.api.said(f"openstack: grew data volume {volume.id} to {size_gb} GB")
        return volume_of(current)

    def _grows_attached(self) -> bool:
        """Whether the microversion openstacksdk sends Cinder is 3.42 or later (the cloud's maximum, or clouds.yaml's
        block_storage_api_version where it sets one: openstack/utils.py supports_microversion weighs both)."""
        from openstack import utils

        return bool(self.api.call(utils.supports_microversion, self.conn.block_storage, EXTEND_IN_USE))

    def _grow_detached(self, size_gb: int) -> str:
        """The way to grow it where Cinder grows no attached volume: with the server gone (the volume stays)."""
        host = self.profile.name
        return (
            f"grow it detached: `inv terminate --host {host}` keeps the data volume, then "
            f"`inv data --host {host} --grow {size_gb}`, then `inv up --host {host}`"
        )

    def backups(self) -> list[Backup]:
        """The snapshots with the profile's, owner's and data-backup role's metadata, any status (openstacksdk's
        snapshots() takes no metadata filter: read all, as find() reads the volumes)."""
        labels = self.names.backup_labels
        return [
            backup_of(s)
            for s in self.api.call(self.conn.block_storage.snapshots)
            if all((s.metadata or {}).get(k) == value for k, value in labels.items())
        ]

    def back_up(self, volume: Volume) -> Backup:
        """A Cinder snapshot of the volume, waited for until available.  Attached and in use, it is
        crash-consistent (what a power cut would leave: a journaling filesystem replays its journal).  Cinder
        snapshots an in-use volume only with force=true before microversion 3.66, and from 3.66 on without it,
        refusing force=false (400) and ignoring force=true (cinder/api/v3/snapshots.py create,
        SNAPSHOT_IN_USE_FLAG_MSG); openstacksdk sends snapshots at 3.65 at most (block_storage/v3/snapshot.py
        _max_microversion): force=true holds on both sides of 3.66."""
        name = self.names.backup_name(backup_stamp())
        made = self.api.mutate(
            f"back up data volume {volume.id} as snapshot {name}",
            self.conn.block_storage.create_snapshot,
            volume_id=volume.id,
            name=name,
            metadata=self.names.backup_labels,
            is_forced=True,
            planned=SimpleNamespace(id=PLANNED),
        )
        if self.api.plan:
            self.api.wait_until(f"backup {name} is available", None, BACKUP_WAIT)
            return Backup(PLANNED, name, volume.size_gb, BACKUP_READY, datetime.now(timezone.utc), volume.id)
        snapshot = self._wait_backup(made.id)
        self.api.said(f"openstack: backed up data volume {volume.id} as snapshot {snapshot.id} ({snapshot.size} GB)")
        return backup_of(snapshot)

    def _wait_backup(self, snapshot_id: str) -> Any:
        """Until Cinder shows the snapshot available, its progress said as it moves; error ends the wait."""
        said = {"progress": ""}

        def ready() -> Any:
            current = self.api.call(self.conn.block_storage.get_snapshot, snapshot_id)
            state = backup_state(current.status)
            if state == BACKUP_FAILED:
                raise LabvmError(
                    f"openstack: backup {snapshot_id} went {from_cloud(current.status)} in Cinder "
                    f"(`{self.api.cli} volume message list` tells why); `{self.api.cli} volume snapshot delete "
                    f"{snapshot_id}`, then `inv data --host {self.profile.name} --backup` again"
                )
            progress = current.progress or ""
            if state == BACKUP_CREATING and PROGRESS.fullmatch(progress) and progress != said["progress"]:
                said["progress"] = progress
                print(f"openstack: backup {snapshot_id} is {progress} done", flush=True)
            return current if state == BACKUP_READY else None

        return self.api.wait_until(
            f"backup {snapshot_id} is available",
            ready,
            BACKUP_WAIT,
            late=f"`{self.api.cli} volume snapshot show {snapshot_id}`",
        )

    def delete_backup(self, backup: Backup) -> None:
        """The snapshot deleted (Cinder deletes an available or error one: cinder/volume/api.py delete_snapshot),
        waited for until gone; error_deleting ends the wait in one line, and so does available again: the API set
        it deleting before answering, and the backend refused (SnapshotIsBusy: cinder/volume/manager.py
        delete_snapshot puts it back), as one does whose volumes made from a snapshot depend on it (RBD before
        Zed: cinder/volume/drivers/rbd.py has flattened such volumes before deleting the snapshot only since
        1a675c9aa)."""
        self.api.mutate(
            f"delete backup {backup.id} ({backup.name})",
            self.conn.block_storage.delete_snapshot,
            backup.id,
            ignore_missing=False,
        )
        what = f"backup {backup.id} is deleted"
        if self.api.plan:
            self.api.wait_until(what, None, WAIT)
            return

        def gone() -> bool:
            current = self.api.call(self.conn.block_storage.find_snapshot, backup.id, ignore_missing=True)
            if current is not None and backup_state(current.status) == BACKUP_FAILED:
                raise LabvmError(
                    f"openstack: deleting backup {backup.id} left it {from_cloud(current.status)} in Cinder "
                    f"(`{self.api.cli} volume message list` tells why); only the cloud's admins reset that state: "
                    f"ask them, then `{self.api.cli} volume snapshot delete {backup.id}`"
                )
            if current is not None and current.status == "available":
                self._refuse_kept(backup)
            return current is None

        self.api.wait_until(what, gone, WAIT, late=f"`{self.api.cli} volume snapshot show {backup.id}`")
        self.api.said(f"openstack: deleted backup {backup.id}")

    def restore(self, backup: Backup, zone: str) -> Volume:
        """A new volume from the backup's snapshot (POST /volumes with snapshot_id) at the snapshot's size, data.type
        where hosts.yml names one (else Cinder gives it the snapshot's volume's type, not its default:
        cinder/volume/flows/api/create_volume.py _get_volume_type), with the data volume's metadata and the
        backup's id, waited for until available.  Cinder makes it only in the zone of the snapshot's volume
        (cloned_volume_same_az, default True: create_volume.py _extract_availability_zones): another is refused
        here before anything is made."""
        assert self.profile.data is not None  # CloudProvider._volumes: only with data:
        home = self._zone_of(backup)
        if home and zone != home:
            raise LabvmError(
                f"data --restore {backup.id}: Cinder makes a volume from a backup only in its volume's zone, "
                f"{home}, not {zone}; nothing made: `inv data --host {self.profile.name} --restore {backup.id} "
                f"--zone {home}`"
            )
        kind, size, name = self.profile.data.type, backup.size_gb, self.names.restored_name(backup_stamp())
        request: dict[str, Any] = dict(snapshot_id=backup.id, size=size, name=name, availability_zone=zone)
        request.update(metadata=self.names.restored_labels(backup.id), **({"volume_type": kind} if kind else {}))
        made = self.api.mutate(
            f"restore backup {backup.id} as data volume {name} ({size} GB) in {zone}",
            self.conn.block_storage.create_volume,
            **request,
            planned=SimpleNamespace(id=PLANNED),
        )
        if self.api.plan:
            self.api.wait_until(f"data volume {name} is available", None, WAIT)
            return Volume(PLANNED, name, size, VOLUME_AVAILABLE, zone, kind)
        volume = self._wait(made.id, "available", f"data volume {made.id} is available", self._again(backup))
        self.api.said(f"openstack: restored backup {backup.id} as data volume {made.id} ({size} GB) in {zone}")
        return volume_of(volume)

    def _zone_of(self, backup: Backup) -> str:
        """The zone of the volume the backup's snapshot lives in (it always has one: a snapshot cannot outlive it)."""
        if not backup.volume_id or backup.volume_id == PLANNED:
            return ""
        return self.api.call(self.conn.block_storage.get_volume, backup.volume_id).availability_zone or ""

    def _again(self, backup: Backup) -> str:
        """The command that finishes a restore once what stopped it is gone."""
        return f"`inv data --host {self.profile.name} --restore {backup.id}`"

    def restored_from(self, backup: Backup) -> Volume | None:
        """The oldest volume with the data volume's metadata and this backup's id (a retired one has another role),
        waited for until available where it is still being made; one in error is refused in one line (it would
        become the data volume), as its next step is the user's."""
        labels = self.names.restored_labels(backup.id)
        mine = [
            v
            for v in self.api.call(self.conn.block_storage.volumes)
            if v.status != "deleting" and all((v.metadata or {}).get(k) == value for k, value in labels.items())
        ]
        if not mine:
            return None
        volume = min(mine, key=lambda v: v.created_at or "")
        self._refuse_error(volume, self._again(backup))
        if volume_state(volume.status) == VOLUME_CREATING and not self.api.plan:
            volume = self._wait(volume.id, "available", f"data volume {volume.id} is available", self._again(backup))
        return volume_of(volume)

    def retire(self, volume: Volume) -> None:
        """Its role metadata set to data-replaced: openstacksdk's set_volume_metadata POSTs /volumes/ID/metadata,
        which merges (cinder/api/v3/volume_metadata.py create), so the profile's and owner's stay for audit."""
        self.api.mutate(
            f"retire data volume {volume.id} ({volume.name}): labvm:role data-replaced",
            self.conn.block_storage.set_volume_metadata,
            volume.id,
            **self.names.replaced_labels,
        )
        self.api.said(f"openstack: kept the replaced data volume {volume.id}; `inv audit` lists it")

    def storage_check(self, need_gb: int) -> str:
        """Cinder's project limits a member reads (GET /limits: gigabytes, which counts snapshots too unless
        no_snapshot_gb_quota, and volumes; -1 is no limit: https://docs.openstack.org/api-ref/block-storage/v3/#limits-limits),
        with need_gb more and one volume more where one is needed.  A per-type quota (gigabytes_<type>) is only in
        os-quota-sets, which Cinder's policy shows an admin: not checked."""
        limits = self.api.call(self.conn.block_storage.get_limits).absolute
        counts = [
            ("gigabytes", limits.total_gigabytes_used, limits.max_total_volume_gigabytes, need_gb),
            ("volumes", limits.total_volumes_used, limits.max_total_volumes, 1 if need_gb else 0),
        ]
        over = [f"{name}: {used} of {limit} in use, {more} more needed" for name, used, limit, more in counts]
        if any(0 <= limit < used + more for _, used, limit, more in counts):
            raise LabvmError(
                f"Cinder quota {'; '.join(over)}: delete volumes or snapshots (`inv audit` lists labvm's), or ask the "
                f"cloud's admins for more"
            )
        shown = [f"{name} {used} of {'no limit' if limit < 0 else limit}" for name, used, limit, _ in counts]
        return f"Cinder quota in use: {', '.join(shown)}; {need_gb} GB more fit"

    def _refuse_kept(self, backup: Backup) -> None:
        """One line naming the volumes made from the backup, which its backend keeps it for."""
        made = [from_cloud(v.id) for v in self.api.call(self.conn.block_storage.volumes) if v.snapshot_id == backup.id]
        raise LabvmError(
            f"openstack: Cinder kept backup {backup.id}: its backend deletes no snapshot a volume made from it "
            f"depends on ({', '.join(made) or 'none listed'}; `{self.api.cli} volume message list` tells why); keep "
            f"it, or delete those volumes first, or ask the cloud's admins to flatten them"
        )

    def _refuse_snapshots(self, volume: Volume) -> None:
        """One line naming the volume's snapshots (its backups, or those behind a labvm image of a boot-from-
        volume server it was attached to), which Cinder would refuse the delete for."""
        if volume.id == PLANNED:
            return
        snapshots = self.api.call(self.conn.block_storage.snapshots, volume_id=volume.id)
        if snapshots:
            ids = ", ".join(from_cloud(s.id) for s in snapshots)
            raise LabvmError(
                f"openstack: data volume {volume.id} has {len(snapshots)} snapshot(s) ({ids}); Cinder deletes no "
                f"volume with snapshots, and a backup there lives only as long as its volume: delete them first "
                f"(`{self.api.cli} volume snapshot delete ID`; `inv images` lists images behind the others), or "
                f"keep the volume"
            )

    def _wait(self, volume_id: str, status: str, what: str, again: str = "") -> Any:
        """Until Cinder shows the volume in `status`; a status of error ends the wait in one line (again: the
        command to run once the volume in error is deleted; `inv up` by default)."""

        def there() -> Any:
            current = self.api.call(self.conn.block_storage.get_volume, volume_id)
            self._refuse_error(current, again)
            return current if current.status == status else None

        return self.api.wait_until(what, there, WAIT, late=f"`{self.api.cli} volume show {volume_id}`")

    def _refuse_error(self, volume: Any, again: str = "") -> None:
        """Cinder's error statuses (error, error_attaching, error_detaching, error_deleting, ...) end a wait:
        Cinder keeps the reason in its user messages (https://docs.openstack.org/api-ref/block-storage/v3/#messages-messages)."""
        if not volume.status.startswith("error"):
            return
        volume_id = from_cloud(volume.id)
        raise LabvmError(
            f"openstack: data volume {volume_id} went {from_cloud(volume.status)} in Cinder "
            f"(`{self.api.cli} volume message list` tells why); `{self.api.cli} volume delete {volume_id}`, "
            f"then {again or f'`inv up --host {self.profile.name}`'} again"
        )
