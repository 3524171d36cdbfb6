"""A Dask cluster's worker VMs beside the head: made in parallel, found by labels, the rule between them."""

from __future__ import annotations

from ..base import Instance
from ..cloud import GCE_NAME, WorkerRecipe, cloud_name
from .api import GceApi


class Workers(GceApi):
    def _worker_labels(self, index: int) -> dict[str, str]:
        return {**self.labels, "labvm-cluster": self.labels["labvm-profile"], "labvm-role": "worker",
                "labvm-index": str(index)}

    def _workers_data(self) -> list:
        wanted = {"labvm-cluster": self.labels["labvm-profile"], "labvm-owner": self.owner, "labvm-role": "worker"}
        request = self.compute.ListInstancesRequest(project=self.project, zone=self.zone, filter=" AND ".join(
            f'(labels.{k} = "{v}")' for k, v in wanted.items()))
        return sorted(self.call(self.instances.list, request=request), key=lambda i: int(i.labels["labvm-index"]))

    def workers(self) -> list[Instance]:
        """This profile's worker instances of this owner, by index; each name ends with -w<index>."""
        return [self._instance(i) for i in self._workers_data()]

    def _worker_name(self, index: int) -> str:
        return cloud_name(GCE_NAME, "labvm", self.profile.name, self.owner, f"w{index}")

    def _worker_recipe(self, head: Instance | None, indexes: list[int], image: str, size: str,
                       public_key: str) -> WorkerRecipe:
        """Beside the head: its network, tags (so its SSH rule), login metadata and scheduling; its boot
        image (its boot disk's sourceImage) and machine type unless given."""
        if head is None:
            raise self.no_head()
        data = self._get(head.id)
        machine_type = self._check_type(size, key=self._where("cluster.worker_size")) if size else head.size
        return WorkerRecipe(machine_type, self._source_image(image) if image else self._head_image(data), {"head": data})

    def _make_worker(self, recipe: WorkerRecipe, index: int) -> str:
        compute, head, name = self.compute, recipe.beside["head"], self._worker_name(index)
        nic = head.network_interfaces[0]
        instance = compute.Instance(
            name=name, machine_type=f"zones/{self.zone}/machineTypes/{recipe.size}",
            labels=self._worker_labels(index), tags=compute.Tags(items=list(head.tags.items)),
            disks=[self._boot_disk(recipe.image)],
            network_interfaces=[compute.NetworkInterface(
                network=nic.network, subnetwork=nic.subnetwork,
                access_configs=[compute.AccessConfig(name="External NAT", type_="ONE_TO_ONE_NAT")])],
            metadata=compute.Metadata(items=[compute.Items(key=i.key, value=i.value) for i in head.metadata.items]),
            scheduling=head.scheduling,
        )
        self._change(f"create worker {name} ({recipe.size}) in {self.zone}", self.instances.insert, "zone",
                     f"{name} is created", zone=self.zone, instance_resource=instance)
        return name

    def cluster_image(self) -> str:
        """The image new workers are made from (the head's boot image, by name as images() lists it)."""
        found = self.find()
        return self._head_image(self._get(found.id)).rsplit("/", 1)[-1] if found else ""

    def _head_image(self, head) -> str:
        boot = next(d for d in head.disks if d.boot)
        disk = self.call(self.disks.get, project=self.project, zone=self.zone, disk=boot.source.rsplit("/", 1)[-1])
        return disk.source_image

    def allow_cluster(self) -> None:
        """Every TCP port between the instances tagged as the head and its workers are, and only between
        them: source tags = target tags, no source range (an ingress rule with no source at all would
        admit 0.0.0.0/0)."""
        if self._get_or_none(self.firewalls.get, project=self.project, firewall=self.cluster_rule) is not None:
            return
        rule = self.compute.Firewall(
            name=self.cluster_rule, network=self._network_link(), direction="INGRESS",
            source_tags=[self.rule], target_tags=[self.rule],
            allowed=[self.compute.Allowed(I_p_protocol="tcp")], description="labvm: Dask between the cluster's machines")
        self._change(f"create firewall rule {self.cluster_rule} (every TCP port between the cluster's machines)",
                     self.firewalls.insert, "global",
                     f"firewall rule {self.cluster_rule} lets the cluster's machines reach each other (Dask)",
                     firewall_resource=rule)

    def terminate_workers(self) -> None:
        """Every worker of this profile and owner; with the head gone too, the rules go."""
        workers = self._workers_data()
        operations = [self.mutate(f"delete worker {w.name} and its boot disk", self.instances.delete,
                                  project=self.project, zone=self.zone, instance=w.name) for w in workers]
        for worker, operation in zip(workers, operations):
            self._wait(operation, "zone", f"worker {worker.name} is deleted")
        if workers and self.find() is None:
            self._delete_rules()
