"""The profile's data volume (hosts.yml data:) on EBS: found by its tags, made in the machine's zone, attached
at a device name the machine leaves free, detached and deleted, each change through the gate and each wait on
EC2's own states (cloud.CloudProvider keeps the rules: one per profile and owner, same zone, one machine)."""

from __future__ import annotations

import dataclasses
import functools
import re
import sys
from datetime import datetime, timezone
from typing import Any

from ...config import Profile
from ...errors import LabvmError
from ..base import (
    BACKUP_CREATING,
    BACKUP_FAILED,
    BACKUP_READY,
    VOLUME_ATTACHED,
    VOLUME_AVAILABLE,
    VOLUME_BUSY,
    VOLUME_CREATING,
    Backup,
    Instance,
    Volume,
)
from ..base import from_cloud
from ..cloud import PLANNED, backup_stamp, unknown
from .api import Ec2Api
from .names import AwsNames, tags_of

DEFAULT_TYPE = "gp3"  # EBS's general-purpose SSD, as the root volume (head.launch)
# Service Quotas' codes of EBS's storage quotas by volume type, in TiB per region ("Storage for General Purpose SSD
# (gp3) volumes, in TiB", default 50; gp2 the same; https://docs.aws.amazon.com/general/latest/gr/ebs-service.html
# lists the quotas; the codes as the Service Quotas console shows them, and as zuul's nodepool AWS driver reads them).
STORAGE_QUOTAS = {"gp3": "L-7A658B76", "gp2": "L-D18FCD1D"}
# Types CreateVolume refuses without Iops ("required for io1 and io2 volumes", API_CreateVolume.html).
PROVISIONED_IOPS = ("io1", "io2")
# EC2's volume states (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_Volume.html: creating |
# available | in-use | deleting | deleted | error) in labvm's words; the rest is VOLUME_BUSY.
STATES = {"creating": VOLUME_CREATING, "available": VOLUME_AVAILABLE, "in-use": VOLUME_ATTACHED}
FOUND = ("creating", "available", "in-use", "error")  # a deleting or deleted volume is no longer the profile's
# The device names EC2 recommends for EBS volumes on Linux, HVM and paravirtual alike: /dev/sd[f-p]
# (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/device_naming.html).
DEVICES = tuple(f"/dev/sd{letter}" for letter in "fghijklmnop")
# A device name as the API or a mapping gives it (/dev/sdf, sdf, /dev/xvdf, xvdf, /dev/sda1): its drive
# letters.  The kernel may rename /dev/sdf to /dev/xvdf (device_naming.html), so both name one slot.
DRIVE = re.compile(r"(?:/dev/)?(?:sd|xvd|hd)([a-z]+)\d*")


def drive(device: str) -> str:
    """The drive letters of a device name; the name itself where it has none (EC2 takes it, labvm avoids it)."""
    named = DRIVE.fullmatch(device)
    return named.group(1) if named else device


def guest_devices(volume_id: str, device: str) -> tuple[str, ...]:
    """Where the guest finds the attached volume, NVMe first: a Nitro instance shows every EBS volume as an NVMe
    device whose serial is the volume id without its dash, which udev links as
    /dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol<id> (https://docs.aws.amazon.com/ebs/latest/userguide/
    identify-nvme-ebs-device.html; systemd's 60-persistent-storage.rules: nvme-$model_$serial); a Xen instance
    names /dev/sdf /dev/xvdf (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/device_naming.html)."""
    nvme = f"/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_{volume_id.replace('-', '')}"
    return (nvme, f"/dev/xvd{drive(device)}") if device else (nvme,)


def volume_of(data: dict) -> Volume:
    """DescribeVolumes' volume in labvm's words: attached only once its attachment is "attached" (it is
    "in-use" from the moment AttachVolume is taken until DetachVolume ends, API_VolumeAttachment.html)."""
    # A volume without Multi-Attach (labvm never asks for it) has one attachment at most.
    attachment: dict = next(iter(data.get("Attachments") or []), {})
    state = STATES.get(data["State"], VOLUME_BUSY)
    if state == VOLUME_ATTACHED and attachment.get("State") != "attached":
        state = VOLUME_BUSY
    return Volume(
        data["VolumeId"],
        tags_of(data).get("Name", data["VolumeId"]),
        data["Size"],
        state,
        data["AvailabilityZone"],
        data.get("VolumeType", ""),
        attachment.get("InstanceId", ""),
        guest_devices(data["VolumeId"], attachment.get("Device", "")) if attachment else (),
    )


def backup_of(data: dict) -> Backup:
    """DescribeSnapshots' snapshot in labvm's words (its State: pending | completed | error | recoverable |
    recovering, https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_Snapshot.html)."""
    state = {"completed": BACKUP_READY, "error": BACKUP_FAILED}.get(data["State"], BACKUP_CREATING)
    return Backup(
        data["SnapshotId"],
        tags_of(data).get("Name", data["SnapshotId"]),
        data["VolumeSize"],
        state,
        data["StartTime"],
        data.get("VolumeId", ""),
    )


class AwsVolumes:
    """The profile's data volume of this owner: an EBS volume tagged labvm:role=data."""

    backups_outlive_volume = True  # an EBS snapshot is stored apart from its volume (ebs-snapshots.html)

    def __init__(self, api: Ec2Api, names: AwsNames, profile: Profile):
        self.api, self.names, self.profile = api, names, profile

    def find(self) -> Volume | None:
        """The oldest live volume with the profile's, owner's and data role's tags (two: one was made by hand
        or by a race; the oldest holds the data)."""
        filters = self.names.filters(self.names.data_labels) + [{"Name": "status", "Values": list(FOUND)}]
        found = sorted(self.api.read("describe_volumes", Filters=filters)["Volumes"], key=lambda v: v["CreateTime"])
        if not found:
            return None
        if len(found) > 1:
            print(
                f"aws: {len(found)} data volumes carry this profile's tags; using {found[0]['VolumeId']}",
                file=sys.stderr,
            )
        return volume_of(found[0])

    def create(self, zone: str, backup: Backup | None = None) -> Volume:
        """CreateVolume in the zone (from the backup's snapshot, at its size, where one is given), tagged in the
        same call (a volume half made is found by the next run, never made twice), encrypted as the account's EBS
        default says (Encrypted left out: https://docs.aws.amazon.com/ebs/latest/userguide/encryption-by-default.html);
        waited for until available."""
        data = self.profile.data
        assert data is not None  # CloudProvider._volumes: only with data:
        volume_type = self.checked_type(data.type or DEFAULT_TYPE)
        size, labels, source = data.size, self.names.data_labels, {}
        if backup is not None:  # a volume from a snapshot is at least the snapshot's size (API_CreateVolume.html)
            size, labels, source = (
                backup.size_gb,
                {**labels, "labvm:restored-from": backup.id},
                {"SnapshotId": backup.id},
            )
        if not self.api.plan:  # under --plan the gate's own line says it
            made_from = f" from {backup.id}" if backup else ""
            print(
                f"aws: creating data volume {self.names.data_name} ({size} GB {volume_type}){made_from} in {zone}",
                flush=True,
            )
        made = self.api.change(
            "create_volume",
            Size=size,
            VolumeType=volume_type,
            AvailabilityZone=zone,
            TagSpecifications=[{"ResourceType": "volume", "Tags": self.names.tag_list(self.names.data_name, labels)}],
            **source,
        )
        volume_id = made["VolumeId"]
        self.api.wait("volume_available", f"{volume_id} is available", VolumeIds=[volume_id])
        if self.api.plan:
            return Volume(PLANNED, self.names.data_name, size, VOLUME_AVAILABLE, zone, volume_type)
        return self.described(volume_id)

    def restore(self, backup: Backup, zone: str) -> Volume:
        """CreateVolume from the backup's snapshot (create's rules)."""
        return self.create(zone, backup)

    def restored_from(self, backup: Backup) -> Volume | None:
        """The live volume with the data role's tags and this backup's id."""
        filters = self.names.filters({**self.names.data_labels, "labvm:restored-from": backup.id})
        found = self.api.read("describe_volumes", Filters=filters + [{"Name": "status", "Values": list(FOUND)}])
        return volume_of(found["Volumes"][0]) if found["Volumes"] else None

    @functools.cached_property
    def quotas(self) -> Any:
        """The Service Quotas client."""
        return self.api.client("service-quotas")

    def storage_check(self, need_gb: int) -> str:
        """The region's storage quota of the volume's type (Service Quotas, service "ebs", in TiB) against every
        volume of that type in the region, the account's whole (a quota is the account's): the applied value,
        else AWS's default (GetServiceQuota answers NoSuchResource for a quota never changed, API_GetServiceQuota.html)."""
        from botocore.exceptions import BotoCoreError, ClientError

        data = self.profile.data
        assert data is not None  # CloudProvider._volumes: only with data:
        volume_type = self.checked_type(data.type or DEFAULT_TYPE)
        code = STORAGE_QUOTAS.get(volume_type)
        if code is None:
            return f"not checked: labvm knows no storage quota of {volume_type} volumes"
        try:
            try:
                quota = self.quotas.get_service_quota(ServiceCode="ebs", QuotaCode=code)["Quota"]
            except self.quotas.exceptions.NoSuchResourceException:
                quota = self.quotas.get_aws_default_service_quota(ServiceCode="ebs", QuotaCode=code)["Quota"]
        except (BotoCoreError, ClientError) as e:
            return f"not checked: Service Quotas could not be read ({from_cloud(e)})"
        allowed = quota["Value"] * 1024  # TiB; EBS sizes are GiB
        of_type = [{"Name": "volume-type", "Values": [volume_type]}]
        used = sum(v["Size"] for v in self.api.read("describe_volumes", Filters=of_type)["Volumes"])
        if used + need_gb > allowed:
            raise LabvmError(
                f"{used} of {allowed:.0f} GiB of {volume_type} storage in use and the data volume needs {need_gb}; "
                f"delete volumes or request more in Service Quotas (EBS, {code})"
            )
        return f"{used} of {allowed:.0f} GiB of {volume_type} storage in use, {need_gb} more fit"

    def retire(self, volume: Volume) -> None:
        """CreateTags: its role becomes data-replaced (CreateTags overwrites a tag's value, API_CreateTags.html)."""
        self.api.change("create_tags", Resources=[volume.id], Tags=[{"Key": "labvm:role", "Value": "data-replaced"}])

    def checked_type(self, volume_type: str) -> str:
        """An EBS volume type, as botocore's model of CreateVolume lists them (EC2 refuses any other:
        InvalidParameterValue, https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_CreateVolume.html);
        else one line naming the key, with did-you-mean, before anything is made."""
        known = list(self.api.ec2.meta.service_model.shape_for("VolumeType").enum)
        if volume_type not in known:
            raise unknown(
                self.profile.key("data.type"), "EBS volume type", volume_type, known, "types: " + ", ".join(known)
            )
        if volume_type in PROVISIONED_IOPS:
            raise LabvmError(
                f"{self.profile.key('data.type')}: {volume_type} volumes need an IOPS figure, which labvm does not ask "
                f"for, and bill for each IOPS; use gp3 (3000 IOPS included, more by `aws ec2 modify-volume --iops`)"
            )
        return volume_type

    def attach(self, volume: Volume, instance: Instance) -> Volume:
        """AttachVolume at the first recommended device name the machine does not use, waited for until the
        attachment is "attached"."""
        device = self.free_device(instance)
        self.api.change("attach_volume", VolumeId=volume.id, InstanceId=instance.id, Device=device)
        self.api.wait("volume_attached", f"{volume.id} is attached to {instance.id}", VolumeIds=[volume.id])
        if self.api.plan:
            return dataclasses.replace(volume, state=VOLUME_ATTACHED, attached_to=instance.id)
        return self.described(volume.id)

    def free_device(self, instance: Instance) -> str:
        """The first of DEVICES whose drive no device of the machine's BlockDeviceMappings (its root's among
        them) holds: EC2 refuses a name in use (InvalidParameterValue, "Attachment point ... is already in use")."""
        if instance.id == PLANNED:  # a machine --plan would make has the image's root device alone
            return DEVICES[0]
        data = self.api.described(instance.id)
        used = {drive(m["DeviceName"]) for m in data.get("BlockDeviceMappings", [])} | {
            drive(data.get("RootDeviceName", ""))
        }
        free = next((device for device in DEVICES if drive(device) not in used), None)
        if free is None:
            raise LabvmError(
                f"aws: {instance.id} uses every device name EC2 recommends for EBS volumes ({DEVICES[0]} to "
                f"{DEVICES[-1]}); detach one it does not need (`aws ec2 describe-instances --instance-ids "
                f"{instance.id}` lists them)"
            )
        return free

    def detach(self, volume: Volume) -> Volume:
        """DetachVolume from the machine it is attached to, waited for until available."""
        self.api.change("detach_volume", VolumeId=volume.id, InstanceId=volume.attached_to)
        self.api.wait("volume_available", f"{volume.id} is detached", VolumeIds=[volume.id])
        if self.api.plan:
            return dataclasses.replace(volume, state=VOLUME_AVAILABLE, attached_to="", devices=())
        return self.described(volume.id)

    def delete(self, volume: Volume) -> None:
        """DeleteVolume (EC2 refuses an attached one: VolumeInUse), waited for until gone."""
        self.api.change("delete_volume", VolumeId=volume.id)
        self.api.wait("volume_deleted", f"{volume.id} is deleted", VolumeIds=[volume.id])

    def grow(self, volume: Volume, size_gb: int) -> Volume:
        """ModifyVolume to the new size, attached or not ("Elastic Volumes": no stop, no detach on a current
        instance type, https://docs.aws.amazon.com/ebs/latest/userguide/ebs-modify-volume.html), waited for until
        the modification is optimizing, when the guest has the new size.  EC2 refuses a smaller size and a
        second change within six hours (its message says so: one line through the client)."""
        self.api.change("modify_volume", VolumeId=volume.id, Size=size_gb)
        self.api.wait("volume_grown", f"{volume.id} has {size_gb} GB", VolumeIds=[volume.id])
        return dataclasses.replace(volume, size_gb=size_gb) if self.api.plan else self.described(volume.id)

    def backups(self) -> list[Backup]:
        """This account's snapshots with the profile's, owner's and data-backup role's tags (an image's snapshots
        carry the profile's tags too, never this role)."""
        filters = self.names.filters(self.names.backup_labels)
        return [
            backup_of(s) for s in self.api.read("describe_snapshots", OwnerIds=["self"], Filters=filters)["Snapshots"]
        ]

    def back_up(self, volume: Volume) -> Backup:
        """CreateSnapshot of the volume, tagged in the same call, waited for until completed.  A snapshot of an
        attached volume holds what was written to it when it was taken (crash-consistent: what the guest still
        held in memory is not in it, https://docs.aws.amazon.com/ebs/latest/userguide/ebs-creating-snapshot.html)."""
        name = f"{self.names.data_name}-{backup_stamp()}"
        made = self.api.change(
            "create_snapshot",
            VolumeId=volume.id,
            Description=f"labvm backup of {volume.name}",
            TagSpecifications=[
                {"ResourceType": "snapshot", "Tags": self.names.tag_list(name, self.names.backup_labels)}
            ],
        )
        snapshot_id = made["SnapshotId"]
        self.api.wait(
            "snapshot_completed", f"the backup {snapshot_id} of {volume.id} is complete", SnapshotIds=[snapshot_id]
        )
        if self.api.plan:
            return Backup(PLANNED, name, volume.size_gb, BACKUP_CREATING, datetime.now(timezone.utc), volume.id)
        return backup_of(self.api.read("describe_snapshots", SnapshotIds=[snapshot_id])["Snapshots"][0])

    def delete_backup(self, backup: Backup) -> None:
        """DeleteSnapshot (EC2 refuses one an AMI uses: a backup never is)."""
        self.api.change("delete_snapshot", SnapshotId=backup.id)

    def described(self, volume_id: str) -> Volume:
        """DescribeVolumes' answer for one volume."""
        return volume_of(self.api.read("describe_volumes", VolumeIds=[volume_id])["Volumes"][0])
