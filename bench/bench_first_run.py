"""A fresh clone's first `bin/inv up` on the built-in local profile, to the URL answering (issue 28, C2: ≤ 20 s on
2 cores), and bin/bootstrap's install against the pip install it replaced, measured in the same run.

    .venv/bin/python bench/bench_first_run.py [--rounds 2]

Each round copies the repository's tracked files into a new folder (as `git clone` leaves them), with HOME in a
new folder too (no ~/.labvm, no key), and times:
1. `bin/bootstrap` (venv, uv, labvm and what hosts.yml's profiles need: nothing more for `local`) against the
   install before it: `python3 -m venv` and `pip install -e '.[aws,openstack]'` in a second copy;
2. then `bin/inv up` in the first copy until it prints the URL (uv builds ~/.labvm/env, JupyterLab starts in
   tmux and answers), and the sum of both: the newcomer's wait.
Downloads come from this machine's package caches as a second clone's would (pip's and uv's caches are the
user's, kept between clones); the first round warms them and is shown apart.  `inv down` and
`inv tunnel --stop` end each round.  Nothing is asserted; the figures are printed.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def copy_of_checkout(target: Path) -> None:
    """The tracked files, as a clone has them."""
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, tracked.decode().split("\0")):
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target / name)


def timed(command: list[str], folder: Path, env: dict) -> float:
    started = time.monotonic()
    subprocess.run(command, cwd=folder, env=env, check=True, stdin=subprocess.DEVNULL, capture_output=True)
    return time.monotonic() - started


def one_round(scratch: Path) -> dict[str, float]:
    new, old, home = scratch / "clone", scratch / "clone-pip", scratch / "home"
    for folder in (new, old, home):
        folder.mkdir()
    copy_of_checkout(new)
    copy_of_checkout(old)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LABVM_", "VIRTUAL_ENV"))}
    env.update(HOME=str(home), XDG_CACHE_HOME=os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache")))
    figures = {
        "pip install (before)": timed(
            ["sh", "-c", "python3 -m venv .venv && .venv/bin/pip install -q -e '.[aws,openstack]'"], old, env
        ),
        "bin/bootstrap": timed(["bin/bootstrap"], new, env),
    }
    figures["bin/inv up, to the URL"] = timed(["bin/inv", "up"], new, env)
    figures["first run, in all"] = figures["bin/bootstrap"] + figures["bin/inv up, to the URL"]
    subprocess.run(["bin/inv", "down"], cwd=new, env=env, capture_output=True, check=False)
    subprocess.run(["bin/inv", "tunnel", "--stop"], cwd=new, env=env, capture_output=True, check=False)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="rounds after the one that warms the caches")
    rounds = parser.parse_args().rounds
    results = []
    for number in range(rounds + 1):
        with tempfile.TemporaryDirectory(prefix="labvm-first-run-") as scratch:
            figures = one_round(Path(scratch))
        print(
            ("warm-up: " if number == 0 else f"round {number}: ")
            + ", ".join(f"{k} {v:.1f} s" for k, v in figures.items())
        )
        if number:
            results.append(figures)
    print(f"\nmedian of {rounds} round(s), {os.cpu_count()} cores:")
    for key in results[0]:
        print(f"  {key:28} {statistics.median(r[key] for r in results):6.1f} s")
    before, now = (statistics.median(r[k] for r in results) for k in ("pip install (before)", "bin/bootstrap"))
    print(f"  bin/bootstrap / pip install before: {now / before:.2f}x (goal for the whole first run: 20 s)")


if __name__ == "__main__":
    main()
