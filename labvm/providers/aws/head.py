"""The profile's own instance: find, create, start, stop, resize, terminate (spot requests cancelled first)."""

from __future__ import annotations

import dataclasses
import sys
from datetime import datetime

from ...config import Profile
from ...errors import LabvmError
from ..base import Instance
from ..cloud import Head, planned_instance, unknown
from .api import LIVE, AwsError, Ec2Api, instance_of
from .gpus import Gpus, no_capacity
from .images import Images
from .names import AwsNames, tags_of
from .network import Network, placement
from .settings import AwsSettings

# https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_StateReason.html
SPOT_INTERRUPTED = "Server.SpotInstanceShutdown"


class AwsHead(Head):
    """The profile's own instance (never a worker: they carry the profile's tags too, and labvm:role)."""

    def __init__(
        self,
        api: Ec2Api,
        settings: AwsSettings,
        names: AwsNames,
        network: Network,
        images: Images,
        profile: Profile,
        gpus: Gpus,
    ):
        super().__init__(api)
        self.api: Ec2Api = api
        self.settings, self.names, self.network, self.images, self.profile = settings, names, network, images, profile
        self.gpus = gpus

    def find(self) -> Instance | None:
        """The newest live instance of this profile and owner that is no worker."""
        filters = self.names.filters() + [{"Name": "instance-state-name", "Values": list(LIVE)}]
        found = [
            i
            for r in self.api.read("describe_instances", Filters=filters)["Reservations"]
            for i in r["Instances"]
            if tags_of(i).get("labvm:role") != "worker"  # workers carry the profile's tags too
        ]
        if not found:
            return None
        newest = max(found, key=lambda i: i["LaunchTime"])
        if len(found) > 1:
            print(
                f"aws: {len(found)} instances carry this profile's tags; using {newest['InstanceId']}", file=sys.stderr
            )
        return instance_of(newest)

    def create(self, image: str | None, public_key: str) -> Instance:
        """In the profile's subnet, behind labvm's group, with labvm's key pair; its Elastic IP attached."""
        subnet = self.network.subnet  # first: an account without a usable network gets nothing made
        ami = self.images.launched(image)
        key_name = self.network.key_pair(public_key)
        group = self.network.security_group(subnet.vpc)
        request = self.launch(
            ami, self.settings.instance_type, key_name, placement(subnet, group), self.names.tag_list()
        )
        print(f"aws: creating {request['InstanceType']} from {ami} in {self.api.scope}", flush=True)
        try:
            created = self.api.change("run_instances", **request)["Instances"][0]
        except AwsError as e:
            step = f"set {self.profile.key('subnet')} to a subnet of one of them"
            raise no_capacity(e, self.gpus, request["InstanceType"], subnet.zone, step) from None
        self.api.wait("instance_running", f"{created['InstanceId']} is running", InstanceIds=[created["InstanceId"]])
        self.network.elastic_ip(created["InstanceId"])
        if self.api.plan:
            return planned_instance(self.names.name, request["InstanceType"])
        return instance_of(self.api.described(created["InstanceId"]))

    def launch(self, ami: str, instance_type: str, key_name: str, where: dict, tags: list[dict]) -> dict:
        """RunInstances' arguments for one VM of this profile, the head or a worker."""
        root = self.api.read("describe_images", ImageIds=[ami])["Images"][0]["RootDeviceName"]
        request = dict(
            ImageId=ami,
            InstanceType=instance_type,
            MinCount=1,
            MaxCount=1,
            KeyName=key_name,
            # An in-guest `shutdown -h` (idle stop) stops the instance, never terminates it.
            InstanceInitiatedShutdownBehavior="stop",
            BlockDeviceMappings=[
                {
                    "DeviceName": root,
                    "Ebs": {
                        "VolumeSize": self.settings.volume_size,
                        "VolumeType": "gp3",
                        "DeleteOnTermination": True,
                    },
                }
            ],
            TagSpecifications=[
                {"ResourceType": "instance", "Tags": tags},
                {"ResourceType": "volume", "Tags": tags},
            ],
            **where,
        )
        if self.settings.spot:
            request["InstanceMarketOptions"] = {
                "MarketType": "spot",
                "SpotOptions": {
                    "SpotInstanceType": "persistent",
                    "InstanceInterruptionBehavior": "stop",
                },
            }
        return request

    def start(self, instance: Instance) -> Instance:
        """Started (after a stop or start in progress settles), the caller admitted, the head's Elastic IP attached."""
        if instance.state != "running":
            if instance.state in ("stopping", "pending"):
                self.api.wait(
                    "instance_stopped" if instance.state == "stopping" else "instance_running",
                    f"{instance.id} settles",
                    InstanceIds=[instance.id],
                )
            data = self.api.described(instance.id)
            # Under --plan a planned stop (resize) has not happened: the instance's planned state counts.
            if (instance.state if self.api.plan else data["State"]["Name"]) != "running":
                self.refuse_interrupted_spot(data)
                self.start_in_place(instance)
                self.api.wait("instance_running", f"{instance.id} is running", InstanceIds=[instance.id])
        self.network.admit_caller()
        data = self.api.described(instance.id)
        if tags_of(data).get("labvm:role") != "worker":  # the profile's Elastic IP is the head's
            self.network.elastic_ip(instance.id)
        return instance_of(self.api.described(instance.id))

    def start_in_place(self, instance: Instance) -> None:
        """StartInstances; an instance starts in its own zone only, so where EC2 has no capacity there the next
        step moves it, through an image, to a zone that offers its type."""
        try:
            self.api.change("start_instances", InstanceIds=[instance.id])
        except AwsError as e:
            p = self.profile.name
            step = (
                f"try again later, or `inv snapshot --host {p}`, `inv terminate --host {p}`, set "
                f"{self.profile.key('subnet')} to a subnet of one of them and `inv up --host {p} --from-image latest`"
            )
            raise no_capacity(e, self.gpus, instance.size, instance.zone, step) from None

    def refuse_interrupted_spot(self, data: dict) -> None:
        """Only EC2 restarts a spot instance it interrupted (interruption-behavior.html); StartInstances fails."""
        reason = data.get("StateReason") or {}
        if data.get("InstanceLifecycle") == "spot" and reason.get("Code") == SPOT_INTERRUPTED:
            p = self.profile.name
            raise LabvmError(
                f"aws: EC2 interrupted spot instance {data['InstanceId']} and only EC2 starts it again, when "
                f"capacity returns: run `inv up --host {p}` later, or `inv snapshot --host {p}`, "
                f"`inv terminate --host {p}`, set {self.profile.key('spot')}: false and "
                f"`inv up --host {p} --from-image latest`"
            )

    def stop(self, instance: Instance) -> Instance:
        """Stopped and waited for."""
        if instance.state not in ("stopped", "stopping"):
            self.api.change("stop_instances", InstanceIds=[instance.id])
        self.api.wait("instance_stopped", f"{instance.id} is stopped", InstanceIds=[instance.id])
        if self.api.plan:
            return dataclasses.replace(instance, state="stopped")
        return instance_of(self.api.described(instance.id))

    def terminate(self, instance: Instance, keep_ip: bool) -> None:
        """Terminated, the head's Elastic IP released unless keep_ip, the group and key pair once unused."""
        data = self.api.described(instance.id)
        self.terminate_all([data])
        if not keep_ip and tags_of(data).get("labvm:role") != "worker":  # the profile's Elastic IP is the head's
            self.network.release_addresses()
        self.network.delete_unused(data, {instance.id})

    def terminate_all(self, instances: list[dict]) -> None:
        """Terminated and waited for, each spot request cancelled first: a persistent spot request
        launches a new instance after its instance is terminated (terminating-a-spot-instance.html)."""
        requests = [i["SpotInstanceRequestId"] for i in instances if i.get("SpotInstanceRequestId")]
        if requests:
            self.api.change("cancel_spot_instance_requests", SpotInstanceRequestIds=requests)
            print(f"aws: cancelled spot request(s) {', '.join(requests)}, so EC2 launches no new instance")
        ids = [i["InstanceId"] for i in instances]
        self.api.change("terminate_instances", InstanceIds=ids)
        self.api.wait("instance_terminated", f"{', '.join(ids)} terminated", InstanceIds=ids)

    def check_type(self, size: str, key: str = "--size") -> None:
        """EC2 has this instance type, else the closest names it has."""
        try:
            self.api.read("describe_instance_types", InstanceTypes=[size])
        except AwsError as e:
            if "InvalidInstanceType" not in e.code:
                raise
            pages: list[dict] = self.api.call(list, self.api.ec2.get_paginator("describe_instance_types").paginate())
            known = [t["InstanceType"] for page in pages for t in page["InstanceTypes"]]
            scope = self.api.scope
            raise unknown(
                key,
                "instance type",
                size,
                known,
                f"`aws ec2 describe-instance-types --region {scope}` lists those of {scope}",
            ) from None

    def resize_target(self, instance: Instance, size: str) -> str:
        """The type checked; a spot instance refused before anything stops."""
        self.check_type(size)
        if self.api.described(instance.id).get("InstanceLifecycle") == "spot":
            # "While a Spot Instance is stopped, you can modify some of its instance attributes, but
            # not the instance type" (interruption-behavior.html): say so before stopping anything.
            p = self.profile.name
            raise LabvmError(
                f"--size: {instance.id} is a spot instance, and EC2 cannot change a spot instance's type: "
                f"`inv snapshot --host {p}`, `inv terminate --host {p}`, "
                f"set {self.profile.key('instance_type')}: {size}, "
                f"then `inv up --host {p} --from-image latest`"
            )
        return size

    def set_size(self, instance: Instance, size: str) -> None:
        """ModifyInstanceAttribute of the stopped instance."""
        self.api.change("modify_instance_attribute", InstanceId=instance.id, InstanceType={"Value": size})
        print(f"aws: {instance.id} is now {size}")

    def last_start(self, instance: Instance) -> datetime:
        """EC2's LaunchTime."""
        return self.api.described(instance.id)["LaunchTime"]
