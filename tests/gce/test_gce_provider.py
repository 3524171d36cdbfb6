"""GceProvider's methods called directly against tests/fake_gce.py (no SSH, no Jupyter): the
real-cloud behaviours of issue 11 (list filters, names, networks, OS Login, several owners,
the SSH rule following the caller, preflight)."""

import dataclasses
import json
import re

import pytest

from fake_gce import REGION, ZONE, FakeGce
from labvm import config
from labvm.errors import LabvmError
from gce_world import KEY, provider
from labvm.providers.base import IMAGE_AVAILABLE, IMAGE_FAILED, IMAGE_PENDING


def test_find_sends_a_filter_the_real_api_accepts(fake, tmp_path):
    gce = provider(tmp_path)
    assert gce.find() is None
    made = gce.create(public_key=KEY)
    assert gce.find() == made
    assert [i.id for i in gce.images()] == []


def test_names_carry_the_owner_and_follow_rfc1035(fake, tmp_path, monkeypatch):
    hedy = provider(tmp_path, "hedy-lamarr", monkeypatch, static_ip=True)
    made = hedy.create(public_key=KEY)
    assert made.id == "labvm-gce-hedy-lamarr"
    assert set(fake.firewalls) == {"labvm-gce-hedy-lamarr-ssh"} and set(fake.addresses) == {"labvm-gce-hedy-lamarr"}
    image = hedy.snapshot(made, "labvm")
    assert fake.images[image.id]["family"] == "labvm-gce-hedy-lamarr"

    long_owner = "a-very-long-owner-name-from-the-directory-of-an-institution-" * 2
    first = provider(tmp_path, long_owner + "one", monkeypatch)
    second = provider(tmp_path, long_owner + "two", monkeypatch)
    first_names, second_names = first.parts.head.names, second.parts.head.names
    assert first_names.name != second_names.name and len(first_names.rule) <= 63 and len(second_names.rule) <= 63
    first.create(public_key=KEY)
    second.create(public_key=KEY)  # the fake refuses any name that is not RFC 1035
    assert {first_names.name, second_names.name} <= set(fake.instances)


def test_three_owners_share_one_project_and_one_image(fake, tmp_path, monkeypatch):
    teacher = provider(tmp_path, "teacher", monkeypatch, static_ip=True)
    shared = teacher.snapshot(teacher.create(public_key=KEY), "course")
    students = {}
    for owner, cidr in [("ada", "198.51.100.1/32"), ("grace", "198.51.100.2/32"), ("alan", "198.51.100.3/32")]:
        students[owner] = provider(
            tmp_path,
            owner,
            monkeypatch,
            static_ip=True,
            ssh_cidr=cidr,
            image_family="labvm-gce-teacher",
            image_project="proj",
        )
        made = students[owner].create(public_key=KEY)
        assert made.id == f"labvm-gce-{owner}" and students[owner].find() == made
        boot = fake.instances[made.id]["disks"][0]["source"].rsplit("/", 1)[-1]
        assert fake.disks[boot]["sourceImage"].endswith(f"/images/{shared.id}")
        assert fake.firewalls[f"labvm-gce-{owner}-ssh"]["sourceRanges"] == [cidr]
        assert fake.firewalls[f"labvm-gce-{owner}-ssh"]["targetTags"] == [f"labvm-gce-{owner}-ssh"]
    from labvm import audit

    audited = json.loads(audit.report(config.load(tmp_path / "hosts.yml"), as_json=True))["resources"]
    assert {row["owner"] for row in audited if row["kind"] == "instance"} == {"teacher", "ada", "grace", "alan"}
    grace = students["grace"]
    grace.terminate(grace.find())
    assert grace.find() is None and "labvm-gce-grace" not in fake.addresses
    assert set(fake.instances) == {"labvm-gce-teacher", "labvm-gce-ada", "labvm-gce-alan"}
    assert set(fake.firewalls) == {"labvm-gce-teacher-ssh", "labvm-gce-ada-ssh", "labvm-gce-alan-ssh"}
    assert set(fake.addresses) == {"labvm-gce-teacher", "labvm-gce-ada", "labvm-gce-alan"}
    assert students["ada"].find().id == "labvm-gce-ada" and teacher.find().id == "labvm-gce-teacher"


def test_no_default_network(tmp_path, monkeypatch, fake):
    fake.networks.clear()
    fake.subnetworks.clear()
    with pytest.raises(
        LabvmError,
        match=r"profiles\.gce\.network is not set, and the project has no `default` network; "
        r"set it to one of gcloud compute networks list --project proj",
    ):
        provider(tmp_path).create(public_key=KEY)
    with pytest.raises(LabvmError, match=r"profiles\.gce\.network 'lab' is not a network of project proj"):
        provider(tmp_path, network="lab").create(public_key=KEY)
    fake.add_network("lab", subnetwork="lab-west")
    with pytest.raises(LabvmError, match=r"profiles\.gce\.subnetwork: network 'lab' has custom subnets"):
        provider(tmp_path, network="lab").create(public_key=KEY)
    with pytest.raises(LabvmError, match=r"profiles\.gce\.subnetwork: no subnetwork 'lab-east' in us-west1"):
        provider(tmp_path, subnetwork="lab-east").create(public_key=KEY)
    assert not fake.instances and not fake.firewalls

    made = provider(tmp_path, network="lab", subnetwork="lab-west").create(public_key=KEY)
    nic = fake.instances[made.id]["networkInterfaces"][0]
    assert nic["network"].endswith("/global/networks/lab") and nic["subnetwork"].endswith(
        f"/regions/{REGION}/subnetworks/lab-west"
    )
    assert fake.firewalls["labvm-gce-hedy-ssh"]["network"].endswith("/global/networks/lab")


def test_the_ssh_rule_follows_the_caller(fake, tmp_path, capsys):
    gce = provider(tmp_path)
    gce.create(public_key=KEY)
    assert fake.firewalls["labvm-gce-hedy-ssh"]["sourceRanges"] == ["198.51.100.7/32"]
    gce.admit_caller()
    assert "ssh rule" not in capsys.readouterr().out  # nothing changed, nothing said
    moved = provider(tmp_path, ssh_cidr="203.0.113.5/32")
    moved.admit_caller()
    assert "ssh rule: now admits 203.0.113.5/32 (was 198.51.100.7/32)" in capsys.readouterr().out
    assert fake.firewalls["labvm-gce-hedy-ssh"]["sourceRanges"] == ["203.0.113.5/32"]


def test_project_os_login_the_vm_opts_out(fake, tmp_path, capsys):
    fake.project_metadata["enable-oslogin"] = "TRUE"
    made = provider(tmp_path).create(public_key=KEY)
    assert "this VM opts out (enable-oslogin=FALSE)" in capsys.readouterr().out
    assert fake.login_keys(made.id) == {"debian": {KEY}} and made.user == ""


def test_project_os_login_without_the_opt_out_refuses_the_key(fake, tmp_path):
    """What labvm did before: ssh-keys alone, which OS Login ignores."""
    fake.project_metadata["enable-oslogin"] = "TRUE"
    made = provider(tmp_path).create(public_key=KEY)
    fake.instances[made.id]["metadata"]["items"] = [
        i for i in fake.instances[made.id]["metadata"]["items"] if i["key"] == "ssh-keys"
    ]
    assert fake.login_keys(made.id) == {}


def test_enforced_os_login_imports_the_key_and_logs_in_as_the_posix_user(fake, tmp_path, capsys):
    fake.project_metadata["enable-oslogin"] = "TRUE"
    fake.oslogin_enforced = True
    gce = provider(tmp_path)
    made = gce.create(public_key=KEY)
    assert made.user == "hedy_example_org" and gce.find().user == "hedy_example_org"
    assert fake.login_keys(made.id) == {"hedy_example_org": {KEY}}
    assert (
        "labvm's key is in hedy@example.org's login profile, logging in as hedy_example_org" in capsys.readouterr().out
    )
    (check,) = [c for c in gce.preflight(KEY) if c.name == "os login"]
    assert check.ok and "enforced by organisation policy" in check.detail


def test_enforced_os_login_without_a_readable_policy_is_named_by_the_environment(fake, tmp_path, monkeypatch):
    fake.oslogin_enforced = fake.orgpolicy_denied = True
    (check,) = [c for c in provider(tmp_path).preflight(KEY) if c.name == "os login"]
    assert "set LABVM_GCE_OSLOGIN=required" in check.detail
    monkeypatch.setenv("LABVM_GCE_OSLOGIN", "required")
    made = provider(tmp_path).create(public_key=KEY)
    assert made.user == "hedy_example_org" and fake.login_keys(made.id) == {"hedy_example_org": {KEY}}


def test_enforced_os_login_with_anonymous_credentials_says_what_to_do(emulator, tmp_path):
    fake = emulator
    fake.oslogin_enforced = True
    with pytest.raises(
        LabvmError, match="labvm cannot tell your Google account; run `gcloud auth application-default login`"
    ):
        provider(tmp_path).create(public_key=KEY)
    assert not fake.instances


def checks(gce) -> dict:
    return {c.name: c for c in gce.preflight(KEY)}


def test_preflight_on_a_ready_project_changes_nothing(fake, tmp_path):
    gce = provider(tmp_path, static_ip=True)
    found = checks(gce)
    assert list(found) == [
        "credentials",
        "project",
        "zone",
        "network",
        "image",
        "size",
        "quota",
        "ssh rule",
        "os login",
    ]
    assert all(c.ok for c in found.values()), found
    assert (
        found["quota"].detail
        == "room for 1 VM(s): CPUS 0/8, CPUS_ALL_REGIONS 0/32, IN_USE_ADDRESSES 0/8, STATIC_ADDRESSES 0/8"
    )
    assert found["ssh rule"].detail == "labvm-gce-hedy-ssh would be made for 198.51.100.7/32"
    assert found["os login"].detail == "off: labvm's key goes in the VM's ssh-keys metadata"
    assert not any(method != "GET" for method, path in fake.requests if path.startswith("/compute/"))
    assert not fake.instances and not fake.firewalls and not fake.addresses


def test_preflight_names_each_broken_part(fake, tmp_path):
    fake.api_disabled = True
    found = checks(provider(tmp_path))
    assert list(found) == ["credentials", "project"]
    assert (
        not found["project"].ok
        and "gcloud services enable compute.googleapis.com --project proj" in found["project"].detail
    )
    fake.api_disabled = False

    found = checks(provider(tmp_path, project="elsewhere"))
    assert not found["project"].ok and "no project 'elsewhere'" in found["project"].detail

    found = checks(provider(tmp_path, zone="us-west1-z", machine_type="e2-smal", image_family="debian-99"))
    assert not found["zone"].ok and "profiles.gce.zone: 'us-west1-z' is not a zone" in found["zone"].detail
    found = checks(provider(tmp_path, machine_type="e2-smal", image_family="debian-99", network="lab"))
    assert not found["size"].ok and "closest: e2-small" in found["size"].detail
    assert not found["image"].ok and "debian-99" in found["image"].detail
    assert not found["network"].ok and "profiles.gce.network 'lab' is not a network" in found["network"].detail

    fake.quota_limits["CPUS"] = 3.0
    found = checks(provider(tmp_path, machine_type="e2-standard-4"))
    assert not found["quota"].ok and "CPUS 0/3 leaves no room for 4 more" in found["quota"].detail

    fake.project_metadata["enable-oslogin"] = "TRUE"
    provider(tmp_path).create(public_key=KEY)
    found = checks(provider(tmp_path, ssh_cidr="203.0.113.5/32"))
    assert (
        found["ssh rule"].ok and "admits 198.51.100.7/32; `up` changes it to 203.0.113.5/32" in found["ssh rule"].detail
    )
    assert "on in project proj: labvm's VMs opt out with enable-oslogin=FALSE" in found["os login"].detail


def test_a_custom_endpoint_gets_no_credentials_and_must_be_loopback(emulator, tmp_path, monkeypatch):
    """Issue 18 item 2: LABVM_GCE_ENDPOINT (from a shared .env) must never receive the user's Google token."""
    made = provider(tmp_path).create(public_key=KEY)
    assert made.state == "running" and emulator.requests
    assert emulator.leaked_credentials == []
    (who,) = [c for c in provider(tmp_path).preflight(KEY) if c.name == "credentials"]
    assert who.detail == f"none: anonymous to the emulator at {emulator.endpoint}"

    for loopback in ("http://localhost:1", "http://127.0.0.2:8080", "http://[::1]:9"):
        monkeypatch.setenv("LABVM_GCE_ENDPOINT", loopback)
        provider(tmp_path)  # accepted: nothing is sent until a call
    for elsewhere in (
        "https://compute.attacker.example",
        "http://10.0.0.5:8080",
        "http://127.0.0.1.nip.io",
        "http://localhost.attacker.example",
    ):
        monkeypatch.setenv("LABVM_GCE_ENDPOINT", elsewhere)
        with pytest.raises(LabvmError) as refused:
            provider(tmp_path)
        assert str(refused.value) == (
            f"LABVM_GCE_ENDPOINT={elsewhere!r} is not a loopback address (127.0.0.0/8, ::1, localhost): labvm talks "
            "to a Compute emulator on this machine only; unset it to use Google's API"
        )


def changing(fake) -> list:
    """Requests that could change something: all but GET (getEffectiveOrgPolicy reads, by POST)."""
    return [r for r in fake.requests if r[0] != "GET" and not r[1].endswith(":getEffectiveOrgPolicy")]


def state(fake) -> str:
    return json.dumps(
        [fake.instances, fake.disks, fake.images, fake.addresses, fake.firewalls, fake.oslogin_profiles],
        sort_keys=True,
        default=str,
    )


def planning(tmp_path, **settings):
    gce = provider(tmp_path, static_ip=True, **settings)
    gce.plan = True
    return gce


def test_plan_on_an_empty_project_makes_nothing(fake, tmp_path, capsys):
    fake.oslogin_enforced = True  # the key import into the OS Login profile is a change too
    made = planning(tmp_path).create(public_key=KEY)
    assert (made.id, made.state) == ("(planned)", "running")
    assert changing(fake) == [] and state(fake) == state(FakeGce())
    out = capsys.readouterr().out
    for line in [
        "plan: gce: import labvm's key into hedy@example.org's OS Login profile",
        "plan: gce: create firewall rule labvm-gce-hedy-ssh (port 22 from 198.51.100.7/32)",
        "plan: gce: reserve static IP labvm-gce-hedy in us-west1",
        "plan: gce: create instance labvm-gce-hedy (e2-small) in us-west1-b",
        "plan: gce: then wait until labvm-gce-hedy is created",
    ]:
        assert line in out, out


def test_plan_changes_nothing_on_every_verb(fake, tmp_path, capsys):
    real = provider(tmp_path, static_ip=True)
    head = real.create(public_key=KEY)
    real.create_workers([1], "", "", KEY)
    image = real.snapshot(head, "labvm")
    stopped = real.stop(real.find())
    before, fake.requests[:] = state(fake), []
    gce = planning(tmp_path, ssh_cidr="203.0.113.9/32")

    gce.admit_caller()
    assert gce.start(stopped).state == "running"
    running = dataclasses.replace(stopped, state="running")
    assert gce.stop(running).state == "stopped"
    assert gce.resize(running, "e2-medium").state == "running"
    assert gce.snapshot(running, "labvm").state == IMAGE_PENDING
    gce.delete_image(image)
    assert [w.name for w in gce.create_workers([2], "", "e2-medium", KEY)] == ["labvm-gce-hedy-w2"]
    gce.allow_cluster()
    gce.terminate_workers()
    gce.terminate(running)

    assert changing(fake) == [] and state(fake) == before
    out = capsys.readouterr().out
    for line in [
        "change firewall rule labvm-gce-hedy-ssh to admit 203.0.113.9/32",
        "start instance labvm-gce-hedy",
        "stop instance labvm-gce-hedy",
        "set the machine type of labvm-gce-hedy to e2-medium",
        "create image labvm-gce-hedy-",
        f"delete image {image.id}",
        "create worker labvm-gce-hedy-w2 (e2-medium)",
        "create firewall rule labvm-gce-hedy-dask",
        "delete worker labvm-gce-hedy-w1",
        "delete instance labvm-gce-hedy and its boot disk",
        "release static IP labvm-gce-hedy",
        "delete firewall rule labvm-gce-hedy-ssh",
    ]:
        assert f"plan: gce: {line}" in out, line


def test_image_state_in_labvms_words(fake, tmp_path):
    gce = provider(tmp_path)
    made = gce.snapshot(gce.create(public_key=KEY), "labvm")
    assert made.state == IMAGE_AVAILABLE and [i.state for i in gce.images()] == [IMAGE_AVAILABLE]
    fake.images[made.id]["status"] = "PENDING"
    assert [i.state for i in gce.images()] == [IMAGE_PENDING]
    fake.images[made.id]["status"] = "DELETING"
    assert [i.state for i in gce.images()] == [IMAGE_FAILED]


@pytest.mark.parametrize(
    "owner, name",
    [
        ("hedy.lamarr", "labvm-gce-hedy-lamarr-"),
        ("hedy@lab.org", "labvm-gce-hedy-lab-org-"),
        ("Hedy Lamarr", "labvm-gce-hedy-lamarr-"),
        ("hedy", "labvm-gce-hedy"),
    ],
)
def test_owner_names_the_cloud_accepts(fake, tmp_path, monkeypatch, owner, name):
    """The fake refuses what GCE refuses: names outside RFC 1035, label values outside [a-z0-9_-]."""
    gce = provider(tmp_path, owner, monkeypatch, static_ip=True)
    head = gce.create(public_key=KEY)
    (worker,) = gce.create_workers([1], "", "", KEY)
    gce.allow_cluster()
    image = gce.snapshot(head, "Course 1")
    if name.endswith("-"):  # the owner's name had to change: a hash of it keeps it apart from others folded alike
        assert re.fullmatch(re.escape(name) + "[0-9a-f]{6}", gce.parts.head.names.name)
        name = gce.parts.head.names.name
    assert (head.id, worker.id, gce.find()) == (name, f"{name}-w1", head)
    assert set(fake.firewalls) == {f"{name}-ssh", f"{name}-dask"} and set(fake.addresses) == {name}
    assert image.id.startswith("course-1-gce-") and fake.images[image.id]["family"] == name
    gce.terminate_workers()
    gce.terminate(head)
    assert not fake.instances and not fake.firewalls and not fake.addresses


def test_each_machine_family_draws_from_its_own_cpu_quota(fake, tmp_path):
    fake.quota_limits["N2_CPUS"] = 3.0
    n2 = provider(tmp_path, machine_type="n2-standard-4")
    (quota,) = [c for c in n2.preflight(KEY) if c.name == "quota"]
    assert not quota.ok and "N2_CPUS 0/3 leaves no room for 4 more" in quota.detail
    with pytest.raises(LabvmError, match="GCE quota: Quota 'N2_CPUS' exceeded. Limit: 3.0 in region us-west1"):
        n2.create(public_key=KEY)

    fake.project_quota_limits["CPUS_ALL_REGIONS"] = 1.0
    (quota,) = [c for c in provider(tmp_path).preflight(KEY) if c.name == "quota"]
    assert not quota.ok and "CPUS_ALL_REGIONS 0/1 leaves no room for 2 more" in quota.detail

    fake.project_quota_limits["CPUS_ALL_REGIONS"] = 32.0
    fake.quota_limits.update(CPUS=1.0, PREEMPTIBLE_CPUS=4.0)  # a spot VM draws from the preemptible quota here
    (quota,) = [c for c in provider(tmp_path, spot=True).preflight(KEY) if c.name == "quota"]
    assert quota.ok and "PREEMPTIBLE_CPUS 0/4" in quota.detail and "CPUS 0/1" not in quota.detail
    provider(tmp_path, spot=True).create(public_key=KEY)
    assert fake.usage()["PREEMPTIBLE_CPUS"] == 2.0


def test_preflight_counts_the_head_and_its_workers(fake, tmp_path):
    cluster = {"workers": 2, "worker_size": "e2-standard-4"}
    (quota,) = [c for c in provider(tmp_path, cluster=cluster).preflight(KEY) if c.name == "quota"]
    assert not quota.ok and "CPUS 0/8 leaves no room for 10 more" in quota.detail  # 2 + 2 x 4
    assert "IN_USE_ADDRESSES" not in quota.detail and "or fewer" in quota.detail and "cluster.workers" in quota.detail

    gce = provider(tmp_path, cluster={"workers": 2})
    (quota,) = [c for c in gce.preflight(KEY) if c.name == "quota"]
    assert quota.ok and quota.detail.startswith("room for 3 VM(s): CPUS 0/8"), quota.detail
    gce.create(public_key=KEY)
    gce.create_workers([1], "", "", KEY)
    (quota,) = [c for c in gce.preflight(KEY) if c.name == "quota"]
    assert quota.detail == "room for 1 VM(s): CPUS 4/8, CPUS_ALL_REGIONS 4/32, IN_USE_ADDRESSES 2/8"


@pytest.mark.parametrize("status", [403, 429])
def test_a_rate_limit_is_waited_out_and_named_as_such(fake, tmp_path, monkeypatch, capsys, status):
    waits = []
    monkeypatch.setattr("time.sleep", lambda seconds: seconds and waits.append(seconds))
    fake.rate_limited, fake.rate_limit_status = 3, status
    made = provider(tmp_path).create(public_key=KEY)
    assert made.state == "running" and waits == [1, 2, 4]
    assert "gce: rate limit reached, trying again in 4s" in capsys.readouterr().out

    fake.rate_limited, waits[:] = 100, []
    with pytest.raises(LabvmError) as raised:
        provider(tmp_path).stop(made)
    assert (
        str(raised.value)
        == "GCE rate limit: project proj sent too many requests for 63s; wait a minute and run it again"
    )
    assert waits == [1, 2, 4, 8, 16, 32] and fake.instances[made.id]["status"] == "RUNNING"


def test_a_suspended_vm_is_resumed(fake, tmp_path):
    gce = provider(tmp_path)
    made = gce.create(public_key=KEY)
    fake.suspend(made.id)
    suspended = gce.find()
    assert suspended.state == "stopped"
    assert gce.start(suspended).state == "running"
    assert ("POST", f"/compute/v1/projects/proj/zones/{ZONE}/instances/{made.id}/resume") in fake.requests
    assert not any(path.endswith("/start") for _, path in fake.requests)


def test_an_unreachable_api_is_one_line(fake, tmp_path, monkeypatch):
    monkeypatch.setenv("LABVM_GCE_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    with pytest.raises(LabvmError) as raised:
        provider(tmp_path).find()
    assert (
        str(raised.value)
        == "GCE did not answer at http://127.0.0.1:9; check the network (a VPN or proxy?) and try again"
    )
