"""The way in on bad networks: the kept tunnel and `inv status`, as figures (nothing asserted).

    sudo .venv/bin/python bench/bench_network.py     (root: a throwaway user, sshd, a network namespace)

"The VM" is a network namespace with its own sshd (tests/netns.py), Jupyter running inside it.

1. Total loss of the VM's link for 60 s and for 180 s, while "a browser" keeps asking through
   the tunnel (a request a second, as JupyterLab's polls do): seconds from the network's return
   to an authorised answer through labvm's kept tunnel, beside a plain `ssh -N -L` (the seeds'
   recipe, no keep-alives) suffering the same loss.  Target: labvm <= 10 s.
2. `inv status` over 10 profiles, 3 of them unreachable (a silent port: it accepts TCP and never
   sends an SSH banner), against `inv status` of one unreachable profile.  Target: <= 1.5.
3. Throughput through the kept tunnel against a plain `ssh -N -L` to the same sshd.  Target: >= 0.9.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE.parent))

import netns  # noqa: E402
from bench_labvm import report  # noqa: E402
from realhost import INV, Lab, Sshd, User, free_port, ssh_profile  # noqa: E402

NO_TMUX = {"multiplexer": "nohup"}  # Jupyter must start inside the namespace's own session


def answers(port: int, token: str) -> bool:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/status", headers={"Authorization": f"token {token}"})
    try:
        with urllib.request.urlopen(request, timeout=1) as response:
            return response.status == 200
    except (OSError, urllib.error.URLError):
        return False


class Browser:
    """Asks through one local port every second, from now on; notes when it is answered again."""

    def __init__(self, port: int, token: str):
        self.port, self.token = port, token
        self.answered_at: float | None = None
        self.asking_since = time.monotonic()
        self.stop = threading.Event()
        threading.Thread(target=self.ask, daemon=True).start()

    def ask(self) -> None:
        while not self.stop.is_set():
            started = time.monotonic()
            ok = answers(self.port, self.token)
            if ok and started > self.asking_since and self.answered_at is None:
                self.answered_at = started
            self.stop.wait(max(0.0, 1 - (time.monotonic() - started)))

    def answered_after(self, moment: float, timeout: float) -> float | None:
        """Seconds from `moment` to the first answer to a request sent after it; None past timeout."""
        self.asking_since = moment
        self.answered_at = None
        deadline = moment + timeout
        while self.answered_at is None and time.monotonic() < deadline:
            time.sleep(0.1)
        return None if self.answered_at is None else self.answered_at - moment


def plain_tunnel(user: User, host: netns.NetnsHost, remote_port: int) -> tuple[subprocess.Popen, int]:
    port = free_port()
    ssh = subprocess.Popen(
        [
            "ssh",
            "-F",
            "/dev/null",
            "-N",
            "-i",
            str(user.key),
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "-L",
            f"127.0.0.1:{port}:127.0.0.1:{remote_port}",
            f"{user.name}@{host.address}",
        ],
        stdin=subprocess.DEVNULL,
    )
    return ssh, port


def bench_recovery(user: User, host: netns.NetnsHost, lab: Lab, url: str) -> None:
    base, token = url.split("/lab?token=")
    kept_port = int(re.search(r":(\d+)$", base).group(1))
    plain, plain_port = plain_tunnel(user, host, lab.tunnel_record("vm")["remote_port"])
    while not answers(plain_port, token):
        time.sleep(0.1)
    for seconds in (60, 180):
        kept, by_hand = Browser(kept_port, token), Browser(plain_port, token)
        host.drop_all()
        time.sleep(seconds)
        host.restore()
        back = time.monotonic()
        ours = kept.answered_after(back, timeout=300)
        base_time = by_hand.answered_after(back, timeout=300)
        kept.stop.set()
        by_hand.stop.set()
        print(
            f"{f'network back after {seconds}s loss':<34} labvm {_seconds(ours)} plain ssh -L "
            f"{_seconds(base_time)} (target labvm <= 10 s)"
        )
    plain.terminate()
    plain.wait()


def _seconds(value: float | None) -> str:
    return f"{value:8.1f} s    " if value is not None else "   never (300 s)"


class SilentPort:
    """Accepts TCP connections (the kernel's backlog does) and never sends a byte."""

    def __init__(self):
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(64)
        self.port = self.socket.getsockname()[1]


def bench_status(user: User, sshd: Sshd, lab: Lab, rounds: int = 2) -> None:
    silent = SilentPort()
    profiles = {f"up{i}": ssh_profile(user, sshd, notebook=NO_TMUX) for i in range(7)}
    profiles.update({f"silent{i}": ssh_profile(user, sshd, port=silent.port) for i in range(3)})
    lab.write_hosts(profiles)

    def status(*host: str) -> float:
        start = time.perf_counter()
        lab.inv("status", *host, check=False)
        return time.perf_counter() - start

    all_ten = statistics.median(status() for _ in range(rounds))
    one = statistics.median(status("--host", "silent0") for _ in range(rounds))
    report("inv status, 10 profiles, 3 silent", all_ten, one, "s", "baseline: one silent profile; target <= 1.5")
    silent.socket.close()


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("bench_network.py creates a throwaway user, sshd and network namespace: run it as root")
    missing = netns.available()
    if missing:
        sys.exit(f"bench_network.py: {missing}")
    print(f"labvm network benchmarks, {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    user = User.create(Path(tempfile.mkdtemp()))
    sshd = Sshd(Path(tempfile.mkdtemp()) / "sshd")
    lab = Lab.create()
    try:
        host = netns.NetnsHost.create("bench")
        host.start_sshd(Path(tempfile.mkdtemp()) / "netns-sshd")
        lab.write_hosts(
            {
                "loop": ssh_profile(user, sshd, notebook=NO_TMUX),
                "vm": ssh_profile(user, host, address=host.address, notebook=NO_TMUX),
            }
        )
        # The namespace has no way to PyPI: the env is built over the loopback sshd (same home).
        lab.inv("setup", "--host", "loop")
        up = lab.inv("up", "--host", "vm", "--no-browser")
        bench_recovery(user, host, lab, re.search(r"JupyterLab is ready: (\S+)", up.stdout).group(1))
        lab.inv("down", "--host", "vm", check=False)
        bench_status(user, sshd, lab)
    finally:
        subprocess.run([*INV, "down", "--host", "vm"], env=lab.env, cwd=lab.directory, capture_output=True)
        netns.remove_all()
        sshd.stop()
        user.remove()
        shutil.rmtree(lab.directory, ignore_errors=True)


if __name__ == "__main__":
    main()
