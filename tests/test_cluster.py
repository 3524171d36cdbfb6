"""The SSH half of a Dask cluster: a head and two workers, each a network namespace with its own
address and sshd, the real `dask scheduler` / `dask worker` from PyPI, mutual TLS.

All three "machines" share the throwaway user's home (one /etc/passwd), so the env is built once
through the loopback sshd (the namespaces have no route to PyPI) and every per-host file must be
named by host: the tests check that the head's and the workers' processes do not mix up.

The notebook is labvm's own: `inv up --host head` starts the cluster, JupyterLab on the head and
the kept tunnel, and the tests reach Jupyter only through that tunnel, as the browser does.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import netns
from kernel import run_cell
from realhost import ROOT, Lab, User, free_port, ssh_profile, zombie

from labvm import cluster
from labvm.config import CLUSTER_PACKAGES, load
from labvm.errors import LabvmError
from labvm.remote import SshHost
from labvm.sshconfig import SshHome

# setproctitle: dask renames its processes with it ("dask scheduler [tls://...]"); labvm must still know them.
# CLUSTER_PACKAGES: what labvm adds to a cluster profile's env (dask-labextension brings jupyter-server-proxy).
PACKAGES = ["jupyterlab", "dask", "setproctitle", *CLUSTER_PACKAGES]
DASK_PROCESS = "dask|multiprocessing"  # the nanny's worker is a multiprocessing child


@dataclass
class Machines:
    lab: Lab
    user: User
    head: netns.NetnsHost
    workers: list[netns.NetnsHost]
    # One notebook for the whole module: every hosts.yml written here names the same ports.
    # nohup: a tmux server of another test would run Jupyter outside the head's namespace.
    notebook: dict = field(
        default_factory=lambda: {"port": free_port(), "local_port": free_port(), "multiplexer": "nohup"}
    )

    def write_hosts(self, threads: int = 2, prefixes: dict | None = None) -> None:
        def profile(host, **extra):
            env = {
                "packages": PACKAGES,
                **({"prefix": prefixes[host.name]} if prefixes and host.name in prefixes else {}),
            }
            return ssh_profile(self.user, host, address=host.address, env=env, **extra)

        self.lab.write_hosts(
            {
                "head": profile(
                    self.head,
                    notebook=self.notebook,
                    cluster={"hosts": [w.address for w in self.workers], "threads": threads, "memory_limit": "1GiB"},
                ),
                **{w.name: profile(w) for w in self.workers},
            }
        )


@pytest.fixture(scope="module")
def machines(user, sshd, tmp_path_factory):
    """The head and two workers: namespaces that reach each other through this machine only."""
    with netns.namespaced_lab(user, sshd, tmp_path_factory, ["head", "w1", "w2"], packages=tuple(PACKAGES)) as (
        lab,
        hosts,
    ):
        yield Machines(lab, user, hosts[0], hosts[1:])


@dataclass
class Notebook:
    up: str  # what `inv up` printed
    base: str  # http://127.0.0.1:<local port>: the tunnel's end on this machine
    token: str

    def get(self, path: str) -> tuple[int, bytes]:
        request = urllib.request.Request(f"{self.base}/{path}", headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()


@pytest.fixture(scope="module")
def notebook(machines):
    """`inv up --host head` from nothing running: cluster, JupyterLab on the head, the kept tunnel."""
    stop_all(machines)
    machines.write_hosts()
    try:
        up = machines.lab.inv("up", "--host", "head", "--no-browser").stdout
        base, token = re.search(r"JupyterLab is ready: (\S+)", up).group(1).split("/lab?token=")
        yield Notebook(up, base, token)
    finally:
        machines.lab.inv("down", "--host", "head", "--no-sync", check=False, timeout=120)


def connect(machines: Machines, threads: int = 2, prefixes: dict | None = None):
    """(profile, ssh, head SshHost, worker SshHosts) as `inv up` would hand them over, after keys."""
    machines.write_hosts(threads, prefixes)
    config = load(machines.lab.hosts)
    ssh = SshHome(machines.lab.ssh_dir)
    hosts = [machines.head, *machines.workers]
    made = [SshHost(config.profile(host.name), host.address, ssh) for host in hosts]
    public_key = ssh.ensure_key()
    for host in made:
        host.run("authorize-key.sh", env={"LABVM_PUBKEY": public_key})
    return config.profile("head"), ssh, made[0], made[1:]


def dask_processes(user, host=None) -> list[str]:
    """The user's dask processes, on one namespace's host or anywhere."""
    found = user.processes(DASK_PROCESS)
    if host is None:
        return found
    inside = set(subprocess.run(["ip", "netns", "pids", host.namespace], capture_output=True, text=True).stdout.split())
    return [line for line in found if line.split()[0] in inside]


# The first cell a user writes, run by the notebook's own kernel.
NOTEBOOK_CELL = """
import json, sys, time
from dask.distributed import Client, get_worker
client = Client(timeout=30)
def where(i):
    time.sleep(0.3)
    return get_worker().address
names = {a: str(w["name"]) for a, w in client.scheduler_info(n_workers=-1)["workers"].items()}
ran = client.gather(client.map(where, range(16), pure=False))
print(json.dumps({"python": sys.executable, "scheduler": client.scheduler.address, "workers": names,
                  "ran": sorted(set(ran))}))
"""


def stop_all(machines: Machines) -> None:
    profile, _, head_host, worker_hosts = connect(machines)
    cluster.stop(profile, head_host, worker_hosts)
    for host in (head_host, *worker_hosts):
        host.close()


def test_client_with_nothing_typed_in_the_notebook_runs_tasks_on_both_workers_and_only_over_mutual_tls(
    machines, notebook
):
    lab, user, head, workers = machines.lab, machines.user, machines.head, machines.workers
    said = notebook.up.splitlines()
    assert any(
        line.startswith(f"cluster: scheduler tls://{head.address}:8786 on {head.address}: started") for line in said
    ), notebook.up
    for worker in workers:
        assert f"cluster: worker {worker.address}: started, 2 threads, 1.00 GiB" in said, notebook.up

    # Each process runs in its own machine's namespace, although home and /tmp are shared.
    def running(role, host):
        return [
            line
            for line in dask_processes(user, host)
            if (f"dask_{role}" in line or f"dask {role} [" in line) and "tmux" not in line
        ]

    assert len(running("scheduler", head)) == 1 and not running("worker", head)
    assert all(running("worker", w) and not running("scheduler", w) for w in workers)
    assert any("dask scheduler [tls://" in line for line in running("scheduler", head))  # renamed, still found
    # Nothing new listens on every address: dask on its machine's cluster address, HTTP on loopback.
    for host in (head, *workers):
        listening = subprocess.run(
            ["ip", "netns", "exec", host.namespace, "ss", "-ltnpH"], capture_output=True, text=True, check=True
        ).stdout.splitlines()
        addresses = {line.split()[3].rsplit(":", 1)[0] for line in listening if "sshd" not in line}
        assert addresses and addresses <= {host.address, "127.0.0.1"}, listening
    # The scheduler's one TCP port is the cluster's: its dashboard is a unix socket, on no port at all.
    scheduler_pid = (user.home / ".labvm" / "dask" / f"scheduler-{head.address}.pid").read_text().strip()
    listening = subprocess.run(
        ["ip", "netns", "exec", head.namespace, "ss", "-ltnpH"], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert [line.split()[3] for line in listening if f"pid={scheduler_pid}," in line] == [f"{head.address}:8786"], (
        listening
    )

    # The browser's way: a kernel of the head's JupyterLab, through the tunnel `inv up` opened.
    seen = json.loads(run_cell(notebook.base, notebook.token, NOTEBOOK_CELL, timeout=120).strip().splitlines()[-1])
    assert seen["python"].startswith(f"{user.home}/.labvm/env/"), seen  # the env's Python, with distributed
    assert seen["scheduler"] == f"tls://{head.address}:8786"
    assert sorted(seen["workers"].values()) == sorted(w.address for w in workers)
    ran_on = {address.split("//")[1].rsplit(":", 1)[0] for address in seen["ran"]}
    assert ran_on == {w.address for w in workers}, seen  # tasks ran on both worker machines

    profile, ssh, head_host, worker_hosts = connect(machines)
    # Private keys are 0600 on the laptop and on the machines.
    for key in [*(ssh.labvm / "cluster" / "head").glob("*.key"), *(user.home / ".labvm" / "dask").glob("*.key")]:
        assert key.stat().st_mode & 0o077 == 0, key

    from distributed import Client
    from distributed.security import Security
    import dask

    with dask.config.set({"distributed.comm.require-encryption": False}):
        with pytest.raises(OSError):  # plain TCP to the TLS port: the scheduler never answers it
            Client(f"tcp://{head.address}:8786", timeout=3, security=Security())
        # A certificate from another CA: TLS, but not this cluster's.
        stranger = cluster.certificates(SshHome(lab.directory / "other"), profile)
        folder = lab.directory / "stranger"
        folder.mkdir()
        for name, data in stranger.items():
            (folder / name).write_bytes(data)
        ours = ssh.labvm / "cluster" / "head"
        security = Security(
            tls_ca_file=str(ours / "ca.pem"),
            tls_client_cert=str(folder / "client.pem"),
            tls_client_key=str(folder / "client.key"),
            require_encryption=True,
        )
        with pytest.raises(OSError):
            Client(f"tls://{head.address}:8786", timeout=3, security=security)
        # The positive control: the same address and CA with this cluster's own client certificate answers.
        own = Security(
            tls_ca_file=str(ours / "ca.pem"),
            tls_client_cert=str(ours / "client.pem"),
            tls_client_key=str(ours / "client.key"),
            require_encryption=True,
        )
        with Client(f"tls://{head.address}:8786", timeout=10, security=own) as client:
            assert len(client.scheduler_info()["workers"]) == len(workers)

    status = cluster.status(profile, head_host)
    assert sorted(line.split(" (")[0] for line in status) == [f"cluster: worker {w.address}" for w in workers]
    assert all("2 threads, 1.00 GiB, 0 tasks processing" in line for line in status), status

    pids = dask_processes(user)
    again = cluster.ensure(profile, ssh, head_host, worker_hosts)
    assert "already running" in again[0] and all("already running" in line for line in again[1:]), again
    assert dask_processes(user) == pids  # nothing restarted


def test_jupyterlab_shows_the_clusters_dashboard_with_nothing_typed(notebook):
    """dask-labextension's panel starts from its defaultURL setting, made absolute with Jupyter's
    base URL, and asks <that>/individual-plots.json through Jupyter (src/dashboard.tsx
    testDaskDashboard); labvm's default is jupyter-server-proxy's route to the dashboard's socket."""
    assert dashboard_default(notebook) == cluster.DASHBOARD_ROUTE
    status, page = notebook.get(f"{cluster.DASHBOARD_ROUTE}/status")  # the scheduler's own page, through the tunnel
    assert status == 200 and b"Dask" in page, page[:500]
    _, plots = notebook.get(f"{cluster.DASHBOARD_ROUTE}/individual-plots.json")
    assert "Individual Task Stream" in json.loads(plots), plots[:500]
    # Without Jupyter's token: the login page, never the dashboard.
    status, location = without_token(f"{notebook.base}/{cluster.DASHBOARD_ROUTE}/status")
    assert status == 302 and location.startswith("/login?next="), (status, location)
    assert without_token(f"{notebook.base}/{cluster.DASHBOARD_ROUTE}/json/counts.json")[0] == 302


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def without_token(url: str) -> tuple[int, str]:
    """A request with no token or cookie: (status, Location)."""
    try:
        with urllib.request.build_opener(NoRedirect).open(url, timeout=30) as response:
            return response.status, ""
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Location", "")


def test_a_running_jupyterlab_takes_the_dashboard_default_at_the_next_up(machines, notebook):
    """A profile that gets `cluster:` later: its JupyterLab already runs, with settings defaults read
    when it started (jupyterlab_server handlers.py loads overrides once); the next `up` restarts it,
    with a new token."""
    lab, user = machines.lab, machines.user
    lab.inv("stop-notebook", "--host", "head")
    overrides = user.home / ".labvm" / "env" / "share" / "jupyter" / "lab" / "settings" / "overrides.d" / "labvm.json"
    before = {name: value for name, value in json.loads(overrides.read_text()).items() if not name.startswith("dask")}
    overrides.write_text(json.dumps(before))  # in place: the file stays the VM user's
    lab.inv("start-notebook", "--host", "head")
    notebook.token = re.search(r"url: \S+/lab\?token=(\S+)", lab.inv("status", "--host", "head").stdout).group(1)
    assert dashboard_default(notebook) == ""  # as labvm without a cluster left it

    up = lab.inv("up", "--host", "head", "--no-browser").output
    base, token = re.search(r"JupyterLab is ready: (\S+)", up).group(1).split("/lab?token=")
    assert "restarting" in up and base == notebook.base and token != notebook.token
    notebook.token = token
    assert dashboard_default(notebook) == cluster.DASHBOARD_ROUTE


def dashboard_default(notebook: Notebook) -> str:
    _, body = notebook.get("lab/api/settings/dask-labextension:plugin")
    return json.loads(body)["schema"]["properties"]["defaultURL"]["default"]


def test_the_dashboard_socket_opens_only_for_its_user_and_a_squatted_8787_changes_nothing(
    machines, notebook, user, colleague
):
    """Another login of the head can reach any TCP port on its loopback; the dashboard is a socket
    0600 in a 0700 folder.  What held 8787 before (the port JupyterLab's panel used) gets nothing."""
    head = machines.head
    socket_path = user.home / ".labvm" / "dask" / "dashboard.sock"
    assert socket_path.is_socket() and socket_path.stat().st_uid == user.uid
    assert oct(socket_path.stat().st_mode & 0o777) == "0o600"
    assert oct(socket_path.parent.stat().st_mode & 0o777) == "0o700"
    # The colleague's own program on 127.0.0.1:8787 of the head, recording any connection.
    evidence = Path(tempfile.mkdtemp(prefix="colleague-"))
    evidence.chmod(0o777)  # the colleague writes there
    # Homes on shared VMs are often open to others (Debian: 0755): only labvm's own modes may stand
    # between the colleague and the socket.  Each layer alone refuses: the folder, then the socket.
    opened = [user.home, user.home / ".labvm"]
    modes = [folder.stat().st_mode for folder in opened]
    with listening(head, colleague, 8787, record=evidence / "reached"):
        try:
            for folder in opened:
                folder.chmod(0o755)
            assert counts_as(head, colleague, socket_path) == "PermissionError"
            socket_path.parent.chmod(0o755)
            assert counts_as(head, colleague, socket_path) == "PermissionError"
        finally:
            socket_path.parent.chmod(0o700)
            for folder, mode in zip(opened, modes):
                folder.chmod(mode)
        # The positive control: the same request as the socket's owner.
        answer = counts_as(head, user, socket_path)
        assert json.loads(answer)["workers"] == len(machines.workers), answer
        profile, ssh, head_host, worker_hosts = connect(machines)
        assert "already running" in cluster.ensure(profile, ssh, head_host, worker_hosts)[0]
        status, page = notebook.get(f"{cluster.DASHBOARD_ROUTE}/status")
        assert status == 200 and b"Dask" in page
        assert dashboard_default(notebook) == cluster.DASHBOARD_ROUTE
    assert not (evidence / "reached").exists(), "the colleague's port 8787 received a connection"


# GET /json/counts.json on the dashboard's socket: its body, or the name of the error.
COUNTS = """
import socket, sys
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
except OSError as e:
    print(type(e).__name__)
    sys.exit()
s.sendall(b"GET /json/counts.json HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n")
print(b"".join(iter(lambda: s.recv(65536), b"")).split(b"\\r\\n\\r\\n", 1)[1].decode())
"""


def counts_as(host: netns.NetnsHost, login: User, path: Path) -> str:
    return subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            host.namespace,
            "setpriv",
            f"--reuid={login.uid}",
            f"--regid={pwd.getpwuid(login.uid).pw_gid}",
            "--clear-groups",
            "/usr/bin/python3",
            "-c",
            COUNTS,
            str(path),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def test_a_worker_whose_sshd_dies_during_ensure_is_named_and_a_rerun_completes_the_cluster(machines, user):
    head, workers = machines.head, machines.workers
    stop_all(machines)
    profile, ssh, head_host, worker_hosts = connect(machines)
    victim = workers[1]
    scheduler_pid = user.home / ".labvm" / "dask" / f"scheduler-{head.address}.pid"

    def kill_victims_sshd_when_the_scheduler_starts():
        deadline = time.monotonic() + 120
        while not scheduler_pid.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        kill_sshd(victim)

    killer = threading.Thread(target=kill_victims_sshd_when_the_scheduler_starts)
    killer.start()
    with pytest.raises(LabvmError) as failure:
        cluster.ensure(profile, ssh, head_host, worker_hosts)
    killer.join()
    assert victim.address in str(failure.value) and "run the same task again" in str(failure.value)
    assert workers[0].address not in str(failure.value)  # the other worker was made whole

    victim.start_sshd(victim.sshd_config.parent)
    profile, ssh, head_host, worker_hosts = connect(machines)
    lines = cluster.ensure(profile, ssh, head_host, worker_hosts)
    assert "already running" in lines[0]
    assert f"cluster: worker {workers[0].address}: already running, 2 threads, 1.00 GiB" in lines
    # Its worker may have started before the link went: either way it is in the cluster now.
    assert any(line.startswith(f"cluster: worker {victim.address}: ") for line in lines), lines
    seen = cluster.status(profile, head_host)
    assert sorted(line.split(" (")[0] for line in seen) == [f"cluster: worker {w.address}" for w in workers], seen


def test_down_leaves_no_dask_process_on_any_machine(machines, user):
    head, workers = machines.head, machines.workers
    profile, ssh, head_host, worker_hosts = connect(machines)
    cluster.ensure(profile, ssh, head_host, worker_hosts)
    down = machines.lab.inv("down", "--host", "head", "--no-sync").stdout.splitlines()
    for line in [
        f"cluster: scheduler on {head.address}: stopped",
        *(f"cluster: worker {w.address}: stopped" for w in workers),
    ]:
        assert line in down, down
    assert dask_processes(user) == []
    assert cluster.stop(profile, head_host, worker_hosts)[0].endswith("was not running")
    assert cluster.status(profile, head_host)[0].startswith(f"cluster: no scheduler answers on {head.address}")


def test_a_worker_on_other_versions_is_named_before_anything_starts(machines, user):
    head, workers = machines.head, machines.workers
    stop_all(machines)
    # A stand-in env on w2: the same Python, an older dask and distributed (metadata is what is compared).
    old = user.home / ".labvm" / "env-old"
    site = old / "lib" / "site-packages"
    site.mkdir(parents=True, exist_ok=True)
    (old / "bin").mkdir(exist_ok=True)
    python = old / "bin" / "python"
    python.write_text(f'#!/bin/sh\nPYTHONPATH={site} exec {user.home}/.labvm/env/bin/python -S "$@"\n')
    python.chmod(0o755)
    for name in ("dask", "distributed"):
        info = site / f"{name}-2024.1.0.dist-info"
        info.mkdir(exist_ok=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 2024.1.0\n")
    subprocess.run(["chown", "-R", f"{user.name}:{user.name}", str(old)], check=True)
    profile, ssh, head_host, worker_hosts = connect(machines, prefixes={"w2": "~/.labvm/env-old"})
    with pytest.raises(LabvmError) as failure:
        cluster.ensure(profile, ssh, head_host, worker_hosts)
    message = str(failure.value)
    assert f"cluster: dask 2024.1.0 on {workers[1].address} but " in message and head.address in message, message
    assert "profiles.head.env.packages" in message
    assert dask_processes(user) == []


@pytest.fixture
def colleague(tmp_path):
    """Another login of the head: a shared lab VM or workstation."""
    other = User.create(tmp_path)
    yield other
    other.remove()


@contextmanager
def listening(host: netns.NetnsHost, login: User, port: int, record: Path):
    """login listens on 127.0.0.1:port inside host's namespace until the block ends, and writes the
    file record when anything connects (setpriv execs, so the listener is the process ended here)."""
    program = (
        f"import socket,sys; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
        f"s.bind(('127.0.0.1', {port})); s.listen(); print('listening', flush=True); s.accept(); "
        f"open(sys.argv[1], 'w').write('reached')"
    )
    squatter = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            host.namespace,
            "setpriv",
            f"--reuid={login.uid}",
            f"--regid={pwd.getpwuid(login.uid).pw_gid}",
            "--clear-groups",
            "/usr/bin/python3",
            "-c",
            program,
            str(record),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert squatter.stdout.readline().strip() == "listening"
        yield
    finally:
        squatter.kill()
        squatter.wait(10)


def test_a_file_in_the_dashboards_place_is_named_and_the_scheduler_does_not_run(machines, user):
    """The scheduler never runs with its dashboard left on TCP: a file where the socket goes stops it."""
    stop_all(machines)
    profile, ssh, head_host, worker_hosts = connect(machines)
    cluster._push_certificates(head_host, cluster.certificates(ssh, profile), cluster.HEAD_ROLES)
    in_the_way = user.home / ".labvm" / "dask" / "dashboard.sock"
    in_the_way.write_text("not a socket\n")
    try:
        with pytest.raises(LabvmError) as failure:
            cluster._script(
                head_host, "start-scheduler", **cluster._start_env(head_host), LABVM_DASK_PORT=cluster.SCHEDULER_PORT
            )
        message = str(failure.value)
        assert f"the dashboard cannot be served on {in_the_way}" in message and "not a socket" in message, message
        assert dask_processes(user) == []
    finally:
        in_the_way.unlink()
    # The positive control: the same start with the place free.
    started = cluster._script(
        head_host, "start-scheduler", **cluster._start_env(head_host), LABVM_DASK_PORT=cluster.SCHEDULER_PORT
    )
    assert started["action"] == "started" and in_the_way.is_socket()
    stop_all(machines)


def kill_sshd(host) -> None:
    """The host's sshd and every session it serves die at once (a crash, an OOM kill)."""
    host.sshd.kill()
    host.sshd.wait(10)
    pids = subprocess.run(["ip", "netns", "pids", host.namespace], capture_output=True, text=True).stdout.split()
    for pid in pids:
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
            if title.startswith(b"sshd"):
                os.kill(int(pid), 9)
        except (OSError, ProcessLookupError):
            pass


def test_a_zombie_named_like_the_scheduler_is_not_a_running_scheduler(user):
    # The name setproctitle gives the scheduler, as the kernel keeps it.
    with zombie(user, "dask scheduler [tls://") as pid:
        try:
            assert dask_processes(user) == []  # what the suite checks after each stop
            # dask.sh, given the zombie's pid as its scheduler's: nothing runs, nothing to stop.
            dask = user.home / ".labvm" / "dask"
            user.shell(f"mkdir -p {dask} && echo {pid} > {dask}/scheduler-zombie.test.pid")
            stop = user.shell(f"LABVM_DASK_HOST=zombie.test LABVM_DASK_ROLE=scheduler sh {ROOT}/scripts/dask.sh stop")
            assert stop.returncode == 0, stop.stderr
            assert "dask: no scheduler running on zombie.test" in stop.stderr
            assert json.loads(stop.stdout) == {"stopped": False}
        finally:
            user.shell(f"rm -f {user.home}/.labvm/dask/scheduler-zombie.test.pid")
