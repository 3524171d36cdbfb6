"""The head's life: find, create, start, stop (or shelve), resize, terminate; its images (snapshot,
list, delete with the Cinder snapshots and boot volume behind them)."""

from __future__ import annotations

import dataclasses
import json
import time
from types import SimpleNamespace

from ...errors import LabvmError
from ..base import IMAGE_AVAILABLE, IMAGE_FAILED, Image, Instance
from ..cloud import OPENSTACK_NAME, cloud_name
from .common import IMAGE_WAIT, PLANNED, SHELVED, OpenStackBase, image_state, planned


class Lifecycle(OpenStackBase):
    """The head: found by its metadata, made, started, stopped or shelved, resized, deleted; its images."""

    def find(self) -> Instance | None:
        heads = [s for s in self._mine() if (s.metadata or {}).get("labvm:role") != "worker"]
        return self._instance(max(heads, key=lambda s: s.created_at or "")) if heads else None

    def create(self, image: str | None = None, public_key: str = "") -> Instance:
        flavor = self._flavor(str(self.settings.get("flavor") or "m1.small"))
        image_id = self._image(image)
        network = self._network()
        key_name = self._keypair(public_key)
        server = self._boot(self.name, flavor, image_id, network.id, key_name, self.labels)
        self._floating_ip(server)
        if planned(server):
            return self.planned_instance(self.name, flavor.name)
        return self._instance(self._server(server.id))

    def _boot(self, name: str, flavor, image_id: str, network_id: str, key_name: str, metadata: dict):
        """One server of this profile, the head or a worker, waited for until ACTIVE."""
        groups = [*({"name": str(g)} for g in self.settings.get("security_groups") or []), {"name": self._ssh_group().name}]
        request = dict(name=name, flavor_id=flavor.id, networks=[{"uuid": network_id}], key_name=key_name,
                       security_groups=groups, metadata=metadata)
        if self.settings.get("volume_size"):
            request["block_device_mapping"] = [{
                "boot_index": 0, "uuid": image_id, "source_type": "image", "destination_type": "volume",
                "volume_size": int(self.settings["volume_size"]), "delete_on_termination": True,
            }]
        else:
            request["image_id"] = image_id
        self._done(f"openstack: creating {flavor.name} {name} in {self.entry}")
        server = self.mutate(f"boot {flavor.name} {name} in {self.entry}", self.conn.compute.create_server, **request,
                             planned=self._planned_server(name, flavor, metadata))
        server = self._wait(server, ("ACTIVE",), f"{name} is ACTIVE")
        for volume in server.attached_volumes or []:  # Nova's boot volume: labelled so audit finds it if left
            self.mutate(f"label boot volume {volume['id']}", self.conn.block_storage.set_volume_metadata,
                        volume["id"], **metadata)
        return server

    def start(self, inst: Instance) -> Instance:
        if planned(inst):  # made under this same --plan: it would be running
            return inst
        server = self._server(inst.id)
        if server.status == "ERROR":
            raise LabvmError(f"{inst.id} is in ERROR: {self._fault(server)}; {self._replace_hint()}")
        if server.status == "SHUTOFF":
            self.mutate(f"start {inst.id}", self.conn.compute.start_server, server)
        elif server.status in SHELVED:
            self.mutate(f"unshelve {inst.id}", self.conn.compute.unshelve_server, server)
        if server.status != "ACTIVE" or server.task_state:
            server = self._wait(server, ("ACTIVE",), f"{inst.id} is ACTIVE")
        self._floating_ip(server)
        return self._instance(server if self.plan else self._server(inst.id))

    def stop(self, inst: Instance) -> Instance:
        shelve = self.settings.get("stop_action") == "shelve"
        server = self._server(inst.id)
        if server.status == "ACTIVE":
            self.mutate(f"stop {inst.id}", self.conn.compute.stop_server, server)
            server = self._wait(server, ("SHUTOFF",), f"{inst.id} is SHUTOFF")
        if shelve and server.status == "SHUTOFF":
            # Offloading frees the host, not the quota: Nova keeps counting the cores and RAM of an
            # offloaded server unless it counts usage from placement (nova/conf/quota.py
            # count_usage_from_placement, default False).  The disk stays.
            self.mutate(f"shelve {inst.id}", self.conn.compute.shelve_server, server)
            server = self._wait(server, SHELVED, f"{inst.id} is shelved")
        return self._instance(server)

    def terminate(self, inst: Instance, keep_ip: bool = False) -> None:
        """The server (a head or a worker, in ERROR too), its labvm group once no server of this profile
        and owner is left, and unless keep_ip its floating IP."""
        server = self._server(inst.id)
        volumes = [v["id"] for v in server.attached_volumes or []]
        self.mutate(f"delete server {inst.id} ({server.name})", self.conn.compute.delete_server, server)
        self._wait_deleted(server)
        for volume_id in volumes:
            self._report_left_volume(volume_id)
        if not [s for s in self._mine() if s.id != server.id]:  # the group serves the whole cluster
            self._delete_ssh_group()
        if not keep_ip:
            self._release_ips(server)

    def _wait_deleted(self, server) -> None:
        if self.plan:
            self.wait_until(f"{server.id} is deleted", None, 600)
            return
        self.call(self.conn.compute.wait_for_delete, server, interval=2, wait=600)

    def _report_left_volume(self, volume_id: str) -> None:
        """Nova deletes a delete_on_termination volume only when Cinder lets it: never one with snapshots."""
        if self.plan:
            return
        volume = self.call(self.conn.block_storage.find_volume, volume_id, ignore_missing=True)
        if volume is not None and volume.status != "deleting":  # Cinder deletes asynchronously
            print(f"openstack: boot volume {volume_id} stays: the snapshots of labvm images depend on it; "
                  f"`inv audit` shows the command that deletes them and it")

    def _resize_target(self, inst: Instance, size: str) -> str:
        flavor = self._flavor(size, key="--size")
        return inst.size if inst.size == flavor.id else flavor.name  # an older Nova shows the flavor's id

    def _change_size(self, inst: Instance, size: str) -> Instance:
        """Nova resizes in place, running or not, then waits for a confirm (no stop of labvm's)."""
        flavor = self._flavor(size, key="--size")
        server = self._server(inst.id)
        before = server.status  # a SHUTOFF server is resized and stays SHUTOFF after the confirm
        self.mutate(f"resize {inst.id} to {flavor.name}", self.conn.compute.resize_server, server, flavor.id)
        server = self._wait(server, ("VERIFY_RESIZE", before), f"{inst.id} is resized")
        if server.status != "VERIFY_RESIZE":
            # The conductor rolled back (nova/conductor/manager.py _cold_migrate: NoValidHost); the fault
            # is not shown while the server is not ERROR, the instance actions have it.
            raise LabvmError(
                f"resize to {flavor.name} did not happen: Nova put {inst.id} back to {server.status} on "
                f"{self._instance(server).size} (no host had room: NoValidHost, most often); "
                f"`{self.cli} server event list {inst.id}` tells why"
            )
        self.mutate(f"confirm the resize of {inst.id}", self.conn.compute.confirm_server_resize, server)
        server = self._wait(server, (before,), f"{inst.id} runs as {flavor.name}")
        self._done(f"openstack: {inst.id} is {flavor.name}, {server.status} as before")
        if server.status == "ACTIVE":
            self._floating_ip(server)
        if self.plan:
            return dataclasses.replace(inst, size=flavor.name)
        return self._instance(self._server(inst.id))

    def last_start(self, inst: Instance):
        from datetime import datetime, timezone

        launched = self._server(inst.id).launched_at
        stamp = datetime.fromisoformat(launched) if launched else datetime.now(timezone.utc)
        return stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)

    def snapshot(self, inst: Instance, name: str, share: tuple[str, ...] = (), no_reboot: bool = False) -> Image:
        server = self._server(inst.id)
        if server.status in SHELVED:  # Nova's createImage allows ACTIVE, SHUTOFF, PAUSED, SUSPENDED only
            raise LabvmError(f"{inst.id} is shelved: `inv start --host {self.profile.name}` first, "
                             f"then `inv snapshot --host {self.profile.name}`")
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        image_name = cloud_name(OPENSTACK_NAME, name, self.profile.name, stamp)
        self._done(f"openstack: making image {image_name} ...")
        image = self.mutate(f"make image {image_name} of {inst.id}", self.conn.compute.create_server_image,
                            server, image_name, metadata=self.labels,
                            planned=SimpleNamespace(id=PLANNED, name=image_name, status="queued", properties={},
                                                    created_at=""))
        image = self._wait_image(image)
        for snapshot_id in self._volume_snapshots(image):
            # A boot-from-volume image is only a pointer to these (nova/compute/api.py snapshot_volume_backed).
            self.mutate(f"label volume snapshot {snapshot_id}", self.conn.block_storage.set_snapshot_metadata,
                        snapshot_id, **self.labels)
            snapshot = self.call(self.conn.block_storage.get_snapshot, snapshot_id)
            self.call(self.conn.block_storage.wait_for_status, snapshot, "available", failures=["error"],
                      interval=2, wait=IMAGE_WAIT)
        return Image(image.id, image.name, image.created_at or "", image_state(image.status))

    def _wait_image(self, image):
        """Until Glance has the image active.  openstacksdk's own wait (cloud/_image.py wait_for_image)
        ends only on "error", a status Glance never has: a failed upload is "killed" and would be
        waited on for half an hour."""
        if self.plan:
            self.wait_until(f"image {image.name} is active", None, IMAGE_WAIT)
            return image

        def active():
            current = self.call(self.conn.image.get_image, image.id)
            if image_state(current.status) == IMAGE_FAILED:
                raise LabvmError(f"image {image.id} went {current.status} in Glance (the snapshot failed); "
                                 f"`{self.cli} image delete {image.id}`, then `inv snapshot --host {self.profile.name}` "
                                 f"again")
            return current if image_state(current.status) == IMAGE_AVAILABLE else None

        return self.wait_until(f"image {image.id} is active", active, IMAGE_WAIT,
                               late=f"`{self.cli} image show {image.id}`")

    @staticmethod
    def _volume_snapshots(image) -> list[str]:
        """The Cinder snapshots a boot-from-volume image names (its block_device_mapping, a JSON string)."""
        mapping = (image.properties or {}).get("block_device_mapping") or "[]"
        entries = json.loads(mapping) if isinstance(mapping, str) else mapping
        return [e["snapshot_id"] for e in entries if e.get("snapshot_id")]

    def images(self) -> list[Image]:
        mine = [
            i for i in self.call(self.conn.image.images)
            if all((i.properties or {}).get(k) == v for k, v in self.labels.items())
        ]
        return sorted((Image(i.id, i.name, i.created_at or "", image_state(i.status)) for i in mine),
                      key=lambda i: i.created)

    def delete_image(self, image: Image) -> None:
        """The image, its Cinder snapshots (Glance does not know them), then a boot volume they alone kept."""
        snapshot_ids = self._volume_snapshots(self.call(self.conn.image.get_image, image.id))
        self.mutate(f"delete image {image.id}", self.conn.image.delete_image, image.id)
        for snapshot_id in snapshot_ids:
            snapshot = self.call(self.conn.block_storage.find_snapshot, snapshot_id, ignore_missing=True)
            if snapshot is None:
                continue
            self.mutate(f"delete volume snapshot {snapshot_id}", self.conn.block_storage.delete_snapshot, snapshot)
            if self.plan:
                self.wait_until(f"volume snapshot {snapshot_id} is deleted", None, 600)
            else:
                self.call(self.conn.block_storage.wait_for_delete, snapshot, interval=2, wait=600)
            self._done(f"openstack: deleted volume snapshot {snapshot_id}")
            self._delete_left_volume(snapshot.volume_id, set(snapshot_ids))

    def _delete_left_volume(self, volume_id: str, deleted: set[str]) -> None:
        """A labelled, unattached boot volume with no snapshot but the `deleted` ones."""
        volume = self.call(self.conn.block_storage.find_volume, volume_id, ignore_missing=True)
        if (volume is None or volume.status != "available" or volume.attachments
                or any((volume.metadata or {}).get(k) != v for k, v in self.labels.items())
                or [s for s in self.call(self.conn.block_storage.snapshots, volume_id=volume_id) if s.id not in deleted]):
            return
        self.mutate(f"delete boot volume {volume_id}", self.conn.block_storage.delete_volume, volume)
        self._done(f"openstack: deleted boot volume {volume_id}, left by a deleted server")
