"""The worlds answer as the real clouds do where the suite relies on it: moto patched where it differs
from EC2 (worlds.ec2_as_aws), each refusal shown beside the request EC2 accepts."""

import pytest

from worlds import public_key


def test_moto_refuses_the_names_and_descriptions_ec2_refuses(aws_world):
    from botocore.exceptions import ClientError

    ec2 = aws_world.ec2
    with pytest.raises(ClientError, match="InvalidParameterValue"):
        ec2.create_security_group(GroupName="lab", Description="labvm: Dask between the cluster's machines")
    with pytest.raises(ClientError, match="InvalidParameterValue"):
        ec2.create_security_group(GroupName="sg-lab", Description="labvm")
    group = ec2.create_security_group(GroupName="labvm-lab-hedy@lab.org", Description="labvm: SSH only")["GroupId"]

    rule = {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22}
    with pytest.raises(ClientError, match="InvalidParameterValue"):
        ec2.authorize_security_group_ingress(
            GroupId=group,
            IpPermissions=[{**rule, "UserIdGroupPairs": [{"GroupId": group, "Description": "the cluster's machines"}]}],
        )
    ec2.authorize_security_group_ingress(
        GroupId=group,
        IpPermissions=[{**rule, "IpRanges": [{"CidrIp": "198.51.100.7/32", "Description": "labvm: SSH"}]}],
    )

    with pytest.raises(ClientError, match="InvalidParameterValue"):
        ec2.import_key_pair(KeyName="labvm-hédy", PublicKeyMaterial=public_key().encode())
    ec2.import_key_pair(KeyName="labvm-hedy@lab.org", PublicKeyMaterial=public_key().encode())


def test_an_elastic_ip_stays_with_a_stopped_and_started_instance(aws_world):
    ec2 = aws_world.ec2
    (instance,) = ec2.run_instances(ImageId=aws_world.image, InstanceType="t3.small", MinCount=1, MaxCount=1)[
        "Instances"
    ]
    address = ec2.allocate_address(Domain="vpc")
    ec2.associate_address(InstanceId=instance["InstanceId"], AllocationId=address["AllocationId"])
    ec2.stop_instances(InstanceIds=[instance["InstanceId"]])
    ec2.start_instances(InstanceIds=[instance["InstanceId"]])
    (data,) = ec2.describe_instances(InstanceIds=[instance["InstanceId"]])["Reservations"][0]["Instances"]
    assert data["PublicIpAddress"] == address["PublicIp"]
