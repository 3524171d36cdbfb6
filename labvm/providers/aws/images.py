"""The profile's AMIs: the image a new instance launches from, snapshots (tagged, shared, waited for), the
list, and their deletion with their snapshots."""

from __future__ import annotations

import sys
import time
from datetime import datetime, timezone

from ...config import Profile
from ...errors import LabvmError
from ..base import IMAGE_AVAILABLE, IMAGE_FAILED, IMAGE_PENDING, Image, Instance, from_cloud
from ..cloud import NameRules, cloud_name
from .api import AwsError, Ec2Api
from .gpus import Gpus
from .names import AwsNames
from .settings import UBUNTU_IMAGE, AwsSettings

UBUNTU_ALIASES = {
    f"ubuntu-{release}": f"/aws/service/canonical/ubuntu/server/{release}/stable/current/amd64/hvm/ebs-gp3/ami-id"
    for release in ("22.04", "24.04")
}
# https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_Image.html (ImageState) in labvm's words.
IMAGE_STATES = {"available": IMAGE_AVAILABLE, "pending": IMAGE_PENDING, "transient": IMAGE_PENDING}
# CreateImage Name: "3-128 alphanumeric characters, parentheses (()), square brackets ([]), spaces ( ),
# periods (.), slashes (/), dashes (-), single quotes ('), at-signs (@), or underscores(_)" (botocore's
# ec2 service model, CreateImageRequest): not EC2_NAME's set.
AMI_NAME = NameRules(r"a-zA-Z0-9()\[\] ./\-'@_", 128)


def image_of(data: dict) -> Image:
    """DescribeImages' image in labvm's words."""
    return Image(
        data["ImageId"],
        data.get("Name", ""),
        data.get("CreationDate", ""),
        IMAGE_STATES.get(data.get("State", ""), IMAGE_FAILED),
    )


class Images:
    """labvm's AMIs of this profile and owner."""

    def __init__(self, api: Ec2Api, settings: AwsSettings, names: AwsNames, profile: Profile, gpus: Gpus):
        self.api, self.settings, self.names, self.profile, self.gpus = api, settings, names, profile, gpus
        # A real AMI takes minutes to an hour: polled this often, progress printed this often; in its
        # first minutes DescribeImages may not know it yet (InvalidAMIID.NotFound: still pending).
        self.poll_seconds, self.progress_seconds, self.image_timeout = 15.0, 30.0, 3600.0
        self.image_unlisted_limit = 300.0

    def launched(self, image: str | None) -> str:
        """The AMI a new instance starts from: `image`, else the profile's (an alias asked of SSM); a GPU type
        with no image in hosts.yml starts from the Deep Learning AMI of labvm's Ubuntu, NVIDIA's driver in it."""
        wanted = image or self.settings.image
        if not image and self.driver_image_wanted():
            size = self.gpus.of(self.settings.instance_type)
            assert size is not None  # driver_image_wanted: the type has NVIDIA GPUs
            return self.gpus.driver_image(size, wanted.removeprefix(UBUNTU_IMAGE))
        if wanted in UBUNTU_ALIASES:
            ssm = self.api.client("ssm")
            return self.api.call(ssm.get_parameter, Name=UBUNTU_ALIASES[wanted])["Parameter"]["Value"]
        if not wanted.startswith("ami-"):
            raise LabvmError(
                f"{self.profile.key('image')}: {wanted!r} is neither ami-... nor one of {', '.join(UBUNTU_ALIASES)}"
            )
        return wanted

    def driver_image_wanted(self) -> bool:
        """The profile's type has NVIDIA GPUs and hosts.yml names no image: the Deep Learning AMI is launched."""
        if self.profile.cloud_settings.get("image"):  # hosts.yml chose one (even the default alias): it wins
            return False
        size = self.gpus.of(self.settings.instance_type)
        return size is not None and size.nvidia

    def make(self, instance: Instance, name: str, share: tuple[str, ...], no_reboot: bool) -> Image:
        """An AMI of the instance (EC2 reboots it unless no_reboot), its snapshots tagged, shared with `share`."""
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        image_name = cloud_name(AMI_NAME, name, self.profile.name, stamp)
        image_id = self.api.change(
            "create_image",
            InstanceId=instance.id,
            Name=image_name,
            NoReboot=no_reboot,
            Description=f"labvm image of profile {self.profile.name}",
            TagSpecifications=[{"ResourceType": "image", "Tags": self.names.tag_list(image_name)}],
        )["ImageId"]
        data = self.wait_for(image_id)
        snapshots = [m["Ebs"]["SnapshotId"] for m in data.get("BlockDeviceMappings", []) if "Ebs" in m]
        if snapshots:  # tagged afterwards: create_image's snapshot TagSpecifications are not portable
            self.api.change("create_tags", Resources=snapshots, Tags=self.names.tag_list(image_name))
        for account in share:
            self.api.change("modify_image_attribute", ImageId=image_id, LaunchPermission={"Add": [{"UserId": account}]})
            print(f"aws: {image_id} shared with account {account}")
        return image_of({"Name": image_name, **data})

    def wait_for(self, image_id: str) -> dict:
        """Until the AMI is available: minutes for a small disk, up to an hour for a large one."""
        if self.api.plan:
            print(f"plan: {self.api.cloud}: then wait until image {image_id} is available", flush=True)
            return {
                "ImageId": image_id,
                "State": "pending",
                "BlockDeviceMappings": [{"Ebs": {"SnapshotId": "snap-(planned)"}}],
            }
        start = last_said = time.monotonic()
        while True:
            found = self.listed_image(image_id, time.monotonic() - start)
            state = found.get("State", "pending")
            waited = time.monotonic() - start
            if state == "available":
                print(f"snapshot: {image_id} available ({waited / 60:.0f}m)", flush=True)
                return found
            if IMAGE_STATES.get(state) != IMAGE_PENDING:
                reason = from_cloud(f"{state}: {(found.get('StateReason') or {}).get('Message', '')}")
                raise LabvmError(
                    f"snapshot: {image_id} is {reason}; `inv snapshot --host {self.profile.name}` tries again"
                )
            if waited >= self.image_timeout:
                raise LabvmError(
                    f"snapshot: {image_id} is still {from_cloud(state)} after {waited / 60:.0f}m; EC2 goes on "
                    f"making it: `inv images --host {self.profile.name}` shows when it is available"
                )
            if time.monotonic() - last_said >= self.progress_seconds:
                print(f"snapshot: {image_id} {from_cloud(state)} ({waited / 60:.0f}m)", flush=True)
                last_said = time.monotonic()
            time.sleep(self.poll_seconds)

    def listed_image(self, image_id: str, waited: float) -> dict:
        """The AMI as DescribeImages has it; {} while EC2 does not list it yet: right after CreateImage it
        answers InvalidAMIID.NotFound for a while (eventual-consistency.html), then lists it pending."""
        try:
            found = self.api.read("describe_images", ImageIds=[image_id])["Images"]
        except AwsError as e:
            if e.code != "InvalidAMIID.NotFound" or waited >= self.image_unlisted_limit:
                raise
            return {}
        return found[0] if found else {}

    def listed(self) -> list[Image]:
        """labvm's AMIs of this profile and owner, oldest first."""
        found = self.api.read("describe_images", Owners=["self"], Filters=self.names.filters())["Images"]
        return sorted((image_of(i) for i in found), key=lambda image: image.created)

    def delete(self, image: Image) -> None:
        """Deregisters the AMI and, in the same call, deletes its snapshots: deleting them after
        DeregisterImage can meet InvalidSnapshot.InUse while EC2 catches up (API_DeregisterImage.html,
        DeleteAssociatedSnapshots); a snapshot EC2 did not delete is named with its delete command."""
        answer = self.api.change("deregister_image", ImageId=image.id, DeleteAssociatedSnapshots=True)
        for result in answer.get("DeleteSnapshotResults", []):
            if result.get("ReturnCode") != "success":
                print(
                    f"aws: snapshot {result['SnapshotId']} of {image.id} was not deleted "
                    f"({from_cloud(result.get('ReturnCode'))}); delete it later: aws ec2 delete-snapshot "
                    f"--snapshot-id {result['SnapshotId']} --region {self.api.scope}",
                    file=sys.stderr,
                )
