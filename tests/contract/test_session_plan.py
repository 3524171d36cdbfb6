"""`--plan` at the level a user types it: each verb of labvm.session.Session on a profile whose VM
exists (and, for `up` and `create`, one whose VM does not), on every world.  Nothing reaches the
cloud but questions; every verb says what it would do.  The in-memory cloud comes in through
Session's provider argument, the others through the registry, as `inv` builds them."""

import pytest
from invoke import Context

from labvm.config import ClusterSpec
from labvm.errors import LabvmError
from labvm.session import Session
from worlds import public_key

KEY = public_key()


@pytest.fixture
def laptop(tmp_path, monkeypatch):
    """A laptop of the test's own: labvm's key and ssh files land under it."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("LABVM_SSH_DIR", raising=False)
    return home


def session(world, plan: bool, **settings) -> Session:
    provider = world.provider(cluster=ClusterSpec(workers=1), **settings)
    return Session(provider.profile, Context(), plan=plan, provider=provider)


def test_every_verb_under_plan_changes_nothing(world, laptop, capsys):
    def planned(verb: str, action):
        before = world.state()
        world.mark()
        capsys.readouterr()
        action(session(world, plan=True, **world.keep_address))
        printed = capsys.readouterr()
        assert world.mutations() == [], f"{verb} --plan sent mutating requests"
        assert world.state() == before, f"{verb} --plan changed the cloud"
        assert any(line.startswith("plan: ") for line in printed.out.splitlines()), f"{verb} --plan: {printed.out}"

    planned("up (no VM yet)", lambda s: s.up(browser=False))
    planned("create", lambda s: s.create())

    lab = world.provider(**world.keep_address)
    head = lab.create(public_key=KEY)
    lab.snapshot(head, "contract")
    lab.snapshot(head, "contract-2")
    lab.create_workers([1], "", "", KEY)
    for verb, action in [
        ("up", lambda s: s.up(browser=False)),
        ("cluster --workers 2", lambda s: s.cluster(2)),
        ("down", lambda s: s.down()),
        ("stop", lambda s: s.stop()),
        ("resize", lambda s: s.resize(world.other_size)),
        ("snapshot", lambda s: s.snapshot("planned")),
        ("images --prune --keep 1", lambda s: s.images(prune=True, keep=1)),
        ("terminate --force", lambda s: s.terminate(yes=True, force=True)),
    ]:
        planned(verb, action)

    # A positive control: the same watch sees what a verb without --plan changes.
    before = world.state()
    world.mark()
    session(world, plan=False, **world.keep_address).stop(sync=False)
    assert world.mutations() and world.state() != before
    planned("start (stopped)", lambda s: s.start())
    planned("up (stopped)", lambda s: s.up(browser=False))


def test_first_up_names_what_a_first_up_makes_without_changing_the_cloud(world):
    # What `up --plan` says without credentials (tests/test_plan_without_credentials.py): the machine at the
    # profile's size, from hosts.yml alone, and nothing made.
    lab = world.provider(**world.keep_address)
    before = world.state()
    world.mark()
    made = lab.first_up()
    assert world.mutations() == [] and world.state() == before
    assert any(world.size in item for item in made), made


def test_up_plan_of_a_profile_with_data_makes_no_volume_and_says_it_would(world, laptop, capsys):
    """Issue 29: `up --plan` with data: names the volume it would make and attach; the cloud is unchanged."""
    for machine in ("none", "running"):
        if machine == "running":
            world.provider(data={"size": 20}).create(public_key=KEY)
        world.mark()
        capsys.readouterr()
        session(world, plan=True, data={"size": 20}).up(browser=False)
        printed = capsys.readouterr().out
        assert world.mutations() == [], f"up --plan ({machine} VM) sent mutating requests"
        assert world.provider(data={"size": 20}).data_volume() is None
        assert any(line.startswith("plan: ") and "volume" in line for line in printed.splitlines()), printed


def test_terminate_delete_data_backs_up_last_then_deletes_and_plans_nothing(world, laptop, capsys):
    """Issue 29: --delete-data deletes the volume only after the VM went and a last backup of it was taken
    (newer than any write), where backups outlive volumes; where they go with it (OpenStack) it is refused
    unless --force, and then the backups go too.  Under --plan nothing changes."""
    data = {"size": 20}
    lab = world.provider(data=data)
    volume = lab.attach_data(lab.create(public_key=KEY))
    world.mark()
    session(world, plan=True, data=data).terminate(yes=True, force=True, sync=False, delete_data=True)
    assert world.mutations() == [] and lab.data_volume().id == volume.id

    outlive = lab.data_backups_outlive_volume()
    if not outlive:
        lab.back_up_data(volume)
        world.mark()
        with pytest.raises(LabvmError) as refused:
            session(world, plan=False, data=data).terminate(yes=True, sync=False, delete_data=True)
        assert "a backup is deleted with its volume" in str(refused.value) and world.mutations() == []
    session(world, plan=False, data=data).terminate(
        yes=True, force=True, sync=False, delete_data=True
    )  # force: no image
    assert lab.find() is None and lab.data_volume() is None
    said = capsys.readouterr().out
    assert f"data: deleted {volume.name} ({volume.id}, 20 GB)" in said
    assert [b.volume_id for b in lab.data_backups()] == ([volume.id] if outlive else [])
