"""How labvm reaches a profile's machine, given to the Session (reach_for) so that no verb asks which
kind of machine it has:

- LocalReach: this machine (the local profile).  Its scripts run as child processes; no key, no
  tunnel (Jupyter is on 127.0.0.1 already), no notebooks to bring home, no login.
- SshReach: a machine over SSH (ssh profiles and every cloud).  One Fabric connection for the
  task's steps; labvm's key authorised there and `ssh labvm-<profile>` written; the tunnel, kept by
  a keeper (labvm.tunnel); notebooks brought home (labvm.sync).

Both answer the same calls; where one has nothing to do it says so, or does nothing.
"""

from __future__ import annotations

import dataclasses
import html
import os
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from . import platforms, steps
from .asleep import welcome_url
from .config import Profile
from .errors import LabvmError
from .keeper import own_proof
from .plan import PlannedSteps, Steps
from .providers import Check, Instance, Provider
from .remote import LocalHost, SshHost
from .sshconfig import SshHome
from .tunnel import Tunnels, wait_until_answering

if TYPE_CHECKING:  # loaded when a put or get runs: rsync's module stays off other tasks' start-up
    from .transfer import Transfer


def reach_for(profile: Profile, provider: Provider, ssh: SshHome, tunnels: Tunnels) -> LocalReach | SshReach:
    """The one place that knows the local profile is this machine."""
    if profile.provider == "local":
        return LocalReach(profile, ssh)
    return SshReach(profile, provider, ssh, tunnels)


class LocalReach:
    """This machine: scripts run here, Jupyter listens on 127.0.0.1 here."""

    def __init__(self, profile: Profile, ssh: SshHome):
        self.profile, self.ssh = profile, ssh
        self._host: LocalHost | None = None

    @property
    def host(self) -> LocalHost:
        """This machine, where the scripts run as child processes."""
        if self._host is None:
            self._host = LocalHost(self.profile)
        return self._host

    def connect(self, instance: Instance, wait: bool = False) -> LocalHost:
        """Nothing to connect to: the local host."""
        return self.host

    def address(self, instance: Instance) -> str:
        """Where the steps run, as a plan would say it."""
        return "this machine"

    def close(self) -> None:
        """Nothing held open."""
        self._host = None

    def checks(self, ask: Callable[[], list[Check]]) -> list[Check]:
        """`inv check`: the laptop's own lines (labvm.laptop: rsync, the keeper, ...) as for every profile;
        no cloud, key or login to ask about."""
        from . import laptop

        return [*laptop.checks(), Check("local", True, "this machine: no cloud, no SSH")]

    def keys(self, host=None) -> None:
        """No key: this machine is reached without SSH."""
        print("keys: the local profile needs no SSH key")

    def login_command(self) -> list[str]:
        """None: there is nothing to log in to."""
        raise LabvmError("the local profile is this machine; there is nothing to log in to")

    def tunnel(self, port: int) -> int:
        """No tunnel: the browser uses Jupyter's own port."""
        print(f"tunnel: the local profile needs none; Jupyter is on 127.0.0.1:{port}")
        return port

    def answering(self, local_port: int, server: dict) -> int:
        """The token goes to this Jupyter's own socket, whoever else took a port (labvm.tunnel)."""
        wait_until_answering(local_port, server["token"], server["pid"])
        return local_port

    def tell_url(self, url: str) -> None:
        """No keeper to tell."""

    def browser_port(self, server: dict) -> int | None:
        """The port the browser reaches this Jupyter at (`inv status`): its own."""
        return server["port"]

    def browser_url(self, url: str) -> str:
        """The URL as it is: no keeper's welcome on this machine."""
        return url

    def close_tunnel(self) -> None:
        """No tunnel to close."""

    def sleep_tunnel(self, why: str) -> None:
        """No tunnel to put to sleep."""

    def sync(self, watch: bool = False, interval: float = 30, push: bool = False) -> None:
        """Nothing to bring home: the notebooks are here."""
        print(f"sync: the local profile's notebooks are on this machine already ({self.profile.notebook.workspace})")

    def sync_first(self, sync: bool, instance: Instance | None, plan: Steps | PlannedSteps) -> None:
        """The notebooks are here already."""

    def put(self, local: str, remote: str) -> None:
        """Nothing to send: refused, since a put that copies nothing but exits 0 would let a script
        believe a dataset reached a VM."""
        raise LabvmError("put: the local profile is this machine; its files are here already; nothing to copy")

    def get(self, remote: str, local: str) -> None:
        """Nothing to bring: refused, as put is."""
        raise LabvmError("get: the local profile is this machine; its files are here already; nothing to copy")


class SshReach:
    """A machine over SSH: its address from hosts.yml's `address:` or the provider's instance."""

    def __init__(self, profile: Profile, provider: Provider, ssh: SshHome, tunnels: Tunnels):
        self.profile, self.provider, self.ssh, self.tunnels = (
            _without_missing_identity(profile, ssh),
            provider,
            ssh,
            tunnels,
        )
        self._host: SshHost | None = None

    # -- the machine ---------------------------------------------------------------------------

    @property
    def host(self) -> SshHost:
        """The running machine's connection, made when first asked (the provider says where it is)."""
        if self._host is None:
            return self.connect(self._running_instance())
        return self._host

    def connect(self, instance: Instance, wait: bool = False) -> SshHost:
        """The connection to this instance (opened when first used); wait: until its sshd answers, where
        a machine boots a while after its cloud says it runs."""
        if instance.user and instance.user != self.profile.user:  # the cloud decides the login (GCE OS Login)
            self.profile = dataclasses.replace(self.profile, user=instance.user)
        # `address:` pins where SSH goes (a DNS name, a VPN address, a test sshd); a cluster's machines
        # reach it inside the cloud network (its public address is often not on its interface).
        self._host = SshHost(self.profile, self.address(instance), self.ssh, instance.private_address)
        if wait and self.provider.boot_timeout:  # elsewhere connecting says at once why SSH does not answer
            self._host.wait_for_sshd(self.provider.boot_timeout)
        return self._host

    def address(self, instance: Instance) -> str:
        """Where SSH goes: hosts.yml's `address:`, else the one the provider reports."""
        return self.profile.address or instance.address

    def close(self) -> None:
        """The connection closed; the next step connects again (after a reboot, say)."""
        if self._host is not None:
            self._host.close()
            self._host = None

    def _running_instance(self) -> Instance:
        instance = self.provider.find()
        if instance is None:
            raise LabvmError(f"profile {self.profile.name!r} has no VM; `inv up --host {self.profile.name}` makes one")
        if instance.state != "running":
            raise LabvmError(
                f"the VM of profile {self.profile.name!r} ({instance.id}) is {instance.state}; "
                f"`inv up --host {self.profile.name}` starts it"
            )
        return instance

    def checks(self, ask: Callable[[], list[Check]]) -> list[Check]:
        """`inv check`'s questions (labvm.preflight: the cloud, the key, the jump host, the login)."""
        return ask()

    # -- the key and the login -----------------------------------------------------------------

    def keys(self, host: SshHost | None = None) -> None:
        """labvm's key authorised on the host (a cluster worker; by default the machine itself)."""
        steps.keys(self.ssh, host or self.host)

    def login_command(self) -> list[str]:
        """`ssh labvm-<profile>`, the key authorised first if this laptop never did."""
        if not self._has_alias():
            self.keys()
        return self.ssh.ssh_command(self.profile)

    def _has_alias(self) -> bool:
        return self.ssh.config.exists() and f"Host {self.profile.alias}\n" in self.ssh.config.read_text()

    def _ensure_alias(self, instance: Instance | None = None) -> None:
        """`ssh labvm-<profile>` reaches the machine where it is now (rsync goes that way): the first time
        from this laptop the key is authorised there; then only the address is brought up to date (a
        cloud VM's may change each time it starts).  instance: the machine as just found, if it was."""
        if not self._has_alias():
            if instance is not None and self._host is None:
                self.connect(instance)
            self.keys()
        else:
            self.ssh.write_host(self.profile, self.address(instance or self._running_instance()))

    # -- the tunnel -----------------------------------------------------------------------------

    def tunnel(self, port: int) -> int:
        """Opens (or finds) the tunnel to the host's `port`; returns the local port the browser uses."""
        if not self._has_alias():
            self.keys()
        return self.tunnels.open(self.profile, port).local_port

    def answering(self, local_port: int, server: dict) -> int:
        """A tunnel that does not carry an authorised request at once is replaced, whatever its state."""
        return self.tunnels.ensure(self.profile, server["port"], server["token"]).local_port

    def tell_url(self, url: str) -> None:
        """The lab's URL to the keeper (its asleep page moves a tab there)."""
        self.tunnels.tell_url(self.profile, url)

    def browser_port(self, server: dict) -> int | None:
        """The port the browser reaches this Jupyter at (`inv status`): its kept tunnel's, None without one."""
        tunnel = self.tunnels.find(self.profile)
        return tunnel.local_port if tunnel and tunnel.remote_port == server["port"] and tunnel.keeper_pid else None

    def browser_url(self, url: str) -> str:
        """The keeper's welcome, which gives the browser the asleep page's proof (labvm.asleep): in
        password mode too, where the URL holds no token."""
        return welcome_url(url, own_proof(self.ssh.run, self.profile.name))

    def close_tunnel(self) -> None:
        """The keeper and its ssh end; said either way."""
        closed = self.tunnels.close(self.profile)
        print("tunnel: closed" if closed else "tunnel: none was open")

    def sleep_tunnel(self, why: str) -> None:
        """The VM stopped: its keeper keeps the local URL and serves the asleep page there
        (labvm.asleep, a Start button); without a keeper the tunnel just closes."""
        if self.tunnels.sleep(self.profile, why):
            tunnel = self.tunnels.find(self.profile)
            port = f"127.0.0.1:{tunnel.local_port}" if tunnel else "the notebook's URL"
            print(f"tunnel: asleep; http://{port}/ says why and has a Start button")
        else:
            self.close_tunnel()

    # -- notebooks home -------------------------------------------------------------------------

    def sync(self, watch: bool = False, interval: float = 30, push: bool = False) -> None:
        """Notebooks home (or, push, sent); watch: again every `interval` seconds until Ctrl-C."""
        if not watch:
            self._sync_once(push)
            return
        print(f"sync: every {interval:g}s into {self.profile.sync_dir}; Ctrl-C stops")
        try:
            while True:
                try:
                    self._sync_once(push, quiet_when_unchanged=True)
                except LabvmError as e:  # the VM stopped or the network went: keep trying
                    print(f"{e}; trying again in {interval:g}s", flush=True)
                time.sleep(interval)
        except KeyboardInterrupt:
            print(f"\nsync: stopped; your notebooks are in {self.profile.sync_dir}")

    def sync_first(self, sync: bool, instance: Instance | None, plan: Steps | PlannedSteps) -> None:
        """Before the VM stops or goes: notebooks home (instance: the machine as found)."""
        if not sync:
            return
        if instance is None or instance.state != "running":
            if instance:
                print(f"sync: skipped, the VM is {instance.state} (`inv start` then `inv sync` brings notebooks home)")
            return
        plan.then(
            f"first sync notebooks home into {self.profile.sync_dir} (rsync over ssh {self.profile.alias})",
            lambda: self._sync_once(instance=instance),
        )

    # -- datasets in and out --------------------------------------------------------------------

    def put(self, local: str, remote: str) -> None:
        """A file or folder sent into a folder on the VM (labvm.transfer), riding the tunnel's login if up."""
        self._transfer().put(local, remote)

    def get(self, remote: str, local: str) -> None:
        """A file or folder brought home from the VM (labvm.transfer), riding the tunnel's login if up."""
        self._transfer().get(remote, local)

    def _transfer(self) -> Transfer:
        from .transfer import Transfer

        self._ensure_alias()
        return Transfer(self.profile, self.ssh, self.tunnels.shared_connection(self.profile))

    def _sync_once(
        self, push: bool = False, quiet_when_unchanged: bool = False, instance: Instance | None = None
    ) -> None:
        from .sync import NotebookSync

        self._ensure_alias(instance)
        syncer = NotebookSync(
            self.profile,
            self.ssh,
            self.tunnels.shared_connection(self.profile),
            ensure_scripts=lambda: self.host.ensure_scripts(),
        )
        outcome = syncer.push() if push else syncer.pull()
        if quiet_when_unchanged and not (outcome.updated or outcome.kept_as):
            return
        for line in outcome.lines(str(self.profile.sync_dir), "push" if push else "pull"):
            print(line, flush=True)


def _without_missing_identity(profile: Profile, ssh: SshHome) -> Profile:
    """A hosts.yml `identity:` whose file is missing need not stop a task that labvm's own key can do:
    said once, and the profile goes on without it.  Without labvm's key nothing else could log in, so
    the profile stays as it is and the identity's check refuses (`inv keys` checks it first)."""
    if profile.identity is None or profile.identity.is_file() or not ssh.key.is_file():
        return profile
    print(
        f"warning: {profile.key('identity')}: {profile.identity} not found; going on with labvm's key {ssh.key}",
        file=sys.stderr,  # beside a task's output, never in it (`inv check --json`)
        flush=True,
    )
    return dataclasses.replace(profile, identity=None)


def open_browser(run_dir, name: str, url: str) -> None:
    """The browser gets a 0600 local page that forwards to the URL: the token never shows in `ps`."""
    page = run_dir / f"open-{name}.html"
    fd = os.open(page, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    platforms.make_private(page)  # an older page may have been made with other permissions
    with os.fdopen(fd, "w") as f:
        f.write(
            f'<!DOCTYPE html><meta http-equiv="refresh" content="0;url={html.escape(url)}">'
            f'<a href="{html.escape(url)}">JupyterLab</a>\n'
        )
    platforms.open_browser(page.as_uri())
