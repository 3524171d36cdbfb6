"""The provider contract (labvm/providers/base.py), each behaviour written once and run on every cloud:
moto's EC2, the OpenStack fake, the GCE fake, the memory cloud, and (opt in) real accounts.  A new cloud
needs its primitives and a world in worlds.py, no new behaviour tests.  Provider-level, no SSH."""

import pytest

from labvm import audit
from labvm.config import ClusterSpec
from labvm.errors import Unsupported
from labvm.providers import base, describe
from labvm.providers.base import Starting
from worlds import ALL_PORTS, CLUSTER, SSH, SSH_CIDR, public_key

pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # openstacksdk's own notices
KEY = public_key()


def index_of(instance) -> str:
    return instance.name.rsplit("-", 1)[1]


# -- the head ---------------------------------------------------------------------------------------


def test_a_machine_that_exists_is_resumed_not_made_again(world):
    lab = world.provider(**world.keep_address)
    assert lab.find() is None
    made = lab.create(public_key=KEY)
    assert made.state == "running" and lab.find().id == made.id

    later = world.provider(**world.keep_address)  # the next run: a new provider finds it by its tags
    stopped = later.stop(later.find())
    assert stopped.state == "stopped" and later.find().id == made.id and later.find().state == "stopped"
    started = later.start(later.find())
    # The same machine, at the same address: the profile keeps one (Elastic IP, floating IP, static IP).
    assert (started.id, started.state, started.address) == (made.id, "running", made.address)
    assert (later.find().id, later.find().address) == (made.id, made.address)


def test_owners_sharing_an_account_each_find_only_their_own(world):
    made = {owner: world.provider(owner=owner).create(public_key=KEY) for owner in ("ada", "grace", "alan")}
    assert len({instance.id for instance in made.values()}) == 3
    for owner, instance in made.items():
        assert world.provider(owner=owner).find().id == instance.id

    grace = world.provider(owner="grace")
    grace.terminate(grace.find())
    assert grace.find() is None
    for owner in ("ada", "alan"):
        mine = world.provider(owner=owner).find()
        assert (mine.id, mine.state) == (made[owner].id, "running")


def test_owners_whose_names_a_cloud_would_make_one_stay_apart(world):
    """`hedy.lamarr` and `Hedy Lamarr` are two lab members: where a cloud's name rules fold both into
    `hedy-lamarr`, neither may find, stop or delete the other's machine."""
    owners = ("hedy.lamarr", "Hedy Lamarr", "hedy-lamarr")
    made = {owner: world.provider(owner=owner).create(public_key=KEY) for owner in owners}
    assert len({instance.id for instance in made.values()}) == 3
    for owner, instance in made.items():
        assert world.provider(owner=owner).find().id == instance.id


@pytest.mark.parametrize("owner", ["hedy.lamarr", "hedy@lab.org", "Hedy Lamarr"])
def test_every_name_made_from_an_owner_is_one_the_cloud_accepts(world, owner):
    """Every resource labvm names after its owner (machine, group, key pair, address, image, workers, the
    cluster's rule) on a cloud that refuses names as the real one does."""
    lab = world.provider(owner=owner, **world.keep_address)
    head = lab.create(public_key=KEY)
    assert lab.find().id == head.id
    image = lab.snapshot(head, "contract")
    assert [i.id for i in lab.images()] == [image.id]
    (worker,) = lab.create_workers([1], "", "", KEY)
    lab.allow_cluster()
    assert lab.workers() == [worker]

    lab.delete_image(image)
    lab.terminate_workers()
    lab.terminate(lab.find())
    assert (lab.find(), lab.workers(), lab.images()) == (None, [], [])


def test_plan_changes_nothing_for_any_verb(world, capsys):
    """`--plan`: every verb prints its changes as `plan:` lines; no mutating request reaches the cloud."""

    def planned(verb: str, action):
        before = world.state()
        world.mark()
        capsys.readouterr()
        action()
        printed = capsys.readouterr()
        assert world.mutations() == [], f"{verb} under --plan sent mutating requests"
        assert world.state() == before, f"{verb} under --plan changed the cloud"
        lines = (printed.out + printed.err).splitlines()
        assert any(line.startswith("plan: ") for line in lines), f"{verb} under --plan printed no plan: {lines}"

    def plan_only():
        made = world.provider(**world.keep_address)
        made.plan = True
        return made

    planned("create", lambda: plan_only().create(public_key=KEY))

    lab = world.provider(**world.keep_address)
    head = lab.create(public_key=KEY)
    image = lab.snapshot(head, "contract")
    lab.create_workers([1], "", "", KEY)
    plan = plan_only()
    for verb, action in [
        ("stop", lambda: plan.stop(head)),
        ("resize", lambda: plan.resize(head, world.other_size)),
        ("snapshot", lambda: plan.snapshot(head, "planned")),
        ("delete_image", lambda: plan.delete_image(image)),
        ("create_workers", lambda: plan.create_workers([2], "", "", KEY)),
        ("allow_cluster", plan.allow_cluster),
        ("terminate_workers", plan.terminate_workers),
        ("terminate", lambda: plan.terminate(head)),
    ]:
        planned(verb, action)
    # A positive control: the same watch sees a change that is made, so the checks above can fail.
    before = world.state()
    world.mark()
    stopped = lab.stop(head)
    assert world.mutations() and world.state() != before
    planned("start", lambda: plan.start(stopped))
    planned("resize a stopped machine", lambda: plan.resize(stopped, world.other_size))


# -- a cluster's workers ----------------------------------------------------------------------------


def test_workers_are_made_by_index_from_the_heads_image_in_its_network(world):
    lab = world.provider()
    head = lab.create(public_key=KEY)
    made = lab.create_workers([1, 2, 3], "", "", KEY)

    assert [index_of(w) for w in made] == ["w1", "w2", "w3"]
    assert lab.workers() == made
    assert all(w.state == "running" and w.size == world.size for w in made)
    assert lab.find().id == head.id  # never a worker
    assert lab.cluster_image() and {world.placement(w.id) for w in made} == {world.placement(head.id)}


def test_a_missing_worker_is_made_again_and_only_it(world):
    lab = world.provider()
    lab.create(public_key=KEY)
    first, second, third = lab.create_workers([1, 2, 3], "", "", KEY)
    world.delete_by_hand(second.id)
    assert [index_of(w) for w in lab.workers()] == ["w1", "w3"]

    (again,) = lab.create_workers([2], "", "", KEY)
    assert (index_of(again), again.state) == ("w2", "running")
    assert [w.id for w in lab.workers()] == [first.id, again.id, third.id]


def test_the_cluster_is_open_only_between_its_machines_and_allowing_it_twice_changes_nothing(world):
    lab = world.provider()
    head = lab.create(public_key=KEY)
    workers = lab.create_workers([1, 2], "", "", KEY)
    theirs = world.provider(owner="grace").create(public_key=KEY)
    lab = world.provider()
    lab.allow_cluster()
    allowed = world.state()
    lab.allow_cluster()
    assert world.state() == allowed

    for machine in [head, *workers]:
        assert world.ingress(machine.id) == {(SSH, SSH_CIDR), (ALL_PORTS, CLUSTER)}
    assert world.ingress(theirs.id) == {(SSH, SSH_CIDR)}  # another owner's machine is not in the cluster


def test_terminate_workers_leaves_the_head_and_other_owners_workers(world):
    lab = world.provider()
    head = lab.create(public_key=KEY)
    lab.create_workers([1, 2], "", "", KEY)
    grace = world.provider(owner="grace")
    grace_head = grace.create(public_key=KEY)
    (kept,) = grace.create_workers([1], "", "", KEY)

    lab = world.provider()
    lab.terminate_workers()
    assert lab.workers() == [] and lab.find().id == head.id and lab.find().state == "running"
    lab.terminate_workers()  # nothing left: nothing to do
    grace = world.provider(owner="grace")
    assert [w.id for w in grace.workers()] == [kept.id] and grace.find().id == grace_head.id


def test_audit_lists_workers_and_names_those_whose_head_is_gone(world):
    lab = world.provider()
    head = lab.create(public_key=KEY)
    lab.create_workers([1, 2], "", "", KEY)
    profile = world.profile

    def worker_rows():
        rows = audit._judge(lab.inventory(), [lab], (profile,))
        mine = [r for r in rows if r["role"] == "worker" and r["kind"] == "instance" and r["owner"] == "hedy"]
        return sorted(mine, key=lambda r: r["index"])

    assert [(r["profile"], r["index"], r["next_step"]) for r in worker_rows()] == [
        (f"{profile}+w1", 1, f"inv down --host {profile}"),
        (f"{profile}+w2", 2, f"inv down --host {profile}"),
    ]

    world.delete_by_hand(head.id)  # the head deleted in the console: its workers bill on
    rows = worker_rows()
    assert len(rows) == 2
    assert all(
        r["why"] == f"a worker of {profile} whose head VM is gone" and r["next_step"] == r["delete"] for r in rows
    )


# -- what callers ask of every provider ------------------------------------------------------------


@pytest.mark.parametrize("owner", ["hedy", "Hedy Lamarr"])
def test_tags_and_scope_are_those_of_what_audit_lists(world, owner):
    """`inv audit` knows a resource's profile and owner by the provider's tags, and groups providers by scope."""
    lab = world.provider(owner=owner)
    head = lab.create(public_key=KEY)
    (row,) = [r for r in lab.inventory() if r.id == head.id]
    assert (row.profile, row.owner, row.scope) == (lab.tags.profile, lab.tags.owner, lab.scope)
    assert world.provider(owner="grace").scope == lab.scope  # one set of credentials, one scope


def test_describe_says_the_size_and_place_from_hosts_yml_alone(world):
    lab = world.provider()
    said = lab.describe()
    assert world.cloud == "memory" or said == describe(lab.profile)  # the registry knows hosts.yml's clouds
    assert (said.size, said.vm, lab.size()) == (world.size, True, world.size) and said.place
    assert lab.create(public_key=KEY).size == said.size


def test_a_feature_a_cloud_lacks_is_refused_in_one_line_before_anything_changes(world):
    lab = world.provider()
    assert lab.FEATURES <= set(base.FEATURES) and base.CLOUD_FEATURES <= lab.FEATURES
    head = lab.create(public_key=KEY)
    for feature in set(base.FEATURES) - lab.FEATURES:
        with pytest.raises(Unsupported) as refused:
            lab.require(feature)
        assert f"{feature} is not supported for profile {world.profile!r}" in str(refused.value)
        assert "\n" not in str(refused.value)
    world.mark()
    if "--share" in lab.FEATURES:
        assert lab.snapshot(head, "shared", share=("123456789012",)).id in [i.id for i in lab.images()]
    else:  # never made without the share asked for
        with pytest.raises(Unsupported, match="--share is not supported"):
            lab.snapshot(head, "shared", share=("123456789012",))
        assert world.mutations() == [] and lab.images() == []


@pytest.mark.parametrize("scenario", ["no head", "stopped head", "running head", "with workers"])
def test_quota_counts_what_up_and_cluster_would_start_once(world, scenario):
    """One rule on every cloud (Provider.to_start, issue 28 A5): a running head adds nothing, a stopped head
    its size, no head the new one, each missing worker its size; the cloud's quota line counts that and no
    more (a running head was counted twice on AWS, and OpenStack always added a new head)."""
    lab = world.provider()
    if scenario != "no head":
        head = lab.create(public_key=KEY)
    if scenario == "stopped head":
        lab.stop(head)
    cluster = None
    if scenario == "with workers":
        cluster = ClusterSpec(workers=2, worker_size=world.other_size)
        world.provider(cluster=cluster).create_workers([1], "", world.other_size, KEY)
    asked = world.provider(cluster=cluster)
    assert (
        asked.to_start()
        == {
            "no head": [Starting("head", world.size, new=True)],
            "stopped head": [Starting("head", world.size, new=False)],
            "running head": [],
            "with workers": [Starting("w2", world.other_size, new=True, worker_size=True)],
        }[scenario]
    )
    if world.cloud == "memory":  # a cloud without quotas: the rule is all there is
        return
    (quota,) = [c for c in asked.preflight(KEY) if c.name == "quota"]
    assert quota.ok, quota.detail
    if scenario == "running head":
        assert quota.detail == "nothing to start"
