"""The profile's data volume (hosts.yml data:) on EBS: found by its tags, made in the machine's zone, attached
at a device name the machine leaves free, detached and deleted, each change through the gate and each wait on
EC2's own states (cloud.CloudProvider keeps the rules: one per profile and owner, same zone, one machine)."""

from __future__ import annotations

import dataclasses
import re
import sys

from ...config import Profile
from ...errors import LabvmError
from ..base import VOLUME_ATTACHED, VOLUME_AVAILABLE, VOLUME_BUSY, VOLUME_CREATING, Instance, Volume
from ..cloud import PLANNED, unknown
from .api import Ec2Api
from .names import AwsNames, tags_of

DEFAULT_TYPE = "gp3"  # EBS's general-purpose SSD, as the root volume (head.launch)
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


class AwsVolumes:
    """The profile's data volume of this owner: an EBS volume tagged labvm:role=data."""

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

    def create(self, zone: str) -> Volume:
        """CreateVolume in the zone, tagged in the same call (a volume half made is found by the next run, never
        made twice), encrypted as the account's EBS default says (Encrypted left out:
        https://docs.aws.amazon.com/ebs/latest/userguide/encryption-by-default.html); waited for until available."""
        data = self.profile.data
        assert data is not None  # CloudProvider._volumes: only with data:
        volume_type = self.checked_type(data.type or DEFAULT_TYPE)
        if not self.api.plan:  # under --plan the gate's own line says it
            print(
                f"aws: creating data volume {self.names.data_name} ({data.size} GB {volume_type}) in {zone}", flush=True
            )
        made = self.api.change(
            "create_volume",
            Size=data.size,
            VolumeType=volume_type,
            AvailabilityZone=zone,
            TagSpecifications=[
                {"ResourceType": "volume", "Tags": self.names.tag_list(self.names.data_name, self.names.data_labels)}
            ],
        )
        volume_id = made["VolumeId"]
        self.api.wait("volume_available", f"{volume_id} is available", VolumeIds=[volume_id])
        if self.api.plan:
            return Volume(PLANNED, self.names.data_name, data.size, VOLUME_AVAILABLE, zone, volume_type)
        return self.described(volume_id)

    def checked_type(self, volume_type: str) -> str:
        """An EBS volume type, as botocore's model of CreateVolume lists them (EC2 refuses any other:
        InvalidParameterValue, https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_CreateVolume.html);
        else one line naming the key, with did-you-mean, before anything is made."""
        known = list(self.api.ec2.meta.service_model.shape_for("VolumeType").enum)
        if volume_type not in known:
            raise unknown(
                self.profile.key("data.type"), "EBS volume type", volume_type, known, "types: " + ", ".join(known)
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

    def described(self, volume_id: str) -> Volume:
        """DescribeVolumes' answer for one volume."""
        return volume_of(self.api.read("describe_volumes", VolumeIds=[volume_id])["Volumes"][0])
