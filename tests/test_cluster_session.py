"""A cloud profile's cluster as `inv` shows it, on moto: `down` stops every worker even when the
head is already stopped, and `terminate` deletes the workers with the head.

No step here opens SSH to a worker: moto's instance addresses are not test hosts (the SSH half of
the cluster runs on network-namespace hosts in tests/test_cluster.py).
"""

from __future__ import annotations

import pytest
import yaml

from realhost import Sshd, ssh_profile
from aws_world import REGION, aws_env, labvm_instances


def adas(ec2, *states):
    """This test's instances: moto's state is shared by every module in one process."""
    return [i for i in labvm_instances(ec2, *states) if {"Key": "labvm:owner", "Value": "ada"} in i.get("Tags", [])]


def workers_of(ec2, *states):
    return sorted(
        (i for i in adas(ec2, *states) if {"Key": "labvm:role", "Value": "worker"} in i.get("Tags", [])),
        key=lambda i: next(t["Value"] for t in i["Tags"] if t["Key"] == "labvm:index"),
    )


@pytest.fixture
def cluster_lab(lab, user, ec2, moto, tmp_path, monkeypatch):
    vm = Sshd(tmp_path / "head")
    lab.extra_env.update(aws_env(moto), LABVM_OWNER="ada", AWS_ENDPOINT_URL_STS=moto)
    ami = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    lab.write_hosts(
        {
            "aws": ssh_profile(
                user, vm, provider="aws", region=REGION, instance_type="t3.small", image=ami, ssh_cidr="127.0.0.1/32"
            )
        }
    )
    lab.inv("up", "--host", "aws", "--no-browser")  # the head, before the profile has a cluster
    document = yaml.safe_load(lab.hosts.read_text())
    document["profiles"]["aws"]["cluster"] = {"workers": 2}
    lab.hosts.write_text(yaml.safe_dump(document))
    from labvm import config
    from labvm.providers import for_profile

    monkeypatch.setenv("LABVM_OWNER", "ada")  # the provider below is this test's, as labvm's would be
    provider = for_profile(config.load(lab.hosts).profile("aws"))
    public_key = (lab.ssh_dir / "labvm" / "id_ed25519.pub").read_text()
    provider.create_workers([1, 2], "", "", public_key)
    yield lab
    for instance in adas(ec2, "pending", "running", "stopping", "stopped"):
        ec2.terminate_instances(InstanceIds=[instance["InstanceId"]])
    user.end_processes()
    vm.stop()


def test_down_stops_every_worker_even_with_the_head_already_stopped(cluster_lab, ec2):
    assert [w["State"]["Name"] for w in workers_of(ec2)] == ["running", "running"]
    (head,) = [i for i in adas(ec2) if i not in workers_of(ec2)]
    ec2.stop_instances(InstanceIds=[head["InstanceId"]])  # stopped by its own autostop, say
    down = cluster_lab.inv("down", "--host", "aws", "--no-sync").output
    assert down.count("cluster: labvm-aws-w") == 2
    assert [w["State"]["Name"] for w in workers_of(ec2)] == ["stopped", "stopped"]
    again = cluster_lab.inv("down", "--host", "aws", "--no-sync").output  # nothing left to stop
    assert [w["State"]["Name"] for w in workers_of(ec2)] == ["stopped", "stopped"] and "Traceback" not in again


def test_terminate_deletes_the_workers_with_the_head(cluster_lab, ec2):
    cluster_lab.inv("terminate", "--host", "aws", "--yes", "--force", "--no-sync")
    assert adas(ec2, "pending", "running", "stopping", "stopped") == []


def test_status_shows_each_worker_vm_and_what_the_scheduler_sees(cluster_lab, ec2):
    first, second = workers_of(ec2, "running")
    ec2.stop_instances(InstanceIds=[second["InstanceId"]])
    shown = cluster_lab.inv("status", "--host", "aws").output
    assert f"cluster: labvm-aws-w1 ({first['InstanceId']}): VM running" in shown
    assert f"cluster: labvm-aws-w2 ({second['InstanceId']}): VM stopp" in shown  # stopping, then stopped
    assert "cluster: no scheduler answers" in shown and "`inv up` starts it" in shown  # no `inv cluster` yet


def test_a_cluster_step_failing_after_the_workers_exist_stops_them(cluster_lab, ec2, monkeypatch):
    """Issue 17 item 1: EC2 refused the Dask rule after the worker VMs were running, before their autostop
    was armed.  Whatever fails there, no worker is left running unwatched: they stop, and labvm says so."""
    from botocore.exceptions import ClientError
    from moto.ec2.exceptions import EC2ClientError
    from moto.ec2.models.security_groups import SecurityGroupBackend

    def full_group(*args, **kwargs):
        # A group at its rule quota: "RulesPerSecurityGroupLimitExceeded" (EC2 API errors-overview.html).
        raise EC2ClientError(
            "RulesPerSecurityGroupLimitExceeded", "The maximum number of rules per security group has been reached."
        )

    monkeypatch.setattr(SecurityGroupBackend, "authorize_security_group_ingress", full_group)
    # The fault is in place before labvm runs (moto's server serves from this process): were it not,
    # labvm would go on to SSH to moto's made-up public addresses, which are no test hosts.
    (group,) = ec2.describe_security_groups(GroupNames=["labvm-aws-ada"])["SecurityGroups"]
    with pytest.raises(ClientError, match="RulesPerSecurityGroupLimitExceeded"):
        ec2.authorize_security_group_ingress(
            GroupId=group["GroupId"],
            IpPermissions=[{"IpProtocol": "tcp", "FromPort": 1, "ToPort": 1, "IpRanges": [{"CidrIp": "127.0.0.1/32"}]}],
        )
    failed = cluster_lab.inv("cluster", "--host", "aws", check=False)
    assert failed.returncode == 1 and "RulesPerSecurityGroupLimitExceeded" in failed.output, failed.output
    assert "cluster: stopped labvm-aws-w1, labvm-aws-w2 so no worker runs without autostop" in failed.output
    live = workers_of(ec2, "pending", "running", "stopping", "stopped")  # earlier tests' are terminated
    assert [w["State"]["Name"] for w in live] == ["stopped", "stopped"]
