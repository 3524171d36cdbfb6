"""The profile's data disk (hosts.yml data:): a zonal Persistent Disk of its own, labelled for the profile and
owner with labvm-role=data, found by its labels in every zone, made in the VM's zone, attached with its own name
as the device name and autoDelete false, so the guest sees it as /dev/disk/by-id/google-NAME and it outlives the
VM (https://cloud.google.com/compute/docs/reference/rest/v1/disks,
https://cloud.google.com/compute/docs/reference/rest/v1/instances/attachDisk)."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from ...config import Profile
from ...errors import LabvmError
from ..base import VOLUME_ATTACHED, VOLUME_AVAILABLE, VOLUME_BUSY, VOLUME_CREATING, Instance, Volume
from ..cloud import PLANNED, unknown
from .api import OPERATION_TIMEOUT, GceApi
from .names import GceNames

# A disk's status (https://cloud.google.com/compute/docs/reference/rest/v1/disks: CREATING, RESTORING, FAILED,
# READY, DELETING) in labvm's words; READY with users is attached.
STATES = {
    "READY": VOLUME_AVAILABLE,
    "CREATING": VOLUME_CREATING,
    "RESTORING": VOLUME_CREATING,
    "FAILED": VOLUME_BUSY,
    "DELETING": VOLUME_BUSY,
}
DEFAULT_TYPE = "pd-balanced"  # SSD-backed at about half pd-ssd's price: the Console's default for a new disk
# A device name as attachDisk takes it (RFC 1035, as a resource name): only such a name goes into a guest's path.
DEVICE_NAME = re.compile(r"[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?")


def devices(device_name: str) -> tuple[str, ...]:
    """Where the guest finds a disk attached under this device name: the guest environment's udev rule
    (GoogleCloudPlatform/guest-configs, 65-gce-disk-naming.rules) links google-NAME, SCSI and NVMe alike
    (https://cloud.google.com/compute/docs/disks/format-mount-disk-linux); systemd's own rule makes the SCSI
    serial's scsi-0Google_PersistentDisk_NAME where that package is missing.  None for a name GCE would not give."""
    if not DEVICE_NAME.fullmatch(device_name):
        return ()
    return (f"/dev/disk/by-id/google-{device_name}", f"/dev/disk/by-id/scsi-0Google_PersistentDisk_{device_name}")


def tail(url: str) -> str:
    """The last part of a Compute URL: a zone's, a disk type's or an instance's name."""
    return url.rsplit("/", 1)[-1]


class GceVolumes:
    """The data disk: found, made, attached, detached, deleted, each change through the gate and waited for."""

    def __init__(self, api: GceApi, names: GceNames, profile: Profile):
        self.api, self.names, self.profile = api, names, profile
        self.project = api.project

    def find(self) -> Volume | None:
        """The newest disk labelled for the profile, owner and role data, in any zone: one restored in another
        zone of the region must be found there (and refused beside a VM elsewhere), never made again here."""
        request = self.api.compute.AggregatedListDisksRequest(
            project=self.project, filter=self.names.filter(self.names.data_labels)
        )
        scopes = self.api.call(lambda: list(self.api.disks.aggregated_list(request=request)))
        found = [disk for _, scoped in scopes for disk in scoped.disks]
        return self.volume_of(max(found, key=lambda d: d.creation_timestamp)) if found else None

    def create(self, zone: str) -> Volume:
        """disks.insert of data.size GB and data.type (else pd-balanced) in `zone`, waited for until READY."""
        data = self.profile.data
        assert data is not None  # CloudProvider._volumes: only with data:
        name, disk_type = self.names.data_disk, self.check_type(data.type or DEFAULT_TYPE, zone)
        disk = self.api.compute.Disk(
            name=name,
            size_gb=data.size,
            # The full partial URL: "project/zones/..." is refused (googleapis/google-api-go-client#357).
            type_=f"projects/{self.project}/zones/{zone}/diskTypes/{disk_type}",
            labels=self.names.data_labels,
        )
        self.api.change(
            f"create data volume {name} ({data.size} GB {disk_type}) in {zone}",
            self.api.disks.insert,
            "zone",
            f"{name} is created",
            zone=zone,
            disk_resource=disk,
        )
        if self.api.plan:
            return Volume(PLANNED, name, data.size, VOLUME_AVAILABLE, zone, disk_type)
        return self.volume_of(
            self.api.wait_until(f"{name} is READY", lambda: self.ready(zone, name), OPERATION_TIMEOUT)
        )

    def check_type(self, disk_type: str, zone: str) -> str:
        """The zone has this disk type, else the closest names it has, in one line."""
        found = self.api.get_or_none(self.api.disk_types.get, project=self.project, zone=zone, disk_type=disk_type)
        if found is None:
            names = [t.name for t in self.api.call(self.api.disk_types.list, project=self.project, zone=zone)]
            raise unknown(
                self.profile.key("data.type"),
                "disk type",
                disk_type,
                names,
                f"gcloud compute disk-types list --zones {zone}",
            )
        return disk_type

    def ready(self, zone: str, name: str) -> Any:
        """The disk once READY (its insert operation done, GCE may still be making it); FAILED in one line."""
        disk = self.api.call(self.api.disks.get, project=self.project, zone=zone, disk=name)
        if disk.status == "FAILED":
            raise LabvmError(
                f"GCE: the data volume {name} in {zone} FAILED; delete it "
                f"(gcloud compute disks delete {name} --zone {zone} --project {self.project}) and run it again"
            )
        return disk if disk.status == "READY" else None

    def attach(self, volume: Volume, instance: Instance) -> Volume:
        """instances.attachDisk with deviceName the disk's name (what the guest's /dev/disk/by-id shows) and
        autoDelete false (instances.delete keeps it), read-write, waited for."""
        attached = self.api.compute.AttachedDisk(
            source=f"projects/{self.project}/zones/{volume.zone}/disks/{volume.id}",
            device_name=volume.name,
            auto_delete=False,
            mode="READ_WRITE",
        )
        self.api.change(
            f"attach data volume {volume.id} to {instance.id} as {devices(volume.name)[0]}",
            self.api.instances.attach_disk,
            "zone",
            f"{volume.id} is attached to {instance.id}",
            zone=instance.zone or self.api.zone,
            instance=instance.id,
            attached_disk_resource=attached,
        )
        if self.api.plan:
            return dataclasses.replace(
                volume, state=VOLUME_ATTACHED, attached_to=instance.id, devices=devices(volume.name)
            )
        return self.current(volume)

    def detach(self, volume: Volume) -> Volume:
        """instances.detachDisk by the device name the instance holds it under, waited for."""
        device = self.device_name(volume.zone, volume.attached_to, volume.id) or volume.name
        self.api.change(
            f"detach data volume {volume.id} from {volume.attached_to}",
            self.api.instances.detach_disk,
            "zone",
            f"{volume.id} is detached",
            zone=volume.zone,
            instance=volume.attached_to,
            device_name=device,
        )
        if self.api.plan:
            return dataclasses.replace(volume, state=VOLUME_AVAILABLE, attached_to="", devices=())
        return self.current(volume)

    def delete(self, volume: Volume) -> None:
        """disks.delete, waited for until gone (GCE refuses a disk an instance uses: "already being used by")."""
        self.api.change(
            f"delete data volume {volume.id} ({volume.size_gb} GB) in {volume.zone}",
            self.api.disks.delete,
            "zone",
            f"{volume.id} is deleted",
            zone=volume.zone,
            disk=volume.id,
        )

    def current(self, volume: Volume) -> Volume:
        """The volume as the cloud has it now."""
        return self.volume_of(self.api.call(self.api.disks.get, project=self.project, zone=volume.zone, disk=volume.id))

    def device_name(self, zone: str, instance: str, disk: str) -> str:
        """The device name the instance holds the disk under ("" where it does not): labvm attaches under the
        disk's name, `gcloud compute instances attach-disk` without --device-name under persistent-disk-N."""
        data = self.api.get_or_none(self.api.instances.get, project=self.project, zone=zone, instance=instance)
        held = [d for d in (data.disks if data else []) if tail(d.source) == disk and f"/zones/{zone}/" in d.source]
        return held[0].device_name if held else ""

    def volume_of(self, disk: Any) -> Volume:
        """Compute's disk in labvm's words; attached while its users name an instance."""
        zone = tail(disk.zone)
        attached_to = tail(disk.users[0]) if disk.users else ""
        state = STATES.get(disk.status, VOLUME_BUSY)
        if state == VOLUME_AVAILABLE and attached_to:
            state = VOLUME_ATTACHED
        device = self.device_name(zone, attached_to, disk.name) if attached_to else ""
        return Volume(
            disk.name,
            disk.name,
            int(disk.size_gb),
            state,
            zone,
            tail(disk.type_),
            attached_to,
            devices(device) if device else (),
        )
