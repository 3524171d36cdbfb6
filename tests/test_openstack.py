"""OpenStack (CADES) profiles against the stateful fake of tests/fake_openstack.py, reached by
`inv` in a subprocess through a temporary clouds.yaml; the SSH half on a real sshd pinned by
`address:`, directly and through a jump host."""

import os
import re

import pytest

from fake_openstack import FakeOpenStack
from labvm import config
from labvm.providers import Instance
from labvm.providers.openstack import OpenStackProvider
from openstack_world import new_key
from realhost import Sshd, ssh_profile
from realhost import notebook_answers as answers


@pytest.fixture
def cloud(lab):
    with FakeOpenStack() as fake:
        clouds = lab.directory / "clouds.yaml"
        clouds.write_text(fake.clouds_yaml("cades"))
        lab.extra_env.update(OS_CLIENT_CONFIG_FILE=str(clouds), LABVM_OWNER="hedy")
        lab.extra_env.pop("OS_CLOUD", None)
        yield fake


def mine(fake):
    return [s for s in fake.servers.values() if s["metadata"].get("labvm:profile") == "cades"]


def cades(user, vm, **extra):
    settings = dict(
        provider="openstack",
        cloud="cades",
        image="Ubuntu 22.04",
        flavor="m1.medium",
        volume_size=40,
        network="lab-net",
        floating_ip_pool="public",
    )
    return ssh_profile(user, vm, **{**settings, **extra})


def test_lifecycle(lab, user, cloud, tmp_path):
    vm = Sshd(tmp_path / "vm")
    lab.write_hosts({"cades": cades(user, vm, stop_action="shelve")})
    try:
        first = lab.inv("up", "--host", "cades", "--no-browser").output
        assert "openstack: creating m1.medium" in first and answers(first)
        (server,) = mine(cloud)
        assert server["metadata"] == {"labvm:profile": "cades", "labvm:owner": "hedy"}
        assert server["status"] == "ACTIVE"
        (volume,) = [v for v in cloud.volumes.values() if v["attachments"][0]["server_id"] == server["id"]]
        assert volume["size"] == 40 and volume["metadata"] == server["metadata"]  # booted from a labelled volume
        (group,) = [g for g in cloud.security_groups.values() if g["name"] == "labvm-cades-hedy"]
        assert [
            (r["protocol"], r["port_range_min"], r["port_range_max"])
            for r in group["security_group_rules"]
            if r["direction"] == "ingress"
        ] == [("tcp", 22, 22)]
        floating = [ip for ip in cloud.floating_ips.values() if ip.get("port_id")]
        assert len(floating) == 1

        assert "creating" not in lab.inv("up", "--host", "cades", "--no-browser").output
        assert len(mine(cloud)) == 1

        guarded = lab.inv("terminate", "--host", "cades", "--yes", check=False)
        assert guarded.returncode == 1 and "no labvm image newer than its last start" in guarded.stderr

        shot = lab.inv("snapshot", "--host", "cades").output
        image_id = re.search(r"snapshot: (\S+) ", shot).group(1)
        assert cloud.images[image_id]["status"] == "active"
        assert cloud.images[image_id]["labvm:profile"] == "cades" and cloud.images[image_id]["labvm:owner"] == "hedy"

        lab.inv("down", "--host", "cades")
        assert mine(cloud)[0]["status"] == "SHELVED_OFFLOADED"
        resumed = lab.inv("up", "--host", "cades", "--no-browser").output
        assert "resuming" in resumed and answers(resumed)
        assert mine(cloud)[0]["status"] == "ACTIVE"
        again = [ip for ip in cloud.floating_ips.values() if ip.get("port_id")]
        assert [ip["id"] for ip in again] == [ip["id"] for ip in floating]  # the same floating IP, re-attached

        typo = lab.inv("resize", "--host", "cades", "--size", "m1.lrage", check=False)
        assert typo.returncode == 1 and "no flavor 'm1.lrage'; closest: m1.large" in typo.stderr
        resized = lab.inv("resize", "--host", "cades", "--size", "m1.large").output
        assert answers(resized)
        cloud.fail_next_resize = True
        failed = lab.inv("resize", "--host", "cades", "--size", "m1.small", check=False)
        assert failed.returncode == 1 and "resize to m1.small did not happen" in failed.stderr
        assert "back to ACTIVE on m1.large" in failed.stderr

        lab.inv("terminate", "--host", "cades", "--yes", "--force")
        assert mine(cloud) == []
        assert cloud.volumes[volume["id"]]["status"] == "available"  # the image's volume snapshot keeps it
        assert not any(ip.get("description", "").startswith("labvm:cades") for ip in cloud.floating_ips.values())

        vm.renew_host_key()
        reborn = lab.inv("up", "--host", "cades", "--no-browser", "--from-image", "latest").output
        assert "forgot the old host key" in reborn and answers(reborn)

        second = re.search(r"snapshot: (\S+) ", lab.inv("snapshot", "--host", "cades").output).group(1)
        pruned = lab.inv("images", "--host", "cades", "--prune", "--keep", "1").output
        assert f"deregistered {image_id}" in pruned
        assert image_id not in cloud.images and second in cloud.images
        assert f"deleted boot volume {volume['id']}" in pruned and volume["id"] not in cloud.volumes
    finally:
        lab.inv("terminate", "--host", "cades", "--yes", "--force", "--no-sync", check=False)
        vm.stop()
        user.end_processes()


def test_through_a_jump_host_with_stop_instead_of_shelve(lab, user, sshd, jump_sshd, cloud):
    lab.write_hosts({"cades": cades(user, sshd, stop_action="stop", jump=f"{user.name}@127.0.0.1:{jump_sshd.port}")})
    try:
        assert answers(lab.inv("up", "--host", "cades", "--no-browser").output)
        assert jump_sshd.log.read_text().count(f"target 127.0.0.1 port {sshd.port}") >= 2
        lab.inv("down", "--host", "cades")
        assert mine(cloud)[0]["status"] == "SHUTOFF"
        assert answers(lab.inv("up", "--host", "cades", "--no-browser").output)
    finally:
        lab.inv("terminate", "--host", "cades", "--yes", "--force", "--no-sync", check=False)
        user.end_processes()


def test_bad_input(lab, user, sshd, cloud):
    lab.write_hosts({"cades": cades(user, sshd, cloud="nocloud")})
    unknown = lab.inv("up", "--host", "cades", "--no-browser", check=False)
    assert unknown.returncode == 1 and "profiles.cades.cloud" in unknown.stderr and "nocloud" in unknown.stderr

    lab.write_hosts({"cades": cades(user, sshd, flavor="m1.meduim")})
    typo = lab.inv("up", "--host", "cades", "--no-browser", check=False)
    assert "no flavor 'm1.meduim'; closest: m1.medium" in typo.stderr

    lab.write_hosts({"cades": cades(user, sshd, image="Ubuntu 99.04")})
    assert (
        "profiles.cades.image: no image 'Ubuntu 99.04' (list: openstack image list)"
        in lab.inv("up", "--host", "cades", "--no-browser", check=False).stderr
    )
    lab.write_hosts({"cades": cades(user, sshd, network="nonet")})
    assert (
        "profiles.cades.network: 'nonet' not found; list: openstack network list"
        in lab.inv("up", "--host", "cades", "--no-browser", check=False).stderr
    )

    lab.write_hosts({"cades": cades(user, sshd)})
    cloud.floating_ips_exhausted = True
    exhausted = lab.inv("up", "--host", "cades", "--no-browser", check=False)
    assert exhausted.returncode == 1 and "No more IP addresses available" in exhausted.stderr
    assert "release floating IPs you no longer use" in exhausted.stderr
    cloud.floating_ips_exhausted = False
    lab.inv("terminate", "--host", "cades", "--yes", "--force")

    cloud.quota["cores"] = 1
    quota = lab.inv("up", "--host", "cades", "--no-browser", check=False)
    assert quota.returncode == 1 and "quota: cores: 0 of 1 used, m1.medium needs 2" in quota.stderr
    assert "cades-help@ornl.gov" in quota.stderr and not mine(cloud)  # `up` checks before it creates

    cloud.quota["cores"] = 8
    cloud.fail_next_boot = "No valid host was found. There are not enough hosts available."
    broken = lab.inv("up", "--host", "cades", "--no-browser", check=False)
    assert broken.returncode == 1 and "went ERROR: No valid host was found." in broken.stderr
    again = lab.inv("up", "--host", "cades", "--no-browser", check=False)  # not resumed forever: told what to do
    assert again.returncode == 1 and "is in ERROR: No valid host was found." in again.stderr
    assert "`inv up --host cades --replace` deletes it and makes a new one" in again.stderr
    (errored,) = mine(cloud)
    asked = lab.inv("up", "--host", "cades", "--no-browser", "--replace", check=False)  # no terminal to ask on
    assert asked.returncode == 1 and "pass --yes to confirm" in asked.stderr and mine(cloud) == [errored]
    replaced = lab.inv("up", "--host", "cades", "--no-browser", "--replace", "--yes")
    assert "(ERROR); making a new VM" in replaced.output and "JupyterLab is ready" in replaced.output
    assert [s["status"] for s in mine(cloud)] == ["ACTIVE"] and mine(cloud)[0]["id"] != errored["id"]
    lab.inv("terminate", "--host", "cades", "--yes", "--force")
    assert not mine(cloud)
    wrong = lab.directory / "wrong-clouds.yaml"
    wrong.write_text(cloud.clouds_yaml("cades", password="not-it"))
    lab.extra_env["OS_CLIENT_CONFIG_FILE"] = str(wrong)
    refused = lab.inv("up", "--host", "cades", "--no-browser", check=False)
    assert refused.returncode == 1
    assert "OpenStack refused the credentials of clouds.yaml entry 'cades'" in refused.stderr

    env_without = dict(lab.extra_env, OS_CLIENT_CONFIG_FILE=os.devnull)
    lab.extra_env.clear()
    lab.extra_env.update(env_without)
    missing = lab.inv("up", "--host", "cades", "--no-browser", check=False)
    assert missing.returncode == 1 and "add 'cades' to clouds.yaml" in missing.stderr


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # openstacksdk's own notices
def test_plan_on_the_command_line_changes_nothing(lab, cloud, monkeypatch):
    """Issue 17: `--plan` prints each change and makes none: only reads (and the login) reach the cloud."""

    def changes():
        return [r for r in cloud.requests[before:] if r[0] != "GET" and r != ("POST", "/identity/v3/auth/tokens")]

    lab.write_hosts(
        {
            "cades": dict(
                provider="openstack",
                cloud="cades",
                image="Ubuntu 22.04",
                flavor="m1.medium",
                volume_size=40,
                network="lab-net",
                floating_ip_pool="public",
                user="cades",
                stop_action="shelve",
                cluster={"workers": 2},
            )
        }
    )
    before = len(cloud.requests)
    up = lab.inv("up", "--host", "cades", "--plan", "--no-browser").output
    assert "plan: openstack: boot m1.medium labvm-cades-hedy in cades" in up
    cluster = lab.inv("cluster", "--host", "cades", "--plan", "--workers", "2").output
    assert "plan: openstack: boot m1.medium labvm-cades-hedy-w2 in cades" in cluster
    assert changes() == [] and cloud.servers == {} and cloud.keypairs == {}

    for name in ("OS_CLIENT_CONFIG_FILE", "LABVM_OWNER"):  # a head made in-process (`inv create` waits for SSH)
        monkeypatch.setenv(name, lab.extra_env[name])
    OpenStackProvider(config.load(lab.hosts).profile("cades")).create(public_key=new_key())
    (server,) = mine(cloud)
    lab.inv("cluster", "--host", "cades", "--plan", "--workers", "2")  # beside a real head
    cades_id = server["id"]
    before, images = len(cloud.requests), dict(cloud.images)
    for verb in (
        ["stop", "--no-sync"],
        ["resize", "--size", "m1.large", "--no-sync"],
        ["snapshot"],
        ["terminate", "--yes", "--force", "--no-sync"],
    ):
        out = lab.inv(verb[0], "--host", "cades", "--plan", *verb[1:]).output
        assert "plan: openstack: " in out and cades_id in out
    assert changes() == [] and cloud.images == images
    assert [(s["id"], s["status"], s["flavor"]["original_name"]) for s in mine(cloud)] == [
        (cades_id, "ACTIVE", "m1.medium")
    ]
    OpenStackProvider(config.load(lab.hosts).profile("cades")).terminate(Instance(cades_id, "", "running", ""))
    assert mine(cloud) == []


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # openstacksdk's own notices
def test_a_worker_nova_put_in_error_is_deleted_and_made_again(lab, cloud, monkeypatch):
    """Nova's quota recheck after a joint boot leaves a worker in ERROR: `inv cluster` treats it as
    missing (deletes it, boots that one again, says so), never as present.  Shown under --plan, which
    stops before SSH: the decision is the session's, the calls are the ones a real run makes."""
    lab.write_hosts(
        {
            "cades": dict(
                provider="openstack",
                cloud="cades",
                image="Ubuntu 22.04",
                flavor="m1.medium",
                network="lab-net",
                user="cades",
                cluster={"workers": 2},
            )
        }
    )
    for name in ("OS_CLIENT_CONFIG_FILE", "LABVM_OWNER"):
        monkeypatch.setenv(name, lab.extra_env[name])
    provider = OpenStackProvider(config.load(lab.hosts).profile("cades"))
    provider.create(public_key=new_key())
    provider.create_workers([1, 2], "", "", new_key())
    (broken,) = [s for s in cloud.servers.values() if s["name"].endswith("-w2")]
    broken["status"] = "ERROR"  # what the recheck leaves (nova/conductor/manager.py _recheck_quota)
    out = lab.inv("cluster", "--host", "cades", "--plan").output
    assert f"({broken['id']}) is in ERROR; deleting it and making it again" in out
    assert f"plan: openstack: delete server {broken['id']}" in out
    assert "cluster: making worker(s) w2\n" in out and "plan: openstack: boot m1.medium labvm-cades-hedy-w2" in out
    assert "labvm-cades-hedy-w1 in" not in out  # only the broken one again
    assert broken["id"] in cloud.servers, out  # --plan: nothing changed


def test_a_503_from_nova_is_one_line_for_status_up_and_down(lab, cloud):
    """Issue 28 A2: Nova's server list answers 503 (its load balancer has no healthy API): status says so on
    the profile's line, up and down in one line with exit status 1, never a traceback of openstacksdk's lazy list."""
    settings = dict(provider="openstack", cloud="cades", image="Ubuntu 22.04", flavor="m1.medium", network="lab-net")
    lab.write_hosts({"cades": dict(settings, user="cades")})
    cloud.unavailable = "/compute/v2.1/servers"
    said = "OpenStack answered 503 for {}/compute/v2.1/servers/detail: ".format(cloud.base)
    status = lab.inv("status", "--host", "cades", check=False)
    assert status.returncode == 0 and status.stderr == "", status.stderr
    assert status.stdout.startswith(f"cades: {said}") and status.stdout.count("\n") == 1, status.stdout
    for verb in (["up", "--no-browser"], ["down", "--no-sync"]):
        failed = lab.inv(verb[0], "--host", "cades", *verb[1:], check=False)
        assert failed.returncode == 1 and "Traceback" not in failed.stderr, failed.stderr
        (line,) = [text for text in failed.stderr.splitlines() if text.strip()]
        assert said in line and line.endswith("try again in a few minutes"), line
    assert cloud.servers == {}
