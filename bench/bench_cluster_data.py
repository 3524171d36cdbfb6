"""The head's data on a cluster worker (labvm.cluster_data: sshfs, read-only): how fast a worker reads it.

    sudo .venv/bin/python bench/bench_cluster_data.py   (root: a throwaway user, namespaces, sshd, FUSE)

A head and a worker, each a network namespace with its own sshd (as tests/test_cluster_data.py makes
them), the head's data folder a tmpfs.  One file of 256 MiB, read whole, three ways, each the median
of RUNS reads:
1. on the worker, through labvm's sshfs mount (the worker's page cache dropped first: a cold read);
2. on the worker, `ssh head cat FILE` over plain OpenSSH (the same network, the same cipher defaults);
3. on the head itself, a local read (the ceiling: no network, no encryption).
Printed: MiB/s each and the ratios mount/ssh and mount/local.
"""

from __future__ import annotations

import dataclasses
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
from realhost import Lab, User, ssh_profile  # noqa: E402

from labvm import cluster_data  # noqa: E402
from labvm.config import load  # noqa: E402
from labvm.config.schema import DataSpec  # noqa: E402
from labvm.remote import SshHost  # noqa: E402
from labvm.sshconfig import SshHome  # noqa: E402

SIZE_MIB = 256
RUNS = 3
MOUNT = "~/bench-cluster-data"


def seconds(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    return time.perf_counter() - started


def as_user(user: User, pid: int, command: str, network: bool = False) -> list[str]:
    """command as the user inside the mount (and network) namespace of process pid."""
    return [
        "nsenter",
        "-t",
        str(pid),
        "-m",
        *(["-n"] if network else []),
        "su",
        "-s",
        "/bin/sh",
        user.name,
        "-c",
        command,
    ]


def median_rate(command: list[str], before=None) -> float:
    taken = []
    for _ in range(RUNS):
        if before:
            before()
        taken.append(seconds(command))
    return SIZE_MIB / statistics.median(taken)


def drop_caches() -> None:
    subprocess.run(["sync"], check=True)
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def main() -> None:
    missing = netns.available() or (None if shutil.which("sshfs") else "sshfs is missing (apt-get install sshfs)")
    if missing:
        sys.exit(missing)
    user = User.create(Path(tempfile.mkdtemp(prefix="bench-key-")))
    lab = Lab.create()
    forwarding = Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()
    try:
        head, worker = netns.NetnsHost.create("bhead"), netns.NetnsHost.create("bw1")
        for host in (head, worker):
            host.start_sshd(Path(tempfile.mkdtemp(prefix=f"bench-sshd-{host.name}-")))
        subprocess.run(["sysctl", "-qw", "net.ipv4.ip_forward=1"], check=True)
        for host in (head, worker):
            host.exec("ip", "route", "add", f"{netns.SUBNET}.0.0/16", "via", host.gateway)
        lab.write_hosts(
            {
                "head": ssh_profile(user, head, address=head.address, cluster={"hosts": [worker.address]}),
                "w1": ssh_profile(user, worker, address=worker.address),
            }
        )
        folder = f"{user.home}/{MOUNT[2:]}"
        subprocess.run(["mkdir", "-p", folder], check=True)
        subprocess.run(["chown", f"{user.name}:{user.name}", folder], check=True)
        tmpfs = ["mount", "-t", "tmpfs", "-o", f"uid={user.uid},mode=0755,size={SIZE_MIB + 64}m", "tmpfs", folder]
        subprocess.run(["nsenter", "-t", str(head.sshd.pid), "-m", *tmpfs], check=True)
        data = f"{folder}/data.bin"
        subprocess.run(as_user(user, head.sshd.pid, f"head -c {SIZE_MIB}M /dev/urandom > {data}"), check=True)

        config = load(lab.hosts)
        profile = dataclasses.replace(config.profile("head"), data=DataSpec(size=1, mount=MOUNT))
        ssh = SshHome(lab.ssh_dir)
        hosts = SshHost(profile, head.address, ssh), [SshHost(config.profile("w1"), worker.address, ssh)]
        print("\n".join(cluster_data.ensure(profile, ssh, *hosts)))

        mounted = median_rate(as_user(user, worker.sshd.pid, f"cat {data} > /dev/null", network=True), drop_caches)
        plain = [
            "ip", "netns", "exec", worker.namespace, "ssh", "-i", str(user.key), "-o", "IdentitiesOnly=yes",
            "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "LogLevel=ERROR", f"{user.name}@{head.address}", f"cat {data}",
        ]  # fmt: skip
        over_ssh = median_rate(plain)
        local = median_rate(as_user(user, head.sshd.pid, f"cat {data} > /dev/null"))
        print(f"read {SIZE_MIB} MiB on the worker, median of {RUNS} (loopback namespaces, one machine's CPUs):")
        print(f"  through labvm's sshfs mount (cold):  {mounted:8.1f} MiB/s")
        print(f"  `ssh head cat` over plain OpenSSH:    {over_ssh:8.1f} MiB/s")
        print(f"  local read on the head (tmpfs):       {local:8.1f} MiB/s")
        print(f"  ratio mount / ssh cat: {mounted / over_ssh:.2f}   mount / local: {mounted / local:.3f}")
        cluster_data.unmount(profile, hosts[1])
        cluster_data.forget(profile, hosts[0])
    finally:
        netns.remove_all()
        subprocess.run(["sysctl", "-qw", f"net.ipv4.ip_forward={forwarding}"], check=True)
        shutil.rmtree(lab.directory, ignore_errors=True)
        user.remove()


if __name__ == "__main__":
    main()
