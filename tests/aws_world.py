"""The AWS test world: moto's EC2 server, and what the tests say of it (shared through conftest.py)."""

import logging
import os

from realhost import free_port

REGION = "us-west-2"


def moto_server():
    """moto's server on a loopback port, as strict as EC2 where moto can be told; stop() ends it."""
    os.environ["MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION"] = "true"
    import moto.settings

    # EC2 refuses to launch from an AMI that does not exist or was deregistered (InvalidAMIID.NotFound,
    # https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html); moto only warns
    # unless told (moto/ec2/models/instances.py, run_instances: settings.ENABLE_AMI_VALIDATION).
    moto.settings.ENABLE_AMI_VALIDATION = True
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return server, f"http://127.0.0.1:{port}"


def aws_env(endpoint: str) -> dict:
    return {
        "AWS_ENDPOINT_URL_EC2": endpoint,
        "AWS_ENDPOINT_URL_SSM": endpoint,
        "AWS_ENDPOINT_URL_STS": endpoint,  # `inv check` (and `up`'s checks) ask who is calling
        "AWS_ENDPOINT_URL_SERVICE_QUOTAS": endpoint,
        "AWS_ENDPOINT_URL_PRICING": endpoint,  # moto has no Price List API: no price, and no call leaves the machine
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }


def tags(resource) -> dict:
    return {t["Key"]: t["Value"] for t in resource.get("Tags", [])}


def labvm_instances(ec2, *states):
    filters = [{"Name": "tag:labvm:profile", "Values": ["aws"]}]
    if states:
        filters.append({"Name": "instance-state-name", "Values": list(states)})
    return [i for r in ec2.describe_instances(Filters=filters)["Reservations"] for i in r["Instances"]]


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
