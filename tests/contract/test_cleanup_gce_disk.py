"""The live runs' clean-up on GCE's fake: a disk the run leaves behind (its instance deleted, the disk kept) is
named with the command that deletes it, and the clean-up deletes it."""

import secrets

import pytest

from worlds import public_key


@pytest.mark.parametrize("cloud_world", ["gce"], indirect=True)
def test_a_disk_left_by_its_instance_is_named_and_deleted(cloud_world):
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
