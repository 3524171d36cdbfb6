"""`inv up --plan` with no credentials at all (an empty HOME, no cloud variables), as a newcomer runs it before
an admin has given them an account: it says it could not look, what a first `up` would make and which rights
to ask an admin for, makes nothing (no cloud is reachable: no endpoint is set), and exits 0 (issue 28 C6)."""

import os
import subprocess

import pytest
import yaml

from realhost import INV

PROFILES = {
    "aws": {"provider": "aws", "region": "us-west-2", "instance_type": "t3.small", "elastic_ip": True},
    "gce": {"provider": "gce", "project": "lab-project", "zone": "europe-west1-b", "machine_type": "e2-small"},
    "openstack": {"provider": "openstack", "cloud": "lab", "image": "ubuntu-24.04", "user": "ubuntu"},
}
# What each cloud's first `up` would make, and one right of each list (the rest is read from labvm's code).
MAKES = {
    "aws": ["key pair labvm-hedy-", "security group labvm-lab-hedy", "instance labvm-lab: t3.small", "Elastic IP"],
    "gce": ["firewall rule labvm-lab-hedy-ssh", "VM labvm-lab-hedy: e2-small", "debian-cloud/debian-12"],
    "openstack": ["key pair labvm-hedy-", "security group labvm-lab-hedy", "server labvm-lab-hedy: m1.small"],
}
ASKS = {"aws": "ec2:RunInstances", "gce": "compute.instances.create", "openstack": "os_compute_api:servers:create"}
SAYS = {
    "aws": "no AWS credentials found",
    "gce": "no Google Application Default Credentials",
    "openstack": "no entry 'lab' in",
}


def inv(cloud: str, folder, *args: str) -> subprocess.CompletedProcess:
    """`inv <args> --host lab` on a laptop with no credentials at all: an empty HOME, no cloud variables."""
    home = folder / "home"
    home.mkdir(exist_ok=True)
    hosts = folder / "hosts.yml"
    hosts.write_text(yaml.safe_dump({"profiles": {"lab": PROFILES[cloud]}}))
    kept = ("PATH", "LANG", "LC_ALL", "SYSTEMROOT", "TMPDIR")  # no AWS_*, OS_*, GOOGLE_*, CLOUDSDK_*
    env = {k: v for k, v in os.environ.items() if k in kept}
    env.update(HOME=str(home), LABVM_HOSTS=str(hosts), LABVM_OWNER="hedy", AWS_EC2_METADATA_DISABLED="true")
    env["NO_GCE_CHECK"] = "True"  # google-auth asks the metadata server only on GCE (google/auth/compute_engine)
    command = [*INV, *args, "--host", "lab"]
    return subprocess.run(command, env=env, cwd=folder, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("cloud", sorted(PROFILES))
def test_up_plan_without_credentials_says_what_it_would_make_and_what_to_ask_for(cloud, tmp_path):
    result = inv(cloud, tmp_path, "up", "--plan", "--no-browser")
    lines = result.stdout.splitlines()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    looked = [line for line in lines if line.startswith(f"plan: {cloud}: could not look: ")]
    assert looked and SAYS[cloud] in looked[0], result.stdout
    made = next(line for line in lines if line.startswith("plan: a first up would make: "))
    assert all(item in made for item in MAKES[cloud]), made
    asked = next(line for line in lines if line.startswith("plan: ask an admin for: "))
    assert ASKS[cloud] in asked.split(": ", 1)[1].split(", "), asked
    assert not any(path.is_file() for path in (tmp_path / "home").rglob("*")), "up --plan wrote files under HOME"


@pytest.mark.parametrize("cloud", ["aws", "gce"])  # the SDK finds none at the first call, or as the client is made
def test_create_plan_without_credentials_says_the_same(cloud, tmp_path):
    result = inv(cloud, tmp_path, "create", "--plan")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"plan: {cloud}: could not look: {SAYS[cloud]}" in result.stdout
    assert "plan: a first up would make: " in result.stdout and "plan: ask an admin for: " in result.stdout


@pytest.mark.parametrize("cloud", sorted(PROFILES))
def test_check_up_and_plan_word_no_credentials_the_same(cloud, tmp_path):
    planned = inv(cloud, tmp_path, "up", "--plan", "--no-browser").stdout
    line = next(x for x in planned.splitlines() if x.startswith(f"plan: {cloud}: could not look: "))
    said = line.split(": could not look: ", 1)[1]
    up = inv(cloud, tmp_path, "up", "--no-browser")
    check = inv(cloud, tmp_path, "check")
    assert up.returncode == 1 and up.stderr.strip().splitlines()[-1] == f"labvm: {said}"
    assert check.returncode == 1 and said in [x.split(None, 2)[-1] for x in check.stdout.splitlines()]


def test_every_openstack_call_labvm_makes_has_its_policy_rule():
    # permissions() is read from the code: a new openstacksdk call without its rule would be left unasked.
    from labvm.providers.openstack import permissions

    assert permissions.calls() - set(permissions.POLICIES) == set()
    assert "compute.create_server" in permissions.calls()


def test_gce_permissions_are_read_from_the_clients_labvm_calls():
    # api.py's clients name the REST collections; each method names its permission (insert creates).
    from labvm.providers.gce import permissions

    assert permissions.collections()["images_client"] == "images"
    found = permissions.permissions()
    assert {"compute.instances.create", "compute.zoneOperations.get", "compute.instances.setMachineType"} <= set(found)
    assert "compute.instances.osLogin" in found  # where OS Login is on, the SSH login itself needs it
    assert all(p.startswith("compute.") and ".insert" not in p for p in found)
