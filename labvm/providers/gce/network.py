"""Where the VMs sit and who reaches them: the network and subnetwork, the SSH rule, the static IP."""

from __future__ import annotations

from ...errors import LabvmError
from ..base import caller_cidr
from .api import GceApi


class Network(GceApi):
    def _interface(self) -> tuple[str, str]:
        """(network, subnetwork) for the VM's interface, checked to exist: many projects have no
        `default` network (organisation policy compute.skipDefaultNetworkCreation, or deleted)."""
        subnetwork = str(self.settings.get("subnetwork") or "")
        if subnetwork:
            name = subnetwork.rsplit("/", 1)[-1]
            found = self._get_or_none(self.subnetworks.get, project=self.project, region=self.region, subnetwork=name)
            if found is None:
                raise LabvmError(
                    f"{self._where('subnetwork')}: no subnetwork {name!r} in {self.region} of project {self.project}; "
                    f"gcloud compute networks subnets list --project {self.project} --regions {self.region}"
                )
            return "", found.self_link
        network = self._get_network()
        if not network.auto_create_subnetworks:
            raise LabvmError(
                f"{self._where('subnetwork')}: network {network.name!r} has custom subnets, so the VM needs one named; "
                f"gcloud compute networks subnets list --project {self.project} --network {network.name} --regions {self.region}"
            )
        return network.self_link, ""

    def _get_network(self):
        name = str(self.settings.get("network") or "default").rsplit("/", 1)[-1]
        network = self._get_or_none(self.networks.get, project=self.project, network=name)
        if network is None:
            how = "is not set, and the project has no `default` network" if not self.settings.get("network") \
                else f"{name!r} is not a network of project {self.project}"
            raise LabvmError(
                f"{self._where('network')} {how}; set it to one of gcloud compute networks list --project {self.project}"
            )
        return network

    def _network_link(self) -> str:
        """The network of the VM's interface (a firewall rule applies to one network)."""
        network, subnetwork = self._interface()
        if network:
            return network
        name = subnetwork.rsplit("/", 1)[-1]
        return self.call(self.subnetworks.get, project=self.project, region=self.region, subnetwork=name).network

    def _cidr(self) -> str:
        return str(self.settings.get("ssh_cidr") or caller_cidr(self._where("ssh_cidr")))

    def _rule(self):
        return self._get_or_none(self.firewalls.get, project=self.project, firewall=self.rule)

    def admit_caller(self) -> None:
        """The rule NAME-ssh opens port 22 of this owner's VM (its target tag) to this machine only;
        from another network it is changed, and that is said."""
        cidr = self._cidr()
        rule = self._rule()
        if rule is None:
            made = self.compute.Firewall(
                name=self.rule, network=self._network_link(), direction="INGRESS", target_tags=[self.rule],
                source_ranges=[cidr], allowed=[self.compute.Allowed(I_p_protocol="tcp", ports=["22"])],
            )
            self._change(f"create firewall rule {self.rule} (port 22 from {cidr})", self.firewalls.insert, "global",
                         f"firewall rule {self.rule} opens port 22 to {cidr}", firewall_resource=made)
        elif list(rule.source_ranges) != [cidr]:
            was = ", ".join(rule.source_ranges) or "nothing"
            self._change(f"change firewall rule {self.rule} to admit {cidr} (was {was})", self.firewalls.patch,
                         "global", f"firewall rule {self.rule} admits {cidr}", firewall=self.rule,
                         firewall_resource=self.compute.Firewall(source_ranges=[cidr]))
            if not self.plan:
                print(f"ssh rule: now admits {cidr} (was {was})", flush=True)

    def _delete_rules(self) -> None:
        """The SSH rule, and the cluster's rule where there is one."""
        for rule in (self.rule, self.cluster_rule):
            if self._get_or_none(self.firewalls.get, project=self.project, firewall=rule) is not None:
                self._change(f"delete firewall rule {rule}", self.firewalls.delete, "global",
                             f"firewall rule {rule} is deleted", firewall=rule)

    def _static_ip(self) -> str:
        found = self._get_or_none(self.addresses.get, project=self.project, region=self.region, address=self.name)
        if found is not None:
            return found.address
        self._change(f"reserve static IP {self.name} in {self.region}", self.addresses.insert, "region",
                     f"static IP {self.name} is reserved", region=self.region,
                     address_resource=self.compute.Address(name=self.name, labels=self.labels))
        if self.plan:
            return "(planned)"
        return self.call(self.addresses.get, project=self.project, region=self.region, address=self.name).address
