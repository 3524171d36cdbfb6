"""A Dask cluster's worker instances beside the head: its subnet, group and key pair."""

from __future__ import annotations

from ..base import Instance
from ..cloud import WorkerRecipe, tag_number
from .core import AwsBase, LIVE, Network, tags_of


class Workers(AwsBase):
    """Workers found by their tags (labvm:cluster, labvm:role, labvm:index)."""

    def _clustertags_of(self, index: int) -> list[dict]:
        tags = self._tag_list(f"{self.name}-w{index}")
        return tags + [{"Key": k, "Value": v} for k, v in
                       {"labvm:cluster": self.profile.name, "labvm:role": "worker", "labvm:index": str(index)}.items()]

    def _worker_data(self) -> list[dict]:
        filters = [{"Name": f"tag:{k}", "Values": [v]} for k, v in
                   {"labvm:cluster": self.profile.name, "labvm:owner": self.owner, "labvm:role": "worker"}.items()]
        filters.append({"Name": "instance-state-name", "Values": list(LIVE)})
        found = [i for r in self._read("describe_instances", Filters=filters)["Reservations"] for i in r["Instances"]]
        return sorted(found, key=lambda i: tag_number(tags_of(i).get("labvm:index")))

    def workers(self) -> list[Instance]:
        """This profile's worker VMs of this owner, by index; each name ends with -w<index>."""
        return [self._instance(i) for i in self._worker_data()]

    def _head(self) -> dict:
        head = self.find()
        if head is None:
            raise self.no_head()
        return self._describe(head.id)

    def cluster_image(self) -> str:
        """The image new workers are made from (the head's AMI); "" without a head."""
        head = self.find()
        return self._describe(head.id)["ImageId"] if head else ""

    def _worker_name(self, index: int) -> str:
        return f"{self.name}-w{index}"

    def _worker_recipe(self, head: Instance | None, indexes: list[int], image: str, size: str,
                       public_key: str) -> WorkerRecipe:
        """Beside the head: its subnet, group and key pair; its AMI and type unless given."""
        data = self._head()
        size = size or data["InstanceType"]
        if size != data["InstanceType"]:
            self._check_type(size, self._where("cluster.worker_size"))
        placement = self._placement(self._head_network(data), self._find_group(data["VpcId"])["GroupId"])
        return WorkerRecipe(size, image or data["ImageId"], {"placement": placement, "key": self._key_pair(public_key)})

    def _make_worker(self, recipe: WorkerRecipe, index: int) -> str:
        request = self._launch(recipe.image, recipe.size, recipe.beside["key"], recipe.beside["placement"],
                               self._clustertags_of(index))
        return self._change("run_instances", **request)["Instances"][0]["InstanceId"]

    def _workers_made(self, ids: list[str]) -> None:
        self._wait("instance_running", f"{len(ids)} worker(s) running", InstanceIds=ids)

    def _head_network(self, head: dict) -> Network:
        """The head's own subnet, whatever the profile says now: the cluster is one network."""
        (subnet,) = self._read("describe_subnets", SubnetIds=[head["SubnetId"]])["Subnets"]
        return Network(head["VpcId"], head["SubnetId"], bool(subnet.get("MapPublicIpOnLaunch")),
                       subnet.get("AvailabilityZone", ""))

    def allow_cluster(self) -> None:
        """Every TCP port between the machines of labvm's group (the head and its workers), and only
        between them: the rule's source is the group itself, no address range."""
        group = self._find_group(self._head()["VpcId"])
        if any(pair.get("GroupId") == group["GroupId"] for p in group.get("IpPermissions", [])
               for pair in p.get("UserIdGroupPairs", [])):
            return
        self._change("authorize_security_group_ingress", GroupId=group["GroupId"], IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 0, "ToPort": 65535, "UserIdGroupPairs": [
                {"GroupId": group["GroupId"], "Description": "labvm: Dask between the machines of this cluster"}]}])
        print(f"aws: security group {group['GroupName']} lets the cluster's machines reach each other (Dask)")

    def terminate_workers(self) -> None:
        """Every worker of this profile and owner, spot requests cancelled; with the head gone too, its
        group and key pair go."""
        workers = self._worker_data()
        if not workers:
            return
        self._terminate(workers)
        self._delete_unused(workers[0], {w["InstanceId"] for w in workers})
