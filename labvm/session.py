"""One task on one profile: the steps of the seeds, in order, over one connection.

    keys -> env -> data volume -> Jupyter config -> notebook in tmux/screen -> tunnel -> URL

The Session composes its parts and adds no behaviour of its own kind: the provider (the machine:
find, create, start, stop, ...), the reach (how labvm gets to the machine: labvm.reach), the notebook,
autostop and data volume on it (labvm.notebook, labvm.autostop, labvm.data), the cluster's machines
(labvm.workers) and Dask (labvm.cluster), and the steps of a verb beyond the cloud, taken or, under
--plan, said (labvm.plan)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from . import platforms, steps, vm
from .autostop import Autostop
from .config import Profile
from .data import DataVolume
from .errors import LabvmError
from .notebook import Notebook, lab_url
from .plan import PlannedSteps, Steps, confirm
from .providers import IMAGE_AVAILABLE, Instance, Provider, parse_time
from .providers.unlooked import provider_for
from .reach import LocalReach, SshReach, open_browser, reach_for
from .sshconfig import SshHome
from .text import clean
from .tunnel import Tunnels

if TYPE_CHECKING:  # preflight and workers load only for a new VM or a cluster: a prepared host's `up` needs neither
    from .workers import ClusterMachines


class Session:
    """One profile's verbs (tasks.py calls one per task), each composed of the parts below."""

    def __init__(self, profile: Profile, context, plan: bool = False, provider: Provider | None = None):
        """plan: --plan (the provider's gate prints each cloud call, the steps say what they would do).
        provider: the profile's provider when it is not one of hosts.yml's (the contract suite's
        in-memory cloud); by default the registry's."""
        self.context = context
        self.ssh = SshHome.current()
        self.tunnels = Tunnels(self.ssh)
        self.provider = provider or provider_for(profile, plan)  # under --plan, maybe one that could not look
        self.reach: LocalReach | SshReach = reach_for(profile, self.provider, self.ssh, self.tunnels)
        self.steps: Steps | PlannedSteps = Steps()
        if plan:  # refused where labvm changes nothing (local and ssh profiles)
            self.provider.start_planning()
            self.steps = PlannedSteps()
        self.notebook = Notebook(profile, lambda: self.host)
        self.autostop_setting = Autostop(profile, self.provider, lambda: self.host)
        self.data_volume = DataVolume(profile, self.provider, lambda: self.host, self.steps)  # hosts.yml data:

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc) -> None:
        self.reach.close()

    @property
    def profile(self) -> Profile:
        """The profile, with the login the cloud decided once connected (GCE OS Login)."""
        return self.reach.profile

    @property
    def host(self):
        """Where the steps run: this machine, or the running machine over SSH (connected when first asked)."""
        return self.reach.host

    # -- the machine -----------------------------------------------------------------------------

    def ensure_machine(self, image: str | None = None, replace: bool = False, yes: bool = False) -> None:
        """A running VM: resumed if stopped, made only if there is none (found by its tags).

        replace: a VM the cloud put in ERROR is deleted (asked first) and made again.
        """
        if replace:
            self.provider.require("--replace")
        if image:
            self.provider.require("--from-image")
        instance = self.provider.find()
        if replace and instance is not None:
            self._replace(instance, yes)
            instance = None
        if instance is None:
            if image == "latest":
                image = self._latest_image()
            public_key = self.ssh.ensure_key()
            from .preflight import before_create

            self.steps.then("", lambda: before_create(self))
            instance = self.provider.create(image, public_key=public_key)
            # A new VM at a known address has a new host key: forget the old one, and only now.
            self.ssh.forget_host(self.reach.address(instance), self.profile.port)
        else:
            if image and instance.state == "running":
                found = instance
                self.steps.then("", lambda: self._refuse_second(found))
            self.provider.admit_caller()  # this laptop may be on another network than last time
            if instance.state != "running":
                print(f"{self.profile.name}: resuming {instance.id} ({instance.state})")
                instance = self.provider.start(instance)
        machine = instance  # what the step below connects to (a name of its own for the closure)
        self.data_volume.attach(machine)
        self.steps.then(
            f"then over SSH to {self.reach.address(machine)}: keys, env, Jupyter, tunnel",
            lambda: self.reach.connect(machine, wait=True),
        )

    def _refuse_second(self, instance: Instance) -> None:
        raise LabvmError(
            f"profile {self.profile.name!r} already has a VM ({instance.id}); --from-image makes a new one "
            f"only after `inv terminate --host {self.profile.name}`"
        )

    def check(self) -> list:
        """`inv check`: read-only questions, one line each, before anything is billed (labvm.preflight)."""
        from .preflight import checks

        return self.reach.checks(lambda: checks(self))

    def _replace(self, instance: Instance, yes: bool) -> None:
        if instance.state != "error":
            raise LabvmError(
                f"--replace is for a VM the cloud put in ERROR; {instance.id} is {instance.state} "
                f"(`inv terminate --host {self.profile.name}` then `inv up` replaces a working one)"
            )
        if not yes:
            confirm(
                f"Delete {instance.id} ({instance.name}, in ERROR) and make a new VM?",
                f"--replace deletes {instance.id}; pass --yes to confirm",
            )
        self.provider.terminate(instance, True)  # keep the address for the new VM
        print(f"{self.profile.name}: deleted {instance.id} (ERROR); making a new VM")

    # -- setup steps -------------------------------------------------------------------

    def keys(self, host=None) -> None:
        """labvm's key authorised on the host (a cluster worker; by default the profile's own machine)."""
        self.reach.keys(host)

    def env(self, host=None) -> None:
        """The Python environment with hosts.yml's packages (a cluster worker; by default the machine)."""
        steps.environment(self.profile, host or self.host)

    def jupyter_config(self) -> None:
        """labvm's Jupyter config on the host (127.0.0.1 only, a token or the password's hash)."""
        self.notebook.configure()

    def setup(self) -> None:
        """keys, env, Jupyter's config, and autostop where labvm powers the machine."""
        self.keys()
        self.env()
        self.data_volume.mount()  # before Jupyter starts: its file browser shows the data folder
        self.jupyter_config()
        port = self.notebook.host_port()
        if port != self.profile.notebook.port:  # moved off a busy default: the idle check watches Jupyter's port
            notebook = dataclasses.replace(self.profile.notebook, port=port)
            moved = dataclasses.replace(self.profile, notebook=notebook)
            self.autostop_setting = Autostop(moved, self.provider, lambda: self.host)
        self.autostop_setting.setup()

    # -- a Dask cluster beside the notebook (labvm.workers: the machines; labvm.cluster: Dask) ----

    def cluster(self, count: int | None = None) -> None:
        """Workers (made, started or stopped to match), keys and env on each in parallel, then
        labvm.cluster: the scheduler, the workers and Client()'s config."""
        if not self.profile.cluster:
            raise LabvmError(f"{self.profile.source}: profiles.{self.profile.name} has no cluster: (see the README)")
        machines = self.cluster_machines
        try:
            kept, ended = machines.wanted(count)
            self.steps.then(
                f"then over SSH to {len(kept)} worker(s): keys, env, autostop; the scheduler and workers"
                + ("; the head's data read-only on each" if self.profile.data else ""),
                lambda: self._prepare_workers(machines, kept),
            )
        except LabvmError as e:
            if machines.listed:
                raise
            raise LabvmError(f"{str(e).splitlines()[0]}\n{machines.stop_unguarded()}") from None
        self.steps.then("", lambda: self._start_dask(machines, kept, ended))

    def _prepare_workers(self, machines: ClusterMachines, kept: list) -> None:
        """keys and env on each worker at once; then, on worker VMs, autostop before anything else
        (a worker VM never runs unguarded, whatever fails after)."""
        from . import cluster  # loads Fabric and cryptography: only when a cluster is there

        with ThreadPoolExecutor(max(1, len(kept))) as pool:
            list(pool.map(self._keys_and_env, kept))
        if not machines.listed:
            for line in cluster.arm_worker_autostop(self.profile, self.host, kept):
                print(line)

    def _keys_and_env(self, host) -> None:
        self.keys(host)
        self.env(host)

    def _start_dask(self, machines: ClusterMachines, kept: list, ended: list) -> None:
        from . import cluster, cluster_data

        for line in cluster.ensure(self.profile, self.ssh, self.host, kept):
            print(line)
        for line in cluster_data.ensure(self.profile, self.ssh, self.host, kept):  # the head's data, read-only
            print(line)
        for line in cluster_data.unmount(self.profile, ended):
            print(line)
        for host in ended:
            machines.end_dask(host)

    @property
    def cluster_machines(self) -> ClusterMachines:
        """The profile's worker machines (the cloud's VMs, or cluster.hosts)."""
        from .workers import ClusterMachines

        return ClusterMachines(self.profile, self.provider, self.ssh, self.steps)

    # -- idle auto-stop (cloud profiles) ---------------------------------------------------

    def autostop(self, idle: str = "", off: bool = False, extend: str = "") -> None:
        """`inv autostop` (labvm.autostop): --idle or --off kept on the VM, --extend, or hosts.yml's again."""
        self.autostop_setting.change(idle, off, extend)

    # -- notebook ------------------------------------------------------------------------

    def start_notebook(self) -> dict:
        """JupyterLab running on the host; its status."""
        return self.notebook.start()

    def stop_notebook(self, force: bool = False) -> None:
        """labvm's Jupyter ended on the host (force: also one labvm did not start on its port)."""
        self.notebook.stop(force)

    def notebook_status(self) -> dict:
        """The notebook's and the host's state, checked field by field."""
        return self.notebook.status()

    # -- the way in ----------------------------------------------------------------------

    def tunnel(self, remote_port: int | None = None) -> int:
        """Opens (or finds) the tunnel; returns the local port the browser uses."""
        return self.reach.tunnel(remote_port or self.notebook.host_port())

    def close_tunnel(self) -> None:
        """`inv tunnel --stop`: the keeper and its ssh end."""
        self.reach.close_tunnel()

    def up(
        self,
        browser: bool = True,
        image: str | None = None,
        replace: bool = False,
        yes: bool = False,
        keep_tunnel: bool = False,
    ) -> str:
        """Everything: the VM (resumed or made), keys, env, Jupyter, the tunnel; returns (and opens) the URL.
        keep_tunnel: a Jupyter that fails to start leaves the tunnel as it is (the asleep page's
        start, whose keeper then shows why) instead of closing it."""
        if not self.steps.looked(lambda: self.ensure_machine(image, replace, yes), self.provider):
            return ""  # --plan without credentials: said what it could not see
        from .prices import size_words  # a price looked up once, then from the laptop's cache

        words = size_words(self.profile, self.provider)  # "" where neither size nor price is known
        if words:
            print(f"{self.profile.name}: {words}")
        cluster_plan = f"then the cluster: `inv cluster --host {self.profile.name} --plan` once the VM runs"
        planned = cluster_plan if self.profile.cluster else ""
        return self.steps.then(planned, lambda: self._serve(browser, keep_tunnel)) or ""

    def _serve(self, browser: bool, keep_tunnel: bool) -> str:
        """On the running machine: set up, the cluster, Jupyter and the tunnel; the URL once it answers."""
        self.setup()
        if self.profile.cluster:
            self.cluster()
        # OpenSSH opens the tunnel while Jupyter boots; they share nothing.  A kept tunnel this `up`
        # wakes from its asleep page is not "already open": the URL below says it is there.
        self.tunnels.say_woken = False
        with ThreadPoolExecutor(1) as pool:
            opening = pool.submit(self.tunnel, self.notebook.host_port())
            try:
                server = self.start_notebook()["server"]
            except LabvmError:
                if opening.exception() is None and not keep_tunnel:  # nothing left behind: no tunnel to nowhere
                    self.close_tunnel()
                raise
            local_port = opening.result()
        local_port = self.reach.answering(local_port, server)
        url = self.url(local_port, server)
        self.reach.tell_url(url)
        print(f"\nJupyterLab is ready: {url}")
        if self.profile.cluster:
            print(
                f"Dask dashboard: http://127.0.0.1:{local_port}/{vm.layout.DASHBOARD_ROUTE}/status "
                f"(also in JupyterLab's Dask panel)"
            )
        if browser and platforms.has_browser():
            open_browser(self.ssh.run, self.profile.name, self.reach.browser_url(url))
        return url

    def url(self, local_port: int, server: dict) -> str:
        """The browser's URL; with a password set, the login page asks for it instead of a token."""
        return lab_url(local_port, server, with_token=not self.profile.notebook.password)

    def ssh_login(self) -> list[str]:
        """`inv ssh`: the command that logs in with labvm's key."""
        return self.reach.login_command()

    # -- notebooks home ------------------------------------------------------------------

    def sync(self, watch: bool = False, interval: float = 30, push: bool = False) -> None:
        """`inv sync`: notebooks home (or, push, sent); watch: again every `interval` seconds until Ctrl-C."""
        self.reach.sync(watch, interval, push)

    def _sync_or_refuse(self, sync: bool, instance: Instance, unchanged: str) -> None:
        """Before a verb that takes the VM's disk (terminate) or changes the VM (resize): a sync that fails,
        however it fails, stops the verb with nothing done and the way past it."""
        try:
            self.reach.sync_first(sync, instance, self.steps)
        except Exception as e:  # whatever the sync raised, the disk must not go unasked
            raise LabvmError(
                f"{_one_line(e)}; {unchanged}; pass --no-sync to go on without bringing notebooks home"
            ) from None

    # -- the VM's lifecycle (cloud profiles) ------------------------------------------------

    def _instance(self) -> Instance:
        instance = self.provider.find()
        if instance is None:
            raise LabvmError(f"profile {self.profile.name!r} has no VM; `inv up --host {self.profile.name}` makes one")
        return instance

    def create(self, image: str | None = None) -> None:
        """`inv create`: the profile's VM made (or resumed; never a second one)."""
        self.provider.require("create")
        if self.steps.looked(lambda: self.ensure_machine(image), self.provider):
            self.steps.then("", lambda: print(f"{self.profile.name}: {self.provider.find()}"))

    def start(self) -> None:
        """`inv start`: the VM running, its SSH answering."""
        self.provider.require("start")
        self.ensure_machine()

    def stop(self, sync: bool = True) -> None:
        """`inv stop`: notebooks home, then the VM stopped whatever failed before (its disk keeps everything)."""
        self.provider.require("stop")
        instance = self._instance()
        failed: list[str] = []
        _attempt(failed, "the sync", lambda: self.reach.sync_first(sync, instance, self.steps))
        instance = self.provider.stop(instance)
        self.steps.then("", lambda: self._stopped(failed, instance))

    def _stopped(self, failed: list[str], instance: Instance) -> None:
        _attempt(failed, "putting the tunnel to sleep", lambda: self.reach.sleep_tunnel("stopped by inv stop"))
        print(f"{self.profile.name}: {instance.id} is {instance.state}")
        self._went_on("stop", failed, instance)

    def snapshot(self, name: str, share: tuple[str, ...] = (), no_reboot: bool = False) -> None:
        """`inv snapshot`: a tagged image of the VM, waited for; a notebook a reboot ended comes back."""
        self.provider.require("snapshot")
        instance = self._instance()
        serving = instance.state == "running" and bool(self.steps.then("", self.notebook.running))
        image = self.provider.snapshot(instance, name, share, no_reboot)
        self.steps.then("", lambda: self._snapshot_made(image, serving))

    def _snapshot_made(self, image, serving: bool) -> None:
        print(f"snapshot: {image.id} ({image.name}) is {image.state}")
        if serving:
            self._bring_notebook_back()

    def _bring_notebook_back(self) -> None:
        """A snapshot may reboot the VM (EC2 does unless --no-reboot): Jupyter and the tunnel come back."""
        self.reach.close()
        if self.notebook.running():
            return
        print("snapshot: the VM rebooted for a consistent disk (--no-reboot skips that); starting the notebook again")
        self.close_tunnel()  # it went down with the VM
        self.up(browser=False)

    def _latest_image(self) -> str:
        ready = [i for i in self.provider.images() if i.state == IMAGE_AVAILABLE]
        if not ready:
            raise LabvmError(
                f"no labvm image of profile {self.profile.name} yet; "
                f"`inv snapshot --host {self.profile.name}` makes one"
            )
        return ready[-1].id

    def images(self, prune: bool = False, keep: int = 3) -> None:
        """`inv images`: the profile's images, oldest first; prune: all but the newest `keep` deleted."""
        if prune:
            images = self.provider.images()  # oldest first
            workers_from = self.provider.cluster_image() if self.profile.cluster else ""
            for image in images[:-keep] if keep else images:
                if image.id == workers_from:
                    print(f"images: kept {image.id} ({image.name}): the cluster's new workers are made from it")
                    continue
                self._delete_image(image)
        for image in self.provider.images():
            print(f"{image.id}  {image.created}  {image.state:<10} {image.name}")

    def _delete_image(self, image) -> None:
        self.provider.delete_image(image)
        self.steps.then("", lambda: print(f"images: deregistered {image.id} ({image.name}) and its snapshots"))

    def resize(self, size: str, sync: bool = True) -> str:
        """`inv resize`: notebooks home, the VM stopped, resized and started; the notebook comes back on it."""
        self.provider.require("resize")
        if not size:
            raise LabvmError("--size is required, e.g. --size m5.xlarge")
        instance = self._instance()
        self._sync_or_refuse(sync, instance, "nothing was resized and nothing was stopped")
        self.provider.resize(instance, size)
        return self.steps.then("", self._back_after_resize) or ""

    def _back_after_resize(self) -> str:
        self.close_tunnel()  # it went down with the VM
        return self.up(browser=False)  # the notebook comes back on the new size

    def terminate(
        self,
        yes: bool = False,
        force: bool = False,
        keep_ip: bool = False,
        sync: bool = True,
        delete_data: bool = False,
    ) -> None:
        """`inv terminate`: notebooks home, then the VM and its disk deleted (only with an image newer than
        its last start, or force; asked first unless yes); the data volume kept, or (delete_data) deleted after
        a last backup (labvm.data)."""
        instance = self._instance()
        data = self.data_volume.deletion(force) if delete_data else ""  # refused here, before anything changes
        started = self.provider.last_start(instance)  # unsupported where labvm owns no VM
        newer = [i for i in self.provider.images() if (made := parse_time(i.created)) and made > started]
        if not newer and not force:
            raise LabvmError(
                f"{instance.id} has no labvm image newer than its last start ({started:%Y-%m-%d %H:%M}); "
                f"`inv snapshot --host {self.profile.name}` keeps its disk, or pass --force to lose it"
            )
        # The disk goes: a sync that failed stops terminate, whatever failed (--no-sync is the user's say).
        self._sync_or_refuse(sync, instance, "nothing was deleted and nothing was stopped")
        if not yes:
            question = f"Terminate {instance.id} ({instance.name}) and delete its disk{data}?"
            refusal = f"terminate deletes {instance.id} and its disk; pass --yes to confirm"
            self.steps.then("", lambda: confirm(question, refusal))
        self.steps.then("", self.close_tunnel)
        if self.profile.cluster and not self.profile.cluster.hosts:
            self.provider.terminate_workers()  # the same guard and question covered them
        self.provider.terminate(instance, keep_ip)
        self.steps.then("", lambda: print(f"{self.profile.name}: {instance.id} terminated"))
        if data:
            self.data_volume.delete()
        else:
            self.steps.then("", self.data_volume.kept)

    def down(self, force: bool = False, sync: bool = True) -> None:
        """Every step is tried, and the VM stopped whatever failed before (a running VM bills; its disk keeps
        everything); what failed is said, and the exit status says it.  The VM is asked for once."""
        instance = self.provider.find()
        head_running = instance is not None and instance.state == "running"
        if instance is not None and head_running:
            self.steps.then("", lambda: self.reach.connect(instance))  # no second question to the cloud
        failed: list[str] = []
        _attempt(failed, "the sync", lambda: self.reach.sync_first(sync, instance, self.steps))
        self.steps.then("then over SSH: stop Jupyter and the cluster's processes; close the tunnel")
        if self.profile.cluster:
            head = (lambda: self.host) if head_running else None
            _attempt(failed, "stopping the cluster", lambda: self.cluster_machines.stop(head))
        if head_running:
            _attempt(failed, "stopping Jupyter", lambda: self.steps.then("", lambda: self.stop_notebook(force)))
        stopped = self.provider.power_off(instance) if instance else None  # may still shelve a stopped server
        self.steps.then("", lambda: self._down_done(failed, instance, stopped))

    def _down_done(self, failed: list[str], instance: Instance | None, stopped: Instance | None) -> None:
        data = self.data_volume.billed_while_stopped() if stopped else ""  # before the asleep page reads its price
        if instance is None:  # no VM: no URL to keep
            _attempt(failed, "closing the tunnel", self.close_tunnel)
        else:  # stopped, or a machine labvm does not power (it stays on, Jupyter stopped): the URL stays
            # labvm's (no other user of the laptop takes its port) until `tunnel --stop`
            _attempt(failed, "putting the tunnel to sleep", lambda: self.reach.sleep_tunnel("stopped by inv down"))
        if stopped is not None:
            print(f"{self.profile.name}: {stopped.id} is {stopped.state}; nothing is billed but its disk{data}")
        self._went_on("down", failed, stopped)

    def _went_on(self, verb: str, failed: list[str], stopped: Instance | None) -> None:
        """down or stop went past failed steps: the exit status says so, and one line what to do now."""
        if not failed:
            return
        steps = failed[0] if len(failed) == 1 else f"{', '.join(failed[:-1])} and {failed[-1]}"
        name = self.profile.name
        if stopped is not None:
            done = f"{stopped.id} is {stopped.state} anyway"
            later = (
                f"; its disk keeps the notebooks: `inv start --host {name}` "
                f"then `inv sync --host {name}` brings them home"
            )
        else:  # a machine labvm does not power: the rest of down was done
            done = "the rest was done"
            later = f"; `inv sync --host {name}` brings the notebooks home once the host answers"
        raise LabvmError(f"{verb}: {steps} failed (said above); {done}{later if 'the sync' in failed else ''}")


def _attempt(failed: list[str], step: str, action: Callable[[], object]) -> None:
    """One step of down or stop before (or after) the VM stops: whatever it raises is said in one line
    and added to `failed`, and the VM is stopped all the same (only Ctrl-C stops that)."""
    try:
        action()
    except Exception as e:  # no failure of a step may leave the VM running and billed
        failed.append(step)
        print(f"{step} failed: {_one_line(e)}", flush=True)


def _one_line(error: Exception) -> str:
    """What a failed step raised, as one line: labvm's own message, or (a fault of labvm's) its type and text."""
    if isinstance(error, LabvmError):
        return "; ".join(line.strip() for line in str(error).splitlines() if line.strip())
    return f"{type(error).__name__}: {clean(str(error), 300)} (a fault in labvm: please report it)"
