"""A Dask cluster's worker instances beside the head: its subnet, group and key pair; found by their tags
(labvm:cluster, labvm:role, labvm:index)."""

from __future__ import annotations

from ...config import Profile
from ..base import Instance
from ..cloud import WorkerRecipe, Workers, no_head, tag_number
from .api import LIVE, Ec2Api, instance_of
from .head import AwsHead
from .names import AwsNames, tags_of
from .network import Network, placement


class AwsWorkers(Workers):
    """This profile's and owner's worker instances."""

    def __init__(self, api: Ec2Api, head: AwsHead, network: Network, names: AwsNames, profile: Profile):
        super().__init__(api, head, profile)
        self.api: Ec2Api = api
        self.head: AwsHead = head
        self.network, self.names = network, names

    def tags(self, index: int) -> list[dict]:
        """Worker `index`'s tags: the profile's, and which cluster, role and index it has."""
        tags = self.names.tag_list(self.name(index))
        return tags + [
            {"Key": k, "Value": v}
            for k, v in {"labvm:cluster": self.profile.name, "labvm:role": "worker", "labvm:index": str(index)}.items()
        ]

    def data(self) -> list[dict]:
        """DescribeInstances' answer for each worker, by index."""
        filters = [
            {"Name": f"tag:{k}", "Values": [v]}
            for k, v in {
                "labvm:cluster": self.profile.name,
                "labvm:owner": self.names.owner,
                "labvm:role": "worker",
            }.items()
        ]
        filters.append({"Name": "instance-state-name", "Values": list(LIVE)})
        found = [
            i for r in self.api.read("describe_instances", Filters=filters)["Reservations"] for i in r["Instances"]
        ]
        return sorted(found, key=lambda i: tag_number(tags_of(i).get("labvm:index")))

    def found(self) -> list[Instance]:
        """This profile's worker VMs of this owner, by index; each name ends with -w<index>."""
        return [instance_of(i) for i in self.data()]

    def head_data(self) -> dict:
        """DescribeInstances' answer for the head; there must be one."""
        head = self.head.find()
        if head is None:
            raise no_head(self.profile)
        return self.api.described(head.id)

    def image(self) -> str:
        """The image new workers are made from (the head's AMI); "" without a head."""
        head = self.head.find()
        return self.api.described(head.id)["ImageId"] if head else ""

    def name(self, index: int) -> str:
        """The head's Name tag and -w<index>."""
        return f"{self.names.name}-w{index}"

    def recipe(self, head: Instance | None, indexes: list[int], image: str, size: str, public_key: str) -> WorkerRecipe:
        """Beside the head: its subnet, group and key pair; its AMI and type unless given."""
        data = self.head_data()
        size = size or data["InstanceType"]
        if size != data["InstanceType"]:
            self.head.check_type(size, self.profile.key("cluster.worker_size"))
        group = self.network.head_group(data["VpcId"])
        where = placement(self.network.subnet_of(data), group["GroupId"])
        return WorkerRecipe(
            size, image or data["ImageId"], {"placement": where, "key": self.network.key_pair(public_key)}
        )

    def make(self, recipe: WorkerRecipe, index: int) -> str:
        """RunInstances of one worker; it is waited for with the others (`made`)."""
        request = self.head.launch(
            recipe.image, recipe.size, recipe.beside["key"], recipe.beside["placement"], self.tags(index)
        )
        return self.api.change("run_instances", **request)["Instances"][0]["InstanceId"]

    def made(self, ids: list[str]) -> None:
        """Until every made worker runs."""
        self.api.wait("instance_running", f"{len(ids)} worker(s) running", InstanceIds=ids)

    def allow(self) -> None:
        """Every TCP port between the machines of labvm's group (the head and its workers), and only
        between them: the rule's source is the group itself, no address range."""
        group = self.network.head_group(self.head_data()["VpcId"])
        if any(
            pair.get("GroupId") == group["GroupId"]
            for p in group.get("IpPermissions", [])
            for pair in p.get("UserIdGroupPairs", [])
        ):
            return
        self.api.change(
            "authorize_security_group_ingress",
            GroupId=group["GroupId"],
            IpPermissions=[
                {
                    "IpProtocol": "tcp",
                    "FromPort": 0,
                    "ToPort": 65535,
                    "UserIdGroupPairs": [
                        {"GroupId": group["GroupId"], "Description": "labvm: Dask between the machines of this cluster"}
                    ],
                }
            ],
        )
        print(f"aws: security group {group['GroupName']} lets the cluster's machines reach each other (Dask)")

    def terminate(self) -> None:
        """Every worker of this profile and owner, spot requests cancelled; with the head gone too, its
        group and key pair go."""
        workers = self.data()
        if not workers:
            return
        self.head.terminate_all(workers)
        self.network.delete_unused(workers[0], {w["InstanceId"] for w in workers})
