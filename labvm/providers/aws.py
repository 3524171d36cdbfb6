"""AWS EC2 profiles on boto3 (imported only here, when an aws profile is used).

The instance and everything labvm makes for it carry the tags labvm:profile and
labvm:owner: labvm finds them by tag, never by a local state file.  Credentials come
from boto3's own chain (AWS_PROFILE, ~/.aws, environment); none goes to the VM.
"""

from __future__ import annotations

import base64
import difflib
import functools
import hashlib
import json
import sys
import time
from datetime import datetime, timezone
from typing import NamedTuple

from ..config import Profile
from ..errors import LabvmError
from .cloud import CloudProvider
from .base import Check, Image, Instance, Resource, ask, caller_cidr, in_parallel, parse_time, partial_cluster

UBUNTU_ALIASES = {
    f"ubuntu-{release}": f"/aws/service/canonical/ubuntu/server/{release}/stable/current/amd64/hvm/ebs-gp3/ami-id"
    for release in ("22.04", "24.04")
}
LIVE = ("pending", "running", "stopping", "stopped")
# https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_StateReason.html
SPOT_INTERRUPTED = "Server.SpotInstanceShutdown"
# https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_Image.html (ImageState)
IMAGE_BROKEN = ("invalid", "deregistered", "failed", "error", "disabled")
# https://docs.aws.amazon.com/ec2/latest/instancetypes/ec2-instance-quotas.html: vCPU quotas of the
# standard families (A, C, D, H, I, M, R, T, Z), the ones a notebook VM uses.
STANDARD_FAMILIES = tuple("acdhimrtz")
VCPU_QUOTAS = {"on-demand": "L-1216C47A", "spot": "L-34B43A08"}


class Network(NamedTuple):
    vpc: str
    subnet: str  # empty: the default VPC's default subnets
    public_ip: bool  # whether the subnet gives a new instance a public address itself
    zone: str  # the subnet's availability zone; empty: EC2 picks one


def _tags(resource: dict) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Tags", [])}


class AwsProvider(CloudProvider):
    cloud = "aws"
    image_ready = "available"

    def __init__(self, profile: Profile):
        import boto3
        from botocore.config import Config
        from botocore.exceptions import NoRegionError, ProfileNotFound

        super().__init__(profile)
        region = self.settings.get("region")
        # Throttling is retried by botocore, never shown to the user.
        config = Config(region_name=region, retries={"mode": "adaptive", "max_attempts": 10})
        try:
            self.ec2 = boto3.client("ec2", config=config)
        except NoRegionError:
            raise LabvmError(f"{self._where('region')}: not set; e.g. region: us-west-2") from None
        except ProfileNotFound as e:
            raise LabvmError(f"AWS_PROFILE: {e}; `aws configure list-profiles` lists the profiles there are") from None
        self._boto3 = boto3
        self._config = config
        self.labels = {"labvm:profile": profile.name, "labvm:owner": self.owner}
        self.name = f"labvm-{profile.name}"
        # Owners sharing a hosts.yml (a class) in one account each get a group of their own.
        self.group_name = f"labvm-{profile.name}-{self.owner}"
        # Deleting a terminated instance's security group fails with DependencyViolation until EC2
        # has released its network interface: retried from this delay, doubling, for this long.
        self.retry_delay, self.retry_limit = 5.0, 180.0
        # A real AMI takes minutes to an hour: polled this often, progress printed this often.
        self.poll_seconds, self.progress_seconds, self.image_timeout = 15.0, 30.0, 3600.0

    # What a planned call returns: enough for the rest of the verb to print its own calls.
    PLANNED = {
        "run_instances": {"Instances": [{"InstanceId": "i-(planned)"}]},
        "create_security_group": {"GroupId": "sg-(planned)"},
        "allocate_address": {"PublicIp": "(planned)", "AllocationId": "eipalloc-(planned)"},
        "create_image": {"ImageId": "ami-(planned)"},
    }

    # -- helpers ---------------------------------------------------------------------------

    def _call(self, operation: str, **kwargs):
        """One EC2 call, its errors turned into one line with the next step."""
        from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError, NoRegionError

        if self.plan and not operation.startswith(("describe_", "get_")):
            shown = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
            print(f"plan: ec2.{operation}({shown})")
            return self.PLANNED.get(operation, {})
        try:
            return getattr(self.ec2, operation)(**kwargs)
        except NoCredentialsError:
            raise LabvmError(
                "no AWS credentials found; set AWS_PROFILE, run `aws configure`, or export "
                "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (labvm reads boto3's usual places)"
            ) from None
        except NoRegionError:
            raise LabvmError(f"{self._where('region')}: not set; e.g. region: us-west-2") from None
        except ClientError as e:
            raise LabvmError(self._explain(e)) from None
        except EndpointConnectionError as e:
            raise LabvmError(f"AWS did not answer at {e.kwargs.get('endpoint_url')}; check the network (a VPN or "
                             f"proxy?) and {self._where('region')}") from None

    def _explain(self, error) -> str:
        code = error.response["Error"]["Code"]
        message = error.response["Error"].get("Message", "")
        hints = {
            "UnauthorizedOperation": "your AWS identity may not do this; ask your admin for EC2 rights (or pick another AWS_PROFILE)",
            "AuthFailure": "AWS rejected the credentials; check AWS_PROFILE / `aws sts get-caller-identity`",
            "InsufficientInstanceCapacity": f"AWS has no capacity for this type here now; try again later or change {self._where('instance_type')}",
            "VcpuLimitExceeded": "your vCPU quota is used up; stop other instances or request more in Service Quotas (EC2 Running On-Demand instances)",
            "InvalidAMIID.NotFound": f"image not found in region {self.settings.get('region')}; AMI ids differ per region: check {self._where('image')}",
            "InvalidAMIID.Malformed": f"not an AMI id; check {self._where('image')} (ami-... or ubuntu-24.04)",
            "InsufficientSpotCapacity": f"no spot capacity for this type now; set {self._where('spot')}: false or try later",
            "MaxSpotInstanceCountExceeded": "your spot instance quota is used up; request more in Service Quotas",
            "ParameterNotFound": f"no public Ubuntu image parameter for this alias in {self.settings.get('region')}; set {self._where('image')} to an ami-... id",
            "SpotMaxPriceTooLow": "the spot price is above your maximum; try later or use on-demand (spot: false)",
        }
        hint = hints.get(code, "")
        return f"AWS {code}: {message}" + (f"; {hint}" if hint else "")

    def _tag_list(self, name: str | None = None) -> list[dict]:
        tags = {"Name": name or self.name, **(self.settings.get("tags") or {}), **self.labels}
        return [{"Key": str(k), "Value": str(v)} for k, v in tags.items()]

    def _filters(self) -> list[dict]:
        return [{"Name": f"tag:{k}", "Values": [v]} for k, v in self.labels.items()]

    def _instance(self, data: dict) -> Instance:
        address = data.get("PublicIpAddress") or data.get("PrivateIpAddress") or ""
        name = next((t["Value"] for t in data.get("Tags", []) if t["Key"] == "Name"), data["InstanceId"])
        return Instance(data["InstanceId"], name, data["State"]["Name"], address, data["InstanceType"],
                        private_address=data.get("PrivateIpAddress", ""))

    def _describe(self, instance_id: str) -> dict:
        reservations = self._call("describe_instances", InstanceIds=[instance_id])["Reservations"]
        return reservations[0]["Instances"][0]

    def _wait(self, waiter: str, what: str, **kwargs) -> None:
        from botocore.exceptions import WaiterError

        if self.plan:
            print(f"plan: wait until {what}")
            return
        print(f"aws: waiting until {what} ...", flush=True)
        start = time.monotonic()
        try:
            self.ec2.get_waiter(waiter).wait(**kwargs, WaiterConfig={"Delay": 2, "MaxAttempts": 300})
        except WaiterError as e:
            raise LabvmError(f"aws: {what} did not happen: {e}") from None
        print(f"aws: {what} ({time.monotonic() - start:.0f}s)", flush=True)

    # -- the provider interface --------------------------------------------------------

    def find(self) -> Instance | None:
        filters = self._filters() + [{"Name": "instance-state-name", "Values": list(LIVE)}]
        found = [
            i for r in self._call("describe_instances", Filters=filters)["Reservations"] for i in r["Instances"]
            if _tags(i).get("labvm:role") != "worker"  # workers carry the profile's tags too
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
        created = self._call("run_instances", **request)["Instances"][0]
        self._wait("instance_running", f"{created['InstanceId']} is running", InstanceIds=[created["InstanceId"]])
        self._elastic_ip(created["InstanceId"])
        if self.plan:
            return Instance(created["InstanceId"], self.name, "running", "(planned)", request["InstanceType"])
        return self._instance(self._describe(created["InstanceId"]))

    def _launch(self, ami: str, instance_type: str, key_name: str, placement: dict, tags: list[dict]) -> dict:
        """RunInstances' arguments for one VM of this profile, the head or a worker."""
        root = self._call("describe_images", ImageIds=[ami])["Images"][0]["RootDeviceName"]
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

    @staticmethod
    def _placement(network: Network, group: str) -> dict:
        if not network.subnet:
            return {"SecurityGroupIds": [group]}
        if network.public_ip:
            return {"SubnetId": network.subnet, "SecurityGroupIds": [group]}
        # The subnet gives no public address: ask for one on the primary interface. RunInstances then
        # takes subnet and groups there, never at instance level (API_RunInstances.html, SecurityGroupId).
        return {"NetworkInterfaces": [{"DeviceIndex": 0, "SubnetId": network.subnet, "Groups": [group],
                                       "AssociatePublicIpAddress": True, "DeleteOnTermination": True}]}

    def start(self, inst: Instance) -> Instance:
        if inst.state != "running":
            if inst.state in ("stopping", "pending"):
                self._wait("instance_stopped" if inst.state == "stopping" else "instance_running",
                           f"{inst.id} settles", InstanceIds=[inst.id])
            data = self._describe(inst.id)
            if data["State"]["Name"] != "running":
                self._refuse_interrupted_spot(data)
                self._call("start_instances", InstanceIds=[inst.id])
                self._wait("instance_running", f"{inst.id} is running", InstanceIds=[inst.id])
        self.admit_caller()
        data = self._describe(inst.id)
        if _tags(data).get("labvm:role") != "worker":  # the profile's Elastic IP is the head's
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
            self._call("stop_instances", InstanceIds=[inst.id])
        self._wait("instance_stopped", f"{inst.id} is stopped", InstanceIds=[inst.id])
        return self._instance(self._describe(inst.id))

    def terminate(self, inst: Instance, keep_ip: bool = False) -> None:
        data = self._describe(inst.id)
        self._terminate([data])
        if not keep_ip and _tags(data).get("labvm:role") != "worker":  # the profile's Elastic IP is the head's
            for address in self._addresses():
                self._call("release_address", AllocationId=address["AllocationId"])
                print(f"aws: released Elastic IP {address['PublicIp']}")
        self._delete_unused(data)

    def _delete_unused(self, instance: dict) -> None:
        """labvm's group and key pair that this terminated instance used, once no instance uses them."""
        group = self._find_group(instance["VpcId"]) if instance.get("VpcId") else None
        if group is not None:
            self._delete_unused_group(group["GroupId"])
        if instance.get("KeyName", "").startswith(f"labvm-{self.owner}"):
            self._delete_unused_key(instance["KeyName"])

    def _terminate(self, instances: list[dict]) -> None:
        """Terminated and waited for, each spot request cancelled first: a persistent spot request
        launches a new instance after its instance is terminated (terminating-a-spot-instance.html)."""
        requests = [i["SpotInstanceRequestId"] for i in instances if i.get("SpotInstanceRequestId")]
        if requests:
            self._call("cancel_spot_instance_requests", SpotInstanceRequestIds=requests)
            print(f"aws: cancelled spot request(s) {', '.join(requests)}, so EC2 launches no new instance")
        ids = [i["InstanceId"] for i in instances]
        self._call("terminate_instances", InstanceIds=ids)
        self._wait("instance_terminated", f"{', '.join(ids)} terminated", InstanceIds=ids)

    def snapshot(self, inst: Instance, name: str, share: tuple[str, ...] = (), no_reboot: bool = False) -> Image:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        image_name = f"{name}-{self.profile.name}-{stamp}"
        image_id = self._call(
            "create_image", InstanceId=inst.id, Name=image_name, NoReboot=no_reboot,
            Description=f"labvm image of profile {self.profile.name}",
            TagSpecifications=[{"ResourceType": "image", "Tags": self._tag_list(image_name)}],
        )["ImageId"]
        if self.plan:
            print(f"plan: wait until image {image_id} is available")
            for account in share:
                self._call("modify_image_attribute", ImageId=image_id, LaunchPermission={"Add": [{"UserId": account}]})
            return Image(image_id, image_name, "", "(planned)")
        data = self._wait_for_image(image_id)
        snapshots = [m["Ebs"]["SnapshotId"] for m in data.get("BlockDeviceMappings", []) if "Ebs" in m]
        if snapshots:  # tagged afterwards: create_image's snapshot TagSpecifications are not portable
            self._call("create_tags", Resources=snapshots, Tags=self._tag_list(image_name))
        for account in share:
            self._call("modify_image_attribute", ImageId=image_id,
                       LaunchPermission={"Add": [{"UserId": account}]})
            print(f"aws: {image_id} shared with account {account}")
        return Image(image_id, image_name, data.get("CreationDate", ""), data.get("State", ""))

    def _wait_for_image(self, image_id: str) -> dict:
        """Until the AMI is available: minutes for a small disk, up to an hour for a large one."""
        start = last_said = time.monotonic()
        while True:
            found = self._call("describe_images", ImageIds=[image_id])["Images"]
            state = found[0]["State"] if found else "pending"  # just made: not yet listed
            waited = time.monotonic() - start
            if state == "available":
                print(f"snapshot: {image_id} available ({waited / 60:.0f}m)", flush=True)
                return found[0]
            if state in IMAGE_BROKEN:
                reason = (found[0].get("StateReason") or {}).get("Message", "")
                raise LabvmError(f"snapshot: {image_id} is {state}: {reason}; `inv snapshot --host {self.profile.name}` tries again")
            if waited >= self.image_timeout:
                raise LabvmError(f"snapshot: {image_id} is still {state} after {waited / 60:.0f}m; EC2 goes on making it: "
                                 f"`inv images --host {self.profile.name}` shows when it is available")
            if time.monotonic() - last_said >= self.progress_seconds:
                print(f"snapshot: {image_id} {state} ({waited / 60:.0f}m)", flush=True)
                last_said = time.monotonic()
            time.sleep(self.poll_seconds)

    def images(self) -> list[Image]:
        found = self._call("describe_images", Owners=["self"], Filters=self._filters())["Images"]
        return sorted(
            (Image(i["ImageId"], i.get("Name", ""), i.get("CreationDate", ""), i.get("State", "")) for i in found),
            key=lambda image: image.created,
        )

    def delete_image(self, image: Image) -> None:
        """Deregisters the AMI and deletes its snapshots: no zombie snapshots left billing."""
        data = self._call("describe_images", ImageIds=[image.id])["Images"][0]
        self._call("deregister_image", ImageId=image.id)
        for mapping in data.get("BlockDeviceMappings", []):
            if "Ebs" in mapping:
                self._call("delete_snapshot", SnapshotId=mapping["Ebs"]["SnapshotId"])

    def resize(self, inst: Instance, size: str) -> Instance:
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
        if inst.size == size:
            print(f"aws: {inst.id} is already {size}")
            return inst
        stopped = self.stop(inst)
        self._call("modify_instance_attribute", InstanceId=inst.id, InstanceType={"Value": size})
        print(f"aws: {inst.id} is now {size}")
        return self.start(stopped)

    def last_start(self, inst: Instance) -> datetime:
        return self._describe(inst.id)["LaunchTime"]

    # -- a Dask cluster's workers ---------------------------------------------------------

    def _cluster_tags(self, index: int) -> list[dict]:
        tags = self._tag_list(f"{self.name}-w{index}")
        return tags + [{"Key": k, "Value": v} for k, v in
                       {"labvm:cluster": self.profile.name, "labvm:role": "worker", "labvm:index": str(index)}.items()]

    def _worker_data(self) -> list[dict]:
        filters = [{"Name": f"tag:{k}", "Values": [v]} for k, v in
                   {"labvm:cluster": self.profile.name, "labvm:owner": self.owner, "labvm:role": "worker"}.items()]
        filters.append({"Name": "instance-state-name", "Values": list(LIVE)})
        found = [i for r in self._call("describe_instances", Filters=filters)["Reservations"] for i in r["Instances"]]
        return sorted(found, key=lambda i: int(_tags(i).get("labvm:index", 0)))

    def workers(self) -> list[Instance]:
        """This profile's worker VMs of this owner, by index; each name ends with -w<index>."""
        return [self._instance(i) for i in self._worker_data()]

    def _head(self) -> dict:
        head = self.find()
        if head is None:
            raise LabvmError(f"profile {self.profile.name!r} has no VM to make workers beside; `inv up --host {self.profile.name}`")
        return self._describe(head.id)

    def cluster_image(self) -> str:
        """The image new workers are made from (the head's AMI); "" without a head."""
        head = self.find()
        return self._describe(head.id)["ImageId"] if head else ""

    def create_workers(self, indexes: list[int], image: str, size: str, public_key: str) -> list[Instance]:
        """Workers of these indexes, made in parallel beside the head: its subnet, group and key pair.
        image "" is the head's AMI, size "" its type.  One that fails leaves the others made."""
        head = self._head()
        size = size or head["InstanceType"]
        if size != head["InstanceType"]:
            self._check_type(size, self._where("cluster.worker_size"))
        ami = image or head["ImageId"]
        placement = self._placement(self._head_network(head), self._find_group(head["VpcId"])["GroupId"])
        key_name = self._key_pair(public_key)
        print(f"aws: creating {len(indexes)} worker(s) {size} from {ami}", flush=True)

        def launch(index: int) -> str:
            request = self._launch(ami, size, key_name, placement, self._cluster_tags(index))
            return self._call("run_instances", **request)["Instances"][0]["InstanceId"]

        made, failed = in_parallel(launch, indexes)
        if made:
            self._wait("instance_running", f"{len(made)} worker(s) running", InstanceIds=list(made.values()))
        if failed:
            raise LabvmError(partial_cluster(self.profile.name, made, failed))
        if self.plan:
            return [Instance(i, f"{self.name}-w{n}", "running", "(planned)", size) for n, i in made.items()]
        ids = set(made.values())
        return [self._instance(i) for i in self._worker_data() if i["InstanceId"] in ids]

    def _head_network(self, head: dict) -> Network:
        """The head's own subnet, whatever the profile says now: the cluster is one network."""
        (subnet,) = self._call("describe_subnets", SubnetIds=[head["SubnetId"]])["Subnets"]
        return Network(head["VpcId"], head["SubnetId"], bool(subnet.get("MapPublicIpOnLaunch")),
                       subnet.get("AvailabilityZone", ""))

    def allow_cluster(self) -> None:
        """Every TCP port between the machines of labvm's group (the head and its workers), and only
        between them: the rule's source is the group itself, no address range."""
        group = self._find_group(self._head()["VpcId"])
        if any(pair.get("GroupId") == group["GroupId"] for p in group.get("IpPermissions", [])
               for pair in p.get("UserIdGroupPairs", [])):
            return
        self._call("authorize_security_group_ingress", GroupId=group["GroupId"], IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 0, "ToPort": 65535, "UserIdGroupPairs": [
                {"GroupId": group["GroupId"], "Description": "labvm: Dask between the cluster's machines"}]}])
        print(f"aws: security group {group['GroupName']} lets the cluster's machines reach each other (Dask)")

    def terminate_workers(self) -> None:
        """Every worker of this profile and owner, spot requests cancelled; with the head gone too, its
        group and key pair go."""
        workers = self._worker_data()
        if not workers:
            return
        self._terminate(workers)
        self._delete_unused(workers[0])

    # -- inv check -----------------------------------------------------------------------

    def preflight(self, public_key: str) -> list[Check]:
        """Read-only questions, one Check each; a question that cannot be answered says why."""
        identity = self._identity()
        if not identity.ok:
            return [identity]
        questions = [
            ("region", self._region_check), ("network", lambda: self._network_check()),
            ("image", self._image_check), ("size", self._size_check), ("quota", self._quota_check),
            ("key pair", lambda: self._key_check(public_key)), ("ssh rule", self._rule_check),
        ]
        return [identity] + [ask(name, question) for name, question in questions]

    def _identity(self) -> Check:
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        sts = self._boto3.client("sts", config=self._config)
        try:
            return Check("credentials", True, sts.get_caller_identity()["Arn"])
        except NoCredentialsError:
            return Check("credentials", False, "no AWS credentials found; set AWS_PROFILE or run `aws configure`")
        except ClientError as e:
            return Check("credentials", False, self._explain(e))
        except BotoCoreError as e:
            return Check("credentials", False, f"AWS did not answer ({e}); check the network or proxy")

    def _region_check(self) -> str:
        region = self.scope
        found = self._call("describe_regions", AllRegions=True, Filters=[{"Name": "region-name", "Values": [region]}])["Regions"]
        if not found:
            raise LabvmError(f"{self._where('region')}: {region} is not an EC2 region; `aws ec2 describe-regions` lists them")
        if found[0].get("OptInStatus") == "not-opted-in":
            raise LabvmError(f"{self._where('region')}: {region} is not enabled for this account; enable it in the "
                             f"AWS console (Account, AWS Regions) or pick another region")
        return region

    def _network_check(self) -> str:
        network = self._network
        if not network.subnet:
            return f"default VPC {network.vpc}"
        public = "gives public addresses" if network.public_ip else "labvm asks for a public address"
        return f"subnet {network.subnet} of {network.vpc} in {network.zone} ({public})"

    def _image_check(self) -> str:
        ami = self._image_id(None)
        found = self._call("describe_images", ImageIds=[ami])["Images"]
        if not found:
            raise LabvmError(f"{self._where('image')}: {ami} is not visible in {self.scope}; AMI ids differ per region")
        return f"{ami} ({found[0].get('Name', '')})"

    def _size_check(self) -> str:
        wanted = self._instance_type
        zone = self._network.zone if self.settings.get("subnet") else ""
        kind, where = ("availability-zone", zone) if zone else ("region", self.scope)
        offered = self._call("describe_instance_type_offerings", LocationType=kind, Filters=[
            {"Name": "instance-type", "Values": [wanted]}, {"Name": "location", "Values": [where]}])["InstanceTypeOfferings"]
        if not offered:
            raise LabvmError(f"{self._where('instance_type')}: {wanted} is not offered in {where}; `aws ec2 "
                             f"describe-instance-type-offerings --location-type {kind} --region {self.scope}` lists those that are")
        return f"{wanted} is offered in {where}"

    @functools.cached_property
    def quotas(self):
        return self._boto3.client("service-quotas", config=self._config)

    def _quota_check(self) -> str:
        from botocore.exceptions import BotoCoreError, ClientError

        wanted = self._instance_type
        market = "spot" if self.settings.get("spot") else "on-demand"
        if not wanted.startswith(STANDARD_FAMILIES):
            return f"not checked: {wanted} is outside the standard families labvm checks"
        try:
            quota = self.quotas.get_service_quota(ServiceCode="ec2", QuotaCode=VCPU_QUOTAS[market])["Quota"]["Value"]
        except (BotoCoreError, ClientError) as e:
            return f"not checked: Service Quotas could not be read ({e})"
        live = [{"Name": "instance-state-name", "Values": ["pending", "running"]}]
        running = [i for r in self._call("describe_instances", Filters=live)["Reservations"] for i in r["Instances"]
                   if i["InstanceType"].startswith(STANDARD_FAMILIES) and (i.get("InstanceLifecycle") == "spot") == (market == "spot")]
        vcpus = self._vcpus({wanted} | {i["InstanceType"] for i in running})
        used = sum(vcpus[i["InstanceType"]] for i in running)
        if used + vcpus[wanted] > quota:
            raise LabvmError(f"{used} of {quota:.0f} {market} vCPUs in use and {wanted} needs {vcpus[wanted]}; stop an "
                             f"instance or request more in Service Quotas (EC2, {VCPU_QUOTAS[market]})")
        return f"{used} of {quota:.0f} {market} vCPUs in use; {wanted} needs {vcpus[wanted]}"

    def _vcpus(self, instance_types: set[str]) -> dict[str, int]:
        found = self._call("describe_instance_types", InstanceTypes=sorted(instance_types))["InstanceTypes"]
        return {t["InstanceType"]: t["VCpuInfo"]["DefaultVCpus"] for t in found}

    def _key_check(self, public_key: str) -> str:
        name, exists = self._existing_key_pair(public_key)
        return f"{name} holds labvm's key" if exists else f"{name} is imported at create"

    def _rule_check(self) -> str:
        cidr = self._caller
        group = self._find_group(self._network.vpc)
        if group is None:
            return f"{self.group_name} is made at create, admitting {cidr} to port 22"
        before = self._ssh_ranges(group)
        if cidr in before:
            return f"{self.group_name} admits {cidr}"
        return f"{self.group_name} admits {', '.join(before) or 'nothing'}; `inv up` changes it to {cidr}"

    # -- inv audit -----------------------------------------------------------------------

    @property
    def scope(self) -> str:
        return self.ec2.meta.region_name

    def inventory(self) -> list[Resource]:
        """Every labvm-tagged instance, image, orphan snapshot, loose volume and Elastic IP of the
        region, whatever its profile or owner."""
        region = self.scope
        labvm = [{"Name": "tag-key", "Values": ["labvm:profile"]}]

        def aws(action: str) -> str:
            return f"aws ec2 {action} --region {region}"

        def resource(kind: str, resource_id: str, data: dict, state: str, since, delete: str, **extra) -> Resource:
            tags = _tags(data)
            profile = tags.get("labvm:profile", "")
            if tags.get("labvm:role") == "worker":  # named as the session names a worker: aws+w2
                profile = f"{tags.get('labvm:cluster', profile)}+w{tags.get('labvm:index', '?')}"
            return Resource("aws", region, kind, resource_id, profile, tags.get("labvm:owner", ""),
                            state, since, delete, **extra)

        live = labvm + [{"Name": "instance-state-name", "Values": list(LIVE)}]
        instances = [i for r in self._call("describe_instances", Filters=live)["Reservations"] for i in r["Instances"]]
        prices = self._on_demand_prices({i["InstanceType"] for i in instances if i.get("InstanceLifecycle") != "spot"})
        found = [
            resource("instance", i["InstanceId"], i, i["State"]["Name"], i["LaunchTime"],
                     aws(f"terminate-instances --instance-ids {i['InstanceId']}"), type=i["InstanceType"],
                     hourly_usd=self._spot_price(i) if i.get("InstanceLifecycle") == "spot" else prices.get(i["InstanceType"]))
            for i in instances
        ]
        # All of this account's AMIs, labvm's or not: a snapshot one of them uses is no orphan.
        images = self._call("describe_images", Owners=["self"])["Images"]
        in_use = set()
        for image in images:
            snapshots = [m["Ebs"] for m in image.get("BlockDeviceMappings", []) if "SnapshotId" in m.get("Ebs", {})]
            in_use.update(s["SnapshotId"] for s in snapshots)
            if any(t["Key"] == "labvm:profile" for t in image.get("Tags", [])):
                delete = " && ".join([aws(f"deregister-image --image-id {image['ImageId']}")]
                                     + [aws(f"delete-snapshot --snapshot-id {s['SnapshotId']}") for s in snapshots])
                found.append(resource("image", image["ImageId"], image, image.get("State", ""),
                                      parse_time(image.get("CreationDate")), delete,
                                      size_gb=sum(s.get("VolumeSize", 0) for s in snapshots)))
        for snapshot in self._call("describe_snapshots", OwnerIds=["self"], Filters=labvm)["Snapshots"]:
            if snapshot["SnapshotId"] not in in_use:
                found.append(resource("snapshot", snapshot["SnapshotId"], snapshot, snapshot.get("State", ""),
                                      snapshot.get("StartTime"), aws(f"delete-snapshot --snapshot-id {snapshot['SnapshotId']}"),
                                      size_gb=snapshot.get("VolumeSize")))
        loose = labvm + [{"Name": "status", "Values": ["available"]}]
        for volume in self._call("describe_volumes", Filters=loose)["Volumes"]:
            found.append(resource("volume", volume["VolumeId"], volume, "unattached", volume.get("CreateTime"),
                                  aws(f"delete-volume --volume-id {volume['VolumeId']}"), size_gb=volume.get("Size")))
        for address in self._call("describe_addresses", Filters=labvm)["Addresses"]:
            found.append(resource("address", address["AllocationId"], address,
                                  "attached" if address.get("AssociationId") or address.get("InstanceId") else "unattached",
                                  None, aws(f"release-address --allocation-id {address['AllocationId']}"),
                                  address=address.get("PublicIp", "")))
        return found

    def _spot_price(self, instance: dict) -> float | None:
        """The spot price in the instance's zone now; None when AWS does not say."""
        from botocore.exceptions import BotoCoreError, ClientError

        zone = instance["Placement"]["AvailabilityZone"]
        try:
            history = self.ec2.describe_spot_price_history(
                InstanceTypes=[instance["InstanceType"]], AvailabilityZone=zone, ProductDescriptions=["Linux/UNIX"],
                StartTime=datetime.now(timezone.utc))["SpotPriceHistory"]
        except (BotoCoreError, ClientError):
            return None
        return next((float(h["SpotPrice"]) for h in history if h["AvailabilityZone"] == zone), None)

    def _on_demand_prices(self, instance_types: set[str]) -> dict[str, float]:
        """USD an hour for on-demand Linux from the Pricing API, as far as it answers: a price is an
        estimate, so no rights for it, no way to it or an answer not understood means no price."""
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError, ClientError

        if not instance_types:
            return {}
        # The Pricing API lives in us-east-1 whatever the region priced.
        pricing = self._boto3.client("pricing", region_name="us-east-1", config=Config(
            connect_timeout=5, read_timeout=10, retries={"total_max_attempts": 2}))
        prices = {}
        for instance_type in sorted(instance_types):
            wanted = {"instanceType": instance_type, "regionCode": self.scope, "operatingSystem": "Linux",
                      "tenancy": "Shared", "preInstalledSw": "NA", "capacitystatus": "Used",
                      "licenseModel": "No License required"}
            try:
                products = pricing.get_products(ServiceCode="AmazonEC2", Filters=[
                    {"Type": "TERM_MATCH", "Field": k, "Value": v} for k, v in wanted.items()])["PriceList"]
                hourly = [float(d["pricePerUnit"]["USD"]) for p in products
                          for term in json.loads(p)["terms"].get("OnDemand", {}).values()
                          for d in term["priceDimensions"].values() if d.get("unit") == "Hrs"]
            except (BotoCoreError, ClientError, ValueError, KeyError, TypeError):
                return prices  # the next type would fail the same way, only slower
            if any(hourly):
                prices[instance_type] = min(h for h in hourly if h > 0)
        return prices

    # -- what create needs ------------------------------------------------------------

    def _image_id(self, image: str | None) -> str:
        wanted = image or str(self.settings.get("image") or "ubuntu-24.04")
        if wanted in UBUNTU_ALIASES:
            from botocore.exceptions import ClientError

            ssm = self._boto3.client("ssm", config=self._config)
            try:
                return ssm.get_parameter(Name=UBUNTU_ALIASES[wanted])["Parameter"]["Value"]
            except ClientError as e:
                raise LabvmError(self._explain(e)) from None
        if not wanted.startswith("ami-"):
            raise LabvmError(f"{self._where('image')}: {wanted!r} is neither ami-... nor one of {', '.join(UBUNTU_ALIASES)}")
        return wanted

    @property
    def _instance_type(self) -> str:
        return str(self.settings.get("instance_type") or "t3.small")

    @functools.cached_property
    def _network(self) -> Network:
        """The profile's subnet (and so its VPC), else the region's default VPC."""
        region = self.settings.get("region")
        listing = f"`aws ec2 describe-subnets --region {region}` lists the subnets"
        subnet_id = self.settings.get("subnet")
        if subnet_id:
            from botocore.exceptions import ClientError

            try:
                (subnet,) = self.ec2.describe_subnets(SubnetIds=[str(subnet_id)])["Subnets"]
            except ClientError as e:
                if not e.response["Error"]["Code"].startswith("InvalidSubnet"):
                    raise LabvmError(self._explain(e)) from None
                raise LabvmError(f"{self._where('subnet')}: no subnet {subnet_id} in {region}; {listing}") from None
            return Network(subnet["VpcId"], subnet["SubnetId"], bool(subnet.get("MapPublicIpOnLaunch")),
                           subnet.get("AvailabilityZone", ""))
        vpcs = self._call("describe_vpcs", Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
        if not vpcs:
            raise LabvmError(f"region {region} has no default VPC (usual in institutional accounts): set "
                             f"{self._where('subnet')} to a subnet with a route to the internet; {listing}")
        return Network(vpcs[0]["VpcId"], "", True, "")

    @staticmethod
    def _key_name_for(owner: str, public_key: str) -> str:
        """Named by the key itself, so a second laptop's key never hides behind the first one's name."""
        blob = base64.b64decode(public_key.split()[1])
        return f"labvm-{owner}-{hashlib.sha256(blob).hexdigest()[:12]}"

    def _existing_key_pair(self, public_key: str) -> tuple[str, bool]:
        """labvm's key pair name for this key, and whether EC2 has it; another key under that name stops here."""
        name = self._key_name_for(self.owner, public_key)
        found = self._call("describe_key_pairs", Filters=[{"Name": "key-name", "Values": [name]}],
                           IncludePublicKey=True)["KeyPairs"]
        # EC2 returns the OpenSSH line, maybe with another comment: type and key are what count.
        if found and found[0].get("PublicKey", "").split()[:2] != public_key.split()[:2]:
            raise LabvmError(f"aws: key pair {name} holds another key than labvm's; delete it (`aws ec2 delete-key-pair "
                             f"--key-name {name} --region {self.settings.get('region')}`) and run again")
        return name, bool(found)

    def _key_pair(self, public_key: str) -> str:
        name, exists = self._existing_key_pair(public_key)
        if not exists:
            self._call("import_key_pair", KeyName=name, PublicKeyMaterial=public_key.encode(),
                       TagSpecifications=[{"ResourceType": "key-pair", "Tags": self._tag_list(name)}])
            print(f"aws: imported labvm's public key as key pair {name}")
        return name

    def _find_group(self, vpc: str) -> dict | None:
        found = self._call("describe_security_groups", Filters=[
            {"Name": "group-name", "Values": [self.group_name]}, {"Name": "vpc-id", "Values": [vpc]}])
        return (found["SecurityGroups"] or [None])[0]

    def _security_group(self, vpc: str) -> str:
        group = self._find_group(vpc)
        if group is None:
            group_id = self._call("create_security_group", GroupName=self.group_name, VpcId=vpc,
                                  Description=f"labvm {self.profile.name} of {self.owner}: SSH only",
                                  TagSpecifications=[{"ResourceType": "security-group",
                                                      "Tags": self._tag_list(self.group_name)}])["GroupId"]
            group = {"GroupId": group_id, "GroupName": self.group_name, "IpPermissions": []}
        self._admit(group)
        return group["GroupId"]

    @functools.cached_property
    def _caller(self) -> str:
        return str(self.settings.get("ssh_cidr") or caller_cidr(self._where("ssh_cidr")))

    @staticmethod
    def _ssh_ranges(group: dict) -> list[str]:
        """The ranges labvm's rules admit to port 22 (rules someone added by hand are left alone)."""
        return [r["CidrIp"] for p in group.get("IpPermissions", []) if p.get("FromPort") == 22
                for r in p.get("IpRanges", []) if r.get("Description") == "labvm: SSH"]

    def admit_caller(self) -> None:
        """The SSH rule admits this machine's address: after a move to another network, the rule moves too."""
        group = self._find_group(self._network.vpc)
        if group is not None:
            self._admit(group)

    def _admit(self, group: dict) -> None:
        cidr, before = self._caller, self._ssh_ranges(group)
        if cidr in before:
            return
        rule = {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22}
        self._call("authorize_security_group_ingress", GroupId=group["GroupId"], IpPermissions=[
            {**rule, "IpRanges": [{"CidrIp": cidr, "Description": "labvm: SSH"}]}])
        if before:
            self._call("revoke_security_group_ingress", GroupId=group["GroupId"], IpPermissions=[
                {**rule, "IpRanges": [{"CidrIp": old} for old in before]}])
            print(f"ssh rule: now admits {cidr} (was {', '.join(before)})")
        else:
            print(f"aws: security group {group['GroupName']} opens port 22 to {cidr} only")

    def _addresses(self) -> list[dict]:
        return self._call("describe_addresses", Filters=self._filters())["Addresses"]

    def _elastic_ip(self, instance_id: str) -> None:
        if not self.settings.get("elastic_ip"):
            return
        addresses = self._addresses()
        if addresses:
            address = addresses[0]
        else:
            address = self._call("allocate_address", Domain="vpc", TagSpecifications=[
                {"ResourceType": "elastic-ip", "Tags": self._tag_list()}])
            print(f"aws: allocated Elastic IP {address['PublicIp']}")
        if address.get("InstanceId") != instance_id:
            self._call("associate_address", InstanceId=instance_id, AllocationId=address["AllocationId"])
            print(f"aws: Elastic IP {address['PublicIp']} -> {instance_id}")

    def _check_type(self, size: str, key: str = "--size") -> None:
        from botocore.exceptions import ClientError

        try:
            self.ec2.describe_instance_types(InstanceTypes=[size])
        except ClientError as e:
            if "InvalidInstanceType" not in e.response["Error"]["Code"]:
                raise LabvmError(self._explain(e)) from None
            names = [
                t["InstanceType"]
                for page in self.ec2.get_paginator("describe_instance_types").paginate()
                for t in page["InstanceTypes"]
            ]
            close = difflib.get_close_matches(size, names, n=3, cutoff=0.5)
            hint = f"; closest: {', '.join(close)}" if close else ""
            raise LabvmError(f"{key}: {size!r} is not an instance type in {self.settings.get('region')}{hint}") from None

    def _in_use(self, name: str, value: str) -> bool:
        live = [{"Name": "instance-state-name", "Values": list(LIVE)}, {"Name": name, "Values": [value]}]
        return bool(self._call("describe_instances", Filters=live)["Reservations"])

    def _delete_unused_group(self, group_id: str) -> None:
        """EC2 refuses (DependencyViolation) until the terminated instance's interface is gone: retried,
        with a bound; a group left behind costs nothing and is named with its delete command."""
        from botocore.exceptions import ClientError

        if self._in_use("instance.group-id", group_id):
            return
        if self.plan:
            self._call("delete_security_group", GroupId=group_id)
            return
        delay, waited = self.retry_delay, 0.0
        while True:
            try:
                self.ec2.delete_security_group(GroupId=group_id)
                print(f"aws: deleted security group {self.group_name}")
                return
            except ClientError as e:
                if e.response["Error"]["Code"] != "DependencyViolation":
                    raise LabvmError(self._explain(e)) from None
            if waited >= self.retry_limit:
                print(f"aws: security group {self.group_name} is still in use after {waited:.0f}s; delete it later: "
                      f"aws ec2 delete-security-group --group-id {group_id} --region {self.scope}", file=sys.stderr)
                return
            time.sleep(delay)
            waited += delay
            delay = min(delay * 2, 30.0)

    def _delete_unused_key(self, key: str) -> None:
        if not self._in_use("key-name", key):
            self._call("delete_key_pair", KeyName=key)
            print(f"aws: deleted key pair {key}")
