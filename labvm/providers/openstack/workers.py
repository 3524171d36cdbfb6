"""A Dask cluster's worker servers beside the head: same network, group, key and image; Nova's and
Cinder's limits asked before any boot (servers booted together beyond them are accepted, then put in ERROR)."""

from __future__ import annotations

from typing import Any

from ...config import Profile
from ...errors import LabvmError
from ..base import Instance, from_cloud
from ..cloud import WorkerRecipe, Workers, tag_number
from .api import QUOTA_HELP, OpenStackApi, instance_of
from .head import OpenStackHead
from .images import Images
from .names import OpenStackNames
from .network import Network
from .settings import OpenStackSettings


class OpenStackWorkers(Workers):
    """A Dask cluster's worker servers of this profile and owner."""

    def __init__(
        self,
        api: OpenStackApi,
        head: OpenStackHead,
        settings: OpenStackSettings,
        names: OpenStackNames,
        network: Network,
        images: Images,
        profile: Profile,
    ):
        super().__init__(api, head, profile)
        self.api: OpenStackApi = api
        self.head: OpenStackHead = head
        self.settings, self.names, self.network, self.images = settings, names, network, images
        self.conn = api.conn

    def name(self, index: int) -> str:
        """The head's name and -w<index>."""
        return self.names.worker(index)

    def data(self) -> list:
        """Nova's servers of the workers, by index."""
        wanted = {"labvm:cluster": self.profile.name, "labvm:role": "worker"}
        mine = [s for s in self.head.mine() if all((s.metadata or {}).get(k) == v for k, v in wanted.items())]
        return sorted(mine, key=lambda s: tag_number(s.metadata.get("labvm:index")))

    def found(self) -> list[Instance]:
        """This profile's worker servers of this owner, by index; each name ends with -w<index>.  One that
        Nova put in ERROR (a quota recheck, no valid host) has state "error": delete it and boot it again."""
        return [instance_of(s) for s in self.data()]

    def recipe(self, head: Instance | None, indexes: list[int], image: str, size: str, public_key: str) -> WorkerRecipe:
        """Beside the head: its network, groups and key; its image and flavor unless given.  Refused
        before any boot when Nova's limits have no room for all of them.  Under --plan a head that is
        only planned is the profile's settings."""
        if head is None:
            head_flavor = self.settings.flavor
            image_id, network_id = self.images.boot_image(image or None), self.network.lab_network().id
        else:
            server = self.api.server(head.id)
            head_flavor, image_id = head.size, self.images.boot_image(image) if image else self.head_image(server)
            network_id = self.api.call(self.conn.network.ports, device_id=server.id)[0].network_id
        flavor = (
            self.head.flavor(size, key=self.profile.key("cluster.worker_size"))
            if size
            else self.head.flavor(head_flavor)
        )
        self.room_for(indexes, flavor)
        return WorkerRecipe(
            flavor.name, image_id, {"flavor": flavor, "network": network_id, "key": self.network.keypair(public_key)}
        )

    def make(self, recipe: WorkerRecipe, index: int) -> str:
        """One worker booted beside the head, waited for, its floating IP attached."""
        server = self.head.boot(
            self.name(index),
            recipe.beside["flavor"],
            recipe.image,
            recipe.beside["network"],
            recipe.beside["key"],
            self.names.worker_labels(index),
        )
        self.network.floating_ip(server)
        return server.id

    def room_for(self, indexes: list[int], flavor: Any) -> None:
        """Nova's and Cinder's absolute limits hold all the new workers, or none is booted: servers booted
        together beyond Nova's are accepted and then put in ERROR by its quota recheck
        (nova/conductor/manager.py), and a boot volume Cinder refuses aborts the build on the host
        (nova/compute/manager.py _build_resources: ERROR, "Quota exceeded for resources: volumes")."""
        nova = self.api.call(self.conn.compute.get_limits).absolute
        each = [
            ("instances", nova.instances_used, nova.instances, 1),
            ("cores", nova.total_cores_used, nova.total_cores, flavor.vcpus),
            ("RAM MB", nova.total_ram_used, nova.total_ram, flavor.ram),
            *self.volume_room(),
        ]
        bounded = [
            (what, used, limit, need) for what, used, limit, need in each if limit is not None and limit >= 0 and need
        ]
        fits = min([len(indexes), *(max(0, (limit - used) // need) for _, used, limit, need in bounded)])
        if fits == len(indexes):
            return
        short = [
            f"{what}: {used} of {limit} used, each needs {need}"
            for what, used, limit, need in bounded
            if used + len(indexes) * need > limit
        ]
        kept = len([w for w in self.data() if tag_number(w.metadata.get("labvm:index")) not in indexes])
        raise LabvmError(
            f"OpenStack quota: room for {fits} of {len(indexes)} workers ({from_cloud(flavor.name)}): "
            f"{'; '.join(short)}; "
            f"`inv cluster --host {self.profile.name} --workers {kept + fits}`, or {QUOTA_HELP}"
        )

    def volume_room(self) -> list:
        """Cinder's volumes and gigabytes and what each worker's boot volume (volume_size) takes of them."""
        size = self.settings.volume_size
        cinder = self.api.volume_limits() if size else None
        if cinder is None:
            return []
        return [
            ("volumes", cinder.total_volumes_used, cinder.max_total_volumes, 1),
            ("volume gigabytes", cinder.total_gigabytes_used, cinder.max_total_volume_gigabytes, size),
        ]

    def image(self) -> str:
        """The image new workers are made from (the head's); "" without a head."""
        found = self.head.find()
        return self.head_image(self.api.server(found.id)) if found else ""

    def head_image(self, head: Any) -> str:
        """The image the head booted from: Nova's image of an image-backed server; for a volume-backed
        one (Nova shows no image) Cinder's volume_image_metadata of its boot volume."""
        if head.image and head.image.get("id"):
            return head.image["id"]
        for attached in head.attached_volumes or []:
            volume = self.api.call(self.conn.block_storage.get_volume, attached["id"])
            if (volume.volume_image_metadata or {}).get("image_id"):
                return volume.volume_image_metadata["image_id"]
        raise LabvmError(f"cannot tell the image of {head.id}; set {self.profile.key('image')} and pass --from-image")

    def terminate(self) -> None:
        """Every worker of this profile and owner with its floating IP; the group too once the head is gone."""
        workers = self.data()
        for server in workers:
            self.api.mutate(f"delete server {server.id} ({server.name})", self.conn.compute.delete_server, server)
        for server in workers:
            self.head.wait_deleted(server)
            self.api.said(f"openstack: deleted worker {server.name}")
            for volume in server.attached_volumes or []:
                self.head.report_left_volume(volume["id"])
            self.network.release_ips(server)
        gone = {s.id for s in workers}
        if workers and not [s for s in self.head.mine() if s.id not in gone]:
            self.network.delete_ssh_group()

    def allow(self) -> None:
        """Every TCP port between the servers of labvm's group (the head and its workers), and only
        between them: the rule's source is the group itself (remote_group_id), no address range."""
        self.network.allow_cluster()
