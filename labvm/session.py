"""One task on one profile: the steps of the seeds, in order, over one connection.

    keys -> env -> Jupyter config -> notebook in tmux/screen -> tunnel -> URL
"""

from __future__ import annotations

import dataclasses
import html
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from . import answers, platforms, preflight, steps
from .autostop import autostop_line
from .config import Profile, parse_duration
from .errors import LabvmError
from .providers import IMAGE_AVAILABLE, Instance, Provider, for_profile, parse_time
from .remote import LocalHost, SshHost
from .sshconfig import SshHome
from .text import clean
from .asleep import welcome_url
from .keeper import own_proof
from .tunnel import Tunnels, wait_until_answering
from .workers import ClusterMachines


EXTEND_LIMIT = 366 * 86400  # --extend: past a year the VM's clock arithmetic overflows; nobody means it


class Session:
    def __init__(self, profile: Profile, context, plan: bool = False, provider: Provider | None = None):
        """provider: the profile's provider when it is not one of hosts.yml's (the contract suite's
        in-memory cloud); by default the registry's."""
        self.profile = profile
        self.context = context
        self.ssh = SshHome.current()
        self.tunnels = Tunnels(self.ssh)
        self.provider = provider or for_profile(profile)
        self._host: LocalHost | SshHost | None = None
        self.plan = plan
        if plan:
            self.provider.start_planning()

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc) -> None:
        if self._host is not None:
            self._host.close()

    @property
    def is_local(self) -> bool:
        return self.profile.provider == "local"

    @property
    def host(self):
        if self._host is None:
            if self.is_local:
                self._host = LocalHost(self.profile)
            else:
                self._host = self._connect(self._running_instance())
        return self._host

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

    def _connect(self, instance: Instance) -> SshHost:
        if instance.user and instance.user != self.profile.user:  # the cloud decides the login (GCE OS Login)
            self.profile = dataclasses.replace(self.profile, user=instance.user)
        # `address:` pins where SSH goes (a DNS name, a VPN address, a test sshd); a cluster's machines
        # reach it inside the cloud network (its public address is often not on its interface).
        return SshHost(self.profile, self.profile.address or instance.address, self.ssh, instance.private_address)

    def ensure_machine(self, image: str | None = None, replace: bool = False, yes: bool = False) -> None:
        """A running VM: resumed if stopped, made only if there is none (found by its tags).

        replace: a VM the cloud put in ERROR is deleted (asked first) and made again.
        """
        if replace:
            self.provider.require("--replace")
        if image:
            self.provider.require("--from-image")
        if self.is_local:  # this machine: nothing to reach
            return
        instance = self.provider.find()
        if replace and instance is not None:
            self._replace(instance, yes)
            instance = None
        if instance is None:
            if image == "latest":
                image = self._latest_image()
            public_key = self.ssh.ensure_key()
            if not self.plan:
                preflight.before_create(self)
            instance = self.provider.create(image, public_key=public_key)
            # A new VM at a known address has a new host key: forget the old one, and only now.
            self.ssh.forget_host(self.profile.address or instance.address, self.profile.port)
        else:
            if image and instance.state == "running" and not self.plan:
                raise LabvmError(
                    f"profile {self.profile.name!r} already has a VM ({instance.id}); --from-image makes a new one "
                    f"only after `inv terminate --host {self.profile.name}`"
                )
            self.provider.admit_caller()  # this laptop may be on another network than last time
            if instance.state != "running":
                print(f"{self.profile.name}: resuming {instance.id} ({instance.state})")
                instance = self.provider.start(instance)
        if self.plan:
            print(f"plan: then over SSH to {self.profile.address or instance.address}: keys, env, Jupyter, tunnel")
            return
        self._host = host = self._connect(instance)
        if self.provider.boot_timeout:  # elsewhere connecting says at once why SSH does not answer
            host.wait_for_sshd(self.provider.boot_timeout)

    def check(self) -> list:
        return preflight.checks(self)

    def _replace(self, instance: Instance, yes: bool) -> None:
        if instance.state != "error":
            raise LabvmError(
                f"--replace is for a VM the cloud put in ERROR; {instance.id} is {instance.state} "
                f"(`inv terminate --host {self.profile.name}` then `inv up` replaces a working one)"
            )
        if not yes:
            self._confirm(f"Delete {instance.id} ({instance.name}, in ERROR) and make a new VM?",
                          f"--replace deletes {instance.id}; pass --yes to confirm")
        self.provider.terminate(instance, True)  # keep the address for the new VM
        print(f"{self.profile.name}: deleted {instance.id} (ERROR); making a new VM")

    def _confirm(self, question: str, without_terminal: str) -> None:
        if not sys.stdin.isatty():
            raise LabvmError(without_terminal)
        if input(f"{question} [y/N] ").strip().lower() != "y":
            raise LabvmError("not confirmed; nothing changed")

    # -- setup steps -------------------------------------------------------------------

    def keys(self, host=None) -> None:
        """host: a cluster worker; by default the profile's own machine."""
        if self.is_local:
            print("keys: the local profile needs no SSH key")
            return
        steps.keys(self.ssh, host or self.host)

    def env(self, host=None) -> None:
        steps.environment(self.profile, host or self.host)

    def jupyter_config(self) -> None:
        password = self.profile.notebook.password
        if password:
            steps.store_password_hash(self.host, password)
        self._notebook("config", auth="password" if password else "token")

    def setup(self) -> None:
        self.keys()
        self.env()
        self.jupyter_config()
        seconds = self.provider.autostop_seconds()
        if seconds is not None:
            self._apply_autostop(seconds, set_by="hosts.yml", keep=True)

    # -- a Dask cluster beside the notebook (labvm.workers: the machines; labvm.cluster: Dask) ----

    def cluster(self, count: int | None = None) -> None:
        """Workers (made, started or stopped to match), keys and env on each in parallel, then
        labvm.cluster: the scheduler, the workers and Client()'s config."""
        from . import cluster

        if not self.profile.cluster:
            raise LabvmError(f"{self.profile.source}: profiles.{self.profile.name} has no cluster: (see the README)")
        machines = self.cluster_machines
        try:
            kept, ended = machines.wanted(count)
            if self.plan:
                print(f"plan: then over SSH to {len(kept)} worker(s): keys, env, autostop; the scheduler and workers")
                return
            with ThreadPoolExecutor(max(1, len(kept))) as pool:
                list(pool.map(lambda host: (self.keys(host), self.env(host)), kept))
            if not machines.listed:  # first: a worker VM never runs unguarded, whatever fails after
                for line in cluster.arm_worker_autostop(self.profile, self.host, kept):
                    print(line)
        except LabvmError as e:
            if machines.listed:
                raise
            raise LabvmError(f"{str(e).splitlines()[0]}\n{machines.stop_unguarded()}") from None
        for line in cluster.ensure(self.profile, self.ssh, self.host, kept):
            print(line)
        for host in ended:
            machines.end_dask(host)

    @property
    def cluster_machines(self) -> ClusterMachines:
        return ClusterMachines(self.profile, self.provider, self.ssh, self.plan)

    # -- idle auto-stop (cloud profiles) ---------------------------------------------------

    def autostop(self, idle: str = "", off: bool = False, extend: str = "") -> None:
        """--idle or --off is kept on the VM (setup leaves it alone); neither applies hosts.yml again.

        extend: the VM counts as in use until then (a long job outside Jupyter), then idle time counts again.
        """
        self.provider.require("autostop")
        if extend:
            seconds = parse_duration(extend)  # off: 0, the extension ends now
            if seconds is None:
                raise LabvmError(f"--extend: must be a duration like 3h, 90m or 1h30m (or off), not {extend!r}")
            if seconds > EXTEND_LIMIT:
                raise LabvmError(f"--extend: at most {EXTEND_LIMIT // 3600}h (a year), not {extend!r}")
            until = int(time.time()) + seconds if seconds else 0
            report = steps.extend_autostop(self.profile, self.host, until)
            if report is None:
                raise LabvmError(f"autostop is not set up on this VM yet; `inv up --host {self.profile.name}` sets it up")
            print(f"autostop: {autostop_line(report)}")
        elif off:
            self._apply_autostop(0, set_by="inv autostop")
        elif idle:
            seconds = parse_duration(idle)
            if not seconds:
                raise LabvmError(f"--idle: must be a duration like 60m, 2h or 1h30m, not {idle!r}")
            self._apply_autostop(seconds, set_by="inv autostop")
        else:
            self._apply_autostop(self.provider.autostop_seconds() or 0, set_by="hosts.yml")

    def _apply_autostop(self, seconds: int, set_by: str, keep: bool = False) -> None:
        report = steps.apply_autostop(self.profile, self.host, seconds, set_by, keep)
        if report is None:
            raise LabvmError(f"autostop: the VM kept no setting; `inv setup --host {self.profile.name}` tries again")
        print(f"autostop: {autostop_line(report)}")

    # -- notebook ------------------------------------------------------------------------

    def _notebook(self, action: str, auth: str = "", force: bool = False) -> dict:
        return steps.notebook(self.profile, self.host, action, auth, force)

    def start_notebook(self) -> dict:
        status = self._notebook("start")
        server = status["server"]
        print(f"notebook: JupyterLab on the host at 127.0.0.1:{server['port']} (pid {server['pid']})")
        return status

    def stop_notebook(self, force: bool = False) -> None:
        result = self._notebook("stop", force=force)
        if result["stopped"]:
            print(f"notebook: stopped Jupyter (pid {', '.join(map(str, result['stopped']))})")
        else:
            print("notebook: no labvm Jupyter was running")
        if result["other"]:
            print(
                f"notebook: a Jupyter labvm did not start still runs on port "
                f"{self.profile.notebook.port} (pid {result['other']['pid']}); "
                f"`inv stop-notebook --host {self.profile.name} --force` ends it"
            )

    def notebook_status(self) -> dict:
        return self._notebook("status")

    # -- the way in ----------------------------------------------------------------------

    def tunnel(self, remote_port: int | None = None) -> int:
        """Opens (or finds) the tunnel; returns the local port the browser uses."""
        port = remote_port or self.profile.notebook.port
        if self.is_local:
            print(f"tunnel: the local profile needs none; Jupyter is on 127.0.0.1:{port}")
            return port
        if not self._has_ssh_alias():
            self.keys()
        return self.tunnels.open(self.profile, port).local_port

    def _has_ssh_alias(self) -> bool:
        return self.ssh.config.exists() and f"Host {self.profile.alias}\n" in self.ssh.config.read_text()

    def close_tunnel(self) -> None:
        if self.is_local:
            return
        closed = self.tunnels.close(self.profile)
        print("tunnel: closed" if closed else "tunnel: none was open")

    def _sleep_tunnel(self, why: str) -> None:
        """The VM stopped: its keeper keeps the local URL and serves the asleep page there
        (labvm.asleep, a Start button); without a keeper the tunnel just closes."""
        if self.tunnels.sleep(self.profile, why):
            tunnel = self.tunnels.find(self.profile)
            port = f"127.0.0.1:{tunnel.local_port}" if tunnel else "the notebook's URL"
            print(f"tunnel: asleep; http://{port}/ says why and has a Start button")
        else:
            self.close_tunnel()

    def up(self, browser: bool = True, image: str | None = None, replace: bool = False, yes: bool = False) -> str:
        self.ensure_machine(image, replace, yes)
        from .prices import size_words  # a price looked up once, then from the laptop's cache

        words = size_words(self.profile, self.provider)  # "" where neither size nor price is known
        if words:
            print(f"{self.profile.name}: {words}")
        if self.plan:
            if self.profile.cluster:
                print(f"plan: then the cluster: `inv cluster --host {self.profile.name} --plan` once the VM runs")
            return ""
        self.setup()
        if self.profile.cluster:
            self.cluster()
        # OpenSSH opens the tunnel while Jupyter boots; they share nothing.
        with ThreadPoolExecutor(1) as pool:
            opening = pool.submit(self.tunnel, self.profile.notebook.port)
            try:
                server = self.start_notebook()["server"]
            except LabvmError:
                if opening.exception() is None:  # nothing left behind: no tunnel to nowhere
                    self.close_tunnel()
                raise
            local_port = opening.result()
        if self.is_local:  # the token goes to this Jupyter's own socket, whoever else took a port
            wait_until_answering(local_port, server["token"], server["pid"])
        else:  # a tunnel that does not carry an authorised request at once is replaced, whatever its state
            local_port = self.tunnels.ensure(self.profile, server["port"], server["token"]).local_port
        url = self.url(local_port, server)
        if not self.is_local:
            self.tunnels.tell_url(self.profile, url)
        print(f"\nJupyterLab is ready: {url}")
        if self.profile.cluster:
            from .cluster import DASHBOARD_ROUTE  # here, not at the top: labvm.cluster loads Fabric

            print(f"Dask dashboard: http://127.0.0.1:{local_port}/{DASHBOARD_ROUTE}/status "
                  f"(also in JupyterLab's Dask panel)")
        if browser and platforms.has_browser():
            self._open_browser(url)
        return url

    def _open_browser(self, url: str) -> None:
        """The browser gets a 0600 local page that forwards to the URL: the token never shows in `ps`.
        Through a tunnel it goes by the keeper's welcome, which gives the browser the asleep page's
        proof (labvm.asleep): in password mode too, where the URL holds no token."""
        if not self.is_local:
            url = welcome_url(url, own_proof(self.ssh.run, self.profile.name))
        page = self.ssh.run / f"open-{self.profile.name}.html"
        fd = os.open(page, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        platforms.make_private(page)  # an older page may have been made with other permissions
        with os.fdopen(fd, "w") as f:
            f.write(f'<!DOCTYPE html><meta http-equiv="refresh" content="0;url={html.escape(url)}">'
                    f'<a href="{html.escape(url)}">JupyterLab</a>\n')
        platforms.open_browser(page.as_uri())

    def url(self, local_port: int, server: dict) -> str:
        """The browser's URL; with a password set, the login page asks for it instead of a token."""
        return answers.lab_url(local_port, server, with_token=not self.profile.notebook.password)

    def ssh_login(self) -> list[str]:
        if self.is_local:
            raise LabvmError("the local profile is this machine; there is nothing to log in to")
        if not self._has_ssh_alias():
            self.keys()
        return self.ssh.ssh_command(self.profile)

    # -- notebooks home ------------------------------------------------------------------

    def sync(self, watch: bool = False, interval: float = 30, push: bool = False) -> None:
        if self.is_local:
            print(f"sync: the local profile's notebooks are on this machine already ({self.profile.notebook.workspace})")
            return
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

    def _sync_once(self, push: bool = False, quiet_when_unchanged: bool = False) -> None:
        from .sync import NotebookSync

        self._ensure_ssh_alias()
        syncer = NotebookSync(self.profile, self.ssh, self.tunnels.shared_connection(self.profile))
        outcome = syncer.push() if push else syncer.pull()
        if quiet_when_unchanged and not (outcome.updated or outcome.kept_as):
            return
        for line in outcome.lines(str(self.profile.sync_dir), "push" if push else "pull"):
            print(line, flush=True)

    def _ensure_ssh_alias(self) -> None:
        """`ssh labvm-<profile>` reaches the machine where it is now (rsync goes that way): the first time
        from this laptop the key is authorised there; then only the address is brought up to date (a
        cloud VM's may change each time it starts)."""
        if not self._has_ssh_alias():
            self.keys()
        else:
            self.ssh.write_host(self.profile, self.profile.address or self._running_instance().address)

    def _sync_first(self, sync: bool, instance: Instance | None) -> None:
        """Before the VM stops or goes: notebooks home."""
        if not sync or self.is_local:
            return
        if instance is None or instance.state != "running":
            if instance:
                print(f"sync: skipped, the VM is {instance.state} (`inv start` then `inv sync` brings notebooks home)")
            return
        if self.plan:
            print(f"plan: first sync notebooks home into {self.profile.sync_dir} (rsync over ssh {self.profile.alias})")
            return
        self._sync_once()

    def _sync_or_refuse(self, sync: bool, instance: Instance, unchanged: str) -> None:
        """Before a verb that takes the VM's disk (terminate) or changes the VM (resize): a sync that fails,
        however it fails, stops the verb with nothing done and the way past it."""
        try:
            self._sync_first(sync, instance)
        except Exception as e:  # whatever the sync raised, the disk must not go unasked
            raise LabvmError(f"{_one_line(e)}; {unchanged}; pass --no-sync to go on without bringing "
                             f"notebooks home") from None

    def _attempt(self, failed: list[str], step: str, action: Callable[[], object]) -> None:
        """One step of down or stop before (or after) the VM stops: whatever it raises is said in one line
        and added to `failed`, and the VM is stopped all the same (only Ctrl-C stops that)."""
        try:
            action()
        except Exception as e:  # no failure of a step may leave the VM running and billed
            failed.append(step)
            print(f"{step} failed: {_one_line(e)}", flush=True)

    def _went_on(self, verb: str, failed: list[str], stopped: Instance | None) -> None:
        """down or stop went past failed steps: the exit status says so, and one line what to do now."""
        if not failed:
            return
        steps = failed[0] if len(failed) == 1 else f"{', '.join(failed[:-1])} and {failed[-1]}"
        name = self.profile.name
        if stopped is not None:
            done = f"{stopped.id} is {stopped.state} anyway"
            later = f"; its disk keeps the notebooks: `inv start --host {name}` then `inv sync --host {name}` brings them home"
        else:  # a machine labvm does not power: the rest of down was done
            done = "the rest was done"
            later = f"; `inv sync --host {name}` brings the notebooks home once the host answers"
        raise LabvmError(f"{verb}: {steps} failed (said above); {done}{later if 'the sync' in failed else ''}")

    # -- the VM's lifecycle (cloud profiles) ------------------------------------------------

    def _instance(self) -> Instance:
        instance = self.provider.find()
        if instance is None:
            raise LabvmError(f"profile {self.profile.name!r} has no VM; `inv up --host {self.profile.name}` makes one")
        return instance

    def create(self, image: str | None = None) -> None:
        self.provider.require("create")
        self.ensure_machine(image)
        if not self.plan:
            print(f"{self.profile.name}: {self.provider.find()}")

    def start(self) -> None:
        self.provider.require("start")
        self.ensure_machine()

    def stop(self, sync: bool = True) -> None:
        self.provider.require("stop")
        instance = self._instance()
        failed: list[str] = []
        self._attempt(failed, "the sync", lambda: self._sync_first(sync, instance))
        instance = self.provider.stop(instance)
        if self.plan:
            return
        self._attempt(failed, "putting the tunnel to sleep", lambda: self._sleep_tunnel("stopped by inv stop"))
        print(f"{self.profile.name}: {instance.id} is {instance.state}")
        self._went_on("stop", failed, instance)

    def snapshot(self, name: str, share: tuple[str, ...] = (), no_reboot: bool = False) -> None:
        self.provider.require("snapshot")
        instance = self._instance()
        serving = not self.plan and instance.state == "running" and self._notebook_running()
        image = self.provider.snapshot(instance, name, share, no_reboot)
        if self.plan:
            return
        print(f"snapshot: {image.id} ({image.name}) is {image.state}")
        if serving:
            self._bring_notebook_back()

    def _notebook_running(self) -> bool:
        try:
            return bool(self.notebook_status()["server"])
        except LabvmError:  # the VM does not answer SSH: nothing to bring back that we know of
            return False

    def _bring_notebook_back(self) -> None:
        """A snapshot may reboot the VM (EC2 does unless --no-reboot): Jupyter and the tunnel come back."""
        self._host.close()
        self._host = None
        if self._notebook_running():
            return
        print("snapshot: the VM rebooted for a consistent disk (--no-reboot skips that); starting the notebook again")
        self.close_tunnel()  # it went down with the VM
        self.up(browser=False)

    def _latest_image(self) -> str:
        ready = [i for i in self.provider.images() if i.state == IMAGE_AVAILABLE]
        if not ready:
            raise LabvmError(
                f"no labvm image of profile {self.profile.name} yet; `inv snapshot --host {self.profile.name}` makes one"
            )
        return ready[-1].id

    def images(self, prune: bool = False, keep: int = 3) -> None:
        if prune:
            images = self.provider.images()  # oldest first
            workers_from = self.provider.cluster_image() if self.profile.cluster else ""
            for image in images[:-keep] if keep else images:
                if image.id == workers_from:
                    print(f"images: kept {image.id} ({image.name}): the cluster's new workers are made from it")
                    continue
                self.provider.delete_image(image)
                if not self.plan:
                    print(f"images: deregistered {image.id} ({image.name}) and its snapshots")
        for image in self.provider.images():
            print(f"{image.id}  {image.created}  {image.state:<10} {image.name}")

    def resize(self, size: str, sync: bool = True) -> str:
        self.provider.require("resize")
        if not size:
            raise LabvmError("--size is required, e.g. --size m5.xlarge")
        instance = self._instance()
        self._sync_or_refuse(sync, instance, "nothing was resized and nothing was stopped")
        self.provider.resize(instance, size)
        if self.plan:
            return ""
        self.close_tunnel()  # it went down with the VM
        return self.up(browser=False)  # the notebook comes back on the new size

    def terminate(self, yes: bool = False, force: bool = False, keep_ip: bool = False, sync: bool = True) -> None:
        instance = self._instance()
        started = self.provider.last_start(instance)  # unsupported where labvm owns no VM
        newer = [i for i in self.provider.images() if i.created and parse_time(i.created) > started]
        if not newer and not force:
            raise LabvmError(
                f"{instance.id} has no labvm image newer than its last start ({started:%Y-%m-%d %H:%M}); "
                f"`inv snapshot --host {self.profile.name}` keeps its disk, or pass --force to lose it"
            )
        # The disk goes: a sync that failed stops terminate, whatever failed (--no-sync is the user's say).
        self._sync_or_refuse(sync, instance, "nothing was deleted and nothing was stopped")
        if not yes and not self.plan:
            self._confirm(f"Terminate {instance.id} ({instance.name}) and delete its disk?",
                          f"terminate deletes {instance.id} and its disk; pass --yes to confirm")
        if not self.plan:
            self.close_tunnel()
        if self.profile.cluster and not self.profile.cluster.hosts:
            self.provider.terminate_workers()  # the same guard and question covered them
        self.provider.terminate(instance, keep_ip)
        if not self.plan:
            print(f"{self.profile.name}: {instance.id} terminated")

    def down(self, force: bool = False, sync: bool = True) -> None:
        """Every step is tried, and the VM stopped whatever failed before (a running VM bills; its disk keeps
        everything); what failed is said, and the exit status says it."""
        instance = self.provider.find()
        if self.plan:
            self._sync_first(sync, instance)
            print("plan: then over SSH: stop Jupyter and the cluster's processes; close the tunnel")
            if self.profile.cluster:
                self.cluster_machines.plan_stop()
            if instance:
                self.provider.power_off(instance)
            return
        failed: list[str] = []
        self._attempt(failed, "the sync", lambda: self._sync_first(sync, instance))
        head_running = instance is not None and instance.state == "running"
        if self.profile.cluster:
            self._attempt(failed, "stopping the cluster",
                          lambda: self.cluster_machines.stop(self.host if head_running else None))
        if head_running:
            self._attempt(failed, "stopping Jupyter", lambda: self.stop_notebook(force))
        stopped = self.provider.power_off(instance) if instance else None  # may still shelve a stopped server
        if instance is None:  # no VM: no URL to keep
            self._attempt(failed, "closing the tunnel", self.close_tunnel)
        elif stopped is None:  # a machine labvm does not power stays on, Jupyter stopped; the URL stays
            # labvm's (no other user of the laptop takes its port) until `tunnel --stop`
            self._attempt(failed, "putting the tunnel to sleep", lambda: self._sleep_tunnel("stopped by inv down"))
        else:
            self._attempt(failed, "putting the tunnel to sleep", lambda: self._sleep_tunnel("stopped by inv down"))
            print(f"{self.profile.name}: {stopped.id} is {stopped.state}; nothing is billed but its disk")
        self._went_on("down", failed, stopped)


def _one_line(error: Exception) -> str:
    """What a failed step raised, as one line: labvm's own message, or (a fault of labvm's) its type and text."""
    if isinstance(error, LabvmError):
        return "; ".join(line.strip() for line in str(error).splitlines() if line.strip())
    return f"{type(error).__name__}: {clean(str(error), 300)} (a fault in labvm: please report it)"
