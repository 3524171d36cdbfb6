"""A Dask cluster's worker servers on the OpenStack fake (tests/fake_openstack.py), provider-level
(no SSH): made beside the head, found by metadata, stopped, started, deleted; the Dask ports open
only between the cluster's servers (a rule whose remote group is labvm's group itself)."""

import pytest

from openstack_world import KEY, one_line, provider

pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")


def by_name(fake, name: str) -> dict:
    (server,) = [s for s in fake.servers.values() if s["name"] == name]
    return server


def networks(fake, server: dict) -> set[str]:
    return {p["network_id"] for p in fake.ports.values() if p["device_id"] == server["id"]}


def test_workers_are_made_beside_the_head_and_found_by_metadata(fake, place):
    cades = provider(place)
    head = cades.create(public_key=KEY)
    made = cades.create_workers([1, 2, 3], "", "", KEY)

    assert [w.name for w in made] == [f"labvm-cades-hedy-w{i}" for i in (1, 2, 3)]
    assert cades.workers() == made and all(w.state == "running" and w.size == "m1.medium" for w in made)
    assert cades.find().id == head.id
    first = fake.servers[head.id]
    # Workers reach the scheduler inside the network: the fixed address, not the floating one.
    fixed = [
        a["addr"] for addresses in first["addresses"].values() for a in addresses if a["OS-EXT-IPS:type"] == "fixed"
    ]
    assert cades.find().private_address == fixed[0] != cades.find().address
    (head_volume,) = first["os-extended-volumes:volumes_attached"]
    for index, worker in enumerate(made, 1):
        server = fake.servers[worker.id]
        assert server["metadata"] == {
            "labvm:profile": "cades",
            "labvm:owner": "hedy",
            "labvm:cluster": "cades",
            "labvm:role": "worker",
            "labvm:index": str(index),
        }
        assert networks(fake, server) == networks(fake, first)
        assert server["key_name"] == first["key_name"] and server["security_groups"] == first["security_groups"]
        # Volume-backed like the head, from the head's image (Cinder's volume_image_metadata).
        (volume,) = server["os-extended-volumes:volumes_attached"]
        assert (
            fake.volumes[volume["id"]]["volume_image_metadata"]["image_id"]
            == fake.volumes[head_volume["id"]]["volume_image_metadata"]["image_id"]
        )
        # Each worker has a floating IP of its own; the head keeps its own.
        floating = [
            ip
            for ip in fake.floating_ips.values()
            if ip["port_id"] in {p["id"] for p in fake.ports.values() if p["device_id"] == worker.id}
        ]
        assert [ip["description"] for ip in floating] == [f"labvm:cades+w{index}:hedy"]
        assert worker.address == floating[0]["floating_ip_address"]


def test_worker_flavor_is_checked_with_the_closest_names(fake, place):
    from labvm.errors import LabvmError

    cades = provider(place)
    cades.create(public_key=KEY)
    with pytest.raises(LabvmError) as raised:
        cades.create_workers([1], "", "m1.larg", KEY)
    assert "profiles.cades.cluster.worker_size: no flavor 'm1.larg'; closest: m1.large" in one_line(raised)
    assert cades.workers() == []


def test_a_rerun_makes_only_the_missing_workers_and_one_failure_keeps_the_others(fake, place):
    from labvm.errors import LabvmError

    cades = provider(place)
    cades.create(public_key=KEY)
    fake.fail_next_boot = "No valid host was found. There are not enough hosts available."
    with pytest.raises(LabvmError) as raised:
        cades.create_workers([1, 2, 3], "", "", KEY)
    message = one_line(raised)
    assert "1 worker(s) not made (w" in message and "went ERROR: No valid host was found" in message
    assert "inv up --host cades" in message
    (broken,) = [w for w in cades.workers() if w.state == "error"]
    cades.terminate(broken, True)  # what the session does with a worker in ERROR
    assert len(cades.workers()) == 2
    missing = sorted({1, 2, 3} - {int(w.name.rsplit("-w", 1)[1]) for w in cades.workers()})
    cades.create_workers(missing, "", "", KEY)
    assert [w.name.rsplit("-", 1)[1] for w in cades.workers()] == ["w1", "w2", "w3"]


def test_workers_beyond_nova_s_limits_are_refused_before_any_boot(fake, place):
    from labvm.errors import LabvmError

    cades = provider(place)
    cades.create(public_key=KEY)
    fake.quota["cores"] = 2 + 2 * 2  # the head and two m1.medium workers: not a third
    before = len(fake.servers)
    with pytest.raises(LabvmError) as raised:
        cades.create_workers([1, 2, 3], "", "", KEY)
    assert one_line(raised) == (
        "OpenStack quota: room for 2 of 3 workers (m1.medium): cores: 2 of 6 used, each needs 2; "
        "`inv cluster --host cades --workers 2`, or free some (openstack server list) or ask for more "
        "(cades-help@ornl.gov raises CADES quotas)"
    )
    assert len(fake.servers) == before


def test_a_worker_nova_puts_in_error_at_its_quota_recheck_is_reported_and_deleted_whole(fake, place):
    """Nova accepts boots whose quota it checks again once their instances exist (recheck_quota); one
    beyond it goes ERROR and stays (nova/conductor/manager.py)."""
    from labvm.errors import LabvmError

    cades = provider(place)
    cades.create(public_key=KEY)
    fake.quota["cores"] = 2 + 2 * 2
    fake.in_flight = {"instances": 1, "cores": 2, "ram": 4096}  # a colleague's boot, not yet counted
    with pytest.raises(LabvmError) as raised:
        cades.create_workers([1, 2], "", "", KEY)
    assert "1 worker(s) not made" in one_line(raised) and "Quota exceeded for cores" in one_line(raised)
    (broken,) = [w for w in cades.workers() if w.state == "error"]
    assert len(cades.workers()) == 2
    cades.terminate(broken, True)
    assert broken.id not in fake.servers and len(cades.workers()) == 1
    assert not [p for p in fake.ports.values() if p["device_id"] == broken.id]
    assert not [
        ip for ip in fake.floating_ips.values() if ip["description"].startswith(f"labvm:cades+{broken.name[-2:]}")
    ]
    assert len(fake.volumes) == 2  # the head's and the worker's that made it
    fake.in_flight = {"instances": 0, "cores": 0, "ram": 0}  # the colleague's boot is done and deleted
    index = int(broken.name.rsplit("-w", 1)[1])
    (again,) = cades.create_workers([index], "", "", KEY)
    assert again.state == "running" and again.name == broken.name


def test_dask_ports_are_open_only_between_the_cluster_servers(fake, place):
    cades = provider(place, ssh_cidr="198.51.100.7/32")
    cades.create(public_key=KEY)
    cades.create_workers([1, 2], "", "", KEY)
    cades.allow_cluster()
    cades.allow_cluster()  # idempotent (Neutron answers 409 to the same rule twice)

    (group,) = [g for g in fake.security_groups.values() if g["name"] == "labvm-cades-hedy"]
    ingress = [r for r in group["security_group_rules"] if r["direction"] == "ingress"]
    assert [
        (r["protocol"], r["port_range_min"], r["port_range_max"], r["remote_ip_prefix"], r["remote_group_id"])
        for r in ingress
    ] == [("tcp", 22, 22, "198.51.100.7/32", None), ("tcp", None, None, None, group["id"])]


def test_the_fake_refuses_what_neutron_refuses(fake, place):
    """The rules of the test above are shaped as Neutron takes them."""
    cades = provider(place)
    cades.create(public_key=KEY)
    group = cades.parts.network.ssh_group()
    network = cades.api.conn.network
    rule = dict(security_group_id=group.id, direction="ingress", ethertype="IPv4", protocol="tcp")
    # Current Neutron's words (neutron/extensions/securitygroup.py SecurityGroupMultipleRemoteEntites).
    with pytest.raises(Exception, match="Only one of remote_ip_prefix or remote_group_id or remote_address_group_id"):
        network.create_security_group_rule(**rule, remote_group_id=group.id, remote_ip_prefix="0.0.0.0/0")
    with pytest.raises(Exception, match="could not be found"):
        network.create_security_group_rule(**rule, remote_group_id="no-such-group")
    network.create_security_group_rule(**rule, remote_group_id=group.id)
    with pytest.raises(Exception, match="already exists"):
        network.create_security_group_rule(**rule, remote_group_id=group.id)


def test_a_worker_stops_starts_and_is_terminated_alone(fake, place):
    cades = provider(place, stop_action="shelve")
    head = cades.create(public_key=KEY)
    head_ip = head.address
    first, second = cades.create_workers([1, 2], "", "", KEY)

    stopped = cades.stop(first)
    assert stopped.state == "stopped" and fake.servers[first.id]["status"] == "SHELVED_OFFLOADED"
    started = cades.start(stopped)
    assert started.state == "running" and started.address == first.address  # its own floating IP again
    assert cades.find().address == head_ip

    cades.terminate(second)
    assert [w.id for w in cades.workers()] == [first.id]
    assert not [ip for ip in fake.floating_ips.values() if ip["description"] == "labvm:cades+w2:hedy"]
    assert cades.find().address == head_ip and cades.find().state == "running"
    assert [g for g in fake.security_groups.values() if g["name"] == "labvm-cades-hedy"]


def test_terminate_workers_deletes_this_owners_workers_only(fake, place, monkeypatch):
    fake.quota["cores"] = 16  # two owners' clusters
    cades = provider(place)
    head = cades.create(public_key=KEY)
    cades.create_workers([1, 2], "", "", KEY)
    monkeypatch.setenv("LABVM_OWNER", "grace")
    theirs = provider(place)
    theirs.create(public_key=KEY)
    (kept,) = theirs.create_workers([1], "", "", KEY)

    cades.terminate_workers()
    assert cades.workers() == [] and cades.find().id == head.id
    assert [w.id for w in theirs.workers()] == [kept.id]
    assert {ip["description"] for ip in fake.floating_ips.values()} == {
        "labvm:cades:hedy",
        "labvm:cades:grace",
        "labvm:cades+w1:grace",
    }

    cades.terminate(cades.find())
    assert not [g for g in fake.security_groups.values() if g["name"] == "labvm-cades-hedy"]


def test_audit_names_a_worker_whose_head_is_gone(fake, place):
    from labvm import audit

    cades = provider(place)
    head = cades.create(public_key=KEY)
    cades.create_workers([1], "", "", KEY)
    rows = audit._judge(cades.inventory(), [cades], ("cades",))
    (worker,) = [r for r in rows if r["kind"] == "instance" and r["role"] == "worker"]
    assert (worker["profile"], worker["index"], worker["next_step"]) == ("cades+w1", 1, "inv down --host cades")

    del fake.servers[head.id]  # deleted by hand
    rows = audit._judge(cades.inventory(), [cades], ("cades",))
    (worker,) = [r for r in rows if r["kind"] == "instance" and r["role"] == "worker"]
    assert worker["why"] == "a worker of cades whose head VM is gone"
    assert worker["next_step"].startswith("openstack --os-cloud cades server delete ")


@pytest.mark.parametrize(
    "quota, short",
    [
        (dict(volumes=3), "volumes: 1 of 3 used, each needs 1"),
        (dict(gigabytes=120), "volume gigabytes: 40 of 120 used, each needs 40"),
    ],
)
def test_workers_beyond_cinder_s_limits_are_refused_before_any_boot(fake, place, quota, short):
    """Nova accepts a boot whose volume Cinder then refuses (the server goes ERROR): the boot volumes are
    counted against Cinder's limits before any worker boots."""
    from labvm.errors import LabvmError

    cades = provider(place)
    cades.create(public_key=KEY)
    fake.quota.update(quota)  # the head's 40 GB volume, and room for two more of them
    before = len(fake.servers)
    with pytest.raises(LabvmError) as raised:
        cades.create_workers([1, 2, 3], "", "", KEY)
    assert one_line(raised) == (
        f"OpenStack quota: room for 2 of 3 workers (m1.medium): {short}; "
        "`inv cluster --host cades --workers 2`, or free some (openstack server list) or ask for more "
        "(cades-help@ornl.gov raises CADES quotas)"
    )
    assert len(fake.servers) == before
