"""`inv audit`: every server, image, data volume and its backups, left boot volume, orphan volume snapshot and
floating IP labvm made in this project, whatever its profile or owner."""

from __future__ import annotations

from typing import Any

from ...config.member import shown
from ..base import Resource, parse_time
from .api import SHELVED, STATES, OpenStackApi, instance_of
from .images import volume_snapshots


class OpenStackInventory:
    """`inv audit`'s listing."""

    def __init__(self, api: OpenStackApi):
        self.api, self.conn = api, api.conn
        self.entry, self.cli = api.entry, api.cli

    def resources(self) -> list[Resource]:
        """Every server, image, data volume and backup, left boot volume, orphan volume snapshot and floating IP
        labvm made in this project, whatever its profile or owner."""
        found = []
        for server in self.api.call(self.conn.compute.servers, details=True):
            labels = server.metadata or {}
            if "labvm:profile" in labels:
                member = labels["labvm:profile"]
                if labels.get("labvm:role") == "worker":  # named as the session names a worker: cades+w2
                    member = shown(labels.get("labvm:cluster", member), labels.get("labvm:index", "?"))
                state = "shelved" if server.status in SHELVED else STATES.get(server.status, server.status.lower())
                found.append(
                    Resource(
                        "openstack",
                        self.entry,
                        "instance",
                        server.id,
                        member,
                        labels.get("labvm:owner", ""),
                        state,
                        self.api.last_start(server) or parse_time(server.created_at),  # "not started for"
                        f"{self.cli} server delete {server.id}",
                        type=instance_of(server).size,
                    )
                )
        images = [i for i in self.api.call(self.conn.image.images) if "labvm:profile" in (i.properties or {})]
        for image in images:
            labels = image.properties
            found.append(
                Resource(
                    "openstack",
                    self.entry,
                    "image",
                    image.id,
                    labels["labvm:profile"],
                    labels.get("labvm:owner", ""),
                    image.status,
                    parse_time(image.created_at),
                    f"{self.cli} image delete {image.id}",
                    size_gb=image.size / 1024**3 if image.size else None,
                )
            )
        if self.conn.has_service("block-storage"):
            found += self._volume_inventory({s: i.id for i in images for s in volume_snapshots(i)})
        for ip in self.api.call(self.conn.network.ips):
            if (ip.description or "").startswith("labvm:"):
                profile, _, owner = ip.description.removeprefix("labvm:").partition(":")
                found.append(
                    Resource(
                        "openstack",
                        self.entry,
                        "address",
                        ip.id,
                        profile,
                        owner,
                        "attached" if ip.port_id else "unattached",
                        parse_time(ip.created_at),
                        f"{self.cli} floating ip delete {ip.id}",
                        address=ip.floating_ip_address,
                    )
                )
        return found

    def _volume_inventory(self, image_of: dict[str, str]) -> list[Resource]:
        """Data volumes and their backups; boot volumes whose server is gone (kept by snapshots: Nova's delete
        ignores Cinder's refusal), data volumes a restore replaced (role data-replaced: loose volumes, billed until
        deleted) and volume snapshots whose image is gone; a volume's delete command deletes
        what Cinder needs gone first (its snapshots: cinder/volume/api.py API.delete refuses a volume with any)."""
        snapshots = [
            s for s in self.api.call(self.conn.block_storage.snapshots) if "labvm:profile" in (s.metadata or {})
        ]
        found: list[Resource] = []
        for volume in self.api.call(self.conn.block_storage.volumes):
            labels = volume.metadata or {}
            steps = []
            for snapshot in [s for s in snapshots if s.volume_id == volume.id]:
                if snapshot.id in image_of:
                    steps.append(f"{self.cli} image delete {image_of[snapshot.id]}")
                steps.append(f"{self.cli} volume snapshot delete {snapshot.id}")
            if labels.get("labvm:role") == "data":
                found.append(self._data_volume(volume, steps))
                continue
            if "labvm:profile" not in labels or volume.attachments:
                continue
            found.append(
                Resource(
                    "openstack",
                    self.entry,
                    "volume",
                    volume.id,
                    labels["labvm:profile"],
                    labels.get("labvm:owner", ""),
                    "unattached",
                    parse_time(volume.created_at),
                    " && ".join([*steps, f"{self.cli} volume delete {volume.id}"]),
                    size_gb=volume.size,
                )
            )
        for snapshot in snapshots:
            if snapshot.id not in image_of:
                labels = snapshot.metadata
                found.append(
                    Resource(
                        "openstack",
                        self.entry,
                        "backup" if labels.get("labvm:role") == "data-backup" else "snapshot",
                        snapshot.id,
                        labels["labvm:profile"],
                        labels.get("labvm:owner", ""),
                        snapshot.status,
                        parse_time(snapshot.created_at),
                        f"{self.cli} volume snapshot delete {snapshot.id}",
                        size_gb=snapshot.size,
                    )
                )
        return found

    def _data_volume(self, volume: Any, snapshot_steps: list[str]) -> Resource:
        """A profile's data volume (hosts.yml data:), attached or not: kept on purpose, not a loose volume.  Its
        delete command detaches it first where it is attached (Cinder refuses an in-use volume: 400) and deletes
        its snapshots, its backups among them (a Cinder snapshot cannot outlive its volume)."""
        labels = volume.metadata
        servers = [a["server_id"] for a in volume.attachments or [] if a.get("server_id")]
        steps = [f"{self.cli} server remove volume {server} {volume.id}" for server in servers] + snapshot_steps
        return Resource(
            "openstack",
            self.entry,
            "data",
            volume.id,
            labels.get("labvm:profile", ""),
            labels.get("labvm:owner", ""),
            "attached" if servers else "unattached",
            parse_time(volume.created_at),
            " && ".join([*steps, f"{self.cli} volume delete {volume.id}"]),
            size_gb=volume.size,
            type=volume.volume_type or "",
        )
