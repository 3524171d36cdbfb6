"""The SSH half of a Dask cluster: a head and two workers, each a network namespace with its own
address and sshd, the real `dask scheduler` / `dask worker` from PyPI, mutual TLS.

All three "machines" share the throwaway user's home (one /etc/passwd), so the env is built once
through the loopback sshd (the namespaces have no route to PyPI) and every per-host file must be
named by host: the tests check that the head's and the workers' processes do not mix up.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import threading
import time
from pathlib import Path

import pytest

from realhost import Lab, ssh_profile

from labvm import cluster
from labvm.config import load
from labvm.errors import LabvmError
from labvm.remote import SshHost
from labvm.sshconfig import SshHome

# setproctitle: dask renames its processes with it ("dask scheduler [tls://...]"); labvm must still know them.
PACKAGES = ["jupyterlab", "dask", "distributed", "setproctitle"]
DASK_PROCESS = "dask|multiprocessing"  # the nanny's worker is a multiprocessing child


@pytest.fixture(scope="module")
def machines(user, sshd, tmp_path_factory):
    """(lab, head, [worker1, worker2]): namespaces that reach each other through this machine only."""
    import netns

    reason = netns.available()
    if reason:
        pytest.skip(reason)
    lab = Lab.create()
    lab.write_hosts({"prep": ssh_profile(user, sshd, env={"packages": PACKAGES})})
    lab.inv("env", "--host", "prep", timeout=900)
    # Test addresses never leave this machine: unreachable unless a test host's own link says otherwise.
    subprocess.run(["ip", "route", "replace", "unreachable", f"{netns.SUBNET}.0.0/16"], check=True)
    forwarding = Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()
    subprocess.run(["sysctl", "-qw", "net.ipv4.ip_forward=1"], check=True)
    try:
        hosts = [netns.NetnsHost.create(name) for name in ("head", "w1", "w2")]
        for host in hosts:
            host.start_sshd(tmp_path_factory.mktemp(f"sshd-{host.name}"))
            host.exec("ip", "route", "add", f"{netns.SUBNET}.0.0/16", "via", host.gateway)
        yield lab, hosts[0], hosts[1:]
    finally:
        netns.remove_all()  # ends what runs inside them: tmux servers, dask
        subprocess.run(["sysctl", "-qw", f"net.ipv4.ip_forward={forwarding}"], check=True)
        import shutil
        shutil.rmtree(lab.directory, ignore_errors=True)


def connect(lab: Lab, user, head, workers, threads: int = 2, prefixes: dict | None = None):
    """(profile, ssh, head SshHost, worker SshHosts) as `inv up` would hand them over, after keys."""
    def profile(host, **extra):
        env = {"packages": PACKAGES, **({"prefix": prefixes[host.name]} if prefixes and host.name in prefixes else {})}
        return ssh_profile(user, host, address=host.address, env=env, **extra)

    lab.write_hosts({
        "head": profile(head, cluster={"hosts": [w.address for w in workers], "threads": threads, "memory_limit": "1GiB"}),
        **{w.name: profile(w) for w in workers},
    })
    config = load(lab.hosts)
    ssh = SshHome(lab.ssh_dir)
    made = [SshHost(config.profile(host.name), host.address, ssh) for host in [head, *workers]]
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


def head_python(head: SshHost, code: str) -> dict:
    """`code` run by the head's own env Python, as a notebook cell would, in a login of its own."""
    result = head.connection.run(f"~/.labvm/env/bin/python -c {shlex.quote(code)}", hide=True, warn=True, in_stream=False)
    assert result.exited == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


NOTEBOOK_CELL = """
import json, time
from dask.distributed import Client, get_worker
client = Client(timeout=30)
def where(i):
    time.sleep(0.3)
    return get_worker().address
names = {a: str(w["name"]) for a, w in client.scheduler_info(n_workers=-1)["workers"].items()}
ran = client.gather(client.map(where, range(16), pure=False))
print(json.dumps({"scheduler": client.scheduler.address, "workers": names, "ran": sorted(set(ran))}))
"""


def stop_all(lab, user, head, workers):
    profile, _, head_host, worker_hosts = connect(lab, user, head, workers)
    cluster.stop(profile, head_host, worker_hosts)
    for host in (head_host, *worker_hosts):
        host.close()


def test_client_with_nothing_typed_runs_tasks_on_both_workers_and_only_over_mutual_tls(machines, user):
    lab, head, workers = machines
    stop_all(lab, user, head, workers)
    profile, ssh, head_host, worker_hosts = connect(lab, user, head, workers)
    lines = cluster.ensure(profile, ssh, head_host, worker_hosts)
    assert lines[0].startswith(f"cluster: scheduler tls://{head.address}:8786 on {head.address}: started")
    for worker in workers:
        assert f"cluster: worker {worker.address}: started, 2 threads, 1.00 GiB" in lines, lines

    # Each process runs in its own machine's namespace, although home and /tmp are shared.
    def running(role, host):
        return [line for line in dask_processes(user, host)
                if (f"dask_{role}" in line or f"dask {role} [" in line) and "tmux" not in line]
    assert len(running("scheduler", head)) == 1 and not running("worker", head)
    assert all(running("worker", w) and not running("scheduler", w) for w in workers)
    assert any("dask scheduler [tls://" in line for line in running("scheduler", head))  # renamed, still found

    seen = head_python(head_host, NOTEBOOK_CELL)
    assert seen["scheduler"] == f"tls://{head.address}:8786"
    assert sorted(seen["workers"].values()) == sorted(w.address for w in workers)
    ran_on = {address.split("//")[1].rsplit(":", 1)[0] for address in seen["ran"]}
    assert ran_on == {w.address for w in workers}, seen  # tasks ran on both worker machines

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
        security = Security(tls_ca_file=str(ours / "ca.pem"), tls_client_cert=str(folder / "client.pem"),
                            tls_client_key=str(folder / "client.key"), require_encryption=True)
        with pytest.raises(OSError):
            Client(f"tls://{head.address}:8786", timeout=3, security=security)

    status = cluster.status(profile, head_host)
    assert sorted(line.split(" (")[0] for line in status) == [f"cluster: worker {w.address}" for w in workers]
    assert all("2 threads, 1.00 GiB, 0 tasks processing" in line for line in status), status

    pids = dask_processes(user)
    again = cluster.ensure(profile, ssh, head_host, worker_hosts)
    assert "already running" in again[0] and all("already running" in line for line in again[1:]), again
    assert dask_processes(user) == pids  # nothing restarted


def test_a_worker_whose_sshd_dies_during_ensure_is_named_and_a_rerun_completes_the_cluster(machines, user):
    lab, head, workers = machines
    stop_all(lab, user, head, workers)
    profile, ssh, head_host, worker_hosts = connect(lab, user, head, workers)
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
    profile, ssh, head_host, worker_hosts = connect(lab, user, head, workers)
    lines = cluster.ensure(profile, ssh, head_host, worker_hosts)
    assert "already running" in lines[0]
    assert f"cluster: worker {workers[0].address}: already running, 2 threads, 1.00 GiB" in lines
    # Its worker may have started before the link went: either way it is in the cluster now.
    assert any(line.startswith(f"cluster: worker {victim.address}: ") for line in lines), lines
    seen = cluster.status(profile, head_host)
    assert sorted(line.split(" (")[0] for line in seen) == [f"cluster: worker {w.address}" for w in workers], seen


def test_stop_leaves_no_dask_process_on_any_machine(machines, user):
    lab, head, workers = machines
    profile, ssh, head_host, worker_hosts = connect(lab, user, head, workers)
    cluster.ensure(profile, ssh, head_host, worker_hosts)
    lines = cluster.stop(profile, head_host, worker_hosts)
    assert sorted(lines) == sorted([f"cluster: scheduler on {head.address}: stopped"]
                                   + [f"cluster: worker {w.address}: stopped" for w in workers])
    assert dask_processes(user) == []
    assert cluster.stop(profile, head_host, worker_hosts)[0].endswith("was not running")
    assert cluster.status(profile, head_host)[0].startswith(f"cluster: no scheduler answers on {head.address}")


def test_a_worker_on_other_versions_is_named_before_anything_starts(machines, user):
    lab, head, workers = machines
    stop_all(lab, user, head, workers)
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
    profile, ssh, head_host, worker_hosts = connect(lab, user, head, workers, prefixes={"w2": "~/.labvm/env-old"})
    with pytest.raises(LabvmError) as failure:
        cluster.ensure(profile, ssh, head_host, worker_hosts)
    message = str(failure.value)
    assert f"cluster: dask 2024.1.0 on {workers[1].address} but " in message and head.address in message, message
    assert "profiles.head.env.packages" in message
    assert dask_processes(user) == []


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
