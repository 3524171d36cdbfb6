"""The EC2 client of one profile: the mutation gate's EC2 form (`change`, with the retries EC2's eventual
consistency needs), the call that turns EC2's errors into one line, waits, and an instance in labvm's words."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any, TypeVar

from ...config import Profile
from ...errors import LabvmError
from ..base import Instance, from_cloud
from ..cloud import CloudApi
from ..credentials import NoCredentials
from ..registry import sdk_files_problem
from ..web_page import web_page
from .settings import AwsSettings

T = TypeVar("T")
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
# botocore's waiters end at the first of these states (failure acceptors of botocore/data/ec2/2016-11-15/
# waiters-2.json), where EC2 still gets there: an instance that is stopping by itself (autostop's shutdown) or
# still pending is terminated all the same once that ends (TerminateInstances: "if you terminate an instance
# more than once, each call succeeds"; API_TerminateInstances.html), and until then DescribeInstances shows it.
PASSING = {"instance_terminated": ("pending", "stopping")}
# labvm's own acceptors, ahead of a botocore waiter's failure acceptors (its success acceptors dropped; the
# first acceptor that matches decides, botocore/waiter.py): name -> (the botocore waiter, the acceptors).
# A volume's State is creating | available | in-use | deleting | deleted | error, its attachment's attaching |
# attached | detaching | detached | busy (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_Volume.html,
# API_VolumeAttachment.html); botocore's volume waiters give up only at "deleted".
VOLUME_ERROR = {"state": "failure", "matcher": "pathAny", "argument": "Volumes[].State", "expected": "error"}
OWN_ACCEPTORS = {
    "volume_available": (
        "volume_available",
        [
            {"state": "success", "matcher": "pathAll", "argument": "Volumes[].State", "expected": "available"},
            # A volume just made may be NotFound for a while (eventual-consistency.html, as NOT_YET).
            {"state": "retry", "matcher": "error", "expected": "InvalidVolume.NotFound"},
            VOLUME_ERROR,
        ],
    ),
    # A volume is "in-use" from the moment AttachVolume is taken, while its attachment is still "attaching"
    # (https://docs.aws.amazon.com/ebs/latest/userguide/ebs-attaching-volume.html): the guest has the device
    # once the attachment is "attached".
    "volume_attached": (
        "volume_in_use",
        [
            {
                "state": "success",
                "matcher": "pathAll",
                "argument": "Volumes[].Attachments[].State",
                "expected": "attached",
            },
            VOLUME_ERROR,
        ],
    ),
}
# labvm's own waiters, where botocore has none.  ModifyVolume's modification goes modifying -> optimizing ->
# completed (or failed); "size increases take effect once the volume modification reaches the optimizing
# state" (https://docs.aws.amazon.com/ebs/latest/userguide/monitoring-volume-modifications.html).  The last
# modification listed is the newest (API_DescribeVolumesModifications.html lists them per volume).
OWN_WAITERS = {
    "volume_grown": {
        "operation": "DescribeVolumesModifications",
        "delay": 5,
        "maxAttempts": 120,
        "acceptors": [
            {
                "state": "success",
                "matcher": "path",
                "argument": "VolumesModifications[-1].ModificationState",
                "expected": state,
            }
            for state in ("optimizing", "completed")
        ]
        + [
            {
                "state": "failure",
                "matcher": "path",
                "argument": "VolumesModifications[-1].ModificationState",
                "expected": "failed",
            }
        ],
    },
}
# What a planned call answers: enough for the rest of the verb to print its own calls.
PLANNED = {
    "run_instances": {"Instances": [{"InstanceId": "i-(planned)"}]},
    "create_security_group": {"GroupId": "sg-(planned)"},
    "allocate_address": {"PublicIp": "(planned)", "AllocationId": "eipalloc-(planned)"},
    "create_image": {"ImageId": "ami-(planned)"},
    "create_volume": {"VolumeId": "vol-(planned)"},
    "create_snapshot": {"SnapshotId": "snap-(planned)"},
}


# The oldest botocore labvm works with: DeregisterImage's DeleteAssociatedSnapshots arrived in 1.38.25 (botocore's
# .changes/1.38.25.json: "ec2: Enable the option to automatically delete underlying Amazon EBS snapshots when
# deregistering Amazon Machine Images (AMIs)"); boto3 1.38.25 requires it.  pyproject.toml's floor says the same.
BOTOCORE_NEEDED = (1, 38, 25)


def sdk_version_step(report: str) -> str:
    """The next step after botocore refused labvm's parameters (its ParamValidationError report): a parameter
    botocore's model does not know is one its release predates (botocore/validate.py reports it as "Unknown
    parameter in input"); anything else is labvm sending what the model refuses, a bug to report."""
    import botocore

    if "Unknown parameter" in report:
        return (
            f"botocore {botocore.__version__} lacks what labvm asks of AWS: .venv/bin/pip install -e '.[aws]' "
            f"installs the botocore labvm needs ({'.'.join(map(str, BOTOCORE_NEEDED))} or later)"
        )
    return f"labvm sent what botocore {botocore.__version__} refuses: please report it with this line"


def no_credentials() -> str:
    """The one line for no AWS credentials, for every verb (`check`, `up`, `--plan`): where boto3 looks."""
    return (
        "no AWS credentials found; set AWS_PROFILE, run `aws configure`, or export "
        "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (labvm reads boto3's usual places)"
    )


class AwsError(LabvmError):
    """EC2's refusal in one line; `code` is EC2's error code, for the few refusals labvm handles."""

    def __init__(self, message: str, code: str):
        super().__init__(message)
        self.code = code


def instance_of(data: dict) -> Instance:
    """DescribeInstances' instance in labvm's words."""
    address = data.get("PublicIpAddress") or data.get("PrivateIpAddress") or ""
    name = next((t["Value"] for t in data.get("Tags", []) if t["Key"] == "Name"), data["InstanceId"])
    return Instance(
        data["InstanceId"],
        name,
        data["State"]["Name"],
        address,
        data["InstanceType"],
        private_address=data.get("PrivateIpAddress", ""),
        started=data.get("LaunchTime"),
        zone=data.get("Placement", {}).get("AvailabilityZone", ""),
    )


def retrying(action: Callable[..., T], codes: tuple[str, ...], delay: float, limit: float) -> Callable[..., T]:
    """action, called again with doubling pauses while EC2 answers one of codes, for about limit seconds."""
    from botocore.exceptions import ClientError

    @functools.wraps(action)  # its name: what a botocore error names (Ec2Api.call)
    def attempt(**kwargs: Any) -> T:
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


class Ec2Api(CloudApi):
    """boto3's EC2 client for the profile's region (boto3 imported only here, when an aws profile is used;
    credentials from boto3's own chain, none goes to the VM)."""

    def __init__(self, profile: Profile, settings: AwsSettings):
        import boto3
        from botocore.config import Config
        from botocore.exceptions import InvalidRegionError, NoRegionError, ProfileNotFound

        super().__init__("aws")
        self.profile, self.settings = profile, settings
        problem = sdk_files_problem(self.cloud)  # boto3 reads no other file from the current folder
        if problem:
            raise LabvmError(problem)
        region = settings.region or None
        # Throttling is retried by botocore, never shown to the user.
        config = Config(region_name=region, retries={"mode": "adaptive", "max_attempts": 10})
        try:
            self.ec2 = boto3.client("ec2", config=config)
        except NoRegionError:
            raise LabvmError(f"{profile.key('region')}: not set; e.g. region: us-west-2") from None
        except InvalidRegionError:  # botocore's own check of the name (utils.validate_region_name)
            raise LabvmError(
                f"{profile.key('region')}: {region!r} is not a region name; e.g. region: us-west-2 "
                f"(`aws ec2 describe-regions` lists them)"
            ) from None
        except ProfileNotFound as e:
            raise LabvmError(
                f"AWS_PROFILE: {from_cloud(e)}; `aws configure list-profiles` lists the profiles there are"
            ) from None
        self.boto3, self.config = boto3, config
        # What EC2 has just made may be NotFound for seconds (NOT_YET): retried from this delay, for this long.
        self.settle_delay, self.settle_limit = 1.0, 120.0
        self.poll_delay = 2.0  # seconds between a wait's questions

    @property
    def scope(self) -> str:
        """The region: what one set of AWS credentials sees here."""
        return self.ec2.meta.region_name

    def client(self, service: str) -> Any:
        """Another AWS service's client, with the EC2 client's region and retries."""
        return self.boto3.client(service, config=self.config)

    def call(self, action: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """One AWS call, its errors turned into one line with the next step: EC2's refusals (ClientError) and
        whatever botocore raises itself before or instead of an answer (BotoCoreError)."""
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
        from botocore.parsers import ResponseParserError

        try:
            return action(*args, **kwargs)
        except ClientError as e:
            raise AwsError(self.explain(e), e.response["Error"]["Code"]) from None
        except NoCredentialsError:
            raise NoCredentials(no_credentials(), self.cloud) from None
        except BotoCoreError as e:
            raise LabvmError(self.sdk_problem(getattr(action, "__name__", "the call"), e)) from None
        except ResponseParserError:  # not a BotoCoreError: an answer that is no AWS answer (a web page)
            raise LabvmError(web_page("AWS", f"to {getattr(action, '__name__', 'the call')}")) from None

    def sdk_problem(self, operation: str, error: Any) -> str:
        """What botocore raised itself, as one line with the next step."""
        from botocore.exceptions import ConnectionError as NoConnection
        from botocore.exceptions import (
            EndpointConnectionError,
            HTTPClientError,
            NoCredentialsError,
            NoRegionError,
            ParamValidationError,
        )

        said = from_cloud(" ".join(line.strip() for line in str(error).splitlines()))
        if isinstance(error, NoCredentialsError):
            return no_credentials()
        if isinstance(error, NoRegionError):
            return f"{self.profile.key('region')}: not set; e.g. region: us-west-2"
        if isinstance(error, ParamValidationError):
            return f"AWS SDK refused {operation}: {said}; {sdk_version_step(said)}"
        if isinstance(error, EndpointConnectionError):
            return (
                f"AWS did not answer at {from_cloud(error.kwargs.get('endpoint_url'))}; check the network (a VPN or "
                f"proxy?) and {self.profile.key('region')}"
            )
        if isinstance(error, (NoConnection, HTTPClientError)):  # timeouts, TLS, a proxy, a dropped connection
            return f"AWS did not answer: {said}; check the network (a VPN or proxy?) and try again"
        # Credentials that cannot be used (an expired SSO session, a failing credential_process...) and the rest.
        return (
            f"AWS SDK: {said}; `aws sts get-caller-identity` shows what boto3 finds (AWS_PROFILE picks the credentials)"
        )

    def read(self, operation: str, **kwargs: Any) -> Any:
        """A describe/get call, asked under --plan too; every page of an answer EC2 pages, in one answer of the
        same shape.  EC2 pages DescribeInstances, DescribeImages, DescribeSnapshots... with a NextToken (botocore's
        paginators-1.json names them; moto's DescribeInstances pages at 100 reservations unasked, and EC2 may
        cut an unpaginated answer short: "we strongly recommend using only paginated requests",
        API_DescribeInstances.html)."""
        if not self.ec2.can_paginate(operation):
            return self.call(getattr(self.ec2, operation), **kwargs)
        paginator = self.ec2.get_paginator(operation)

        def whole(**asked: Any) -> Any:
            return paginator.paginate(**asked).build_full_result()

        whole.__name__ = operation  # what a one-line error names (call)
        return self.call(whole, **kwargs)

    def change(self, operation: str, **kwargs: Any) -> Any:
        """A call that changes EC2, through the mutation gate: printed with its arguments under --plan,
        PLANNED standing in for its answer; retried while EC2 has not caught up (NOT_YET)."""
        shown = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
        action = retrying(
            getattr(self.ec2, operation), NOT_YET.get(operation, ()), self.settle_delay, self.settle_limit
        )
        return self.mutate(f"ec2.{operation}({shown})", action, planned=PLANNED.get(operation, {}), **kwargs)

    def described(self, instance_id: str) -> dict:
        """DescribeInstances' answer for one instance."""
        reservations = self.read("describe_instances", InstanceIds=[instance_id])["Reservations"]
        return reservations[0]["Instances"][0]

    def wait(self, waiter: str, what: str, **kwargs: Any) -> None:
        """Until boto3's waiter says `what` holds (printed under --plan, never asked)."""
        from botocore.exceptions import WaiterError

        if self.plan:
            print(f"plan: {self.cloud}: then wait until {what}", flush=True)
            return
        print(f"aws: waiting until {what} ...", flush=True)
        start = time.monotonic()

        def until() -> None:
            try:
                self.waiter(waiter).wait(**kwargs, WaiterConfig={"Delay": self.poll_delay, "MaxAttempts": 300})
            except WaiterError as e:
                raise LabvmError(f"aws: {what} did not happen: {from_cloud(e)}") from None

        self.call(until)  # any other error of a DescribeInstances it makes: one line
        print(f"aws: {what} ({time.monotonic() - start:.0f}s)", flush=True)

    def waiter(self, name: str) -> Any:
        """boto3's waiter of this name, without the failure acceptors of the states EC2 passes through (PASSING);
        one of OWN_ACCEPTORS: its botocore waiter's failure acceptors after labvm's own."""
        from botocore.waiter import WaiterModel, create_waiter_with_client

        if name in OWN_WAITERS:
            return create_waiter_with_client(
                name, WaiterModel({"version": 2, "waiters": {name: OWN_WAITERS[name]}}), self.ec2
            )
        base, own = OWN_ACCEPTORS.get(name, (name, None))
        given = self.ec2.get_waiter(base)
        passing = PASSING.get(name, ())
        if not passing and own is None:
            return given
        spec = given.config
        acceptors = [*(own or ())] + [
            {"state": a.state, "matcher": a.matcher, "argument": a.argument, "expected": a.expected}
            for a in spec.acceptors
            if not (a.state == "failure" and a.expected in passing) and (own is None or a.state == "failure")
        ]
        model = WaiterModel(
            {
                "version": 2,
                "waiters": {
                    given.name: {
                        "operation": spec.operation,
                        "delay": spec.delay,
                        "maxAttempts": spec.max_attempts,
                        "acceptors": acceptors,
                    }
                },
            }
        )
        return create_waiter_with_client(given.name, model, self.ec2)

    def explain(self, error: Any) -> str:
        """EC2's ClientError as one line, with the next step for the refusals users meet."""
        code = error.response["Error"]["Code"]
        message = error.response["Error"].get("Message", "")
        key = self.profile.key
        # Spot shortfalls arrive as InsufficientInstanceCapacity or UnfulfillableCapacity
        # (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html).
        no_capacity = (
            f"AWS has no spot capacity for this type here now; try later, change {key('instance_type')} "
            f"or set {key('spot')}: false"
            if self.settings.spot
            else f"AWS has no capacity for this type here now; try again later or change {key('instance_type')}"
        )
        hints: dict[str, str | Callable[[], str]] = {
            "UnauthorizedOperation": "your AWS identity may not do this; ask your admin for EC2 rights "
            "(or pick another AWS_PROFILE)",
            "AuthFailure": self.auth_failure_hint,
            "InsufficientInstanceCapacity": no_capacity,
            "UnfulfillableCapacity": no_capacity,
            "VcpuLimitExceeded": "your vCPU quota is used up; stop other instances or request more in Service Quotas "
            "(EC2 Running On-Demand instances)",
            "InvalidAMIID.NotFound": f"image not found in region {self.scope}; AMI ids differ per region: "
            f"check {key('image')}",
            "InvalidAMIID.Malformed": f"not an AMI id; check {key('image')} (ami-... or ubuntu-24.04)",
            "MaxSpotInstanceCountExceeded": "your spot instance quota is used up; request more in Service Quotas",
            "ParameterNotFound": f"no such public image parameter (Canonical's Ubuntu, or AWS's Deep Learning AMI "
            f"for a GPU type) in {self.scope}; "
            f"set {key('image')} to an ami-... id",
            "SpotMaxPriceTooLow": "the spot price is above your maximum; try later or use on-demand (spot: false)",
            # EBS's storage quota of the volume type in the region, or its capacity in the zone
            # (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html).
            "VolumeLimitExceeded": "your EBS storage quota for this volume type is used up; delete unused volumes "
            "(`inv audit` lists labvm's) or request more in Service Quotas (Amazon Elastic Block Store)",
            "InsufficientVolumeCapacity": "AWS has no capacity for this volume type in the VM's zone now; try "
            f"again later, or give another type: in {key('data')}",
        }
        hint = hints.get(code, "")
        said = hint() if callable(hint) else hint
        return from_cloud(f"AWS {code}: {message}") + (f"; {said}" if said else "")

    def auth_failure_hint(self) -> str:
        """A region the account has not opted in to answers every call AuthFailure, as bad credentials do
        (reported in fog/fog-aws#585, turbot/steampipe-plugin-aws#75; opt-in regions:
        https://docs.aws.amazon.com/accounts/latest/reference/manage-acct-regions.html): asked from a region
        every account has."""
        if self.opt_in_status() == "not-opted-in":
            return (
                f"region {self.scope} is not enabled for this account; enable it in the AWS console (Account, "
                f"AWS Regions) or change {self.profile.key('region')}"
            )
        return "AWS rejected the credentials; check AWS_PROFILE / `aws sts get-caller-identity`"

    @functools.cached_property
    def enabled_region_ec2(self) -> Any:
        """EC2 in a region every account of the partition has enabled."""
        region = next((home for prefix, home in ENABLED_REGION.items() if self.scope.startswith(prefix)), "us-east-1")
        return self.boto3.client("ec2", region_name=region, config=self.config)

    def opt_in_status(self) -> str:
        """The region's OptInStatus (API_Region.html: opt-in-not-required, opted-in, not-opted-in); "" unknown."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            found = self.enabled_region_ec2.describe_regions(
                AllRegions=True, Filters=[{"Name": "region-name", "Values": [self.scope]}]
            )["Regions"]
        except (BotoCoreError, ClientError):
            return ""
        return found[0].get("OptInStatus", "") if found else ""
