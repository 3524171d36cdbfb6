"""A Dask cluster's worker VMs beside the head: made in parallel, found by labels, the rule between them."""

from __future__ import annotations

from typing import Any

from ...config import Profile
from ..base import Instance
from ..cloud import WorkerRecipe, Workers, no_head
from .api import GceApi, instance_of
from .head import GceHead
from .images import Images
from .names import GceNames
from .network import Network


class GceWorkers(Workers):
    """This profile's and owner's worker VMs."""

    def __init__(self, api: GceApi, head: GceHead, names: GceNames, network: Network, images: Images, profile: Profile):
        super().__init__(api, head, profile)
        self.api: GceApi = api
        self.head: GceHead = head
        self.names, self.network, self.images = names, network, images
        self.project, self.zone = api.project, api.zone

    def data(self) -> list:
        """Compute's instances of the workers, by index."""
        labels = self.names.labels
        wanted = {"labvm-cluster": labels["labvm-profile"], "labvm-owner": self.names.owner, "labvm-role": "worker"}
        request = self.api.compute.ListInstancesRequest(
            project=self.project, zone=self.zone, filter=self.names.filter(wanted)
        )
        return sorted(
            self.api.call(self.api.instances.list, request=request), key=lambda i: int(i.labels["labvm-index"])
        )

    def found(self) -> list[Instance]:
        """This profile's worker instances of this owner, by index; each name ends with -w<index>."""
        return [instance_of(i) for i in self.data()]

    def name(self, index: int) -> str:
        """The head's name and -w<index>."""
        return self.names.worker(index)

    def recipe(self, head: Instance | None, indexes: list[int], image: str, size: str, public_key: str) -> WorkerRecipe:
        """Beside the head: its network, tags (so its SSH rule), login metadata and scheduling; its boot
        image (its boot disk's sourceImage) and machine type unless given."""
        if head is None:
            raise no_head(self.profile)
        data = self.api.get(head.id)
        machine_type = self.head.check_type(size, key=self.profile.key("cluster.worker_size")) if size else head.size
        return WorkerRecipe(
            machine_type, self.images.source_image(image) if image else self.images.booted_from(data), {"head": data}
        )

    def make(self, recipe: WorkerRecipe, index: int) -> str:
        """One worker as the head is (network, tags, metadata, scheduling; a GPU worker stops for host
        maintenance), waited for."""
        compute, head, name = self.api.compute, recipe.beside["head"], self.name(index)
        nic = head.network_interfaces[0]
        instance = compute.Instance(
            name=name,
            machine_type=f"zones/{self.zone}/machineTypes/{recipe.size}",
            labels=self.names.worker_labels(index),
            tags=compute.Tags(items=list(head.tags.items)),
            disks=[self.head.boot_disk(recipe.image)],
            network_interfaces=[
                compute.NetworkInterface(
                    network=nic.network,
                    subnetwork=nic.subnetwork,
                    access_configs=[compute.AccessConfig(name="External NAT", type_="ONE_TO_ONE_NAT")],
                )
            ],
            metadata=compute.Metadata(items=[compute.Items(key=i.key, value=i.value) for i in head.metadata.items]),
            scheduling=compute.Scheduling.deserialize(compute.Scheduling.serialize(head.scheduling)),  # a copy
        )
        if self.head.gpus.carried(recipe.size, head=False):  # a GPU worker beside a CPU head cannot live-migrate
            instance.scheduling.on_host_maintenance = "TERMINATE"

        self.api.change(
            f"create worker {name} ({recipe.size}) in {self.zone}",
            self.api.instances.insert,
            "zone",
            f"{name} is created",
            zone=self.zone,
            instance_resource=instance,
        )
        return name

    def image(self) -> str:
        """The image new workers are made from (the head's boot image, by name as images() lists it)."""
        found = self.head.find()
        return self.images.booted_from(self.api.get(found.id)).rsplit("/", 1)[-1] if found else ""

    def allow(self) -> None:
        """Every TCP port between the instances tagged as the head and its workers are, and only between
        them: source tags = target tags, no source range (an ingress rule with no source at all would
        admit 0.0.0.0/0)."""
        rule_name = self.names.cluster_rule
        if self.api.get_or_none(self.api.firewalls.get, project=self.project, firewall=rule_name) is not None:
            return
        compute = self.api.compute
        rule = compute.Firewall(
            name=rule_name,
            network=self.network.network_link(),
            direction="INGRESS",
            source_tags=[self.names.rule],
            target_tags=[self.names.rule],
            allowed=[compute.Allowed(I_p_protocol="tcp")],
            description="labvm: Dask between the cluster's machines",
        )
        self.api.change(
            f"create firewall rule {rule_name} (every TCP port between the cluster's machines)",
            self.api.firewalls.insert,
            "global",
            f"firewall rule {rule_name} lets the cluster's machines reach each other (Dask)",
            firewall_resource=rule,
        )

    def terminate(self) -> None:
        """Every worker of this profile and owner; with the head gone too, the rules go."""
        workers = self.data()
        operations: list[Any] = [
            self.api.mutate(
                f"delete worker {w.name} and its boot disk",
                self.api.instances.delete,
                project=self.project,
                zone=self.zone,
                instance=w.name,
            )
            for w in workers
        ]
        for worker, operation in zip(workers, operations):
            self.api.wait(operation, "zone", f"worker {worker.name} is deleted")
        if workers and self.head.find() is None:
            self.network.delete_rules()
