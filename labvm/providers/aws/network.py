"""What an instance needs around it: labvm's security group and its SSH rule, the key pair, the Elastic IP,
and their deletion once no instance uses them."""

from __future__ import annotations

import base64
import functools
import hashlib
import shlex
import sys

from ...errors import LabvmError
from ..base import caller_cidr
from ..cloud import EC2_NAME, cloud_name
from .core import AwsBase, AwsError, Network


class Networking(AwsBase):
    """Security group, key pair, Elastic IP, placement in the VPC."""

    @staticmethod
    def _placement(network: Network, group: str) -> dict:
        if not network.subnet:
            return {"SecurityGroupIds": [group]}
        if network.public_ip:
            return {"SubnetId": network.subnet, "SecurityGroupIds": [group]}
        # The subnet gives no public address: ask for one on the primary interface. RunInstances then
        # takes subnet and groups there, never at instance level (API_RunInstances.html, SecurityGroupId).
        return {"NetworkInterfaces": [{"DeviceIndex": 0, "SubnetId": network.subnet, "Groups": [group],
                                       "AssociatePublicIpAddress": True, "DeleteOnTermination": True}]}

    @staticmethod
    def _key_name_for(owner: str, public_key: str) -> str:
        """Named by the key itself, so a second laptop's key never hides behind the first one's name."""
        blob = base64.b64decode(public_key.split()[1])
        return f"{cloud_name(EC2_NAME, 'labvm', owner)}-{hashlib.sha256(blob).hexdigest()[:12]}"

    def _existing_key_pair(self, public_key: str) -> tuple[str, bool]:
        """labvm's key pair name for this key, and whether EC2 has it; another key under that name stops here."""
        name = self._key_name_for(self.owner, public_key)
        found = self._read("describe_key_pairs", Filters=[{"Name": "key-name", "Values": [name]}],
                           IncludePublicKey=True)["KeyPairs"]
        # EC2 returns the OpenSSH line, maybe with another comment: type and key are what count.
        if found and found[0].get("PublicKey", "").split()[:2] != public_key.split()[:2]:
            raise LabvmError(f"aws: key pair {name} holds another key than labvm's; delete it (`aws ec2 delete-key-pair "
                             f"--key-name {shlex.quote(name)} --region {self.settings.get('region')}`) and run again")
        return name, bool(found)

    def _key_pair(self, public_key: str) -> str:
        name, exists = self._existing_key_pair(public_key)
        if not exists:
            self._change("import_key_pair", KeyName=name, PublicKeyMaterial=public_key.encode(),
                         TagSpecifications=[{"ResourceType": "key-pair", "Tags": self._tag_list(name)}])
            print(f"aws: imported labvm's public key as key pair {name}")
        return name

    def _find_group(self, vpc: str) -> dict | None:
        found = self._read("describe_security_groups", Filters=[
            {"Name": "group-name", "Values": [self.group_name]}, {"Name": "vpc-id", "Values": [vpc]}])
        return (found["SecurityGroups"] or [None])[0]

    def _security_group(self, vpc: str) -> str:
        group = self._find_group(vpc)
        if group is None:
            group_id = self._change("create_security_group", GroupName=self.group_name, VpcId=vpc,
                                    Description=cloud_name(EC2_NAME, f"labvm {self.profile.name} of {self.owner}: SSH only"),
                                    TagSpecifications=[{"ResourceType": "security-group",
                                                        "Tags": self._tag_list(self.group_name)}])["GroupId"]
            group = {"GroupId": group_id, "GroupName": self.group_name, "IpPermissions": []}
        self._admit(group)
        return group["GroupId"]

    @functools.cached_property
    def _caller(self) -> str:
        return str(self.settings.get("ssh_cidr") or caller_cidr(self._where("ssh_cidr")))

    @staticmethod
    def _ssh_ranges(group: dict) -> list[str]:
        """The ranges labvm's rules admit to port 22 (rules someone added by hand are left alone)."""
        return [r["CidrIp"] for p in group.get("IpPermissions", []) if p.get("FromPort") == 22
                for r in p.get("IpRanges", []) if r.get("Description") == "labvm: SSH"]

    def admit_caller(self) -> None:
        """The SSH rule admits this machine's address: after a move to another network, the rule moves too."""
        group = self._find_group(self._network.vpc)
        if group is not None:
            self._admit(group)

    def _admit(self, group: dict) -> None:
        cidr, before = self._caller, self._ssh_ranges(group)
        if cidr in before:
            return
        rule = {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22}
        self._change("authorize_security_group_ingress", GroupId=group["GroupId"], IpPermissions=[
            {**rule, "IpRanges": [{"CidrIp": cidr, "Description": "labvm: SSH"}]}])
        if before:
            self._change("revoke_security_group_ingress", GroupId=group["GroupId"], IpPermissions=[
                {**rule, "IpRanges": [{"CidrIp": old} for old in before]}])
            print(f"ssh rule: now admits {cidr} (was {', '.join(before)})")
        else:
            print(f"aws: security group {group['GroupName']} opens port 22 to {cidr} only")

    def _addresses(self) -> list[dict]:
        return self._read("describe_addresses", Filters=self._filters())["Addresses"]

    def _elastic_ip(self, instance_id: str) -> None:
        if not self.settings.get("elastic_ip"):
            return
        addresses = self._addresses()
        if addresses:
            address = addresses[0]
        else:
            address = self._change("allocate_address", Domain="vpc", TagSpecifications=[
                {"ResourceType": "elastic-ip", "Tags": self._tag_list()}])
            print(f"aws: allocated Elastic IP {address['PublicIp']}")
        if address.get("InstanceId") != instance_id:
            self._change("associate_address", InstanceId=instance_id, AllocationId=address["AllocationId"])
            print(f"aws: Elastic IP {address['PublicIp']} -> {instance_id}")

    def _delete_unused(self, instance: dict, gone: set[str]) -> None:
        """labvm's group and key pair that this terminated instance used, once no instance but those
        `gone` (terminated, or planned to be) uses them."""
        group = self._find_group(instance["VpcId"]) if instance.get("VpcId") else None
        if group is not None and not self._in_use("instance.group-id", group["GroupId"], gone):
            self._delete_unused_group(group["GroupId"])
        key = instance.get("KeyName", "")
        if key.startswith(cloud_name(EC2_NAME, "labvm", self.owner) + "-") and not self._in_use("key-name", key, gone):
            self._change("delete_key_pair", KeyName=key)
            print(f"aws: deleted key pair {key}")

    def _delete_unused_group(self, group_id: str) -> None:
        """EC2 refuses (DependencyViolation) until the terminated instance's interface is gone: retried,
        with a bound; a group left behind costs nothing and is named with its delete command."""
        delete = self._retrying(self.ec2.delete_security_group, ("DependencyViolation",), self.retry_delay, self.retry_limit)
        try:
            self.mutate(f"ec2.delete_security_group(GroupId={group_id!r})", delete, GroupId=group_id)
        except AwsError as e:
            if e.code != "DependencyViolation":
                raise
            print(f"aws: security group {self.group_name} is still in use after {self.retry_limit:.0f}s; delete it later: "
                  f"aws ec2 delete-security-group --group-id {group_id} --region {self.scope}", file=sys.stderr)
            return
        if not self.plan:
            print(f"aws: deleted security group {self.group_name}")
