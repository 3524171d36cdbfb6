"""An in-memory cloud and its labvm provider: the contract's primitives over dicts, for fast tests.

`MemoryCloud` is the cloud's side: what it holds and every mutating call it served (`requests`, as the
HTTP fakes log theirs); it refuses names its rules do not accept, as the fakes do.  `MemoryProvider` is a
`CloudProvider` built from the template's parts only (owner naming, the mutation gate, waits,
did-you-mean), so a behaviour the contract suite shows on it is the template's, not a cloud's.
"""

from __future__ import annotations

import itertools
import re
from datetime import datetime, timezone

from labvm.errors import LabvmError
from labvm.providers.base import IMAGE_AVAILABLE, Image, Instance, Resource
from labvm.providers.cloud import CloudProvider, NameRules, WorkerRecipe, cloud_name

# The memory cloud's names are as strict as the strictest cloud's (GCE, RFC 1035), so a name that
# passes here is not passing by leniency.
MEMORY_NAME = NameRules(r"a-z0-9\-", 63, lower=True, first_letter=True)
SIZES = {"small": 2, "medium": 4, "large": 8}  # size -> vCPUs
ALL_PORTS, SSH = "tcp all", "tcp 22"
CLUSTER = "cluster"  # a rule's source: the machines carrying the same group


class MemoryCloud:
    """The cloud: instances, images, addresses and group rules in dicts; `requests` logs each change."""

    def __init__(self):
        self.instances: dict[str, dict] = {}
        self.images: dict[str, dict] = {}
        self.addresses: dict[str, str] = {}  # reserved address name -> its IP
        self.groups: dict[str, set] = {}  # group name -> {(ports, source)}
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
    def run_instance(self, name: str, size: str, image: str, network: str, labels: dict, group: str,
                     address: str = "") -> str:
        self._served("run_instance", name)
        self._check_name(name)
        instance_id = f"m-{next(self._ids)}"
        self.instances[instance_id] = dict(
            name=name, size=size, image=image, network=network, labels=dict(labels), group=group,
            state="running", static=address, address=self.addresses.get(address) or self._ip(),
            private_address=f"10.0.0.{next(self._ips)}", started=datetime.now(timezone.utc))
        return instance_id

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
        self.images[image_id] = dict(name=name, source=self.instances[source]["image"], labels=dict(labels),
                                     created=datetime.now(timezone.utc).isoformat(), state=IMAGE_AVAILABLE)
        return image_id

    def delete_image(self, image_id: str) -> None:
        self._served("delete_image", image_id)
        del self.images[image_id]

    # -- reads -------------------------------------------------------------------------------------
    def labelled(self, table: dict, labels: dict) -> list[tuple[str, dict]]:
        return [(key, dict(data)) for key, data in table.items() if data["labels"].items() >= labels.items()]


class MemoryProvider(CloudProvider):
    """A labvm provider of the memory cloud: settings image, size, ssh_cidr, static_ip."""

    cloud = "memory"

    def __init__(self, profile, backend: MemoryCloud):
        super().__init__(profile)
        self.backend = backend
        self.owner_label = cloud_name(MEMORY_NAME, self.owner)
        self.labels = {"labvm:profile": profile.name, "labvm:owner": self.owner_label}
        self.name = cloud_name(MEMORY_NAME, "labvm", profile.name, self.owner)
        self.group = cloud_name(MEMORY_NAME, self.name, "ssh")

    # -- reading the cloud -------------------------------------------------------------------------
    @staticmethod
    def _instance(key: str, data: dict) -> Instance:
        return Instance(key, data["name"], data["state"], data["address"], data["size"],
                        private_address=data["private_address"])

    def _mine(self, role: str) -> list[tuple[str, dict]]:
        return [(key, data) for key, data in self.backend.labelled(self.backend.instances, self.labels)
                if data["labels"].get("labvm:role", "head") == role]

    def _head(self) -> dict | None:
        found = self._mine("head")
        return max(found, key=lambda item: item[1]["started"])[1] if found else None

    def _size(self, size: str, key: str) -> str:
        if size not in SIZES:
            raise self.unknown(self._where(key), "size", size, list(SIZES), "sizes: " + ", ".join(SIZES))
        return size

    def _current(self, instance_id: str, planned: Instance) -> Instance:
        return planned if self.plan else self._instance(instance_id, self.backend.instances[instance_id])

    # -- the head ----------------------------------------------------------------------------------
    def find(self) -> Instance | None:
        found = self._mine("head")
        return self._instance(*max(found, key=lambda item: item[1]["started"])) if found else None

    def create(self, image: str | None = None, public_key: str = "") -> Instance:
        size = self._size(str(self.settings.get("size", "small")), "size")
        image = image or str(self.settings.get("image", "debian-12"))
        self.mutate(f"admit {self.settings.get('ssh_cidr')} to port 22 ({self.group})", self.backend.add_rule,
                    self.group, (SSH, str(self.settings.get("ssh_cidr"))))
        address = ""
        if self.settings.get("static_ip"):
            address = self.name
            self.mutate(f"reserve address {address}", self.backend.reserve_address, address)
        made = self.mutate(f"create {self.name} ({size}) from {image}", self.backend.run_instance, self.name, size,
                           image, "lab-net", self.labels, self.group, address, planned="(planned)")
        self.wait_until(f"{self.name} is running", lambda: self.backend.instances[made]["state"] == "running", 60)
        return self._current(made, self.planned_instance(self.name, size))

    def start(self, instance: Instance) -> Instance:
        self.mutate(f"start {instance.id}", self.backend.set_state, instance.id, "running")
        return self._current(instance.id, instance)

    def stop(self, instance: Instance) -> Instance:
        if instance.state == "stopped":
            return instance
        self.mutate(f"stop {instance.id}", self.backend.set_state, instance.id, "stopped")
        return self._current(instance.id, instance)

    def _resize_target(self, instance: Instance, size: str) -> str:
        return self._size(size, "size")

    def _set_size(self, instance: Instance, size: str) -> None:
        self.mutate(f"resize {instance.id} to {size}", self.backend.set_size, instance.id, size)

    def terminate(self, instance: Instance, keep_ip: bool = False) -> None:
        worker = self.backend.instances[instance.id]["labels"].get("labvm:role") == "worker"
        self.mutate(f"delete {instance.id}", self.backend.delete_instance, instance.id)
        if worker or [key for key, _ in self._mine("head") if key != instance.id]:
            return
        if self.group in self.backend.groups:
            self.mutate(f"delete group {self.group}", self.backend.delete_group, self.group)
        if not keep_ip and self.name in self.backend.addresses:
            self.mutate(f"release address {self.name}", self.backend.release_address, self.name)

    def last_start(self, instance: Instance) -> datetime:
        return self.backend.instances[instance.id]["started"]

    # -- images ------------------------------------------------------------------------------------
    def snapshot(self, instance: Instance, name: str, share: tuple[str, ...] = (), no_reboot: bool = False) -> Image:
        image_name = cloud_name(MEMORY_NAME, name, self.profile.name, self.owner, len(self.backend.images))
        made = self.mutate(f"create image {image_name} of {instance.id}", self.backend.create_image, image_name,
                           instance.id, self.labels, planned="(planned)")
        if self.plan:
            return Image(made, image_name, "", IMAGE_AVAILABLE)
        data = self.backend.images[made]
        return Image(made, image_name, data["created"], data["state"])

    def images(self) -> list[Image]:
        found = self.backend.labelled(self.backend.images, self.labels)
        return sorted((Image(key, d["name"], d["created"], d["state"]) for key, d in found), key=lambda i: i.created)

    def delete_image(self, image: Image) -> None:
        self.mutate(f"delete image {image.id}", self.backend.delete_image, image.id)

    # -- workers -----------------------------------------------------------------------------------
    def workers(self) -> list[Instance]:
        found = sorted(self._mine("worker"), key=lambda item: int(item[1]["labels"]["labvm:index"]))
        return [self._instance(key, data) for key, data in found]

    def cluster_image(self) -> str:
        head = self._head()
        return head["image"] if head else ""

    def _worker_name(self, index: int) -> str:
        return f"{self.name}-w{index}"

    def _worker_recipe(self, head, indexes, image, size, public_key) -> WorkerRecipe:
        data = self._head()
        if data is None:
            raise self.no_head()
        size = self._size(size, "cluster.worker_size") if size else data["size"]
        return WorkerRecipe(size, image or data["image"], {"network": data["network"]})

    def _make_worker(self, recipe: WorkerRecipe, index: int) -> str:
        name = self._worker_name(index)
        labels = {**self.labels, "labvm:cluster": self.profile.name, "labvm:role": "worker", "labvm:index": str(index)}
        return self.mutate(f"create {name} ({recipe.size}) from {recipe.image}", self.backend.run_instance, name,
                           recipe.size, recipe.image, recipe.beside["network"], labels, self.group,
                           planned=f"(planned w{index})")

    def allow_cluster(self) -> None:
        if (ALL_PORTS, CLUSTER) not in self.backend.groups.get(self.group, set()):
            self.mutate(f"open every TCP port between the machines of {self.group}", self.backend.add_rule,
                        self.group, (ALL_PORTS, CLUSTER))

    def terminate_workers(self) -> None:
        for worker in self.workers():
            self.mutate(f"delete {worker.id}", self.backend.delete_instance, worker.id)

    # -- audit -------------------------------------------------------------------------------------
    def inventory(self) -> list[Resource]:
        found = []
        for key, data in self.backend.instances.items():
            labels = data["labels"]
            profile = labels["labvm:profile"]
            if labels.get("labvm:role") == "worker":
                profile = f"{labels['labvm:cluster']}+w{labels['labvm:index']}"
            found.append(Resource("memory", "memory", "instance", key, profile, labels["labvm:owner"], data["state"],
                                  data["started"], f"memory delete {key}", type=data["size"]))
        for key, data in self.backend.images.items():
            found.append(Resource("memory", "memory", "image", key, data["labels"]["labvm:profile"],
                                  data["labels"]["labvm:owner"], data["state"],
                                  datetime.fromisoformat(data["created"]), f"memory delete-image {key}"))
        return found
