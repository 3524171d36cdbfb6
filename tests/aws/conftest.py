"""Provider-level AWS tests: EC2 as institutional accounts have it, each test with moto reset after it."""

import urllib.request

import pytest

from aws_world import REGION, aws_env


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
                "Network interfaces and an instance-level security groups may not be specified on the same request"
            )
        subnet_id = kwargs.get("subnet_id") or next((n["SubnetId"] for n in nics if "SubnetId" in n), None)
        groups = kwargs.get("security_group_ids") or [g for n in nics for g in n.get("Groups", [])]
        # https://docs.aws.amazon.com/vpc/latest/userguide/vpc-security-groups.html: "Security groups
        # are specific to a VPC"; an instance can only use groups of its subnet's VPC.
        if subnet_id:
            vpc = backend.get_subnet(subnet_id).vpc_id
            for group_id in groups:
                if backend.get_security_group_from_id(group_id).vpc_id != vpc:
                    raise EC2ClientError(
                        "InvalidParameter",
                        f"Security group {group_id} and subnet {subnet_id} belong to different networks.",
                    )
        return original(backend, image_id, count, user_data, security_group_names, **kwargs)

    InstanceBackend.run_instances = run_instances
    SecurityGroupBackend.create_security_group = create_security_group
    yield
    InstanceBackend.run_instances = original
    SecurityGroupBackend.create_security_group = original_group
