"""GCE profiles against the stateful REST fake of tests/fake_gce.py (no Compute Engine emulator
exists), reached by `inv` in a subprocess through LABVM_GCE_ENDPOINT with anonymous credentials;
the SSH half on a real sshd pinned by `address:`."""

import re

import pytest

from gce_world import fake_gce_for
from realhost import Sshd, ssh_profile
from realhost import notebook_answers as answers


@pytest.fixture
def gce(lab):
    with fake_gce_for(lab) as fake:
        yield fake


def profile(user, vm, **extra):
    settings = dict(
        provider="gce",
        project="proj",
        zone="us-west1-b",
        machine_type="e2-small",
        image_family="debian-12",
        disk_size=10,
        static_ip=True,
        ssh_cidr="127.0.0.1/32",
    )
    return ssh_profile(user, vm, **{**settings, **extra})


def test_lifecycle(lab, user, gce, tmp_path):
    vm = Sshd(tmp_path / "vm")
    lab.write_hosts({"gce": profile(user, vm, spot=True)})
    try:
        first = lab.inv("up", "--host", "gce", "--no-browser").output
        assert "gce: creating e2-small in us-west1-b" in first and answers(first)
        (instance,) = gce.instances.values()
        assert instance["labels"] == {"labvm-profile": "gce", "labvm-owner": "hedy"}
        assert instance["metadata"]["items"][0]["key"] == "ssh-keys"
        assert instance["metadata"]["items"][0]["value"].endswith(" labvm")
        assert instance["scheduling"]["provisioningModel"] == "SPOT"
        assert instance["scheduling"]["instanceTerminationAction"] == "STOP"  # preempted = stopped, disk kept
        assert (
            gce.disks[instance["disks"][0]["source"].rsplit("/", 1)[-1]]["sizeGb"] == "10"
        )  # the REST API gives int64 as a string
        static = gce.addresses["labvm-gce-hedy"]["address"]
        assert instance["networkInterfaces"][0]["accessConfigs"][0]["natIP"] == static
        (rule,) = gce.firewalls.values()
        assert rule["allowed"] == [{"IPProtocol": "tcp", "ports": ["22"]}] and rule["sourceRanges"] == ["127.0.0.1/32"]

        assert "creating" not in lab.inv("up", "--host", "gce", "--no-browser").output
        assert len(gce.instances) == 1

        shot = lab.inv("snapshot", "--host", "gce").output
        image = re.search(r"snapshot: (\S+) ", shot).group(1)
        assert gce.images[image]["labels"]["labvm-profile"] == "gce"

        lab.inv("down", "--host", "gce")
        assert gce.instances["labvm-gce-hedy"]["status"] == "TERMINATED"
        resumed = lab.inv("up", "--host", "gce", "--no-browser").output
        assert "resuming" in resumed and answers(resumed)

        typo = lab.inv("resize", "--host", "gce", "--size", "e2-standrd-4", check=False)
        assert typo.returncode == 1 and "closest: e2-standard-4" in typo.stderr
        disk = instance["disks"][0]["source"]
        resized = lab.inv("resize", "--host", "gce", "--size", "e2-standard-4").output
        assert answers(resized)
        after = gce.instances["labvm-gce-hedy"]
        assert after["machineType"].endswith("/e2-standard-4") and after["disks"][0]["source"] == disk
        assert after["networkInterfaces"][0]["accessConfigs"][0]["natIP"] == static  # same address, no cloning

        lab.inv("terminate", "--host", "gce", "--yes", "--force")
        assert gce.instances == {} and gce.firewalls == {} and "labvm-gce-hedy" not in gce.addresses

        vm.renew_host_key()
        reborn = lab.inv("up", "--host", "gce", "--no-browser", "--from-image", "latest").output
        assert "forgot the old host key" in reborn and answers(reborn)
        boot = gce.instances["labvm-gce-hedy"]["disks"][0]["source"].rsplit("/", 1)[-1]
        assert gce.disks[boot]["sourceImage"].endswith(f"/images/{image}")  # made from our image

        second = re.search(r"snapshot: (\S+) ", lab.inv("snapshot", "--host", "gce").output).group(1)
        pruned = lab.inv("images", "--host", "gce", "--prune", "--keep", "1").output
        assert f"deregistered {image}" in pruned and image not in gce.images and second in gce.images
    finally:
        lab.inv("terminate", "--host", "gce", "--yes", "--force", "--no-sync", check=False)
        vm.stop()
        user.end_processes()


def test_errors_say_what_to_do(lab, user, sshd, gce):
    lab.write_hosts({"gce": profile(user, sshd, machine_type="e2-smal")})
    typo = lab.inv("up", "--host", "gce", "--no-browser", check=False)
    assert "profiles.gce.machine_type: no machine type 'e2-smal'; closest: e2-small" in typo.stderr
    assert "(gcloud compute machine-types list --zones us-west1-b)" in typo.stderr

    lab.write_hosts({"gce": profile(user, sshd)})
    gce.api_disabled = True
    disabled = lab.inv("up", "--host", "gce", "--no-browser", check=False)
    assert "gcloud services enable compute.googleapis.com --project proj" in disabled.stderr
    gce.api_disabled = False

    gce.quota_exceeded = True
    quota = lab.inv("up", "--host", "gce", "--no-browser", check=False)
    assert quota.returncode == 1 and "GCE quota: Quota 'CPUS' exceeded" in quota.stderr
    gce.quota_exceeded = False

    gce.zone_exhausted = True
    exhausted = lab.inv("up", "--host", "gce", "--no-browser", check=False)
    assert "zone us-west1-b has no capacity for this machine type now" in exhausted.stderr
    gce.zone_exhausted = False

    no_adc = {k: v for k, v in lab.extra_env.items() if k != "LABVM_GCE_ENDPOINT"}
    lab.extra_env.clear()
    lab.extra_env.update(no_adc)
    missing = lab.inv("up", "--host", "gce", "--no-browser", check=False)
    assert "no Google Application Default Credentials; run `gcloud auth application-default login`" in missing.stderr


def test_up_and_cluster_under_plan_only_read(lab, user, sshd, gce):
    """`inv up --plan` on an empty project: the plan is printed, only GETs reach the cloud, nothing is made."""
    lab.write_hosts({"gce": profile(user, sshd, cluster={"workers": 2})})
    planned = lab.inv("up", "--host", "gce", "--plan", "--no-browser").output
    for line in [
        "plan: gce: create firewall rule labvm-gce-hedy-ssh",
        "plan: gce: reserve static IP labvm-gce-hedy",
        "plan: gce: create instance labvm-gce-hedy (e2-small) in us-west1-b",
        "plan: then the cluster",
    ]:
        assert line in planned, planned
    assert [r for r in gce.requests if r[0] != "GET" and not r[1].endswith(":getEffectiveOrgPolicy")] == []
    assert not gce.instances and not gce.firewalls and not gce.addresses
