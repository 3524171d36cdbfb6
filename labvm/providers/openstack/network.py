"""What reaches a server: labvm's security group (SSH, and the cluster's own rule), its key pair,
floating IPs, and the profile's network.  Names are built by cloud.cloud_name with Nova's and Neutron's rules."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from ...config import Profile
from ...errors import LabvmError
from ..base import from_cloud
from ..cloud import PLANNED, cloud_name
from .api import OpenStackApi, nova_fingerprint, planned
from .names import NOVA_KEYPAIR, OpenStackNames
from .settings import OpenStackSettings


class Network:
    """labvm's security group and its rules, the key pair, floating IPs, the profile's network."""

    def __init__(self, api: OpenStackApi, settings: OpenStackSettings, names: OpenStackNames, profile: Profile):
        self.api, self.settings, self.names, self.profile = api, settings, names, profile
        self.conn = api.conn

    def lab_network(self) -> Any:
        """The profile's network (`network:`), where its servers are booted."""
        network = self.api.call(self.conn.network.find_network, self.settings.network, ignore_missing=True)
        if network is None:
            raise LabvmError(
                f"{self.profile.key('network')}: {self.settings.network or None!r} not found; "
                f"list: openstack network list"
            )
        return network

    @property
    def ssh_cidr(self) -> str:
        """Who may reach port 22: ssh_cidr, else anywhere (CADES networks are internal)."""
        return self.settings.ssh_cidr or "0.0.0.0/0"

    def admit_caller(self) -> None:
        """labvm's group admits SSH from `ssh_cidr`, else from anywhere (CADES networks are internal)."""
        group = self.ssh_group()
        if planned(group):  # its rule is planned with it
            return
        cidr = self.ssh_cidr
        rules = self.ssh_rules(group)
        if any(r.remote_ip_prefix == cidr for r in rules):
            return
        for rule in rules:
            self.api.mutate(
                f"remove the SSH rule from {rule.remote_ip_prefix}", self.conn.network.delete_security_group_rule, rule
            )
        self.add_ssh_rule(group, cidr)
        self.api.said(
            f"ssh rule: now admits {cidr} (was {', '.join(r.remote_ip_prefix or '?' for r in rules) or 'none'})"
        )

    def ssh_group(self) -> Any:
        """labvm's own group of this profile and owner, opening port 22 only (made when missing)."""
        group = self.api.call(self.conn.network.find_security_group, self.names.name, ignore_missing=True)
        if group is None:
            name, description = self.names.name, f"labvm {self.profile.name} of {self.names.owner}: SSH only"
            group = self.api.mutate(
                f"create security group {name}",
                self.conn.network.create_security_group,
                name=name,
                description=description,
                planned=SimpleNamespace(id=PLANNED, name=name),
            )
            self.add_ssh_rule(group, self.ssh_cidr)
            self.api.said(f"openstack: security group {self.names.name} opens port 22 only")
        return group

    def ssh_rules(self, group: Any) -> list:
        """The group's rules admitting port 22."""
        return [
            r
            for r in self.api.call(self.conn.network.security_group_rules, security_group_id=group.id)
            if r.direction == "ingress" and r.port_range_min == 22
        ]

    def add_ssh_rule(self, group: Any, cidr: str) -> None:
        """The group admits `cidr` to port 22."""
        self.api.mutate(
            f"admit {cidr} to port 22 in {self.names.name}",
            self.conn.network.create_security_group_rule,
            security_group_id=group.id,
            direction="ingress",
            ethertype="IPv6" if ":" in cidr else "IPv4",
            protocol="tcp",
            port_range_min=22,
            port_range_max=22,
            remote_ip_prefix=cidr,
        )

    def delete_ssh_group(self) -> None:
        """labvm's group deleted; one Neutron still holds on a port is kept (and said)."""
        group = self.api.call(self.conn.network.find_security_group, self.names.name, ignore_missing=True)
        if group is None:
            return
        try:
            self.api.mutate(f"delete security group {self.names.name}", self.conn.network.delete_security_group, group)
            self.api.said(f"openstack: deleted security group {self.names.name}")
        except LabvmError as e:  # still on a port Neutron has not released: harmless, reused next time
            print(f"openstack: kept security group {self.names.name} ({e})")

    def allow_cluster(self) -> None:
        """Every TCP port between the servers of labvm's group (the head and its workers), and only
        between them: the rule's source is the group itself (remote_group_id), no address range."""
        group = self.ssh_group()
        rules = (
            [] if planned(group) else self.api.call(self.conn.network.security_group_rules, security_group_id=group.id)
        )
        if any(r.direction == "ingress" and r.remote_group_id == group.id for r in rules):
            return
        self.api.mutate(
            f"let the cluster's machines reach each other (Dask) in {self.names.name}",
            self.conn.network.create_security_group_rule,
            security_group_id=group.id,
            direction="ingress",
            ethertype="IPv4",
            protocol="tcp",
            remote_group_id=group.id,
            description="labvm: Dask between the cluster's machines",
        )
        self.api.said(
            f"openstack: security group {self.names.name} lets the cluster's machines reach each other (Dask)"
        )

    def keypair_name(self, public_key: str) -> tuple[str, str]:
        """Named by owner and fingerprint (a second laptop's key gets a key pair of its own), in the
        characters Nova takes at the microversion openstacksdk sends (cloud.NOVA_KEYPAIR)."""
        try:
            fingerprint = nova_fingerprint(public_key)
        except (IndexError, ValueError):
            raise LabvmError(f"labvm's public key is not an OpenSSH key line: {public_key[:40]!r}") from None
        return cloud_name(NOVA_KEYPAIR, "labvm", self.names.owner, fingerprint.replace(":", "")[:8]), fingerprint

    def other_key(self, name: str, theirs: str, ours: str) -> LabvmError:
        """The one line for a key pair of labvm's name that holds another key."""
        return LabvmError(
            f"key pair {name} holds another key ({from_cloud(theirs)}, labvm's is {ours}); "
            f"`{self.api.cli} keypair delete {name}` if it is yours, and run again"
        )

    def keypair(self, public_key: str) -> str:
        """labvm's key pair holding this key (imported when missing); its name."""
        name, fingerprint = self.keypair_name(public_key)
        found = self.api.call(self.conn.compute.find_keypair, name, ignore_missing=True)
        if found is None:
            self.api.mutate(
                f"import labvm's public key as keypair {name}",
                self.conn.compute.create_keypair,
                name=name,
                public_key=public_key,
            )
            self.api.said(f"openstack: imported labvm's public key as keypair {name}")
        elif found.fingerprint != fingerprint:
            raise self.other_key(name, found.fingerprint, fingerprint)
        return name

    def my_ips(self, tag: str = "") -> list:
        """The floating IPs of this description (ip_tag; "": the head's)."""
        tag = tag or self.names.ip_tag({})
        return [ip for ip in self.api.call(self.conn.network.ips) if ip.description == tag]

    def floating_ip(self, server: Any) -> None:
        """The server's floating IP of this profile, owner and role attached: its own again, else a free one of
        its own, else a new one from floating_ip_pool."""
        pool = self.settings.floating_ip_pool
        if not pool:
            return
        port_id = PLANNED if planned(server) else self.port_id(server)
        tag = self.names.ip_tag(server.metadata or {})
        mine = self.my_ips(tag)
        if any(ip.port_id == port_id for ip in mine):
            return
        ip = next((ip for ip in mine if not ip.port_id), None) or self.new_ip(pool, tag)
        self.api.mutate(
            f"attach floating IP {ip.floating_ip_address} to {server.name}",
            self.conn.network.update_ip,
            ip,
            port_id=port_id,
        )
        self.api.said(f"openstack: floating IP {ip.floating_ip_address} -> {server.id}")

    def port_id(self, server: Any) -> str:
        """The server's first network port: where its floating IP goes."""
        ports = self.api.call(self.conn.network.ports, device_id=server.id)
        if not ports:
            raise LabvmError(f"server {server.id} has no network port for a floating IP")
        return ports[0].id

    def new_ip(self, pool: str, tag: str) -> Any:
        """A new floating IP from the pool, described by `tag`."""
        network = self.api.call(self.conn.network.find_network, pool, ignore_missing=True)
        if network is None:
            raise LabvmError(
                f"{self.profile.key('floating_ip_pool')}: no network {pool!r} (list: openstack network list --external)"
            )
        ip = self.api.mutate(
            f"take a floating IP from {pool}",
            self.conn.network.create_ip,
            floating_network_id=network.id,
            description=tag,
            planned=SimpleNamespace(id=PLANNED, floating_ip_address=PLANNED, port_id=None),
        )
        self.api.said(f"openstack: took floating IP {ip.floating_ip_address} from {pool}")
        return ip

    def release_ips(self, server: Any) -> None:
        """The server's floating IPs released."""
        for ip in self.my_ips(self.names.ip_tag(server.metadata or {})):
            self.api.mutate(f"release floating IP {ip.floating_ip_address}", self.conn.network.delete_ip, ip)
            self.api.said(f"openstack: released floating IP {ip.floating_ip_address}")
