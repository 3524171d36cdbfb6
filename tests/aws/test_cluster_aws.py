"""A Dask cluster's worker VMs on moto's EC2 server, provider-level (no SSH): made beside the head,
tagged, found, stopped, started, deleted; the Dask ports open only between the cluster's machines."""

import pytest

from aws_world import aws_env, lab_subnet, owned, provider_for, public_key, shared_image, tags

from labvm.providers.aws.api import instance_of

KEY = public_key()


@pytest.fixture(autouse=True)
def strict_group_references():
    """EC2 refuses what moto takes: a rule whose source is a group of another VPC."""
    from moto.ec2.exceptions import EC2ClientError
    from moto.ec2.models.security_groups import SecurityGroupBackend

    original = SecurityGroupBackend.authorize_security_group_ingress

    def authorize(backend, group_name_or_id, *args, **kwargs):
        # https://docs.aws.amazon.com/vpc/latest/userguide/security-group-rules.html ("Security group
        # referencing"): "The referenced security group must be in the same VPC or a peered VPC";
        # EC2 answers InvalidGroup.NotFound ("...belong to different networks").
        group = backend.get_security_group_from_id(group_name_or_id)
        for pair in kwargs.get("source_groups") or []:
            source = backend.get_security_group_from_id(pair.get("GroupId", ""))
            if group and source and source.vpc_id != group.vpc_id:
                raise EC2ClientError(
                    "InvalidGroup.NotFound", "You have specified two resources that belong to different networks."
                )
        return original(backend, group_name_or_id, *args, **kwargs)

    SecurityGroupBackend.authorize_security_group_ingress = authorize
    yield
    SecurityGroupBackend.authorize_security_group_ingress = original


def described(ec2, instance_id: str) -> dict:
    return ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]


def groups_of(data: dict) -> list[str]:
    return [g["GroupId"] for g in data.get("SecurityGroups") or data["NetworkInterfaces"][0]["Groups"]]


def head_in_a_lab_subnet(lab, ec2, **settings):
    """A head in a VPC of the lab's own (the region's default VPC exists too: workers must not go there)."""
    subnet = lab_subnet(ec2)
    provider = provider_for(lab, image=shared_image(ec2), subnet=subnet["SubnetId"], **settings)
    return provider, provider.create(public_key=KEY)


def test_workers_are_made_beside_the_head_and_found_by_their_tags(lab, ec2):
    provider, head = head_in_a_lab_subnet(lab, ec2)
    made = provider.create_workers([1, 2, 3], "", "", KEY)

    assert [w.name for w in made] == ["labvm-aws-w1", "labvm-aws-w2", "labvm-aws-w3"]
    assert provider.workers() == made and all(w.state == "running" and w.address for w in made)
    assert provider.find() == instance_of(described(ec2, head.id))  # never a worker
    first = described(ec2, head.id)
    assert provider.find().private_address == first["PrivateIpAddress"]  # where the workers reach the scheduler
    for index, worker in enumerate(made, 1):
        data = described(ec2, worker.id)
        assert (
            tags(data).items()
            >= {
                "labvm:cluster": "aws",
                "labvm:role": "worker",
                "labvm:index": str(index),
                "labvm:owner": "hedy",
                "labvm:profile": "aws",
            }.items()
        )
        assert (data["SubnetId"], data["VpcId"], data["ImageId"], data["KeyName"], data["InstanceType"]) == (
            first["SubnetId"],
            first["VpcId"],
            first["ImageId"],
            first["KeyName"],
            "t3.small",
        )
        assert groups_of(data) == groups_of(first)
        shutdown = ec2.describe_instance_attribute(InstanceId=worker.id, Attribute="instanceInitiatedShutdownBehavior")
        assert shutdown["InstanceInitiatedShutdownBehavior"]["Value"] == "stop"  # a worker stops itself, never deletes


def test_worker_size_is_checked_with_the_closest_names(lab, ec2):
    from labvm.errors import LabvmError

    provider, _ = head_in_a_lab_subnet(lab, ec2)
    with pytest.raises(LabvmError) as raised:
        provider.create_workers([1], "", "t3.mediun", KEY)
    message = str(raised.value)
    assert (
        "profiles.aws.cluster.worker_size: no instance type 't3.mediun'; closest: t3.medium" in message
        and "t3.medium" in message
        and "\n" not in message
    )
    assert provider.workers() == []
    (worker,) = provider.create_workers([1], "", "t3.medium", KEY)
    assert worker.size == "t3.medium"


def test_a_rerun_makes_only_the_missing_workers_and_one_failure_keeps_the_others(lab, ec2):
    from moto.ec2.exceptions import EC2ClientError
    from moto.ec2.models.instances import InstanceBackend

    from labvm.errors import LabvmError

    provider, _ = head_in_a_lab_subnet(lab, ec2)
    original = InstanceBackend.run_instances

    def short_of_capacity(backend, image_id, count, user_data, security_group_names, **kwargs):
        # https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html: EC2 may answer
        # InsufficientInstanceCapacity to one RunInstances and not to the next.
        if kwargs.get("tags", {}).get("instance", {}).get("labvm:index") == "2":
            raise EC2ClientError(
                "InsufficientInstanceCapacity", "We currently do not have sufficient t3.small capacity."
            )
        return original(backend, image_id, count, user_data, security_group_names, **kwargs)

    InstanceBackend.run_instances = short_of_capacity
    try:
        with pytest.raises(LabvmError) as raised:
            provider.create_workers([1, 2, 3], "", "", KEY)
    finally:
        InstanceBackend.run_instances = original
    message = str(raised.value)
    assert "1 worker(s) not made (w2: AWS InsufficientInstanceCapacity" in message and "w1, w3 made and kept" in message
    assert "inv up --host aws" in message and "\n" not in message
    assert [w.name for w in provider.workers()] == ["labvm-aws-w1", "labvm-aws-w3"]

    (again,) = provider.create_workers([2], "", "", KEY)
    assert again.name == "labvm-aws-w2"
    assert [w.name for w in provider.workers()] == ["labvm-aws-w1", "labvm-aws-w2", "labvm-aws-w3"]


def test_dask_ports_are_open_only_between_the_cluster_machines(lab, ec2):
    provider, head = head_in_a_lab_subnet(lab, ec2)
    provider.create_workers([1, 2], "", "", KEY)
    provider.allow_cluster()
    provider.allow_cluster()  # idempotent

    (group_id,) = groups_of(described(ec2, head.id))
    (group,) = ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"]
    by_port = {(p["IpProtocol"], p.get("FromPort"), p.get("ToPort")): p for p in group["IpPermissions"]}
    dask = by_port[("tcp", 0, 65535)]
    assert [pair["GroupId"] for pair in dask["UserIdGroupPairs"]] == [group_id]
    assert dask.get("IpRanges", []) == [] and dask.get("Ipv6Ranges", []) == []
    # Nothing new reaches the machines from outside: port 22 from the caller only, as before.
    ranges = [(key, r["CidrIp"]) for key, p in by_port.items() for r in p.get("IpRanges", [])]
    assert ranges == [(("tcp", 22, 22), "127.0.0.1/32")]


def test_a_rule_naming_a_group_of_another_vpc_is_refused(lab, ec2):
    """The fake refuses as EC2 does, so the test above shows the group references itself in its VPC."""
    from botocore.exceptions import ClientError

    provider, head = head_in_a_lab_subnet(lab, ec2)
    (group_id,) = groups_of(described(ec2, head.id))
    default = ec2.describe_security_groups(GroupNames=["default"])["SecurityGroups"][0]["GroupId"]  # the default VPC's
    with pytest.raises(ClientError, match="InvalidGroup.NotFound"):
        ec2.authorize_security_group_ingress(
            GroupId=group_id,
            IpPermissions=[
                {"IpProtocol": "tcp", "FromPort": 8786, "ToPort": 8786, "UserIdGroupPairs": [{"GroupId": default}]}
            ],
        )


def test_a_worker_stops_starts_and_is_terminated_alone(lab, ec2):
    provider, head = head_in_a_lab_subnet(lab, ec2, elastic_ip=True)
    (address,) = ec2.describe_addresses(Filters=[{"Name": "tag:labvm:owner", "Values": ["hedy"]}])["Addresses"]
    first, second = provider.create_workers([1, 2], "", "", KEY)

    stopped = provider.stop(first)
    assert stopped.state == "stopped" and provider.workers()[0].state == "stopped"
    started = provider.start(stopped)
    assert started.state == "running" and started.name == "labvm-aws-w1"
    # The profile's Elastic IP stays with the head: starting a worker does not take it.
    (after,) = ec2.describe_addresses(AllocationIds=[address["AllocationId"]])["Addresses"]
    assert after["InstanceId"] == head.id

    provider.terminate(second)
    assert [w.name for w in provider.workers()] == ["labvm-aws-w1"]
    assert ec2.describe_addresses(AllocationIds=[address["AllocationId"]])["Addresses"][0]["InstanceId"] == head.id
    assert provider.find().id == head.id and provider.find().state == "running"


def test_terminate_workers_deletes_this_owners_workers_only(lab, ec2, monkeypatch):
    provider, head = head_in_a_lab_subnet(lab, ec2)
    provider.create_workers([1, 2], "", "", KEY)
    monkeypatch.setenv("LABVM_OWNER", "grace")
    theirs = provider_for(lab, image=shared_image(ec2), subnet=described(ec2, head.id)["SubnetId"])
    theirs.create(public_key=KEY)
    (kept,) = theirs.create_workers([1], "", "", KEY)

    provider.terminate_workers()
    assert provider.workers() == [] and provider.find().id == head.id
    assert [w.id for w in theirs.workers()] == [kept.id]
    provider.terminate_workers()  # nothing left: nothing to do

    # With the workers gone, terminating the head leaves nothing of hedy's.
    provider.terminate(provider.find())
    assert owned(ec2, "hedy") == {"instances": [], "groups": [], "keys": [], "addresses": []}


def test_audit_lists_workers_and_a_worker_whose_head_is_gone(lab, ec2):
    from labvm import audit, config

    provider, head = head_in_a_lab_subnet(lab, ec2)
    provider.create_workers([1, 2], "", "", KEY)
    rows = audit._judge(provider.inventory(), [provider], ("aws",))
    workers = sorted((r for r in rows if r["role"] == "worker" and r["kind"] == "instance"), key=lambda r: r["index"])
    assert [(r["profile"], r["index"], r["next_step"]) for r in workers] == [
        ("aws+w1", 1, "inv down --host aws"),
        ("aws+w2", 2, "inv down --host aws"),
    ]

    ec2.terminate_instances(InstanceIds=[head.id])  # the head deleted by hand: its workers bill on
    table = audit.report(config.load(lab.hosts), as_json=False)
    zombies = [line for line in table.splitlines() if line.split()[2:3] == ["worker"]]
    assert len(zombies) == 2
    assert all("a worker of aws whose head VM is gone: aws ec2 terminate-instances" in line for line in zombies)


def test_pruning_images_keeps_the_one_new_workers_are_made_from(lab, ec2, moto):
    """A head made from a labvm image: `images --prune` keeps that image, or the next worker could not be made."""

    first_head = provider_for(lab, image=shared_image(ec2)).create(public_key=KEY)
    provider = provider_for(lab, image=shared_image(ec2))
    base = provider.snapshot(first_head, "base").id
    provider.terminate(first_head, False)
    provider = provider_for(lab, image=base, cluster={"workers": 1})
    head = provider.create(public_key=KEY)
    newer = [provider.snapshot(head, name, no_reboot=True).id for name in ("later", "latest")]
    lab.extra_env.update(aws_env(moto), LABVM_OWNER="hedy")

    pruned = lab.inv("images", "--host", "aws", "--prune", "--keep", "1").output

    assert f"kept {base}" in pruned and f"deregistered {newer[0]}" in pruned
    assert [i.id for i in provider.images()] == [base, newer[1]]
    (worker,) = provider.create_workers([1], "", "", KEY)
    assert described(ec2, worker.id)["ImageId"] == base
