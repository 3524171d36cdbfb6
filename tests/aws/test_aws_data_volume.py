"""The data volume (hosts.yml data:) on EBS, beyond the contract suite (tests/contract/test_data_volume.py):
the device name EC2 is asked for, what the guest sees, the waits on EC2's own states, EC2's refusals in one
line, the tags it carries and how `inv audit` lists it."""

import pytest
from moto.ec2.exceptions import EC2ClientError
from moto.ec2.models.elastic_block_store import EBSBackend

from aws_world import provider_for, public_key, shared_image
from moto_ec2_rules import VolumeStates, patched

from labvm.errors import LabvmError
from labvm.providers.base import VOLUME_ATTACHED, VOLUME_AVAILABLE, VOLUME_BUSY
from labvm.providers.cloud import planned_instance

DATA = {"size": 20}


def data_lab(lab, ec2, **settings):
    """An aws profile with a data volume, its waits asked again at once (moto answers at once)."""
    provider = provider_for(lab, image=shared_image(ec2), data=DATA, **settings)
    provider.api.poll_delay = 0
    return provider


def sent_calls(provider) -> list[tuple[str, dict]]:
    """Each EC2 operation the provider's client sends from now on, with its parameters as given (botocore's
    before-parameter-build event: before they are serialized)."""
    calls: list[tuple[str, dict]] = []

    def record(model, params, **_):
        calls.append((model.name, dict(params)))

    provider.api.ec2.meta.events.register("before-parameter-build.ec2", record)
    return calls


def test_the_volume_goes_to_a_device_name_the_machine_leaves_free(lab, ec2):
    """EC2 refuses a device name the instance uses (moto_ec2_rules.attach_volume): /dev/sdf is taken by hand,
    and xvdg names the same slot as /dev/sdg (device_naming.html), so labvm asks for /dev/sdh; the guest finds
    the volume by its NVMe serial (Nitro) or as /dev/xvdh (Xen)."""
    provider = data_lab(lab, ec2)
    machine = provider.create(public_key=public_key())
    for device in ("/dev/sdf", "xvdg"):
        other = ec2.create_volume(Size=1, AvailabilityZone=machine.zone)["VolumeId"]
        ec2.attach_volume(VolumeId=other, InstanceId=machine.id, Device=device)

    volume = provider.attach_data(machine)

    (attachment,) = ec2.describe_volumes(VolumeIds=[volume.id])["Volumes"][0]["Attachments"]
    assert (attachment["Device"], attachment["InstanceId"]) == ("/dev/sdh", machine.id)
    serial = volume.id.replace("-", "")
    assert volume.devices == (f"/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_{serial}", "/dev/xvdh")


def test_each_wait_goes_through_ec2s_own_states(lab, ec2, capsys):
    """A volume just made is NotFound, then creating; an attachment attaching (the volume already in-use), a
    detach detaching, a delete deleting, each for two questions (moto_ec2_rules.VolumeStates): each verb ends
    only once EC2 says it is done."""
    provider = data_lab(lab, ec2)
    machine = provider.create(public_key=public_key())
    with VolumeStates(polls=2) as states:
        volume = provider.attach_data(machine)
        assert (states.shown, volume.state, volume.attached_to) == (
            ["NotFound", "creating", "creating", "attaching", "attaching"],
            VOLUME_ATTACHED,
            machine.id,
        )
        detached = provider.detach_data(volume)
        assert (states.shown[-2:], detached.state, detached.attached_to, detached.devices) == (
            ["detaching", "detaching"],
            VOLUME_AVAILABLE,
            "",
            (),
        )
        provider.delete_data(detached)
        assert states.shown[-2:] == ["deleting", "deleting"]
    assert provider.data_volume() is None
    out = capsys.readouterr().out
    for said in ("is available", f"is attached to {machine.id}", "is detached", "is deleted"):
        assert f"aws: {volume.id} {said} (" in out


def test_a_volume_ec2_puts_in_error_ends_the_wait_in_one_line(lab, ec2):
    """ "error" is a state a volume never leaves for available (API_Volume.html); botocore's volume_available
    waiter gives up only at "deleted", and would ask for ten minutes."""
    provider = data_lab(lab, ec2)
    machine = provider.create(public_key=public_key())
    with VolumeStates() as states:

        def failing(original, backend, *args, **kwargs):
            made = original(backend, *args, **kwargs)
            states.pending[made.id] = ["error"] * 400
            return made

        with patched(EBSBackend, create_volume=failing), pytest.raises(LabvmError) as refused:
            provider.attach_data(machine)
    said = str(refused.value)
    assert said.startswith("aws: vol-") and "is available did not happen" in said and "\n" not in said
    assert 'For expression "Volumes[].State" we matched expected path: "error"' in said
    assert len(states.shown) == 1


def test_a_volume_still_attaching_is_busy_not_attached(lab, ec2):
    """EC2 calls the volume in-use from the moment AttachVolume is taken; labvm calls it attached only once its
    attachment is (API_VolumeAttachment.html)."""
    provider = data_lab(lab, ec2)
    machine = provider.create(public_key=public_key())
    volume = provider.attach_data(machine)
    with VolumeStates() as states:
        states.pending[volume.id] = ["attaching"]
        seen = provider.parts.volumes.described(volume.id)
    assert (seen.state, seen.attached_to) == (VOLUME_BUSY, machine.id)


@pytest.mark.parametrize(
    "code,message,step",
    [
        # https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html
        (
            "VolumeLimitExceeded",
            "You've reached the limit on your Amazon EBS volume storage.",
            "your EBS storage quota for this volume type is used up; delete unused volumes (`inv audit` lists "
            "labvm's) or request more in Service Quotas (Amazon Elastic Block Store)",
        ),
        (
            "InsufficientVolumeCapacity",
            "There is not enough capacity to fulfill your EBS volume provision request.",
            "AWS has no capacity for this volume type in the VM's zone now; try again later, or give another type: in ",
        ),
    ],
)
def test_ebs_refusing_the_volume_is_one_line_with_the_next_step(lab, ec2, code, message, step):
    provider = data_lab(lab, ec2)
    machine = provider.create(public_key=public_key())

    def refuse(original, backend, *args, **kwargs):
        raise EC2ClientError(code, message)

    with patched(EBSBackend, create_volume=refuse), pytest.raises(LabvmError) as refused:
        provider.attach_data(machine)
    said = str(refused.value)
    assert said.startswith(f"AWS {code}: {message}; {step}") and "\n" not in said
    assert refused.value.__cause__ is None and refused.value.__suppress_context__
    assert provider.data_volume() is None


def test_the_volume_carries_the_profiles_tags_and_the_data_role(lab, ec2):
    """Tagged in CreateVolume itself (a volume half made is found again), with hosts.yml's tags; gp3 unless
    data: type: says; Encrypted left to the account's EBS default."""
    provider = data_lab(lab, ec2, tags={"course": "bio101"})
    machine = provider.create(public_key=public_key())
    calls = sent_calls(provider)
    volume = provider.attach_data(machine)

    (created,) = [params for name, params in calls if name == "CreateVolume"]
    assert "Encrypted" not in created and created["VolumeType"] == "gp3"
    (spec,) = created["TagSpecifications"]
    assert {t["Key"]: t["Value"] for t in spec["Tags"]} == {
        "Name": "labvm-aws-data",
        "course": "bio101",
        "labvm:profile": "aws",
        "labvm:owner": "hedy",
        "labvm:role": "data",
    }
    assert (volume.name, volume.type, volume.size_gb) == ("labvm-aws-data", "gp3", 20)


def test_audit_lists_the_data_volume_as_data_attached_or_not(lab, ec2):
    """Kind "data" (kept on purpose while its profile exists), never a loose "volume"; the machine's root
    volume, deleted with it, is neither."""
    provider = data_lab(lab, ec2)
    machine = provider.create(public_key=public_key())
    volume = provider.attach_data(machine)

    def listed():
        return [(r.kind, r.id, r.state, r.size_gb, r.type) for r in provider.inventory() if r.kind != "instance"]

    assert listed() == [("data", volume.id, "attached", 20, "gp3")]
    (row,) = [r for r in provider.inventory() if r.kind == "data"]
    assert row.delete == (
        f"aws ec2 detach-volume --volume-id {volume.id} --region us-west-2, "
        f"then aws ec2 delete-volume --volume-id {volume.id} --region us-west-2"
    )
    provider.terminate(machine)
    assert listed() == [("data", volume.id, "unattached", 20, "gp3")]


def test_plan_for_a_machine_not_yet_made_asks_nothing_of_it(lab, ec2, capsys):
    """`up --plan` of a first machine: the planned machine has no id to describe; the volume is printed."""
    provider = data_lab(lab, ec2)
    provider.start_planning()
    calls = sent_calls(provider)
    planned = provider.attach_data(planned_instance("labvm-aws", "t3.small"))
    assert [name for name, _ in calls] == ["DescribeVolumes"]
    assert planned.attached_to == "(planned)"
    out = capsys.readouterr().out
    assert "plan: aws: ec2.create_volume(Size=20" in out and "plan: aws: ec2.attach_volume(" in out


def test_the_permissions_to_ask_for_hold_every_call_of_the_data_volume(lab, ec2):
    """What a user without EBS rights asks an admin for (labvm/providers/aws/permissions.py, read from the
    code) holds every call of a volume's life."""
    from labvm.providers.aws.permissions import permissions

    provider = data_lab(lab, ec2)
    machine = provider.create(public_key=public_key())
    calls = sent_calls(provider)
    provider.delete_data(provider.detach_data(provider.attach_data(machine)))
    provider.inventory()
    sent = {f"ec2:{name}" for name, _ in calls}
    assert {"ec2:CreateVolume", "ec2:AttachVolume", "ec2:DetachVolume", "ec2:DeleteVolume"} <= sent
    assert sent <= set(permissions()), sent - set(permissions())
