"""Where the VMs sit and who reaches them: the network and subnetwork, the SSH rule, the static IP."""

from __future__ import annotations

from typing import Any

from ...config import Profile
from ...errors import LabvmError
from ..cloud import PLANNED, caller_cidr
from .api import GceApi
from .names import GceNames
from .settings import GceSettings


class Network:
    """The VMs' network and subnetwork, the firewall rules, the static IP."""

    def __init__(self, api: GceApi, settings: GceSettings, names: GceNames, profile: Profile):
        self.api, self.settings, self.names, self.profile = api, settings, names, profile
        self.project, self.region = api.project, api.region

    def interface(self) -> tuple[str, str]:
        """(network, subnetwork) for the VM's interface, checked to exist: many projects have no
        `default` network (organisation policy compute.skipDefaultNetworkCreation, or deleted)."""
        subnetwork = self.settings.subnetwork
        if subnetwork:
            name = subnetwork.rsplit("/", 1)[-1]
            found = self.api.get_or_none(
                self.api.subnetworks.get, project=self.project, region=self.region, subnetwork=name
            )
            if found is None:
                raise LabvmError(
                    f"{self.profile.key('subnetwork')}: no subnetwork {name!r} in {self.region} "
                    f"of project {self.project}; "
                    f"gcloud compute networks subnets list --project {self.project} --regions {self.region}"
                )
            return "", found.self_link
        network = self.get_network()
        if not network.auto_create_subnetworks:
            raise LabvmError(
                f"{self.profile.key('subnetwork')}: network {network.name!r} has custom subnets, "
                "so the VM needs one named; "
                f"gcloud compute networks subnets list --project {self.project} --network {network.name} "
                f"--regions {self.region}"
            )
        return network.self_link, ""

    def get_network(self) -> Any:
        """The profile's network (`network:`, else the project's `default`), checked to exist."""
        name = (self.settings.network or "default").rsplit("/", 1)[-1]
        network = self.api.get_or_none(self.api.networks.get, project=self.project, network=name)
        if network is None:
            how = (
                "is not set, and the project has no `default` network"
                if not self.settings.network
                else f"{name!r} is not a network of project {self.project}"
            )
            raise LabvmError(
                f"{self.profile.key('network')} {how}; "
                f"set it to one of gcloud compute networks list --project {self.project}"
            )
        return network

    def network_link(self) -> str:
        """The network of the VM's interface (a firewall rule applies to one network)."""
        network, subnetwork = self.interface()
        if network:
            return network
        name = subnetwork.rsplit("/", 1)[-1]
        return self.api.call(
            self.api.subnetworks.get, project=self.project, region=self.region, subnetwork=name
        ).network

    def cidr(self) -> str:
        """Who may reach port 22: ssh_cidr, else this machine's address."""
        return self.settings.ssh_cidr or caller_cidr(self.profile.key("ssh_cidr"))

    def rule(self) -> Any:
        """The SSH rule as GCE has it; None before it is made."""
        return self.api.get_or_none(self.api.firewalls.get, project=self.project, firewall=self.names.rule)

    def admit_caller(self) -> None:
        """The rule NAME-ssh opens port 22 of this owner's VM (its target tag) to this machine only;
        from another network it is changed, and that is said."""
        cidr = self.cidr()
        rule = self.rule()
        compute, name = self.api.compute, self.names.rule
        if rule is None:
            made = compute.Firewall(
                name=name,
                network=self.network_link(),
                direction="INGRESS",
                target_tags=[name],
                source_ranges=[cidr],
                allowed=[compute.Allowed(I_p_protocol="tcp", ports=["22"])],
            )
            self.api.change(
                f"create firewall rule {name} (port 22 from {cidr})",
                self.api.firewalls.insert,
                "global",
                f"firewall rule {name} opens port 22 to {cidr}",
                firewall_resource=made,
            )
        elif list(rule.source_ranges) != [cidr]:
            was = ", ".join(rule.source_ranges) or "nothing"
            self.api.change(
                f"change firewall rule {name} to admit {cidr} (was {was})",
                self.api.firewalls.patch,
                "global",
                f"firewall rule {name} admits {cidr}",
                firewall=name,
                firewall_resource=compute.Firewall(source_ranges=[cidr]),
            )
            if not self.api.plan:
                print(f"ssh rule: now admits {cidr} (was {was})", flush=True)

    def delete_rules(self) -> None:
        """The SSH rule, and the cluster's rule where there is one."""
        for rule in (self.names.rule, self.names.cluster_rule):
            if self.api.get_or_none(self.api.firewalls.get, project=self.project, firewall=rule) is not None:
                self.api.change(
                    f"delete firewall rule {rule}",
                    self.api.firewalls.delete,
                    "global",
                    f"firewall rule {rule} is deleted",
                    firewall=rule,
                )

    def static_ip(self) -> str:
        """The profile's static address (reserved when missing)."""
        name = self.names.name
        found = self.api.get_or_none(self.api.addresses.get, project=self.project, region=self.region, address=name)
        if found is not None:
            return found.address
        self.api.change(
            f"reserve static IP {name} in {self.region}",
            self.api.addresses.insert,
            "region",
            f"static IP {name} is reserved",
            region=self.region,
            address_resource=self.api.compute.Address(name=name, labels=self.names.labels),
        )
        if self.api.plan:
            return PLANNED
        return self.api.call(self.api.addresses.get, project=self.project, region=self.region, address=name).address

    def release_static_ip(self) -> None:
        """The profile's static address released."""
        name = self.names.name
        self.api.change(
            f"release static IP {name}",
            self.api.addresses.delete,
            "region",
            f"static IP {name} is released",
            region=self.region,
            address=name,
        )
        if not self.api.plan:
            print(f"gce: released static IP {name}")
