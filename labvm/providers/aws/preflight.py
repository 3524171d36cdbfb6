"""`inv check`: read-only questions to EC2, STS and Service Quotas, one line each."""

from __future__ import annotations

import functools
from typing import Any

from ...config import Profile
from ...errors import LabvmError
from ..base import Check
from ..cloud import ask
from .api import Ec2Api
from .images import Images
from .names import AwsNames
from .network import Network, ssh_ranges
from .settings import AwsSettings

# https://docs.aws.amazon.com/ec2/latest/instancetypes/ec2-instance-quotas.html: vCPU quotas of the
# standard families (A, C, D, H, I, M, R, T, Z), the ones a notebook VM uses.
STANDARD_FAMILIES = tuple("acdhimrtz")
VCPU_QUOTAS = {"on-demand": "L-1216C47A", "spot": "L-34B43A08"}


class AwsPreflight:
    """Read-only questions asked before anything is billed."""

    def __init__(
        self, api: Ec2Api, settings: AwsSettings, names: AwsNames, network: Network, images: Images, profile: Profile
    ):
        self.api, self.settings, self.names, self.network = api, settings, names, network
        self.images, self.profile = images, profile

    def checks(self, public_key: str) -> list[Check]:
        """Read-only questions, one Check each; a question that cannot be answered says why."""
        identity = self._identity()
        if not identity.ok:
            return [identity]
        questions = [
            ("region", self._region_check),
            ("network", lambda: self._network_check()),
            ("image", self._image_check),
            ("size", self._size_check),
            ("quota", self._quota_check),
            ("key pair", lambda: self._key_check(public_key)),
            ("ssh rule", self._rule_check),
        ]
        return [identity] + [ask(name, question) for name, question in questions]

    def _identity(self) -> Check:
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        sts = self.api.client("sts")
        try:
            return Check("credentials", True, sts.get_caller_identity()["Arn"])
        except NoCredentialsError:
            return Check("credentials", False, "no AWS credentials found; set AWS_PROFILE or run `aws configure`")
        except ClientError as e:
            # STS of a region not enabled refuses too (InvalidClientTokenId, segmentio/aws-okta#225).
            if self.api.opt_in_status() == "not-opted-in":
                return Check("credentials", False, f"AWS {e.response['Error']['Code']}: {self.api.auth_failure_hint()}")
            return Check("credentials", False, self.api.explain(e))
        except BotoCoreError as e:
            return Check("credentials", False, f"AWS did not answer ({e}); check the network or proxy")

    def _region_check(self) -> str:
        region = self.api.scope
        # Asked where every account is enabled: a region not opted in answers AuthFailure to everything.
        found = self.api.call(
            self.api.enabled_region_ec2.describe_regions,
            AllRegions=True,
            Filters=[{"Name": "region-name", "Values": [region]}],
        )["Regions"]
        if not found:
            raise LabvmError(
                f"{self.profile.key('region')}: {region} is not an EC2 region; `aws ec2 describe-regions` lists them"
            )
        if found[0].get("OptInStatus") == "not-opted-in":
            raise LabvmError(
                f"{self.profile.key('region')}: {region} is not enabled for this account; enable it in the "
                f"AWS console (Account, AWS Regions) or pick another region"
            )
        return region

    def _network_check(self) -> str:
        subnet = self.network.subnet
        if not subnet.id:
            return f"default VPC {subnet.vpc}"
        public = "gives public addresses" if subnet.public_ip else "labvm asks for a public address"
        return f"subnet {subnet.id} of {subnet.vpc} in {subnet.zone} ({public})"

    def _image_check(self) -> str:
        ami = self.images.launched(None)
        found = self.api.read("describe_images", ImageIds=[ami])["Images"]
        if not found:
            raise LabvmError(
                f"{self.profile.key('image')}: {ami} is not visible in {self.api.scope}; AMI ids differ per region"
            )
        return f"{ami} ({found[0].get('Name', '')})"

    def _size_check(self) -> str:
        wanted = self.settings.instance_type
        zone = self.network.subnet.zone if self.settings.subnet else ""
        kind, where = ("availability-zone", zone) if zone else ("region", self.api.scope)
        offered = self.api.read(
            "describe_instance_type_offerings",
            LocationType=kind,
            Filters=[{"Name": "instance-type", "Values": [wanted]}, {"Name": "location", "Values": [where]}],
        )["InstanceTypeOfferings"]
        if not offered:
            raise LabvmError(
                f"{self.profile.key('instance_type')}: {wanted} is not offered in {where}; `aws ec2 "
                f"describe-instance-type-offerings --location-type {kind} --region {self.api.scope}` "
                f"lists those that are"
            )
        return f"{wanted} is offered in {where}"

    @functools.cached_property
    def quotas(self) -> Any:
        """The Service Quotas client."""
        return self.api.client("service-quotas")

    def _quota_check(self) -> str:
        from botocore.exceptions import BotoCoreError, ClientError

        wanted = self.settings.instance_type
        market = "spot" if self.settings.spot else "on-demand"
        if not wanted.startswith(STANDARD_FAMILIES):
            return f"not checked: {wanted} is outside the standard families labvm checks"
        try:
            quota = self.quotas.get_service_quota(ServiceCode="ec2", QuotaCode=VCPU_QUOTAS[market])["Quota"]["Value"]
        except (BotoCoreError, ClientError) as e:
            return f"not checked: Service Quotas could not be read ({e})"
        live = [{"Name": "instance-state-name", "Values": ["pending", "running"]}]
        running = [
            i
            for r in self.api.read("describe_instances", Filters=live)["Reservations"]
            for i in r["Instances"]
            if i["InstanceType"].startswith(STANDARD_FAMILIES)
            and (i.get("InstanceLifecycle") == "spot") == (market == "spot")
        ]
        vcpus = self._vcpus({wanted} | {i["InstanceType"] for i in running})
        used = sum(vcpus[i["InstanceType"]] for i in running)
        if used + vcpus[wanted] > quota:
            raise LabvmError(
                f"{used} of {quota:.0f} {market} vCPUs in use and {wanted} needs {vcpus[wanted]}; stop an "
                f"instance or request more in Service Quotas (EC2, {VCPU_QUOTAS[market]})"
            )
        return f"{used} of {quota:.0f} {market} vCPUs in use; {wanted} needs {vcpus[wanted]}"

    def _vcpus(self, instance_types: set[str]) -> dict[str, int]:
        found = self.api.read("describe_instance_types", InstanceTypes=sorted(instance_types))["InstanceTypes"]
        return {t["InstanceType"]: t["VCpuInfo"]["DefaultVCpus"] for t in found}

    def _key_check(self, public_key: str) -> str:
        name, exists = self.network.existing_key_pair(public_key)
        return f"{name} holds labvm's key" if exists else f"{name} is imported at create"

    def _rule_check(self) -> str:
        cidr = self.network.caller
        group = self.network.find_group(self.network.subnet.vpc)
        if group is None:
            return f"{self.names.group} is made at create, admitting {cidr} to port 22"
        before = ssh_ranges(group)
        if cidr in before:
            return f"{self.names.group} admits {cidr}"
        return f"{self.names.group} admits {', '.join(before) or 'nothing'}; `inv up` changes it to {cidr}"
