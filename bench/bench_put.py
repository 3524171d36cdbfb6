"""`inv put` of 1 GiB against a plain `rsync -a` of the same file over the same ssh (issue 29).

    sudo .venv/bin/python bench/bench_put.py            (root: a throwaway user and sshd on loopback)
    sudo .venv/bin/python bench/bench_put.py --delay-ms 50

The file is 1 GiB of random bytes (rsync's delta and ssh's compression gain nothing), made once in a
temporary folder.  Each round sends it to a folder the VM does not have yet, so both copy every byte;
labvm's put also makes its dry run (the listing, and the conflicts) and asks the VM's free space
first, and draws its progress line from rsync's --info=progress2.  Target: <= 1.1.

--delay-ms: the VM's sshd behind bench_labvm.SlowLink (each byte held half the round trip each way;
this kernel has no netem for a namespace), as a cloud region is from a laptop.
"""

from __future__ import annotations

import argparse
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

from bench_labvm import SlowLink, report, timed  # noqa: E402
from realhost import INV, Lab, Sshd, User, ssh_profile  # noqa: E402

SIZE = 1 << 30


def random_file(folder: Path) -> Path:
    """1 GiB of random bytes, written once in 64 MiB pieces."""
    path = folder / "dataset.bin"
    with path.open("wb") as out:
        for _ in range(SIZE // (64 << 20)):
            out.write(os.urandom(64 << 20))
    return path


def bench_put(user: User, lab: Lab, source: Path, rounds: int, where: str, tunnel: str = "") -> float:
    """Both copies, interleaved, each round to folders the VM does not have."""
    plain = ["rsync", "-a", "-e", f"ssh -F {lab.ssh_dir / 'config'}", str(source), "labvm-vm:bench-plain/"]
    ours = [*INV, "put", str(source), "--remote", "~/bench-put", "--host", "vm"]
    env = {k: v for k, v in lab.env.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run([*INV, "keys", "--host", "vm"], env=env, check=True, capture_output=True)  # not timed
    base_times, our_times = [], []
    for round_ in range(rounds):  # interleaved, each first in turn: the machine's load weighs on both alike
        for folder in ("bench-plain", "bench-put"):
            shutil.rmtree(user.home / folder, ignore_errors=True)
        for which in ("plain", "ours") if round_ % 2 == 0 else ("ours", "plain"):
            os.sync()  # the other's gigabyte written out first: each run starts with no dirty pages to flush
            if which == "plain":
                base_times.append(timed(plain))
            else:
                our_times.append(timed(ours, env=env))
        assert (user.home / "bench-put" / source.name).stat().st_size == SIZE, "the put did not arrive whole"
    base, mine = statistics.median(base_times), statistics.median(our_times)
    report(f"inv put 1 GiB{where}{tunnel}", mine, base, "s", "target <= 1.1")
    print(f"  rates: labvm {SIZE / mine / 1e6:.0f} MB/s, rsync -a {SIZE / base / 1e6:.0f} MB/s; rounds {rounds}")
    return base


def bench_start_up(lab: Lab, base: float) -> None:
    """The floor under labvm's figure: Python, invoke and tasks.py starting, before any SSH."""
    env = {k: v for k, v in lab.env.items() if k != "PYTHONDONTWRITEBYTECODE"}
    startup = statistics.median(timed([*INV, "--list"], env=env) for _ in range(3))
    report("  of which start-up (inv --list)", startup, base, "s", "not a target")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delay-ms", type=float, default=0, help="round trip added to the VM's sshd")
    parser.add_argument("--rounds", type=int, default=4)
    arguments = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_put.py creates a throwaway user and sshd: run it as root")
    print(f"inv put benchmark, {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    scratch = Path(tempfile.mkdtemp(prefix="labvm-bench-put-"))
    user = User.create(scratch)
    sshd = Sshd(scratch / "sshd")
    lab = Lab.create()
    try:
        started = time.monotonic()
        source = random_file(scratch)
        print(f"  1 GiB of random bytes made in {time.monotonic() - started:.1f}s")
        port, where = sshd.port, ", loopback"
        if arguments.delay_ms:
            port, where = SlowLink(sshd.port, arguments.delay_ms / 2000).port, f", {arguments.delay_ms:g} ms round trip"
        lab.write_hosts({"vm": ssh_profile(user, sshd, port=port)})
        base = bench_put(user, lab, source, arguments.rounds, where)
        # After `inv up` the tunnel's keeper holds a login: the put's dry run, df and rsync ride it.
        lab.inv("tunnel", "--host", "vm")
        try:
            bench_put(user, lab, source, arguments.rounds, where, ", tunnel up")
        finally:
            lab.inv("tunnel", "--host", "vm", "--stop")
        bench_start_up(lab, base)
    finally:
        sshd.stop()
        user.remove()
        shutil.rmtree(lab.directory, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
