"""`inv check`: read-only questions to EC2, STS and Service Quotas, one line each."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

from ...config import Profile
from ...errors import LabvmError
from ..base import Check, Starting, starting_words
from ..cloud import ask
from .api import Ec2Api, no_credentials
from .gpus import Gpus, has_driver_by_name
from .images import Images
from .names import AwsNames
from .network import Network, ssh_ranges
from .settings import AwsSettings

# https://docs.aws.amazon.com/ec2/latest/instancetypes/ec2-instance-quotas.html: each family's vCPU quota in
# Service Quotas (On-Demand "Running On-Demand ... instances", Spot "All ... Spot Instance Requests"), by the
# letters an instance type starts with; "" where the family has none for that market (HPC and High Memory run
# on demand only).  Mac instances run on Dedicated Hosts, counted in hosts, not vCPUs: not here, so said.
VCPU_QUOTAS = {  # family: (on-demand, spot)
    "Standard (A, C, D, H, I, M, R, T, Z)": ("L-1216C47A", "L-34B43A08"),
    "G and VT": ("L-DB2E81BA", "L-3819A6DF"),
    "P": ("L-417A185B", "L-7212CCBC"),  # the spot quota of P4, P3 and P2
    "P5": ("L-417A185B", "L-C4BD4855"),
    "F": ("L-74FC7D96", "L-88CF9481"),
    "X": ("L-7295265B", "L-E3A00192"),
    "Inf": ("L-1945791B", "L-B5D1601B"),
    "DL": ("L-6E869C2A", "L-85EED4F7"),
    "Trn": ("L-2C3B7624", "L-6B0D517C"),
    "HPC": ("L-F7808C92", ""),
    "High Memory": ("L-43DA4232", ""),
}
FAMILIES = {
    **dict.fromkeys(("a", "c", "d", "h", "i", "im", "is", "m", "r", "t", "z"), "Standard (A, C, D, H, I, M, R, T, Z)"),
    **dict.fromkeys(("g", "gr", "vt"), "G and VT"),
    **{"p": "P", "f": "F", "x": "X", "inf": "Inf", "dl": "DL", "trn": "Trn", "hpc": "HPC", "u": "High Memory"},
}
MARKETS = ("on-demand", "spot")


def vcpu_quota(instance_type: str, market: str) -> tuple[str, str]:
    """(family, Service Quotas code) of the vCPU quota an instance type counts against in this market;
    ("", "") where labvm knows none."""
    letters = re.match(r"[a-z]*", instance_type).group()  # type: ignore[union-attr]  # [a-z]* always matches
    family = FAMILIES.get(letters, "")
    if family == "P" and instance_type.startswith("p5"):
        family = "P5"
    code = VCPU_QUOTAS[family][MARKETS.index(market)] if family else ""
    return (family, code) if code else ("", "")


class AwsPreflight:
    """Read-only questions asked before anything is billed."""

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
        self.api, self.settings, self.names, self.network = api, settings, names, network
        self.images, self.profile, self.gpus = images, profile, gpus

    def checks(self, public_key: str, to_start: Callable[[], list[Starting]]) -> list[Check]:
        """Read-only questions, one Check each; a question that cannot be answered says why."""
        identity = self._identity()
        if not identity.ok:
            return [identity]
        questions = [
            ("region", self._region_check),
            ("network", lambda: self._network_check()),
            ("image", self._image_check),
            ("size", self._size_check),
            ("quota", lambda: self._quota_check(to_start())),
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
            return Check("credentials", False, no_credentials())
        except ClientError as e:
            # STS of a region not enabled refuses too (InvalidClientTokenId, segmentio/aws-okta#225).
            if self.api.opt_in_status() == "not-opted-in":
                return Check("credentials", False, f"AWS {e.response['Error']['Code']}: {self.api.auth_failure_hint()}")
            return Check("credentials", False, self.api.explain(e))
        except BotoCoreError as e:
            return Check("credentials", False, self.api.sdk_problem("GetCallerIdentity", e))

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
        said = f"{ami} ({found[0].get('Name', '')})"
        size = self.gpus.of(self.settings.instance_type)
        if size is None or not size.nvidia:
            return said
        gpus = f"{self.settings.instance_type}'s {size.words()}"
        if self.images.driver_image_wanted():
            return f"{said}: AWS's Deep Learning AMI, NVIDIA's driver for {gpus}"
        if has_driver_by_name(found[0]):
            return f"{said} for {gpus}"
        return (
            f"{said}; warning: by its name and description (a guess) it carries no NVIDIA driver for {gpus}: CUDA "
            f"fails without one; without {self.profile.key('image')} labvm launches AWS's Deep Learning AMI"
        )

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

    def _quota_check(self, machines: list[Starting]) -> str:
        """Each family's vCPU quota (of this market) against the account's pending and running instances
        of that family and market plus what `up` would start; a type whose quota labvm knows not is said."""
        from botocore.exceptions import BotoCoreError, ClientError

        words = starting_words(machines)
        market = "spot" if self.settings.spot else "on-demand"
        needs: dict[tuple[str, str], list[str]] = {}
        for machine in machines:
            needs.setdefault(vcpu_quota(machine.size, market), []).append(machine.size)
        unknown = needs.pop(("", ""), [])
        if not needs:
            known = f"not checked: labvm knows no {market} vCPU quota of {', '.join(sorted(set(unknown)))}; "
            return (known if unknown else "") + words
        live = [{"Name": "instance-state-name", "Values": ["pending", "running"]}]
        running = [
            i
            for r in self.api.read("describe_instances", Filters=live)["Reservations"]
            for i in r["Instances"]
            if (i.get("InstanceLifecycle") == "spot") == (market == "spot")
        ]
        vcpus = self._vcpus(
            {size for sizes in needs.values() for size in sizes}
            | {i["InstanceType"] for i in running if vcpu_quota(i["InstanceType"], market) in needs}
        )
        lines = []
        for (family, code), sizes in needs.items():
            try:
                quota = self.quotas.get_service_quota(ServiceCode="ec2", QuotaCode=code)["Quota"]["Value"]
            except (BotoCoreError, ClientError) as e:
                return f"not checked: Service Quotas could not be read ({e}); {words}"
            used = sum(
                vcpus[i["InstanceType"]] for i in running if vcpu_quota(i["InstanceType"], market) == (family, code)
            )
            need = sum(vcpus[size] for size in sizes)
            if used + need > quota:
                raise LabvmError(
                    f"{used} of {quota:.0f} {market} {family} vCPUs in use and {words} needs {need}; stop an "
                    f"instance or request more in Service Quotas (EC2, {code})"
                )
            lines.append(f"{used} of {quota:.0f} {market} {family} vCPUs in use, {need} more fit")
        if unknown:
            lines.append(f"not checked: labvm knows no {market} vCPU quota of {', '.join(sorted(set(unknown)))}")
        return f"{words}: " + "; ".join(lines)

    def _vcpus(self, instance_types: set[str]) -> dict[str, int]:
        found = self.api.read("describe_instance_types", InstanceTypes=sorted(instance_types))["InstanceTypes"]
        return {t["InstanceType"]: t["VCpuInfo"]["DefaultVCpus"] for t in found}

    def _key_check(self, public_key: str) -> str:
        if not public_key:
            return "no labvm key on this machine yet: the first `inv up` makes it and imports it"
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
