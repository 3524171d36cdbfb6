"""AWS accounts as institutions have them, on moto's EC2 server: no default VPC (subnet: in the
profile), the SSH rule following the caller, a second laptop's key, and a class of owners
sharing one hosts.yml.  Provider-level: each test builds AwsProvider from a hosts.yml.
"""

import json

import pytest

from aws_world import REGION, delete_default_vpc, lab_subnet, owned, provider_for, public_key, shared_image, tags


def test_without_a_default_vpc_a_subnet_is_asked_for_in_one_line(lab, ec2):
    from labvm.errors import LabvmError

    delete_default_vpc(ec2)
    provider = provider_for(lab, image=shared_image(ec2))
    with pytest.raises(LabvmError) as raised:
        provider.create(public_key=public_key())
    message = str(raised.value)
    assert "no default VPC" in message and "profiles.aws.subnet" in message
    assert "aws ec2 describe-subnets" in message and "\n" not in message
    # Nothing was made: the network is the first question.
    assert owned(ec2, "hedy") == {"instances": [], "groups": [], "keys": [], "addresses": []}


def test_subnet_gives_the_vpc_the_group_and_a_public_address(lab, ec2):
    delete_default_vpc(ec2)
    subnet = lab_subnet(ec2)
    provider = provider_for(lab, image=shared_image(ec2), subnet=subnet["SubnetId"])
    instance = provider.create(public_key=public_key())

    (data,) = [i for r in ec2.describe_instances(InstanceIds=[instance.id])["Reservations"] for i in r["Instances"]]
    assert data["SubnetId"] == subnet["SubnetId"] and data["VpcId"] == subnet["VpcId"]
    # The groups are those of the primary interface (moto lists none at instance level then).
    (group,) = data["NetworkInterfaces"][0]["Groups"]
    (made,) = ec2.describe_security_groups(GroupIds=[group["GroupId"]])["SecurityGroups"]
    assert made["VpcId"] == subnet["VpcId"] and tags(made)["labvm:owner"] == "hedy"
    # The subnet does not map public addresses: labvm asked for one, and SSH goes there.
    assert data.get("PublicIpAddress") and instance.address == data["PublicIpAddress"]

    # A second create in the same place finds the group in that VPC instead of making another.
    provider.terminate(instance)
    again = provider.create(public_key=public_key())
    assert provider.find().id == again.id
    mine = ec2.describe_security_groups(Filters=[{"Name": "tag:labvm:owner", "Values": ["hedy"]}])["SecurityGroups"]
    assert len(mine) == 1
    provider.terminate(again)


def test_unknown_subnet_names_the_key(lab, ec2):
    from labvm.errors import LabvmError

    provider = provider_for(lab, image=shared_image(ec2), subnet="subnet-0123456789abcdef0")
    with pytest.raises(LabvmError) as raised:
        provider.create(public_key=public_key())
    assert "profiles.aws.subnet" in str(raised.value) and "aws ec2 describe-subnets" in str(raised.value)


def test_a_class_of_three_owners_from_one_shared_image(lab, ec2, monkeypatch):
    instructor = provider_for(lab, image=shared_image(ec2), elastic_ip=True)
    course = instructor.snapshot(instructor.create(public_key=public_key()), "course")
    students = {}
    for owner in ("ada", "grace", "alan"):
        monkeypatch.setenv("LABVM_OWNER", owner)  # as each student's laptop has it
        students[owner] = provider_for(lab, image=course.id, elastic_ip=True)
        students[owner].create(public_key=public_key())

    held = {owner: owned(ec2, owner) for owner in students}
    for owner, things in held.items():
        assert [len(v) for v in things.values()] == [1, 1, 1, 1], (owner, things)
        assert things["groups"] == [f"labvm-aws-{owner}"] and things["keys"][0].startswith(f"labvm-{owner}-")
        assert students[owner].find().id == things["instances"][0]
    assert len({things["addresses"][0] for things in held.values()}) == 3
    from labvm import audit, config

    audited = json.loads(audit.report(config.load(lab.hosts), as_json=True))["resources"]
    assert {row["owner"] for row in audited if row["kind"] == "instance"} >= {"ada", "grace", "alan"}

    students["grace"].terminate(students["grace"].find())
    assert owned(ec2, "grace") == {"instances": [], "groups": [], "keys": [], "addresses": []}
    assert owned(ec2, "ada") == held["ada"] and owned(ec2, "alan") == held["alan"]
    assert instructor.find() is not None


def test_a_second_laptop_gets_its_own_key_pair(lab, ec2):
    from labvm import config
    from labvm.providers.aws import AwsProvider

    laptop, other_laptop = public_key(), public_key()
    provider_for(lab, image=shared_image(ec2)).create(public_key=laptop)  # the first laptop's VM lives on
    lab.write_hosts(
        {
            "gpu": {
                "provider": "aws",
                "region": REGION,
                "user": "ubuntu",
                "image": shared_image(ec2),
                "ssh_cidr": "127.0.0.1/32",
            }
        }
    )
    second = AwsProvider(config.load(lab.hosts).profile("gpu"))  # same owner, another laptop, another profile
    instance = second.create(public_key=other_laptop)

    (data,) = [i for r in ec2.describe_instances(InstanceIds=[instance.id])["Reservations"] for i in r["Instances"]]
    (pair,) = ec2.describe_key_pairs(KeyNames=[data["KeyName"]], IncludePublicKey=True)["KeyPairs"]
    assert pair["PublicKey"].split()[:2] == other_laptop.split()[:2]
    second.terminate(instance)  # the first laptop's key pair stays: its VM still uses it
    assert len(owned(ec2, "hedy")["keys"]) == 1


def test_a_key_pair_of_that_name_with_another_key_is_not_used(lab, ec2):
    from labvm.providers.aws.network import key_name_for
    from labvm.errors import LabvmError

    key = public_key()
    provider = provider_for(lab, image=shared_image(ec2))
    name = key_name_for("hedy", key)
    ec2.import_key_pair(KeyName=name, PublicKeyMaterial=public_key().encode())
    with pytest.raises(LabvmError) as raised:
        provider.create(public_key=key)
    assert f"key pair {name} holds another key than labvm's" in str(raised.value)
    assert owned(ec2, "hedy")["instances"] == []


def rule(ec2, name: str) -> list[str]:
    (group,) = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": [name]}])["SecurityGroups"]
    return [r["CidrIp"] for p in group["IpPermissions"] if p["FromPort"] == 22 for r in p["IpRanges"]]


def test_the_ssh_rule_follows_the_caller(lab, ec2, capsys):
    image = shared_image(ec2)
    instance = provider_for(lab, image=image, ssh_cidr="203.0.113.5/32").create(public_key=public_key())
    assert rule(ec2, "labvm-aws-hedy") == ["203.0.113.5/32"]

    moved = provider_for(lab, image=image, ssh_cidr="198.51.100.7/32")  # the laptop on another network
    capsys.readouterr()
    moved.admit_caller()
    assert "ssh rule: now admits 198.51.100.7/32 (was 203.0.113.5/32)" in capsys.readouterr().out
    assert rule(ec2, "labvm-aws-hedy") == ["198.51.100.7/32"]
    moved.admit_caller()
    assert capsys.readouterr().out == "" and rule(ec2, "labvm-aws-hedy") == ["198.51.100.7/32"]

    # start of a stopped VM from a third network leaves the rule right too.
    moved.stop(instance)
    home = provider_for(lab, image=image, ssh_cidr="192.0.2.9/32")
    home.start(home.find())
    assert rule(ec2, "labvm-aws-hedy") == ["192.0.2.9/32"]


def test_under_plan_a_moved_laptop_s_old_ssh_rule_is_printed_and_kept(lab, ec2, capsys):
    image = shared_image(ec2)
    provider_for(lab, image=image, ssh_cidr="203.0.113.5/32").create(public_key=public_key())
    moved = provider_for(lab, image=image, ssh_cidr="198.51.100.7/32")
    moved.plan = True
    capsys.readouterr()
    moved.admit_caller()
    planned = capsys.readouterr().out
    assert "plan: aws: ec2.authorize_security_group_ingress(" in planned and "198.51.100.7/32" in planned
    assert "plan: aws: ec2.revoke_security_group_ingress(" in planned and "203.0.113.5/32" in planned
    assert rule(ec2, "labvm-aws-hedy") == ["203.0.113.5/32"]  # the laptop at the old address still gets in


@pytest.fixture
def group_outlives_its_instance():
    """Right after terminate EC2 refuses to delete the group: DependencyViolation, "The specified object
    has dependent resources" (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html),
    until the instance's network interface is gone. moto deletes at once; here the first attempts fail."""
    from moto.ec2.exceptions import EC2ClientError
    from moto.ec2.models.security_groups import SecurityGroupBackend

    original = SecurityGroupBackend.delete_security_group
    refusals = {"left": 3}

    def delete_security_group(backend, name=None, group_id=None):
        if refusals["left"] > 0:
            refusals["left"] -= 1
            raise EC2ClientError("DependencyViolation", f"resource {group_id} has a dependent object")
        return original(backend, name, group_id)

    SecurityGroupBackend.delete_security_group = delete_security_group
    yield refusals
    SecurityGroupBackend.delete_security_group = original


def test_terminate_waits_out_the_group_dependency_and_deletes_the_key(lab, ec2, group_outlives_its_instance, capsys):
    provider = provider_for(lab, image=shared_image(ec2))
    provider.parts.network.retry_delay = 0.01  # EC2 takes seconds to minutes; the refusals here are counted, not timed
    provider.terminate(provider.create(public_key=public_key()))
    assert group_outlives_its_instance["left"] == 0
    assert owned(ec2, "hedy") == {"instances": [], "groups": [], "keys": [], "addresses": []}

    group_outlives_its_instance["left"] = 10**6  # a group that never goes within the bound
    provider.parts.network.retry_limit = 0.05
    provider.terminate(provider.create(public_key=public_key()))
    said = capsys.readouterr()
    assert "security group labvm-aws-hedy is still in use" in said.err and "aws ec2 delete-security-group" in said.err
    assert owned(ec2, "hedy")["keys"] == [] and owned(ec2, "hedy")["groups"] == ["labvm-aws-hedy"]


NOTHING = {"instances": [], "groups": [], "keys": [], "addresses": []}


@pytest.mark.parametrize("owner", ["hedy.lamarr", "hedy@lab.org", "Hedy Lamarr", "o'brien"])
def test_every_owner_name_gives_names_ec2_accepts(lab, ec2, monkeypatch, owner):
    """The moto fixture checks group names, descriptions and key names as EC2 does (moto_ec2_rules.py)."""
    monkeypatch.setenv("LABVM_OWNER", owner)
    provider = provider_for(lab, image=shared_image(ec2), elastic_ip=True)
    made = provider.create(public_key=public_key())
    assert provider.find().id == made.id
    assert [len(things) for things in owned(ec2, owner).values()] == [1, 1, 1, 1]
    provider.terminate(made)
    assert owned(ec2, owner) == NOTHING


def test_what_ec2_has_just_made_may_be_not_found_at_first(lab, ec2):
    from moto_ec2_rules import Lagging

    provider = provider_for(lab, image=shared_image(ec2), elastic_ip=True)
    provider.api.settle_delay = 0.01  # EC2 takes seconds; the refusals here are counted, not timed
    with Lagging() as lag:
        made = provider.create(public_key=public_key())
    assert sorted(lag.refused) == ["InvalidAllocationID.NotFound", "InvalidGroup.NotFound", "InvalidKeyPair.NotFound"]
    assert made.state == "running" and [len(things) for things in owned(ec2, "hedy").values()] == [1, 1, 1, 1]
    (address,) = ec2.describe_addresses(Filters=[{"Name": "tag:labvm:owner", "Values": ["hedy"]}])["Addresses"]
    assert address["InstanceId"] == made.id


def test_a_resource_that_stays_not_found_ends_the_retries_with_one_line(lab, ec2):
    """The retries of EC2's lag are bounded: what stays NotFound (a group deleted meanwhile) fails the verb."""
    from labvm.errors import LabvmError
    from moto_ec2_rules import Lagging

    provider = provider_for(lab, image=shared_image(ec2))
    provider.api.settle_delay, provider.api.settle_limit = 0.01, 0.1
    with Lagging(never_caught_up=True) as lag, pytest.raises(LabvmError) as failed:
        provider.create(public_key=public_key())
    assert "\n" not in str(failed.value) and "NotFound" in str(failed.value)
    assert 1 < len(lag.refused) < 10 and set(lag.refused) == {"InvalidGroup.NotFound"}


def everything(ec2) -> tuple:
    """All moto holds that a verb could change."""
    instances = [i for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]]
    return (
        instances,
        ec2.describe_security_groups()["SecurityGroups"],
        ec2.describe_key_pairs()["KeyPairs"],
        ec2.describe_addresses()["Addresses"],
        ec2.describe_images(Owners=["self"])["Images"],
        ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"],
    )


class Plans:
    """Each verb first under --plan, then for real: under the plan moto is unchanged and no changing request
    leaves the provider; what the plan printed is what the verb then sends."""

    def __init__(self, ec2, capsys):
        self.ec2, self.capsys, self.sent = ec2, capsys, []

    def watch(self, provider):
        from botocore import xform_name

        def record(model, **_):
            if not model.name.startswith(("Describe", "Get")):
                self.sent.append(xform_name(model.name))

        provider.api.ec2.meta.events.register("before-call.ec2", record)
        return provider

    def check(self, provider, verb, *args):
        before = everything(self.ec2)
        self.capsys.readouterr()
        provider.plan = True
        verb(*args)
        planned = [
            line.split("(")[0].removeprefix("plan: aws: ec2.")
            for line in self.capsys.readouterr().out.splitlines()
            if line.startswith("plan: aws: ec2.")
        ]
        assert self.sent == [] and everything(self.ec2) == before, verb.__name__
        provider.plan = False
        made = verb(*args)
        assert planned == self.sent, (verb.__name__, planned, self.sent)
        self.sent = []
        return made


def test_plan_changes_nothing_and_prints_every_change_of_each_verb(lab, ec2, capsys):
    plans = Plans(ec2, capsys)
    provider = plans.watch(provider_for(lab, image=shared_image(ec2), elastic_ip=True))
    key = public_key()
    head = plans.check(provider, provider.create, None, key)
    stopped = plans.check(provider, provider.stop, head)
    head = plans.check(provider, provider.start, stopped)
    # moto drops an Elastic IP on stop, AWS keeps it: resize is planned on a profile without one.
    plain = plans.watch(provider_for(lab, image=shared_image(ec2)))
    head = plans.check(plain, plain.resize, head, "t3.medium")
    assert head.size == "t3.medium"
    image = plans.check(provider, provider.snapshot, head, "labvm", ("123456789012",))
    plans.check(provider, provider.delete_image, image)
    workers = plans.check(provider, provider.create_workers, [1, 2], "", "", key)
    assert len(workers) == 2
    plans.check(provider, provider.allow_cluster)
    plans.check(provider, provider.terminate_workers)
    plans.check(provider, provider.terminate, head)
    assert owned(ec2, "hedy") == NOTHING
