"""A Dask cluster's worker servers beside the head: same network, group, key and image; Nova's limits
asked before any boot (servers booted together beyond them are accepted, then put in ERROR)."""

from __future__ import annotations

from ...errors import LabvmError
from ..base import Instance, in_parallel, partial_cluster
from ..cloud import OPENSTACK_NAME, cloud_name
from .common import QUOTA_HELP, OpenStackBase


class Workers(OpenStackBase):
    """A Dask cluster's worker servers of this profile and owner."""

    def _worker_labels(self, index: int) -> dict[str, str]:
        return {**self.labels, "labvm:cluster": self.profile.name, "labvm:role": "worker", "labvm:index": str(index)}

    def _worker_name(self, index: int) -> str:
        return cloud_name(OPENSTACK_NAME, self.name, f"w{index}")

    def _workers_data(self) -> list:
        wanted = {"labvm:cluster": self.profile.name, "labvm:role": "worker"}
        mine = [s for s in self._mine() if all((s.metadata or {}).get(k) == v for k, v in wanted.items())]
        return sorted(mine, key=lambda s: int(s.metadata.get("labvm:index", 0)))

    def workers(self) -> list[Instance]:
        """This profile's worker servers of this owner, by index; each name ends with -w<index>.  One that
        Nova put in ERROR (a quota recheck, no valid host) has state "error": delete it and boot it again."""
        return [self._instance(s) for s in self._workers_data()]

    def create_workers(self, indexes: list[int], image: str, size: str, public_key: str) -> list[Instance]:
        """Workers of these indexes, booted in parallel on the head's network with its groups and key.
        image "" is the head's image, size "" its flavor.  Refused before any boot when Nova's limits
        have no room for all of them; one that fails leaves the others made."""

        flavor, image_id, network_id = self._beside_head(image, size)
        self._room_for_workers(indexes, flavor)
        key_name = self._keypair(public_key)

        def boot(index: int):
            server = self._boot(self._worker_name(index), flavor, image_id, network_id, key_name,
                                self._worker_labels(index))
            self._floating_ip(server)
            return server.id

        made, failed = in_parallel(boot, indexes)
        if failed:
            raise LabvmError(partial_cluster(self.profile.name, made, failed))
        if self.plan:
            return [self.planned_instance(self._worker_name(index), flavor.name) for index in indexes]
        ids = set(made.values())
        return [self._instance(s) for s in self._workers_data() if s.id in ids]

    def _beside_head(self, image: str, size: str):
        """The flavor, image and network of new workers: the head's unless given.  Under --plan a head
        that is only planned is the profile's settings."""
        found = self.find()
        if found is None and not self.plan:
            raise LabvmError(f"profile {self.profile.name!r} has no VM to make workers beside; "
                             f"`inv up --host {self.profile.name}`")
        if found is None:
            head_flavor = str(self.settings.get("flavor") or "m1.small")
            image_id, network_id = self._image(image or None), self._network().id
        else:
            head = self._server(found.id)
            head_flavor, image_id = found.size, self._image(image) if image else self._head_image(head)
            network_id = list(self.call(self.conn.network.ports, device_id=head.id))[0].network_id
        flavor = self._flavor(size, key=self._where("cluster.worker_size")) if size else self._flavor(head_flavor)
        return flavor, image_id, network_id

    def _room_for_workers(self, indexes: list[int], flavor) -> None:
        """Nova's absolute limits hold all the new workers, or none is booted: servers booted together
        beyond them are accepted and then put in ERROR by Nova's quota recheck (nova/conductor/manager.py)."""
        nova = self.call(self.conn.compute.get_limits).absolute
        each = [("instances", nova.instances_used, nova.instances, 1),
                ("cores", nova.total_cores_used, nova.total_cores, flavor.vcpus),
                ("RAM MB", nova.total_ram_used, nova.total_ram, flavor.ram)]
        bounded = [(what, used, limit, need) for what, used, limit, need in each
                   if limit is not None and limit >= 0 and need]
        fits = min([len(indexes), *(max(0, (limit - used) // need) for _, used, limit, need in bounded)])
        if fits == len(indexes):
            return
        short = [f"{what}: {used} of {limit} used, each needs {need}" for what, used, limit, need in bounded
                 if used + len(indexes) * need > limit]
        kept = len([w for w in self._workers_data() if int(w.metadata.get("labvm:index", 0)) not in indexes])
        raise LabvmError(f"OpenStack quota: room for {fits} of {len(indexes)} workers ({flavor.name}): {'; '.join(short)}; "
                         f"`inv cluster --host {self.profile.name} --workers {kept + fits}`, or {QUOTA_HELP}")

    def cluster_image(self) -> str:
        """The image new workers are made from (the head's); "" without a head."""
        found = self.find()
        return self._head_image(self._server(found.id)) if found else ""

    def _head_image(self, head) -> str:
        """The image the head booted from: Nova's image of an image-backed server; for a volume-backed
        one (Nova shows no image) Cinder's volume_image_metadata of its boot volume."""
        if head.image and head.image.get("id"):
            return head.image["id"]
        for attached in head.attached_volumes or []:
            volume = self.call(self.conn.block_storage.get_volume, attached["id"])
            if (volume.volume_image_metadata or {}).get("image_id"):
                return volume.volume_image_metadata["image_id"]
        raise LabvmError(f"cannot tell the image of {head.id}; set {self._where('image')} and pass --from-image")

    def terminate_workers(self) -> None:
        """Every worker of this profile and owner with its floating IP; the group too once the head is gone."""
        workers = self._workers_data()
        for server in workers:
            self.mutate(f"delete server {server.id} ({server.name})", self.conn.compute.delete_server, server)
        for server in workers:
            self._wait_deleted(server)
            self._done(f"openstack: deleted worker {server.name}")
            for volume in server.attached_volumes or []:
                self._report_left_volume(volume["id"])
            self._release_ips(server)
        gone = {s.id for s in workers}
        if workers and not [s for s in self._mine() if s.id not in gone]:
            self._delete_ssh_group()
