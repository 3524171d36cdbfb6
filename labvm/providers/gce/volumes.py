"""The profile's data disk (hosts.yml data:): a zonal Persistent Disk of its own, labelled for the profile and
owner with labvm-role=data, found by its labels in every zone, made in the VM's zone, attached with its own name
as the device name and autoDelete false, so the guest sees it as /dev/disk/by-id/google-NAME and it outlives the
VM (https://cloud.google.com/compute/docs/reference/rest/v1/disks,
https://cloud.google.com/compute/docs/reference/rest/v1/instances/attachDisk).  Its backups are global snapshots
labelled as it is with labvm-role=data-backup (https://cloud.google.com/compute/docs/reference/rest/v1/snapshots);
it grows by disks.resize, online (https://cloud.google.com/compute/docs/reference/rest/v1/disks/resize).  A restore is
a new disk made from a snapshot (disks.insert with sourceSnapshot) in any zone of the region; the disk it replaces
is relabelled labvm-role=data-replaced (disks.setLabels) and kept."""

from __future__ import annotations

import dataclasses
import re
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
    parse_time,
)
from ..cloud import PLANNED, backup_stamp, unknown
from .api import OPERATION_TIMEOUT, GceApi
from .names import REPLACED, GceNames

# A disk's status (https://cloud.google.com/compute/docs/reference/rest/v1/disks: CREATING, RESTORING, FAILED,
# READY, DELETING) in labvm's words; READY with users is attached.
STATES = {
    "READY": VOLUME_AVAILABLE,
    "CREATING": VOLUME_CREATING,
    "RESTORING": VOLUME_CREATING,
    "FAILED": VOLUME_BUSY,
    "DELETING": VOLUME_BUSY,
}
# A snapshot's status (https://cloud.google.com/compute/docs/reference/rest/v1/snapshots: CREATING, UPLOADING, READY,
# FAILED, DELETING) in labvm's words: a disk can be made from it once READY; one being deleted is as lost as a failed one.
BACKUP_STATES = {
    "CREATING": BACKUP_CREATING,
    "UPLOADING": BACKUP_CREATING,
    "READY": BACKUP_READY,
    "FAILED": BACKUP_FAILED,
    "DELETING": BACKUP_FAILED,
}
# The regional quota each disk type draws from (https://cloud.google.com/compute/resource-usage#disk_quota,
# https://cloud.google.com/compute/docs/reference/rest/v1/regions: quotas[]): standard Persistent Disk from
# DISKS_TOTAL_GB, balanced and SSD Persistent Disk alike from SSD_TOTAL_GB; usage is every disk of the type in the
# region, boot disks included.  Another type (pd-extreme, hyperdisks) has quotas of its own labvm does not read.
DISK_QUOTAS = {"pd-standard": "DISKS_TOTAL_GB", "pd-balanced": "SSD_TOTAL_GB", "pd-ssd": "SSD_TOTAL_GB"}
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
    """The data disk: found, made, attached, detached, grown, backed up, restored, retired, deleted, each change
    through the gate and waited for."""

    # A snapshot is a global resource of the project, kept when the disk it was taken of is deleted, and a disk is
    # made from it in any zone (https://cloud.google.com/compute/docs/disks/snapshots: "global resources";
    # https://cloud.google.com/compute/docs/disks/restore-snapshot).
    backups_outlive_volume = True

    def __init__(self, api: GceApi, names: GceNames, profile: Profile):
        self.api, self.names, self.profile = api, names, profile
        self.project = api.project

    def find(self) -> Volume | None:
        """The oldest disk labelled for the profile, owner and role data, in any zone (one restored in another
        zone of the region is found there, and refused beside a VM elsewhere): as on every cloud, of two (a race,
        or a restore stopped before it retired the one it replaces) the oldest holds the data."""
        return self.oldest(self.names.data_labels)

    def oldest(self, labels: dict[str, str]) -> Volume | None:
        """The oldest disk carrying these labels, in any zone of the project."""
        request = self.api.compute.AggregatedListDisksRequest(project=self.project, filter=self.names.filter(labels))
        scopes = self.api.call(lambda: list(self.api.disks.aggregated_list(request=request)))
        found = [disk for _, scoped in scopes for disk in scoped.disks]
        return self.volume_of(min(found, key=lambda d: d.creation_timestamp)) if found else None

    def create(self, zone: str) -> Volume:
        """disks.insert of data.size GB and data.type (else pd-balanced) in `zone`, waited for until READY."""
        data = self.profile.data
        assert data is not None  # CloudProvider._volumes: only with data:
        disk_type = self.check_type(data.type or DEFAULT_TYPE, zone)
        return self._insert(self.names.data_disk, data.size, disk_type, zone, self.names.data_labels)

    def _insert(self, name: str, size_gb: int, disk_type: str, zone: str, labels: dict, backup: str = "") -> Volume:
        """disks.insert of the data disk (from the snapshot `backup`, where one is given) through the gate, waited
        for until READY."""
        disk = self.api.compute.Disk(
            name=name,
            size_gb=size_gb,
            # The full partial URL: "project/zones/..." is refused (googleapis/google-api-go-client#357).
            type_=f"projects/{self.project}/zones/{zone}/diskTypes/{disk_type}",
            labels=labels,
        )
        if backup:
            disk.source_snapshot = f"projects/{self.project}/global/snapshots/{backup}"
        made_from = f" from backup {backup}" if backup else ""
        self.api.change(
            f"create data volume {name} ({size_gb} GB {disk_type}){made_from} in {zone}",
            self.api.disks.insert,
            "zone",
            f"{name} is created",
            zone=zone,
            disk_resource=disk,
        )
        if self.api.plan:
            return Volume(PLANNED, name, size_gb, VOLUME_AVAILABLE, zone, disk_type)
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

    def grow(self, volume: Volume, size_gb: int) -> Volume:
        """disks.resize to size_gb, waited for until its zone operation is done: GCE grows a disk attached to a
        running VM, and the guest sees the new size without a restart (only the filesystem is left to grow:
        https://cloud.google.com/compute/docs/disks/resize-persistent-disk).  A smaller size is refused by GCE
        itself (400, "cannot be smaller than the current size"), never sent: CloudProvider refused it first."""
        self.api.change(
            f"grow data volume {volume.id} from {volume.size_gb} to {size_gb} GB",
            self.api.disks.resize,
            "zone",
            f"{volume.id} has {size_gb} GB",
            zone=volume.zone,
            disk=volume.id,
            disks_resize_request_resource=self.api.compute.DisksResizeRequest(size_gb=size_gb),
        )
        return dataclasses.replace(volume, size_gb=size_gb) if self.api.plan else self.current(volume)

    def backups(self) -> list[Backup]:
        """The project's snapshots labelled for the profile, owner and role data-backup, in any state."""
        request = self.api.compute.ListSnapshotsRequest(
            project=self.project, filter=self.names.filter(self.names.backup_labels)
        )
        return [self.backup_of(s) for s in self.api.call(lambda: list(self.api.snapshots.list(request=request)))]

    def back_up(self, volume: Volume) -> Backup:
        """snapshots.insert of the disk (sourceDisk), labelled at creation, then waited for until READY.

        snapshots.insert rather than disks.createSnapshot: the reference of each recommends it "for regular snapshot
        creation" (https://cloud.google.com/compute/docs/reference/rest/v1/disks/createSnapshot), and one global
        collection then makes, lists and deletes the backups.  The disk may be attached to a running VM and in use:
        GCE takes the snapshot as it is, crash-consistent, as after a power cut (ext4's journal makes it whole on
        mount); what an application has not written out yet is not in it
        (https://cloud.google.com/compute/docs/disks/snapshot-best-practices).  Labels go in the insert's body;
        only a later setLabels would need the label fingerprint."""
        name = self.names.backup(backup_stamp())
        snapshot = self.api.compute.Snapshot(
            name=name,
            source_disk=f"projects/{self.project}/zones/{volume.zone}/disks/{volume.id}",
            labels=self.names.backup_labels,
        )
        self.api.change(
            f"back up data volume {volume.id} as snapshot {name}",
            self.api.snapshots.insert,
            "global",
            f"{name} is created",
            snapshot_resource=snapshot,
        )
        if self.api.plan:
            return Backup(PLANNED, name, volume.size_gb, BACKUP_READY, datetime.now(timezone.utc), volume.id)
        made = self.api.wait_until(f"{name} is READY", lambda: self.backup_ready(name), OPERATION_TIMEOUT)
        return self.backup_of(made)

    def backup_ready(self, name: str) -> Any:
        """The snapshot once READY (UPLOADING after CREATING); FAILED in one line with the next step."""
        snapshot = self.api.call(self.api.snapshots.get, project=self.project, snapshot=name)
        if snapshot.status == "FAILED":
            raise LabvmError(
                f"GCE: the backup {name} FAILED; delete it (gcloud compute snapshots delete {name} --project "
                f"{self.project}) and run data --backup again"
            )
        return snapshot if snapshot.status == "READY" else None

    def delete_backup(self, backup: Backup) -> None:
        """snapshots.delete, waited for until gone; the disk it was taken of is untouched."""
        self.api.change(
            f"delete backup {backup.id} ({backup.size_gb} GB disk)",
            self.api.snapshots.delete,
            "global",
            f"{backup.id} is deleted",
            snapshot=backup.id,
        )

    def restore(self, backup: Backup, zone: str) -> Volume:
        """disks.insert with sourceSnapshot in `zone` (any zone: the snapshot is global), of the snapshot's disk size
        (diskSizeGb: "If you specify this field along with a source, the value of sizeGb must not be less than the
        size of the source", https://cloud.google.com/compute/docs/reference/rest/v1/disks, sizeGb) and data.type,
        named after the data disk and the time (names.restored_disk: the disk it replaces keeps its name in that
        zone), labelled as the data disk with labvm-restored-from, waited for until READY.  A snapshot not READY is
        refused by GCE (CloudProvider restores only a ready one)."""
        data = self.profile.data
        assert data is not None  # CloudProvider._volumes: only with data:
        name, disk_type = self.names.restored_disk(backup_stamp()), self.check_type(data.type or DEFAULT_TYPE, zone)
        return self._insert(name, backup.size_gb, disk_type, zone, self.names.restored_labels(backup.id), backup.id)

    def restored_from(self, backup: Backup) -> Volume | None:
        """The oldest disk, in any zone, labelled as the data disk and made from this backup."""
        return self.oldest(self.names.restored_labels(backup.id))

    def retire(self, volume: Volume) -> None:
        """disks.setLabels: the disk's labels with labvm-role data-replaced, sent with the labelFingerprint just read
        (GCE replaces the whole set, and refuses a stale fingerprint: 412 conditionNotMet, "Labels fingerprint either
        invalid or resource labels have changed", https://cloud.google.com/compute/docs/reference/rest/v1/disks,
        labelFingerprint), waited for.  The disk stays, unattached: inv audit lists it with its delete command."""
        disk = self.api.call(self.api.disks.get, project=self.project, zone=volume.zone, disk=volume.id)
        labels = self.api.compute.ZoneSetLabelsRequest(
            labels={**disk.labels, "labvm-role": REPLACED}, label_fingerprint=disk.label_fingerprint
        )
        self.api.change(
            f"label data volume {volume.id} {REPLACED} (kept until you delete it)",
            self.api.disks.set_labels,
            "zone",
            f"{volume.id} is labelled {REPLACED}",
            zone=volume.zone,
            resource=volume.id,
            zone_set_labels_request_resource=labels,
        )

    def storage_check(self, need_gb: int) -> str:
        """The region's quota of data.type's storage (DISK_QUOTAS) as regions.get counts it, read-only."""
        data = self.profile.data
        assert data is not None  # CloudProvider._volumes: only with data:
        disk_type = data.type or DEFAULT_TYPE
        metric, region = DISK_QUOTAS.get(disk_type), self.api.region
        if metric is None:
            return f"not checked: labvm reads no regional quota of {disk_type} disks"
        quotas = self.api.call(self.api.regions.get, project=self.project, region=region).quotas
        quota = next((q for q in quotas if q.metric == metric), None)
        if quota is None:
            return f"not checked: region {region} names no {metric} quota"
        used, allowed = quota.usage, quota.limit
        if used + need_gb > allowed:
            raise LabvmError(
                f"{metric} {used:g} of {allowed:g} GB in use in {region} and the data volume needs {need_gb}; delete "
                f"disks or ask for more in IAM & Admin > Quotas"
            )
        return f"{metric} {used:g} of {allowed:g} GB in use in {region}, {need_gb} more fit"

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

    @staticmethod
    def backup_of(snapshot: Any) -> Backup:
        """Compute's snapshot in labvm's words: its size is the disk's when taken (diskSizeGb, what a restore
        makes), not the storage it bills (storageBytes, inventory.py's)."""
        created = parse_time(snapshot.creation_timestamp) or datetime.now(timezone.utc)
        return Backup(
            snapshot.name,
            snapshot.name,
            int(snapshot.disk_size_gb),
            BACKUP_STATES.get(snapshot.status, BACKUP_FAILED),
            created,
            tail(snapshot.source_disk),
        )
