"""What moto does not model: a persistent spot request, an interrupted spot instance, an AMI that
takes its time.  botocore's Stubber answers as EC2 does, in the shapes of the EC2 API reference
(Stubber also checks each answer against botocore's model of the API)."""

import pytest
from botocore.stub import Stubber

from aws_world import REGION, provider_for, public_key, shared_image

from labvm.providers.base import IMAGE_AVAILABLE, IMAGE_FAILED, IMAGE_PENDING

LAUNCHED = "2026-11-02T09:00:00+00:00"


def instance(**fields) -> dict:
    """An Instance of https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_Instance.html."""
    return {
        "InstanceId": "i-0spot",
        "InstanceType": "t3.small",
        "LaunchTime": LAUNCHED,
        "State": {"Code": 16, "Name": "running"},
        "PrivateIpAddress": "10.0.0.5",
        **fields,
    }


def described(**fields) -> dict:
    return {"Reservations": [{"ReservationId": "r-1", "Instances": [instance(**fields)]}]}


def stubbed(lab):
    from labvm import config
    from labvm.providers.aws import AwsProvider

    lab.write_hosts(
        {"aws": {"provider": "aws", "region": REGION, "user": "ubuntu", "spot": True, "ssh_cidr": "127.0.0.1/32"}}
    )
    return AwsProvider(config.load(lab.hosts).profile("aws"))


def test_terminate_cancels_the_persistent_spot_request_first(lab):
    from labvm.providers import Instance

    provider = stubbed(lab)
    with Stubber(provider.api.ec2) as stub:
        # A spot instance names its request (API_Instance.html, spotInstanceRequestId).
        stub.add_response("describe_instances", described(InstanceLifecycle="spot", SpotInstanceRequestId="sir-0abc"))
        # https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_CancelSpotInstanceRequests.html: cancelling
        # a persistent request does not terminate its instance; terminating without it relaunches one
        # (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/terminating-a-spot-instance.html).
        stub.add_response(
            "cancel_spot_instance_requests",
            {"CancelledSpotInstanceRequests": [{"SpotInstanceRequestId": "sir-0abc", "State": "cancelled"}]},
            {"SpotInstanceRequestIds": ["sir-0abc"]},
        )
        stub.add_response(
            "terminate_instances",
            {
                "TerminatingInstances": [
                    {
                        "InstanceId": "i-0spot",
                        "CurrentState": {"Code": 32, "Name": "shutting-down"},
                        "PreviousState": {"Code": 16, "Name": "running"},
                    }
                ]
            },
            {"InstanceIds": ["i-0spot"]},
        )
        stub.add_response("describe_instances", described(State={"Code": 48, "Name": "terminated"}))
        provider.terminate(Instance("i-0spot", "labvm-aws", "running", "10.0.0.5", "t3.small"), keep_ip=True)
        stub.assert_no_pending_responses()


def test_up_says_an_interrupted_spot_instance_is_restarted_only_by_ec2(lab):
    from labvm.errors import LabvmError
    from labvm.providers import Instance

    provider = stubbed(lab)
    with Stubber(provider.api.ec2) as stub:
        # "Only Amazon EC2 can restart an interrupted stopped Spot Instance"
        # (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/interruption-behavior.html); the reason
        # is the instance's StateReason (API_StateReason.html). No start_instances is stubbed: a call fails.
        stub.add_response(
            "describe_instances",
            described(
                InstanceLifecycle="spot",
                SpotInstanceRequestId="sir-0abc",
                State={"Code": 80, "Name": "stopped"},
                StateReason={
                    "Code": "Server.SpotInstanceShutdown",
                    "Message": "Server.SpotInstanceShutdown: The instance "
                    "was stopped because the number of Spot requests ... exceeded available capacity",
                },
            ),
        )
        with pytest.raises(LabvmError) as raised:
            provider.start(Instance("i-0spot", "labvm-aws", "stopped", "", "t3.small"))
    message = str(raised.value)
    assert "EC2 interrupted spot instance i-0spot and only EC2 starts it again" in message
    assert "profiles.aws.spot: false" in message and "\n" not in message


def test_resize_of_a_spot_instance_says_so_before_stopping_it(lab, ec2):
    from labvm.errors import LabvmError

    provider = provider_for(lab, image=shared_image(ec2), spot=True)
    made = provider.create(public_key=public_key())
    with pytest.raises(LabvmError) as raised:
        provider.resize(made, "t3.medium")
    assert "is a spot instance, and EC2 cannot change a spot instance's type" in str(raised.value)
    assert "profiles.aws.instance_type: t3.medium" in str(raised.value)
    (data,) = [i for r in ec2.describe_instances(InstanceIds=[made.id])["Reservations"] for i in r["Instances"]]
    assert data["State"]["Name"] == "running" and data["InstanceType"] == "t3.small"
    provider.terminate(made)


def image(state: str, **fields) -> dict:
    """An Image of https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_Image.html."""
    return {"Images": [{"ImageId": "ami-0new", "Name": "labvm-aws", "State": state, **fields}]}


def snapshot_provider(lab):
    provider = stubbed(lab)
    provider.parts.images.poll_seconds = provider.parts.images.progress_seconds = (
        0  # EC2's minutes are a queue of answers here
    )
    return provider


def test_snapshot_waits_as_long_as_an_ami_takes_and_says_how_it_goes(lab, capsys):
    from labvm.providers import Instance

    provider = snapshot_provider(lab)
    with Stubber(provider.api.ec2) as stub:
        stub.add_response("create_image", {"ImageId": "ami-0new"})
        # Just after CreateImage EC2 may not know the image yet: InvalidAMIID.NotFound, then pending
        # (https://docs.aws.amazon.com/ec2/latest/devguide/eventual-consistency.html).
        stub.add_client_error("describe_images", "InvalidAMIID.NotFound", "The image id '[ami-0new]' does not exist")
        for _ in range(3):
            stub.add_response("describe_images", image("pending"))
        stub.add_response("describe_images", image("available", CreationDate=LAUNCHED))
        shot = provider.snapshot(Instance("i-0spot", "labvm-aws", "running", "", "t3.small"), "labvm")
        stub.assert_no_pending_responses()
    out = capsys.readouterr().out
    assert out.count("snapshot: ami-0new pending (0m)") == 4 and "snapshot: ami-0new available" in out
    assert shot.state == IMAGE_AVAILABLE


@pytest.mark.parametrize(
    "answers,said",
    [
        (
            [image("failed", StateReason={"Code": "InternalError", "Message": "snapshot failed"})],
            "snapshot: ami-0new is failed: snapshot failed; `inv snapshot --host aws` tries again",
        ),
        ([image("pending")], "is still pending after 0m; EC2 goes on making it: `inv images --host aws`"),
        # Still unknown to EC2 after the first minutes: not a lag any more.
        (["InvalidAMIID.NotFound"], "AWS InvalidAMIID.NotFound: The image id '[ami-0new]' does not exist"),
    ],
)
def test_an_image_that_fails_or_takes_too_long_is_one_line(lab, answers, said):
    from labvm.errors import LabvmError
    from labvm.providers import Instance

    provider = snapshot_provider(lab)
    provider.parts.images.image_timeout = provider.parts.images.image_unlisted_limit = 0
    with Stubber(provider.api.ec2) as stub:
        stub.add_response("create_image", {"ImageId": "ami-0new"})
        for answer in answers:
            if isinstance(answer, str):
                stub.add_client_error("describe_images", answer, "The image id '[ami-0new]' does not exist")
            else:
                stub.add_response("describe_images", answer)
        with pytest.raises(LabvmError) as raised:
            provider.snapshot(Instance("i-0spot", "labvm-aws", "running", "", "t3.small"), "labvm")
    assert said in str(raised.value) and "\n" not in str(raised.value)


def test_an_ami_ec2_does_not_list_yet_is_pending(lab, ec2):
    """On moto with EC2's lag (moto_ec2_rules.Lagging): DescribeImages answers NotFound right after CreateImage."""
    from moto_ec2_rules import Lagging

    provider = provider_for(lab, image=shared_image(ec2))
    provider.parts.images.poll_seconds = 0
    made = provider.create(public_key=public_key())
    with Lagging() as lag:
        shot = provider.snapshot(made, "labvm", no_reboot=True)
    assert lag.refused == ["InvalidAMIID.NotFound"] and shot.state == IMAGE_AVAILABLE
    assert [i.id for i in provider.images()] == [shot.id]
    provider.terminate(made)


def test_pruning_an_image_deletes_its_snapshots_while_ec2_catches_up(lab, ec2):
    """Right after DeregisterImage, DeleteSnapshot may answer InvalidSnapshot.InUse (Lagging refuses the first);
    DeregisterImage's DeleteAssociatedSnapshots deletes them in the same call."""
    from moto_ec2_rules import Lagging

    provider = provider_for(lab, image=shared_image(ec2))
    made = provider.create(public_key=public_key())
    shot = provider.snapshot(made, "labvm", no_reboot=True)
    (data,) = ec2.describe_images(ImageIds=[shot.id])["Images"]
    snapshots = {m["Ebs"]["SnapshotId"] for m in data["BlockDeviceMappings"]}
    with Lagging():
        provider.delete_image(shot)
    assert provider.images() == []
    assert snapshots and not snapshots & {
        s["SnapshotId"] for s in ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]
    }
    provider.terminate(made)


@pytest.mark.parametrize(
    "state,normalised",
    [
        ("available", IMAGE_AVAILABLE),
        ("pending", IMAGE_PENDING),
        ("transient", IMAGE_PENDING),
        ("deregistered", IMAGE_FAILED),
        ("invalid", IMAGE_FAILED),
        ("error", IMAGE_FAILED),
    ],
)
def test_image_states_are_labvms_words(lab, state, normalised):
    provider = stubbed(lab)
    with Stubber(provider.api.ec2) as stub:
        stub.add_response("describe_images", image(state, CreationDate=LAUNCHED))
        assert [i.state for i in provider.images()] == [normalised]


def test_terminate_during_an_autostop_shutdown_waits_until_terminated(lab, monkeypatch):
    """botocore's InstanceTerminated waiter has failure acceptors for "pending" and "stopping"
    (botocore/data/ec2/2016-11-15/waiters-2.json): a terminate while autostop's `shutdown -h` is still stopping
    the instance read "stopping" and ended there: `terminate` skipped the clean-up of the Elastic IP, group
    and key.  EC2 accepts TerminateInstances in any state ("each call succeeds", API_TerminateInstances.html) and DescribeInstances
    shows the stop finishing before the instance shuts down; the answers here are in the API's shapes."""
    import botocore.waiter

    monkeypatch.setattr(botocore.waiter.time, "sleep", lambda seconds: None)
    provider = stubbed(lab)
    with Stubber(provider.api.ec2) as stub:
        stub.add_response(
            "terminate_instances",
            {
                "TerminatingInstances": [
                    {
                        "InstanceId": "i-0spot",
                        "CurrentState": {"Code": 64, "Name": "stopping"},
                        "PreviousState": {"Code": 64, "Name": "stopping"},
                    }
                ]
            },
            {"InstanceIds": ["i-0spot"]},
        )
        stub.add_response("describe_instances", described(State={"Code": 64, "Name": "stopping"}))
        stub.add_response("describe_instances", described(State={"Code": 32, "Name": "shutting-down"}))
        stub.add_response("describe_instances", described(State={"Code": 48, "Name": "terminated"}))
        provider.parts.head.terminate_all([instance(State={"Code": 64, "Name": "stopping"})])
        stub.assert_no_pending_responses()
