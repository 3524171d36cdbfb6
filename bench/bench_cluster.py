"""A Dask cluster on prepared machines: labvm's cluster.ensure() against the same by hand.

    sudo .venv/bin/python bench/bench_cluster.py      (root: a throwaway user, sshd, network namespaces)

A head and two workers, each a network namespace with its own sshd, the env already installed.
Both arms end at a `Client()` on the head that sees both workers over mutual TLS:

- labvm: cluster.ensure(profile, ...) on new SSH connections (as each `inv up` makes), then the client;
- by hand: `ssh head tmux new -d dask scheduler ...`, `ssh wN tmux new -d dask worker ...` ×2
  (OpenSSH, the certificates labvm already put there), then the same client, which waits for both.

Target: ratio <= 1.3. Nothing is asserted; the figures are printed.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE.parent))

import netns  # noqa: E402
from realhost import Lab, Sshd, User, ssh_profile  # noqa: E402

from labvm import cluster  # noqa: E402
from labvm.config import load  # noqa: E402
from labvm.remote import SshHost  # noqa: E402
from labvm.sshconfig import SshHome  # noqa: E402

PACKAGES = ["jupyterlab", "dask", "distributed"]
CLIENT = (
    "from dask.distributed import Client; c = Client(timeout=60); c.wait_for_workers(2, timeout=60); "
    "print(len(c.scheduler_info(n_workers=-1)['workers']))"
)
HAND_CLIENT = (
    "from dask.distributed import Client; from distributed.security import Security; "
    "d = '{home}/.labvm/dask'; s = Security(tls_ca_file=d + '/ca.pem', tls_client_cert=d + '/client.pem', "
    "tls_client_key=d + '/client.key', require_encryption=True); "
    "c = Client('tls://{head}:8786', security=s, timeout=60); c.wait_for_workers(2, timeout=60); "
    "print(len(c.scheduler_info(n_workers=-1)['workers']))"
)


def report(name: str, ours: float, base: float) -> None:
    print(f"{name:<34} labvm {ours:8.3f} s     baseline {base:8.3f} s     ratio {ours / base:5.2f}  (target <= 1.3)")


def make_machines(user: User, tmp: Path) -> tuple[netns.NetnsHost, list[netns.NetnsHost]]:
    subprocess.run(["ip", "route", "replace", "unreachable", f"{netns.SUBNET}.0.0/16"], check=True)
    subprocess.run(["sysctl", "-qw", "net.ipv4.ip_forward=1"], check=True)
    hosts = [netns.NetnsHost.create(name) for name in ("head", "w1", "w2")]
    for host in hosts:
        host.start_sshd(tmp / f"sshd-{host.name}")
        host.exec("ip", "route", "add", f"{netns.SUBNET}.0.0/16", "via", host.gateway)
    return hosts[0], hosts[1:]


def labvm_hosts(lab: Lab, head, workers):
    config = load(lab.hosts)
    ssh = SshHome(lab.ssh_dir)
    made = [SshHost(config.profile(h.name), h.address, ssh) for h in [head, *workers]]
    return config.profile("head"), ssh, made[0], made[1:]


def ssh_command(user: User, host) -> list[str]:
    return [
        "ssh",
        "-F",
        "/dev/null",
        "-i",
        str(user.key),
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        f"{user.name}@{host.address}",
    ]


def by_hand(user: User, head, workers) -> float:
    env = "DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION=True ~/.labvm/env/bin/python -m distributed.cli"
    tls = "--tls-ca-file ~/.labvm/dask/ca.pem --tls-cert ~/.labvm/dask/{0}.pem --tls-key ~/.labvm/dask/{0}.key"
    start = time.perf_counter()
    subprocess.run(
        [
            *ssh_command(user, head),
            f"tmux -L hand-{head.address} new -d '{env}.dask_scheduler --host "
            f"{head.address} --protocol tls {tls.format('scheduler')} --dashboard-address 127.0.0.1:8787'",
        ],
        check=True,
    )
    for worker in workers:
        subprocess.run(
            [
                *ssh_command(user, worker),
                f"tmux -L hand-{worker.address} new -d '{env}.dask_worker --host "
                f"{worker.address} --name {worker.address} --no-dashboard {tls.format('worker')} "
                f"tls://{head.address}:8786'",
            ],
            check=True,
        )
    client = HAND_CLIENT.format(home=user.home, head=head.address)
    seen = subprocess.run(
        [*ssh_command(user, head), f'~/.labvm/env/bin/python -c "{client}"'], check=True, capture_output=True, text=True
    ).stdout.strip()
    elapsed = time.perf_counter() - start
    assert seen == "2", seen
    for host in [head, *workers]:
        subprocess.run([*ssh_command(user, host), f"tmux -L hand-{host.address} kill-server"], check=True)
    wait_until_gone(user)
    return elapsed


def with_labvm(user: User, lab: Lab, head, workers) -> float:
    profile, ssh, head_host, worker_hosts = labvm_hosts(lab, head, workers)
    start = time.perf_counter()
    cluster.ensure(profile, ssh, head_host, worker_hosts)
    seen = subprocess.run(
        [*ssh_command(user, head), f'~/.labvm/env/bin/python -c "{CLIENT}"'], check=True, capture_output=True, text=True
    ).stdout.strip()
    elapsed = time.perf_counter() - start
    assert seen == "2", seen
    cluster.stop(profile, head_host, worker_hosts)
    for host in [head_host, *worker_hosts]:
        host.close()
    wait_until_gone(user)
    return elapsed


def wait_until_gone(user: User) -> None:
    for _ in range(200):
        if not user.processes("distributed.cli"):
            return
        time.sleep(0.05)


def main(rounds: int = 3) -> None:
    if os.geteuid() != 0 or netns.available():
        sys.exit(f"bench_cluster.py needs root and network namespaces: {netns.available() or 'run it as root'}")
    tmp = Path(tempfile.mkdtemp())
    user = User.create(tmp)
    sshd = Sshd(tmp / "sshd")
    lab = Lab.create()
    forwarding = Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()
    try:
        lab.write_hosts({"prep": ssh_profile(user, sshd, env={"packages": PACKAGES})})
        lab.inv("env", "--host", "prep", timeout=900)
        head, workers = make_machines(user, tmp)
        lab.write_hosts(
            {
                "head": ssh_profile(
                    user,
                    head,
                    address=head.address,
                    env={"packages": PACKAGES},
                    cluster={"hosts": [w.address for w in workers]},
                ),
                **{w.name: ssh_profile(user, w, address=w.address, env={"packages": PACKAGES}) for w in workers},
            }
        )
        profile, ssh, head_host, worker_hosts = labvm_hosts(lab, head, workers)
        public_key = ssh.ensure_key()
        for host in [head_host, *worker_hosts]:  # prepared: keys, certificates, a first run
            host.run("authorize-key.sh", env={"LABVM_PUBKEY": public_key})
        with_labvm(user, lab, head, workers)
        ours, base = [], []
        for _ in range(rounds):
            base.append(by_hand(user, head, workers))
            ours.append(with_labvm(user, lab, head, workers))
        print(f"cluster benchmark, {os.cpu_count()} cores, head + 2 workers in network namespaces")
        report("cluster up (prepared hosts)", statistics.median(ours), statistics.median(base))
        profile, ssh, head_host, worker_hosts = labvm_hosts(lab, head, workers)
        cluster.ensure(profile, ssh, head_host, worker_hosts)
        start = time.perf_counter()
        profile, ssh, head_host, worker_hosts = labvm_hosts(lab, head, workers)
        cluster.ensure(profile, ssh, head_host, worker_hosts)
        print(f"{'cluster up again (all running)':<34} labvm {time.perf_counter() - start:8.3f} s")
    finally:
        netns.remove_all()
        subprocess.run(["sysctl", "-qw", f"net.ipv4.ip_forward={forwarding}"], check=True)
        sshd.stop()
        user.remove()
        shutil.rmtree(lab.directory, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
