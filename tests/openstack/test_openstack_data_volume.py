"""The OpenStack data volume (hosts.yml data:) on the fake, beyond the contract suite
(tests/contract/test_data_volume.py): the waits on Cinder's own states, a volume in error and a quota refusal
each in one line, what the guest sees, the type asked for, and `inv audit`'s kind "data"."""

import pytest

from labvm.errors import LabvmError
from labvm.providers.base import VOLUME_ATTACHED, VOLUME_AVAILABLE, VOLUME_BUSY, VOLUME_CREATING
from labvm.providers.openstack.volumes import devices, volume_state
from openstack_world import KEY, one_line, provider

pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # openstacksdk's own notices
DATA = {"size": 20}


@pytest.fixture
def naps(monkeypatch):
    """The waits' pauses, recorded instead of slept: each one is a look that saw the state in between."""
    slept: list[float] = []
    monkeypatch.setattr("labvm.providers.cloud.time.sleep", slept.append)
    return slept


def test_each_wait_lasts_until_cinder_says_so(fake, place, naps, capsys):
    """Cinder's states in between (creating, reserved, detaching) are waited through, a look at a time."""
    fake.volume_gets = 2  # two looks still see the state in between
    lab = provider(place, data=DATA)
    machine = lab.create(public_key=KEY)
    volume = lab.attach_data(machine)
    assert (volume.state, volume.attached_to) == (VOLUME_ATTACHED, machine.id)
    assert fake.volumes[volume.id]["status"] == "in-use"
    detached = lab.detach_data(volume)
    assert (detached.state, detached.attached_to, detached.devices) == (VOLUME_AVAILABLE, "", ())
    lab.delete_data(detached)
    assert volume.id not in fake.volumes and lab.data_volume() is None
    out = capsys.readouterr().out
    for what in ("is available", f"is attached to {machine.id}", "is detached", "is deleted"):
        assert f"openstack: waiting until data volume {volume.id} {what} ..." in out
    assert len(naps) == 6  # two looks in between for each of create, attach and detach


def test_a_volume_cinder_could_not_make_is_one_line_with_the_next_step(fake, place, naps):
    fake.fail_next_volume = True
    lab = provider(place, data=DATA)
    machine = lab.create(public_key=KEY)
    with pytest.raises(LabvmError) as failed:
        lab.attach_data(machine)
    (volume,) = [v for v in fake.volumes.values() if v["metadata"].get("labvm:role") == "data"]
    message = one_line(failed)
    assert f"data volume {volume['id']}" in message and "went error" in message
    assert f"volume delete {volume['id']}" in message and "inv up --host cades" in message


def test_a_volume_beyond_the_quota_is_refused_in_one_line_and_nothing_is_made(fake, place):
    lab = provider(place, data={"size": 2000})  # the fake's quota: 1000 GB
    machine = lab.create(public_key=KEY)
    before = dict(fake.volumes)
    with pytest.raises(LabvmError) as refused:
        lab.attach_data(machine)
    message = one_line(refused)
    assert message.startswith("OpenStack quota: Requested volume or snapshot exceeds allowed gigabytes quota")
    assert fake.volumes == before


def test_the_guest_finds_it_by_the_virtio_serial_never_by_nova_s_device_name(fake, place):
    """Nova answers /dev/vdb, which on a flavor with an ephemeral disk is that disk: only the serial's names."""
    lab = provider(place, data=DATA)
    volume = lab.attach_data(lab.create(public_key=KEY))
    serial = volume.id[:20]
    assert volume.devices == (
        f"/dev/disk/by-id/virtio-{serial}",
        f"/dev/disk/by-id/scsi-0QEMU_QEMU_HARDDISK_{serial}",
    )
    assert devices("0123456789abcdef0123456789") == (
        "/dev/disk/by-id/virtio-0123456789abcdef0123",
        "/dev/disk/by-id/scsi-0QEMU_QEMU_HARDDISK_0123456789abcdef0123",
    )


def test_the_volume_has_its_name_labels_type_and_the_server_s_zone(fake, place):
    fake.volume_types.append("ssd")
    lab = provider(place, data={"size": 20, "type": "ssd"})
    machine = lab.create(public_key=KEY)
    assert machine.zone == "nova"  # Nova's OS-EXT-AZ:availability_zone
    volume = lab.attach_data(machine)
    made = fake.volumes[volume.id]
    assert (made["name"], made["volume_type"], made["availability_zone"]) == ("labvm-cades-hedy-data", "ssd", "nova")
    assert made["metadata"] == {"labvm:profile": "cades", "labvm:owner": "hedy", "labvm:role": "data"}
    assert (volume.name, volume.type, volume.size_gb, volume.zone) == ("labvm-cades-hedy-data", "ssd", 20, "nova")


def test_an_unknown_volume_type_is_one_line(fake, place):
    lab = provider(place, data={"size": 20, "type": "gold"})
    with pytest.raises(LabvmError) as refused:
        lab.attach_data(lab.create(public_key=KEY))
    assert "Volume type with name gold could not be found" in one_line(refused)
    assert not [v for v in fake.volumes.values() if v["metadata"].get("labvm:role") == "data"]


def test_the_boot_volume_is_not_the_data_volume(fake, place):
    """The boot volume carries the profile's and owner's metadata too (head.boot labels it): not data."""
    lab = provider(place, data=DATA)
    lab.create(public_key=KEY)
    assert len(fake.volumes) == 1 and lab.data_volume() is None


def test_audit_lists_the_data_volume_as_data_attached_or_not(fake, place):
    lab = provider(place, data=DATA)
    volume = lab.attach_data(lab.create(public_key=KEY))
    (data,) = [r for r in lab.inventory() if r.kind == "data"]
    assert (data.id, data.profile, data.owner, data.state, data.size_gb) == (volume.id, "cades", "hedy", "attached", 20)
    assert data.delete.endswith(f"volume delete {volume.id}") and "server remove volume" in data.delete
    lab.terminate(lab.find())
    (data,) = [r for r in lab.inventory() if r.kind == "data"]
    assert data.state == "unattached" and data.delete == f"openstack --os-cloud cades volume delete {volume.id}"
    assert not [r for r in lab.inventory() if r.kind == "volume" and r.id == volume.id]


def test_cinder_s_states_in_labvm_s_words():
    """https://docs.openstack.org/api-ref/block-storage/v3/#volumes-volumes (Volume statuses)."""
    assert [volume_state(s) for s in ("creating", "downloading", "available", "in-use")] == [
        VOLUME_CREATING,
        VOLUME_CREATING,
        VOLUME_AVAILABLE,
        VOLUME_ATTACHED,
    ]
    assert {volume_state(s) for s in ("reserved", "attaching", "detaching", "deleting", "error", "extending")} == {
        VOLUME_BUSY
    }


def test_terminate_and_image_pruning_leave_the_data_volume_alone(fake, place, capsys):
    """Nova snapshots every attached volume of a boot-from-volume server with its image
    (nova/compute/api.py snapshot_volume_backed): deleting that image later must not delete the data volume,
    and terminate does not call it a boot volume left behind."""
    cades = provider(place, data={"size": 20})
    machine = cades.create(public_key=KEY)
    volume = cades.attach_data(machine)
    image = cades.snapshot(machine, "labvm")
    cades.terminate(machine, keep_ip=False)
    assert "boot volume " + volume.id not in capsys.readouterr().out
    cades.delete_image(image)
    assert cades.data_volume().id == volume.id
