"""Issue 29 on GCE: the data disk as Compute Engine answers it (disks.insert, instances.attachDisk and
detachDisk on tests/fake_gce.py through the real google-cloud-compute clients), and what the contract suite
(tests/contract/test_data_volume.py) does not show: the zone rule, a disk another instance holds, autoDelete
false through a terminate, the devices the guest sees, `inv audit`'s kind."""

import pytest
from google.api_core import exceptions
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import compute_v1

from fake_gce import FakeGce
from gce_world import KEY, PROJECT, REGION, ZONE, Clients, instance_resource, provider
from labvm.errors import LabvmError
from labvm.providers.base import VOLUME_ATTACHED, VOLUME_AVAILABLE

OTHER_ZONE = f"{REGION}-a"  # another zone of the fake's region
DATA = {"size": 20}


@pytest.fixture
def fake():
    with FakeGce() as server:
        yield server


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
def lab(fake, tmp_path, monkeypatch):
    monkeypatch.setenv("LABVM_OWNER", "hedy")
    monkeypatch.setenv("LABVM_GCE_ENDPOINT", fake.endpoint)
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


def test_data_type_names_the_disk_type(fake, tmp_path, monkeypatch):
    monkeypatch.setenv("LABVM_GCE_ENDPOINT", fake.endpoint)
    lab = provider(tmp_path, "hedy", monkeypatch, data={"size": 20, "type": "pd-ssd"})
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


def test_an_unknown_data_type_is_refused_in_one_line_before_anything_is_made(fake, tmp_path, monkeypatch):
    monkeypatch.setenv("LABVM_GCE_ENDPOINT", fake.endpoint)
    lab = provider(tmp_path, "hedy", monkeypatch, data={"size": 20, "type": "pd-sdd"})
    machine = lab.create(public_key=KEY)
    with pytest.raises(LabvmError) as refused:
        lab.attach_data(machine)
    assert str(refused.value).endswith(
        "profiles.gce.data.type: no disk type 'pd-sdd'; closest: pd-ssd, pd-standard (gcloud compute disk-types list --zones "
        f"{ZONE})"
    )
    assert [name for name in fake.disks if name != machine.id] == []
