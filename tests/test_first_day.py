"""A researcher's first real day on a cloud, as `inv` shows it (the cloud half on moto, the VM a
real sshd): `inv check` before anything is billed, `up` refusing before it creates, the image's
fixed login user, and a snapshot that reboots the VM bringing the notebook back.
"""

from __future__ import annotations

import json

import pytest

from realhost import Sshd, answers, ssh_profile, url_of
from aws_world import REGION, aws_env, labvm_instances


def graces(ec2, *states):
    """This file's instances (owner grace): moto's state is shared by every module in one process."""
    return [i for i in labvm_instances(ec2, *states) if {"Key": "labvm:owner", "Value": "grace"} in i.get("Tags", [])]


def account(ec2) -> dict:
    """Every kind of thing `up` or `check` could make in EC2, by id: what "makes nothing" compares."""
    return {
        "instances": [i["InstanceId"] for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]],
        "groups": [g["GroupId"] for g in ec2.describe_security_groups()["SecurityGroups"]],
        "keys": [k["KeyPairId"] for k in ec2.describe_key_pairs()["KeyPairs"]],
        "addresses": [a["AllocationId"] for a in ec2.describe_addresses()["Addresses"]],
        "volumes": [v["VolumeId"] for v in ec2.describe_volumes()["Volumes"]],
        "images": [i["ImageId"] for i in ec2.describe_images(Owners=["self"])["Images"]],
        "snapshots": [s["SnapshotId"] for s in ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]],
    }


@pytest.fixture
def aws_lab(lab, user, ec2, moto, tmp_path):
    """A laptop with an `aws` profile on moto whose SSH goes to a VM of its own."""
    vm = Sshd(tmp_path / "vm")
    lab.extra_env.update(aws_env(moto), LABVM_OWNER="grace", AWS_ENDPOINT_URL_STS=moto)
    ami = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    lab.write_hosts(
        {
            "aws": ssh_profile(
                user, vm, provider="aws", region=REGION, instance_type="t3.small", image=ami, ssh_cidr="127.0.0.1/32"
            )
        }
    )
    lab.vm = vm
    yield lab
    for instance in graces(ec2, "pending", "running", "stopping", "stopped"):
        ec2.terminate_instances(InstanceIds=[instance["InstanceId"]])
    user.end_processes()
    vm.stop()


def rewrite(lab, **changes) -> None:
    import yaml

    document = yaml.safe_load(lab.hosts.read_text())
    document["profiles"]["aws"].update(changes)
    lab.hosts.write_text(yaml.safe_dump(document))


def test_check_reports_a_ready_account_line_by_line_and_makes_nothing(aws_lab, ec2):
    before = account(ec2)
    out = aws_lab.inv("check", "--host", "aws").stdout
    assert "made labvm's key" not in out and "would make labvm's key at first `up`" in out  # check makes nothing
    assert not (aws_lab.ssh_dir / "labvm" / "id_ed25519").exists()
    lines = [line for line in out.splitlines() if line.startswith(("ok", "FAIL"))]
    checks = json.loads(aws_lab.inv("check", "--host", "aws", "--json").stdout)
    assert len(lines) == len(checks) and all(c["ok"] for c in checks), lines
    for line, check in zip(lines, checks):
        assert line.startswith(f"ok    {check['check']} ") and line.endswith(check["detail"])
    names = [c["check"] for c in checks]
    assert names[0] == "identity" and "credentials" in names and names[-1] == "ssh login"
    assert checks[-1]["detail"] == "no VM yet; `inv up` makes one"
    assert account(ec2) == before


def test_a_broken_account_fails_check_and_up_makes_nothing(aws_lab, ec2):
    before = account(ec2)
    rewrite(aws_lab, instance_type="t3.nosuch")
    result = aws_lab.inv("check", "--host", "aws", check=False)
    assert result.returncode == 1
    failed = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert failed and any("t3.nosuch" in line for line in failed), result.stdout
    up = aws_lab.inv("up", "--host", "aws", "--no-browser", check=False)
    assert up.returncode == 1
    assert "nothing was created; `inv check --host aws` asks again" in up.stderr
    assert account(ec2) == before


def test_a_cloud_image_needs_its_login_user_before_anything_is_made(aws_lab, ec2):
    import yaml

    document = yaml.safe_load(aws_lab.hosts.read_text())
    del document["profiles"]["aws"]["user"]
    aws_lab.hosts.write_text(yaml.safe_dump(document))
    result = aws_lab.inv("up", "--host", "aws", "--no-browser", check=False)
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert "profiles.aws.user: required with image 'ami-" in line and "ubuntu on Ubuntu images" in line
    assert graces(ec2) == []


def test_a_snapshot_that_reboots_the_vm_brings_the_notebook_back(aws_lab, user, monkeypatch):
    from moto.ec2.responses.amis import AmisResponse

    first = aws_lab.inv("up", "--host", "aws", "--no-browser").output
    url = url_of(first)
    create_image = AmisResponse.create_image

    def rebooting_create_image(response):
        # "By default, Amazon EC2 shuts down and reboots the instance before creating the AMI"
        # (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_CreateImage.html, NoReboot);
        # moto does not, so the VM's processes end here as a reboot ends them.
        if str(response._get_param("NoReboot")).lower() != "true":
            user.end_processes()
        return create_image(response)

    monkeypatch.setattr(AmisResponse, "create_image", rebooting_create_image)
    shot = aws_lab.inv("snapshot", "--host", "aws").output
    assert "the VM rebooted for a consistent disk (--no-reboot skips that); starting the notebook again" in shot
    again = url_of(shot)
    assert answers(again)
    old_base, old_token = url.split("?token=")
    base, token = again.split("?token=")
    assert base == old_base  # the same local address: the tab's URL
    # A new token at every Jupyter start (docs/security.md): the old one opens nothing now.
    assert token != old_token and not answers(url)
    kept = aws_lab.inv("snapshot", "--host", "aws", "--no-reboot").output
    assert "rebooted" not in kept and answers(again)


@pytest.fixture
def behind_a_jump_host(tmp_path):
    """A login node in its own network namespace, and a VM behind it reachable only from there."""
    import netns

    reason = netns.available()
    if reason:
        pytest.skip(reason)
    jump = netns.NetnsHost.create("jump")
    vm = netns.NetnsHost.create("vm", behind=jump)
    try:
        jump.start_sshd(tmp_path / "jump-sshd")
        vm.start_sshd(tmp_path / "vm-sshd")
        yield jump, vm
    finally:
        vm.remove()
        jump.remove()


def test_a_new_vm_behind_a_jump_host_is_waited_for_through_it(lab, user, sshd, ec2, moto, behind_a_jump_host):
    import socket

    jump, vm = behind_a_jump_host
    # The namespaces have no way to PyPI: the env is built through the loopback sshd (same home).
    lab.write_hosts({"prep": ssh_profile(user, sshd)})
    lab.inv("env", "--host", "prep")
    with pytest.raises(OSError):  # from the laptop the VM is not there at all: only the login node sees it
        socket.create_connection((vm.address, vm.port), timeout=3)
    lab.extra_env.update(aws_env(moto), LABVM_OWNER="grace", AWS_ENDPOINT_URL_STS=moto)
    ami = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    profile = ssh_profile(
        user,
        jump,
        provider="aws",
        region=REGION,
        instance_type="t3.small",
        image=ami,
        ssh_cidr="127.0.0.1/32",
        address=vm.address,
        port=vm.port,
        jump=f"{user.name}@{jump.address}:{jump.port}",
    )
    lab.write_hosts({"aws": profile})
    try:
        up = lab.inv("up", "--host", "aws", "--no-browser", timeout=240)
        assert "aws: creating t3.small" in up.output and answers(url_of(up.output))
        assert lab.ssh("labvm-aws", "true").returncode == 0  # plain OpenSSH goes through the jump host too
    finally:
        lab.inv("down", "--host", "aws", "--no-sync", check=False)
        for instance in graces(ec2, "pending", "running", "stopping", "stopped"):
            ec2.terminate_instances(InstanceIds=[instance["InstanceId"]])


def test_status_on_a_fresh_clones_hosts_yml_is_clean(lab):
    # The shipped hosts.yml as `git clone` brings it: `status` ends with no error, `local` answers.
    from realhost import ROOT

    lab.hosts.write_text((ROOT / "hosts.yml").read_text())
    assert [line[2:].split()[0] for line in lab.inv("hosts").stdout.splitlines()] == ["local"]
    result = lab.inv("status", timeout=120)
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[:2] == ["local (local, this machine): reachable", "  notebook: not running"]
    assert all(line.startswith("  ") for line in lines[1:]), lines  # one block: no other profile, no error
