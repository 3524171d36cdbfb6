"""`inv check`: read-only questions to the project before anything is billed, quota by machine family."""

from __future__ import annotations

from collections.abc import Callable

from ...config import Profile
from ...errors import LabvmError
from ..base import Check, Starting, starting_words
from ..cloud import ask
from .api import GceApi
from .gpus import ALL_REGIONS, Gpus, gpu_quota
from .head import GceHead
from .images import Images
from .names import GceNames
from .network import Network
from .oslogin import OsLogin
from .settings import GceSettings

# The regional CPU quota a machine type draws from, by family (the name's first part): E2, N1 and the
# shared-core F1/G1 count against CPUS, every other family against its own
# (https://cloud.google.com/compute/resource-usage#cpu_quota).  All of them also count against the
# project's CPUS_ALL_REGIONS.  A Spot VM counts against the preemptible quota of its family instead,
# PREEMPTIBLE_CPUS for those of CPUS, PREEMPTIBLE_<FAMILY>_CPUS for the others, where the region grants
# it (a limit above 0), else against the family's own (https://cloud.google.com/compute/resource-usage#preemptible_quota).
CPU_QUOTA = {
    family: f"{family.upper()}_CPUS"
    for family in (
        *("n2", "n2d", "n4", "c2", "c2d", "c3", "c3d", "c4", "c4a", "c4d", "t2d", "t2a"),
        *("m1", "m2", "m3", "m4", "x4", "z3", "h3", "a2", "g2"),
    )
}


def cpu_quota(machine_type: str, spot: bool = False, granted: frozenset[str] = frozenset()) -> str:
    """The regional CPU quota a machine type draws from; on spot, its preemptible one where granted."""
    metric = CPU_QUOTA.get(machine_type.split("-", 1)[0], "CPUS")
    return f"PREEMPTIBLE_{metric}" if spot and f"PREEMPTIBLE_{metric}" in granted else metric


class GcePreflight:
    """`inv check`'s questions, quota by machine family."""

    def __init__(
        self,
        api: GceApi,
        settings: GceSettings,
        names: GceNames,
        network: Network,
        images: Images,
        login: OsLogin,
        head: GceHead,
        gpus: Gpus,
        profile: Profile,
    ):
        self.api, self.settings, self.names, self.network, self.images = api, settings, names, network, images
        self.login, self.head, self.gpus, self.profile = login, head, gpus, profile
        self.project, self.zone, self.region = api.project, api.zone, api.region

    def checks(self, public_key: str, to_start: Callable[[], list[Starting]]) -> list[Check]:
        """Read-only: can this project take the VMs `up` would run (the head, the cluster's workers), and can
        labvm log in to them?"""
        checks = [Check("credentials", True, self._who())]
        project = ask("project", self._project_ready)
        checks.append(project)
        if not project.ok:
            return checks
        checks += [
            ask("zone", self._zone_ready),
            ask("network", self._network_ready),
            ask("image", lambda: self.images.source_image(None).rsplit("/", 1)[-1]),
            ask("size", self._size_offered),
            ask("quota", lambda: self._headroom(to_start())),
            ask("ssh rule", self._rule_state),
            ask("os login", lambda: self.login.mode()[1]),
        ]
        return checks

    def _who(self) -> str:
        from google.auth.credentials import AnonymousCredentials

        if isinstance(self.api.credentials, AnonymousCredentials):
            return f"none: anonymous to the emulator at {self.api.endpoint}"
        try:
            return f"Application Default Credentials of {self.login.account()}"
        except LabvmError:
            return "Application Default Credentials (account not readable)"

    def _project_ready(self) -> str:
        if self.api.get_or_none(self.api.projects.get, project=self.project) is None:
            raise LabvmError(
                f"{self.profile.key('project')}: no project {self.project!r} these credentials can see; "
                "gcloud projects list"
            )
        return f"{self.project} answers, Compute Engine API enabled"

    def _zone_ready(self) -> str:
        zone = self.api.get_or_none(self.api.zones.get, project=self.project, zone=self.zone)
        if zone is None:
            raise LabvmError(
                f"{self.profile.key('zone')}: {self.zone!r} is not a zone; "
                f"gcloud compute zones list --project {self.project}"
            )
        if zone.status != "UP":
            raise LabvmError(
                f"{self.profile.key('zone')}: {self.zone} is {zone.status}; pick another zone of {self.region}"
            )
        return f"{self.zone} is UP"

    def _network_ready(self) -> str:
        network, subnetwork = self.network.interface()
        return f"network {network.rsplit('/', 1)[-1]}" if network else f"subnetwork {subnetwork.rsplit('/', 1)[-1]}"

    def _size_offered(self) -> str:
        machine_type = self.head.check_type(self.settings.machine_type)
        self.gpus.check(machine_type)
        gpus = "".join(f" with {count} {kind}" for kind, count in self.gpus.carried(machine_type))
        return f"{machine_type}{gpus} is offered in {self.zone}"

    def _headroom(self, machines: list[Starting]) -> str:
        """Each VM's vCPUs against its family's regional quota (on spot its preemptible one where the region
        grants it) and the project's CPUS_ALL_REGIONS, its GPUs likewise against their model's and GPUS_ALL_REGIONS;
        an external address each; the static IP if new."""
        regional = {
            q.metric: q for q in self.api.call(self.api.regions.get, project=self.project, region=self.region).quotas
        }
        quotas = {
            **regional,
            **{
                q.metric: q
                for q in self.api.call(self.api.projects.get, project=self.project).quotas
                if q.metric in ("CPUS_ALL_REGIONS", ALL_REGIONS)
            },
        }
        granted = frozenset(m for m, q in regional.items() if m.startswith("PREEMPTIBLE_") and q.limit > 0)
        needs: dict[str, float] = {}
        for machine in machines:
            key = self.profile.key("cluster.worker_size" if machine.worker_size else "machine_type")
            cpus = self._guest_cpus(machine.size, key)
            for metric in (cpu_quota(machine.size, self.settings.spot, granted), "CPUS_ALL_REGIONS"):
                needs[metric] = needs.get(metric, 0) + cpus
            for kind, count in self.gpus.carried(machine.size, head=machine.role == "head"):
                for metric in (gpu_quota(kind, self.settings.spot, granted), ALL_REGIONS):
                    needs[metric] = needs.get(metric, 0) + count
        needs["IN_USE_ADDRESSES"] = len(machines)
        if (
            self.settings.static_ip
            and self.api.get_or_none(
                self.api.addresses.get, project=self.project, region=self.region, address=self.names.name
            )
            is None
        ):
            needs["STATIC_ADDRESSES"] = 1
        counted = [m for m in sorted(needs) if m in quotas and needs[m]]
        short = [
            f"{m} {quotas[m].usage:g}/{quotas[m].limit:g} leaves no room for {needs[m]:g} more"
            for m in counted
            if quotas[m].usage + needs[m] > quotas[m].limit
        ] + [f"no {m} quota in this region" for m in sorted(needs) if m.endswith("_GPUS") and m not in quotas]
        if short:
            fewer = f" or fewer {self.profile.key('cluster.workers')}" if len(machines) > 1 else ""
            raise LabvmError(
                f"quota in {self.region}: {'; '.join(short)} ({starting_words(machines)}); ask for more in "
                f"IAM & Admin > Quotas, or use a smaller {self.profile.key('machine_type')}{fewer}"
            )
        if not machines:
            return starting_words(machines)
        return f"room for {len(machines)} VM(s): " + ", ".join(
            f"{m} {quotas[m].usage:g}/{quotas[m].limit:g}" for m in counted
        )

    def _guest_cpus(self, machine_type: str, key: str) -> int:
        found = self.api.get_or_none(
            self.api.machine_types.get, project=self.project, zone=self.zone, machine_type=machine_type
        )
        if found is None:
            self.head.check_type(machine_type, key)  # raises with the closest names
        return found.guest_cpus

    def _rule_state(self) -> str:
        cidr = self.network.cidr()
        rule = self.network.rule()
        name = self.names.rule
        if rule is None:
            return f"{name} would be made for {cidr}"
        if list(rule.source_ranges) == [cidr]:
            return f"{name} admits {cidr}"
        return f"{name} admits {', '.join(rule.source_ranges)}; `up` changes it to {cidr}"
