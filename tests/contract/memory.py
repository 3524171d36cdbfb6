"""An in-memory cloud and its labvm provider: the contract's primitives over dicts, for fast tests.

`MemoryCloud` is the cloud's side: what it holds and every mutating call it served (`requests`, as the
HTTP fakes log theirs); it refuses names its rules do not accept, as the fakes do.  `MemoryProvider` is a
`CloudProvider` whose parts are built from the template's pieces only (owner naming, the mutation gate,
waits, did-you-mean, the create-workers outline, the resize flow), so a behaviour the contract suite shows
on it is the template's, not a cloud's.  It is also the smallest example of a cloud's package.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from datetime import datetime, timezone

from dataclasses import dataclass, field

from labvm.config import Profile
from labvm.config.kinds import FLAG, TEXT
from labvm.config import schema
from labvm.errors import LabvmError
from labvm.providers.base import (
    BACKUP_READY,
    IMAGE_AVAILABLE,
    VOLUME_ATTACHED,
    VOLUME_AVAILABLE,
    Backup,
    Check,
    Description,
    Image,
    Instance,
    Resource,
    Settings,
    Tags,
    Volume,
)
from labvm.providers.cloud import (
    CloudApi,
    backup_stamp,
    CloudProvider,
    Head,
    NameRules,
    Parts,
    WorkerRecipe,
    Workers,
    cloud_name,
    no_head,
    owner,
    planned_instance,
    unknown,
)

# The memory cloud's names are as strict as the strictest cloud's (GCE, RFC 1035), so a name that
# passes here is not passing by leniency.
MEMORY_NAME = NameRules(r"a-z0-9\-", 63, lower=True, first_letter=True)
SIZES = {"small": 2, "medium": 4, "large": 8}  # size -> vCPUs
ALL_PORTS, SSH = "tcp all", "tcp 22"
ZONE = "memory-a"  # the memory cloud's one place
CLUSTER = "cluster"  # a rule's source: the machines carrying the same group


class MemoryCloud:
    """The cloud: instances, images, addresses and group rules in dicts; `requests` logs each change."""

    def __init__(self):
        self.instances: dict[str, dict] = {}
        self.images: dict[str, dict] = {}
        self.addresses: dict[str, str] = {}  # reserved address name -> its IP
        self.groups: dict[str, set] = {}  # group name -> {(ports, source)}
        self.volumes: dict[str, dict] = {}
        self.snapshots: dict[str, dict] = {}
        self.storage_gb = 1000  # the account's storage quota
        self.requests: list[tuple] = []
        self._ids = itertools.count(1)
        self._ips = itertools.count(10)

    def _served(self, operation: str, *args) -> None:
        self.requests.append((operation, *args))

    @staticmethod
    def _check_name(name: str) -> None:
        if not re.fullmatch(r"[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?", name):
            raise LabvmError(f"memory: invalid name {name!r}")

    def _ip(self) -> str:
        return f"203.0.113.{next(self._ips)}"

    # -- mutations (each logged) -------------------------------------------------------------------
    def run_instance(
        self, name: str, size: str, image: str, network: str, labels: dict, group: str, address: str = ""
    ) -> str:
        self._served("run_instance", name)
        self._check_name(name)
        instance_id = f"m-{next(self._ids)}"
        self.instances[instance_id] = dict(
            name=name,
            size=size,
            image=image,
            network=network,
            labels=dict(labels),
            group=group,
            state="running",
            static=address,
            address=self.addresses.get(address) or self._ip(),
            private_address=f"10.0.0.{next(self._ips)}",
            started=datetime.now(timezone.utc),
            zone=ZONE,
        )
        return instance_id

    def create_volume(self, name: str, size_gb: int, zone: str, labels: dict) -> str:
        self._served("create_volume", name)
        self._check_name(name)
        volume_id = f"v-{next(self._ids)}"
        self.volumes[volume_id] = dict(name=name, size=size_gb, zone=zone, labels=dict(labels), attached_to="")
        return volume_id

    def attach_volume(self, volume_id: str, instance_id: str) -> None:
        self._served("attach_volume", volume_id, instance_id)
        volume = self.volumes[volume_id]
        if volume["attached_to"] or volume["zone"] != self.instances[instance_id]["zone"]:
            raise LabvmError(f"memory: {volume_id} cannot attach to {instance_id}")
        volume["attached_to"] = instance_id

    def detach_volume(self, volume_id: str) -> None:
        self._served("detach_volume", volume_id)
        self.volumes[volume_id]["attached_to"] = ""

    def delete_volume(self, volume_id: str) -> None:
        self._served("delete_volume", volume_id)
        if self.volumes[volume_id]["attached_to"]:
            raise LabvmError(f"memory: {volume_id} is attached")
        del self.volumes[volume_id]

    def grow_volume(self, volume_id: str, size_gb: int) -> None:
        self._served("grow_volume", volume_id, size_gb)
        if size_gb <= self.volumes[volume_id]["size"]:
            raise LabvmError(f"memory: {volume_id} only grows")
        self.volumes[volume_id]["size"] = size_gb

    def create_snapshot(self, name: str, volume_id: str, labels: dict) -> str:
        self._served("create_snapshot", name, volume_id)
        self._check_name(name)
        snapshot_id = f"s-{next(self._ids)}"
        size = self.volumes[volume_id]["size"]
        self.snapshots[snapshot_id] = dict(
            name=name, size=size, volume=volume_id, labels=dict(labels), created=datetime.now(timezone.utc)
        )
        return snapshot_id

    def label_volume(self, volume_id: str, labels: dict) -> None:
        self._served("label_volume", volume_id)
        self.volumes[volume_id]["labels"].update(labels)

    def delete_snapshot(self, snapshot_id: str) -> None:
        self._served("delete_snapshot", snapshot_id)
        del self.snapshots[snapshot_id]

    def set_state(self, instance_id: str, state: str) -> None:
        self._served("set_state", instance_id, state)
        data = self.instances[instance_id]
        if state == "running" and data["state"] != "running":
            # An ephemeral address is lost on stop and a new one given on start; a reserved one stays.
            data["address"] = self.addresses.get(data["static"]) or self._ip()
            data["started"] = datetime.now(timezone.utc)
        data["state"] = state

    def set_size(self, instance_id: str, size: str) -> None:
        self._served("set_size", instance_id, size)
        if self.instances[instance_id]["state"] != "stopped":
            raise LabvmError(f"memory: {instance_id} must be stopped to change its size")
        self.instances[instance_id]["size"] = size

    def delete_instance(self, instance_id: str) -> None:
        self._served("delete_instance", instance_id)
        del self.instances[instance_id]
        for volume in self.volumes.values():  # a deleted machine's volumes are detached, kept
            if volume["attached_to"] == instance_id:
                volume["attached_to"] = ""

    def reserve_address(self, name: str) -> None:
        self._served("reserve_address", name)
        self._check_name(name)
        self.addresses[name] = self._ip()

    def release_address(self, name: str) -> None:
        self._served("release_address", name)
        del self.addresses[name]

    def add_rule(self, group: str, rule: tuple) -> None:
        self._served("add_rule", group, rule)
        self._check_name(group)
        self.groups.setdefault(group, set()).add(rule)

    def delete_group(self, group: str) -> None:
        self._served("delete_group", group)
        del self.groups[group]

    def create_image(self, name: str, source: str, labels: dict) -> str:
        self._served("create_image", name)
        self._check_name(name)
        image_id = f"img-{next(self._ids)}"
        self.images[image_id] = dict(
            name=name,
            source=self.instances[source]["image"],
            labels=dict(labels),
            created=datetime.now(timezone.utc).isoformat(),
            state=IMAGE_AVAILABLE,
        )
        return image_id

    def delete_image(self, image_id: str) -> None:
        self._served("delete_image", image_id)
        del self.images[image_id]

    # -- reads -------------------------------------------------------------------------------------
    def labelled(self, table: dict, labels: dict) -> list[tuple[str, dict]]:
        return [(key, dict(data)) for key, data in table.items() if data["labels"].items() >= labels.items()]


@dataclass(frozen=True)
class MemorySettings(Settings):
    """The memory cloud's keys, each declared once, as a cloud's settings.py declares them."""

    size: str = field(default="small", metadata=schema.key(TEXT))
    image: str = field(default="debian-12", metadata=schema.key(TEXT))
    static_ip: bool = field(default=False, metadata=schema.key(FLAG))
    ssh_cidr: str = field(default="", metadata=schema.key(TEXT))

    def describe(self) -> Description:
        return Description(self.size, "memory", vm=True)


class MemoryApi(CloudApi):
    """The memory cloud's client: the template's gate and waits over the backend."""

    def __init__(self, backend: MemoryCloud):
        super().__init__("memory")
        self.backend = backend

    @property
    def scope(self) -> str:
        return "memory"


@dataclass(frozen=True)
class MemoryNames:
    profile: str
    owner: str

    @property
    def labels(self) -> dict[str, str]:
        return {"labvm:profile": self.profile, "labvm:owner": cloud_name(MEMORY_NAME, self.owner)}

    @property
    def name(self) -> str:
        return cloud_name(MEMORY_NAME, "labvm", self.profile, self.owner)

    @property
    def group(self) -> str:
        return cloud_name(MEMORY_NAME, self.name, "ssh")


def instance_of(key: str, data: dict) -> Instance:
    return Instance(
        key,
        data["name"],
        data["state"],
        data["address"],
        data["size"],
        private_address=data["private_address"],
        zone=data["zone"],
    )


def backup_of(key: str, data: dict) -> Backup:
    return Backup(key, data["name"], data["size"], BACKUP_READY, data["created"], data["volume"])


def volume_of(key: str, data: dict) -> Volume:
    state = VOLUME_ATTACHED if data["attached_to"] else VOLUME_AVAILABLE
    devices = (f"/dev/disk/by-id/memory-{key}",) if data["attached_to"] else ()
    return Volume(key, data["name"], data["size"], state, data["zone"], "", data["attached_to"], devices)


class MemoryVolumes:
    """The data volume: the template's gate over the backend's volumes."""

    backups_outlive_volume = True

    def __init__(self, api: MemoryApi, names: MemoryNames, profile: Profile):
        self.api, self.backend, self.names, self.profile = api, api.backend, names, profile

    @property
    def labels(self) -> dict[str, str]:
        return {**self.names.labels, "labvm:role": "data"}

    def find(self) -> Volume | None:
        found = self.backend.labelled(self.backend.volumes, self.labels)
        return volume_of(*found[0]) if found else None

    def create(self, zone: str) -> Volume:
        assert self.profile.data is not None  # CloudProvider._volumes: only with data:
        name, size = cloud_name(MEMORY_NAME, self.names.name, "data"), self.profile.data.size
        made = self.api.mutate(
            f"create volume {name} ({size} GB) in {zone}",
            self.backend.create_volume,
            name,
            size,
            zone,
            self.labels,
            planned="(planned)",
        )
        if self.api.plan:
            return Volume("(planned)", name, size, VOLUME_AVAILABLE, zone)
        return volume_of(made, self.backend.volumes[made])

    def attach(self, volume: Volume, instance: Instance) -> Volume:
        self.api.mutate(f"attach {volume.id} to {instance.id}", self.backend.attach_volume, volume.id, instance.id)
        return self.current(volume, attached_to=instance.id)

    def detach(self, volume: Volume) -> Volume:
        self.api.mutate(f"detach {volume.id}", self.backend.detach_volume, volume.id)
        return self.current(volume, attached_to="")

    def delete(self, volume: Volume) -> None:
        self.api.mutate(f"delete volume {volume.id}", self.backend.delete_volume, volume.id)

    def grow(self, volume: Volume, size_gb: int) -> Volume:
        self.api.mutate(f"grow {volume.id} to {size_gb} GB", self.backend.grow_volume, volume.id, size_gb)
        return (
            dataclasses.replace(volume, size_gb=size_gb) if self.api.plan else self.current(volume, volume.attached_to)
        )

    def backups(self) -> list[Backup]:
        labels = {**self.names.labels, "labvm:role": "data-backup"}
        return [backup_of(*found) for found in self.backend.labelled(self.backend.snapshots, labels)]

    def back_up(self, volume: Volume) -> Backup:
        name = cloud_name(MEMORY_NAME, self.names.name, "data", backup_stamp())
        labels = {**self.names.labels, "labvm:role": "data-backup"}
        made = self.api.mutate(
            f"back up {volume.id} as {name}",
            self.backend.create_snapshot,
            name,
            volume.id,
            labels,
            planned="(planned)",
        )
        if self.api.plan:
            return Backup("(planned)", name, volume.size_gb, BACKUP_READY, datetime.now(timezone.utc), volume.id)
        return backup_of(made, self.backend.snapshots[made])

    def delete_backup(self, backup: Backup) -> None:
        self.api.mutate(f"delete backup {backup.id}", self.backend.delete_snapshot, backup.id)

    def restore(self, backup: Backup, zone: str) -> Volume:
        name = cloud_name(MEMORY_NAME, self.names.name, "data", backup_stamp())
        labels = {**self.labels, "labvm:restored-from": backup.id}
        made = self.api.mutate(
            f"create volume {name} from {backup.id} in {zone}",
            self.backend.create_volume,
            name,
            backup.size_gb,
            zone,
            labels,
            planned="(planned)",
        )
        if self.api.plan:
            return Volume("(planned)", name, backup.size_gb, VOLUME_AVAILABLE, zone)
        return volume_of(made, self.backend.volumes[made])

    def restored_from(self, backup: Backup) -> Volume | None:
        found = self.backend.labelled(self.backend.volumes, {**self.labels, "labvm:restored-from": backup.id})
        return volume_of(*found[0]) if found else None

    def storage_check(self, need_gb: int) -> str:
        used = sum(volume["size"] for volume in self.backend.volumes.values())
        if used + need_gb > self.backend.storage_gb:
            raise LabvmError(f"{used} of {self.backend.storage_gb} GB in use and the data volume needs {need_gb}")
        return f"{used} of {self.backend.storage_gb} GB in use, {need_gb} more fit"

    def retire(self, volume: Volume) -> None:
        self.api.mutate(
            f"label {volume.id} data-replaced", self.backend.label_volume, volume.id, {"labvm:role": "data-replaced"}
        )

    def current(self, volume: Volume, attached_to: str) -> Volume:
        if self.api.plan:
            return dataclasses.replace(volume, attached_to=attached_to)
        return volume_of(volume.id, self.backend.volumes[volume.id])


class MemoryHead(Head):
    def __init__(self, api: MemoryApi, settings: MemorySettings, names: MemoryNames, profile: Profile):
        super().__init__(api)
        self.backend, self.settings, self.names, self.profile = api.backend, settings, names, profile

    def mine(self, role: str) -> list[tuple[str, dict]]:
        return [
            (key, data)
            for key, data in self.backend.labelled(self.backend.instances, self.names.labels)
            if data["labels"].get("labvm:role", "head") == role
        ]

    def data(self) -> dict | None:
        found = self.mine("head")
        return max(found, key=lambda item: item[1]["started"])[1] if found else None

    def size(self, size: str, key: str) -> str:
        if size not in SIZES:
            raise unknown(self.profile.key(key), "size", size, list(SIZES), "sizes: " + ", ".join(SIZES))
        return size

    def current(self, instance_id: str, planned: Instance) -> Instance:
        return planned if self.api.plan else instance_of(instance_id, self.backend.instances[instance_id])

    def find(self) -> Instance | None:
        found = self.mine("head")
        return instance_of(*max(found, key=lambda item: item[1]["started"])) if found else None

    def create(self, image: str | None, public_key: str) -> Instance:
        api, names = self.api, self.names
        size = self.size(self.settings.size, "size")
        image = image or self.settings.image
        api.mutate(
            f"admit {self.settings.ssh_cidr} to port 22 ({names.group})",
            self.backend.add_rule,
            names.group,
            (SSH, self.settings.ssh_cidr),
        )
        address = ""
        if self.settings.static_ip:
            address = names.name
            api.mutate(f"reserve address {address}", self.backend.reserve_address, address)
        made = api.mutate(
            f"create {names.name} ({size}) from {image}",
            self.backend.run_instance,
            names.name,
            size,
            image,
            "lab-net",
            names.labels,
            names.group,
            address,
            planned="(planned)",
        )
        api.wait_until(f"{names.name} is running", lambda: self.backend.instances[made]["state"] == "running", 60)
        return self.current(made, planned_instance(names.name, size))

    def start(self, instance: Instance) -> Instance:
        self.api.mutate(f"start {instance.id}", self.backend.set_state, instance.id, "running")
        return self.current(instance.id, instance)

    def stop(self, instance: Instance) -> Instance:
        if instance.state == "stopped":
            return instance
        self.api.mutate(f"stop {instance.id}", self.backend.set_state, instance.id, "stopped")
        return self.current(instance.id, instance)

    def resize_target(self, instance: Instance, size: str) -> str:
        return self.size(size, "size")

    def set_size(self, instance: Instance, size: str) -> None:
        self.api.mutate(f"resize {instance.id} to {size}", self.backend.set_size, instance.id, size)

    def terminate(self, instance: Instance, keep_ip: bool) -> None:
        group, name = self.names.group, self.names.name
        worker = self.backend.instances[instance.id]["labels"].get("labvm:role") == "worker"
        self.api.mutate(f"delete {instance.id}", self.backend.delete_instance, instance.id)
        if worker or [key for key, _ in self.mine("head") if key != instance.id]:
            return
        if group in self.backend.groups:
            self.api.mutate(f"delete group {group}", self.backend.delete_group, group)
        if not keep_ip and name in self.backend.addresses:
            self.api.mutate(f"release address {name}", self.backend.release_address, name)

    def last_start(self, instance: Instance) -> datetime:
        return self.backend.instances[instance.id]["started"]


class MemoryImages:
    def __init__(self, api: MemoryApi, names: MemoryNames, profile: Profile):
        self.api, self.backend, self.names, self.profile = api, api.backend, names, profile

    def make(self, instance: Instance, name: str, share: tuple[str, ...], no_reboot: bool) -> Image:
        image_name = cloud_name(MEMORY_NAME, name, self.profile.name, self.names.owner, len(self.backend.images))
        made = self.api.mutate(
            f"create image {image_name} of {instance.id}",
            self.backend.create_image,
            image_name,
            instance.id,
            self.names.labels,
            planned="(planned)",
        )
        if self.api.plan:
            return Image(made, image_name, "", IMAGE_AVAILABLE)
        data = self.backend.images[made]
        return Image(made, image_name, data["created"], data["state"])

    def listed(self) -> list[Image]:
        found = self.backend.labelled(self.backend.images, self.names.labels)
        return sorted((Image(key, d["name"], d["created"], d["state"]) for key, d in found), key=lambda i: i.created)

    def delete(self, image: Image) -> None:
        self.api.mutate(f"delete image {image.id}", self.backend.delete_image, image.id)


class MemoryWorkers(Workers):
    def __init__(self, api: MemoryApi, head: MemoryHead, names: MemoryNames, profile: Profile):
        super().__init__(api, head, profile)
        self.head: MemoryHead = head
        self.backend, self.names = api.backend, names

    def found(self) -> list[Instance]:
        found = sorted(self.head.mine("worker"), key=lambda item: int(item[1]["labels"]["labvm:index"]))
        return [instance_of(key, data) for key, data in found]

    def image(self) -> str:
        head = self.head.data()
        return head["image"] if head else ""

    def name(self, index: int) -> str:
        return f"{self.names.name}-w{index}"

    def recipe(self, head: Instance | None, indexes: list[int], image: str, size: str, public_key: str) -> WorkerRecipe:
        data = self.head.data()
        if data is None:
            raise no_head(self.profile)
        size = self.head.size(size, "cluster.worker_size") if size else data["size"]
        return WorkerRecipe(size, image or data["image"], {"network": data["network"]})

    def make(self, recipe: WorkerRecipe, index: int) -> str:
        name = self.name(index)
        labels = {
            **self.names.labels,
            "labvm:cluster": self.profile.name,
            "labvm:role": "worker",
            "labvm:index": str(index),
        }
        return self.api.mutate(
            f"create {name} ({recipe.size}) from {recipe.image}",
            self.backend.run_instance,
            name,
            recipe.size,
            recipe.image,
            recipe.beside["network"],
            labels,
            self.names.group,
            planned=f"(planned w{index})",
        )

    def allow(self) -> None:
        group = self.names.group
        if (ALL_PORTS, CLUSTER) not in self.backend.groups.get(group, set()):
            self.api.mutate(
                f"open every TCP port between the machines of {group}",
                self.backend.add_rule,
                group,
                (ALL_PORTS, CLUSTER),
            )

    def terminate(self) -> None:
        for worker in self.found():
            self.api.mutate(f"delete {worker.id}", self.backend.delete_instance, worker.id)


class MemoryAsked:
    """Preflight and inventory: the memory cloud's read-only answers."""

    def __init__(self, backend: MemoryCloud):
        self.backend = backend

    def admit_caller(self) -> None:
        """The rule made with the machine admits ssh_cidr for good."""

    def checks(self, public_key: str, to_start) -> list[Check]:
        return []

    def resources(self) -> list[Resource]:
        found = []
        for key, data in self.backend.instances.items():
            labels = data["labels"]
            profile = labels["labvm:profile"]
            if labels.get("labvm:role") == "worker":
                profile = f"{labels['labvm:cluster']}+w{labels['labvm:index']}"
            found.append(
                Resource(
                    "memory",
                    "memory",
                    "instance",
                    key,
                    profile,
                    labels["labvm:owner"],
                    data["state"],
                    data["started"],
                    f"memory delete {key}",
                    type=data["size"],
                )
            )
        for key, data in self.backend.volumes.items():
            found.append(
                Resource(
                    "memory",
                    "memory",
                    "data" if data["labels"].get("labvm:role") == "data" else "volume",  # a replaced one: loose
                    key,
                    data["labels"]["labvm:profile"],
                    data["labels"]["labvm:owner"],
                    "attached" if data["attached_to"] else "unattached",
                    None,
                    f"memory delete-volume {key}",
                    size_gb=data["size"],
                )
            )
        for key, data in self.backend.snapshots.items():
            found.append(
                Resource(
                    "memory",
                    "memory",
                    "backup",
                    key,
                    data["labels"]["labvm:profile"],
                    data["labels"]["labvm:owner"],
                    "ready",
                    data["created"],
                    f"memory delete-snapshot {key}",
                    size_gb=data["size"],
                )
            )
        for key, data in self.backend.images.items():
            found.append(
                Resource(
                    "memory",
                    "memory",
                    "image",
                    key,
                    data["labels"]["labvm:profile"],
                    data["labels"]["labvm:owner"],
                    data["state"],
                    datetime.fromisoformat(data["created"]),
                    f"memory delete-image {key}",
                )
            )
        return found


class MemoryProvider(CloudProvider):
    """A labvm provider of the memory cloud: settings image, size, ssh_cidr, static_ip."""

    def __init__(self, profile: Profile, backend: MemoryCloud):
        settings = MemorySettings.of(profile)
        api = MemoryApi(backend)
        names = MemoryNames(profile.name, owner())
        head = MemoryHead(api, settings, names, profile)
        asked = MemoryAsked(backend)
        parts = Parts(
            head=head,
            images=MemoryImages(api, names, profile),
            workers=MemoryWorkers(api, head, names, profile),
            network=asked,
            preflight=asked,
            inventory=asked,
            volumes=MemoryVolumes(api, names, profile),
        )
        super().__init__(profile, api, settings, Tags(profile.name, names.labels["labvm:owner"]), parts)

    def first_up(self) -> list[str]:
        """The memory cloud makes the VM only (its rule is made with it)."""
        settings = MemorySettings.of(self.profile)
        return [f"VM {self.profile.name}: {settings.size}, {settings.image}"]

    def permissions(self) -> tuple[str, ...]:
        """The memory cloud asks for no rights."""
        return ()
