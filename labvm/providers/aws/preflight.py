"""`inv check`: read-only questions to EC2, STS and Service Quotas, one line each."""

from __future__ import annotations

import functools

from ...errors import LabvmError
from ..base import Check, ask
from .core import AwsBase


# https://docs.aws.amazon.com/ec2/latest/instancetypes/ec2-instance-quotas.html: vCPU quotas of the
# standard families (A, C, D, H, I, M, R, T, Z), the ones a notebook VM uses.
STANDARD_FAMILIES = tuple("acdhimrtz")
VCPU_QUOTAS = {"on-demand": "L-1216C47A", "spot": "L-34B43A08"}


class Preflight(AwsBase):
    """Read-only questions asked before anything is billed."""

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
            # STS of a region not enabled refuses too (InvalidClientTokenId, segmentio/aws-okta#225).
            if self._opt_in_status() == "not-opted-in":
                return Check("credentials", False, f"AWS {e.response['Error']['Code']}: {self._auth_failure_hint()}")
            return Check("credentials", False, self._explain(e))
        except BotoCoreError as e:
            return Check("credentials", False, f"AWS did not answer ({e}); check the network or proxy")

    def _region_check(self) -> str:
        region = self.scope
        # Asked where every account is enabled: a region not opted in answers AuthFailure to everything.
        found = self.call(self._enabled_region_ec2.describe_regions, AllRegions=True,
                          Filters=[{"Name": "region-name", "Values": [region]}])["Regions"]
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
        found = self._read("describe_images", ImageIds=[ami])["Images"]
        if not found:
            raise LabvmError(f"{self._where('image')}: {ami} is not visible in {self.scope}; AMI ids differ per region")
        return f"{ami} ({found[0].get('Name', '')})"

    def _size_check(self) -> str:
        wanted = self._instance_type
        zone = self._network.zone if self.settings.get("subnet") else ""
        kind, where = ("availability-zone", zone) if zone else ("region", self.scope)
        offered = self._read("describe_instance_type_offerings", LocationType=kind, Filters=[
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
        running = [i for r in self._read("describe_instances", Filters=live)["Reservations"] for i in r["Instances"]
                   if i["InstanceType"].startswith(STANDARD_FAMILIES) and (i.get("InstanceLifecycle") == "spot") == (market == "spot")]
        vcpus = self._vcpus({wanted} | {i["InstanceType"] for i in running})
        used = sum(vcpus[i["InstanceType"]] for i in running)
        if used + vcpus[wanted] > quota:
            raise LabvmError(f"{used} of {quota:.0f} {market} vCPUs in use and {wanted} needs {vcpus[wanted]}; stop an "
                             f"instance or request more in Service Quotas (EC2, {VCPU_QUOTAS[market]})")
        return f"{used} of {quota:.0f} {market} vCPUs in use; {wanted} needs {vcpus[wanted]}"

    def _vcpus(self, instance_types: set[str]) -> dict[str, int]:
        found = self._read("describe_instance_types", InstanceTypes=sorted(instance_types))["InstanceTypes"]
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
