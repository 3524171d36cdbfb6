"""What an instance needs around it: the profile's subnet, labvm's security group and its SSH rule, the key
pair, the Elastic IP, and their deletion once no instance uses them."""

from __future__ import annotations

import base64
import functools
import hashlib
import shlex
import sys
from typing import NamedTuple

from ...config import Profile
from ...errors import LabvmError
from ..cloud import caller_cidr, cloud_name
from .api import LIVE, AwsError, Ec2Api, retrying
from .names import EC2_NAME, AwsNames
from .settings import AwsSettings


class Subnet(NamedTuple):
    """Where a new instance goes."""

    vpc: str
    id: str  # empty: the default VPC's default subnets
    public_ip: bool  # whether the subnet gives a new instance a public address itself
    zone: str  # the subnet's availability zone; empty: EC2 picks one


def key_name_for(owner: str, public_key: str) -> str:
    """Named by the key itself, so a second laptop's key never hides behind the first one's name."""
    blob = base64.b64decode(public_key.split()[1])
    return f"{cloud_name(EC2_NAME, 'labvm', owner)}-{hashlib.sha256(blob).hexdigest()[:12]}"


def placement(subnet: Subnet, group: str) -> dict:
    """RunInstances' arguments that put an instance in the subnet, behind the group."""
    if not subnet.id:
        return {"SecurityGroupIds": [group]}
    if subnet.public_ip:
        return {"SubnetId": subnet.id, "SecurityGroupIds": [group]}
    # The subnet gives no public address: ask for one on the primary interface. RunInstances then
    # takes subnet and groups there, never at instance level (API_RunInstances.html, SecurityGroupId).
    return {
        "NetworkInterfaces": [
            {
                "DeviceIndex": 0,
                "SubnetId": subnet.id,
                "Groups": [group],
                "AssociatePublicIpAddress": True,
                "DeleteOnTermination": True,
            }
        ]
    }


def ssh_ranges(group: dict) -> list[str]:
    """The ranges labvm's rules admit to port 22 (rules someone added by hand are left alone)."""
    return [
        r["CidrIp"]
        for p in group.get("IpPermissions", [])
        if p.get("FromPort") == 22
        for r in p.get("IpRanges", [])
        if r.get("Description") == "labvm: SSH"
    ]


class Network:
    """Subnet, security group, key pair, Elastic IP."""

    def __init__(self, api: Ec2Api, settings: AwsSettings, names: AwsNames, profile: Profile):
        self.api, self.settings, self.names, self.profile = api, settings, names, profile
        # Deleting a terminated instance's security group fails with DependencyViolation until EC2
        # has released its network interface: retried from this delay, doubling, for this long.
        self.retry_delay, self.retry_limit = 5.0, 180.0

    @functools.cached_property
    def subnet(self) -> Subnet:
        """The profile's subnet (and so its VPC), else the region's default VPC."""
        region = self.api.scope
        listing = f"`aws ec2 describe-subnets --region {region}` lists the subnets"
        if self.settings.subnet:
            try:
                (found,) = self.api.read("describe_subnets", SubnetIds=[self.settings.subnet])["Subnets"]
            except AwsError as e:
                if not e.code.startswith("InvalidSubnet"):
                    raise
                raise LabvmError(
                    f"{self.profile.key('subnet')}: no subnet {self.settings.subnet} in {region}; {listing}"
                ) from None
            return Subnet(
                found["VpcId"],
                found["SubnetId"],
                bool(found.get("MapPublicIpOnLaunch")),
                found.get("AvailabilityZone", ""),
            )
        vpcs = self.api.read("describe_vpcs", Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
        if not vpcs:
            raise LabvmError(
                f"region {region} has no default VPC (usual in institutional accounts): set "
                f"{self.profile.key('subnet')} to a subnet with a route to the internet; {listing}"
            )
        return Subnet(vpcs[0]["VpcId"], "", True, "")

    def subnet_of(self, head: dict) -> Subnet:
        """The head's own subnet, whatever the profile says now: the cluster is one network."""
        (found,) = self.api.read("describe_subnets", SubnetIds=[head["SubnetId"]])["Subnets"]
        return Subnet(
            head["VpcId"], head["SubnetId"], bool(found.get("MapPublicIpOnLaunch")), found.get("AvailabilityZone", "")
        )

    # -- the key pair -------------------------------------------------------------------------------
    def existing_key_pair(self, public_key: str) -> tuple[str, bool]:
        """labvm's key pair name for this key, and whether EC2 has it; another key under that name stops here."""
        name = key_name_for(self.names.owner, public_key)
        found = self.api.read(
            "describe_key_pairs", Filters=[{"Name": "key-name", "Values": [name]}], IncludePublicKey=True
        )["KeyPairs"]
        # EC2 returns the OpenSSH line, maybe with another comment: type and key are what count.
        if found and found[0].get("PublicKey", "").split()[:2] != public_key.split()[:2]:
            raise LabvmError(
                f"aws: key pair {name} holds another key than labvm's; delete it (`aws ec2 delete-key-pair "
                f"--key-name {shlex.quote(name)} --region {self.api.scope}`) and run again"
            )
        return name, bool(found)

    def key_pair(self, public_key: str) -> str:
        """labvm's key pair holding this key, imported where EC2 has none."""
        name, exists = self.existing_key_pair(public_key)
        if not exists:
            self.api.change(
                "import_key_pair",
                KeyName=name,
                PublicKeyMaterial=public_key.encode(),
                TagSpecifications=[{"ResourceType": "key-pair", "Tags": self.names.tag_list(name)}],
            )
            print(f"aws: imported labvm's public key as key pair {name}")
        return name

    # -- the security group and its SSH rule ------------------------------------------------------------
    def find_group(self, vpc: str) -> dict | None:
        """labvm's group of this profile and owner in the VPC; None before it is made."""
        found = self.api.read(
            "describe_security_groups",
            Filters=[{"Name": "group-name", "Values": [self.names.group]}, {"Name": "vpc-id", "Values": [vpc]}],
        )
        return (found["SecurityGroups"] or [None])[0]

    def head_group(self, vpc: str) -> dict:
        """labvm's group the head was launched in (EC2 deletes no group an instance uses)."""
        group = self.find_group(vpc)
        if group is None:
            raise LabvmError(
                f"aws: security group {self.names.group} is not in {vpc}, the head's VPC; "
                f"`aws ec2 describe-security-groups --region {self.api.scope}` lists those there"
            )
        return group

    def security_group(self, vpc: str) -> str:
        """labvm's group in the VPC (made when missing), admitting this machine to port 22; its id."""
        group = self.find_group(vpc)
        if group is None:
            description = cloud_name(EC2_NAME, f"labvm {self.profile.name} of {self.names.owner}: SSH only")
            group_id = self.api.change(
                "create_security_group",
                GroupName=self.names.group,
                VpcId=vpc,
                Description=description,
                TagSpecifications=[{"ResourceType": "security-group", "Tags": self.names.tag_list(self.names.group)}],
            )["GroupId"]
            group = {"GroupId": group_id, "GroupName": self.names.group, "IpPermissions": []}
        self.admit(group)
        return group["GroupId"]

    @functools.cached_property
    def caller(self) -> str:
        """Who may reach port 22: ssh_cidr, else this machine's address."""
        return self.settings.ssh_cidr or caller_cidr(self.profile.key("ssh_cidr"))

    def admit_caller(self) -> None:
        """The SSH rule admits this machine's address: after a move to another network, the rule moves too."""
        group = self.find_group(self.subnet.vpc)
        if group is not None:
            self.admit(group)

    def admit(self, group: dict) -> None:
        """The group's SSH rule admits `caller`, and no range it admitted before."""
        cidr, before = self.caller, ssh_ranges(group)
        if cidr in before:
            return
        rule = {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22}
        self.api.change(
            "authorize_security_group_ingress",
            GroupId=group["GroupId"],
            IpPermissions=[{**rule, "IpRanges": [{"CidrIp": cidr, "Description": "labvm: SSH"}]}],
        )
        if before:
            self.api.change(
                "revoke_security_group_ingress",
                GroupId=group["GroupId"],
                IpPermissions=[{**rule, "IpRanges": [{"CidrIp": old} for old in before]}],
            )
            print(f"ssh rule: now admits {cidr} (was {', '.join(before)})")
        else:
            print(f"aws: security group {group['GroupName']} opens port 22 to {cidr} only")

    # -- the Elastic IP -----------------------------------------------------------------------------------
    def addresses(self) -> list[dict]:
        """The Elastic IPs of this profile and owner."""
        return self.api.read("describe_addresses", Filters=self.names.filters())["Addresses"]

    def elastic_ip(self, instance_id: str) -> None:
        """With elastic_ip: the profile's address (allocated when missing) on the instance."""
        if not self.settings.elastic_ip:
            return
        addresses = self.addresses()
        if addresses:
            address = addresses[0]
        else:
            address = self.api.change(
                "allocate_address",
                Domain="vpc",
                TagSpecifications=[{"ResourceType": "elastic-ip", "Tags": self.names.tag_list()}],
            )
            print(f"aws: allocated Elastic IP {address['PublicIp']}")
        if address.get("InstanceId") != instance_id:
            self.api.change("associate_address", InstanceId=instance_id, AllocationId=address["AllocationId"])
            print(f"aws: Elastic IP {address['PublicIp']} -> {instance_id}")

    def release_addresses(self) -> None:
        """Every Elastic IP of this profile and owner released."""
        for address in self.addresses():
            self.api.change("release_address", AllocationId=address["AllocationId"])
            print(f"aws: released Elastic IP {address['PublicIp']}")

    # -- what no instance uses any more -----------------------------------------------------------------
    def delete_unused(self, instance: dict, gone: set[str]) -> None:
        """labvm's group and key pair that this terminated instance used, once no instance but those
        `gone` (terminated, or planned to be) uses them."""
        group = self.find_group(instance["VpcId"]) if instance.get("VpcId") else None
        if group is not None and not self.in_use("instance.group-id", group["GroupId"], gone):
            self.delete_unused_group(group["GroupId"])
        key = instance.get("KeyName", "")
        if key.startswith(self.names.key_prefix) and not self.in_use("key-name", key, gone):
            self.api.change("delete_key_pair", KeyName=key)
            print(f"aws: deleted key pair {key}")

    def in_use(self, name: str, value: str, gone: set[str]) -> bool:
        """Whether a live instance other than those `gone` has this filter's value."""
        live = [{"Name": "instance-state-name", "Values": list(LIVE)}, {"Name": name, "Values": [value]}]
        return any(
            i["InstanceId"] not in gone
            for r in self.api.read("describe_instances", Filters=live)["Reservations"]
            for i in r["Instances"]
        )

    def delete_unused_group(self, group_id: str) -> None:
        """EC2 refuses (DependencyViolation) until the terminated instance's interface is gone: retried,
        with a bound; a group left behind costs nothing and is named with its delete command."""
        delete = retrying(
            self.api.ec2.delete_security_group, ("DependencyViolation",), self.retry_delay, self.retry_limit
        )
        try:
            self.api.mutate(f"ec2.delete_security_group(GroupId={group_id!r})", delete, GroupId=group_id)
        except AwsError as e:
            if e.code != "DependencyViolation":
                raise
            print(
                f"aws: security group {self.names.group} is still in use after {self.retry_limit:.0f}s; "
                "delete it later: "
                f"aws ec2 delete-security-group --group-id {group_id} --region {self.api.scope}",
                file=sys.stderr,
            )
            return
        if not self.api.plan:
            print(f"aws: deleted security group {self.names.group}")
