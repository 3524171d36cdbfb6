"""moto answers as EC2 where the live lifecycle meets it: a start moves LaunchTime (moto_ec2_rules.start_moves_launch_time)."""

import time


def test_a_start_moves_launch_time_as_ec2s_does(aws_world):
    ec2 = aws_world.ec2
    (instance,) = ec2.run_instances(ImageId=aws_world.image, InstanceType="t3.small", MinCount=1, MaxCount=1)[
        "Instances"
    ]
    time.sleep(1.1)  # EC2 gives LaunchTime in whole seconds
    ec2.stop_instances(InstanceIds=[instance["InstanceId"]])
    ec2.start_instances(InstanceIds=[instance["InstanceId"]])
    (data,) = ec2.describe_instances(InstanceIds=[instance["InstanceId"]])["Reservations"][0]["Instances"]
    assert data["LaunchTime"] > instance["LaunchTime"]
