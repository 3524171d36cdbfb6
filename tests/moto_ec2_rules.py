"""moto's EC2 server as strict as EC2 where moto is lenient, patched in the test process (the
ThreadedMotoServer runs in it, so `inv` in a subprocess meets the same rules).

- `ec2_rules()`: the texts EC2 accepts (names, descriptions), DeregisterImage's DeleteAssociatedSnapshots,
  and LaunchTime moved by every start; the `moto` fixture (conftest.py) and the contract suite's AWS world
  hold them.
- `Lagging`: EC2's eventual consistency, which moto never shows: the first use of a resource just
  made answers NotFound, as EC2 may for a while.
- `SpotRequests`: what EC2 receives as InstanceMarketOptions (moto keeps no spot request object).
- `VolumeStates`: the states an EBS volume passes through (creating, attaching, detaching, deleting), which
  moto skips.
- `ResizeAndSnapshotStates`: a modification's and a snapshot's states (modifying, optimizing; pending), which
  moto skips, and EC2's refusal to shrink a volume.
- `NoCapacity`: EC2's InsufficientInstanceCapacity for an instance type in a zone, which moto never answers.
"""

from __future__ import annotations

import contextlib
import copy
import json
import re

from moto.ec2.exceptions import EC2ClientError, InvalidAMIIdError, InvalidVolumeIdError
from moto.ec2.models.amis import AmiBackend
from moto.ec2.models.elastic_block_store import EBSBackend, Snapshot, Volume
from moto.ec2.models.elastic_ip_addresses import ElasticAddressBackend
from moto.ec2.models.instances import Instance, InstanceBackend
from moto.ec2.models.key_pairs import KeyPairBackend
from moto.ec2.models.security_groups import SecurityGroupBackend
from moto.ec2.responses.amis import AmisResponse
from moto.ec2.responses.instances import InstanceResponse
from moto.servicequotas.exceptions import NoSuchResource
from moto.servicequotas.models import ServiceQuotasBackend
from moto.servicequotas.responses import ServiceQuotasResponse

# botocore's ec2 service model (CreateSecurityGroupRequest GroupName/Description, IpRange/UserIdGroupPair
# Description): "Up to 255 characters in length ... a-z, A-Z, 0-9, spaces, and ._-:/()#,@[]+=&;{}!$*".
EC2_TEXT = re.compile(r"[a-zA-Z0-9 ._\-:/()#,@\[\]+=&;{}!$*]{1,255}")
# EC2's answer to another character in a rule description (quoted in aws-cloudformation/cfn-lint#173).
BAD_RULE = (
    "Invalid rule description. Valid descriptions are strings less than 256 characters from the "
    "following set:  a-zA-Z0-9. _-:/()#,@[]+=&;{}!$*"
)
# CreateImage Name (botocore's ec2 model): "3-128 alphanumeric characters, parentheses (()), square
# brackets ([]), spaces ( ), periods (.), slashes (/), dashes (-), single quotes ('), at-signs (@), or
# underscores(_)"; refused as InvalidAMIName.Malformed (API reference, errors-overview.html).
AMI_NAME = re.compile(r"[a-zA-Z0-9()\[\] ./\-'@_]{3,128}")


def _calling(method, original):
    """A function (so that an instance passes itself on) calling method with the original first."""
    return lambda *a, **k: method(original, *a, **k)


@contextlib.contextmanager
def patched(owner, **methods):
    """owner's methods replaced for the block; each replacement gets the original as its first argument."""
    originals = {name: getattr(owner, name) for name in methods}
    for name, method in methods.items():
        setattr(owner, name, _calling(method, originals[name]))
    try:
        yield
    finally:
        for name, original in originals.items():
            setattr(owner, name, original)


def _check_group_text(name: str, description: str) -> None:
    for parameter, value in (("GroupName", name), ("GroupDescription", description)):
        if not EC2_TEXT.fullmatch(value or ""):
            raise EC2ClientError(
                "InvalidParameterValue",
                f"Value ({value}) for parameter {parameter} is invalid. "
                "Valid characters are a-z, A-Z, 0-9, spaces, and ._-:/()#,@[]+=&;{}!$*",
            )


def _check_rule_text(kwargs: dict) -> None:
    entries = [
        *(kwargs.get("ip_ranges") or []),
        *(kwargs.get("source_groups") or []),
        *(kwargs.get("prefix_list_ids") or []),
    ]
    if any("Description" in entry and not EC2_TEXT.fullmatch(entry["Description"]) for entry in entries):
        raise EC2ClientError("InvalidParameterValue", BAD_RULE)


def _rule_kwargs(args: tuple, kwargs: dict) -> dict:
    """The backend's authorize_* arguments by name (moto passes them by name; a test patch may not)."""
    names = ("group_name_or_id", "ip_protocol", "from_port", "to_port", "ip_ranges")
    return {**dict(zip(names, args)), **kwargs}


def create_security_group(original, backend, name, description, *args, **kwargs):
    _check_group_text(name, description)
    # CreateSecurityGroup GroupName: "Constraints: ... Can't start with sg-" (API_CreateSecurityGroup.html).
    if name.startswith("sg-"):
        raise EC2ClientError("InvalidParameterValue", "Group names may not be in the format sg-*")
    return original(backend, name, description, *args, **kwargs)


def authorize(original, backend, *args, **kwargs):
    _check_rule_text(_rule_kwargs(args, kwargs))
    return original(backend, *args, **kwargs)


def import_key_pair(original, backend, key_name, *args, **kwargs):
    # CreateKeyPair/ImportKeyPair KeyName: "Constraints: Up to 255 ASCII characters"
    # (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_CreateKeyPair.html).
    if not key_name.isascii() or not 0 < len(key_name) <= 255:
        raise EC2ClientError("InvalidParameterValue", f"Value ({key_name}) for parameter KeyName is invalid.")
    return original(backend, key_name, *args, **kwargs)


def create_image(original, backend, instance_id, name, *args, **kwargs):
    if not AMI_NAME.fullmatch(name or ""):
        raise EC2ClientError(
            "InvalidAMIName.Malformed",
            "AMI names must be between 3 and 128 characters long, and may "
            "contain letters, numbers, '(', ')', '[', ']', ' ', '.', '/', '-', ''', '@' and '_'",
        )
    return original(backend, instance_id, name, *args, **kwargs)


def deregister_image(original, response):
    """DeleteAssociatedSnapshots=true: EC2 deletes the AMI's snapshots in the same call, each one's outcome in
    DeleteSnapshotResults; "If a snapshot is associated with multiple AMIs, it is not deleted"
    (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DeregisterImage.html). moto ignores it."""
    backend, image_id = response.ec2_backend, response._get_param("ImageId")
    wanted = str(response._get_param("DeleteAssociatedSnapshots")).lower() == "true"
    image = backend.amis.get(image_id)
    snapshots = [m["Ebs"]["SnapshotId"] for m in image.block_device_mappings] if wanted and image else []
    answer = original(response)
    if not wanted:
        return answer
    results = []
    for snapshot_id in snapshots:
        shared = any(
            snapshot_id in [m["Ebs"]["SnapshotId"] for m in other.block_device_mappings]
            for other in backend.amis.values()
        )
        if not shared:
            backend.snapshots.pop(snapshot_id, None)
        results.append({"SnapshotId": snapshot_id, "ReturnCode": "skipped" if shared else "success"})
    answer.result["DeleteSnapshotResults"] = results
    return answer


def create_volume(
    original,
    backend,
    size,
    zone_name,
    snapshot_id=None,
    encrypted=False,
    kms_key_id=None,
    volume_type=None,
    iops=None,
    *args,
    **kwargs,
):
    """CreateVolume as EC2 refuses it, where moto makes it anyway: Iops "is required for io1 and io2 volumes"
    (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_CreateVolume.html), else MissingParameter."""
    if volume_type in ("io1", "io2") and iops is None:
        raise EC2ClientError("MissingParameter", "The request must contain the parameter iops")
    return original(backend, size, zone_name, snapshot_id, encrypted, kms_key_id, volume_type, iops, *args, **kwargs)


def attach_volume(original, backend, volume_id, instance_id, device_path, *args, **kwargs):
    """AttachVolume as EC2 refuses it, where moto attaches anyway (moto/ec2/models/elastic_block_store.py,
    attach_volume replaces the attachment and the device's mapping): "The volume and instance must be within
    the same Availability Zone" (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_AttachVolume.html),
    else InvalidVolume.ZoneMismatch; a volume "must be in the available state" (ebs-attaching-volume.html), else
    VolumeInUse for an attached one and IncorrectState for another; a device name the instance uses is
    InvalidParameterValue (errors-overview.html; EC2's texts as dstackai/dstack's aws/compute.py matches them)."""
    volume = backend.get_volume(volume_id)
    instance = backend.get_instance(instance_id)
    if volume.attachment:
        raise EC2ClientError("VolumeInUse", f"{volume_id} is already attached to an instance")
    if volume.status != "available":
        raise EC2ClientError("IncorrectState", f"{volume_id} is not 'available'.")
    if volume.zone.name != instance.availability_zone:
        raise EC2ClientError(
            "InvalidVolume.ZoneMismatch",
            f"The volume '{volume_id}' is not in the same availability zone as instance '{instance_id}'",
        )
    if device_path in instance.block_device_mapping:
        raise EC2ClientError(
            "InvalidParameterValue",
            f"Invalid value '{device_path}' for unixDevice. Attachment point {device_path} is already in use",
        )
    return original(backend, volume_id, instance_id, device_path, *args, **kwargs)


def detach_volume(original, backend, volume_id, instance_id=None, device_path=None):
    """DetachVolume's InstanceId and Device are optional (API_DetachVolume.html); moto looks the instance up by
    the id given (None: a crash, moto/ec2/models/elastic_block_store.py): the attachment's instance stands in."""
    volume = backend.get_volume(volume_id)
    if not instance_id and volume.attachment:
        instance_id = volume.attachment.instance.id
    return original(backend, volume_id, instance_id, device_path)


def start_moves_launch_time(original, instance):
    """EC2's LaunchTime is "the time that the instance was last launched" (the first launch is the primary
    network interface's attachment time: https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_Instance.html),
    so every start moves it; moto sets it once, when the instance is made (moto/ec2/models/instances.py,
    Instance.__init__; Instance.start leaves it)."""
    from moto.core.utils import utcnow

    previous = original(instance)
    if previous.name != "running":
        instance.launch_time = utcnow()
    return previous


# Service Quotas as an account that never asked for more has it, for EBS's storage quotas (moto knows the vpc
# service only): GetServiceQuota answers NoSuchResource for a quota never changed, GetAWSDefaultServiceQuota the
# default (API_GetServiceQuota.html, API_GetAWSDefaultServiceQuota.html); gp2 and gp3 storage: 50 TiB per
# region (https://docs.aws.amazon.com/general/latest/gr/ebs-service.html).
EBS_DEFAULT_QUOTAS = {
    "L-7A658B76": "Storage for General Purpose SSD (gp3) volumes, in TiB",
    "L-D18FCD1D": "Storage for General Purpose SSD (gp2) volumes, in TiB",
}
EBS_APPLIED_QUOTAS: dict[str, float] = {}  # a test's raised or lowered quota, by code


def _ebs_quota(code: str, value: float) -> dict:
    return {
        "ServiceCode": "ebs",
        "QuotaCode": code,
        "QuotaName": EBS_DEFAULT_QUOTAS[code],
        "Value": value,
        "Unit": "None",
    }


def get_service_quota(original, backend, service_code, quota_code):
    if service_code == "ebs" and quota_code in EBS_APPLIED_QUOTAS:
        return _ebs_quota(quota_code, EBS_APPLIED_QUOTAS[quota_code])
    return original(backend, service_code, quota_code)


def get_aws_default_service_quota(response) -> str:
    """GetAWSDefaultServiceQuota, which moto lacks, for EBS's storage quotas."""
    params = json.loads(response.body)
    if params.get("ServiceCode") != "ebs" or params.get("QuotaCode") not in EBS_DEFAULT_QUOTAS:
        raise NoSuchResource
    return json.dumps({"Quota": _ebs_quota(params["QuotaCode"], 50.0)})


@contextlib.contextmanager
def ec2_rules():
    with contextlib.ExitStack() as stack:
        stack.enter_context(
            patched(
                SecurityGroupBackend,
                create_security_group=create_security_group,
                authorize_security_group_ingress=authorize,
                authorize_security_group_egress=authorize,
            )
        )
        stack.enter_context(patched(KeyPairBackend, import_key_pair=import_key_pair))
        stack.enter_context(
            patched(EBSBackend, create_volume=create_volume, attach_volume=attach_volume, detach_volume=detach_volume)
        )
        stack.enter_context(patched(AmiBackend, create_image=create_image))
        stack.enter_context(patched(AmisResponse, deregister_image=deregister_image))
        stack.enter_context(patched(Instance, start=start_moves_launch_time))
        stack.enter_context(patched(ServiceQuotasBackend, get_service_quota=get_service_quota))
        ServiceQuotasResponse.get_aws_default_service_quota = get_aws_default_service_quota  # moto has none
        yield


class Lagging:
    """EC2 right after it made something: "if you run a command to modify or describe the resource that you just
    created, its ID might not have propagated throughout the system, and you will get an error responding that
    the resource does not exist" (https://docs.aws.amazon.com/ec2/latest/devguide/eventual-consistency.html).
    Here the first use of each new security group, key pair, Elastic IP and AMI answers NotFound, and the
    first DeleteSnapshot of a just deregistered AMI's snapshot InvalidSnapshot.InUse, with EC2's codes
    (errors-overview.html); `refused` lists each refusal, so a test shows that it happened."""

    def __init__(self, never_caught_up: bool = False):
        """never_caught_up: every use answers NotFound, as for a resource someone deleted meanwhile."""
        self.new: dict[str, str] = {}  # resource id or name -> the NotFound code its first use answers
        self.refused: list[str] = []
        self.never_caught_up = never_caught_up

    def _first_use(self, resource: str | None, message: str) -> None:
        code = (self.new.get if self.never_caught_up else self.new.pop)(resource, None) if resource else None
        if code:
            self.refused.append(code)
            raise InvalidAMIIdError(resource) if code == "InvalidAMIID.NotFound" else EC2ClientError(code, message)

    def _made(self, code: str, made, resource_of):
        resource = resource_of(made)
        self.new[resource] = code
        return made

    def __enter__(self):
        self._stack = contextlib.ExitStack().__enter__()
        new = self._made
        self._stack.enter_context(
            patched(
                SecurityGroupBackend,
                create_security_group=lambda original, *a, **k: new(
                    "InvalidGroup.NotFound", original(*a, **k), lambda g: g.id
                ),
                authorize_security_group_ingress=self._authorize,
            )
        )
        self._stack.enter_context(
            patched(
                KeyPairBackend,
                import_key_pair=lambda original, *a, **k: new(
                    "InvalidKeyPair.NotFound", original(*a, **k), lambda pair: pair.key_name
                ),
            )
        )
        self._stack.enter_context(patched(InstanceBackend, run_instances=self._run_instances))
        self._stack.enter_context(
            patched(
                ElasticAddressBackend,
                allocate_address=lambda original, *a, **k: new(
                    "InvalidAllocationID.NotFound", original(*a, **k), lambda address: address.allocation_id
                ),
                associate_address=self._associate,
            )
        )
        self._stack.enter_context(
            patched(
                AmiBackend,
                create_image=lambda original, *a, **k: new(
                    "InvalidAMIID.NotFound", original(*a, **k), lambda image: image.id
                ),
                describe_images=self._describe_images,
                deregister_image=self._deregister_image,
            )
        )
        self._stack.enter_context(patched(EBSBackend, delete_snapshot=self._delete_snapshot))
        return self

    def __exit__(self, *exc):
        return self._stack.__exit__(*exc)

    def _authorize(self, original, backend, *args, **kwargs):
        group = _rule_kwargs(args, kwargs)["group_name_or_id"]
        self._first_use(group, f"The security group '{group}' does not exist")
        return original(backend, *args, **kwargs)

    def _run_instances(self, original, backend, *args, **kwargs):
        key = kwargs.get("key_name")
        self._first_use(key, f"The key pair '{key}' does not exist")
        groups = list(kwargs.get("security_group_ids") or []) + [
            g for n in kwargs.get("nics") or [] for g in n.get("Groups", [])
        ]
        for group in groups:
            self._first_use(group, f"The security group '{group}' does not exist")
        return original(backend, *args, **kwargs)

    def _associate(self, original, backend, *args, **kwargs):
        allocation = kwargs.get("allocation_id")
        self._first_use(allocation, f"The allocation ID '{allocation}' does not exist")
        return original(backend, *args, **kwargs)

    def _describe_images(self, original, backend, *args, **kwargs):
        for image in kwargs.get("ami_ids") or []:
            self._first_use(image, "")
        return original(backend, *args, **kwargs)

    def _deregister_image(self, original, backend, image_id):
        for mapping in backend.amis[image_id].block_device_mappings if image_id in backend.amis else []:
            self.new[mapping["Ebs"]["SnapshotId"]] = "InvalidSnapshot.InUse"
        return original(backend, image_id)

    def _delete_snapshot(self, original, backend, snapshot_id):
        self._first_use(snapshot_id, f"The snapshot {snapshot_id} is currently in use")
        return original(backend, snapshot_id)


class VolumeStates:
    """An EBS volume's states as EC2 shows them and moto skips (moto's Volume.status is "available" or
    "in-use", its attachment "attached", at once): a volume's State is creating | available | in-use |
    deleting | deleted | error, its attachment's attaching | attached | detaching | detached
    (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_Volume.html, API_VolumeAttachment.html).
    Here each DescribeVolumes that names a volume by id shows the next of its pending states: a new volume is
    first NotFound (eventual-consistency.html, as `Lagging`), then "creating"; an attachment is first
    "attaching", a detach first "detaching" (the volume "in-use"), a deleted volume first "deleting", each
    of these for `polls` describes.  `shown` lists what was shown, so a test sees the waits went through them."""

    def __init__(self, polls: int = 1):
        self.polls = polls
        self.pending: dict[str, list[str]] = {}  # volume id -> the states its next describes show
        self.detached: dict[str, object] = {}  # volume id -> its attachment while it shows "detaching"
        self.deleted: dict[str, Volume] = {}  # volume id -> the volume while it shows "deleting"
        self.shown: list[str] = []

    def __enter__(self):
        def create_volume(original, backend, *args, **kwargs):
            made = original(backend, *args, **kwargs)
            self.pending[made.id] = ["NotFound"] + ["creating"] * self.polls
            return made

        def attach(original, backend, volume_id, *args, **kwargs):
            answer = original(backend, volume_id, *args, **kwargs)
            self.pending[volume_id] = ["attaching"] * self.polls
            return answer

        def detach(original, backend, volume_id, *args, **kwargs):
            attachment = original(backend, volume_id, *args, **kwargs)
            self.detached[volume_id], self.pending[volume_id] = attachment, ["detaching"] * self.polls
            return attachment

        def delete(original, backend, volume_id):
            self.deleted[volume_id], self.pending[volume_id] = original(backend, volume_id), ["deleting"] * self.polls
            return self.deleted[volume_id]

        self._patch = patched(
            EBSBackend,
            create_volume=create_volume,
            attach_volume=attach,
            detach_volume=detach,
            delete_volume=delete,
            describe_volumes=self._describe,
        )
        self._patch.__enter__()
        return self

    def __exit__(self, *exc):
        return self._patch.__exit__(*exc)

    def _describe(self, original, backend, volume_ids=None, filters=None):
        asked = list(volume_ids or [])
        looks = {v: self.pending[v].pop(0) for v in asked if self.pending.get(v)}
        self.shown += looks.values()
        for volume_id, look in looks.items():
            if look == "NotFound":
                raise InvalidVolumeIdError(volume_id)
        rest = [v for v in asked if not (v in self.deleted and v in looks)]
        found = original(backend, rest, filters) if rest or not asked else []
        found += [self.deleted[v] for v in asked if v in self.deleted and v in looks]
        return [self._looking(v, looks[v.id]) if v.id in looks else v for v in found]

    def _looking(self, volume: Volume, look: str) -> Volume:
        """A copy of moto's volume that shows `look` (its attachment's, for attaching and detaching)."""
        shown = copy.copy(volume)
        status = "in-use" if look in ("attaching", "detaching") else look
        # moto's serializer reads the model's attributes by name: "Volume" keeps its lookups as they were.
        shown.__class__ = type("Volume", (Volume,), {"status": status})
        if look in ("attaching", "detaching"):
            shown.attachment = copy.copy(volume.attachment or self.detached[volume.id])
            shown.attachment.status = look
        return shown


class SpotRequests:
    """The InstanceMarketOptions of each RunInstances as EC2 receives them: moto keeps only the market type
    (moto/ec2/responses/instances.py reads InstanceMarketOptions.MarketType) and no spot request object."""

    def __init__(self):
        self.received: list[dict] = []

    def __enter__(self):
        def run_instances(original, response):
            options = response._get_param("InstanceMarketOptions")
            if options:
                self.received.append(options)
            return original(response)

        self._patch = patched(InstanceResponse, run_instances=run_instances)
        self._patch.__enter__()
        return self

    def __exit__(self, *exc):
        return self._patch.__exit__(*exc)


class StoredBlocks:
    """What an EBS snapshot stores: DescribeSnapshots' FullSnapshotSizeInBytes, "the size of all the blocks that
    were written to the source volume at the time the snapshot was created" (botocore's ec2 model, Snapshot;
    https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_Snapshot.html), which EBS bills by the GB-month
    (https://aws.amazon.com/ebs/pricing/: snapshots are billed for the data stored), while VolumeSize is the
    volume's whole size.  moto answers no FullSnapshotSizeInBytes; here each snapshot made in the block stores
    `written` bytes (by volume id, else `default`), as EC2 does not answer it for snapshots from before
    the field existed: those made outside the block have none."""

    def __init__(self, default: int, written: dict[str, int] | None = None):
        self.default, self.written = default, written or {}

    def __enter__(self):
        def create_snapshot(original, backend, volume_id, *args, **kwargs):
            snapshot = original(backend, volume_id, *args, **kwargs)
            # moto's serializer answers a model's snake_case attribute for its PascalCase member
            # (moto/core/serialize.py, XFormedAttributePicker).
            snapshot.full_snapshot_size_in_bytes = self.written.get(volume_id, self.default)
            return snapshot

        self._patch = patched(EBSBackend, create_snapshot=create_snapshot)
        self._patch.__enter__()
        return self

    def __exit__(self, *exc):
        return self._patch.__exit__(*exc)


class SmallPages:
    """DescribeInstances in pages of `size` reservations, each with a NextToken, when the caller names no MaxResults:
    EC2 pages its answers (MaxResults 5 to 1000, "we strongly recommend using only paginated requests",
    https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DescribeInstances.html), and moto's
    DescribeInstances already pages at 100 unasked (moto/ec2/responses/instances.py); a small page shows the
    same with a few instances."""

    def __init__(self, size: int):
        self.size = size

    def __enter__(self):
        size = self.size

        def describe_instances(original, response):
            asked = response._get_param

            def param(name, *default, **kwargs):
                if name == "MaxResults" and asked(name) is None and not asked("InstanceIds", []):
                    return size
                return asked(name, *default, **kwargs)

            response._get_param = param
            try:
                return original(response)
            finally:
                del response._get_param

        self._patch = patched(InstanceResponse, describe_instances=describe_instances)
        self._patch.__enter__()
        return self

    def __exit__(self, *exc):
        return self._patch.__exit__(*exc)


class ResizeAndSnapshotStates:
    """What moto skips when a volume grows or is snapshotted (its modification is "completed" and its snapshot
    "completed" at once): a modification is first "modifying", then "optimizing", the new size the guest's
    once it is optimizing (https://docs.aws.amazon.com/ebs/latest/userguide/monitoring-volume-modifications.html);
    a snapshot is "pending" before "completed" (API_Snapshot.html), each for `polls` describes.  And EC2's
    refusal of a size below the volume's: InvalidParameterValue (ebs-modify-volume.html: "you can't decrease
    the size of an EBS volume").  `shown` lists the states shown."""

    def __init__(self, polls: int = 1, fail: bool = False):
        self.polls, self.fail = polls, fail
        self.pending: dict[str, list[str]] = {}  # volume or snapshot id -> the states its next describes show
        self.shown: list[str] = []

    def __enter__(self):
        def modify_volume(original, backend, volume_id, target_size=None, *args, **kwargs):
            if target_size is not None and target_size < backend.get_volume(volume_id).size:
                raise EC2ClientError(
                    "InvalidParameterValue",
                    f"New size cannot be smaller than existing size (volume {volume_id})",
                )
            self.pending[volume_id] = ["modifying"] * self.polls + ["failed" if self.fail else "optimizing"]
            return original(backend, volume_id, target_size, *args, **kwargs)

        def create_snapshot(original, backend, *args, **kwargs):
            made = original(backend, *args, **kwargs)
            self.pending[made.id] = ["pending"] * self.polls
            return made

        self._patch = patched(
            EBSBackend,
            modify_volume=modify_volume,
            describe_volumes_modifications=self._modifications,
            create_snapshot=create_snapshot,
            describe_snapshots=self._snapshots,
        )
        self._patch.__enter__()
        return self

    def __exit__(self, *exc):
        return self._patch.__exit__(*exc)

    def _modifications(self, original, backend, volume_ids=None, filters=None):
        found = original(backend, volume_ids, filters)
        shown = []
        for modification in found:
            look = (self.pending.get(modification.volume.id) or ["completed"]).pop(0)
            self.shown.append(look)
            copied = copy.copy(modification)
            copied.__class__ = type("VolumeModification", (type(modification),), {"modification_state": look})
            shown.append(copied)
        return shown[-1:] if shown else shown  # the newest, as EC2 lists one per volume

    def _snapshots(self, original, backend, snapshot_ids=None, filters=None):
        found = original(backend, snapshot_ids, filters)
        shown = []
        for snapshot in found:
            looks = self.pending.get(snapshot.id)
            if snapshot_ids and looks:
                self.shown.append(looks.pop(0))
                snapshot = copy.copy(snapshot)
                snapshot.status = "pending"
            shown.append(snapshot)
        return shown


class NoCapacity:
    """EC2 out of capacity for `instance_type` in `zone`: RunInstances and StartInstances of that type there answer
    InsufficientInstanceCapacity with EC2's documented text ("We currently do not have sufficient <type> capacity in
    the Availability Zone you requested (<zone>). Our system will be working on provisioning additional capacity.
    You can currently get <type> capacity by not specifying an Availability Zone in your request or choosing
    <zones>.", https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/troubleshooting-launch.html#troubleshooting-
    launch-capacity); moto always has capacity.  A RunInstances that names no subnet is placed by EC2 in the
    region's first zone, as moto places it."""

    def __init__(self, instance_type: str, zone: str):
        self.instance_type, self.zone = instance_type, zone

    def _refuse(self) -> None:
        raise EC2ClientError(
            "InsufficientInstanceCapacity",
            f"We currently do not have sufficient {self.instance_type} capacity in the Availability Zone you "
            f"requested ({self.zone}). Our system will be working on provisioning additional capacity.",
        )

    def __enter__(self):
        def run_instances(original, backend, image_id, count, user_data, security_group_names, **kwargs):
            subnet = kwargs.get("subnet_id") or next(
                (n["SubnetId"] for n in kwargs.get("nics") or [] if "SubnetId" in n), None
            )
            zone = backend.get_subnet(subnet).availability_zone if subnet else f"{backend.region_name}a"
            if kwargs.get("instance_type") == self.instance_type and zone == self.zone:
                self._refuse()
            return original(backend, image_id, count, user_data, security_group_names, **kwargs)

        def start_instances(original, backend, instance_ids):
            for instance_id in instance_ids:
                instance = backend.get_instance(instance_id)
                if instance.instance_type == self.instance_type and instance.availability_zone == self.zone:
                    self._refuse()
            return original(backend, instance_ids)

        self._patch = patched(InstanceBackend, run_instances=run_instances, start_instances=start_instances)
        self._patch.__enter__()
        return self

    def __exit__(self, *exc):
        return self._patch.__exit__(*exc)


class Watched:
    """Each change EC2 makes to an EBS volume or snapshot told to `look` as moto makes it: the volume after
    CreateVolume, AttachVolume, DetachVolume (a terminated instance's too: moto's Instance.teardown_defaults
    detaches through the backend) and ModifyVolume, the snapshot after CreateSnapshot.  `look` runs in the
    moto server's thread, before the answer leaves: a test's guest (tests/test_data_flow.py) has seen what EBS
    did before labvm, waiting on that answer, goes on."""

    def __init__(self, look):
        self.look = look

    def __enter__(self):
        def told(original, backend, *args, **kwargs):
            answer = original(backend, *args, **kwargs)
            changed = (
                answer
                if isinstance(answer, (Volume, Snapshot))
                else backend.get_volume(kwargs.get("volume_id") or args[0])
            )
            self.look(changed)
            return answer

        self._patch = patched(
            EBSBackend,
            create_volume=told,
            attach_volume=told,
            detach_volume=told,
            modify_volume=told,
            create_snapshot=told,
        )
        self._patch.__enter__()
        return self

    def __exit__(self, *exc):
        return self._patch.__exit__(*exc)


class SizeAtSnapshot:
    """A snapshot's VolumeSize as EC2 keeps it: "the size of the volume, in GiB" when the snapshot was taken
    (API_Snapshot.html; a volume grown later leaves it, and a volume made from it is that size at least,
    API_CreateVolume.html), where moto answers its volume's size now (moto/ec2/models/elastic_block_store.py,
    Snapshot.volume_size reads self.volume.size)."""

    def __enter__(self):
        def create_snapshot(original, backend, *args, **kwargs):
            made = original(backend, *args, **kwargs)
            # moto's serializer reads the model's attributes by name: "Snapshot" keeps its lookups as they were.
            made.__class__ = type("Snapshot", (type(made),), {"volume_size": made.volume.size})
            return made

        self._patch = patched(EBSBackend, create_snapshot=create_snapshot)
        self._patch.__enter__()
        return self

    def __exit__(self, *exc):
        return self._patch.__exit__(*exc)
