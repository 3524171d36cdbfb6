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
