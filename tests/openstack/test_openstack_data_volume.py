"""The OpenStack data volume (hosts.yml data:) on the fake, beyond the contract suite
(tests/contract/test_data_volume.py): the waits on Cinder's own states, a volume in error and a quota refusal
each in one line, what the guest sees, the type asked for, `inv audit`'s kinds "data" and "backup", and its
backups (Cinder snapshots) and growth (os-extend) with Cinder's rules."""

import json

import pytest

from labvm.errors import LabvmError
from labvm.providers.base import (
    BACKUP_CREATING,
    BACKUP_FAILED,
    BACKUP_READY,
    VOLUME_ATTACHED,
    VOLUME_AVAILABLE,
    VOLUME_BUSY,
    VOLUME_CREATING,
)
from labvm.providers.openstack import permissions
from labvm.providers.openstack.volumes import backup_state, devices, volume_state
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


# -- backups (Cinder snapshots) and growth (os-extend) ------------------------------------------------------------


def snapshot_requests(fake) -> list[dict]:
    """The bodies of the snapshots labvm asked Cinder for."""
    sent = zip(fake.requests, fake.bodies)
    return [json.loads(body)["snapshot"] for (method, path), body in sent if method == "POST" and "/snapshots" in path]


def test_a_backup_walks_cinder_s_states_with_the_profile_s_metadata_and_force(fake, place, naps, capsys):
    """openstacksdk sends snapshots at microversion 3.65, where an in-use volume needs force=true
    (cinder/api/v3/snapshots.py create); the snapshot is creating, then available."""
    lab = provider(place, data=DATA)
    volume = lab.attach_data(lab.create(public_key=KEY))
    fake.volume_gets = 2
    backup = lab.back_up_data(volume)
    (sent,) = snapshot_requests(fake)
    assert (sent["volume_id"], sent["force"]) == (volume.id, True)
    made = fake.snapshots[backup.id]
    assert made["metadata"] == {"labvm:profile": "cades", "labvm:owner": "hedy", "labvm:role": "data-backup"}
    assert made["name"] == backup.name and backup.name.startswith("labvm-cades-hedy-data-")
    assert (backup.state, backup.size_gb, backup.volume_id) == (BACKUP_READY, 20, volume.id)
    assert len(naps) == 2  # two looks saw it creating
    out = capsys.readouterr().out
    assert f"openstack: waiting until backup {backup.id} is available ..." in out
    assert f"openstack: backup {backup.id} is 0% done" in out  # Cinder's progress, said once
    assert f"openstack: backed up data volume {volume.id} as snapshot {backup.id} (20 GB)" in out


def test_a_backup_cinder_failed_is_one_line_with_the_next_step(fake, place, naps):
    lab = provider(place, data=DATA)
    volume = lab.attach_data(lab.create(public_key=KEY))
    fake.fail_next_volume_snapshot = True
    with pytest.raises(LabvmError) as failed:
        lab.back_up_data(volume)
    (snapshot,) = fake.snapshots
    message = one_line(failed)
    assert f"backup {snapshot} went error in Cinder" in message and "volume message list" in message
    assert f"volume snapshot delete {snapshot}" in message and "inv data --host cades --backup" in message
    assert [b.state for b in lab.data_backups()] == [BACKUP_FAILED]


@pytest.mark.parametrize(
    "quota, words",
    [
        (dict(snapshots=0), "Maximum number of snapshots allowed (0) exceeded"),
        (dict(gigabytes=70), "Requested volume or snapshot exceeds allowed gigabytes quota. Requested 20G"),
    ],
)
def test_a_backup_beyond_cinder_s_quota_is_one_line_and_nothing_is_made(fake, place, quota, words):
    lab = provider(place, data=DATA)
    volume = lab.attach_data(lab.create(public_key=KEY))  # 40 GB boot volume, 20 GB data volume
    fake.quota.update(quota)
    with pytest.raises(LabvmError) as refused:
        lab.back_up_data(volume)
    assert words in one_line(refused) and one_line(refused).startswith("OpenStack quota: ")  # with its next step
    assert fake.snapshots == {}


def test_growing_waits_until_cinder_shows_the_new_size(fake, place, naps, capsys):
    lab = provider(place, data=DATA)
    volume = lab.attach_data(lab.create(public_key=KEY))
    fake.volume_gets = 2
    grown = lab.grow_data(volume, 30)
    assert (grown.size_gb, grown.state, grown.attached_to) == (30, VOLUME_ATTACHED, volume.attached_to)
    assert fake.volumes[volume.id]["size"] == 30 and len(naps) == 2  # two looks saw it extending
    out = capsys.readouterr().out
    assert f"openstack: waiting until data volume {volume.id} has 30 GB ..." in out
    assert f"openstack: grew data volume {volume.id} to 30 GB" in out


def test_cinder_refuses_a_shrink(fake, place):
    """CloudProvider refuses it first; Cinder would too (cinder/volume/api.py _extend: InvalidInput, 400)."""
    lab = provider(place, data=DATA)
    volume = lab.attach_data(lab.create(public_key=KEY))
    with pytest.raises(LabvmError) as refused:
        lab._volumes().grow(volume, 10)
    assert "New size for extend must be greater than current size. (current: 20, extended: 10)" in one_line(refused)
    assert fake.volumes[volume.id]["size"] == 20


def test_before_microversion_3_42_an_attached_volume_is_refused_before_anything_changes(fake, place):
    fake.max_volume_microversion = "3.41"
    lab = provider(place, data=DATA)
    machine = lab.create(public_key=KEY)
    volume = lab.attach_data(machine)
    sent = len(fake.requests)
    with pytest.raises(LabvmError) as refused:
        lab.grow_data(volume, 30)
    message = one_line(refused)
    assert "grows an attached volume only from API microversion 3.42" in message and "nothing changed" in message
    assert "`inv terminate --host cades` keeps the data volume" in message and "--grow 30" in message
    assert [r for r in fake.requests[sent:] if r[0] != "GET"] == []
    assert fake.volumes[volume.id]["size"] == 20
    lab.terminate(machine, keep_ip=False)
    assert lab.grow_data(lab.data_volume(), 30).size_gb == 30  # detached, Cinder grows it at any microversion


def test_a_backend_that_cannot_grow_an_attached_volume_is_one_line_and_nothing_changed(fake, place):
    fake.online_extend_support = False
    lab = provider(place, data=DATA)
    volume = lab.attach_data(lab.create(public_key=KEY))
    with pytest.raises(LabvmError) as refused:
        lab.grow_data(volume, 30)
    message = one_line(refused)
    assert f"Cinder did not grow data volume {volume.id}" in message and "nothing changed" in message
    assert "inv data --host cades --grow 30" in message
    assert (fake.volumes[volume.id]["status"], fake.volumes[volume.id]["size"]) == ("in-use", 20)


def test_a_grow_the_driver_failed_is_one_line_and_keeps_the_data(fake, place):
    fake.fail_next_extend = True
    lab = provider(place, data=DATA)
    volume = lab.attach_data(lab.create(public_key=KEY))
    with pytest.raises(LabvmError) as failed:
        lab.grow_data(volume, 30)
    message = one_line(failed)
    assert f"growing data volume {volume.id} left it error_extending" in message and "its data stays" in message


def test_audit_lists_backups_as_backups_and_the_volume_s_delete_deletes_them_first(fake, place):
    lab = provider(place, data=DATA)
    volume = lab.attach_data(lab.create(public_key=KEY))
    backup = lab.back_up_data(volume)
    found = lab.inventory()
    (row,) = [r for r in found if r.id == backup.id]
    assert (row.kind, row.profile, row.owner, row.size_gb) == ("backup", "cades", "hedy", 20)
    assert (
        row.since == backup.created and row.delete == f"openstack --os-cloud cades volume snapshot delete {backup.id}"
    )
    (data,) = [r for r in found if r.kind == "data"]
    assert f"volume snapshot delete {backup.id} && " in data.delete and data.delete.endswith(f"delete {volume.id}")


def test_deleting_a_volume_with_backups_is_refused_in_one_line_naming_them(fake, place):
    """Cinder deletes no volume with snapshots (cinder/volume/api.py API.delete): a backup lives with its volume."""
    lab = provider(place, data=DATA)
    machine = lab.create(public_key=KEY)
    backup = lab.back_up_data(lab.attach_data(machine))
    volume = lab.detach_data(lab.data_volume())
    sent = len(fake.requests)
    with pytest.raises(LabvmError) as refused:
        lab.delete_data(volume)
    message = one_line(refused)
    assert f"data volume {volume.id} has 1 snapshot(s) ({backup.id})" in message and "delete them first" in message
    assert [r for r in fake.requests[sent:] if r[0] != "GET"] == [] and volume.id in fake.volumes
    lab.delete_data_backup(backup)
    lab.delete_data(volume)
    assert volume.id not in fake.volumes


def test_cinder_s_snapshot_states_in_labvm_s_words():
    """cinder/objects/fields.py SnapshotStatus: a volume is made only from an available one."""
    assert [backup_state(s) for s in ("available", "error", "error_deleting")] == [
        BACKUP_READY,
        BACKUP_FAILED,
        BACKUP_FAILED,
    ]
    assert {backup_state(s) for s in ("creating", "deleting", "updating", "backing-up", "restoring")} == {
        BACKUP_CREATING
    }


def test_the_policy_rules_of_backups_and_growth_are_asked_for():
    """cinder/policies/snapshots.py, volume_actions.py: an in-use volume's extend is its own rule."""
    rules = set(permissions.permissions())
    assert {"volume:create_snapshot", "volume:extend", "volume:extend_attached_volume"} <= rules


def restorable(place):
    """A profile whose data volume has a backup, its VM stopped: what `inv data --restore` starts from."""
    lab = provider(place, data=DATA)
    machine = lab.create(public_key=KEY)
    old = lab.attach_data(machine)
    backup = lab.back_up_data(old)
    lab.stop(machine)
    return lab, old, backup


def test_a_restore_is_a_volume_from_the_snapshot_and_the_replaced_one_stays_the_profile_s_for_audit(fake, place, naps):
    """POST /volumes with snapshot_id; the replaced volume's role changes by a metadata merge (POST .../metadata):
    audit lists it as a volume whose delete deletes its backups first (a Cinder snapshot lives inside it)."""
    lab, old, backup = restorable(place)
    assert lab.data_backups_outlive_volume() is False
    restored = lab.restore_data(backup)
    made = fake.volumes[restored.id]
    assert (made["snapshot_id"], made["size"], made["availability_zone"]) == (backup.id, 20, "nova")
    assert made["metadata"] == {
        "labvm:profile": "cades",
        "labvm:owner": "hedy",
        "labvm:role": "data",
        "labvm:restored-from": backup.id,
    }
    assert "-restored-" in restored.name and restored.name != old.name
    assert fake.volumes[old.id]["metadata"] == {
        "labvm:profile": "cades",
        "labvm:owner": "hedy",
        "labvm:role": "data-replaced",
    }
    rows = {r.id: r for r in lab.inventory()}
    assert (rows[old.id].kind, rows[restored.id].kind) == ("volume", "data")
    assert rows[old.id].delete == (
        f"openstack --os-cloud cades volume snapshot delete {backup.id} && openstack --os-cloud cades volume delete "
        f"{old.id}"
    )


def test_a_restore_in_another_zone_is_refused_before_anything_is_made(fake, place, naps):
    """cinder/volume/flows/api/create_volume.py: a volume from a snapshot in its volume's zone
    (cloned_volume_same_az, default True)."""
    fake.volume_zones = ["nova", "az2"]
    lab, old, backup = restorable(place)
    sent = len(fake.requests)
    with pytest.raises(LabvmError) as refused:
        lab.restore_data(backup, zone="az2")
    message = one_line(refused)
    assert f"only in its volume's zone, nova, not az2; nothing made: `inv data --host cades --restore {backup.id} " in (
        message
    )
    assert message.endswith("--zone nova`")
    assert [r for r in fake.requests[sent:] if r[0] != "GET"] == []


def test_a_restore_cinder_could_not_make_is_one_line_and_refused_again_until_that_volume_is_deleted(fake, place, naps):
    """A volume from the snapshot in error would become the data volume: named, never taken, the old one kept."""
    lab, old, backup = restorable(place)
    fake.fail_next_volume = True
    for _ in range(2):
        with pytest.raises(LabvmError) as failed:
            lab.restore_data(backup)
        message = one_line(failed)
        assert "went error" in message and f"then `inv data --host cades --restore {backup.id}` again" in message
    assert lab.data_volume().id == old.id and fake.volumes[old.id]["metadata"]["labvm:role"] == "data"
    (broken,) = [v for v in fake.volumes.values() if v["status"] == "error"]
    assert f"volume delete {broken['id']}" in message
    del fake.volumes[broken["id"]]  # what `openstack volume delete` does
    assert lab.restore_data(backup).id == lab.data_volume().id != old.id


def test_a_backup_the_backend_keeps_for_a_volume_made_from_it_is_one_line_naming_that_volume(fake, place, naps):
    """A backend whose volume from a snapshot depends on it (RBD before Zed) puts the snapshot back to available
    (cinder/volume/manager.py delete_snapshot, SnapshotIsBusy): said at once, not waited on for ten minutes."""
    fake.snapshots_busy_with_clones = True
    lab, old, backup = restorable(place)
    restored = lab.restore_data(backup)
    with pytest.raises(LabvmError) as kept:
        lab.delete_data_backup(backup)
    message = one_line(kept)
    assert message.startswith(f"openstack: Cinder kept backup {backup.id}: ") and f"({restored.id};" in message
    assert fake.snapshots[backup.id]["status"] == "available" and naps == []
    fake.snapshots_busy_with_clones = False  # a backend that flattens the restored volume first (RBD since Zed)
    lab.delete_data_backup(backup)
    assert backup.id not in fake.snapshots


def test_the_policy_rules_of_a_restore_are_asked_for():
    """cinder/policies/volume_metadata.py: openstacksdk's set_volume_metadata POSTs, checked as the create rule."""
    rules = set(permissions.permissions())
    assert {"volume:create", "volume:get_snapshot", "volume:create_volume_metadata"} <= rules
    assert "volume:update_volume_metadata" not in rules


def test_check_reads_cinder_s_limits_and_fails_where_the_volume_would_not_fit(fake, place):
    """GET /limits: gigabytes (snapshots count too) and volumes, -1 for no limit."""
    lab = provider(place, data=DATA)
    (line,) = [c for c in lab.preflight(KEY) if c.name == "data"]
    assert (
        line.ok and line.detail == "none yet; Cinder quota in use: gigabytes 0 of 1000, volumes 0 of 10; 20 GB more fit"
    )
    fake.quota.update(gigabytes=10, volumes=-1)
    (line,) = [c for c in lab.preflight(KEY) if c.name == "data"]
    assert not line.ok and line.detail.startswith("Cinder quota gigabytes: 0 of 10 in use, 20 more needed; volumes: ")
