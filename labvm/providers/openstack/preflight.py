"""`inv check`: read-only questions, one line each, asked before anything is billed; quota counts what `up`
and `cluster` would start (Provider.to_start)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ...config import Profile
from ...errors import LabvmError
from ..base import Check, Starting, starting_words
from ..cloud import ask
from .api import QUOTA_HELP, OpenStackApi, more
from .head import OpenStackHead
from .images import Images
from .names import OpenStackNames
from .network import Network
from .settings import OpenStackSettings


class OpenStackPreflight:
    """`inv check`'s questions."""

    def __init__(
        self,
        api: OpenStackApi,
        settings: OpenStackSettings,
        names: OpenStackNames,
        network: Network,
        images: Images,
        head: OpenStackHead,
        profile: Profile,
    ):
        self.api, self.settings, self.names, self.network = api, settings, names, network
        self.images, self.head, self.profile = images, head, profile
        self.conn = api.conn

    def checks(self, public_key: str, to_start: Callable[[], list[Starting]]) -> list[Check]:
        """Read-only: what `up` needs, asked of the cloud before anything is made."""
        access = self.api.call(self.conn.session.auth.get_access, self.conn.session)
        checks = [
            Check("credentials", True, f"user {access.username}, project {access.project_name} on {self.api.entry!r}")
        ]
        steps = [("network", lambda: f"{self.network.lab_network().name}")]
        if self.settings.floating_ip_pool:
            steps.append(("floating ip pool", self._check_pool))
        steps += [
            ("image", lambda: self.images.boot_image(None)),
            ("size", self._check_flavor),
            ("quota", lambda: self._check_quota(to_start())),
            ("key pair", lambda: self._check_keypair(public_key)),
            ("ssh rule", self._check_ssh_rule),
        ]
        return checks + [ask(name, step) for name, step in steps]

    def _check_pool(self) -> str:
        pool = self.settings.floating_ip_pool
        network = self.api.call(self.conn.network.find_network, pool, ignore_missing=True)
        if network is None or not network.is_router_external:
            problem = "not found" if network is None else "is not an external network"
            raise LabvmError(
                f"{self.profile.key('floating_ip_pool')}: {pool!r} {problem}; list: openstack network list --external"
            )
        return f"{pool} (external)"

    def _check_flavor(self) -> str:
        flavor = self.head.flavor(self.settings.flavor)
        line = f"{flavor.name}: {flavor.vcpus} vCPU, {flavor.ram} MB RAM"
        workers, worker_size = self._cluster()
        if workers and worker_size:
            worker = self.head.flavor(worker_size, key=self.profile.key("cluster.worker_size"))
            line += f"; workers {worker.name}: {worker.vcpus} vCPU, {worker.ram} MB RAM"
        return line

    def _cluster(self) -> tuple[int, str]:
        """How many workers the profile's cluster has, and their size ("": the head's)."""
        spec = self.profile.cluster
        return (spec.workers, spec.worker_size) if spec else (0, "")

    def _check_quota(self, machines: list[Starting]) -> str:
        """Nova's absolute limits (Cinder's for boot volumes, Neutron's for floating IPs) leave room for each
        new machine.  A stopped (shelved) one adds nothing: Nova counts every server, and by default its cores
        and RAM, whatever its state (nova/quota.py, _instances_cores_ram_count_legacy; only a cloud with
        [quota] count_usage_from_placement leaves an offloaded one's out, docs/providers.md), and unshelving
        keeps its volume and floating IP."""
        new = [m for m in machines if m.new]
        if not new:
            words = starting_words(machines)
            return f"{words}: Nova counts a stopped server already" if machines else words
        flavors = {size: self._known_flavor(size) for size in {m.size for m in new}}
        nova = self.api.call(self.conn.compute.get_limits).absolute
        count = len(new)
        wanted = [("instances", nova.instances_used, nova.instances, count, more(count))]
        if all(flavors.values()):  # an unknown flavor is the "size" check's line
            who = _who(new)
            cores = sum(flavors[m.size].vcpus for m in new)
            ram = sum(flavors[m.size].ram for m in new)
            wanted += [
                ("cores", nova.total_cores_used, nova.total_cores, cores, f"{who} {cores}"),
                ("RAM MB", nova.total_ram_used, nova.total_ram, ram, f"{who} {ram}"),
            ]
        if self.settings.floating_ip_pool:
            wanted += self._floating_ip_quota(count)
        wanted += self._volume_quota(count)
        short = [
            f"{what}: {used} of {limit} used, {need}"
            for what, used, limit, n, need in wanted
            if limit is not None and limit >= 0 and used + n > limit
        ]
        if short:
            raise LabvmError("; ".join(short) + f"; {QUOTA_HELP}")
        workers = count - (new[0].role == "head")
        room = (
            "one more"
            if not workers
            else f"the head and {workers} workers"
            if workers < count
            else f"{workers} workers"
        )
        return f"room for {room}: " + ", ".join(f"{what} {used}/{limit}" for what, used, limit, _, _ in wanted)

    def _known_flavor(self, name: str) -> Any:
        """The flavor, or None: an unknown one is the "size" check's line."""
        return self.api.call(self.conn.compute.find_flavor, name, ignore_missing=True)

    def _floating_ip_quota(self, machines: int) -> list:
        """Neutron's floating IP quota and usage (quota_details extension,
        https://docs.openstack.org/api-ref/network/v2/#quotas-details-extension-quota-details); a cloud
        without the extension, or a policy that hides it: not asked."""

        def details() -> Any:
            try:
                return self.conn.network.get_quota(self.conn.current_project_id, details=True).floating_ips or {}
            except (self.api.exceptions.NotFoundException, self.api.exceptions.ForbiddenException):
                return None

        found = self.api.call(details)
        if found is None:
            return []
        return [("floating IPs", found.get("used", 0), found.get("limit"), machines, more(machines))]

    def _volume_quota(self, machines: int) -> list:
        """Cinder's volumes and gigabytes for a boot volume of volume_size on each machine (Nova accepts a boot
        whose volume Cinder refuses, and the server goes ERROR)."""
        size = self.settings.volume_size
        cinder = self.api.volume_limits() if size else None
        if cinder is None:
            return []
        need = (
            f"volume_size needs {size}"
            if machines == 1
            else f"volume_size {size} for {machines} machines needs {size * machines}"
        )
        return [
            ("volumes", cinder.total_volumes_used, cinder.max_total_volumes, machines, more(machines)),
            ("volume gigabytes", cinder.total_gigabytes_used, cinder.max_total_volume_gigabytes, size * machines, need),
        ]

    def _check_keypair(self, public_key: str) -> str:
        if not public_key:
            return "no labvm key on this machine yet: the first `inv up` makes it and imports it"
        name, fingerprint = self.network.keypair_name(public_key)
        found = self.api.call(self.conn.compute.find_keypair, name, ignore_missing=True)
        if found is None:
            return f"{name}: none yet; `inv up` would import labvm's key ({fingerprint})"
        if found.fingerprint != fingerprint:
            raise self.network.other_key(name, found.fingerprint, fingerprint)
        return f"{name} holds labvm's key ({fingerprint})"

    def _check_ssh_rule(self) -> str:
        cidr = self.network.ssh_cidr
        group = self.api.call(self.conn.network.find_security_group, self.names.name, ignore_missing=True)
        if group is None:
            return f"{self.names.name}: none yet; `inv up` would make it, admitting {cidr} on port 22"
        if any(r.remote_ip_prefix == cidr for r in self.network.ssh_rules(group)):
            return f"{self.names.name} admits {cidr} on port 22"
        return f"{self.names.name} does not admit {cidr} yet; `inv up` adds the rule"


def _who(new: list[Starting]) -> str:
    """Who needs a quota's room, as its line says: a new head's flavor, or the head and the workers."""
    head = [m.size for m in new if m.role == "head"]
    workers = [m.size for m in new if m.role != "head"]
    if not workers:
        return f"{head[0]} needs"
    them = f"{len(workers)} workers ({workers[0]})"
    return f"the head ({head[0]}) and {them} need" if head else f"{them} need"
