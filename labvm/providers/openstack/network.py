"""What reaches a server: labvm's security group (SSH, and the cluster's own rule), its key pair,
floating IPs.  Names are built by cloud.cloud_name with Nova's and Neutron's rules."""

from __future__ import annotations

from types import SimpleNamespace

from ...errors import LabvmError
from ..base import from_cloud
from ..cloud import NOVA_KEYPAIR, cloud_name
from .common import PLANNED, OpenStackBase, nova_fingerprint, planned


class Network(OpenStackBase):
    """labvm's security group and its rules, the key pair, floating IPs."""

    def admit_caller(self) -> None:
        """labvm's group admits SSH from `ssh_cidr`, else from anywhere (CADES networks are internal)."""
        group = self._ssh_group()
        if planned(group):  # its rule is planned with it
            return
        cidr = str(self.settings.get("ssh_cidr") or "0.0.0.0/0")
        rules = self._ssh_rules(group)
        if any(r.remote_ip_prefix == cidr for r in rules):
            return
        for rule in rules:
            self.mutate(f"remove the SSH rule from {rule.remote_ip_prefix}", self.conn.network.delete_security_group_rule,
                        rule)
        self._add_ssh_rule(group, cidr)
        self._done(f"ssh rule: now admits {cidr} (was {', '.join(r.remote_ip_prefix or '?' for r in rules) or 'none'})")

    def _ssh_group(self):
        """labvm's own group of this profile and owner, opening port 22 only (made when missing)."""
        group = self.call(self.conn.network.find_security_group, self.name, ignore_missing=True)
        if group is None:
            group = self.mutate(f"create security group {self.name}", self.conn.network.create_security_group,
                                name=self.name, description=f"labvm {self.profile.name} of {self.owner}: SSH only",
                                planned=SimpleNamespace(id=PLANNED, name=self.name))
            self._add_ssh_rule(group, str(self.settings.get("ssh_cidr") or "0.0.0.0/0"))
            self._done(f"openstack: security group {self.name} opens port 22 only")
        return group

    def _ssh_rules(self, group) -> list:
        return [r for r in self.call(self.conn.network.security_group_rules, security_group_id=group.id)
                if r.direction == "ingress" and r.port_range_min == 22]

    def _add_ssh_rule(self, group, cidr: str) -> None:
        self.mutate(f"admit {cidr} to port 22 in {self.name}", self.conn.network.create_security_group_rule,
                    security_group_id=group.id, direction="ingress", ethertype="IPv6" if ":" in cidr else "IPv4",
                    protocol="tcp", port_range_min=22, port_range_max=22, remote_ip_prefix=cidr)

    def _delete_ssh_group(self) -> None:
        group = self.call(self.conn.network.find_security_group, self.name, ignore_missing=True)
        if group is None:
            return
        try:
            self.mutate(f"delete security group {self.name}", self.conn.network.delete_security_group, group)
            self._done(f"openstack: deleted security group {self.name}")
        except LabvmError as e:  # still on a port Neutron has not released: harmless, reused next time
            print(f"openstack: kept security group {self.name} ({e})")

    def allow_cluster(self) -> None:
        """Every TCP port between the servers of labvm's group (the head and its workers), and only
        between them: the rule's source is the group itself (remote_group_id), no address range."""
        group = self._ssh_group()
        rules = [] if planned(group) else self.call(self.conn.network.security_group_rules, security_group_id=group.id)
        if any(r.direction == "ingress" and r.remote_group_id == group.id for r in rules):
            return
        self.mutate(f"let the cluster's machines reach each other (Dask) in {self.name}",
                    self.conn.network.create_security_group_rule, security_group_id=group.id, direction="ingress",
                    ethertype="IPv4", protocol="tcp", remote_group_id=group.id,
                    description="labvm: Dask between the cluster's machines")
        self._done(f"openstack: security group {self.name} lets the cluster's machines reach each other (Dask)")

    def _keypair_name(self, public_key: str) -> tuple[str, str]:
        """Named by owner and fingerprint (a second laptop's key gets a key pair of its own), in the
        characters Nova takes at the microversion openstacksdk sends (cloud.NOVA_KEYPAIR)."""
        try:
            fingerprint = nova_fingerprint(public_key)
        except (IndexError, ValueError):
            raise LabvmError(f"labvm's public key is not an OpenSSH key line: {public_key[:40]!r}") from None
        return cloud_name(NOVA_KEYPAIR, "labvm", self.owner, fingerprint.replace(":", "")[:8]), fingerprint

    def _other_key(self, name: str, theirs: str, ours: str) -> LabvmError:
        return LabvmError(f"key pair {name} holds another key ({from_cloud(theirs)}, labvm's is {ours}); "
                          f"`{self.cli} keypair delete {name}` if it is yours, and run again")

    def _keypair(self, public_key: str) -> str:
        name, fingerprint = self._keypair_name(public_key)
        found = self.call(self.conn.compute.find_keypair, name, ignore_missing=True)
        if found is None:
            self.mutate(f"import labvm's public key as keypair {name}", self.conn.compute.create_keypair,
                        name=name, public_key=public_key)
            self._done(f"openstack: imported labvm's public key as keypair {name}")
        elif found.fingerprint != fingerprint:
            raise self._other_key(name, found.fingerprint, fingerprint)
        return name

    def _ip_tag(self, server) -> str:
        """A floating IP's description: labvm:<profile>:<owner>, for a worker labvm:<profile>+w<index>:<owner>
        (Neutron takes any description of 255 characters; audit reads profile and owner back from it)."""
        metadata = server.metadata or {}
        member = self.profile.name
        if metadata.get("labvm:role") == "worker":
            member += f"+w{metadata.get('labvm:index')}"
        return f"labvm:{member}:{self.owner}"

    def _my_ips(self, tag: str = "") -> list:
        tag = tag or f"labvm:{self.profile.name}:{self.owner}"
        return [ip for ip in self.call(self.conn.network.ips) if ip.description == tag]

    def _floating_ip(self, server) -> None:
        """The server's floating IP of this profile, owner and role attached: its own again, else a free one of
        its own, else a new one from floating_ip_pool."""
        pool = self.settings.get("floating_ip_pool")
        if not pool:
            return
        port_id = PLANNED if planned(server) else self._port_id(server)
        tag = self._ip_tag(server)
        mine = self._my_ips(tag)
        if any(ip.port_id == port_id for ip in mine):
            return
        ip = next((ip for ip in mine if not ip.port_id), None) or self._new_ip(str(pool), tag)
        self.mutate(f"attach floating IP {ip.floating_ip_address} to {server.name}", self.conn.network.update_ip,
                    ip, port_id=port_id)
        self._done(f"openstack: floating IP {ip.floating_ip_address} -> {server.id}")

    def _port_id(self, server) -> str:
        ports = list(self.call(self.conn.network.ports, device_id=server.id))
        if not ports:
            raise LabvmError(f"server {server.id} has no network port for a floating IP")
        return ports[0].id

    def _new_ip(self, pool: str, tag: str):
        network = self.call(self.conn.network.find_network, pool, ignore_missing=True)
        if network is None:
            raise LabvmError(f"{self._where('floating_ip_pool')}: no network {pool!r} (list: openstack network list --external)")
        ip = self.mutate(f"take a floating IP from {pool}", self.conn.network.create_ip,
                         floating_network_id=network.id, description=tag,
                         planned=SimpleNamespace(id=PLANNED, floating_ip_address=PLANNED, port_id=None))
        self._done(f"openstack: took floating IP {ip.floating_ip_address} from {pool}")
        return ip

    def _release_ips(self, server) -> None:
        for ip in self._my_ips(self._ip_tag(server)):
            self.mutate(f"release floating IP {ip.floating_ip_address}", self.conn.network.delete_ip, ip)
            self._done(f"openstack: released floating IP {ip.floating_ip_address}")
