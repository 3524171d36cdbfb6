"""Issue 29: the data volume (hosts.yml data:) through the provider contract, on every cloud's world: one
volume per profile and owner, found by its tags, made once in the machine's zone, attached to it alone,
kept when the machine goes, and nothing made under --plan.  Provider-level, no SSH (the VM side, mkfs and
mount, is tests/test_data_host.py)."""

import pytest

from labvm import audit
from labvm.data import DataVolume
from labvm.errors import LabvmError
from labvm.providers.base import VOLUME_ATTACHED, VOLUME_AVAILABLE
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
    data = DataVolume(lab.profile, lab, host=lambda: None)
    data.show()
    assert capsys.readouterr().out == f"data: none yet; `inv up --host {lab.profile.name}` makes it (20 GB)\n"
    machine = lab.create(public_key=KEY)
    data.attach(machine)
    volume = data.attached
    assert f"data: {volume.name} ({volume.id}, 20 GB) attached to {machine.id}" in capsys.readouterr().out
    data.show()
    shown = capsys.readouterr().out.splitlines()
    assert shown[1] == f"  attached to {machine.id}, in {machine.zone}; mounted at ~/work/data when the VM runs"
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
