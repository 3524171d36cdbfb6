"""A Dask cluster's worker instances on the GCE fake (tests/fake_gce.py), provider-level (no SSH):
made beside the head, found by labels, stopped, started, deleted; the Dask ports open only
between instances carrying the cluster's network tag (source tags = target tags)."""

import pytest

from gce_world import KEY, provider


def test_workers_are_made_beside_the_head_and_found_by_labels(fake, tmp_path):
    gce = provider(tmp_path)
    head = gce.create(public_key=KEY)
    made = gce.create_workers([1, 2], "", "", KEY)

    assert [w.name for w in made] == ["labvm-gce-hedy-w1", "labvm-gce-hedy-w2"]
    assert gce.workers() == made and all(w.state == "running" and w.size == "e2-small" and w.address for w in made)
    assert gce.find().id == head.id
    first = fake.instances[head.id]
    # Workers reach the scheduler inside the network: the internal address, not the external one.
    assert head.private_address == first["networkInterfaces"][0]["networkIP"] != head.address
    for index, worker in enumerate(made, 1):
        data = fake.instances[worker.id]
        assert data["labels"] == {
            "labvm-profile": "gce",
            "labvm-owner": "hedy",
            "labvm-cluster": "gce",
            "labvm-role": "worker",
            "labvm-index": str(index),
        }
        assert data["tags"]["items"] == first["tags"]["items"] == ["labvm-gce-hedy-ssh"]
        assert data["networkInterfaces"][0]["network"] == first["networkInterfaces"][0]["network"]
        assert data["metadata"]["items"] == first["metadata"]["items"]  # the same login
        disk, head_disk = (fake.disks[d["disks"][0]["source"].rsplit("/", 1)[-1]] for d in (data, first))
        assert disk["sourceImage"] == head_disk["sourceImage"]


def test_worker_machine_type_is_checked_with_the_closest_names(fake, tmp_path):
    from labvm.errors import LabvmError

    gce = provider(tmp_path)
    gce.create(public_key=KEY)
    with pytest.raises(LabvmError) as raised:
        gce.create_workers([1], "", "e2-mediun", KEY)
    message = str(raised.value)
    assert "profiles.gce.cluster.worker_size: no machine type 'e2-mediun'; closest: e2-medium" in message
    assert gce.workers() == []
    (worker,) = gce.create_workers([1], "", "e2-medium", KEY)
    assert worker.size == "e2-medium"


def test_a_rerun_makes_only_the_missing_workers(fake, tmp_path):
    gce = provider(tmp_path)
    gce.create(public_key=KEY)
    gce.create_workers([1, 3], "", "", KEY)
    gce.create_workers([2], "", "", KEY)
    assert [w.name for w in gce.workers()] == ["labvm-gce-hedy-w1", "labvm-gce-hedy-w2", "labvm-gce-hedy-w3"]


def test_dask_ports_are_open_only_between_the_cluster_machines(fake, tmp_path):
    gce = provider(tmp_path)
    gce.create(public_key=KEY)
    gce.create_workers([1], "", "", KEY)
    gce.allow_cluster()
    gce.allow_cluster()  # idempotent

    rule = fake.firewalls[gce.parts.head.names.cluster_rule]
    assert rule["sourceTags"] == rule["targetTags"] == ["labvm-gce-hedy-ssh"]
    assert rule["sourceRanges"] == []  # no range: the fake gives a rule with no source at all 0.0.0.0/0, as GCE does
    assert [r["sourceRanges"] for r in fake.firewalls.values()] == [["198.51.100.7/32"], []]


def test_a_worker_stops_starts_and_is_terminated_alone(fake, tmp_path):
    gce = provider(tmp_path, static_ip=True)
    head = gce.create(public_key=KEY)
    first, second = gce.create_workers([1, 2], "", "", KEY)
    stopped = gce.stop(first)
    assert stopped.state == "stopped" and gce.start(stopped).state == "running"

    gce.terminate(second)
    assert [w.name for w in gce.workers()] == [first.name]
    assert gce.find().address == head.address and set(fake.firewalls) == {"labvm-gce-hedy-ssh"}
    assert fake.addresses["labvm-gce-hedy"]["users"]  # the head's static IP stays its own


def test_terminate_workers_deletes_this_owners_workers_only(fake, tmp_path, monkeypatch):
    fake.quota_limits["CPUS"] = 16  # two owners' clusters
    gce = provider(tmp_path)
    gce.create(public_key=KEY)
    gce.create_workers([1, 2], "", "", KEY)
    gce.allow_cluster()
    theirs = provider(tmp_path, "grace", monkeypatch)
    theirs.create(public_key=KEY)
    (kept,) = theirs.create_workers([1], "", "", KEY)

    monkeypatch.setenv("LABVM_OWNER", "hedy")
    gce.terminate_workers()
    assert gce.workers() == [] and gce.find() is not None
    assert [w.name for w in theirs.workers()] == [kept.name]
    gce.terminate(gce.find())
    assert set(fake.firewalls) == {"labvm-gce-grace-ssh"}


def test_audit_names_a_worker_whose_head_is_gone(fake, tmp_path):
    from labvm import audit

    gce = provider(tmp_path)
    head = gce.create(public_key=KEY)
    gce.create_workers([1], "", "", KEY)
    fake.instances.pop(head.id)  # deleted by hand
    rows = audit._judge(gce.inventory(), [gce], ("gce",))
    (worker,) = [r for r in rows if r["kind"] == "instance"]
    assert (worker["profile"], worker["role"], worker["index"]) == ("gce+w1", "worker", 1)
    assert worker["why"] == "a worker of gce whose head VM is gone"
    assert worker["next_step"].startswith("gcloud compute instances delete labvm-gce-hedy-w1")
