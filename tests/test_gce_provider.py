"""GceProvider's methods called directly against tests/fake_gce.py (no SSH, no Jupyter): the
real-cloud behaviours of issue 11 (list filters, names, networks, OS Login, several owners,
the SSH rule following the caller, preflight)."""

import json

import pytest
import yaml

from fake_gce import REGION, ZONE, FakeGce
from labvm import config
from labvm.errors import LabvmError

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGxhYnZtbGFidm1sYWJ2bWxhYnZtbGFidm1sYWJ2bWxh labvm"


@pytest.fixture
def fake(monkeypatch):
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    # google.auth must never probe a metadata server off this machine.
    monkeypatch.setenv("NO_GCE_CHECK", "true")
    monkeypatch.setenv("GCE_METADATA_HOST", "127.0.0.1:9")
    monkeypatch.setenv("GCE_METADATA_IP", "127.0.0.1:9")
    monkeypatch.setenv("LABVM_OWNER", "hedy")
    with FakeGce() as server:
        monkeypatch.setenv("LABVM_GCE_ENDPOINT", server.endpoint)
        yield server


def provider(tmp_path, owner=None, monkeypatch=None, **settings):
    """A GceProvider for profile `gce` of a hosts.yml holding these settings."""
    from labvm.providers.gce import GceProvider

    if owner:
        monkeypatch.setenv("LABVM_OWNER", owner)
    profile = {"provider": "gce", "project": "proj", "zone": ZONE, "user": "debian", "machine_type": "e2-small",
               "image_family": "debian-12", "ssh_cidr": "198.51.100.7/32", **settings}
    hosts = tmp_path / "hosts.yml"
    hosts.write_text(yaml.safe_dump({"default": "gce", "profiles": {"gce": profile}}))
    return GceProvider(config.load(hosts).profile("gce"))


def test_find_sends_a_filter_the_real_api_accepts(fake, tmp_path):
    gce = provider(tmp_path)
    assert gce.find() is None
    made = gce.create(public_key=KEY)
    assert gce.find() == made
    assert [i.id for i in gce.images()] == []


def test_names_carry_the_owner_and_follow_rfc1035(fake, tmp_path, monkeypatch):
    hedy = provider(tmp_path, "Hedy.Lamarr", monkeypatch, static_ip=True)
    made = hedy.create(public_key=KEY)
    assert made.id == "labvm-gce-hedy-lamarr"
    assert set(fake.firewalls) == {"labvm-gce-hedy-lamarr-ssh"} and set(fake.addresses) == {"labvm-gce-hedy-lamarr"}
    image = hedy.snapshot(made, "labvm")
    assert fake.images[image.id]["family"] == "labvm-gce-hedy-lamarr"

    long_owner = "a-very-long-owner-name-from-the-directory-of-an-institution-" * 2
    first = provider(tmp_path, long_owner + "one", monkeypatch)
    second = provider(tmp_path, long_owner + "two", monkeypatch)
    assert first.name != second.name and len(first.rule) <= 63 and len(second.rule) <= 63
    first.create(public_key=KEY)
    second.create(public_key=KEY)  # the fake refuses any name that is not RFC 1035
    assert {first.name, second.name} <= set(fake.instances)


def test_three_owners_share_one_project_and_one_image(fake, tmp_path, monkeypatch):
    teacher = provider(tmp_path, "teacher", monkeypatch, static_ip=True)
    shared = teacher.snapshot(teacher.create(public_key=KEY), "course")
    students = {}
    for owner, cidr in [("ada", "198.51.100.1/32"), ("grace", "198.51.100.2/32"), ("alan", "198.51.100.3/32")]:
        students[owner] = provider(tmp_path, owner, monkeypatch, static_ip=True, ssh_cidr=cidr,
                                   image_family="labvm-gce-teacher", image_project="proj")
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
    with pytest.raises(LabvmError, match=r"profiles\.gce\.network is not set, and the project has no `default` network; "
                                         r"set it to one of gcloud compute networks list --project proj"):
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
    assert nic["network"].endswith("/global/networks/lab") and nic["subnetwork"].endswith(f"/regions/{REGION}/subnetworks/lab-west")
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
    fake.instances[made.id]["metadata"]["items"] = [i for i in fake.instances[made.id]["metadata"]["items"]
                                                    if i["key"] == "ssh-keys"]
    assert fake.login_keys(made.id) == {}


@pytest.fixture
def user_adc(fake, tmp_path, monkeypatch):
    """ADC of a user as `gcloud auth application-default login` writes them, with a valid access token
    already in (google-auth always refreshes a user's token at Google, which no test can reach)."""
    adc = tmp_path / "adc.json"
    adc.write_text(json.dumps({"type": "authorized_user", "client_id": "id.apps.googleusercontent.com",
                               "client_secret": "secret", "refresh_token": "1//refresh", "token": "ya29.hedy",
                               "expiry": "2999-01-01T00:00:00Z"}))
    fake.tokens["ya29.hedy"] = "hedy@example.org"
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(adc))


def test_enforced_os_login_imports_the_key_and_logs_in_as_the_posix_user(fake, user_adc, tmp_path, capsys):
    fake.project_metadata["enable-oslogin"] = "TRUE"
    fake.oslogin_enforced = True
    gce = provider(tmp_path)
    made = gce.create(public_key=KEY)
    assert made.user == "hedy_example_org" and gce.find().user == "hedy_example_org"
    assert fake.login_keys(made.id) == {"hedy_example_org": {KEY}}
    assert "labvm's key is in hedy@example.org's login profile, logging in as hedy_example_org" in capsys.readouterr().out
    (check,) = [c for c in gce.preflight(KEY) if c.name == "os login"]
    assert check.ok and "enforced by organisation policy" in check.detail


def test_enforced_os_login_without_a_readable_policy_is_named_by_the_environment(fake, user_adc, tmp_path, monkeypatch):
    fake.oslogin_enforced = fake.orgpolicy_denied = True
    (check,) = [c for c in provider(tmp_path).preflight(KEY) if c.name == "os login"]
    assert "set LABVM_GCE_OSLOGIN=required" in check.detail
    monkeypatch.setenv("LABVM_GCE_OSLOGIN", "required")
    made = provider(tmp_path).create(public_key=KEY)
    assert made.user == "hedy_example_org" and fake.login_keys(made.id) == {"hedy_example_org": {KEY}}


def test_enforced_os_login_with_anonymous_credentials_says_what_to_do(fake, tmp_path):
    fake.oslogin_enforced = True
    with pytest.raises(LabvmError, match="labvm cannot tell your Google account; run `gcloud auth application-default login`"):
        provider(tmp_path).create(public_key=KEY)
    assert not fake.instances


def checks(gce) -> dict:
    return {c.name: c for c in gce.preflight(KEY)}


def test_preflight_on_a_ready_project_changes_nothing(fake, tmp_path):
    gce = provider(tmp_path, static_ip=True)
    found = checks(gce)
    assert list(found) == ["credentials", "project", "zone", "network", "image", "size", "quota", "ssh rule", "os login"]
    assert all(c.ok for c in found.values()), found
    assert found["quota"].detail == "CPUS 0/8, IN_USE_ADDRESSES 0/8, STATIC_ADDRESSES 0/8"
    assert found["ssh rule"].detail == "labvm-gce-hedy-ssh would be made for 198.51.100.7/32"
    assert found["os login"].detail == "off: labvm's key goes in the VM's ssh-keys metadata"
    assert not any(method != "GET" for method, path in fake.requests if path.startswith("/compute/"))
    assert not fake.instances and not fake.firewalls and not fake.addresses


def test_preflight_names_each_broken_part(fake, tmp_path):
    fake.api_disabled = True
    found = checks(provider(tmp_path))
    assert list(found) == ["credentials", "project"]
    assert not found["project"].ok and "gcloud services enable compute.googleapis.com --project proj" in found["project"].detail
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
    assert found["ssh rule"].ok and "admits 198.51.100.7/32; `up` changes it to 203.0.113.5/32" in found["ssh rule"].detail
    assert "on in project proj: labvm's VMs opt out with enable-oslogin=FALSE" in found["os login"].detail
