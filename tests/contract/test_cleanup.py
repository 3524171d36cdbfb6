"""The live runs' clean-up (World.cleanup, World.leftovers) on each cloud's fake: what a run leaves behind
fails the check, each thing named with the command that deletes it; the clean-up deletes all of the run's
and nothing of a colleague's."""

import secrets

import pytest

from worlds import public_key

pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # openstacksdk's own notices

# What a head with its address, and an image of it, leave in each cloud (GCE has no key pairs: the key rides
# the instance's metadata; a GCE image has no snapshot of its own, and its disk goes with the instance).
LEFT = {
    "aws": {"instance", "volume", "image", "snapshot", "address", "security group", "key pair"},
    "openstack": {"instance", "volume", "image", "snapshot", "address", "security group", "key pair"},
    "gce": {"instance", "image", "address", "firewall rule"},
}


def kinds(lines: list[str]) -> set[str]:
    return {kind for line in lines for kind in LEFT["aws"] | LEFT["gce"] if line.split(" ", 1)[1].startswith(kind)}


def test_what_a_run_leaves_behind_fails_the_check_by_name(cloud_world):
    world = cloud_world
    world.profile = run = f"live-{secrets.token_hex(3)}"
    lab = world.provider(owner=run, **world.keep_address)
    head = lab.create(public_key=public_key())
    lab.snapshot(head, "leftover")

    left = world.leftovers()
    assert kinds(left) == LEFT[world.cloud], "\n".join(left)
    assert all(run in line or head.id in line or " left: " in line for line in left)

    assert world.cleanup() == []
    assert world.leftovers() == []


@pytest.mark.parametrize("cloud_world", ["aws", "openstack"], indirect=True)  # GCE has no key pairs: see LEFT
def test_the_cleanup_leaves_a_colleagues_key_pair(cloud_world):
    """A colleague's key pair imported in the region while the run ran is not the run's."""
    world = cloud_world
    world.profile = run = f"live-{secrets.token_hex(3)}"
    world.provider(owner=run).create(public_key=public_key())
    colleague = "labvm-grace-0a1b2c3d"
    if world.cloud == "aws":
        world.ec2.import_key_pair(KeyName=colleague, PublicKeyMaterial=public_key().encode())
        names = lambda: {k["KeyName"] for k in world.ec2.describe_key_pairs()["KeyPairs"]}  # noqa: E731
    else:
        world.conn.compute.create_keypair(name=colleague, public_key=public_key())
        names = lambda: {k.name for k in world.conn.compute.keypairs()}  # noqa: E731

    assert world.cleanup() == []
    assert colleague in names()


@pytest.mark.parametrize("cloud_world", ["gce"], indirect=True)
def test_a_gce_disk_left_by_its_instance_is_named_and_deleted(cloud_world):
    """A disk the run leaves behind (its instance deleted, the disk kept) is named with its delete command."""
    world = cloud_world
    world.profile = run = f"live-{secrets.token_hex(3)}"
    head = world.provider(owner=run).create(public_key=public_key())
    (disk,) = world.fake.instances[head.id]["disks"]
    disk["autoDelete"] = False  # as `gcloud compute instances set-disk-auto-delete --no-auto-delete` leaves it
    world.delete_by_hand(head.id)
    name = disk["source"].rsplit("/", 1)[-1]

    deleted_by = f"gcloud compute disks delete {name} --zone {world.zone} --project {world.project}"
    assert f"gce disk {name} left: {deleted_by}" in world.leftovers()  # beside the firewall rule the run made
    assert world.cleanup() == []
    assert name not in world.fake.disks and world.leftovers() == []


def test_the_cleanup_deletes_the_runs_data_volume(cloud_world):
    """A live run of the data-volume suite leaves its volume (kept on purpose by terminate): the clean-up
    deletes it through labvm, and nothing of the run is left."""
    world = cloud_world
    world.profile = run = f"live-{secrets.token_hex(3)}"
    lab = world.provider(owner=run, data={"size": 20})
    lab.attach_data(lab.create(public_key=public_key()))
    assert any(line.split(" ", 2)[1] == "data" for line in world.leftovers()), world.leftovers()
    assert world.cleanup() == []
    assert world.leftovers() == [] and lab.data_volume() is None
