"""AWS accounts as institutions have them, on moto's EC2 server: no default VPC (subnet: in the
profile), the SSH rule following the caller, a second laptop's key, and a class of owners
sharing one hosts.yml.  Provider-level: each test builds AwsProvider from a hosts.yml.
"""

import json
import urllib.request

import pytest

from test_aws import REGION, aws_env, moto, tags  # noqa: F401 (moto is a fixture)


@pytest.fixture
def ec2(moto, monkeypatch):
    import boto3

    for name, value in aws_env(moto).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("LABVM_OWNER", "hedy")
    yield boto3.client("ec2", region_name=REGION)
    # moto's state is one per process, shared with every other module's moto server.
    urllib.request.urlopen(urllib.request.Request(f"{moto}/moto-api/reset", method="POST"), timeout=10)


@pytest.fixture(autouse=True)
def strict_ec2():
    """moto makes what EC2 refuses; these are EC2's refusals, checked before moto makes anything."""
    from moto.ec2.exceptions import EC2ClientError, InvalidParameterCombination, VPCIdNotSpecifiedError
    from moto.ec2.models.instances import InstanceBackend
    from moto.ec2.models.security_groups import SecurityGroupBackend

    original = InstanceBackend.run_instances
    original_group = SecurityGroupBackend.create_security_group

    def create_security_group(backend, name, description, vpc_id=None, **kwargs):
        # https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_CreateSecurityGroup.html, VpcId:
        # "Required for a nondefault VPC"; without a default VPC EC2 answers VPCIdNotSpecified
        # (moto would make the group in the deleted default VPC).
        if not vpc_id and backend.get_default_vpc() is None:
            raise VPCIdNotSpecifiedError()
        return original_group(backend, name, description, vpc_id, **kwargs)

    def run_instances(backend, image_id, count, user_data, security_group_names, **kwargs):
        nics = kwargs.get("nics") or []
        # https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_RunInstances.html, SecurityGroupId:
        # "If you specify a network interface, you must specify any security groups as part of the
        # network interface instead."
        if nics and (kwargs.get("security_group_ids") or security_group_names):
            raise InvalidParameterCombination(
                "Network interfaces and an instance-level security groups may not be specified on the same request")
        subnet_id = kwargs.get("subnet_id") or next((n["SubnetId"] for n in nics if "SubnetId" in n), None)
        groups = kwargs.get("security_group_ids") or [g for n in nics for g in n.get("Groups", [])]
        # https://docs.aws.amazon.com/vpc/latest/userguide/vpc-security-groups.html: "Security groups
        # are specific to a VPC"; an instance can only use groups of its subnet's VPC.
        if subnet_id:
            vpc = backend.get_subnet(subnet_id).vpc_id
            for group_id in groups:
                if backend.get_security_group_from_id(group_id).vpc_id != vpc:
                    raise EC2ClientError("InvalidParameter",
                        f"Security group {group_id} and subnet {subnet_id} belong to different networks.")
        return original(backend, image_id, count, user_data, security_group_names, **kwargs)

    InstanceBackend.run_instances = run_instances
    SecurityGroupBackend.create_security_group = create_security_group
    yield
    InstanceBackend.run_instances = original
    SecurityGroupBackend.create_security_group = original_group


def public_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate().public_key()
    return key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


def provider_for(lab, **settings):
    from labvm import config
    from labvm.providers.aws import AwsProvider

    lab.write_hosts({"aws": {"provider": "aws", "region": REGION, "user": "ubuntu", "instance_type": "t3.small",
                             "ssh_cidr": "127.0.0.1/32", **settings}})
    return AwsProvider(config.load(lab.hosts).profile("aws"))


def shared_image(ec2) -> str:
    return ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]


def delete_default_vpc(ec2) -> None:
    """Control Tower and many institutional accounts have no default VPC."""
    (vpc,) = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
    vpc_filter = [{"Name": "vpc-id", "Values": [vpc["VpcId"]]}]
    for subnet in ec2.describe_subnets(Filters=vpc_filter)["Subnets"]:
        ec2.delete_subnet(SubnetId=subnet["SubnetId"])
    for gateway in ec2.describe_internet_gateways(Filters=[{"Name": "attachment.vpc-id", "Values": [vpc["VpcId"]]}])["InternetGateways"]:
        ec2.detach_internet_gateway(InternetGatewayId=gateway["InternetGatewayId"], VpcId=vpc["VpcId"])
        ec2.delete_internet_gateway(InternetGatewayId=gateway["InternetGatewayId"])
    ec2.delete_vpc(VpcId=vpc["VpcId"])


def lab_subnet(ec2) -> dict:
    """A VPC of the lab's own with a subnet that does not give instances a public address."""
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    gateway = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=gateway, VpcId=vpc)
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.20.1.0/24", AvailabilityZone=f"{REGION}a")["Subnet"]
    # "By default, nondefault subnets have the IPv4 public addressing attribute set to false"
    # (https://docs.aws.amazon.com/vpc/latest/userguide/subnet-public-ip.html); moto sets it true on
    # the first subnet of a zone, so it is set here as EC2 would have it.
    ec2.modify_subnet_attribute(SubnetId=subnet["SubnetId"], MapPublicIpOnLaunch={"Value": False})
    return ec2.describe_subnets(SubnetIds=[subnet["SubnetId"]])["Subnets"][0]


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


def owned(ec2, owner: str) -> dict:
    """What EC2 holds for one owner: live instances, security groups, key pairs, Elastic IPs."""
    mine = [{"Name": "tag:labvm:owner", "Values": [owner]}]
    live = mine + [{"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]}]
    return {
        "instances": [i["InstanceId"] for r in ec2.describe_instances(Filters=live)["Reservations"] for i in r["Instances"]],
        "groups": [g["GroupName"] for g in ec2.describe_security_groups(Filters=mine)["SecurityGroups"]],
        "keys": [k["KeyName"] for k in ec2.describe_key_pairs(Filters=mine)["KeyPairs"]],
        "addresses": [a["PublicIp"] for a in ec2.describe_addresses(Filters=mine)["Addresses"]],
    }


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
    lab.write_hosts({"gpu": {"provider": "aws", "region": REGION, "user": "ubuntu", "image": shared_image(ec2),
                             "ssh_cidr": "127.0.0.1/32"}})
    second = AwsProvider(config.load(lab.hosts).profile("gpu"))  # same owner, another laptop, another profile
    instance = second.create(public_key=other_laptop)

    (data,) = [i for r in ec2.describe_instances(InstanceIds=[instance.id])["Reservations"] for i in r["Instances"]]
    (pair,) = ec2.describe_key_pairs(KeyNames=[data["KeyName"]], IncludePublicKey=True)["KeyPairs"]
    assert pair["PublicKey"].split()[:2] == other_laptop.split()[:2]
    second.terminate(instance)  # the first laptop's key pair stays: its VM still uses it
    assert len(owned(ec2, "hedy")["keys"]) == 1


def test_a_key_pair_of_that_name_with_another_key_is_not_used(lab, ec2):
    from labvm.providers.aws import AwsProvider
    from labvm.errors import LabvmError

    key = public_key()
    provider = provider_for(lab, image=shared_image(ec2))
    name = AwsProvider._key_name_for("hedy", key)
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
    provider.retry_delay = 0.01  # EC2 takes seconds to minutes; the refusals here are counted, not timed
    provider.terminate(provider.create(public_key=public_key()))
    assert group_outlives_its_instance["left"] == 0
    assert owned(ec2, "hedy") == {"instances": [], "groups": [], "keys": [], "addresses": []}

    group_outlives_its_instance["left"] = 10**6  # a group that never goes within the bound
    provider.retry_limit = 0.05
    provider.terminate(provider.create(public_key=public_key()))
    said = capsys.readouterr()
    assert "security group labvm-aws-hedy is still in use" in said.err and "aws ec2 delete-security-group" in said.err
    assert owned(ec2, "hedy")["keys"] == [] and owned(ec2, "hedy")["groups"] == ["labvm-aws-hedy"]
