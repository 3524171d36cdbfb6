"""The head's lifecycle: find, create, start, stop, resize, terminate; its images (snapshot, list, prune)."""

from __future__ import annotations

import dataclasses
import sys
import time
from datetime import datetime, timezone

from ...errors import LabvmError
from ..base import IMAGE_AVAILABLE, IMAGE_FAILED, IMAGE_PENDING, Image, Instance, from_cloud
from ..cloud import NameRules, cloud_name
from .core import AwsBase, AwsError, LIVE, tags_of


# https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_StateReason.html
SPOT_INTERRUPTED = "Server.SpotInstanceShutdown"
# https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_Image.html (ImageState) in labvm's words.
IMAGE_STATES = {"available": IMAGE_AVAILABLE, "pending": IMAGE_PENDING, "transient": IMAGE_PENDING}
# CreateImage Name: "3-128 alphanumeric characters, parentheses (()), square brackets ([]), spaces ( ),
# periods (.), slashes (/), dashes (-), single quotes ('), at-signs (@), or underscores(_)" (botocore's
# ec2 service model, CreateImageRequest): not EC2_NAME's set.
AMI_NAME = NameRules(r"a-zA-Z0-9()\[\] ./\-'@_", 128)


class Lifecycle(AwsBase):
    """The profile's own instance and its AMIs."""

    def find(self) -> Instance | None:
        filters = self._filters() + [{"Name": "instance-state-name", "Values": list(LIVE)}]
        found = [
            i for r in self._read("describe_instances", Filters=filters)["Reservations"] for i in r["Instances"]
            if tags_of(i).get("labvm:role") != "worker"  # workers carry the profile's tags too
        ]
        if not found:
            return None
        newest = max(found, key=lambda i: i["LaunchTime"])
        if len(found) > 1:
            print(f"aws: {len(found)} instances carry this profile's tags; using {newest['InstanceId']}", file=sys.stderr)
        return self._instance(newest)

    def create(self, image: str | None = None, public_key: str = "") -> Instance:
        network = self._network  # first: an account without a usable network gets nothing made
        ami = self._image_id(image)
        key_name = self._key_pair(public_key)
        group = self._security_group(network.vpc)
        request = self._launch(ami, self._instance_type, key_name, self._placement(network, group), self._tag_list())
        print(f"aws: creating {request['InstanceType']} from {ami} in {self.settings.get('region')}", flush=True)
        created = self._change("run_instances", **request)["Instances"][0]
        self._wait("instance_running", f"{created['InstanceId']} is running", InstanceIds=[created["InstanceId"]])
        self._elastic_ip(created["InstanceId"])
        if self.plan:
            return self.planned_instance(self.name, request["InstanceType"])
        return self._instance(self._describe(created["InstanceId"]))

    def _launch(self, ami: str, instance_type: str, key_name: str, placement: dict, tags: list[dict]) -> dict:
        """RunInstances' arguments for one VM of this profile, the head or a worker."""
        root = self._read("describe_images", ImageIds=[ami])["Images"][0]["RootDeviceName"]
        request = dict(
            ImageId=ami,
            InstanceType=instance_type,
            MinCount=1,
            MaxCount=1,
            KeyName=key_name,
            # An in-guest `shutdown -h` (idle stop) stops the instance, never terminates it.
            InstanceInitiatedShutdownBehavior="stop",
            BlockDeviceMappings=[{"DeviceName": root, "Ebs": {
                "VolumeSize": int(self.settings.get("volume_size") or 30),
                "VolumeType": "gp3",
                "DeleteOnTermination": True,
            }}],
            TagSpecifications=[
                {"ResourceType": "instance", "Tags": tags},
                {"ResourceType": "volume", "Tags": tags},
            ],
            **placement,
        )
        if self.settings.get("spot"):
            request["InstanceMarketOptions"] = {"MarketType": "spot", "SpotOptions": {
                "SpotInstanceType": "persistent", "InstanceInterruptionBehavior": "stop",
            }}
        return request

    def start(self, inst: Instance) -> Instance:
        if inst.state != "running":
            if inst.state in ("stopping", "pending"):
                self._wait("instance_stopped" if inst.state == "stopping" else "instance_running",
                           f"{inst.id} settles", InstanceIds=[inst.id])
            data = self._describe(inst.id)
            # Under --plan a planned stop (resize) has not happened: the instance's planned state counts.
            if (inst.state if self.plan else data["State"]["Name"]) != "running":
                self._refuse_interrupted_spot(data)
                self._change("start_instances", InstanceIds=[inst.id])
                self._wait("instance_running", f"{inst.id} is running", InstanceIds=[inst.id])
        self.admit_caller()
        data = self._describe(inst.id)
        if tags_of(data).get("labvm:role") != "worker":  # the profile's Elastic IP is the head's
            self._elastic_ip(inst.id)
        return self._instance(self._describe(inst.id))

    def _refuse_interrupted_spot(self, data: dict) -> None:
        """Only EC2 restarts a spot instance it interrupted (interruption-behavior.html); StartInstances fails."""
        reason = data.get("StateReason") or {}
        if data.get("InstanceLifecycle") == "spot" and reason.get("Code") == SPOT_INTERRUPTED:
            p = self.profile.name
            raise LabvmError(
                f"aws: EC2 interrupted spot instance {data['InstanceId']} and only EC2 starts it again, when "
                f"capacity returns: run `inv up --host {p}` later, or `inv snapshot --host {p}`, "
                f"`inv terminate --host {p}`, set {self._where('spot')}: false and `inv up --host {p} --from-image latest`"
            )

    def stop(self, inst: Instance) -> Instance:
        if inst.state not in ("stopped", "stopping"):
            self._change("stop_instances", InstanceIds=[inst.id])
        self._wait("instance_stopped", f"{inst.id} is stopped", InstanceIds=[inst.id])
        if self.plan:
            return dataclasses.replace(inst, state="stopped")
        return self._instance(self._describe(inst.id))

    def terminate(self, inst: Instance, keep_ip: bool = False) -> None:
        data = self._describe(inst.id)
        self._terminate([data])
        if not keep_ip and tags_of(data).get("labvm:role") != "worker":  # the profile's Elastic IP is the head's
            for address in self._addresses():
                self._change("release_address", AllocationId=address["AllocationId"])
                print(f"aws: released Elastic IP {address['PublicIp']}")
        self._delete_unused(data, {inst.id})

    def _terminate(self, instances: list[dict]) -> None:
        """Terminated and waited for, each spot request cancelled first: a persistent spot request
        launches a new instance after its instance is terminated (terminating-a-spot-instance.html)."""
        requests = [i["SpotInstanceRequestId"] for i in instances if i.get("SpotInstanceRequestId")]
        if requests:
            self._change("cancel_spot_instance_requests", SpotInstanceRequestIds=requests)
            print(f"aws: cancelled spot request(s) {', '.join(requests)}, so EC2 launches no new instance")
        ids = [i["InstanceId"] for i in instances]
        self._change("terminate_instances", InstanceIds=ids)
        self._wait("instance_terminated", f"{', '.join(ids)} terminated", InstanceIds=ids)

    def snapshot(self, inst: Instance, name: str, share: tuple[str, ...] = (), no_reboot: bool = False) -> Image:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        image_name = cloud_name(AMI_NAME, name, self.profile.name, stamp)
        image_id = self._change(
            "create_image", InstanceId=inst.id, Name=image_name, NoReboot=no_reboot,
            Description=f"labvm image of profile {self.profile.name}",
            TagSpecifications=[{"ResourceType": "image", "Tags": self._tag_list(image_name)}],
        )["ImageId"]
        data = self._wait_for_image(image_id)
        snapshots = [m["Ebs"]["SnapshotId"] for m in data.get("BlockDeviceMappings", []) if "Ebs" in m]
        if snapshots:  # tagged afterwards: create_image's snapshot TagSpecifications are not portable
            self._change("create_tags", Resources=snapshots, Tags=self._tag_list(image_name))
        for account in share:
            self._change("modify_image_attribute", ImageId=image_id, LaunchPermission={"Add": [{"UserId": account}]})
            print(f"aws: {image_id} shared with account {account}")
        return self._image({"Name": image_name, **data})

    @staticmethod
    def _image(data: dict) -> Image:
        return Image(data["ImageId"], data.get("Name", ""), data.get("CreationDate", ""),
                     IMAGE_STATES.get(data.get("State", ""), IMAGE_FAILED))

    def _wait_for_image(self, image_id: str) -> dict:
        """Until the AMI is available: minutes for a small disk, up to an hour for a large one."""
        if self.plan:
            print(f"plan: {self.cloud}: then wait until image {image_id} is available", flush=True)
            return {"ImageId": image_id, "State": "pending", "BlockDeviceMappings": [{"Ebs": {"SnapshotId": "snap-(planned)"}}]}
        start = last_said = time.monotonic()
        while True:
            found = self._listed_image(image_id, time.monotonic() - start)
            state = found.get("State", "pending")
            waited = time.monotonic() - start
            if state == "available":
                print(f"snapshot: {image_id} available ({waited / 60:.0f}m)", flush=True)
                return found
            if IMAGE_STATES.get(state) != IMAGE_PENDING:
                reason = from_cloud(f"{state}: {(found.get('StateReason') or {}).get('Message', '')}")
                raise LabvmError(f"snapshot: {image_id} is {reason}; `inv snapshot --host {self.profile.name}` tries again")
            if waited >= self.image_timeout:
                raise LabvmError(f"snapshot: {image_id} is still {from_cloud(state)} after {waited / 60:.0f}m; EC2 goes on making it: "
                                 f"`inv images --host {self.profile.name}` shows when it is available")
            if time.monotonic() - last_said >= self.progress_seconds:
                print(f"snapshot: {image_id} {from_cloud(state)} ({waited / 60:.0f}m)", flush=True)
                last_said = time.monotonic()
            time.sleep(self.poll_seconds)

    def _listed_image(self, image_id: str, waited: float) -> dict:
        """The AMI as DescribeImages has it; {} while EC2 does not list it yet: right after CreateImage it
        answers InvalidAMIID.NotFound for a while (eventual-consistency.html), then lists it pending."""
        try:
            found = self._read("describe_images", ImageIds=[image_id])["Images"]
        except AwsError as e:
            if e.code != "InvalidAMIID.NotFound" or waited >= self.image_unlisted_limit:
                raise
            return {}
        return found[0] if found else {}

    def images(self) -> list[Image]:
        found = self._read("describe_images", Owners=["self"], Filters=self._filters())["Images"]
        return sorted((self._image(i) for i in found), key=lambda image: image.created)

    def delete_image(self, image: Image) -> None:
        """Deregisters the AMI and, in the same call, deletes its snapshots: deleting them after
        DeregisterImage can meet InvalidSnapshot.InUse while EC2 catches up (API_DeregisterImage.html,
        DeleteAssociatedSnapshots); a snapshot EC2 did not delete is named with its delete command."""
        answer = self._change("deregister_image", ImageId=image.id, DeleteAssociatedSnapshots=True)
        for result in answer.get("DeleteSnapshotResults", []):
            if result.get("ReturnCode") != "success":
                print(f"aws: snapshot {result['SnapshotId']} of {image.id} was not deleted ({from_cloud(result.get('ReturnCode'))}); "
                      f"delete it later: aws ec2 delete-snapshot --snapshot-id {result['SnapshotId']} --region {self.scope}",
                      file=sys.stderr)

    def _resize_target(self, inst: Instance, size: str) -> str:
        self._check_type(size)
        if self._describe(inst.id).get("InstanceLifecycle") == "spot":
            # "While a Spot Instance is stopped, you can modify some of its instance attributes, but
            # not the instance type" (interruption-behavior.html): say so before stopping anything.
            p = self.profile.name
            raise LabvmError(
                f"--size: {inst.id} is a spot instance, and EC2 cannot change a spot instance's type: "
                f"`inv snapshot --host {p}`, `inv terminate --host {p}`, set {self._where('instance_type')}: {size}, "
                f"then `inv up --host {p} --from-image latest`"
            )
        return size

    def _set_size(self, inst: Instance, size: str) -> None:
        self._change("modify_instance_attribute", InstanceId=inst.id, InstanceType={"Value": size})
        print(f"aws: {inst.id} is now {size}")

    def last_start(self, inst: Instance) -> datetime:
        return self._describe(inst.id)["LaunchTime"]
