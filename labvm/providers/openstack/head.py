"""The head's life: find, create, start, stop (or shelve), resize in place, terminate."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone
from typing import Any

from ...config import Profile
from ...errors import LabvmError
from ..base import Instance
from ..cloud import Head, planned_instance, unknown
from .api import SHELVED, OpenStackApi, fault, instance_of, planned, planned_server
from .images import Images
from .names import OpenStackNames
from .network import Network
from .settings import OpenStackSettings


class OpenStackHead(Head):
    """The head: found by its metadata, made, started, stopped or shelved, resized, deleted."""

    def __init__(
        self,
        api: OpenStackApi,
        settings: OpenStackSettings,
        names: OpenStackNames,
        network: Network,
        images: Images,
        profile: Profile,
    ):
        super().__init__(api)
        self.api: OpenStackApi = api
        self.settings, self.names, self.network, self.images, self.profile = settings, names, network, images, profile
        self.conn = api.conn

    def mine(self) -> list:
        """Every server of this profile and owner: the head and its workers (they carry the labels too)."""
        return self.api.servers(self.names.labels)

    def flavor(self, wanted: str, key: str = "") -> Any:
        """Nova's flavor of this name, else the closest names it has."""
        flavor = self.api.call(self.conn.compute.find_flavor, wanted, ignore_missing=True)
        if flavor is None:
            names = [f.name for f in self.api.call(self.conn.compute.flavors)]
            raise unknown(key or self.profile.key("flavor"), "flavor", wanted, names, "list: openstack flavor list")
        return flavor

    def find(self) -> Instance | None:
        """The newest server of this profile and owner that is no worker."""
        heads = [s for s in self.mine() if (s.metadata or {}).get("labvm:role") != "worker"]
        return instance_of(max(heads, key=lambda s: s.created_at or "")) if heads else None

    def create(self, image: str | None, public_key: str) -> Instance:
        """Booted on the profile's network with labvm's group and key pair; its floating IP attached."""
        flavor = self.flavor(self.settings.flavor)
        image_id = self.images.boot_image(image)
        network = self.network.lab_network()
        key_name = self.network.keypair(public_key)
        server = self.boot(self.names.name, flavor, image_id, network.id, key_name, self.names.labels)
        self.network.floating_ip(server)
        if planned(server):
            return planned_instance(self.names.name, flavor.name)
        return instance_of(self.api.server(server.id))

    def boot(self, name: str, flavor: Any, image_id: str, network_id: str, key_name: str, metadata: dict) -> Any:
        """One server of this profile, the head or a worker, waited for until ACTIVE."""
        groups = [*({"name": g} for g in self.settings.security_groups), {"name": self.network.ssh_group().name}]
        request: dict[str, Any] = dict(
            name=name,
            flavor_id=flavor.id,
            networks=[{"uuid": network_id}],
            key_name=key_name,
            security_groups=groups,
            metadata=metadata,
        )
        if self.settings.volume_size:
            request["block_device_mapping"] = [
                {
                    "boot_index": 0,
                    "uuid": image_id,
                    "source_type": "image",
                    "destination_type": "volume",
                    "volume_size": self.settings.volume_size,
                    "delete_on_termination": True,
                }
            ]
        else:
            request["image_id"] = image_id
        self.api.said(f"openstack: creating {flavor.name} {name} in {self.api.entry}")
        server = self.api.mutate(
            f"boot {flavor.name} {name} in {self.api.entry}",
            self.conn.compute.create_server,
            **request,
            planned=planned_server(name, flavor, metadata),
        )
        server = self.api.wait(server, ("ACTIVE",), f"{name} is ACTIVE")
        for volume in server.attached_volumes or []:  # Nova's boot volume: labelled so audit finds it if left
            self.api.mutate(
                f"label boot volume {volume['id']}",
                self.conn.block_storage.set_volume_metadata,
                volume["id"],
                **metadata,
            )
        return server

    def start(self, instance: Instance) -> Instance:
        """Started or unshelved, waited for, its floating IP attached; a server in ERROR is refused with its fault."""
        if planned(instance):  # made under this same --plan: it would be running
            return instance
        server = self.api.server(instance.id)
        if server.status == "ERROR":
            raise LabvmError(f"{instance.id} is in ERROR: {fault(server)}; {self.api.replace_hint(server)}")
        if server.status == "SHUTOFF":
            self.api.mutate(f"start {instance.id}", self.conn.compute.start_server, server)
        elif server.status in SHELVED:
            self.api.mutate(f"unshelve {instance.id}", self.conn.compute.unshelve_server, server)
        if server.status != "ACTIVE" or server.task_state:
            server = self.api.wait(server, ("ACTIVE",), f"{instance.id} is ACTIVE")
        self.network.floating_ip(server)
        return instance_of(server if self.api.plan else self.api.server(instance.id))

    def stop(self, instance: Instance) -> Instance:
        """Stopped, then shelved where stop_action says so."""
        shelve = self.settings.stop_action == "shelve"
        server = self.api.server(instance.id)
        if server.status == "ACTIVE":
            self.api.mutate(f"stop {instance.id}", self.conn.compute.stop_server, server)
            server = self.api.wait(server, ("SHUTOFF",), f"{instance.id} is SHUTOFF")
        if shelve and server.status == "SHUTOFF":
            # Offloading frees the host, not the quota: Nova keeps counting the cores and RAM of an
            # offloaded server unless it counts usage from placement (nova/conf/quota.py
            # count_usage_from_placement, default False).  The disk stays.
            self.api.mutate(f"shelve {instance.id}", self.conn.compute.shelve_server, server)
            server = self.api.wait(server, SHELVED, f"{instance.id} is shelved")
        return instance_of(server)

    def terminate(self, instance: Instance, keep_ip: bool) -> None:
        """The server (a head or a worker, in ERROR too), its labvm group once no server of this profile
        and owner is left, and unless keep_ip its floating IP."""
        server = self.api.server(instance.id)
        # Nova deletes only the volumes marked so (the boot volume): a data volume stays, and is not "left".
        volumes = [v["id"] for v in server.attached_volumes or [] if v.get("delete_on_termination")]
        self.api.mutate(f"delete server {instance.id} ({server.name})", self.conn.compute.delete_server, server)
        self.wait_deleted(server)
        for volume_id in volumes:
            self.report_left_volume(volume_id)
        if not [s for s in self.mine() if s.id != server.id]:  # the group serves the whole cluster
            self.network.delete_ssh_group()
        if not keep_ip:
            self.network.release_ips(server)

    def wait_deleted(self, server: Any) -> None:
        """Until Nova has deleted the server."""
        if self.api.plan:
            self.api.wait_until(f"{server.id} is deleted", None, 600)
            return
        self.api.call(self.conn.compute.wait_for_delete, server, interval=2, wait=600)

    def report_left_volume(self, volume_id: str) -> None:
        """Nova deletes a delete_on_termination volume only when Cinder lets it: never one with snapshots."""
        if self.api.plan:
            return
        volume = self.api.call(self.conn.block_storage.find_volume, volume_id, ignore_missing=True)
        if volume is not None and volume.status != "deleting":  # Cinder deletes asynchronously
            print(
                f"openstack: boot volume {volume_id} stays: the snapshots of labvm images depend on it; "
                f"`inv audit` shows the command that deletes them and it"
            )

    def resize_target(self, instance: Instance, size: str) -> str:
        """The flavor checked; its name as Instance.size says it."""
        flavor = self.flavor(size, key="--size")
        return instance.size if instance.size == flavor.id else flavor.name  # an older Nova shows the flavor's id

    def change_size(self, instance: Instance, size: str) -> Instance:
        """Nova resizes in place, running or not, then waits for a confirm (no stop of labvm's)."""
        flavor = self.flavor(size, key="--size")
        server = self.api.server(instance.id)
        before = server.status  # a SHUTOFF server is resized and stays SHUTOFF after the confirm
        self.api.mutate(f"resize {instance.id} to {flavor.name}", self.conn.compute.resize_server, server, flavor.id)
        server = self.api.wait(server, ("VERIFY_RESIZE", before), f"{instance.id} is resized")
        if server.status != "VERIFY_RESIZE":
            # The conductor rolled back (nova/conductor/manager.py _cold_migrate: NoValidHost); the fault
            # is not shown while the server is not ERROR, the instance actions have it.
            raise LabvmError(
                f"resize to {flavor.name} did not happen: Nova put {instance.id} back to {server.status} on "
                f"{instance_of(server).size} (no host had room: NoValidHost, most often); "
                f"`{self.api.cli} server event list {instance.id}` tells why"
            )
        self.api.mutate(f"confirm the resize of {instance.id}", self.conn.compute.confirm_server_resize, server)
        server = self.api.wait(server, (before,), f"{instance.id} runs as {flavor.name}")
        self.api.said(f"openstack: {instance.id} is {flavor.name}, {server.status} as before")
        if server.status == "ACTIVE":
            self.network.floating_ip(server)
        if self.api.plan:
            return dataclasses.replace(instance, size=flavor.name)
        return instance_of(self.api.server(instance.id))

    def last_start(self, instance: Instance) -> datetime:
        """OpenStackApi.last_start, the action log read too: launched_at alone would let an image older than
        a resume pass the terminate guard (now, for a server that never launched)."""
        return self.api.last_start(self.api.server(instance.id)) or datetime.now(timezone.utc)
