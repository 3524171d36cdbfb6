"""The profile's images: the image a server boots from, snapshots (with the Cinder snapshots of a
boot-from-volume server), the list, and their deletion with the Cinder snapshots and boot volume behind them."""

from __future__ import annotations

import json
import time
from types import SimpleNamespace
from typing import Any

from ...config import Profile
from ...errors import LabvmError
from ..base import IMAGE_AVAILABLE, IMAGE_FAILED, Image, Instance
from ..cloud import PLANNED, cloud_name
from .api import IMAGE_WAIT, SHELVED, OpenStackApi, image_state
from .names import OPENSTACK_NAME, OpenStackNames
from .settings import OpenStackSettings


def volume_snapshots(image: Any) -> list[str]:
    """The Cinder snapshots a boot-from-volume image names (its block_device_mapping, a JSON string)."""
    mapping = (image.properties or {}).get("block_device_mapping") or "[]"
    entries = json.loads(mapping) if isinstance(mapping, str) else mapping
    return [e["snapshot_id"] for e in entries if e.get("snapshot_id")]


class Images:
    """labvm's images of this profile and owner in Glance."""

    def __init__(self, api: OpenStackApi, settings: OpenStackSettings, names: OpenStackNames, profile: Profile):
        self.api, self.settings, self.names, self.profile = api, settings, names, profile
        self.conn = api.conn

    def boot_image(self, image: str | None) -> str:
        """The id of the image a server boots from: `image`, else the profile's."""
        wanted = image or self.settings.image
        found = self.api.call(self.conn.image.find_image, wanted, ignore_missing=True)
        if found is None:
            raise LabvmError(f"{self.profile.key('image')}: no image {wanted!r} (list: openstack image list)")
        return found.id

    def make(self, instance: Instance, name: str, share: tuple[str, ...], no_reboot: bool) -> Image:
        """An image of the server (Nova's createImage: no reboot), and its volume snapshots labelled."""
        server = self.api.server(instance.id)
        if server.status in SHELVED:  # Nova's createImage allows ACTIVE, SHUTOFF, PAUSED, SUSPENDED only
            raise LabvmError(
                f"{instance.id} is shelved: `inv start --host {self.profile.name}` first, "
                f"then `inv snapshot --host {self.profile.name}`"
            )
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        image_name = cloud_name(OPENSTACK_NAME, name, self.profile.name, stamp)
        self.api.said(f"openstack: making image {image_name} ...")
        image = self.api.mutate(
            f"make image {image_name} of {instance.id}",
            self.conn.compute.create_server_image,
            server,
            image_name,
            metadata=self.names.labels,
            planned=SimpleNamespace(id=PLANNED, name=image_name, status="queued", properties={}, created_at=""),
        )
        image = self.wait_image(image)
        for snapshot_id in volume_snapshots(image):
            # A boot-from-volume image is only a pointer to these (nova/compute/api.py snapshot_volume_backed).
            self.api.mutate(
                f"label volume snapshot {snapshot_id}",
                self.conn.block_storage.set_snapshot_metadata,
                snapshot_id,
                **self.names.labels,
            )
            snapshot = self.api.call(self.conn.block_storage.get_snapshot, snapshot_id)
            self.api.call(
                self.conn.block_storage.wait_for_status,
                snapshot,
                "available",
                failures=["error"],
                interval=2,
                wait=IMAGE_WAIT,
            )
        return Image(image.id, image.name, image.created_at or "", image_state(image.status))

    def wait_image(self, image: Any) -> Any:
        """Until Glance has the image active.  openstacksdk's own wait (cloud/_image.py wait_for_image)
        ends only on "error", a status Glance never has: a failed upload is "killed" and would be
        waited on for half an hour."""
        if self.api.plan:
            self.api.wait_until(f"image {image.name} is active", None, IMAGE_WAIT)
            return image

        def active() -> Any:
            current = self.api.call(self.conn.image.get_image, image.id)
            if image_state(current.status) == IMAGE_FAILED:
                raise LabvmError(
                    f"image {image.id} went {current.status} in Glance (the snapshot failed); "
                    f"`{self.api.cli} image delete {image.id}`, then `inv snapshot --host {self.profile.name}` "
                    f"again"
                )
            return current if image_state(current.status) == IMAGE_AVAILABLE else None

        return self.api.wait_until(
            f"image {image.id} is active", active, IMAGE_WAIT, late=f"`{self.api.cli} image show {image.id}`"
        )

    def listed(self) -> list[Image]:
        """labvm's images of this profile and owner, oldest first."""
        mine = [
            i
            for i in self.api.call(self.conn.image.images)
            if all((i.properties or {}).get(k) == v for k, v in self.names.labels.items())
        ]
        return sorted(
            (Image(i.id, i.name, i.created_at or "", image_state(i.status)) for i in mine), key=lambda i: i.created
        )

    def delete(self, image: Image) -> None:
        """The image, its Cinder snapshots (Glance does not know them), then a boot volume they alone kept."""
        snapshot_ids = volume_snapshots(self.api.call(self.conn.image.get_image, image.id))
        self.api.mutate(f"delete image {image.id}", self.conn.image.delete_image, image.id)
        for snapshot_id in snapshot_ids:
            snapshot = self.api.call(self.conn.block_storage.find_snapshot, snapshot_id, ignore_missing=True)
            if snapshot is None:
                continue
            self.api.mutate(f"delete volume snapshot {snapshot_id}", self.conn.block_storage.delete_snapshot, snapshot)
            if self.api.plan:
                self.api.wait_until(f"volume snapshot {snapshot_id} is deleted", None, 600)
            else:
                self.api.call(self.conn.block_storage.wait_for_delete, snapshot, interval=2, wait=600)
            self.api.said(f"openstack: deleted volume snapshot {snapshot_id}")
            self.delete_left_volume(snapshot.volume_id, set(snapshot_ids))

    def delete_left_volume(self, volume_id: str, deleted: set[str]) -> None:
        """A labelled, unattached boot volume with no snapshot but the `deleted` ones."""
        volume = self.api.call(self.conn.block_storage.find_volume, volume_id, ignore_missing=True)
        if (
            volume is None
            or volume.status != "available"
            or volume.attachments
            or any((volume.metadata or {}).get(k) != v for k, v in self.names.labels.items())
            or (volume.metadata or {}).get("labvm:role") == "data"  # imaged with the VM, kept on purpose
            or [s for s in self.api.call(self.conn.block_storage.snapshots, volume_id=volume_id) if s.id not in deleted]
        ):
            return
        self.api.mutate(f"delete boot volume {volume_id}", self.conn.block_storage.delete_volume, volume)
        self.api.said(f"openstack: deleted boot volume {volume_id}, left by a deleted server")
