"""AWS EC2 profiles on boto3 (imported only here, when an aws profile is used).

The instance and everything labvm makes for it carry the tags labvm:profile and
labvm:owner: labvm finds them by tag, never by a local state file.  Credentials come
from boto3's own chain (AWS_PROFILE, ~/.aws, environment); none goes to the VM.
"""

from __future__ import annotations

import difflib
import getpass
import json
import os
import sys
import time
from datetime import datetime, timezone

from .config import Profile
from .errors import LabvmError
from .providers import Image, Instance, Resource, caller_cidr, parse_time

UBUNTU_ALIASES = {
    f"ubuntu-{release}": f"/aws/service/canonical/ubuntu/server/{release}/stable/current/amd64/hvm/ebs-gp3/ami-id"
    for release in ("22.04", "24.04")
}
LIVE = ("pending", "running", "stopping", "stopped")


class AwsProvider:
    owns_machine = True
    image_ready = "available"

    def __init__(self, profile: Profile):
        import boto3
        from botocore.config import Config
        from botocore.exceptions import NoRegionError, ProfileNotFound

        self.profile = profile
        self.settings = profile.cloud_settings
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
        self.owner = os.environ.get("LABVM_OWNER") or getpass.getuser()
        self.labels = {"labvm:profile": profile.name, "labvm:owner": self.owner}
        self.name = f"labvm-{profile.name}"
        self.plan = False  # print the calls that change something instead of making them

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
        from botocore.exceptions import ClientError, NoCredentialsError, NoRegionError

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

    def _where(self, key: str) -> str:
        return f"{self.profile.source}: profiles.{self.profile.name}.{key}"

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
        return Instance(data["InstanceId"], name, data["State"]["Name"], address, data["InstanceType"])

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
        ]
        if not found:
            return None
        newest = max(found, key=lambda i: i["LaunchTime"])
        if len(found) > 1:
            print(f"aws: {len(found)} instances carry this profile's tags; using {newest['InstanceId']}", file=sys.stderr)
        return self._instance(newest)

    def create(self, image: str | None = None, public_key: str = "") -> Instance:
        ami = self._image_id(image)
        key_name = self._key_pair(public_key)
        group = self._security_group()
        root = self._call("describe_images", ImageIds=[ami])["Images"][0]["RootDeviceName"]
        request = dict(
            ImageId=ami,
            InstanceType=str(self.settings.get("instance_type") or "t3.small"),
            MinCount=1,
            MaxCount=1,
            KeyName=key_name,
            SecurityGroupIds=[group],
            # An in-guest `shutdown -h` (idle stop) stops the instance, never terminates it.
            InstanceInitiatedShutdownBehavior="stop",
            BlockDeviceMappings=[{"DeviceName": root, "Ebs": {
                "VolumeSize": int(self.settings.get("volume_size") or 30),
                "VolumeType": "gp3",
                "DeleteOnTermination": True,
            }}],
            TagSpecifications=[
                {"ResourceType": "instance", "Tags": self._tag_list()},
                {"ResourceType": "volume", "Tags": self._tag_list()},
            ],
        )
        if self.settings.get("spot"):
            request["InstanceMarketOptions"] = {"MarketType": "spot", "SpotOptions": {
                "SpotInstanceType": "persistent", "InstanceInterruptionBehavior": "stop",
            }}
        print(f"aws: creating {request['InstanceType']} from {ami} in {self.settings.get('region')}", flush=True)
        created = self._call("run_instances", **request)["Instances"][0]
        self._wait("instance_running", f"{created['InstanceId']} is running", InstanceIds=[created["InstanceId"]])
        self._elastic_ip(created["InstanceId"])
        if self.plan:
            return Instance(created["InstanceId"], self.name, "running", "(planned)", request["InstanceType"])
        return self._instance(self._describe(created["InstanceId"]))

    def start(self, inst: Instance) -> Instance:
        if inst.state != "running":
            if inst.state in ("stopping", "pending"):
                self._wait("instance_stopped" if inst.state == "stopping" else "instance_running",
                           f"{inst.id} settles", InstanceIds=[inst.id])
            if self._describe(inst.id)["State"]["Name"] != "running":
                self._call("start_instances", InstanceIds=[inst.id])
                self._wait("instance_running", f"{inst.id} is running", InstanceIds=[inst.id])
        self._elastic_ip(inst.id)
        return self._instance(self._describe(inst.id))

    def stop(self, inst: Instance) -> Instance:
        if inst.state not in ("stopped", "stopping"):
            self._call("stop_instances", InstanceIds=[inst.id])
        self._wait("instance_stopped", f"{inst.id} is stopped", InstanceIds=[inst.id])
        return self._instance(self._describe(inst.id))

    def terminate(self, inst: Instance, keep_ip: bool = False) -> None:
        self._call("terminate_instances", InstanceIds=[inst.id])
        self._wait("instance_terminated", f"{inst.id} is terminated", InstanceIds=[inst.id])
        if not keep_ip:
            for address in self._addresses():
                self._call("release_address", AllocationId=address["AllocationId"])
                print(f"aws: released Elastic IP {address['PublicIp']}")
        self._delete_unused_group_and_key()

    def snapshot(self, inst: Instance, name: str, share: tuple[str, ...] = (), no_reboot: bool = False) -> Image:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        image_name = f"{name}-{self.profile.name}-{stamp}"
        image_id = self._call(
            "create_image", InstanceId=inst.id, Name=image_name, NoReboot=no_reboot,
            Description=f"labvm image of profile {self.profile.name}",
            TagSpecifications=[{"ResourceType": "image", "Tags": self._tag_list(image_name)}],
        )["ImageId"]
        self._wait("image_available", f"image {image_id} is available", ImageIds=[image_id])
        if self.plan:
            for account in share:
                self._call("modify_image_attribute", ImageId=image_id, LaunchPermission={"Add": [{"UserId": account}]})
            return Image(image_id, image_name, "", "(planned)")
        data = self._call("describe_images", ImageIds=[image_id])["Images"][0]
        snapshots = [m["Ebs"]["SnapshotId"] for m in data.get("BlockDeviceMappings", []) if "Ebs" in m]
        if snapshots:  # tagged afterwards: create_image's snapshot TagSpecifications are not portable
            self._call("create_tags", Resources=snapshots, Tags=self._tag_list(image_name))
        for account in share:
            self._call("modify_image_attribute", ImageId=image_id,
                       LaunchPermission={"Add": [{"UserId": account}]})
            print(f"aws: {image_id} shared with account {account}")
        return Image(image_id, image_name, data.get("CreationDate", ""), data.get("State", ""))

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
        if inst.size == size:
            print(f"aws: {inst.id} is already {size}")
            return inst
        stopped = self.stop(inst)
        self._call("modify_instance_attribute", InstanceId=inst.id, InstanceType={"Value": size})
        print(f"aws: {inst.id} is now {size}")
        return self.start(stopped)

    def last_start(self, inst: Instance) -> datetime:
        return self._describe(inst.id)["LaunchTime"]

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
            tags = {t["Key"]: t["Value"] for t in data.get("Tags", [])}
            return Resource("aws", region, kind, resource_id, tags.get("labvm:profile", ""), tags.get("labvm:owner", ""),
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

    def _key_pair(self, public_key: str) -> str:
        name = f"labvm-{self.owner}"
        existing = self._call("describe_key_pairs", Filters=[{"Name": "key-name", "Values": [name]}])["KeyPairs"]
        if not existing:
            self._call("import_key_pair", KeyName=name, PublicKeyMaterial=public_key.encode(),
                       TagSpecifications=[{"ResourceType": "key-pair", "Tags": self._tag_list(name)}])
            print(f"aws: imported labvm's public key as key pair {name}")
        return name

    def _security_group(self) -> str:
        name = self.name
        found = self._call("describe_security_groups", Filters=[{"Name": "group-name", "Values": [name]}])
        if found["SecurityGroups"]:
            return found["SecurityGroups"][0]["GroupId"]
        cidr = str(self.settings.get("ssh_cidr") or caller_cidr(self._where("ssh_cidr")))
        group = self._call("create_security_group", GroupName=name,
                           Description=f"labvm {self.profile.name}: SSH only",
                           TagSpecifications=[{"ResourceType": "security-group", "Tags": self._tag_list(name)}])["GroupId"]
        self._call("authorize_security_group_ingress", GroupId=group, IpPermissions=[{
            "IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
            "IpRanges": [{"CidrIp": cidr, "Description": "labvm: SSH"}],
        }])
        print(f"aws: security group {name} opens port 22 to {cidr} only")
        return group

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

    def _check_type(self, size: str) -> None:
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
            raise LabvmError(f"--size: {size!r} is not an instance type in {self.settings.get('region')}{hint}") from None

    def _delete_unused_group_and_key(self) -> None:
        live = [{"Name": "instance-state-name", "Values": list(LIVE)}]
        groups = self._call("describe_security_groups", Filters=[{"Name": "group-name", "Values": [self.name]}])
        for group in groups["SecurityGroups"]:
            users = self._call("describe_instances", Filters=live + [
                {"Name": "instance.group-id", "Values": [group["GroupId"]]}])["Reservations"]
            if not users:
                self._call("delete_security_group", GroupId=group["GroupId"])
                print(f"aws: deleted security group {self.name}")
        key = f"labvm-{self.owner}"
        users = self._call("describe_instances", Filters=live + [{"Name": "key-name", "Values": [key]}])["Reservations"]
        if not users:
            self._call("delete_key_pair", KeyName=key)
            print(f"aws: deleted key pair {key}")
