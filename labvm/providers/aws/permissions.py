"""What a first `up` of an aws profile makes (from hosts.yml alone), and the IAM actions labvm's AWS code
calls, read from that code (not a list kept by hand): what a user without the rights asks an admin for.  Every operation named in labvm/providers/aws/*.py counts: a string given to
`read`, `change`, `get_paginator` or `wait` (a waiter asks its own operation), and a client method named as an
attribute, called or handed on (`ssm.get_parameter`, `self.api.ec2.delete_security_group`)."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

from ...config import Profile
from ..cloud import owner
from .names import AwsNames
from .settings import AwsSettings

# The AWS services labvm's AWS code calls, as boto3 names them -> as IAM names them (the service prefix of
# https://docs.aws.amazon.com/service-authorization/latest/reference/reference_policies_actions-resources-contextkeys.html).
SERVICES = {"ec2": "ec2", "ssm": "ssm", "sts": "sts", "service-quotas": "servicequotas", "pricing": "pricing"}
BY_NAME = ("read", "change", "get_paginator")  # methods whose first argument names an operation


@functools.cache
def permissions() -> tuple[str, ...]:
    """Each IAM action ("ec2:RunInstances") labvm's AWS code may call, sorted."""
    import botocore.session
    from botocore import xform_name

    session = botocore.session.get_session()
    operations: dict[str, str] = {}  # method name -> IAM action, EC2's first where two services share a name
    for service, prefix in reversed(SERVICES.items()):
        model = session.get_service_model(service)
        operations.update({xform_name(op): f"{prefix}:{op}" for op in model.operation_names})
    waiters = session.get_waiter_model("ec2")
    waited = {xform_name(name): waiters.get_waiter(name).operation for name in waiters.waiter_names}
    found: set[str] = set()
    for source in sorted(Path(__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr in operations:  # called, or handed on to be called
                found.add(operations[node.attr])
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args):
                continue
            named = node.args[0].value if isinstance(node.args[0], ast.Constant) else None
            if node.func.attr in BY_NAME and isinstance(named, str) and named in operations:
                found.add(operations[named])
            elif node.func.attr in ("wait", "waiter") and isinstance(named, str) and named in waited:
                found.add(f"ec2:{waited[named]}")
    return tuple(sorted(found))


def first_up(profile: Profile) -> list[str]:
    """What a first `up` makes (network.py, head.py): labvm's key pair, the SSH group, the instance, and an
    Elastic IP where hosts.yml keeps the address; no cloud call."""
    settings = AwsSettings.of(profile)
    names = AwsNames(profile.name, owner(), settings.tags)
    spot = " (spot)" if settings.spot else ""
    made = [
        f"key pair {names.key_prefix}<key hash> (labvm's public key)",
        f"security group {names.group} (port 22 from {settings.ssh_cidr or 'this laptop'})",
        f"instance {names.name}: {settings.instance_type}{spot}, {settings.image}, {settings.volume_size} GB",
    ]
    return made + (["an Elastic IP"] if settings.elastic_ip else [])
