"""The guards of the verbs that stop or delete a cloud VM, where they matter: on a cloud profile (moto).

Sync first: a sync that fails stops resize and terminate with nothing done, while down and stop
stop the VM anyway and exit 1 (its disk keeps the notebooks); terminate without --force goes ahead only with an
image newer than the VM's last start.  The "VM" answers no SSH: its address is a closed port.
"""

import urllib.request

import pytest

from realhost import free_port
from aws_world import REGION, aws_env, labvm_instances


@pytest.fixture
def cloud_vm(lab, ec2, moto):
    """A running labvm instance of profile aws, owner hedy, whose SSH goes to a port nobody listens on."""
    lab.extra_env.update(aws_env(moto), LABVM_OWNER="hedy")
    ami = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    lab.write_hosts(
        {
            "aws": {
                "provider": "aws",
                "region": REGION,
                "instance_type": "t3.small",
                "image": ami,
                "user": "ubuntu",
                "address": "127.0.0.1",
                "port": free_port(),
                "ssh_cidr": "127.0.0.1/32",
            }
        }
    )
    tags = [
        {"Key": "labvm:profile", "Value": "aws"},
        {"Key": "labvm:owner", "Value": "hedy"},
        {"Key": "Name", "Value": "labvm-aws"},
    ]
    (made,) = ec2.run_instances(
        ImageId=ami,
        MinCount=1,
        MaxCount=1,
        InstanceType="t3.small",
        TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
    )["Instances"]
    yield made["InstanceId"]
    # moto's state is one per process: what a test here made (the instance, the snapshot's image, the
    # group and key of a verb) would be found by the next module's profile "aws" (test_aws's lifecycle).
    urllib.request.urlopen(urllib.request.Request(f"{moto}/moto-api/reset", method="POST"), timeout=10)


@pytest.mark.parametrize("verb", [["resize", "--size", "t3.medium"], ["terminate", "--yes", "--force"]])
def test_a_sync_that_fails_stops_nothing_that_cannot_be_undone(lab, ec2, cloud_vm, verb):
    failed = lab.inv(*verb, "--host", "aws", check=False)
    assert failed.returncode == 1, failed.output
    assert "nothing was stopped; pass --no-sync" in failed.output
    (instance,) = [i for i in labvm_instances(ec2) if i["InstanceId"] == cloud_vm]
    assert instance["State"]["Name"] == "running" and instance["InstanceType"] == "t3.small"


@pytest.mark.parametrize("verb", ["down", "stop"])
def test_a_sync_that_fails_still_lets_down_and_stop_stop_the_vm(lab, ec2, cloud_vm, verb):
    failed = lab.inv(verb, "--host", "aws", check=False)
    assert failed.returncode == 1, failed.output
    assert "the sync failed" in failed.output and f"{cloud_vm} is stopped anyway" in failed.output
    (instance,) = [i for i in labvm_instances(ec2) if i["InstanceId"] == cloud_vm]
    assert instance["State"]["Name"] == "stopped" and instance["InstanceType"] == "t3.small"


def test_terminate_goes_ahead_without_force_once_an_image_is_newer_than_the_last_start(lab, ec2, cloud_vm):
    refused = lab.inv("terminate", "--host", "aws", "--yes", "--no-sync", check=False)
    assert refused.returncode == 1 and "has no labvm image newer than its last start" in refused.output
    shot = lab.inv("snapshot", "--host", "aws").output  # the notebook does not answer: nothing to bring back
    assert "snapshot: ami-" in shot
    done = lab.inv("terminate", "--host", "aws", "--yes", "--no-sync").output
    assert f"aws: {cloud_vm} terminated" in done
    (instance,) = [i for i in labvm_instances(ec2) if i["InstanceId"] == cloud_vm]
    assert instance["State"]["Name"] == "terminated"


def test_an_image_older_than_the_last_start_does_not_let_terminate_go_ahead(lab, ec2, cloud_vm):
    shot = lab.inv("snapshot", "--host", "aws").output
    assert "snapshot: ami-" in shot
    ec2.stop_instances(InstanceIds=[cloud_vm])
    ec2.start_instances(InstanceIds=[cloud_vm])  # the VM ran again after its image: the image lacks that work
    refused = lab.inv("terminate", "--host", "aws", "--yes", "--no-sync", check=False)
    assert refused.returncode == 1 and "has no labvm image newer than its last start" in refused.output
    (instance,) = [i for i in labvm_instances(ec2) if i["InstanceId"] == cloud_vm]
    assert instance["State"]["Name"] == "running"
