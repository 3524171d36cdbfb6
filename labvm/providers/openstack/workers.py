"""A Dask cluster's worker servers beside the head: same network, group, key and image; Nova's limits
asked before any boot (servers booted together beyond them are accepted, then put in ERROR)."""

from __future__ import annotations

from ...errors import LabvmError
from ..base import Instance, from_cloud
from ..cloud import OPENSTACK_NAME, WorkerRecipe, cloud_name, tag_number
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
        return sorted(mine, key=lambda s: tag_number(s.metadata.get("labvm:index")))

    def workers(self) -> list[Instance]:
        """This profile's worker servers of this owner, by index; each name ends with -w<index>.  One that
        Nova put in ERROR (a quota recheck, no valid host) has state "error": delete it and boot it again."""
        return [self._instance(s) for s in self._workers_data()]

    def _worker_recipe(self, head: Instance | None, indexes: list[int], image: str, size: str,
                       public_key: str) -> WorkerRecipe:
        """Beside the head: its network, groups and key; its image and flavor unless given.  Refused
        before any boot when Nova's limits have no room for all of them.  Under --plan a head that is
        only planned is the profile's settings."""
        if head is None:
            head_flavor = str(self.settings.get("flavor") or "m1.small")
            image_id, network_id = self._image(image or None), self._network().id
        else:
            server = self._server(head.id)
            head_flavor, image_id = head.size, self._image(image) if image else self._head_image(server)
            network_id = list(self.call(self.conn.network.ports, device_id=server.id))[0].network_id
        flavor = self._flavor(size, key=self._where("cluster.worker_size")) if size else self._flavor(head_flavor)
        self._room_for_workers(indexes, flavor)
        return WorkerRecipe(flavor.name, image_id, {"flavor": flavor, "network": network_id,
                                                    "key": self._keypair(public_key)})

    def _make_worker(self, recipe: WorkerRecipe, index: int) -> str:
        server = self._boot(self._worker_name(index), recipe.beside["flavor"], recipe.image, recipe.beside["network"],
                            recipe.beside["key"], self._worker_labels(index))
        self._floating_ip(server)
        return server.id

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
        kept = len([w for w in self._workers_data() if tag_number(w.metadata.get("labvm:index")) not in indexes])
        raise LabvmError(f"OpenStack quota: room for {fits} of {len(indexes)} workers ({from_cloud(flavor.name)}): {'; '.join(short)}; "
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
