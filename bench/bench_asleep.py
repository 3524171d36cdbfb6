"""The asleep page's costs, as ratios against baselines measured in the same run.

    sudo .venv/bin/python bench/bench_asleep.py   (root: it creates a throwaway user + sshd)

1. Click to lab: from a profile asleep (Jupyter stopped on the host, the keeper serving the asleep
   page), Start on the page (POST /.labvm/start, as the button does) until an authorised /api/status
   answers through the same local port, against `inv up` from the same state (target <= 1.1).
   The "VM" is a loopback sshd: what is measured is labvm's own work around the cloud's start,
   which takes the same time either way.
2. The keeper while asleep: its RSS against an idle Python interpreter's, and its CPU seconds per
   hour, measured over two and a half minutes (psutil).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE.parent))

import psutil  # noqa: E402

from realhost import Lab, Sshd, User, http_status, put_to_sleep, ssh_profile, url_of  # noqa: E402

LOOPBACK = urllib.request.build_opener(urllib.request.ProxyHandler({}))
CPU_WINDOW = 150  # seconds the asleep keeper is watched: two of its once-a-minute looks at hosts.yml


def report(name: str, ours: float, base: float, unit: str, target: str) -> None:
    print(f"{name:<34} labvm {ours:8.3f} {unit:<5} baseline {base:8.3f} {unit:<5} ratio {ours / base:5.2f}  ({target})")


def answers(port: int, token: str) -> bool:
    return http_status(f"http://127.0.0.1:{port}/api/status", token) == 200


def click_to_lab(lab: Lab, port: int) -> float:
    """What the page's button and script do in the user's browser: POST /.labvm/start with the
    browser's proof, then read /.labvm/progress until the keeper says the lab is ready; seconds
    until an authorised answer on the port."""
    proof = (lab.ssh_dir / "labvm" / "run" / "vm.proof").read_text()
    start = time.perf_counter()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/.labvm/start",
        data=json.dumps({"proof": proof}).encode(),
        headers={"Content-Type": "application/json", "Origin": f"http://127.0.0.1:{port}"},
        method="POST",
    )
    LOOPBACK.open(request, timeout=10).close()
    token = ""
    while True:
        progress = urllib.request.Request(f"http://127.0.0.1:{port}/.labvm/progress", headers={"X-Labvm-Proof": proof})
        with LOOPBACK.open(progress, timeout=5) as response:
            said = json.loads(response.read())
        if said.get("state") == "failed":
            raise RuntimeError(f"the start failed: {said}")
        token = (said.get("url") or "").partition("token=")[2] or token
        if said.get("state") == "ready" and answers(port, token):
            return time.perf_counter() - start
        time.sleep(0.05)


def bench_click(lab: Lab, rounds: int = 3) -> None:
    clicks, ups = [], []
    for _ in range(rounds):
        port = int(put_to_sleep(lab, "vm", "stopped for the benchmark")["local_port"])
        clicks.append(click_to_lab(lab, port))
        put_to_sleep(lab, "vm", "stopped for the benchmark")
        start = time.perf_counter()
        url = url_of(lab.inv("up", "--host", "vm", "--no-browser").output)
        ups.append(time.perf_counter() - start)
        assert f"127.0.0.1:{port}/" in url
    report(
        "Start on the page -> lab answers",
        statistics.median(clicks),
        statistics.median(ups),
        "s",
        "vs `inv up` from the same state; target <= 1.1",
    )


def bench_keeper_asleep(lab: Lab) -> None:
    put_to_sleep(lab, "vm", "stopped for the benchmark")
    keeper = psutil.Process(lab.tunnel_record("vm")["keeper_pid"])
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
    try:
        time.sleep(1)  # the interpreter's start-up done
        baseline = psutil.Process(idle.pid).memory_info().rss / 1e6
        before = sum(keeper.cpu_times()[:2])
        time.sleep(CPU_WINDOW)  # the quantity measured is what the keeper does meanwhile
        cpu_per_hour = (sum(keeper.cpu_times()[:2]) - before) * 3600 / CPU_WINDOW
        report("asleep keeper RSS", keeper.memory_info().rss / 1e6, baseline, "MB", "vs an idle python -c sleep")
        print(f"{'asleep keeper CPU':<34} labvm {cpu_per_hour:8.3f} s/h   (over {CPU_WINDOW} s)")
    finally:
        idle.kill()
        idle.wait()


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("bench_asleep.py creates a throwaway user and sshd: run it as root")
    print(f"labvm asleep-page benchmarks, {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    user = User.create(Path(tempfile.mkdtemp()))
    sshd = Sshd(Path(tempfile.mkdtemp()) / "sshd")
    lab = Lab.create()
    try:
        lab.write_hosts({"vm": ssh_profile(user, sshd)})
        lab.inv("up", "--host", "vm", "--no-browser", timeout=900)
        bench_click(lab)
        bench_keeper_asleep(lab)
    finally:
        lab.inv("tunnel", "--host", "vm", "--stop", check=False)
        lab.inv("down", "--host", "vm", check=False)
        shutil.rmtree(lab.directory, ignore_errors=True)
        sshd.stop()
        user.remove()


if __name__ == "__main__":
    main()
