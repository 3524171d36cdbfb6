"""A cluster's machines: the worker VMs a cloud profile makes (or the hosts hosts.yml lists),
brought to the wanted number, reached over SSH, and stopped so none runs unwatched.

labvm.cluster does the Dask part on these machines; labvm.session composes the two.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from .config import ClusterSpec, Member, Profile
from .errors import LabvmError
from .plan import PlannedSteps, Steps
from .providers import Instance, Provider
from .providers.cloud import tag_number
from .remote import SshHost
from .sshconfig import SshHome, parse_jump
from .text import clean


class ClusterMachines:
    """A cluster profile's workers; steps: the verb's own (under --plan a step is said, not taken)."""

    def __init__(self, profile: Profile, provider: Provider, ssh: SshHome, steps: Steps | PlannedSteps):
        self.profile, self.provider, self.ssh, self.steps = profile, provider, ssh, steps

    @property
    def spec(self) -> ClusterSpec:
        """The profile's cluster: settings (ClusterMachines is made only for a profile that has one)."""
        assert self.profile.cluster is not None
        return self.profile.cluster

    @property
    def listed(self) -> bool:
        """The workers are hosts hosts.yml lists (cluster.hosts), not VMs labvm makes."""
        return bool(self.spec.hosts)

    def member(
        self, index: int, address: str, key: str, user: str = "", port: int = 0, cluster_address: str = ""
    ) -> SshHost:
        """Worker N as an SSH host of its own (alias labvm-<profile>+w<N>; '+' is in no profile name).
        key: the hosts.yml key its address comes from, for messages."""
        member = dataclasses.replace(
            self.profile,
            name=str(Member(self.profile.name, index)),
            address=address,
            port=port or self.profile.port,
            user=user or self.profile.user,
            cluster=None,
            worker_key=key,
        )
        return SshHost(member, address, self.ssh, cluster_address)

    def listed_hosts(self) -> list[SshHost]:
        """cluster.hosts, each an SSH host of its own."""
        return [
            self.member(index, host, f"cluster.hosts[{index - 1}]", user, port)
            for index, (user, host, port) in enumerate(map(parse_jump, self.spec.hosts), 1)
        ]

    def wanted(self, count: int | None) -> tuple[list[SshHost], list[SshHost]]:
        """(the workers to run, the listed hosts beyond --workers whose Dask processes end)."""
        if not self.listed:
            return self.cloud_hosts(self.spec.workers if count is None else count), []
        hosts = self.listed_hosts()
        count = len(hosts) if count is None else count
        if count > len(hosts):
            raise LabvmError(
                f"--workers: {self.profile.name} lists {len(hosts)} worker hosts (cluster.hosts), not {count}"
            )
        return hosts[:count], hosts[count:]

    def cloud_hosts(self, count: int) -> list[SshHost]:
        """Worker VMs 1..count running (made from the head's image where missing); the others stopped."""
        found = {worker_index(w): w for w in self.provider.workers()}
        for index, worker in sorted(found.items()):
            if worker.state == "error" and index <= count:  # e.g. Nova's quota recheck after a joint boot
                print(f"cluster: {worker.name} ({worker.id}) is in ERROR; deleting it and making it again", flush=True)
                self.provider.terminate(worker, True)
                del found[index]
        missing = [index for index in range(1, count + 1) if index not in found]
        if missing:
            print(f"cluster: making worker(s) {', '.join(f'w{i}' for i in missing)}", flush=True)
            for made in self.provider.create_workers(missing, "", self.spec.worker_size, self.ssh.ensure_key()):
                found[worker_index(made)] = made
        self.provider.allow_cluster()
        for index, worker in sorted(found.items()):
            if index > count and worker.state not in ("stopped", "stopping"):
                print(f"cluster: stopping {worker.name} (--workers {count})")
                self.provider.stop(worker)
        wanted = [found[index] for index in range(1, count + 1)]
        with ThreadPoolExecutor(max(1, len(wanted))) as pool:
            running = list(pool.map(lambda w: w if w.state == "running" else self.provider.start(w), wanted))
        hosts = [
            self.member(worker_index(w), w.address, "cluster.workers", cluster_address=w.private_address)
            for w in running
        ]
        self.steps.then("", lambda: self._wait_for_sshd(hosts))
        return hosts

    def _wait_for_sshd(self, hosts: list[SshHost]) -> None:
        for host in hosts:
            host.wait_for_sshd(self.provider.boot_timeout)

    def stop_unguarded(self) -> str:
        """A cluster step failed before every worker VM's autostop was armed: they stop, nothing runs unwatched."""
        stopped, running = [], []
        try:
            workers = self.provider.workers()
        except LabvmError:
            return (
                "cluster: the worker VMs could not be listed to stop them; "
                f"`inv down --host {self.profile.name}` stops them"
            )
        for worker in workers:
            if worker.state in ("stopped", "stopping"):
                continue
            try:
                stopped.append(self.provider.stop(worker).name)
            except LabvmError:  # the cloud went away too: say which still run, and how to stop them
                running.append(worker.name)
        said = (
            f"stopped {', '.join(stopped)} so no worker runs without autostop"
            if stopped
            else "no worker VM was left running"
        )
        if running:
            said += f"; {', '.join(running)} may still run: `inv down --host {self.profile.name}` stops them"
        return f"cluster: {said}; `inv cluster --host {self.profile.name}` tries again"

    def end_dask(self, host: SshHost) -> None:
        """A listed host's Dask processes ended; one that does not answer is said, and the others go on."""
        from . import cluster  # loads Fabric and cryptography: only when a cluster is there

        try:
            for line in cluster.stop(self.profile, None, [host]):
                print(line)
        except LabvmError as e:  # one unreachable worker does not keep the others running
            print(f"cluster: {host.label}: {clean(str(e).splitlines()[0])}")
        finally:
            host.close()

    def stop(self, head: Callable[[], SshHost] | None) -> None:
        """Listed hosts: their Dask processes end; worker VMs stop (even with the head stopped).
        head: the head's connection when it runs (its scheduler ends), else None."""
        self.steps.then("", lambda: self._end_dask_everywhere(head))
        if self.listed:
            return
        for worker in self.provider.workers():
            self._stop_worker(worker)

    def _end_dask_everywhere(self, head: Callable[[], SshHost] | None) -> None:
        from . import cluster

        # Workers first: with their scheduler gone they would end by themselves, at a moment of their own.
        for host in self.listed_hosts() if self.listed else []:
            self.end_dask(host)
        if head is not None:
            for line in cluster.stop(self.profile, head(), []):
                print(line)

    def _stop_worker(self, worker: Instance) -> None:
        if worker.state not in ("stopped", "stopping"):
            worker = self.provider.stop(worker)
        self.steps.then("", lambda: print(f"cluster: {worker.name} is {worker.state}"))


def worker_index(worker: Instance) -> int:
    """Providers name worker N `...-wN`; 0 for a name that says no number (not one of labvm's)."""
    return tag_number(worker.name.rsplit("-w", 1)[-1])
