"""Issue 29 on GCE: the data disk as Compute Engine answers it (disks.insert, instances.attachDisk and
detachDisk on tests/fake_gce.py through the real google-cloud-compute clients), and what the contract suite
(tests/contract/test_data_volume.py) does not show: the zone rule, a disk another instance holds, autoDelete
false through a terminate, the devices the guest sees, `inv audit`'s kind."""

import pytest
from google.api_core import exceptions
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import compute_v1

from gce_world import KEY, PROJECT, REGION, ZONE, Clients, instance_resource, provider
from labvm.errors import LabvmError
from labvm.providers.base import BACKUP_FAILED, BACKUP_READY, VOLUME_ATTACHED, VOLUME_AVAILABLE

OTHER_ZONE = f"{REGION}-a"  # another zone of the fake's region
DATA = {"size": 20}


@pytest.fixture
def gce(fake):
    return Clients(fake.endpoint)


@pytest.fixture
def disks(fake):
    return compute_v1.DisksClient(
        credentials=AnonymousCredentials(), transport="rest", client_options=ClientOptions(api_endpoint=fake.endpoint)
    )


def waited(gce, operation, zone=ZONE):
    done = gce.zone_ops.wait(project=PROJECT, zone=zone, operation=operation.name)
    return [e.message for e in done.error.errors]


def make_disk(gce, disks, name="data", zone=ZONE, disk_type="pd-balanced"):
    disk = compute_v1.Disk(
        name=name, size_gb=20, type_=f"projects/{PROJECT}/zones/{zone}/diskTypes/{disk_type}", labels={"a": "b"}
    )
    return waited(gce, disks.insert(project=PROJECT, zone=zone, disk_resource=disk), zone)


def make_instance(gce, name="lab-1"):
    assert (
        waited(gce, gce.instances.insert(project=PROJECT, zone=ZONE, instance_resource=instance_resource(name))) == []
    )


def attach(gce, instance, disk="data", zone=ZONE, device="data"):
    source = f"projects/{PROJECT}/zones/{zone}/disks/{disk}"
    attached = compute_v1.AttachedDisk(source=source, device_name=device, auto_delete=False)
    return waited(
        gce, gce.instances.attach_disk(project=PROJECT, zone=ZONE, instance=instance, attached_disk_resource=attached)
    )


# -- the fake, as Compute Engine answers --------------------------------------------------------------------


def test_a_disk_is_creating_until_its_operation_is_done_then_ready(gce, disks):
    disk = compute_v1.Disk(name="data", size_gb=20, type_=f"projects/{PROJECT}/zones/{ZONE}/diskTypes/pd-ssd")
    operation = disks.insert(project=PROJECT, zone=ZONE, disk_resource=disk)
    assert disks.get(project=PROJECT, zone=ZONE, disk="data").status == "CREATING"
    assert waited(gce, operation) == []
    made = disks.get(project=PROJECT, zone=ZONE, disk="data")
    assert (made.status, made.size_gb, made.type_.rsplit("/", 1)[-1], list(made.users)) == ("READY", 20, "pd-ssd", [])
    assert made.zone.endswith(f"/zones/{ZONE}")


def test_an_unknown_disk_type_is_refused(gce, disks):
    with pytest.raises(exceptions.BadRequest, match="resource.type"):
        make_disk(gce, disks, disk_type="pd-fast")


def test_a_disk_in_another_zone_of_the_region_is_listed_there(gce, disks):
    assert make_disk(gce, disks, "here") == [] and make_disk(gce, disks, "there", OTHER_ZONE) == []
    scoped = {scope: [d.name for d in listed.disks] for scope, listed in disks.aggregated_list(project=PROJECT)}
    assert scoped[f"zones/{ZONE}"] == ["here"] and scoped[f"zones/{OTHER_ZONE}"] == ["there"]
    assert [d.name for d in disks.list(project=PROJECT, zone=OTHER_ZONE)] == ["there"]


def test_attach_and_detach_as_gce_answers_them(gce, disks):
    make_instance(gce)
    make_disk(gce, disks)
    assert attach(gce, "lab-1") == []
    disk = disks.get(project=PROJECT, zone=ZONE, disk="data")
    assert [u.rsplit("/", 1)[-1] for u in disk.users] == ["lab-1"]
    data = next(d for d in gce.instance("lab-1").disks if not d.boot)
    assert (data.device_name, data.auto_delete, data.mode, data.source) == (
        "data",
        False,
        "READ_WRITE",
        disk.self_link,
    )
    with pytest.raises(exceptions.BadRequest, match="already being used by"):
        disks.delete(project=PROJECT, zone=ZONE, disk="data")

    detached = gce.instances.detach_disk(project=PROJECT, zone=ZONE, instance="lab-1", device_name="data")
    assert waited(gce, detached) == []
    assert list(disks.get(project=PROJECT, zone=ZONE, disk="data").users) == []
    assert [d.boot for d in gce.instance("lab-1").disks] == [True]
    with pytest.raises(exceptions.BadRequest, match="No attached disk found"):
        gce.instances.detach_disk(project=PROJECT, zone=ZONE, instance="lab-1", device_name="data")


def test_a_disk_of_another_zone_is_refused(gce, disks):
    make_instance(gce)
    make_disk(gce, disks, zone=OTHER_ZONE)
    with pytest.raises(exceptions.BadRequest, match="Disk must be in the same zone as the instance"):
        attach(gce, "lab-1", zone=OTHER_ZONE)
    assert list(disks.get(project=PROJECT, zone=OTHER_ZONE, disk="data").users) == []


def test_a_disk_in_use_by_another_instance_is_refused(gce, disks):
    make_instance(gce, "lab-1")
    make_instance(gce, "lab-2")
    make_disk(gce, disks)
    assert attach(gce, "lab-1") == []
    (refused,) = attach(gce, "lab-2")
    assert "is already being used by" in refused and refused.endswith("instances/lab-1'")
    assert [d.boot for d in gce.instance("lab-2").disks] == [True]


def test_deleting_an_instance_keeps_a_disk_whose_auto_delete_is_false(fake, gce, disks):
    make_instance(gce)
    make_disk(gce, disks)
    attach(gce, "lab-1")
    assert waited(gce, gce.instances.delete(project=PROJECT, zone=ZONE, instance="lab-1")) == []
    kept = disks.get(project=PROJECT, zone=ZONE, disk="data")
    assert (kept.status, list(kept.users)) == ("READY", [])
    assert "lab-1" not in fake.disks  # the boot disk (autoDelete true) went with it


# -- the provider ---------------------------------------------------------------------------------------------


@pytest.fixture
def lab(emulator, tmp_path):
    """hedy's gce profile with a data: disk, on the fake as the loopback emulator (conftest.py)."""
    return provider(tmp_path, data=DATA)


def test_the_disk_is_named_and_labelled_for_its_profile_and_owner(fake, lab):
    volume = lab.attach_data(lab.create(public_key=KEY))
    assert volume.id == volume.name == "labvm-gce-hedy-data"
    disk = fake.disks[volume.id]
    assert disk["labels"] == {"labvm-profile": "gce", "labvm-owner": "hedy", "labvm-role": "data"}
    assert (disk["sizeGb"], disk["type"].rsplit("/", 1)[-1]) == ("20", "pd-balanced")


def test_the_guest_finds_it_by_its_device_name(fake, lab):
    machine = lab.create(public_key=KEY)
    volume = lab.attach_data(machine)
    assert volume.devices == (
        "/dev/disk/by-id/google-labvm-gce-hedy-data",
        "/dev/disk/by-id/scsi-0Google_PersistentDisk_labvm-gce-hedy-data",
    )
    data = next(d for d in fake.instances[machine.id]["disks"] if not d["boot"])
    assert (data["deviceName"], data["autoDelete"]) == ("labvm-gce-hedy-data", False)
    assert lab.detach_data(volume).devices == ()


def test_data_type_names_the_disk_type(fake, emulator, tmp_path):
    lab = provider(tmp_path, data={"size": 20, "type": "pd-ssd"})
    volume = lab.attach_data(lab.create(public_key=KEY))
    assert volume.type == "pd-ssd" and fake.disks[volume.id]["type"].endswith("/diskTypes/pd-ssd")


def test_the_disk_stays_through_terminate(fake, lab):
    machine = lab.create(public_key=KEY)
    volume = lab.attach_data(machine)
    lab.terminate(machine)
    kept = lab.data_volume()
    assert (kept.id, kept.state, kept.attached_to) == (volume.id, VOLUME_AVAILABLE, "")
    assert machine.id not in fake.disks  # the boot disk went with the VM


def test_a_disk_in_another_zone_is_found_and_refused_in_one_line(fake, gce, disks, lab):
    disk = compute_v1.Disk(
        name="labvm-gce-hedy-data",
        size_gb=20,
        type_=f"projects/{PROJECT}/zones/{OTHER_ZONE}/diskTypes/pd-balanced",
        labels={"labvm-profile": "gce", "labvm-owner": "hedy", "labvm-role": "data"},
    )
    waited(gce, disks.insert(project=PROJECT, zone=OTHER_ZONE, disk_resource=disk), OTHER_ZONE)
    found = lab.data_volume()
    assert (found.zone, found.state) == (OTHER_ZONE, VOLUME_AVAILABLE)
    machine = lab.create(public_key=KEY)
    with pytest.raises(LabvmError, match=f"is in {OTHER_ZONE}, the VM .* in {ZONE}"):
        lab.attach_data(machine)
    assert not fake.disks.get("labvm-gce-hedy-data")  # nothing made in the VM's zone instead
    lab.delete_data(found)  # waited in the disk's own zone
    assert lab.data_volume() is None


def test_a_disk_in_use_cannot_be_deleted(lab):
    volume = lab.attach_data(lab.create(public_key=KEY))
    assert volume.state == VOLUME_ATTACHED
    with pytest.raises(LabvmError, match="already being used by"):
        lab.delete_data(volume)


def test_audit_lists_the_disk_as_data(fake, lab):
    machine = lab.create(public_key=KEY)
    volume = lab.attach_data(machine)
    (data,) = [r for r in lab.parts.inventory.resources() if r.kind == "data"]
    assert (data.id, data.profile, data.owner, data.state, data.size_gb, data.type, data.region) == (
        volume.id,
        "gce",
        "hedy",
        "attached",
        20,
        "pd-balanced",
        REGION,
    )
    assert data.delete == f"gcloud compute disks delete {volume.id} --zone {ZONE} --project {PROJECT}"
    assert {r.kind for r in lab.parts.inventory.resources()} == {"instance", "data"}  # the boot disk is no resource


def test_an_unknown_data_type_is_refused_in_one_line_before_anything_is_made(fake, emulator, tmp_path):
    lab = provider(tmp_path, data={"size": 20, "type": "pd-sdd"})
    machine = lab.create(public_key=KEY)
    with pytest.raises(LabvmError) as refused:
        lab.attach_data(machine)
    assert str(refused.value).endswith(
        "profiles.gce.data.type: no disk type 'pd-sdd'; closest: pd-ssd, pd-standard (gcloud compute disk-types list --zones "
        f"{ZONE})"
    )
    assert [name for name in fake.disks if name != machine.id] == []


# -- backups and growth (issue 29): snapshots.insert, disks.resize -------------------------------------------


def test_a_backup_is_a_labelled_snapshot_of_the_attached_disk_waited_for_until_ready(fake, lab, capsys):
    machine = lab.create(public_key=KEY)
    volume = lab.attach_data(machine)
    fake.write(volume.id, 3 * 1024**3)
    backup = lab.back_up_data(volume)  # attached to a running VM: GCE snapshots it as it is
    assert (backup.state, backup.size_gb, backup.volume_id) == (BACKUP_READY, 20, volume.id)
    assert backup.id == backup.name and backup.name.startswith("labvm-gce-hedy-data-")
    snapshot = fake.snapshots[backup.id]
    assert snapshot["labels"] == {"labvm-profile": "gce", "labvm-owner": "hedy", "labvm-role": "data-backup"}
    assert snapshot["sourceDisk"] == fake.disks[volume.id]["selfLink"] and snapshot["status"] == "READY"
    assert fake.instances[machine.id]["status"] == "RUNNING"
    out = capsys.readouterr().out
    assert f"gce: waiting until {backup.name} is created ..." in out and f"gce: {backup.name} is READY" in out
    assert ("POST", "/compute/v1/projects/proj/global/snapshots") in fake.requests
    assert [b.id for b in lab.data_backups()] == [backup.id]


def test_a_failed_backup_is_one_line_naming_it_and_the_next_step(fake, lab):
    volume = lab.attach_data(lab.create(public_key=KEY))
    fake.snapshot_fails = True
    with pytest.raises(LabvmError) as failed:
        lab.back_up_data(volume)
    (name,) = fake.snapshots
    assert str(failed.value) == (
        f"GCE: the backup {name} FAILED; delete it (gcloud compute snapshots delete {name} --project {PROJECT}) "
        "and run data --backup again"
    )
    (listed,) = lab.data_backups()  # still there, as GCE keeps a FAILED snapshot until deleted
    assert (listed.id, listed.state) == (name, BACKUP_FAILED)
    lab.delete_data_backup(listed)
    assert fake.snapshots == {}


def test_a_backup_name_in_use_is_refused_in_one_line(fake, lab, monkeypatch):
    volume = lab.attach_data(lab.create(public_key=KEY))
    monkeypatch.setattr("labvm.providers.gce.volumes.backup_stamp", lambda: "20261208-014538-abcd")
    lab.back_up_data(volume)
    with pytest.raises(LabvmError) as refused:
        lab.back_up_data(volume)
    assert "already exists" in str(refused.value) and "\n" not in str(refused.value)
    assert len(fake.snapshots) == 1


def test_the_disk_grows_online_attached_to_the_running_vm(fake, lab):
    machine = lab.create(public_key=KEY)
    volume = lab.attach_data(machine)
    grown = lab.grow_data(volume, 50)
    assert (grown.size_gb, grown.state, grown.attached_to, grown.devices) == (
        50,
        VOLUME_ATTACHED,
        machine.id,
        volume.devices,
    )
    assert fake.disks[volume.id]["sizeGb"] == "50" and fake.instances[machine.id]["status"] == "RUNNING"
    (data,) = [d for d in fake.instances[machine.id]["disks"] if not d["boot"]]
    assert data["diskSizeGb"] == "50"
    assert not [path for method, path in fake.requests if path.endswith(("/stop", "/detachDisk"))]


def test_a_shrink_is_refused_by_gce_itself_in_one_line(fake, lab):
    volume = lab.attach_data(lab.create(public_key=KEY))
    with pytest.raises(LabvmError) as refused:
        lab.parts.volumes.grow(volume, 10)  # past CloudProvider's own check: what GCE answers
    assert "Requested disk size cannot be smaller than the current size" in str(refused.value)
    assert "\n" not in str(refused.value) and fake.disks[volume.id]["sizeGb"] == "20"


def test_audit_lists_a_backup_by_the_storage_it_bills(fake, lab):
    volume = lab.attach_data(lab.create(public_key=KEY))
    fake.write(volume.id, 1024**3 + 1)
    first = lab.back_up_data(volume)
    second = lab.back_up_data(volume)  # nothing written since: incremental, it holds nothing new
    rows = {r.id: r for r in lab.parts.inventory.resources() if r.kind == "backup"}
    assert {i: r.size_gb for i, r in rows.items()} == {first.id: 2, second.id: 0}  # storageBytes rounded up
    row = rows[first.id]
    assert (row.profile, row.owner, row.state, row.since) == ("gce", "hedy", BACKUP_READY, first.created)
    assert row.delete == f"gcloud compute snapshots delete {first.id} --project {PROJECT}"
    assert {r.kind for r in lab.parts.inventory.resources()} == {"instance", "data", "backup"}


def test_backups_and_growth_are_in_the_permissions_asked_for():
    from labvm.providers.gce.permissions import permissions

    wanted = {
        "compute.disks.resize",
        "compute.snapshots.create",
        "compute.disks.createSnapshot",
        "compute.snapshots.setLabels",
        "compute.snapshots.list",
        "compute.snapshots.get",
        "compute.snapshots.delete",
        "compute.globalOperations.get",
    }
    assert wanted <= set(permissions()), wanted - set(permissions())


# -- restore (issue 29): disks.insert with sourceSnapshot, the replaced disk relabelled by disks.setLabels -------


def snapshot_of(gce, disks, fake, disk="data", zone=ZONE, name="snap-1"):
    snapshots = compute_v1.SnapshotsClient(
        credentials=AnonymousCredentials(), transport="rest", client_options=ClientOptions(api_endpoint=fake.endpoint)
    )
    snapshot = compute_v1.Snapshot(name=name, source_disk=f"projects/{PROJECT}/zones/{zone}/disks/{disk}")
    operation = snapshots.insert(project=PROJECT, snapshot_resource=snapshot)
    return snapshots, operation


def from_snapshot(disks, name, zone, size, snapshot="snap-1"):
    disk = compute_v1.Disk(name=name, size_gb=size, source_snapshot=f"projects/{PROJECT}/global/snapshots/{snapshot}")
    return disks.insert(project=PROJECT, zone=zone, disk_resource=disk)


def test_a_disk_is_made_from_a_ready_snapshot_in_any_zone_of_at_least_its_size(fake, gce, disks):
    make_disk(gce, disks)
    snapshots, operation = snapshot_of(gce, disks, fake)
    with pytest.raises(exceptions.BadRequest, match="snap-1' is not ready"):  # CREATING until its operation is done
        from_snapshot(disks, "copy", OTHER_ZONE, 20)
    gce.wait_global(operation)
    with pytest.raises(exceptions.BadRequest, match=r"cannot be smaller than the snapshot size \(20 GB\)"):
        from_snapshot(disks, "copy", OTHER_ZONE, 10)
    with pytest.raises(exceptions.NotFound, match="global/snapshots/snap-2"):
        from_snapshot(disks, "copy", OTHER_ZONE, 20, snapshot="snap-2")
    assert waited(gce, from_snapshot(disks, "copy", OTHER_ZONE, 30), OTHER_ZONE) == []
    copy = disks.get(project=PROJECT, zone=OTHER_ZONE, disk="copy")
    assert (copy.status, copy.size_gb, copy.source_snapshot) == ("READY", 30, fake.snapshots["snap-1"]["selfLink"])


def test_set_labels_needs_the_current_fingerprint(fake, gce, disks):
    make_disk(gce, disks)
    first = disks.get(project=PROJECT, zone=ZONE, disk="data").label_fingerprint

    def relabel(labels, fingerprint):
        request = compute_v1.ZoneSetLabelsRequest(labels=labels, label_fingerprint=fingerprint)
        return disks.set_labels(project=PROJECT, zone=ZONE, resource="data", zone_set_labels_request_resource=request)

    with pytest.raises(exceptions.PreconditionFailed, match="Labels fingerprint either invalid"):
        relabel({"a": "c"}, "stale")
    assert waited(gce, relabel({"a": "c"}, first)) == []
    now = disks.get(project=PROJECT, zone=ZONE, disk="data")
    assert dict(now.labels) == {"a": "c"} and now.label_fingerprint != first  # the whole set replaced
    with pytest.raises(exceptions.PreconditionFailed) as stale:
        relabel({"a": "d"}, first)  # read before the change: stale now
    assert stale.value.code == 412 and "conditionNotMet" in str(stale.value.errors)


def test_a_restore_in_another_zone_is_a_new_disk_from_the_snapshot_and_the_old_one_is_kept_retired(fake, lab):
    machine = lab.create(public_key=KEY)
    old = lab.attach_data(machine)
    lab.grow_data(old, 30)
    backup = lab.back_up_data(old)
    lab.stop(machine)
    restored = lab.restore_data(backup, OTHER_ZONE)  # a global snapshot restores in any zone of the region
    disk = fake.zone_disks[OTHER_ZONE][restored.id]
    assert restored.name == restored.id and restored.id.startswith("labvm-gce-hedy-data-") and restored.id != old.id
    assert (restored.size_gb, restored.zone, restored.type, restored.state) == (
        30,
        OTHER_ZONE,
        "pd-balanced",
        "available",
    )
    assert disk["sourceSnapshot"] == fake.snapshots[backup.id]["selfLink"]
    assert disk["labels"] == {
        "labvm-profile": "gce",
        "labvm-owner": "hedy",
        "labvm-role": "data",
        "labvm-restored-from": backup.id,
    }
    kept = fake.disks[old.id]
    assert kept["labels"]["labvm-role"] == "data-replaced" and kept["users"] == []  # detached, relabelled, kept
    assert lab.data_volume().id == restored.id
    assert lab.restore_data(backup, OTHER_ZONE).id == restored.id and len(fake.zone_disks[OTHER_ZONE]) == 1


def test_the_restored_disk_is_attached_under_its_own_name_the_guest_sees(fake, lab):
    machine = lab.create(public_key=KEY)
    old = lab.attach_data(machine)
    backup = lab.back_up_data(old)
    lab.stop(machine)
    restored = lab.restore_data(backup)
    attached = lab.attach_data(lab.start(machine))
    assert attached.id == restored.id
    assert attached.devices == (
        f"/dev/disk/by-id/google-{restored.name}",
        f"/dev/disk/by-id/scsi-0Google_PersistentDisk_{restored.name}",
    )
    (data,) = [d for d in fake.instances[machine.id]["disks"] if not d["boot"]]
    assert data["deviceName"] == restored.name


def test_retire_reads_the_fingerprint_a_colleague_changed(fake, gce, disks, lab):
    machine = lab.create(public_key=KEY)
    old = lab.attach_data(machine)
    backup = lab.back_up_data(old)
    lab.stop(machine)
    labelled = disks.get(project=PROJECT, zone=ZONE, disk=old.id)
    request = compute_v1.ZoneSetLabelsRequest(
        labels={**labelled.labels, "cost-centre": "lab-7"}, label_fingerprint=labelled.label_fingerprint
    )
    waited(gce, disks.set_labels(project=PROJECT, zone=ZONE, resource=old.id, zone_set_labels_request_resource=request))
    lab.restore_data(backup)
    assert fake.disks[old.id]["labels"] == {
        "labvm-profile": "gce",
        "labvm-owner": "hedy",
        "labvm-role": "data-replaced",
        "cost-centre": "lab-7",  # another label kept: setLabels replaces the whole set
    }


def test_audit_lists_the_replaced_disk_as_a_loose_volume_with_its_delete_command(fake, lab):
    machine = lab.create(public_key=KEY)
    old = lab.attach_data(machine)
    backup = lab.back_up_data(old)
    lab.stop(machine)
    restored = lab.restore_data(backup, OTHER_ZONE)
    rows = {r.id: r for r in lab.parts.inventory.resources() if r.kind in ("data", "volume")}
    assert (rows[old.id].kind, rows[old.id].state, rows[old.id].size_gb) == ("volume", "unattached", 20)
    assert rows[old.id].delete == f"gcloud compute disks delete {old.id} --zone {ZONE} --project {PROJECT}"
    assert (rows[restored.id].kind, rows[restored.id].region) == ("data", REGION)
    assert (
        rows[restored.id].delete == f"gcloud compute disks delete {restored.id} --zone {OTHER_ZONE} --project {PROJECT}"
    )


def test_plan_restores_and_retires_nothing(fake, lab, capsys):
    machine = lab.create(public_key=KEY)
    old = lab.attach_data(machine)
    backup = lab.back_up_data(old)
    lab.stop(machine)
    before = len(fake.requests)
    lab.start_planning()
    planned = lab.restore_data(backup, OTHER_ZONE)
    assert planned.zone == OTHER_ZONE and planned.size_gb == 20
    sent = [(method, path) for method, path in fake.requests[before:] if method != "GET"]
    assert sent == [] and fake.zone_disks[OTHER_ZONE] == {}
    assert fake.disks[old.id]["labels"]["labvm-role"] == "data" and fake.disks[old.id]["users"]
    out = capsys.readouterr().out
    assert f"from backup {backup.id} in {OTHER_ZONE}" in out and f"label data volume {old.id} data-replaced" in out


def test_check_counts_the_disk_types_regional_quota(fake, lab):
    (line,) = [check for check in lab.preflight(KEY) if check.name == "data"]
    assert line.ok and line.detail == f"none yet; SSD_TOTAL_GB 0 of 500 GB in use in {REGION}, 20 more fit"
    fake.quota_limits["SSD_TOTAL_GB"] = 10.0  # pd-balanced draws from the SSD quota
    (line,) = [check for check in lab.preflight(KEY) if check.name == "data"]
    assert not line.ok and line.detail == (
        f"SSD_TOTAL_GB 0 of 10 GB in use in {REGION} and the data volume needs 20; delete disks or ask for more in "
        "IAM & Admin > Quotas"
    )


def test_restore_and_retire_are_in_the_permissions_asked_for():
    from labvm.providers.gce.permissions import permissions

    wanted = {"compute.disks.create", "compute.snapshots.useReadOnly", "compute.disks.setLabels", "compute.regions.get"}
    assert wanted <= set(permissions()), wanted - set(permissions())
