"""`inv check`: read-only questions, one line each, asked before anything is billed; quota counts the
head and the cluster's workers."""

from __future__ import annotations

from ...errors import LabvmError
from ..base import Check, ask
from .common import QUOTA_HELP, OpenStackBase, more


class Preflight(OpenStackBase):
    """`inv check`'s questions."""

    def preflight(self, public_key: str) -> list[Check]:
        """Read-only: what `up` needs, asked of the cloud before anything is made."""
        access = self.call(self.conn.session.auth.get_access, self.conn.session)
        checks = [Check("credentials", True, f"user {access.username}, project {access.project_name} on {self.entry!r}")]
        steps = [("network", lambda: f"{self._network().name}")]
        if self.settings.get("floating_ip_pool"):
            steps.append(("floating ip pool", self._check_pool))
        steps += [("image", lambda: self._image(None)), ("size", self._check_flavor), ("quota", self._check_quota),
                  ("key pair", lambda: self._check_keypair(public_key)), ("ssh rule", self._check_ssh_rule)]
        return checks + [ask(name, step) for name, step in steps]

    def _check_pool(self) -> str:
        pool = str(self.settings["floating_ip_pool"])
        network = self.call(self.conn.network.find_network, pool, ignore_missing=True)
        if network is None or not network.is_router_external:
            problem = "not found" if network is None else "is not an external network"
            raise LabvmError(f"{self._where('floating_ip_pool')}: {pool!r} {problem}; list: openstack network list --external")
        return f"{pool} (external)"

    def _check_flavor(self) -> str:
        flavor = self._flavor(str(self.settings.get("flavor") or "m1.small"))
        line = f"{flavor.name}: {flavor.vcpus} vCPU, {flavor.ram} MB RAM"
        if self._cluster_workers() and self.profile.cluster.worker_size:
            worker = self._flavor(self.profile.cluster.worker_size, key=self._where("cluster.worker_size"))
            line += f"; workers {worker.name}: {worker.vcpus} vCPU, {worker.ram} MB RAM"
        return line

    def _cluster_workers(self) -> int:
        return self.profile.cluster.workers if self.profile.cluster else 0

    def _check_quota(self) -> str:
        """Nova's absolute limits (Cinder's for boot volumes, Neutron's for floating IPs) leave room for the
        head and the cluster's workers (cluster.workers of cluster.worker_size, else the head's flavor)."""
        head = self._known_flavor(str(self.settings.get("flavor") or "m1.small"))
        workers = self._cluster_workers()
        worker = self._known_flavor(self.profile.cluster.worker_size) if workers and self.profile.cluster.worker_size else head
        machines = 1 + workers
        nova = self.call(self.conn.compute.get_limits).absolute
        wanted = [("instances", nova.instances_used, nova.instances, machines, more(machines))]
        if head is not None and worker is not None:
            who = (f"the head ({head.name}) and {workers} workers ({worker.name}) need" if workers
                   else f"{head.name} needs")
            cores, ram = head.vcpus + workers * worker.vcpus, head.ram + workers * worker.ram
            wanted += [("cores", nova.total_cores_used, nova.total_cores, cores, f"{who} {cores}"),
                       ("RAM MB", nova.total_ram_used, nova.total_ram, ram, f"{who} {ram}")]
        if self.settings.get("floating_ip_pool"):
            wanted += self._floating_ip_quota(machines)
        wanted += self._volume_quota(machines)
        short = [f"{what}: {used} of {limit} used, {need}" for what, used, limit, n, need in wanted
                 if limit is not None and limit >= 0 and used + n > limit]
        if short:
            raise LabvmError("; ".join(short) + f"; {QUOTA_HELP}")
        room = f"the head and {workers} workers" if workers else "one more"
        return f"room for {room}: " + ", ".join(f"{what} {used}/{limit}" for what, used, limit, _, _ in wanted)

    def _known_flavor(self, name: str):
        """The flavor, or None: an unknown one is the "size" check's line."""
        return self.call(self.conn.compute.find_flavor, name, ignore_missing=True)

    def _floating_ip_quota(self, machines: int) -> list:
        """Neutron's floating IP quota and usage (quota_details extension,
        https://docs.openstack.org/api-ref/network/v2/#quotas-details-extension-quota-details); a cloud
        without the extension, or a policy that hides it: not asked."""
        def details():
            try:
                return self.conn.network.get_quota(self.conn.current_project_id, details=True).floating_ips or {}
            except (self.exceptions.NotFoundException, self.exceptions.ForbiddenException):
                return None

        found = self.call(details)
        if found is None:
            return []
        return [("floating IPs", found.get("used", 0), found.get("limit"), machines, more(machines))]

    def _volume_quota(self, machines: int) -> list:
        size = int(self.settings.get("volume_size") or 0)
        if not size or not self.conn.has_service("block-storage"):
            return []
        cinder = self.call(self.conn.block_storage.get_limits).absolute
        need = (f"volume_size needs {size}" if machines == 1
                else f"volume_size {size} for {machines} machines needs {size * machines}")
        return [("volumes", cinder.total_volumes_used, cinder.max_total_volumes, machines, more(machines)),
                ("volume gigabytes", cinder.total_gigabytes_used, cinder.max_total_volume_gigabytes, size * machines, need)]

    def _check_keypair(self, public_key: str) -> str:
        if not public_key:
            return "no labvm key on this machine yet: the first `inv up` makes it and imports it"
        name, fingerprint = self._keypair_name(public_key)
        found = self.call(self.conn.compute.find_keypair, name, ignore_missing=True)
        if found is None:
            return f"{name}: none yet; `inv up` would import labvm's key ({fingerprint})"
        if found.fingerprint != fingerprint:
            raise self._other_key(name, found.fingerprint, fingerprint)
        return f"{name} holds labvm's key ({fingerprint})"

    def _check_ssh_rule(self) -> str:
        cidr = str(self.settings.get("ssh_cidr") or "0.0.0.0/0")
        group = self.call(self.conn.network.find_security_group, self.name, ignore_missing=True)
        if group is None:
            return f"{self.name}: none yet; `inv up` would make it, admitting {cidr} on port 22"
        if any(r.remote_ip_prefix == cidr for r in self._ssh_rules(group)):
            return f"{self.name} admits {cidr} on port 22"
        return f"{self.name} does not admit {cidr} yet; `inv up` adds the rule"
