"""labvm's speed, as ratios against baselines measured in the same run (not timed tests).

    sudo .venv/bin/python bench/bench_labvm.py        (root: it creates a throwaway user + sshd)
    sudo .venv/bin/python bench/bench_labvm.py sync   (only 5., with rsync and with the fallback)
    sudo .venv/bin/python bench/bench_labvm.py tunnel (only 4.)
    sudo .venv/bin/python bench/bench_labvm.py up     (only 2. and 3.)

1. `inv --list` against an empty invoke collection (no cloud SDK on the start-up path).
2. `inv up` on a prepared host (env installed, nothing running) to the first authorised
   response, against the seeds' commands by hand: ssh + tmux jupyter, ssh -f -N -L, poll.
3. `inv up` again when everything is up: seconds and SSH connections (counted in sshd's log).
4. Throughput through labvm's tunnel against a plain `ssh -N -L` to the same server, and the time
   of a small request (kept-alive, and on a new connection each; an authorised /api/status of a
   real Jupyter): the keeper's gate relays every connection to its ssh's unix-socket forward.
5. `inv sync` of an unchanged tree of 1,000 notebooks against the seed's plain
   `rsync -az --include='*.ipynb' --exclude='*'` of the same tree (target <= 1.2, one SSH
   connection), and the same sync with rsync hidden from the laptop's PATH (the fallback);
   both again with the tunnel up (after `inv up`), where the sync rides the keeper's login.
   Then both again with the VM at a 50 ms round trip, as a cloud region is from a laptop
   (loopback has none; this kernel has no netem, so a relay holds each byte 25 ms each way):
   labvm's fixed start-up weighs there what it weighs in use.
"""

from __future__ import annotations

import os
import queue
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE.parent))

from realhost import INV, Lab, Sshd, User, free_port, http_status, path_without, ssh_profile  # noqa: E402


def timed(command, **kwargs) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, **kwargs)
    return time.perf_counter() - start


def report(name: str, ours: float, base: float, unit: str, target: str) -> None:
    print(f"{name:<34} labvm {ours:8.3f} {unit:<5} baseline {base:8.3f} {unit:<5} ratio {ours / base:5.2f}  ({target})")


def bench_list(rounds: int = 10) -> None:
    empty = Path(tempfile.mkdtemp())
    (empty / "tasks.py").write_text("from invoke import task\n\n@task\ndef nothing(c):\n    pass\n")
    ours = statistics.median(timed([*INV, "--list"]) for _ in range(rounds))
    base = statistics.median(
        timed([sys.executable, "-m", "invoke", "--search-root", str(empty), "--list"]) for _ in range(rounds)
    )
    report("inv --list", ours, base, "s", "target <= 1.3")
    shutil.rmtree(empty)


def wait_authorised(port: int, token: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while http_status(f"http://127.0.0.1:{port}/api/status", token) != 200:
        if time.monotonic() > deadline:
            raise RuntimeError("Jupyter never answered")
        time.sleep(0.05)


def by_hand(user: User, sshd: Sshd, remote_port: int) -> float:
    """The seeds' recipe: jupyter in tmux over ssh, a tunnel with ssh -f -N -L, the browser."""
    ssh = [
        "ssh",
        "-F",
        "/dev/null",
        "-i",
        str(user.key),
        "-p",
        str(sshd.port),
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        f"{user.name}@127.0.0.1",
    ]
    token, local_port = "handtoken", free_port()
    start = time.perf_counter()
    subprocess.run(
        [
            *ssh,
            f"tmux new-session -d -s hand 'JUPYTER_TOKEN={token} ~/.labvm/env/bin/jupyter lab "
            f"--no-browser --ServerApp.ip=127.0.0.1 --port={remote_port}'",
        ],
        check=True,
    )
    subprocess.run(
        [*ssh[:1], "-f", "-N", "-L", f"127.0.0.1:{local_port}:127.0.0.1:{remote_port}", *ssh[1:]],
        check=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_authorised(local_port, token)
    elapsed = time.perf_counter() - start
    subprocess.run([*ssh, "tmux kill-session -t hand"], check=True)
    subprocess.run(["pkill", "-f", f"127.0.0.1:{local_port}:127.0.0.1"], check=False)
    while http_status(f"http://127.0.0.1:{local_port}/api/status") is not None:
        time.sleep(0.05)
    for _ in range(100):  # until the hand-started Jupyter has let go of its port
        if not user.processes("jupyter-lab"):
            break
        time.sleep(0.05)
    return elapsed


def bench_up(user: User, sshd: Sshd, rounds: int = 7) -> Lab:
    lab = Lab.create()
    profile = ssh_profile(user, sshd)
    lab.write_hosts({"vm": profile})
    lab.inv("setup", "--host", "vm")  # prepared: keys, env, config
    ours, base = [], []
    for _ in range(rounds):
        base.append(by_hand(user, sshd, profile["notebook"]["port"]))
        start = time.perf_counter()
        lab.inv("up", "--host", "vm", "--no-browser")  # returns after an authorised response
        ours.append(time.perf_counter() - start)
        lab.inv("down", "--host", "vm")
    report("inv up (prepared host)", statistics.median(ours), statistics.median(base), "s", "target <= 1.3")

    lab.inv("up", "--host", "vm", "--no-browser")
    again, connections = [], []
    for _ in range(5):
        before = sshd.log.read_text().count("Accepted publickey")
        start = time.perf_counter()
        lab.inv("up", "--host", "vm", "--no-browser")
        again.append(time.perf_counter() - start)
        connections.append(sshd.log.read_text().count("Accepted publickey") - before)
    print(
        f"{'inv up again (all up)':<34} labvm {statistics.median(again):8.3f} s     "
        f"SSH connections per run {max(connections)}  (target <= 2 s, 1 connection)"
    )
    return lab


class Blaster:
    """An HTTP/1.1 server on "the host", keep-alive: GET /big sends SIZE bytes, any other GET two."""

    SIZE = 512 * 1024 * 1024

    def __init__(self):
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            client, _ = self.server.accept()
            threading.Thread(target=self.serve, args=(client,), daemon=True).start()

    def serve(self, client: socket.socket) -> None:
        chunk = b"\0" * (1 << 20)
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with client, client.makefile("rb") as reader:
            try:
                while request := reader.readline():
                    while reader.readline() not in (b"\r\n", b""):
                        pass
                    if request.startswith(b"GET /big "):
                        client.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % self.SIZE)
                        for _ in range(self.SIZE // len(chunk)):
                            client.sendall(chunk)
                    else:
                        client.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            except (BrokenPipeError, ConnectionResetError):
                pass


def download_rate(port: int) -> float:
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"GET /big HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        received, start = 0, time.perf_counter()
        while chunk := s.recv(1 << 20):
            received += len(chunk)
            if received >= Blaster.SIZE:
                break
        return received / (time.perf_counter() - start) / 1e6


def request_time(port: int, path: str = "/small", headers: str = "", count: int = 1000, fresh: bool = False) -> float:
    """Median seconds of one small GET and its whole answer, on one kept-alive connection (as a
    browser's tab polls) or, `fresh`, a new connection each time."""
    import http.client

    def connect() -> http.client.HTTPConnection:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.connect()
        connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return connection

    extra = dict(line.split(": ", 1) for line in headers.splitlines() if line)
    connection, times = connect(), []
    for _ in range(count):
        start = time.perf_counter()
        if fresh:
            connection.close()
            connection = connect()
        connection.request("GET", path, headers=extra)
        connection.getresponse().read()
        times.append(time.perf_counter() - start)
    connection.close()
    return statistics.median(times)


def plain_forward(
    user: User, sshd: Sshd, remote_port: int, ssh_port: int | None = None, forward: str | None = None
) -> tuple[subprocess.Popen, int]:
    """The seeds' `ssh -N -L` to the same sshd (at ssh_port: through a SlowLink); forward: a unix
    socket's path to forward from instead of a loopback port (then the port is 0)."""
    from labvm.gate import port_free

    port = 0 if forward else free_port()
    plain = subprocess.Popen(
        [
            "ssh",
            "-F",
            "/dev/null",
            "-N",
            "-i",
            str(user.key),
            "-p",
            str(ssh_port or sshd.port),
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "StreamLocalBindUnlink=yes",
            "-L",
            f"{forward or f'127.0.0.1:{port}'}:127.0.0.1:{remote_port}",
            f"{user.name}@127.0.0.1",
        ],
        stdin=subprocess.DEVNULL,
    )
    while (not Path(forward).exists() if forward else port_free(port)) and plain.poll() is None:  # until ssh listens
        time.sleep(0.05)
    return plain, port


def c_relay(user: User, sshd: Sshd, remote_port: int) -> tuple[list[subprocess.Popen], int] | None:
    """For reference, where socat is installed: the same one hop more as the keeper's gate (a
    loopback port relayed to ssh's unix-socket forward), in C: `socat TCP-LISTEN UNIX-CONNECT`."""
    if not shutil.which("socat"):
        return None
    forward = f"{tempfile.mkdtemp()}/f.sock"
    plain, _ = plain_forward(user, sshd, remote_port, forward=forward)
    port = free_port()
    socat = subprocess.Popen(
        ["socat", f"TCP-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr,nodelay", f"UNIX-CONNECT:{forward}"],
        stdin=subprocess.DEVNULL,
    )
    from realhost import wait_for_port

    wait_for_port(port)
    return [plain, socat], port


def bench_tunnel(user: User, sshd: Sshd, lab: Lab, rounds: int = 3) -> None:
    """The kept tunnel (the keeper's gate, relaying to its ssh's unix-socket forward) against a
    plain `ssh -N -L`: throughput, then small requests as a tab makes them; a relay in C beside it
    shows what one hop more costs whatever does it."""
    os.environ["LABVM_SSH_DIR"] = str(lab.ssh_dir)
    from labvm import config
    from labvm.sshconfig import SshHome
    from labvm.tunnel import Tunnels

    blaster = Blaster()
    profile = config.load(lab.hosts).profile("vm")
    tunnels = Tunnels(SshHome.current())
    tunnels.close(profile)
    ours_port = tunnels.open(profile, blaster.port).local_port
    plain, plain_port = plain_forward(user, sshd, blaster.port)
    relayed = c_relay(user, sshd, blaster.port)
    ours, base = [], []
    for _ in range(rounds):
        base.append(download_rate(plain_port))
        ours.append(download_rate(ours_port))
    report("tunnel throughput", statistics.median(ours), statistics.median(base), "MB/s", "target >= 0.9")
    for fresh in (False, True):
        count = 300 if fresh else 1000
        ours, base, in_c = [], [], []
        for _ in range(rounds):
            base.append(request_time(plain_port, fresh=fresh, count=count))
            ours.append(request_time(ours_port, fresh=fresh, count=count))
            if relayed:
                in_c.append(request_time(relayed[1], fresh=fresh, count=count))
        name = "small request, new connection" if fresh else "small request, kept-alive"
        report(name, statistics.median(ours) * 1e3, statistics.median(base) * 1e3, "ms", "target <= 1.1")
        if relayed:
            report(
                "  the same through socat (C)",
                statistics.median(in_c) * 1e3,
                statistics.median(base) * 1e3,
                "ms",
                "reference: one hop more",
            )
    plain.terminate()
    for process in relayed[0] if relayed else []:
        process.terminate()
    tunnels.close(profile)


def bench_tunnel_far(user: User, sshd: Sshd, rtt: float = 0.05, rounds: int = 3) -> None:
    """4. again, the VM's sshd behind a SlowLink: a small request as a tab makes it from a laptop."""
    link = SlowLink(sshd.port, rtt / 2)
    lab = Lab.create()
    lab.write_hosts({"vm": ssh_profile(user, sshd, port=link.port)})
    os.environ["LABVM_SSH_DIR"] = str(lab.ssh_dir)
    from labvm import config
    from labvm.sshconfig import SshHome
    from labvm.tunnel import Tunnels

    blaster = Blaster()
    profile = config.load(lab.hosts).profile("vm")
    lab.inv("keys", "--host", "vm")
    tunnels = Tunnels(SshHome.current())
    ours_port = tunnels.open(profile, blaster.port).local_port
    plain, plain_port = plain_forward(user, sshd, blaster.port, ssh_port=link.port)
    for fresh in (False, True):
        ours, base = [], []
        for _ in range(rounds):
            base.append(request_time(plain_port, fresh=fresh, count=20))
            ours.append(request_time(ours_port, fresh=fresh, count=20))
        name = f"small request, {'new connection' if fresh else 'kept-alive'}, {rtt * 1000:.0f} ms"
        report(name, statistics.median(ours) * 1e3, statistics.median(base) * 1e3, "ms", "target <= 1.1")
    plain.terminate()
    tunnels.close(profile)
    shutil.rmtree(lab.directory, ignore_errors=True)


def bench_jupyter_requests(user: User, sshd: Sshd, lab: Lab, url: str, rounds: int = 3) -> None:
    """An authorised /api/status (what JupyterLab's tab asks over and over) through the kept
    tunnel, against a plain `ssh -N -L` to the same Jupyter."""
    base_url, token = url.split("/lab?token=")
    ours_port = int(base_url.rsplit(":", 1)[1])
    plain, plain_port = plain_forward(user, sshd, lab.tunnel_record("vm")["remote_port"])
    headers = f"Authorization: token {token}"
    ours, base = [], []
    for _ in range(rounds):
        base.append(request_time(plain_port, "/api/status", headers, count=300))
        ours.append(request_time(ours_port, "/api/status", headers, count=300))
    plain.terminate()
    report(
        "Jupyter /api/status, kept-alive",
        statistics.median(ours) * 1e3,
        statistics.median(base) * 1e3,
        "ms",
        "target <= 1.1",
    )


class SlowLink:
    """A loopback port relayed to `port` with every byte held `delay` s each way: a laptop's round
    trip to a cloud region, where the kernel has no netem."""

    def __init__(self, port: int, delay: float):
        self.target, self.delay = port, delay
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            client, _ = self.server.accept()
            upstream = socket.create_connection(("127.0.0.1", self.target))
            for source, sink in ((client, upstream), (upstream, client)):
                held: queue.Queue = queue.Queue()
                threading.Thread(target=self._hold, args=(source, held), daemon=True).start()
                threading.Thread(target=self._deliver, args=(sink, held), daemon=True).start()

    def _hold(self, source: socket.socket, held: queue.Queue) -> None:
        try:
            while data := source.recv(65536):
                held.put((time.monotonic() + self.delay, data))
        except OSError:
            pass
        held.put((time.monotonic() + self.delay, b""))

    @staticmethod
    def _deliver(sink: socket.socket, held: queue.Queue) -> None:
        while True:
            due, data = held.get()
            time.sleep(max(0.0, due - time.monotonic()))
            try:
                if not data:
                    sink.shutdown(socket.SHUT_WR)
                    return
                sink.sendall(data)
            except OSError:
                return


def bench_sync(user: User, sshd: Sshd, lab: Lab, rounds: int = 5, where: str = "") -> None:
    workspace = user.home / "work"
    for i in range(1000):
        notebook = workspace / f"project{i // 100}" / f"analysis{i}.ipynb"
        notebook.parent.mkdir(parents=True, exist_ok=True)
        notebook.write_text('{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}\n' * 20)
    subprocess.run(["chown", "-R", f"{user.name}:{user.name}", str(workspace)], check=True)
    # A user's Python keeps compiled modules (__pycache__); PYTHONDONTWRITEBYTECODE, set on some
    # build machines, would make every run compile labvm again.  The first, full copy writes them.
    env = {k: v for k, v in lab.env.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run([*INV, "sync", "--host", "vm"], env=env, check=True, capture_output=True)
    plain_copy = Path(tempfile.mkdtemp())
    by_hand = [
        "rsync",
        "-az",
        "--include=*/",
        "--include=*.ipynb",
        "--exclude=*",
        "-e",
        f"ssh -F {lab.ssh_dir / 'config'}",
        "labvm-vm:work/",
        f"{plain_copy}/",
    ]
    subprocess.run(by_hand, check=True)
    base = statistics.median(timed(by_hand) for _ in range(rounds))
    hidden = Path(tempfile.mkdtemp())
    without_rsync = {**env, "PATH": path_without("rsync", hidden)}
    for name, run_env in (("inv sync", env), ("inv sync, no rsync here", without_rsync)):
        times, connections = [], []
        for _ in range(rounds):
            before = sshd.log.read_text().count("Accepted publickey")
            times.append(timed([*INV, "sync", "--host", "vm"], env=run_env))
            connections.append(sshd.log.read_text().count("Accepted publickey") - before)
        report(
            f"{name}, 1,000 unchanged .ipynb{where}",
            statistics.median(times),
            base,
            "s",
            f"target <= 1.2; SSH connections per run {max(connections)}",
        )
    # What a user has after `inv up`: the tunnel's keeper, whose login the sync (and the keeper's own
    # questions to the VM) ride: no handshake, no login in sshd's log.
    lab.inv("tunnel", "--host", "vm")
    try:
        for name, run_env in (("inv sync, tunnel up", env), ("inv sync, tunnel up, no rsync here", without_rsync)):
            before = sshd.log.read_text().count("Accepted publickey")
            times = [timed([*INV, "sync", "--host", "vm"], env=run_env) for _ in range(rounds)]
            logins = sshd.log.read_text().count("Accepted publickey") - before
            report(
                f"{name}{where}",
                statistics.median(times),
                base,
                "s",
                f"target <= 1.2; new SSH logins in {rounds} runs: {logins}",
            )
    finally:
        lab.inv("tunnel", "--host", "vm", "--stop")
    # The floor under both: Python, invoke and tasks.py starting, before any SSH (not a target).
    startup = statistics.median(timed([*INV, "--list"], env=env) for _ in range(rounds))
    report("  of which start-up (inv --list)", startup, base, "s", "the floor for the two lines above")
    shutil.rmtree(plain_copy)
    shutil.rmtree(hidden)


def bench_sync_far(user: User, sshd: Sshd, rtt: float = 0.05) -> None:
    """5. again, the VM's sshd behind a SlowLink."""
    link = SlowLink(sshd.port, rtt / 2)
    lab = Lab.create()
    lab.write_hosts({"vm": ssh_profile(user, sshd, port=link.port)})
    bench_sync(user, sshd, lab, where=f", {rtt * 1000:.0f} ms round trip")
    shutil.rmtree(lab.directory, ignore_errors=True)


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("bench_labvm.py creates a throwaway user and sshd: run it as root")
    only_sync, only_tunnel, only_up = (sys.argv[1:] == [part] for part in ("sync", "tunnel", "up"))
    print(f"labvm benchmarks, {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    if not (only_sync or only_tunnel or only_up):
        bench_list()
    key_dir = Path(tempfile.mkdtemp())
    user = User.create(key_dir)
    sshd = Sshd(Path(tempfile.mkdtemp()) / "sshd")
    try:
        if only_sync or only_tunnel:
            lab = Lab.create()
            lab.write_hosts({"vm": ssh_profile(user, sshd)})
            if only_sync:
                bench_sync(user, sshd, lab)
                bench_sync_far(user, sshd)
                return
            url = lab.inv("up", "--host", "vm", "--no-browser").stdout.split("JupyterLab is ready: ")[1].split()[0]
            bench_jupyter_requests(user, sshd, lab, url)
            bench_tunnel(user, sshd, lab)
            bench_tunnel_far(user, sshd)
            lab.inv("down", "--host", "vm")
            return
        lab = bench_up(user, sshd)
        if only_up:
            lab.inv("down", "--host", "vm")
            return
        url = lab.inv("up", "--host", "vm", "--no-browser").stdout.split("JupyterLab is ready: ")[1].split()[0]
        bench_jupyter_requests(user, sshd, lab, url)
        lab.inv("tunnel", "--host", "vm", "--stop")  # its keeper's own questions to the VM are no sync's
        bench_sync(user, sshd, lab)
        bench_sync_far(user, sshd)
        bench_tunnel(user, sshd, lab)
        bench_tunnel_far(user, sshd)
        lab.inv("down", "--host", "vm")
        shutil.rmtree(lab.directory, ignore_errors=True)
    finally:
        sshd.stop()
        user.remove()


if __name__ == "__main__":
    main()
