"""What a real OpenStack (CADES) cloud does that a first `inv up` meets, on the fake of fake_openstack.py
(each behaviour there cites its source): provider-level, the provider built from a hosts.yml as
the session builds it, no SSH.  Issue 11, items 3, 4, 9-13, 18 and `inv check`'s preflight."""

import socket
from datetime import datetime, timedelta, timezone

import pytest

from fake_openstack import FakeOpenStack, fingerprint
from openstack_world import KEY, new_key, one_line, provider
from labvm import audit
from labvm.errors import LabvmError
from labvm.providers.base import parse_time

pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # openstacksdk's own notices


# -- 9. a boot-from-volume snapshot is a Cinder snapshot; the volume outlives the server -------


def test_pruning_an_image_deletes_its_volume_snapshot_and_then_the_volume_left_behind(fake, place):
    cades = provider(place)
    inst = cades.create(public_key=KEY)
    image = cades.snapshot(inst, "labvm")
    (snapshot,) = fake.snapshots.values()
    assert snapshot["metadata"] == {"labvm:profile": "cades", "labvm:owner": "hedy"}
    cades.terminate(inst)
    (volume,) = fake.volumes.values()  # delete_on_termination, kept by its snapshot
    assert volume["status"] == "available"

    rows = {r.id: r for r in cades.inventory()}
    assert rows[volume["id"]].kind == "volume" and rows[volume["id"]].state == "unattached"
    assert rows[volume["id"]].delete == (
        f"openstack --os-cloud cades image delete {image.id} && openstack --os-cloud cades volume snapshot delete "
        f"{snapshot['id']} && openstack --os-cloud cades volume delete {volume['id']}"
    )
    assert snapshot["id"] not in rows  # its image is there: not a zombie of its own

    cades.delete_image(image)
    assert fake.images.get(image.id) is None and fake.snapshots == {} and fake.volumes == {}


def test_audit_lists_a_volume_snapshot_whose_image_is_gone(fake, place):
    cades = provider(place)
    inst = cades.create(public_key=KEY)
    image = cades.snapshot(inst, "labvm")
    fake.images.pop(image.id)  # deleted by hand (`openstack image delete`): Glance leaves the snapshot
    (snapshot,) = fake.snapshots
    rows = {r.id: r for r in cades.inventory()}
    assert rows[snapshot].kind == "snapshot" and rows[snapshot].owner == "hedy"
    assert rows[snapshot].delete == f"openstack --os-cloud cades volume snapshot delete {snapshot}"
    (row,) = [r for r in audit._judge(list(rows.values()), [cades], ("cades",)) if r["id"] == snapshot]
    assert row["next_step"] == rows[snapshot].delete


# -- 10. SHELVED stays SHELVED where the cloud does not offload at once ------------------------


def test_an_image_backed_server_that_stays_shelved_is_stopped_and_resumes(fake, place):
    fake.shelved_offload_time = -1
    cades = provider(place, volume_size=None, stop_action="shelve")
    inst = cades.stop(cades.create(public_key=KEY))
    assert inst.state == "stopped" and fake.servers[inst.id]["status"] == "SHELVED"
    assert cades.find().state == "stopped"
    assert cades.start(inst).state == "running"


def test_audit_advice_for_a_shelved_server_is_one_that_works_there(fake, place):
    cades = provider(place, stop_action="shelve")
    inst = cades.stop(cades.create(public_key=KEY))
    fake.servers[inst.id]["OS-SRV-USG:launched_at"] = "2020-01-01T00:00:00.000000"
    (row,) = [r for r in audit._judge(cades.inventory(), [cades], ("cades",)) if r["kind"] == "instance"]
    assert row["state"] == "shelved"
    # Nova refuses createImage on a shelved server: the advice starts it first.
    assert row["next_step"] == "inv start --host cades, inv snapshot --host cades, then inv terminate --host cades"
    with pytest.raises(LabvmError) as refused:
        cades.snapshot(inst, "labvm")
    assert one_line(refused).endswith("is shelved: `inv start --host cades` first, then `inv snapshot --host cades`")


# -- 11. resize: NoValidHost rolls back to ACTIVE; a SHUTOFF server stays SHUTOFF ----------------


def test_a_resize_without_room_rolls_back_and_says_so(fake, place):
    cades = provider(place)
    inst = cades.create(public_key=KEY)
    fake.fail_next_resize = True
    with pytest.raises(LabvmError) as failed:
        cades.resize(inst, "m1.large")
    assert one_line(failed) == (
        f"resize to m1.large did not happen: Nova put {inst.id} back to ACTIVE on m1.medium (no host had room: "
        f"NoValidHost, most often); `openstack --os-cloud cades server event list {inst.id}` tells why"
    )
    assert fake.servers[inst.id]["flavor"]["original_name"] == "m1.medium"


def test_a_stopped_server_is_resized_and_stays_stopped(fake, place, capsys):
    cades = provider(place, stop_action="stop")
    inst = cades.stop(cades.create(public_key=KEY))
    resized = cades.resize(inst, "m1.large")
    assert (resized.state, resized.size) == ("stopped", "m1.large")
    assert f"openstack: {inst.id} is m1.large, SHUTOFF as before" in capsys.readouterr().out


# -- issue 28: a resume moves the last start the terminate guard reads ---------------------------


@pytest.mark.parametrize("stop_action", ["stop", "shelve"])
def test_an_image_older_than_a_resume_is_no_longer_newer_than_the_last_start(fake, place, stop_action):
    """Built two hours ago, imaged an hour ago, stopped and started now: the image misses what was done since,
    so it is not newer than the last start (terminate is refused without --force).  os-start leaves Nova's
    launched_at where the build put it; the action log has the start."""
    cades = provider(place, stop_action=stop_action)
    inst = cades.create(public_key=KEY)
    image = cades.snapshot(inst, "labvm")
    fake.servers[inst.id]["OS-SRV-USG:launched_at"] = ago(hours=2, precise=True)
    fake.images[image.id]["created_at"] = ago(hours=1)
    cades.start(cades.stop(inst))
    started = cades.last_start(inst)
    assert started > parse_time(ago(minutes=1))
    assert [i.id for i in cades.images() if parse_time(i.created) > started] == []


def test_status_and_audit_count_from_the_last_start_not_the_build(fake, place):
    """Built two days ago, stopped and started now: `status` says it has run minutes, not two days, and
    once stopped again `audit` does not call it "not started for 2 days" (launched_at stays at the build)."""
    cades = provider(place)
    inst = cades.create(public_key=KEY)
    fake.servers[inst.id]["OS-SRV-USG:launched_at"] = ago(days=2, precise=True)
    running = cades.start(cades.stop(inst))
    assert cades.running_since(running) > parse_time(ago(minutes=1))
    cades.stop(running)
    (row,) = [r for r in cades.inventory() if r.kind == "instance"]
    assert row.since and row.since > parse_time(ago(minutes=1))


def ago(precise: bool = False, **delta) -> str:
    """A time stamp as Nova's launched_at (microseconds, no zone) or Glance's created_at ("Z") writes it."""
    stamp = datetime.now(timezone.utc) - timedelta(**delta)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.%f") if precise else stamp.strftime("%Y-%m-%dT%H:%M:%SZ")


# -- 12. ERROR: the fault, no endless resume, terminate works ---------------------------------


def test_a_server_in_error_shows_its_fault_and_is_not_resumed(fake, place):
    cades = provider(place)
    fake.fail_next_boot = "No valid host was found. There are not enough hosts available."
    with pytest.raises(LabvmError) as failed:
        cades.create(public_key=KEY)
    assert "went ERROR: No valid host was found. There are not enough hosts available." in one_line(failed)
    inst = cades.find()
    assert inst.state == "error"
    with pytest.raises(LabvmError) as refused:
        cades.start(inst)
    assert one_line(refused) == (
        f"{inst.id} is in ERROR: No valid host was found. There are not enough hosts available.; "
        f"`inv up --host cades --replace` deletes it and makes a new one"
    )
    cades.terminate(inst)
    assert fake.servers == {} and cades.find() is None


# -- 13. authentication as CADES users meet it -----------------------------------------------


def test_a_horizon_clouds_yaml_without_a_password(fake, place):
    (place / "clouds.yaml").write_text(fake.clouds_yaml("cades", password=None))
    with pytest.raises(LabvmError) as missing:
        provider(place)
    assert one_line(missing) == (
        "clouds.yaml entry 'cades' has no password (Horizon's download leaves it out): add `password:` under "
        "its auth, put it in secure.yaml, or use an application credential (auth_type: v3applicationcredential)"
    )


def test_an_application_credential_works(fake, place):
    (place / "clouds.yaml").write_text(fake.app_credential_clouds_yaml("cades"))
    assert provider(place).create(public_key=KEY).state == "running"


def test_a_private_ca_is_honoured_and_its_absence_named(tmp_path, monkeypatch):
    monkeypatch.delenv("OS_CLOUD", raising=False)
    with FakeOpenStack(tls=True) as fake:
        clouds = tmp_path / "clouds.yaml"
        monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(clouds))
        clouds.write_text(fake.clouds_yaml("cades"))
        with pytest.raises(LabvmError) as untrusted:
            provider(tmp_path)
        assert one_line(untrusted) == (
            f"the TLS certificate of {fake.auth_url} is not trusted here; set `cacert: /path/to/your-site-ca.pem` "
            f"in clouds.yaml entry 'cades' (your site's CA bundle)"
        )
        clouds.write_text(fake.clouds_yaml("cades", extra=f"    cacert: {fake.ca_file}\n"))
        assert provider(tmp_path).find() is None


def test_off_the_vpn_a_connect_timeout_is_one_line(fake, place):
    """A black hole on loopback: a listening socket whose accept queue is full drops new SYNs."""
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(0)
    filler = []
    while True:  # Linux queues backlog+1 connections; once a connect times out the hole is black
        try:
            filler.append(socket.create_connection(hole.getsockname(), timeout=0.5))
        except TimeoutError:
            break
    url = f"http://127.0.0.1:{hole.getsockname()[1]}/identity/v3"
    try:
        (place / "clouds.yaml").write_text(
            fake.clouds_yaml("cades", extra="    api_timeout: 1\n").replace(fake.auth_url, url)
        )
        with pytest.raises(LabvmError) as timed_out:
            provider(place)
        assert one_line(timed_out) == (
            f"cannot reach the OpenStack API of 'cades' ({url}): no answer; is the VPN up? "
            f"(`openstack --os-cloud cades token issue` tries the same)"
        )
    finally:
        for sock in [*filler, hole]:
            sock.close()


def test_openrc_users_set_cloud_envvars(fake, place, monkeypatch):
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", "/nonexistent")
    with pytest.raises(LabvmError) as unset:
        provider(place, cloud="envvars")
    assert one_line(unset).endswith(
        "profiles.cades.cloud: envvars reads OS_AUTH_URL, OS_USERNAME, ... from the environment: "
        "`source` your openrc file (Horizon: API Access, Download OpenStack RC File) first"
    )
    for name, value in dict(
        OS_AUTH_URL=fake.auth_url,
        OS_USERNAME="hedy",
        OS_PASSWORD="secret",
        OS_PROJECT_NAME="lab",
        OS_USER_DOMAIN_NAME="Default",
        OS_PROJECT_DOMAIN_NAME="Default",
        OS_REGION_NAME="RegionOne",
        OS_IDENTITY_API_VERSION="3",
    ).items():
        monkeypatch.setenv(name, value)
    assert provider(place, cloud="envvars").create(public_key=KEY).state == "running"
    monkeypatch.delenv("OS_PASSWORD")  # an openrc asks for it; Ctrl-C there leaves it unset
    with pytest.raises(LabvmError) as no_password:
        provider(place, cloud="envvars")
    assert one_line(no_password) == "OS_PASSWORD is not set: `source` your openrc file again (it asks for the password)"


# -- 4. a key pair of the same name with another key (a second laptop) ------------------------


def test_a_key_pair_of_another_laptop_is_never_reused(fake, place):
    other = new_key("other-laptop")
    fake.keypairs["labvm-hedy"] = {
        "name": "labvm-hedy",
        "public_key": other,
        "type": "ssh",
        "fingerprint": fingerprint(other),
        "user_id": fake.user_id,
    }
    inst = provider(place).create(public_key=KEY)
    key_name = fake.servers[inst.id]["key_name"]
    assert fake.keypairs[key_name]["fingerprint"] == fingerprint(KEY)
    assert fake.keypairs["labvm-hedy"]["public_key"] == other  # untouched


# -- 3. the SSH rule -----------------------------------------------------------------------------


def test_admit_caller_restores_labvm_s_ssh_rule(fake, place, capsys):
    cades = provider(place)
    cades.create(public_key=KEY)
    capsys.readouterr()
    cades.admit_caller()
    assert capsys.readouterr().out == ""  # nothing to change
    (group,) = [g for g in fake.security_groups.values() if g["name"] == "labvm-cades-hedy"]
    for rule in [r for r in group["security_group_rules"] if r["direction"] == "ingress"]:
        group["security_group_rules"].remove(rule)
        del fake.security_group_rules[rule["id"]]
    cades.admit_caller()
    assert capsys.readouterr().out == "ssh rule: now admits 0.0.0.0/0 (was none)\n"
    assert [
        (r["port_range_min"], r["remote_ip_prefix"])
        for r in group["security_group_rules"]
        if r["direction"] == "ingress"
    ] == [(22, "0.0.0.0/0")]


def test_under_plan_a_moved_laptop_s_old_ssh_rule_is_printed_and_kept(fake, place, capsys):
    provider(place, ssh_cidr="203.0.113.5/32").create(public_key=KEY)
    moved = provider(place, ssh_cidr="198.51.100.7/32")
    moved.plan = True
    capsys.readouterr()
    moved.admit_caller()
    planned = capsys.readouterr().out
    assert "plan: openstack: remove the SSH rule from 203.0.113.5/32" in planned, planned
    (group,) = [g for g in fake.security_groups.values() if g["name"] == "labvm-cades-hedy"]
    ingress = [r["remote_ip_prefix"] for r in group["security_group_rules"] if r["direction"] == "ingress"]
    assert ingress == ["203.0.113.5/32"]  # the laptop at the old address still gets in


# -- 18. a class: three owners, one hosts.yml, one project, one shared image ---------------------


def test_three_owners_share_a_profile_and_an_image(fake, place, monkeypatch):
    teacher = provider(place)
    shared = teacher.snapshot(teacher.create(public_key=KEY), "course")
    students = {}
    for owner in ("ada", "grace", "alan"):
        monkeypatch.setenv("LABVM_OWNER", owner)
        students[owner] = provider(place)
        students[owner].create(shared.id, public_key=new_key(owner))
    names = lambda table: sorted(item["name"] for item in table.values())  # noqa: E731
    assert names(fake.servers) == ["labvm-cades-ada", "labvm-cades-alan", "labvm-cades-grace", "labvm-cades-hedy"]
    assert [g for g in names(fake.security_groups) if g.startswith("labvm-")] == names(fake.servers)
    assert len(fake.keypairs) == 4
    addresses = {ip["description"]: ip["floating_ip_address"] for ip in fake.floating_ips.values()}
    assert sorted(addresses) == ["labvm:cades:ada", "labvm:cades:alan", "labvm:cades:grace", "labvm:cades:hedy"]

    grace = students["grace"]
    grace.terminate(grace.find())
    assert names(fake.servers) == ["labvm-cades-ada", "labvm-cades-alan", "labvm-cades-hedy"]
    assert "labvm-cades-grace" not in names(fake.security_groups)
    assert sorted(ip["description"] for ip in fake.floating_ips.values()) == [
        "labvm:cades:ada",
        "labvm:cades:alan",
        "labvm:cades:hedy",
    ]
    assert {o: students[o].find() is not None for o in students} == {"ada": True, "grace": False, "alan": True}
    owners = sorted(r.owner for r in teacher.inventory() if r.kind == "instance")
    assert owners == ["ada", "alan", "hedy"]


# -- inv check: preflight, read-only, one line per check ---------------------------------------


def test_preflight_on_a_ready_account(fake, place):
    cades = provider(place)
    requests = len(fake.requests)
    found = cades.preflight(KEY)
    assert [c.name for c in found] == [
        "credentials",
        "network",
        "floating ip pool",
        "image",
        "size",
        "quota",
        "key pair",
        "ssh rule",
    ]
    assert all(c.ok for c in found), found
    assert {c.name: c.detail for c in found}["credentials"] == "user hedy, project lab on 'cades'"
    assert not [r for r in fake.requests[requests:] if r[0] != "GET"]  # read-only


@pytest.mark.parametrize(
    "broken, name, detail",
    [
        (dict(network="nonet"), "network", "profiles.cades.network: 'nonet' not found; list: openstack network list"),
        (
            dict(floating_ip_pool="lab-net"),
            "floating ip pool",
            "profiles.cades.floating_ip_pool: 'lab-net' is not an external network; list: openstack network list --external",
        ),
        (
            dict(image="Ubuntu 99.04"),
            "image",
            "profiles.cades.image: no image 'Ubuntu 99.04' (list: openstack image list)",
        ),
        (dict(flavor="m1.meduim"), "size", "profiles.cades.flavor: no flavor 'm1.meduim'; closest: m1.medium"),
    ],
)
def test_preflight_names_a_broken_setting(fake, place, broken, name, detail):
    found = {c.name: c for c in provider(place, **broken).preflight(KEY)}
    assert not found[name].ok and detail in found[name].detail
    assert [c.name for c in found.values() if not c.ok] == [name]


def test_preflight_quota_key_pair_and_credentials(fake, place, monkeypatch):
    monkeypatch.setenv("LABVM_OWNER", "grace")  # a lab member's server uses 2 of the 3 cores
    provider(place).create(public_key=KEY)
    monkeypatch.setenv("LABVM_OWNER", "hedy")
    cades = provider(place)
    fake.quota["cores"] = 3  # m1.medium uses 2 of them; another needs 2 more
    fake.quota["gigabytes"] = 60  # 40 GB used; another boot volume needs 40
    found = {c.name: c for c in cades.preflight(new_key("second-laptop"))}
    assert not found["quota"].ok and found["quota"].detail == (
        "cores: 2 of 3 used, m1.medium needs 2; volume gigabytes: 40 of 60 used, volume_size needs 40; "
        "free some (openstack server list) or ask for more (cades-help@ornl.gov raises CADES quotas)"
    )
    assert (
        found["key pair"].ok
        and "labvm-hedy-" in found["key pair"].detail
        and "would import" in found["key pair"].detail
    )

    # Refused credentials stop the provider before any check: one line, with the command that tries them
    # (the session shows it as the one failing "credentials" line of `inv check`).
    (place / "clouds.yaml").write_text(fake.clouds_yaml("cades", password="not-it"))
    with pytest.raises(LabvmError) as refused:
        provider(place)
    assert one_line(refused) == (
        "OpenStack refused the credentials of clouds.yaml entry 'cades'; check its auth "
        "section (`openstack --os-cloud cades token issue` tries them)"
    )


def test_preflight_before_labvm_has_a_key(fake, place):
    found = {c.name: c for c in provider(place).preflight("")}
    assert found["key pair"].ok and "the first `inv up` makes it" in found["key pair"].detail


# -- issue 17 ------------------------------------------------------------------------------------

TABLES = (
    "servers",
    "keypairs",
    "security_groups",
    "security_group_rules",
    "floating_ips",
    "ports",
    "volumes",
    "snapshots",
    "images",
)


def cloud_state(fake) -> dict:
    import copy

    return copy.deepcopy({table: getattr(fake, table) for table in TABLES})


def changes(fake, before: int) -> list:
    """Requests since `before` that could change the cloud: anything but reads and the login."""
    return [r for r in fake.requests[before:] if r[0] != "GET" and r != ("POST", "/identity/v3/auth/tokens")]


def test_plan_makes_nothing_on_an_empty_project(fake, place, capsys):
    cades = provider(place)
    cades.plan = True
    before, state = len(fake.requests), cloud_state(fake)
    made = cades.create(public_key=KEY)
    assert changes(fake, before) == [] and cloud_state(fake) == state
    assert made.name == "labvm-cades-hedy" and made.size == "m1.medium"
    out = capsys.readouterr().out
    for step in (
        "import labvm's public key as keypair labvm-hedy-",
        "create security group labvm-cades-hedy",
        "boot m1.medium labvm-cades-hedy",
        "take a floating IP from public",
    ):
        assert f"plan: openstack: {step}" in out, out


def test_plan_changes_nothing_for_any_verb(fake, place, capsys):
    cades = provider(place, stop_action="shelve")
    head = cades.create(public_key=KEY)
    (first,) = cades.create_workers([1], "", "", KEY)
    image = cades.snapshot(head, "labvm")
    stopped = cades.stop(first)
    cades.find()  # the head's snapshot task ends at its next look
    assert fake.pending == {}  # every transition has completed: a read under plan changes nothing
    cades.plan = True
    before, state = len(fake.requests), cloud_state(fake)
    verbs = [
        lambda: cades.stop(head),
        lambda: cades.start(stopped),
        lambda: cades.resize(head, "m1.large"),
        lambda: cades.snapshot(head, "labvm"),
        lambda: cades.delete_image(image),
        lambda: cades.create_workers([2, 3], "", "", new_key("another-laptop")),
        cades.allow_cluster,
        cades.admit_caller,
        cades.terminate_workers,
        lambda: cades.terminate(head),
    ]
    for verb in verbs:
        verb()
        assert changes(fake, before) == [] and cloud_state(fake) == state
    out = capsys.readouterr().out
    for step in (
        f"stop {head.id}",
        f"shelve {head.id}",
        f"unshelve {first.id}",
        f"resize {head.id} to m1.large",
        f"confirm the resize of {head.id}",
        "make image labvm-cades-",
        f"delete image {image.id}",
        "boot m1.medium labvm-cades-hedy-w2",
        "let the cluster's machines reach each other",
        f"delete server {first.id}",
        f"delete server {head.id}",
    ):
        assert f"plan: openstack: {step}" in out, step
    assert "plan: openstack: then wait until" in out


@pytest.mark.parametrize("owner", ["hedy.lamarr", "hedy@lab.org", "Hedy Lamarr"])
def test_names_nova_and_neutron_take_for_any_owner(fake, place, monkeypatch, owner):
    monkeypatch.setenv("LABVM_OWNER", owner)
    cades = provider(place)
    inst = cades.create(public_key=KEY)
    (keypair,) = fake.keypairs
    assert keypair.startswith("labvm-") and all(c.isalnum() or c in "_- " for c in keypair)
    server = fake.servers[inst.id]
    assert server["metadata"]["labvm:owner"] == owner  # found by the owner as it is
    assert all(c.isalnum() or c in "._-:+" for c in server["name"]) and cades.find().id == inst.id
    (worker,) = cades.create_workers([1], "", "", KEY)
    assert worker.name.endswith("-w1") and [w.id for w in cades.workers()] == [worker.id]
    cades.terminate_workers()
    cades.terminate(inst)
    assert fake.servers == {} and not [g for g in fake.security_groups.values() if g["name"] != "default"]
    assert fake.floating_ips == {}


def test_image_states_are_labvm_s_words_and_a_killed_snapshot_ends_the_wait(fake, place):
    from labvm.providers.base import IMAGE_AVAILABLE, IMAGE_FAILED, IMAGE_PENDING

    cades = provider(place, volume_size=None)
    inst = cades.create(public_key=KEY)
    image = cades.snapshot(inst, "labvm")
    assert image.state == IMAGE_AVAILABLE and [i.state for i in cades.images()] == [IMAGE_AVAILABLE]
    fake.images[image.id]["status"] = "saving"
    assert [i.state for i in cades.images()] == [IMAGE_PENDING]
    fake.fail_next_snapshot = True
    with pytest.raises(LabvmError) as killed:  # openstacksdk's own wait looks for "error" only: 30 minutes
        cades.snapshot(inst, "labvm")
    assert "went killed" in one_line(killed) and "openstack --os-cloud cades image delete" in one_line(killed)
    assert sorted(i.state for i in cades.images()) == [IMAGE_FAILED, IMAGE_PENDING]


def test_on_a_dual_stack_network_the_cluster_address_is_the_ipv4_one(fake, place):
    cades = provider(place, network="dual-net")
    inst = cades.create(public_key=KEY)
    assert inst.private_address == "10.1.0.10"  # the cluster rule is IPv4; the IPv6 address comes first
    assert cades.find().private_address == "10.1.0.10"


def test_preflight_counts_the_cluster_s_workers_and_their_floating_ips(fake, place):
    cluster = {"workers": 2, "worker_size": "m1.large"}
    fake.quota["cores"] = 2 + 4 * 2 - 1  # the head and two m1.large workers need one more
    fake.quota["floatingip"] = 2
    found = {c.name: c for c in provider(place, cluster=cluster).preflight(KEY)}
    assert not found["quota"].ok and found["quota"].detail == (
        "cores: 0 of 9 used, the head (m1.medium) and 2 workers (m1.large) need 10; "
        "floating IPs: 0 of 2 used, 3 more; free some (openstack server list) or ask for more "
        "(cades-help@ornl.gov raises CADES quotas)"
    )
    fake.quota.update(cores=10, floatingip=3)
    found = {c.name: c for c in provider(place, cluster=cluster).preflight(KEY)}
    assert found["quota"].ok and found["quota"].detail.startswith("room for the head and 2 workers: instances 0/10, ")
    assert "floating IPs 0/3, volumes 0/10" in found["quota"].detail


def test_preflight_names_an_unknown_worker_size(fake, place):
    found = {c.name: c for c in provider(place, cluster={"workers": 1, "worker_size": "m1.larg"}).preflight(KEY)}
    assert [c.name for c in found.values() if not c.ok] == ["size"]
    assert found["size"].detail.endswith(
        "hosts.yml: profiles.cades.cluster.worker_size: no flavor 'm1.larg'; closest: m1.large, m1.small "
        "(list: openstack flavor list)"
    )


# -- issue 28, A2: a service that answers 503 while a verb lists ------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/compute/v2.1/servers",  # find, stop, terminate, workers: Nova's server list
        "/image/v2/images",  # images
        "/network/v2.0/floatingips",  # the floating IPs released by terminate
        "/network/v2.0/security-group-rules",  # admit_caller's SSH rules
        "/network/v2.0/ports",  # the port a worker's network is read from
    ],
)
def test_a_503_while_a_verb_lists_is_one_line(fake, place, path):
    """openstacksdk's list calls are generators that ask the cloud only when iterated: each list labvm
    reads is read inside its error handling, so a 503 is the cloud's one line, never a traceback."""
    cades = provider(place)
    inst = cades.create(public_key=KEY)
    fake.unavailable = path
    verbs = {
        "/compute/v2.1/servers": [cades.find, lambda: cades.stop(inst), lambda: cades.terminate(inst), cades.workers],
        "/image/v2/images": [cades.images],
        "/network/v2.0/floatingips": [lambda: cades.terminate(inst)],
        "/network/v2.0/security-group-rules": [cades.admit_caller],
        "/network/v2.0/ports": [lambda: cades.create_workers([1], "", "", KEY)],
    }[path]
    for verb in verbs:
        with pytest.raises(LabvmError) as unavailable:
            verb()
        line = one_line(unavailable)
        assert line.startswith(f"OpenStack answered 503 for {fake.base}{path}"), line
        assert line.endswith(
            ": The server is currently unavailable. Please try again at a later time.; nothing is wrong on this "
            "side: try again in a few minutes"
        ), line
