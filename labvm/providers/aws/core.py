"""What every part of the AWS provider stands on: the EC2 client, the call that turns EC2's errors into
one line, the mutation gate's EC2 form (`_change`, with the retries eventual consistency needs),
tags, waits, the profile's network, image and instance type."""

from __future__ import annotations

import functools
import time
from typing import NamedTuple

from ...config import Profile, sdk_files_problem
from ...errors import LabvmError
from ..base import Instance, from_cloud
from ..cloud import EC2_NAME, CloudProvider, cloud_name

UBUNTU_ALIASES = {
    f"ubuntu-{release}": f"/aws/service/canonical/ubuntu/server/{release}/stable/current/amd64/hvm/ebs-gp3/ami-id"
    for release in ("22.04", "24.04")
}
LIVE = ("pending", "running", "stopping", "stopped")
# Regions every account has enabled, per partition: where labvm asks whether a region is opted in
# (https://docs.aws.amazon.com/accounts/latest/reference/manage-acct-regions.html).
ENABLED_REGION = {"cn-": "cn-north-1", "us-gov-": "us-gov-west-1"}
# EC2 is eventually consistent: a resource just made may be NotFound to the next call for a while
# (https://docs.aws.amazon.com/ec2/latest/devguide/eventual-consistency.html: retry "using an exponential
# backoff algorithm ... starting with a couple of seconds of wait time, and increasing gradually up to a few
# minutes"); these are the codes (errors-overview.html) labvm retries right after making the resource.
NOT_YET = {
    "authorize_security_group_ingress": ("InvalidGroup.NotFound",),  # after CreateSecurityGroup
    "run_instances": ("InvalidKeyPair.NotFound", "InvalidGroup.NotFound"),  # after ImportKeyPair, CreateSecurityGroup
    "associate_address": ("InvalidAllocationID.NotFound",),  # after AllocateAddress
    "create_tags": ("InvalidSnapshot.NotFound",),  # the snapshots of an AMI just made
}


class Network(NamedTuple):
    vpc: str
    subnet: str  # empty: the default VPC's default subnets
    public_ip: bool  # whether the subnet gives a new instance a public address itself
    zone: str  # the subnet's availability zone; empty: EC2 picks one


class AwsError(LabvmError):
    """EC2's refusal in one line; `code` is EC2's error code, for the few refusals labvm handles."""

    def __init__(self, message: str, code: str):
        super().__init__(message)
        self.code = code


def tags_of(resource: dict) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Tags", [])}


class AwsBase(CloudProvider):
    """The EC2 client of one profile and the helpers the verbs share."""

    cloud = "aws"

    def __init__(self, profile: Profile):
        import boto3
        from botocore.config import Config
        from botocore.exceptions import (
            InvalidRegionError,
            NoRegionError,
            ProfileNotFound,
        )

        super().__init__(profile)
        problem = sdk_files_problem(self.cloud)  # boto3 reads no other file from the current folder
        if problem:
            raise LabvmError(problem)
        region = self.settings.get("region")
        # Throttling is retried by botocore, never shown to the user.
        config = Config(region_name=region, retries={"mode": "adaptive", "max_attempts": 10})
        try:
            self.ec2 = boto3.client("ec2", config=config)
        except NoRegionError:
            raise LabvmError(f"{self._where('region')}: not set; e.g. region: us-west-2") from None
        except InvalidRegionError:  # botocore's own check of the name (utils.validate_region_name)
            raise LabvmError(f"{self._where('region')}: {region!r} is not a region name; e.g. region: us-west-2 "
                             f"(`aws ec2 describe-regions` lists them)") from None
        except ProfileNotFound as e:
            raise LabvmError(f"AWS_PROFILE: {from_cloud(e)}; `aws configure list-profiles` lists the profiles there are") from None
        self._boto3 = boto3
        self._config = config
        self.labels = {"labvm:profile": profile.name, "labvm:owner": self.owner}
        self.name = f"labvm-{profile.name}"  # the Name tag: free text to EC2
        # Owners sharing a hosts.yml (a class) in one account each get a group of their own.
        self.group_name = cloud_name(EC2_NAME, "labvm", profile.name, self.owner)
        # Deleting a terminated instance's security group fails with DependencyViolation until EC2
        # has released its network interface: retried from this delay, doubling, for this long.
        self.retry_delay, self.retry_limit = 5.0, 180.0
        # What EC2 has just made may be NotFound for seconds (NOT_YET): retried from this delay, for this long.
        self.settle_delay, self.settle_limit = 1.0, 120.0
        # A real AMI takes minutes to an hour: polled this often, progress printed this often; in its
        # first minutes DescribeImages may not know it yet (InvalidAMIID.NotFound: still pending).
        self.poll_seconds, self.progress_seconds, self.image_timeout = 15.0, 30.0, 3600.0
        self.image_unlisted_limit = 300.0

    # What a planned call answers: enough for the rest of the verb to print its own calls.
    PLANNED = {
        "run_instances": {"Instances": [{"InstanceId": "i-(planned)"}]},
        "create_security_group": {"GroupId": "sg-(planned)"},
        "allocate_address": {"PublicIp": "(planned)", "AllocationId": "eipalloc-(planned)"},
        "create_image": {"ImageId": "ami-(planned)"},
    }

    def call(self, action, *args, **kwargs):
        """One EC2 call, its errors turned into one line with the next step."""
        from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError, NoRegionError

        try:
            return action(*args, **kwargs)
        except NoCredentialsError:
            raise LabvmError(
                "no AWS credentials found; set AWS_PROFILE, run `aws configure`, or export "
                "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (labvm reads boto3's usual places)"
            ) from None
        except NoRegionError:
            raise LabvmError(f"{self._where('region')}: not set; e.g. region: us-west-2") from None
        except ClientError as e:
            raise AwsError(self._explain(e), e.response["Error"]["Code"]) from None
        except EndpointConnectionError as e:
            raise LabvmError(f"AWS did not answer at {from_cloud(e.kwargs.get('endpoint_url'))}; check the network (a VPN or "
                             f"proxy?) and {self._where('region')}") from None

    def _read(self, operation: str, **kwargs):
        """A describe/get call: asked under --plan too."""
        return self.call(getattr(self.ec2, operation), **kwargs)

    def _change(self, operation: str, **kwargs):
        """A call that changes EC2, through the mutation gate: printed with its arguments under --plan,
        PLANNED standing in for its answer; retried while EC2 has not caught up (NOT_YET)."""
        shown = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
        action = self._retrying(getattr(self.ec2, operation), NOT_YET.get(operation, ()),
                                self.settle_delay, self.settle_limit)
        return self.mutate(f"ec2.{operation}({shown})", action, planned=self.PLANNED.get(operation, {}), **kwargs)

    @staticmethod
    def _retrying(action, codes: tuple[str, ...], delay: float, limit: float):
        """action, called again with doubling pauses while EC2 answers one of codes, for about limit seconds."""
        from botocore.exceptions import ClientError

        def attempt(**kwargs):
            pause, waited = delay, 0.0
            while True:
                try:
                    return action(**kwargs)
                except ClientError as e:
                    if e.response["Error"]["Code"] not in codes or waited >= limit:
                        raise
                time.sleep(pause)
                waited += pause
                pause = min(pause * 2, 30.0)

        return attempt

    def _explain(self, error) -> str:
        code = error.response["Error"]["Code"]
        message = error.response["Error"].get("Message", "")
        # Spot shortfalls arrive as InsufficientInstanceCapacity or UnfulfillableCapacity
        # (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html).
        no_capacity = (f"AWS has no spot capacity for this type here now; try later, change {self._where('instance_type')} "
                       f"or set {self._where('spot')}: false" if self.settings.get("spot") else
                       f"AWS has no capacity for this type here now; try again later or change {self._where('instance_type')}")
        hints = {
            "UnauthorizedOperation": "your AWS identity may not do this; ask your admin for EC2 rights (or pick another AWS_PROFILE)",
            "AuthFailure": self._auth_failure_hint,
            "InsufficientInstanceCapacity": lambda: no_capacity,
            "UnfulfillableCapacity": lambda: no_capacity,
            "VcpuLimitExceeded": "your vCPU quota is used up; stop other instances or request more in Service Quotas (EC2 Running On-Demand instances)",
            "InvalidAMIID.NotFound": f"image not found in region {self.settings.get('region')}; AMI ids differ per region: check {self._where('image')}",
            "InvalidAMIID.Malformed": f"not an AMI id; check {self._where('image')} (ami-... or ubuntu-24.04)",
            "MaxSpotInstanceCountExceeded": "your spot instance quota is used up; request more in Service Quotas",
            "ParameterNotFound": f"no public Ubuntu image parameter for this alias in {self.settings.get('region')}; set {self._where('image')} to an ami-... id",
            "SpotMaxPriceTooLow": "the spot price is above your maximum; try later or use on-demand (spot: false)",
        }
        hint = hints.get(code, "")
        hint = hint() if callable(hint) else hint
        return from_cloud(f"AWS {code}: {message}") + (f"; {hint}" if hint else "")

    def _auth_failure_hint(self) -> str:
        """A region the account has not opted in to answers every call AuthFailure, as bad credentials do
        (reported in fog/fog-aws#585, turbot/steampipe-plugin-aws#75; opt-in regions:
        https://docs.aws.amazon.com/accounts/latest/reference/manage-acct-regions.html): asked from a region
        every account has."""
        if self._opt_in_status() == "not-opted-in":
            return (f"region {self.scope} is not enabled for this account; enable it in the AWS console (Account, "
                    f"AWS Regions) or change {self._where('region')}")
        return "AWS rejected the credentials; check AWS_PROFILE / `aws sts get-caller-identity`"

    @functools.cached_property
    def _enabled_region_ec2(self):
        """EC2 in a region every account of the partition has enabled."""
        region = next((home for prefix, home in ENABLED_REGION.items() if self.scope.startswith(prefix)), "us-east-1")
        return self._boto3.client("ec2", region_name=region, config=self._config)

    def _opt_in_status(self) -> str:
        """The region's OptInStatus (API_Region.html: opt-in-not-required, opted-in, not-opted-in); "" unknown."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            found = self._enabled_region_ec2.describe_regions(
                AllRegions=True, Filters=[{"Name": "region-name", "Values": [self.scope]}])["Regions"]
        except (BotoCoreError, ClientError):
            return ""
        return found[0].get("OptInStatus", "") if found else ""

    def _tag_list(self, name: str | None = None) -> list[dict]:
        tags = {"Name": name or self.name, **(self.settings.get("tags") or {}), **self.labels}
        return [{"Key": str(k), "Value": str(v)} for k, v in tags.items()]

    def _filters(self) -> list[dict]:
        return [{"Name": f"tag:{k}", "Values": [v]} for k, v in self.labels.items()]

    def _instance(self, data: dict) -> Instance:
        address = data.get("PublicIpAddress") or data.get("PrivateIpAddress") or ""
        name = next((t["Value"] for t in data.get("Tags", []) if t["Key"] == "Name"), data["InstanceId"])
        return Instance(data["InstanceId"], name, data["State"]["Name"], address, data["InstanceType"],
                        private_address=data.get("PrivateIpAddress", ""), started=data.get("LaunchTime"))

    def _describe(self, instance_id: str) -> dict:
        reservations = self._read("describe_instances", InstanceIds=[instance_id])["Reservations"]
        return reservations[0]["Instances"][0]

    def _wait(self, waiter: str, what: str, **kwargs) -> None:
        from botocore.exceptions import WaiterError

        if self.plan:
            print(f"plan: {self.cloud}: then wait until {what}", flush=True)
            return
        print(f"aws: waiting until {what} ...", flush=True)
        start = time.monotonic()
        try:
            self.ec2.get_waiter(waiter).wait(**kwargs, WaiterConfig={"Delay": 2, "MaxAttempts": 300})
        except WaiterError as e:
            raise LabvmError(f"aws: {what} did not happen: {from_cloud(e)}") from None
        print(f"aws: {what} ({time.monotonic() - start:.0f}s)", flush=True)

    @property
    def scope(self) -> str:
        return self.ec2.meta.region_name

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
        vpcs = self._read("describe_vpcs", Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
        if not vpcs:
            raise LabvmError(f"region {region} has no default VPC (usual in institutional accounts): set "
                             f"{self._where('subnet')} to a subnet with a route to the internet; {listing}")
        return Network(vpcs[0]["VpcId"], "", True, "")

    def _check_type(self, size: str, key: str = "--size") -> None:
        try:
            self._read("describe_instance_types", InstanceTypes=[size])
        except AwsError as e:
            if "InvalidInstanceType" not in e.code:
                raise
            known = [t["InstanceType"] for page in self.ec2.get_paginator("describe_instance_types").paginate()
                     for t in page["InstanceTypes"]]
            raise self.unknown(key, "instance type", size, known,
                               f"`aws ec2 describe-instance-types --region {self.scope}` lists those of {self.scope}") from None

    def _in_use(self, name: str, value: str, gone: set[str]) -> bool:
        """Whether a live instance other than those `gone` has this filter's value."""
        live = [{"Name": "instance-state-name", "Values": list(LIVE)}, {"Name": name, "Values": [value]}]
        return any(i["InstanceId"] not in gone for r in self._read("describe_instances", Filters=live)["Reservations"]
                   for i in r["Instances"])
