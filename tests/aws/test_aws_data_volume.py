"""The data volume (hosts.yml data:) on EBS, beyond the contract suite (tests/contract/test_data_volume.py):
the device name EC2 is asked for, what the guest sees, the waits on EC2's own states, EC2's refusals in one
line, the tags it carries and how `inv audit` lists it."""

import pytest
from botocore.exceptions import ClientError
from moto.ec2.exceptions import EC2ClientError
from moto.ec2.models.elastic_block_store import EBSBackend

from aws_world import REGION, provider_for, public_key, shared_image
from moto_ec2_rules import EBS_APPLIED_QUOTAS, ResizeAndSnapshotStates, VolumeStates, patched

from labvm.errors import LabvmError
from labvm.providers.base import BACKUP_READY, VOLUME_ATTACHED, VOLUME_AVAILABLE, VOLUME_BUSY
from labvm.providers.cloud import planned_instance

DATA = {"size": 20}


def data_lab(lab, ec2, **settings):
    """An aws profile with a data volume, its waits asked again at once (moto answers at once)."""
    provider = provider_for(lab, image=shared_image(ec2), **{"data": DATA, **settings})
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


def test_growing_waits_until_the_modification_is_optimizing_and_a_backup_until_completed(lab, ec2, capsys):
    """EC2's own walks (moto_ec2_rules.ResizeAndSnapshotStates): ModifyVolume's modification is modifying before
    optimizing, when the new size is the guest's; a snapshot is pending before completed.  Each verb ends only
    once EC2 says so."""
    provider = data_lab(lab, ec2)
    volume = provider.attach_data(provider.create(public_key=public_key()))
    with ResizeAndSnapshotStates(polls=2) as states:
        grown = provider.grow_data(volume, 40)
        assert (states.shown, grown.size_gb) == (["modifying", "modifying", "optimizing"], 40)
        backup = provider.back_up_data(grown)
        assert (states.shown[3:], backup.state, backup.size_gb) == (["pending", "pending"], BACKUP_READY, 40)
    assert f"aws: {volume.id} has 40 GB (" in capsys.readouterr().out


def test_a_modification_ec2_fails_is_one_line(lab, ec2):
    provider = data_lab(lab, ec2)
    volume = provider.attach_data(provider.create(public_key=public_key()))
    with ResizeAndSnapshotStates(fail=True), pytest.raises(LabvmError) as failed:
        provider.grow_data(volume, 40)
    assert str(failed.value).startswith(f"aws: {volume.id} has 40 GB did not happen: ")
    assert "\n" not in str(failed.value)


def test_ec2_refuses_a_smaller_size_and_labvm_never_asks_it(lab, ec2):
    """The refusal is EC2's (the fake's rule, seen here); labvm's contract refuses first, sending nothing."""
    provider = data_lab(lab, ec2)
    volume = provider.attach_data(provider.create(public_key=public_key()))
    with ResizeAndSnapshotStates():
        with pytest.raises(ClientError, match="cannot be smaller"):
            ec2.modify_volume(VolumeId=volume.id, Size=10)
        calls = sent_calls(provider)
        with pytest.raises(LabvmError, match="a volume only grows"):
            provider.grow_data(volume, 10)
    assert calls == []


def test_inv_data_backs_up_grows_prunes_and_plans_nothing(lab, ec2):
    """`inv data` as a user types it, the VM stopped: --plan changes nothing; --grow and --backup do, the
    filesystem left to the next `up`; --prune --keep 1 leaves the newest; each backup listed."""
    provider = data_lab(lab, ec2)
    volume = provider.attach_data(provider.stop(provider.create(public_key=public_key())))
    lab.extra_env["LABVM_OWNER"] = "hedy"  # as this process made it

    planned = lab.inv("data", "--host", "aws", "--grow", "30", "--backup", "--plan")
    assert "ec2.modify_volume(" in planned.stdout and "ec2.create_snapshot(" in planned.stdout
    assert provider.data_backups() == [] and provider.data_volume().size_gb == 20

    done = lab.inv("data", "--host", "aws", "--grow", "30", "--backup")
    (backup,) = provider.data_backups()
    assert f"data: {volume.name} ({volume.id}) is 30 GB" in done.stdout
    assert "data: its filesystem grows at the next `inv up --host aws`" in done.stdout
    assert f"data: backed up as {backup.id} (" in done.stdout and "  backups: 1" in done.stdout
    assert backup.size_gb == 30

    lab.inv("data", "--host", "aws", "--backup")
    newest = provider.data_backups()[0]
    pruned = lab.inv("data", "--host", "aws", "--prune", "--keep", "1")
    assert f"data: deleted the backup {backup.id}" in pruned.stdout
    assert [b.id for b in provider.data_backups()] == [newest.id]
    refused = lab.inv("data", "--host", "aws", "--keep", "1", check=False)
    assert refused.returncode == 1 and "--keep: says how many backups --prune keeps; add --prune" in refused.output


def test_check_counts_the_regions_volumes_of_the_type_against_the_ebs_storage_quota(lab, ec2, monkeypatch):
    """The quota is the account's: every gp3 volume of the region counts, labvm's or not; a quota never raised
    is AWS's default (moto_ec2_rules.EBS_DEFAULT_QUOTAS: 50 TiB), a lowered one is the applied value."""
    ec2.create_volume(Size=8, AvailabilityZone=f"{REGION}a", VolumeType="gp3")  # someone else's
    provider = data_lab(lab, ec2)
    (line,) = [c for c in provider.preflight(public_key()) if c.name == "data"]
    assert line.ok and line.detail == "none yet; 8 of 51200 GiB of gp3 storage in use, 20 more fit"
    monkeypatch.setitem(EBS_APPLIED_QUOTAS, "L-7A658B76", 0.02)  # 20.48 GiB
    (line,) = [c for c in data_lab(lab, ec2).preflight(public_key()) if c.name == "data"]
    assert not line.ok and line.detail == (
        "8 of 20 GiB of gp3 storage in use and the data volume needs 20; "
        "delete volumes or request more in Service Quotas (EBS, L-7A658B76)"
    )
    (line,) = [
        c for c in data_lab(lab, ec2, data={"size": 20, "type": "st1"}).preflight(public_key()) if c.name == "data"
    ]
    assert line.ok and line.detail == "none yet; not checked: labvm knows no storage quota of st1 volumes"


def test_a_provisioned_iops_type_is_refused_in_one_line_as_ec2_would_refuse_it_later(lab, ec2):
    """EC2 refuses io1 and io2 without Iops (moto_ec2_rules.create_volume, seen here); labvm asks for none, so
    data.type io2 is one line before anything is made, with the type that needs no figure."""
    with pytest.raises(ClientError, match="MissingParameter"):
        ec2.create_volume(Size=20, AvailabilityZone=f"{REGION}a", VolumeType="io2")
    provider = data_lab(lab, ec2, data={"size": 20, "type": "io2"})
    machine = provider.create(public_key=public_key())
    with pytest.raises(LabvmError) as refused:
        provider.attach_data(machine)
    assert str(refused.value).endswith(
        ".data.type: io2 volumes need an IOPS figure, which labvm does not ask for, and bill for each IOPS; "
        "use gp3 (3000 IOPS included, more by `aws ec2 modify-volume --iops`)"
    )
    assert provider.data_volume() is None
