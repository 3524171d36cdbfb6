"""Issue 29: the data volume (hosts.yml data:) through the provider contract, on every cloud's world: one
volume per profile and owner, found by its tags, made once in the machine's zone, attached to it alone,
kept when the machine goes, and nothing made under --plan.  Provider-level, no SSH (the VM side, mkfs and
mount, is tests/test_data_host.py)."""

import pytest

from labvm import audit
from labvm.data import DataVolume
from labvm.plan import Steps
from labvm.errors import LabvmError
from labvm.providers.base import BACKUP_READY, VOLUME_ATTACHED, VOLUME_AVAILABLE
from worlds import public_key

pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # openstacksdk's own notices
KEY = public_key()
DATA = {"size": 20}


def test_a_data_volume_is_made_once_in_the_machines_zone_and_attached_to_it(world):
    lab = world.provider(data=DATA)
    assert lab.data_volume() is None
    machine = lab.create(public_key=KEY)
    volume = lab.attach_data(machine)
    assert (volume.state, volume.attached_to, volume.size_gb, volume.zone) == (
        VOLUME_ATTACHED,
        machine.id,
        20,
        machine.zone,
    )
    assert machine.zone and volume.devices  # where the guest finds it: /dev/disk/by-id/...

    later = world.provider(data=DATA)  # the next run finds it by its tags, and changes nothing
    world.mark()
    assert later.attach_data(later.find()).id == volume.id
    assert later.data_volume().id == volume.id
    assert world.mutations() == []


def test_the_data_volume_outlives_its_machine_and_joins_the_next_one(world):
    lab = world.provider(data=DATA)
    first = lab.create(public_key=KEY)
    volume = lab.attach_data(first)
    lab.terminate(first)
    kept = lab.data_volume()
    assert (kept.id, kept.state, kept.attached_to) == (volume.id, VOLUME_AVAILABLE, "")

    second = lab.create(public_key=KEY)
    again = lab.attach_data(second)
    assert (again.id, again.attached_to) == (volume.id, second.id)


def test_detached_and_deleted_it_is_gone(world):
    lab = world.provider(data=DATA)
    machine = lab.create(public_key=KEY)
    volume = lab.attach_data(lab.stop(machine))
    detached = lab.detach_data(volume)
    assert (detached.state, detached.attached_to) == (VOLUME_AVAILABLE, "")
    assert lab.detach_data(detached) == detached  # once detached, detaching again changes nothing
    lab.delete_data(detached)
    assert lab.data_volume() is None


def test_owners_sharing_an_account_each_have_their_own_data_volume(world):
    volumes = {}
    for owner in ("ada", "grace"):
        lab = world.provider(owner=owner, data=DATA)
        volumes[owner] = lab.attach_data(lab.create(public_key=KEY))
    assert volumes["ada"].id != volumes["grace"].id
    for owner, volume in volumes.items():
        assert world.provider(owner=owner, data=DATA).data_volume().id == volume.id


def test_plan_makes_no_volume_and_attaches_none(world, capsys):
    lab = world.provider(data=DATA)
    machine = lab.create(public_key=KEY)
    world.mark()
    lab.start_planning()
    planned = lab.attach_data(machine)
    assert world.mutations() == []
    assert world.provider(data=DATA).data_volume() is None
    assert planned.attached_to == machine.id
    assert "volume" in capsys.readouterr().out


def test_a_profile_without_data_is_told_how_to_give_it_one(world):
    lab = world.provider()
    with pytest.raises(LabvmError) as refused:
        lab.attach_data(lab.create(public_key=KEY))
    assert str(refused.value).endswith(".data: not set; add data: {size: 20} to give it a data volume")


def test_audit_lists_the_data_volume_as_kept_not_as_a_zombie(world):
    """Its profile exists: kept on purpose (no why, no next step); once the profile is gone from hosts.yml,
    the volume is named with the command that deletes it."""
    lab = world.provider(data=DATA)
    lab.terminate(lab.create(public_key=KEY))  # the volume outlives it
    lab.attach_data(lab.create(public_key=KEY))
    (row,) = [r for r in audit._judge(lab.inventory(), [lab], (lab.profile.name,)) if r["kind"] == "data"]
    assert (row["size_gb"], row["why"], row["next_step"]) == (20, "", "")
    (gone,) = [r for r in audit._judge(lab.inventory(), [], ()) if r["kind"] == "data"]
    assert gone["why"] and gone["next_step"] == gone["delete"]


@pytest.mark.parametrize("world", ["memory"], indirect=True)  # the words are the template's, not a cloud's
def test_the_user_is_told_where_the_data_is_and_that_it_was_kept(world, capsys):
    lab = world.provider(data=DATA)
    data = DataVolume(lab.profile, lab, host=lambda: None, steps=Steps())
    data.show()
    assert capsys.readouterr().out == f"data: none yet; `inv up --host {lab.profile.name}` makes it (20 GB)\n"
    machine = lab.create(public_key=KEY)
    data.attach(machine)
    volume = data.attached
    assert f"data: {volume.name} ({volume.id}, 20 GB) attached to {machine.id}" in capsys.readouterr().out
    lab.stop(machine)  # a running VM is asked what it holds (tests/test_data_flow.py); a stopped one is not
    data.show()
    shown = capsys.readouterr().out.splitlines()
    assert shown[1] == f"  attached to {machine.id}, in {machine.zone}; mounted at ~/work/data when the VM runs"
    assert shown[2] == "  backups: none; `inv data --host lab --backup` takes one"
    lab.terminate(machine)
    data.kept()
    kept = capsys.readouterr().out
    assert f"data: {volume.name} ({volume.id}, 20 GB) kept; the next `inv up --host {lab.profile.name}`" in kept
    assert data.status_line() == [f"  data: {volume.name}, 20 GB, kept, attached to no VM"]


@pytest.mark.parametrize("world", ["aws", "openstack", "gce"], indirect=True)  # the memory cloud names no types
@pytest.mark.parametrize("volume_type", ["nvme-gold", "a/b"])
def test_a_volume_type_the_cloud_lacks_is_one_line_and_nothing_is_made(world, volume_type):
    """data.type reaches the cloud's API (a URL path on GCE): an unknown one, or one no name can be, is refused
    in one line and no volume is made."""
    lab = world.provider(data={"size": 20, "type": volume_type})
    machine = lab.create(public_key=KEY)
    with pytest.raises(LabvmError) as refused:
        lab.attach_data(machine)
    assert "\n" not in str(refused.value) and ("data.type" in str(refused.value) or volume_type in str(refused.value))
    assert lab.data_volume() is None


def test_the_data_volume_grows_and_never_shrinks(world):
    lab = world.provider(data=DATA)
    volume = lab.attach_data(lab.create(public_key=KEY))
    grown = lab.grow_data(volume, 30)
    assert (grown.id, grown.size_gb, grown.attached_to) == (volume.id, 30, volume.attached_to)
    assert world.provider(data=DATA).data_volume().size_gb == 30
    world.mark()
    for size, words in ((30, "has 30 GB already; a volume only grows"), (16385, "at most 16384 GB")):
        with pytest.raises(LabvmError) as refused:
            lab.grow_data(grown, size)
        assert words in str(refused.value) and "\n" not in str(refused.value)
    assert world.mutations() == []


def test_backups_are_the_profiles_and_owners_newest_first_and_deleted_one_by_one(world):
    lab = world.provider(data=DATA)
    volume = lab.attach_data(lab.create(public_key=KEY))
    first = lab.back_up_data(volume)
    second = lab.back_up_data(volume)  # within the same second: clouds keeping whole seconds show them alike
    assert first.id != second.id and first.name != second.name
    assert (second.state, second.size_gb, second.volume_id) == (BACKUP_READY, 20, volume.id)
    assert [b.id for b in world.provider(data=DATA).data_backups()] == [second.id, first.id]
    assert world.provider(owner="grace", data=DATA).data_backups() == []  # another owner's are not theirs
    lab.delete_data_backup(first)
    assert [b.id for b in lab.data_backups()] == [second.id]
    assert lab.data_volume().id == volume.id  # the volume stays


def test_plan_backs_up_nothing_and_grows_nothing(world, capsys):
    lab = world.provider(data=DATA)
    volume = lab.attach_data(lab.create(public_key=KEY))
    world.mark()
    lab.start_planning()
    planned = lab.back_up_data(volume)
    assert lab.grow_data(volume, 40).size_gb == 40
    assert world.mutations() == []
    assert world.provider(data=DATA).data_backups() == [] and world.provider(data=DATA).data_volume().size_gb == 20
    assert planned.volume_id == volume.id and volume.id in capsys.readouterr().out  # the gate's line names it


def test_audit_lists_backups_with_their_price_and_never_as_zombies_while_the_profile_exists(world):
    lab = world.provider(data=DATA)
    backup = lab.back_up_data(lab.attach_data(lab.create(public_key=KEY)))
    (row,) = [r for r in audit._judge(lab.inventory(), [lab], (lab.profile.name,)) if r["kind"] == "backup"]
    assert (row["id"], row["why"], row["next_step"]) == (backup.id, "", "")
    (gone,) = [r for r in audit._judge(lab.inventory(), [], ()) if r["kind"] == "backup"]
    assert gone["why"] and gone["next_step"] == gone["delete"]


@pytest.mark.parametrize("world", ["memory"], indirect=True)  # the words are the template's, not a cloud's
def test_inv_data_grows_backs_up_prunes_and_shows_the_backups(world, capsys):
    lab = world.provider(data=DATA)
    data = DataVolume(lab.profile, lab, host=lambda: None, steps=Steps())
    with pytest.raises(LabvmError) as refused:
        data.act(backup=True)
    assert (
        str(refused.value) == f"data --backup: {lab.profile.name} has no data volume yet; `inv up --host lab` makes it"
    )
    machine = lab.stop(lab.create(public_key=KEY))
    data.attach(machine)
    capsys.readouterr()

    data.act(grow=30, backup=True)
    said = capsys.readouterr().out.splitlines()
    assert said[0] == f"data: {data.attached.name} ({data.attached.id}) is 30 GB"
    assert said[1] == f"data: its filesystem grows at the next `inv up --host {lab.profile.name}`"  # the VM is stopped
    (backup,) = lab.data_backups()
    assert said[2] == f"data: backed up as {backup.id} ({backup.name}, 30 GB)"
    assert "  backups: 1" in said and any(line.startswith(f"    {backup.id}  ") and "ready" in line for line in said)

    for _ in range(2):
        data.back_up()
    newest = [b.id for b in lab.data_backups()][:2]
    capsys.readouterr()
    data.act(keep=2)
    assert [b.id for b in lab.data_backups()] == newest
    assert f"data: deleted the backup {backup.id} ({backup.name}, taken " in capsys.readouterr().out


def test_a_restore_makes_a_new_volume_once_and_keeps_the_one_it_replaces(world):
    """From a backup, the VM stopped: a new volume, which the next up attaches; the old one detached and kept
    (audit lists it as a loose volume, to delete when the user is sure); run again, nothing more is made."""
    lab = world.provider(data=DATA)
    machine = lab.create(public_key=KEY)
    old = lab.attach_data(machine)
    backup = lab.back_up_data(old)
    with pytest.raises(LabvmError) as refused:
        lab.restore_data(backup)
    assert f"the VM {machine.id} is running" in str(refused.value) and "`inv down --host" in str(refused.value)

    lab.stop(machine)
    restored = lab.restore_data(backup)
    assert restored.id != old.id and (restored.size_gb, restored.zone, restored.attached_to) == (20, machine.zone, "")
    world.mark()
    assert lab.restore_data(backup).id == restored.id and world.mutations() == []  # done: nothing more
    assert lab.data_volume().id == restored.id
    assert lab.attach_data(lab.start(machine)).id == restored.id
    rows = {r["id"]: r for r in audit._judge(lab.inventory(), [lab], (lab.profile.name,))}
    assert rows[old.id]["kind"] == "volume" and rows[old.id]["state"] == "unattached"  # kept, and said
    assert rows[restored.id]["kind"] == "data"


def test_plan_restores_nothing(world):
    lab = world.provider(data=DATA)
    machine = lab.create(public_key=KEY)
    old = lab.attach_data(machine)
    backup = lab.back_up_data(old)
    lab.stop(machine)
    world.mark()
    lab.start_planning()
    lab.restore_data(backup)
    assert world.mutations() == []
    assert world.provider(data=DATA).data_volume().id == old.id


def test_check_names_the_data_volume_and_its_storage_quota(world):
    lab = world.provider(data=DATA)
    (line,) = [check for check in lab.preflight(KEY) if check.name == "data"]
    assert line.ok and line.detail.startswith("none yet; "), line
    volume = lab.attach_data(lab.create(public_key=KEY))
    (line,) = [check for check in world.provider(data=DATA).preflight(KEY) if check.name == "data"]
    assert line.ok and line.detail.startswith(f"{volume.id} (20 GB) in {volume.zone}; "), line


@pytest.mark.parametrize("world", ["memory"], indirect=True)  # the rule is the template's
def test_check_fails_on_a_volume_in_another_zone_or_a_storage_quota_too_small(world):
    lab = world.provider(data=DATA)
    world.backend.storage_gb = 10
    (line,) = [check for check in lab.preflight(KEY) if check.name == "data"]
    assert not line.ok and line.detail == "0 of 10 GB in use and the data volume needs 20"
    world.backend.storage_gb = 1000
    volume = lab.attach_data(lab.create(public_key=KEY))
    lab.detach_data(volume)
    world.backend.volumes[volume.id]["zone"] = "memory-b"
    (line,) = [check for check in lab.preflight(KEY) if check.name == "data"]
    assert not line.ok and f"the data volume {volume.id} is in memory-b" in line.detail
    assert f"`inv data --host {lab.profile.name} --backup` then `--restore BACKUP --zone memory-a`" in line.detail


def test_a_restore_stopped_halfway_is_finished_by_the_next_and_the_oldest_volume_stays_the_data_until_then(world):
    """The first run made the new volume and stopped before it retired the one it replaces: until a run
    finishes it, the oldest is the profile's data volume (as of any two), and the next run makes nothing more."""
    lab = world.provider(data=DATA)
    machine = lab.create(public_key=KEY)
    old = lab.attach_data(machine)
    backup = lab.back_up_data(old)
    lab.stop(machine)
    halfway = lab.parts.volumes.restore(backup, old.zone)
    assert world.provider(data=DATA).data_volume().id == old.id
    finished = lab.restore_data(backup)
    assert finished.id == halfway.id and lab.data_volume().id == halfway.id
    world.mark()
    assert lab.restore_data(backup).id == halfway.id and world.mutations() == []
