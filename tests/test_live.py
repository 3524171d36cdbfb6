"""The whole lifecycle as a user runs it, on every cloud the suite has: moto, the OpenStack fake and the GCE
fake in every test run, and a real account when asked for (`pytest -m live_aws`, live_openstack, live_gce;
without credentials each skips).  The same code path everywhere: the world (tests/contract/worlds.py) puts
its endpoint variables in the environment the way a runner's shell holds credentials, `inv` runs with HOME
set to the test's folder and the runner's credential files named explicitly, the run gets a profile and an
owner of its own, and the same clean-up runs.  On the fakes the SSH half is the sshd fixture (`address:`);
on a real account it is the VM.

up to an answering URL -> snapshot -> down -> up again (resumed) -> terminate refused where the resume moved
the last start past the image (on every cloud) -> snapshot again, as the refusal says -> terminate.  Then,
whatever failed: terminate --force, and the world's clean-up deletes what the run made and lists, by labvm's
tags and names for the run's profile and owner, everything still there (instances, volumes, snapshots,
images, addresses, groups/firewalls, key pairs): the test fails naming each, so a run never leaves a bill
behind unsaid.  tests/contract/test_cleanup.py shows that the listing sees each kind.
"""

import os
import secrets
from pathlib import Path

import pytest

from contract.worlds import AwsWorld, GceWorld, OpenStackWorld, elastic_ip_kept
from realhost import Sshd, answers, ssh_profile, url_of

RUNS = [
    "moto",
    "fake_openstack",
    "fake_gce",
    pytest.param("live_aws", marks=pytest.mark.live_aws),
    pytest.param("live_openstack", marks=pytest.mark.live_openstack),
    pytest.param("live_gce", marks=pytest.mark.live_gce),
]
REFUSED = "no labvm image newer than its last start"
# A resume moves what labvm's terminate guard reads as the last start, on every cloud, so the guard refuses an
# image made before it: EC2's LaunchTime is "the time that the instance was last launched" (API_Instance.html;
# moto made to agree: moto_ec2_rules.start_moves_launch_time, held by the moto fixture); GCE's lastStartTimestamp
# is the "last start timestamp" (reference/rest/v1/instances); Nova's launched_at moves on build, unshelve and
# resize but not on os-start (tests/fake_openstack.py models it), so labvm reads the start in the server's action
# log too (labvm/providers/openstack/head.py last_start).


def credential_locations(environ=os.environ, home: Path | None = None) -> dict[str, str]:
    """Where the runner's SDKs find credentials, named explicitly: `inv` runs with HOME set to the test's
    folder, where `aws configure` (~/.aws), gcloud (~/.config/gcloud, its ADC) and openstack
    (~/.config/openstack) put nothing.  A location the runner's shell names already is kept."""
    home = home or Path.home()
    places = {
        "AWS_SHARED_CREDENTIALS_FILE": home / ".aws" / "credentials",
        "AWS_CONFIG_FILE": home / ".aws" / "config",
        "CLOUDSDK_CONFIG": home / ".config" / "gcloud",
        "OS_CLIENT_CONFIG_FILE": home / ".config" / "openstack" / "clouds.yaml",
        "OS_CLIENT_SECURE_FILE": home / ".config" / "openstack" / "secure.yaml",
    }
    found = {name: str(path) for name, path in places.items() if path.exists()}
    return {**found, **{name: environ[name] for name in places if environ.get(name)}}


def open_world(kind: str, request, monkeypatch, directory: Path):
    """The world of this kind; moto answers as EC2 where the lifecycle meets their difference."""
    directory.mkdir()
    if kind == "moto":
        request.addfinalizer(elastic_ip_kept())
        return AwsWorld(monkeypatch, directory, request.getfixturevalue("moto"))
    return {
        "fake_openstack": lambda: OpenStackWorld(monkeypatch, directory),
        "fake_gce": lambda: GceWorld(monkeypatch, directory),
        "live_aws": lambda: AwsWorld(monkeypatch, directory),
        "live_openstack": lambda: OpenStackWorld(monkeypatch, directory, live=True),
        "live_gce": lambda: GceWorld(monkeypatch, directory, live=True),
    }[kind]()


def settings_for(world, request, tmp_path) -> dict:
    """The run's profile: the world's settings; on a fake, "the VM" is an sshd of this test pinned by
    `address:` (a root-only fixture); on a real account, the VM itself, reached from the runner's address."""
    settings = {"provider": world.cloud, **{k: v for k, v in world.settings().items() if k != "ssh_cidr"}}
    if world.live:
        return {**settings, "env": {"manager": "uv", "packages": ["jupyterlab"]}, "autostop": "30m"}
    user, vm = request.getfixturevalue("user"), Sshd(tmp_path / "vm")
    request.addfinalizer(vm.stop)
    request.addfinalizer(user.end_processes)  # what deleting the VM ends
    settings = {k: v for k, v in settings.items() if k != "user"}  # the login is the fixture's
    return ssh_profile(user, vm, **settings, ssh_cidr="127.0.0.1/32")


@pytest.fixture(params=RUNS)
def run(request, monkeypatch, tmp_path, lab):
    """(lab, profile name, world): a laptop whose `inv` reaches this world as a runner's would; after the
    test the clean-up, which fails the test naming whatever the run left."""
    world = open_world(request.param, request, monkeypatch, tmp_path / "world")
    name = f"live-{secrets.token_hex(3)}"  # the run's profile and owner: the clean-up touches nothing else
    world.profile = name
    try:
        settings = settings_for(world, request, tmp_path)
        world.provider(owner=name, **{k: v for k, v in settings.items() if k in world.settings()})
        lab.extra_env.update(credential_locations(), LABVM_OWNER=name)
        if os.environ.get("LABVM_GCE_ENDPOINT"):  # the fake's endpoint (Lab.env passes no LABVM_ variable)
            lab.extra_env["LABVM_GCE_ENDPOINT"] = os.environ["LABVM_GCE_ENDPOINT"]
        lab.write_hosts({name: settings})
        yield lab, name, world
    finally:
        lab.inv("terminate", "--host", name, "--yes", "--force", "--no-sync", check=False, timeout=900)
        lab.inv("tunnel", "--host", name, "--stop", check=False)
        left = world.cleanup()
        world.close()
        assert left == [], "left in the account, delete by hand:\n" + "\n".join(left)


def test_the_whole_lifecycle(run):
    lab, name, world = run
    first = lab.inv("up", "--host", name, "--no-browser", timeout=1800).output
    assert answers(url_of(first))
    lab.inv("snapshot", "--host", name, timeout=3600)
    lab.inv("down", "--host", name, timeout=900)
    again = lab.inv("up", "--host", name, "--no-browser", timeout=1800).output
    assert "resuming" in again and answers(url_of(again))
    # The image is older than the last start now: the guard says so.
    refused = lab.inv("terminate", "--host", name, "--yes", timeout=900, check=False)
    assert refused.returncode == 1 and REFUSED in refused.stderr and f"inv snapshot --host {name}" in refused.stderr
    lab.inv("snapshot", "--host", name, timeout=3600)  # what the refusal says to do
    gone = lab.inv("terminate", "--host", name, "--yes", timeout=900).output
    assert "terminated" in gone


def test_credential_locations_are_the_runners(tmp_path):
    """`inv` gets HOME=the test's folder: the runner's credential files are named for it; the runner's own
    variables win."""
    (tmp_path / ".aws").mkdir()
    (tmp_path / ".aws" / "credentials").write_text("[default]\n")
    (tmp_path / ".config" / "gcloud").mkdir(parents=True)
    named = credential_locations({"OS_CLIENT_CONFIG_FILE": "/etc/lab/clouds.yaml"}, home=tmp_path)
    assert named == {
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / ".aws" / "credentials"),
        "CLOUDSDK_CONFIG": str(tmp_path / ".config" / "gcloud"),
        "OS_CLIENT_CONFIG_FILE": "/etc/lab/clouds.yaml",
    }
