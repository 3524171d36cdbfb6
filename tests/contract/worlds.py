"""Each cloud's world for the contract suite: a cloud (moto's EC2 server, the OpenStack fake, the GCE fake,
the memory cloud, or a real account), labvm providers for profiles against it, and the means to watch it.

A world gives:
- provider(owner=..., **settings): a labvm provider of the world's profile (`lab`; a live run's own
  `contract-<random>`, so its cleanup touches nothing else in the account) for this owner (LABVM_OWNER set);
- mark() / mutations(): the mutating requests the cloud saw since the mark;
- state(): a comparable snapshot of what the cloud holds, read through the cloud's own SDK;
- placement(id) -> (image, network), ingress(id) -> {(ports, source)}: what an instance runs from and what
  reaches it, in the same words on every cloud ("tcp 22", "tcp all"; a CIDR or "cluster");
- delete_by_hand(id): what a user does in the console behind labvm's back;
- cleanup(): (live worlds) everything the run made deleted, through labvm then the SDK; what is left, as lines.

Live worlds read the LABVM_LIVE_* variables docs/testing.md lists ("Live"; tests/test_live_variables.py
keeps the two the same), and skip without them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import urllib.request
from pathlib import Path

import pytest
import yaml

from labvm import config
from labvm.config import ClusterSpec, DataSpec, Profile

SSH_CIDR = "198.51.100.7/32"
PROFILE = "lab"  # the fakes' profile; a live run's is its own (World.profile), so its cleanup touches nothing else
ALL_PORTS, SSH = "tcp all", "tcp 22"
CLUSTER = "cluster"


def public_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate().public_key()
    return key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode() + " labvm"


def ports(protocol: str, low, high) -> str:
    """A rule's ports in the suite's words: "tcp 22", "tcp all" (every port), "tcp 8786-8787"."""
    protocol = {"6": "tcp", "-1": "all"}.get(str(protocol), str(protocol))
    if low in (None, 0, "0", -1) and high in (None, 65535, "65535", -1):
        return f"{protocol} all"
    return f"{protocol} {low}" if str(low) == str(high) else f"{protocol} {low}-{high}"


class World:
    cloud = ""
    live = False
    size = other_size = ""
    keep_address: dict = {}  # the settings with which a profile keeps its address across stop and start

    def __init__(self, monkeypatch, directory: Path, live: bool = False):
        self.monkeypatch, self.directory, self.live = monkeypatch, directory, live
        self.profile = f"contract-{secrets.token_hex(3)}" if live else PROFILE
        self.made: list = []  # every provider made, for a live run's cleanup
        self.owners: set[str] = set()  # every owner a provider was made for: whose key pairs are the run's
        self._mark = 0

    def settings(self) -> dict:
        raise NotImplementedError

    def provider(self, owner: str = "hedy", cluster: ClusterSpec | None = None, **settings):
        self.monkeypatch.setenv("LABVM_OWNER", owner)
        self.owners.add(owner)
        profile = dataclasses.replace(self._profile({**self.settings(), **settings}), cluster=cluster)
        made = self._provider(profile)
        self._observe(made)
        self.made.append(made)
        return made

    def _profile(self, settings: dict) -> Profile:
        hosts = self.directory / "hosts.yml"
        hosts.write_text(
            yaml.safe_dump({"default": self.profile, "profiles": {self.profile: {"provider": self.cloud, **settings}}})
        )
        return config.load(hosts).profile(self.profile)

    def _provider(self, profile: Profile):
        from labvm.providers import for_profile

        return for_profile(profile)

    def _observe(self, provider) -> None:
        """Start watching the requests `provider` sends (fakes log them server-side: nothing to do)."""

    def _log(self) -> list:
        raise NotImplementedError

    def _mutating(self, request) -> bool:
        raise NotImplementedError

    def mark(self) -> None:
        self._mark = len(self._log())

    def mutations(self) -> list:
        return [r for r in self._log()[self._mark :] if self._mutating(r)]

    def close(self) -> None:
        """The fake stopped, moto reset: nothing of this test is left for the next."""

    def cleanup(self) -> list[str]:
        """Everything this run made deleted, through labvm first, then what labvm left (a head deleted by
        hand leaves its address) through the cloud's SDK; each thing still there, as a line."""
        from labvm.errors import LabvmError

        left = []
        for provider in self.made:
            provider.plan = False
            for step, action in [
                ("workers", provider.terminate_workers),
                ("head", lambda p=provider: p.find() and p.terminate(p.find())),
                ("backups", lambda p=provider: p.profile.data and [p.delete_data_backup(b) for b in p.data_backups()]),
                (
                    "data",
                    lambda p=provider: p.profile.data and (v := p.data_volume()) and p.delete_data(p.detach_data(v)),
                ),
                ("images", lambda p=provider: [p.delete_image(i) for i in p.images()]),
            ]:
                try:
                    action()
                except LabvmError as e:
                    left.append(f"{self.cloud} {provider.tags.owner}: {step}: {e}")
        if not self.made:
            return left
        for resource in self._stray():
            try:
                self.delete_resource(resource)
            except Exception as e:  # noqa: BLE001 (any answer: the line below names what is left)
                left.append(f"{self.cloud}: deleting {resource.kind} {resource.id}: {type(e).__name__}: {e}")
        return left + self.delete_named() + self.leftovers()

    def leftovers(self) -> list[str]:
        """Everything of this run still in the cloud, each a line with the command that deletes it: what
        `inv audit` lists (instances, volumes, snapshots, images, addresses) by the run's profile tag, and
        groups/firewalls and key pairs by the names labvm gives them for the run's profile and owners."""
        if not self.made:
            return []
        strays = self._stray()
        listed = {r.id for r in strays}
        named = [line for thing, line in self.named_left() if thing not in listed]
        return [f"{self.cloud} {r.kind} {r.id} ({r.owner}) left: {r.delete}" for r in strays] + named

    def _stray(self) -> list:
        return [r for r in self.made[-1].inventory() if r.profile.split("+")[0] == self.profile]

    def delete_resource(self, resource) -> None:
        """One thing `inv audit` lists (instance, image, snapshot, volume, address), deleted by the SDK."""
        raise NotImplementedError

    def delete_named(self) -> list[str]:
        """What labvm makes but `inv audit` does not list (groups, key pairs) of this run; what is left."""
        return []

    def named_left(self) -> list[tuple[str, str]]:
        """(id, line) for each of the run's things `inv audit` may not list, read through the cloud's SDK by
        labvm's tags and names: volumes and snapshots (audit lists only loose ones), groups/firewalls, key pairs."""
        return []


# -- AWS: moto's EC2 server, or a real account --------------------------------------------------------

REGION = "us-west-2"
AMAZON_IMAGE: dict[str, str] = {}  # moto endpoint -> an image every account may launch


class AwsWorld(World):
    """Mutations: the operation names the provider's own botocore client sends (a before-call event
    handler observes the real client, it mocks nothing); state: EC2's answers to Describe*."""

    cloud = "aws"
    size, other_size = "t3.small", "t3.medium"
    keep_address = {"elastic_ip": True}

    def __init__(self, monkeypatch, directory, endpoint: str = ""):
        import boto3

        super().__init__(monkeypatch, directory, live=not endpoint)
        self.endpoint = endpoint
        if endpoint:
            self.region = REGION
            for name, value in {
                "AWS_ENDPOINT_URL_EC2": endpoint,
                "AWS_ENDPOINT_URL_SSM": endpoint,
                "AWS_ENDPOINT_URL_STS": endpoint,
                "AWS_ENDPOINT_URL_SERVICE_QUOTAS": endpoint,
                "AWS_ENDPOINT_URL_PRICING": endpoint,  # moto has no Price List API: no call leaves the machine
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": REGION,
            }.items():
                monkeypatch.setenv(name, value)
        else:
            self.region = os.environ.get("LABVM_LIVE_AWS_REGION", "")
            if not self.region or boto3.Session().get_credentials() is None:
                pytest.skip("live_aws: set LABVM_LIVE_AWS_REGION and AWS credentials boto3 finds")
        self.ec2 = boto3.client("ec2", region_name=self.region)
        self.calls: list[tuple[str, dict]] = []
        self.image = self._amazon_image() if endpoint else os.environ.get("LABVM_LIVE_AWS_IMAGE", "ubuntu-24.04")
        self.user = os.environ.get("LABVM_LIVE_AWS_USER", "ubuntu") if self.live else "ubuntu"
        self.keys_before = self._key_names()

    def _amazon_image(self) -> str:
        # moto lists its thousands of Amazon images in seconds, and a reset keeps them: asked once.
        if self.endpoint not in AMAZON_IMAGE:
            AMAZON_IMAGE[self.endpoint] = self.ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        return AMAZON_IMAGE[self.endpoint]

    def settings(self) -> dict:
        return {
            "region": self.region,
            "instance_type": self.size,
            "image": self.image,
            "user": self.user,
            "ssh_cidr": SSH_CIDR,
        }

    def _observe(self, provider) -> None:
        provider.api.ec2.meta.events.register("before-call.ec2", self._record)

    def _record(self, model, params, **_) -> None:
        self.calls.append((model.name, params))

    def _log(self) -> list:
        return self.calls

    def _mutating(self, call) -> bool:
        name, params = call
        return not name.startswith(("Describe", "Get", "List")) and not params.get("DryRun")

    def close(self) -> None:
        if self.endpoint:  # moto's state is one per process: each test starts from an empty account
            urllib.request.urlopen(urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST"), timeout=10)

    def _described(self, instance_id: str) -> dict:
        return self.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]

    def state(self) -> dict:
        def pick(items, key, *fields):
            return {i[key]: json.dumps({f: i.get(f) for f in fields}, sort_keys=True, default=str) for i in items}

        ec2, scope = self.ec2, self._scope()
        tagged = scope["tagged"]
        instances = [i for r in ec2.describe_instances(Filters=tagged)["Reservations"] for i in r["Instances"]]
        images = ec2.describe_images(Owners=["self"], Filters=tagged)["Images"]
        return {
            "instances": pick(
                instances,
                "InstanceId",
                "State",
                "InstanceType",
                "Tags",
                "ImageId",
                "SecurityGroups",
                "PublicIpAddress",
                "KeyName",
            ),
            "groups": pick(
                ec2.describe_security_groups(Filters=scope["groups"])["SecurityGroups"],
                "GroupId",
                "GroupName",
                "IpPermissions",
                "Tags",
            ),
            "keys": pick(
                ec2.describe_key_pairs(Filters=scope["keys"])["KeyPairs"], "KeyName", "KeyFingerprint", "Tags"
            ),
            "addresses": pick(
                ec2.describe_addresses(Filters=tagged)["Addresses"], "AllocationId", "InstanceId", "Tags"
            ),
            "images": pick(images, "ImageId", "State", "Name", "Tags", "BlockDeviceMappings"),
            "snapshots": pick(self._image_snapshots(images), "SnapshotId", "State", "Tags"),
            "volumes": pick(ec2.describe_volumes(Filters=tagged)["Volumes"], "VolumeId", "State", "Size", "Tags"),
        }

    def _scope(self) -> dict[str, list]:
        """What state() reads, as Describe* filters: on a fake the whole account (the test is all there is in
        it); on a real account only the run's own, by labvm's tags and names, so a colleague's work in a shared
        account meanwhile is no change of the run's."""
        if not self.live:
            return {"tagged": [], "groups": [], "keys": []}
        from labvm.providers.aws.names import EC2_NAME
        from labvm.providers.cloud import cloud_name

        keys = [cloud_name(EC2_NAME, "labvm", owner) + "-*" for owner in sorted(self.owners)]
        return {
            "tagged": [{"Name": "tag:labvm:profile", "Values": [self.profile, f"{self.profile}+*"]}],
            "groups": [{"Name": "group-name", "Values": [f"labvm-{self.profile}-*"]}],
            "keys": [{"Name": "key-name", "Values": keys or [f"labvm-{self.profile}-*"]}],
        }

    def _image_snapshots(self, images: list[dict]) -> list[dict]:
        """The snapshots of the account's images (labvm makes snapshots only with images); an account's
        every snapshot would be thousands in moto (its Amazon images')."""
        ids = sorted({m["Ebs"]["SnapshotId"] for i in images for m in i["BlockDeviceMappings"] if "Ebs" in m})
        return self.ec2.describe_snapshots(SnapshotIds=ids)["Snapshots"] if ids else []

    def placement(self, instance_id: str) -> tuple[str, str]:
        data = self._described(instance_id)
        return data["ImageId"], data["SubnetId"]

    def ingress(self, instance_id: str) -> set[tuple[str, str]]:
        data = self._described(instance_id)
        own = {g["GroupId"] for g in data.get("SecurityGroups") or data["NetworkInterfaces"][0]["Groups"]}
        found = set()
        for group in self.ec2.describe_security_groups(GroupIds=sorted(own))["SecurityGroups"]:
            for rule in group["IpPermissions"]:
                where = ports(rule["IpProtocol"], rule.get("FromPort"), rule.get("ToPort"))
                found |= {(where, r["CidrIp"]) for r in rule.get("IpRanges", [])}
                found |= {(where, r["CidrIpv6"]) for r in rule.get("Ipv6Ranges", [])}
                found |= {
                    (where, CLUSTER if p["GroupId"] in own else p["GroupId"]) for p in rule.get("UserIdGroupPairs", [])
                }
        return found

    def delete_by_hand(self, instance_id: str) -> None:
        self.ec2.terminate_instances(InstanceIds=[instance_id])
        self.ec2.get_waiter("instance_terminated").wait(InstanceIds=[instance_id])

    def delete_resource(self, resource) -> None:
        if resource.kind == "instance":
            self.delete_by_hand(resource.id)
        elif resource.kind == "image":
            (image,) = self.ec2.describe_images(ImageIds=[resource.id])["Images"]
            self.ec2.deregister_image(ImageId=resource.id)
            for snapshot in self._image_snapshots([image]):
                self.ec2.delete_snapshot(SnapshotId=snapshot["SnapshotId"])
        elif resource.kind in ("snapshot", "backup"):
            self.ec2.delete_snapshot(SnapshotId=resource.id)
        elif resource.kind in ("volume", "data"):
            self.ec2.delete_volume(VolumeId=resource.id)
        elif resource.kind == "address":
            self.ec2.release_address(AllocationId=resource.id)

    def _key_names(self) -> set[str]:
        return {k["KeyName"] for k in self.ec2.describe_key_pairs()["KeyPairs"]}

    def _run_keys(self) -> set[str]:
        """The key pairs this run imported: of labvm's names for the run's owners, and not there before it
        (a colleague's key pair, made in the region meanwhile, is not the run's)."""
        from labvm.providers.aws.names import EC2_NAME
        from labvm.providers.cloud import cloud_name

        prefixes = tuple(cloud_name(EC2_NAME, "labvm", owner) + "-" for owner in self.owners)
        return {name for name in self._key_names() - self.keys_before if name.startswith(prefixes)}

    def _run_groups(self) -> list[dict]:
        """The run's security groups: labvm names them after the profile, and the run's profile is its own."""
        wanted = [{"Name": "group-name", "Values": [f"labvm-{self.profile}-*"]}]
        return self.ec2.describe_security_groups(Filters=wanted)["SecurityGroups"]

    def delete_named(self) -> list[str]:
        """The run's security groups and the key pairs it imported."""
        from botocore.exceptions import ClientError

        left = []
        for group in self._run_groups():
            try:
                self.ec2.delete_security_group(GroupId=group["GroupId"])
            except ClientError as e:  # DependencyViolation while EC2 releases a terminated instance's interface
                left.append(f"aws: deleting security group {group['GroupId']}: {e}")
        for key in self._run_keys():
            self.ec2.delete_key_pair(KeyName=key)
        return left

    def named_left(self) -> list[tuple[str, str]]:
        """The run's volumes, snapshots (by labvm's tags), security groups and key pairs still in the region."""
        mine = [{"Name": "tag:labvm:profile", "Values": [self.profile, f"{self.profile}+*"]}]
        where = f"--region {self.region}"
        volumes = self.ec2.describe_volumes(Filters=mine)["Volumes"]
        snapshots = self.ec2.describe_snapshots(OwnerIds=["self"], Filters=mine)["Snapshots"]
        return (
            [
                (
                    v["VolumeId"],
                    f"aws volume {v['VolumeId']} left: aws ec2 delete-volume --volume-id {v['VolumeId']} {where}",
                )
                for v in volumes
            ]
            + [
                (
                    n["SnapshotId"],
                    f"aws snapshot {n['SnapshotId']} left: aws ec2 delete-snapshot --snapshot-id {n['SnapshotId']} {where}",
                )
                for n in snapshots
            ]
            + [
                (
                    g["GroupId"],
                    f"aws security group {g['GroupId']} left: aws ec2 delete-security-group --group-id {g['GroupId']} {where}",
                )
                for g in self._run_groups()
            ]
            + [
                (name, f"aws key pair {name} left: aws ec2 delete-key-pair --key-name {name} {where}")
                for name in sorted(self._run_keys())
            ]
        )


def ec2_as_aws():
    """moto made to answer where it differs from EC2 (patched into moto's backend, the server side, for the
    AWS world): names and descriptions EC2 refuses, LaunchTime moved by a start (moto_ec2_rules.ec2_rules), and
    an Elastic IP kept across stop and start.
    Returns the undo."""
    import contextlib

    from moto_ec2_rules import ec2_rules  # EC2's rules for names and descriptions, kept in one place

    rules = contextlib.ExitStack()
    rules.enter_context(ec2_rules())
    undo_addresses = elastic_ip_kept()

    def undo() -> None:
        rules.close()
        undo_addresses()

    return undo


def elastic_ip_kept():
    """EC2: a stopped instance "retains ... any Elastic IP addresses" and gets no new public IPv4 address
    while one is associated (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/Stop_Start.html,
    https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/elastic-ip-addresses-eip.html); moto drops the
    address's IP on stop and gives a random one on start (moto/ec2/models/elastic_network_interfaces.py,
    NetworkInterface.stop/start)."""
    from moto.ec2.models.elastic_network_interfaces import NetworkInterface

    originals = NetworkInterface.stop, NetworkInterface.start

    def elastic(nic):
        return next((address for address in nic.ec2_backend.addresses if address.eni is nic), None)

    def stop(nic) -> None:
        if elastic(nic) is None:
            originals[0](nic)

    def start(nic) -> None:
        address = elastic(nic)
        if address is None:
            originals[1](nic)
        else:
            nic.public_ip = address.public_ip

    NetworkInterface.stop, NetworkInterface.start = stop, start

    def undo() -> None:
        NetworkInterface.stop, NetworkInterface.start = originals

    return undo


class OpenStackWorld(World):
    cloud = "openstack"
    size, other_size = "m1.medium", "m1.large"
    keep_address = {}  # a server keeps its floating IP across stop and start

    def __init__(self, monkeypatch, directory, live: bool = False):
        import openstack

        super().__init__(monkeypatch, directory, live)
        self.fake, self.sent = None, []
        self.user = "cades"
        if live:
            # Each variable spelled out whole: tests/test_live_variables.py reads them from here into docs/testing.md.
            wanted = {
                "LABVM_LIVE_OPENSTACK_IMAGE": os.environ.get("LABVM_LIVE_OPENSTACK_IMAGE", ""),
                "LABVM_LIVE_OPENSTACK_FLAVOR": os.environ.get("LABVM_LIVE_OPENSTACK_FLAVOR", ""),
                "LABVM_LIVE_OPENSTACK_OTHER_FLAVOR": os.environ.get("LABVM_LIVE_OPENSTACK_OTHER_FLAVOR", ""),
                "LABVM_LIVE_OPENSTACK_NETWORK": os.environ.get("LABVM_LIVE_OPENSTACK_NETWORK", ""),
                "LABVM_LIVE_OPENSTACK_FLOATING_IP_POOL": os.environ.get("LABVM_LIVE_OPENSTACK_FLOATING_IP_POOL", ""),
            }
            missing = [name for name, value in wanted.items() if not value]
            if not os.environ.get("OS_CLOUD") or missing:
                pytest.skip(f"live_openstack: set OS_CLOUD and {', '.join(missing) or 'nothing else'}")
            self.cloud_name = os.environ["OS_CLOUD"]
            self.size = wanted["LABVM_LIVE_OPENSTACK_FLAVOR"]
            self.other_size = wanted["LABVM_LIVE_OPENSTACK_OTHER_FLAVOR"]
            self.base = {
                "image": wanted["LABVM_LIVE_OPENSTACK_IMAGE"],
                "network": wanted["LABVM_LIVE_OPENSTACK_NETWORK"],
                "floating_ip_pool": wanted["LABVM_LIVE_OPENSTACK_FLOATING_IP_POOL"],
            }
            self.user = os.environ.get("LABVM_LIVE_OPENSTACK_USER", "cades")
        else:
            from fake_openstack import FakeOpenStack

            self.fake = FakeOpenStack().start()
            # Roomy limits: the suite is about behaviour; quota has tests of its own.
            self.fake.quota.update(instances=40, cores=128, ram=512000, volumes=40, gigabytes=4000)
            clouds = directory / "clouds.yaml"
            clouds.write_text(self.fake.clouds_yaml("cades"))
            monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(clouds))
            monkeypatch.delenv("OS_CLOUD", raising=False)
            self.cloud_name = "cades"
            self.base = {"image": "Ubuntu 22.04", "volume_size": 40, "network": "lab-net", "floating_ip_pool": "public"}
        self.conn = openstack.connect(cloud=self.cloud_name)
        self.keys_before = {k.name for k in self.conn.compute.keypairs()}

    def settings(self) -> dict:
        return {"cloud": self.cloud_name, "flavor": self.size, "user": self.user, "ssh_cidr": SSH_CIDR, **self.base}

    def _observe(self, provider) -> None:
        if self.live:  # the requests its keystoneauth session sends, as they are answered
            provider.api.conn.session.session.hooks["response"].append(
                lambda response, *args, **kwargs: self.sent.append((response.request.method, response.request.url))
            )

    def _log(self) -> list:
        return self.sent if self.live else self.fake.requests

    def _mutating(self, request) -> bool:
        method, path = request
        return method not in ("GET", "HEAD") and not path.split("?")[0].rstrip("/").endswith("/auth/tokens")

    def close(self) -> None:
        self.conn.close()
        if self.fake:
            self.fake.stop()

    def state(self) -> dict:
        def pick(items, *fields):
            return {i.id: json.dumps({f: i[f] for f in fields}, sort_keys=True, default=str) for i in items}

        compute, network, storage, ours = self.conn.compute, self.conn.network, self.conn.block_storage, self._ours
        servers = [s for s in compute.servers() if ours(s.metadata)]
        groups = [g for g in network.security_groups() if not self.live or g.name.startswith(f"labvm-{self.profile}-")]
        volumes = [v for v in storage.volumes() if ours(v.metadata)]
        keys = tuple(self._key_prefixes()) if self.live else ("",)
        return {
            "servers": pick(servers, "name", "status", "flavor", "metadata", "security_groups", "addresses"),
            "keypairs": pick([k for k in compute.keypairs() if k.name.startswith(keys)], "name", "fingerprint"),
            "groups": pick(groups, "name", "description"),
            "rules": pick(
                [r for r in network.security_group_rules() if r.security_group_id in {g.id for g in groups}],
                "security_group_id",
                "direction",
                "protocol",
                "port_range_min",
                "port_range_max",
                "remote_ip_prefix",
                "remote_group_id",
            ),
            "floating_ips": pick(
                [ip for ip in network.ips() if not self.live or f"labvm:{self.profile}" in (ip.description or "")],
                "floating_ip_address",
                "port_id",
                "description",
            ),
            "ports": pick(
                [p for p in network.ports() if not self.live or p.device_id in {s.id for s in servers}],
                "device_id",
                "network_id",
            ),
            "images": pick(
                [i for i in self.conn.image.images(owner=self.conn.current_project_id) if ours(i.properties)],
                "name",
                "status",
                "properties",
            ),
            "volumes": pick(volumes, "status", "size", "metadata"),
            "snapshots": pick(
                [n for n in storage.snapshots() if not self.live or n.volume_id in {v.id for v in volumes}],
                "status",
                "volume_id",
                "metadata",
            ),
        }

    def _ours(self, labels) -> bool:
        """What state() compares: on a fake everything (the test is all there is in it); on a real cloud only the
        run's own, by labvm's labels, so a colleague's work in a shared project meanwhile is no change of the run's."""
        return not self.live or (labels or {}).get("labvm:profile", "").split("+")[0] == self.profile

    def _key_prefixes(self) -> list[str]:
        from labvm.providers.cloud import cloud_name
        from labvm.providers.openstack.names import NOVA_KEYPAIR

        return [cloud_name(NOVA_KEYPAIR, "labvm", owner) + "-" for owner in self.owners]

    def placement(self, instance_id: str) -> tuple[str, str]:
        server = self.conn.compute.get_server(instance_id)
        image = (server.image or {}).get("id") or ""
        for attached in server.attached_volumes or []:  # volume-backed: Cinder keeps the image it came from
            image = image or self.conn.block_storage.get_volume(attached["id"]).volume_image_metadata.get(
                "image_id", ""
            )
        networks = sorted(p.network_id for p in self.conn.network.ports(device_id=instance_id))
        return image, ",".join(networks)

    def ingress(self, instance_id: str) -> set[tuple[str, str]]:
        server = self.conn.compute.get_server(instance_id)
        groups = [self.conn.network.find_security_group(g["name"]) for g in server.security_groups or []]
        own = {g.id for g in groups}
        found = set()
        for group in groups:
            for rule in self.conn.network.security_group_rules(security_group_id=group.id, direction="ingress"):
                where = ports(rule.protocol or "all", rule.port_range_min, rule.port_range_max)
                source = CLUSTER if rule.remote_group_id in own else (rule.remote_ip_prefix or rule.remote_group_id)
                found.add((where, source))
        return found

    def delete_by_hand(self, instance_id: str) -> None:
        server = self.conn.compute.get_server(instance_id)
        self.conn.compute.delete_server(server)
        self.conn.compute.wait_for_delete(server, wait=600)

    def delete_resource(self, resource) -> None:
        if resource.kind == "instance":
            self.delete_by_hand(resource.id)
        elif resource.kind == "image":
            self.conn.image.delete_image(resource.id)
        elif resource.kind in ("snapshot", "backup"):
            self.conn.block_storage.delete_snapshot(resource.id)
        elif resource.kind in ("volume", "data"):
            self.conn.block_storage.delete_volume(resource.id)
        elif resource.kind == "address":
            self.conn.network.delete_ip(resource.id)

    def _run_keys(self) -> set[str]:
        """The key pairs this run imported: of labvm's names for the run's owners, not there before it."""
        prefixes = tuple(self._key_prefixes())
        now = {k.name for k in self.conn.compute.keypairs()}
        return {name for name in now - self.keys_before if name.startswith(prefixes)}

    def _run_groups(self) -> list:
        """The run's security groups: labvm names them after the profile, and the run's profile is its own."""
        return [g for g in self.conn.network.security_groups() if g.name.startswith(f"labvm-{self.profile}-")]

    def delete_named(self) -> list[str]:
        """The run's security groups and the key pairs it imported."""
        left = []
        for group in self._run_groups():
            try:
                self.conn.network.delete_security_group(group)
            except Exception as e:  # noqa: BLE001 (in use: named by named_left)
                left.append(f"openstack: deleting security group {group.id}: {e}")
        for name in self._run_keys():
            self.conn.compute.delete_keypair(name)
        return left

    def named_left(self) -> list[tuple[str, str]]:
        """The run's volumes (by labvm's metadata), their snapshots, security groups and key pairs still there."""
        cli = f"openstack --os-cloud {self.cloud_name}"
        storage = self.conn.block_storage
        volumes = [
            v for v in storage.volumes() if (v.metadata or {}).get("labvm:profile", "").split("+")[0] == self.profile
        ]
        ids = {v.id for v in volumes}
        snapshots = [n for n in storage.snapshots() if n.volume_id in ids]
        return (
            [(v.id, f"openstack volume {v.id} left: {cli} volume delete {v.id}") for v in volumes]
            + [(n.id, f"openstack snapshot {n.id} left: {cli} volume snapshot delete {n.id}") for n in snapshots]
            + [
                (g.id, f"openstack security group {g.id} left: {cli} security group delete {g.id}")
                for g in self._run_groups()
            ]
            + [
                (name, f"openstack key pair {name} left: {cli} keypair delete {name}")
                for name in sorted(self._run_keys())
            ]
        )


# -- GCE: the fake of tests/fake_gce.py, or a real project ---------------------------------------------


class GceWorld(World):
    cloud = "gce"
    size, other_size = "e2-small", "e2-medium"
    keep_address = {"static_ip": True}

    def __init__(self, monkeypatch, directory, live: bool = False):
        super().__init__(monkeypatch, directory, live)
        self.fake, self.sent = None, []
        self.user = "debian"
        if live:
            import google.auth
            from google.auth.exceptions import DefaultCredentialsError

            self.project = os.environ.get("LABVM_LIVE_GCE_PROJECT", "")
            self.zone = os.environ.get("LABVM_LIVE_GCE_ZONE", "us-west1-b")
            self.user = os.environ.get("LABVM_LIVE_GCE_USER", "debian")
            try:
                credentials, _ = google.auth.default()
            except DefaultCredentialsError:
                credentials = None
            if not self.project or credentials is None:
                pytest.skip("live_gce: set LABVM_LIVE_GCE_PROJECT and Application Default Credentials")
            options = dict(credentials=credentials)
        else:
            from fake_gce import PROJECT, ZONE, FakeGce
            from google.api_core.client_options import ClientOptions
            from google.auth.credentials import AnonymousCredentials

            # google.auth must never probe a metadata server off this machine.
            monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
            monkeypatch.setenv("NO_GCE_CHECK", "true")
            monkeypatch.setenv("GCE_METADATA_HOST", "127.0.0.1:9")
            monkeypatch.setenv("GCE_METADATA_IP", "127.0.0.1:9")
            self.fake = FakeGce().start()
            self.fake.quota_limits.update(CPUS=128.0, IN_USE_ADDRESSES=40.0, STATIC_ADDRESSES=40.0)
            monkeypatch.setenv("LABVM_GCE_ENDPOINT", self.fake.endpoint)
            self.project, self.zone = PROJECT, ZONE
            options = dict(
                credentials=AnonymousCredentials(), client_options=ClientOptions(api_endpoint=self.fake.endpoint)
            )
        self.region = self.zone.rsplit("-", 1)[0]
        from google.cloud import compute_v1

        def client(kind):
            return kind(transport="rest", **options)

        self.instances, self.disks = client(compute_v1.InstancesClient), client(compute_v1.DisksClient)
        self.firewalls, self.images = client(compute_v1.FirewallsClient), client(compute_v1.ImagesClient)
        self.snapshots = client(compute_v1.SnapshotsClient)
        self.addresses, self.operations = client(compute_v1.AddressesClient), client(compute_v1.ZoneOperationsClient)
        self.scoped_operations = {
            "zone": self.operations,
            "region": client(compute_v1.RegionOperationsClient),
            "global": client(compute_v1.GlobalOperationsClient),
        }

    def settings(self) -> dict:
        return {
            "project": self.project,
            "zone": self.zone,
            "machine_type": self.size,
            "image_family": "debian-12",
            "user": self.user,
            "ssh_cidr": SSH_CIDR,
        }

    def _observe(self, provider) -> None:
        if not self.live:
            return
        for value in vars(provider.api).values():  # each Compute client's authorised requests session
            session = getattr(getattr(value, "_transport", None), "_session", None)
            if session is not None:
                session.hooks["response"].append(
                    lambda response, *args, **kwargs: self.sent.append((response.request.method, response.request.url))
                )

    def _log(self) -> list:
        return self.sent if self.live else self.fake.requests

    def _mutating(self, request) -> bool:
        method, path = request
        path = path.split("?")[0]
        # Waiting on an operation and reading an org policy are POSTs that change nothing.
        return method not in ("GET", "HEAD") and not path.endswith(("/wait", ":getEffectiveOrgPolicy"))

    def close(self) -> None:
        if self.fake:
            self.fake.stop()

    def state(self) -> dict:
        def pick(items):
            return {i.name: json.dumps(type(i).to_dict(i), sort_keys=True) for i in items}

        where = dict(project=self.project)
        instances = [i for i in self.instances.list(zone=self.zone, **where) if self._ours(i)]
        return {
            "instances": pick(instances),
            # Each instance's disks (labvm makes disks only as boot disks).
            "disks": pick(
                self.disks.get(zone=self.zone, disk=d.source.rsplit("/", 1)[-1], **where)
                for i in instances
                for d in i.disks
            ),
            "firewalls": pick(r for r in self.firewalls.list(**where) if self._named(r)),
            "addresses": pick(a for a in self.addresses.list(region=self.region, **where) if self._named(a)),
            "images": pick(i for i in self.images.list(**where) if self._ours(i)),
        }

    def _ours(self, resource) -> bool:
        """What state() compares: on a fake everything (the test is all there is in it); on a real project only
        the run's own, by labvm's labels, so a colleague's work meanwhile is no change of the run's."""
        return not self.live or dict(resource.labels).get("labvm-profile") == self.profile

    def _named(self, resource) -> bool:
        """As _ours, by labvm's names (firewall rules and addresses carry the profile in their names)."""
        return not self.live or resource.name.startswith(f"labvm-{self.profile}-")

    def _instance(self, name: str):
        return self.instances.get(project=self.project, zone=self.zone, instance=name)

    def placement(self, instance_id: str) -> tuple[str, str]:
        data = self._instance(instance_id)
        boot = next(d for d in data.disks if d.boot).source.rsplit("/", 1)[-1]
        disk = self.disks.get(project=self.project, zone=self.zone, disk=boot)
        nic = data.network_interfaces[0]
        return disk.source_image, f"{nic.network} {nic.subnetwork}"

    def ingress(self, instance_id: str) -> set[tuple[str, str]]:
        data = self._instance(instance_id)
        tags, network = set(data.tags.items), data.network_interfaces[0].network
        found = set()
        for rule in self.firewalls.list(project=self.project):
            applies = rule.direction == "INGRESS" and rule.network == network and not rule.disabled
            if not applies or (rule.target_tags and not tags & set(rule.target_tags)):
                continue
            sources = [*rule.source_ranges, *(CLUSTER if t in tags else t for t in rule.source_tags)] or ["0.0.0.0/0"]
            for allowed in rule.allowed:
                for where in [
                    ports(allowed.I_p_protocol, p.split("-")[0], p.split("-")[-1]) for p in allowed.ports
                ] or [ports(allowed.I_p_protocol, None, None)]:
                    found |= {(where, source) for source in sources}
        return found

    def delete_by_hand(self, instance_id: str) -> None:
        operation = self.instances.delete(project=self.project, zone=self.zone, instance=instance_id)
        self.operations.wait(project=self.project, zone=self.zone, operation=operation.name)

    def _done(self, operation, scope: str, zone: str = "") -> None:
        """Until the operation is DONE, asked of this world's endpoint: an operation's own result() polls
        through an operations client made for the default endpoint, never the fake's (compute_v1
        services/*/transports/base.py _global_operations_client: no client_options); its error raised."""
        from google.cloud import compute_v1

        where = {"zone": {"zone": zone or self.zone}, "region": {"region": self.region}, "global": {}}[scope]
        waited = operation
        while waited.status != compute_v1.Operation.Status.DONE:
            waited = self.scoped_operations[scope].wait(project=self.project, operation=operation.name, **where)
        if waited.error and waited.error.errors:
            raise RuntimeError(f"{operation.name}: {waited.error.errors[0].message}")

    def delete_resource(self, resource) -> None:
        where = dict(project=self.project)
        if resource.kind == "instance":
            self.delete_by_hand(resource.id)
        elif resource.kind == "image":
            self._done(self.images.delete(image=resource.id, **where), "global")
        elif resource.kind == "address":
            self._done(self.addresses.delete(region=self.region, address=resource.id, **where), "region")
        elif resource.kind == "backup":
            self._done(self.snapshots.delete(snapshot=resource.id, **where), "global")
        elif resource.kind == "data":  # a data disk may live in any zone of the region: its own
            for zone, scoped in self.disks.aggregated_list(**where):
                for disk in scoped.disks:
                    if disk.name == resource.id:
                        name = zone.rsplit("/", 1)[-1]
                        self._done(self.disks.delete(zone=name, disk=disk.name, **where), "zone", name)

    def _run_rules(self) -> list:
        """The run's firewall rules: labvm names them after the profile, and the run's profile is its own."""
        return [r for r in self.firewalls.list(project=self.project) if r.name.startswith(f"labvm-{self.profile}-")]

    def _loose_disks(self) -> list:
        """The run's disks that no instance uses (one in use goes with its instance, auto_delete): labelled for the
        run's profile, or named as its machines (a boot disk takes its instance's name unless initializeParams
        names it, https://cloud.google.com/compute/docs/reference/rest/v1/instances)."""
        return [
            d
            for d in self.disks.list(project=self.project, zone=self.zone)
            if not d.users
            and (dict(d.labels).get("labvm-profile") == self.profile or d.name.startswith(f"labvm-{self.profile}-"))
        ]

    def delete_named(self) -> list[str]:
        """The run's firewall rules and loose disks."""
        left = []
        for rule in self._run_rules():
            try:
                self._done(self.firewalls.delete(project=self.project, firewall=rule.name), "global")
            except Exception as e:  # noqa: BLE001 (named by named_left)
                left.append(f"gce: deleting firewall rule {rule.name}: {e}")
        for disk in self._loose_disks():
            try:
                self._done(self.disks.delete(project=self.project, zone=self.zone, disk=disk.name), "zone")
            except Exception as e:  # noqa: BLE001 (named by named_left)
                left.append(f"gce: deleting disk {disk.name}: {e}")
        return left

    def named_left(self) -> list[tuple[str, str]]:
        """The run's firewall rules and loose disks still in the project (GCE has no key pairs: the key rides the
        instance; `inv audit` lists no disks)."""
        where = f"--project {self.project}"
        return [
            (r.name, f"gce firewall rule {r.name} left: gcloud compute firewall-rules delete {r.name} {where}")
            for r in self._run_rules()
        ] + [
            (d.name, f"gce disk {d.name} left: gcloud compute disks delete {d.name} --zone {self.zone} {where}")
            for d in self._loose_disks()
        ]


# -- the memory cloud (tests/contract/memory.py) ---------------------------------------------------------


class MemoryWorld(World):
    cloud = "memory"
    size, other_size = "small", "medium"
    keep_address = {"static_ip": True}

    def __init__(self, monkeypatch, directory):
        from memory import MemoryCloud

        super().__init__(monkeypatch, directory)
        self.backend = MemoryCloud()

    def settings(self) -> dict:
        return {"size": self.size, "image": "debian-12", "ssh_cidr": SSH_CIDR}

    def _profile(self, settings: dict) -> Profile:
        # "memory" is no provider of hosts.yml: the profile is made as config.load would make it.
        data = settings.pop("data", None)
        return Profile(
            name=PROFILE,
            provider="memory",
            source=self.directory / "hosts.yml",
            user="lab",
            cloud_settings=settings,
            data=DataSpec(**data) if data else None,
        )

    def _provider(self, profile: Profile):
        from memory import MemoryProvider

        return MemoryProvider(profile, self.backend)

    def _log(self) -> list:
        return self.backend.requests

    def _mutating(self, request) -> bool:
        return True  # the memory cloud logs only its changes

    def state(self) -> str:
        return json.dumps(
            {
                "instances": self.backend.instances,
                "images": self.backend.images,
                "addresses": self.backend.addresses,
                "groups": {g: sorted(r) for g, r in self.backend.groups.items()},
                "volumes": self.backend.volumes,
            },
            sort_keys=True,
            default=str,
        )

    def placement(self, instance_id: str) -> tuple[str, str]:
        data = self.backend.instances[instance_id]
        return data["image"], data["network"]

    def ingress(self, instance_id: str) -> set[tuple[str, str]]:
        return set(self.backend.groups.get(self.backend.instances[instance_id]["group"], set()))

    def delete_by_hand(self, instance_id: str) -> None:
        del self.backend.instances[instance_id]
