"""The profile's data volume (hosts.yml data:) in Cinder: found by its metadata, made in the server's
availability zone, attached and detached through Nova's os-volume_attachments (the attach a user makes: Nova
tells Cinder), deleted; each change waited for on Cinder's own states."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace
from typing import Any

from ...config import Profile
from ...errors import LabvmError
from ..base import VOLUME_ATTACHED, VOLUME_AVAILABLE, VOLUME_BUSY, VOLUME_CREATING, Instance, Volume, from_cloud
from ..cloud import PLANNED
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


class OpenStackVolumes:
    """The data volume of this profile and owner (the VolumesPart of cloud.Parts)."""

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
        """Deleted (Cinder refuses an attached one: 400), waited for until gone."""
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

    def _wait(self, volume_id: str, status: str, what: str) -> Any:
        """Until Cinder shows the volume in `status`; a status of error ends the wait in one line."""

        def there() -> Any:
            current = self.api.call(self.conn.block_storage.get_volume, volume_id)
            self._refuse_error(current)
            return current if current.status == status else None

        return self.api.wait_until(what, there, WAIT, late=f"`{self.api.cli} volume show {volume_id}`")

    def _refuse_error(self, volume: Any) -> None:
        """Cinder's error statuses (error, error_attaching, error_detaching, error_deleting, ...) end a wait:
        Cinder keeps the reason in its user messages (https://docs.openstack.org/api-ref/block-storage/v3/#messages-messages)."""
        if not volume.status.startswith("error"):
            return
        volume_id = from_cloud(volume.id)
        raise LabvmError(
            f"openstack: data volume {volume_id} went {from_cloud(volume.status)} in Cinder "
            f"(`{self.api.cli} volume message list` tells why); `{self.api.cli} volume delete {volume_id}`, "
            f"then `inv up --host {self.profile.name}` again"
        )
