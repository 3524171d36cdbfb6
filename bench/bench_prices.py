"""What a price endpoint that never answers costs a command, as a ratio against the same command with no price
lookup at all, both measured in the same run.

    sudo .venv/bin/python bench/bench_prices.py   (root: it creates a throwaway user + sshd)

`inv status --host aws` of a running instance (moto's EC2; the "VM" a loopback sshd) with the AWS Price List
at a loopback socket that accepts and never answers (a captive portal, a proxy, a firewall dropping what
follows the handshake), against the same profile with `price_per_hour:` in hosts.yml (no lookup).  The first
black-holed run waits labvm.prices.LOOKUP_SECONDS once and is shown apart; the ratio is of the medians of the
runs after it, interleaved with the baseline's (goal <= 1.05).  Before issue 28 every run waited 15 s.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE.parent))

import boto3  # noqa: E402

from aws_world import REGION, BlackHole, aws_env, moto_server, tagged  # noqa: E402
from realhost import Lab, Sshd, User, ssh_profile  # noqa: E402

from labvm import prices  # noqa: E402


def timed_status(lab: Lab) -> float:
    start = time.perf_counter()
    lab.inv("status", "--host", "aws")
    return time.perf_counter() - start


def bench_status(lab: Lab, profile: dict, rounds: int) -> None:
    """The first black-holed run, then `rounds` of each arm, interleaved so that load on the machine falls on both."""
    lab.write_hosts({"aws": profile})
    first = timed_status(lab)
    black_holed, baseline = [], []
    for _ in range(rounds):
        lab.write_hosts({"aws": profile})
        black_holed.append(timed_status(lab))
        lab.write_hosts({"aws": {**profile, "price_per_hour": 0.0208}})
        baseline.append(timed_status(lab))
    ours, base = statistics.median(black_holed), statistics.median(baseline)
    print(
        f"first run, black-holed price endpoint   {first:7.3f} s  (waits LOOKUP_SECONDS = {prices.LOOKUP_SECONDS:g} s once)"
    )
    print(
        f"`inv status`, black-holed vs no lookup  labvm {ours:7.3f} s  baseline {base:7.3f} s  "
        f"ratio {ours / base:5.2f}  (goal <= 1.05; medians of {rounds})"
    )


def main(rounds: int = 7) -> None:
    if os.geteuid() != 0:
        sys.exit("bench_prices.py creates a throwaway user and sshd: run it as root")
    print(f"labvm price-lookup benchmark, {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    user = User.create(Path(tempfile.mkdtemp()))
    sshd = Sshd(Path(tempfile.mkdtemp()) / "sshd")
    server, endpoint = moto_server()
    black_hole = BlackHole()
    lab = Lab.create()
    try:
        lab.extra_env.update(aws_env(endpoint), LABVM_OWNER="hedy", AWS_ENDPOINT_URL_PRICING=black_hole.endpoint)
        ec2 = boto3.client(
            "ec2",
            endpoint_url=endpoint,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        ami = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        ec2.run_instances(
            ImageId=ami, MinCount=1, MaxCount=1, InstanceType="t3.small", TagSpecifications=tagged("aws", "hedy")
        )
        profile = ssh_profile(user, sshd, provider="aws", region=REGION, instance_type="t3.small", image=ami)
        bench_status(lab, profile, rounds)
        print(f"connections the price endpoint took: {black_hole.connections}")
    finally:
        black_hole.close()
        shutil.rmtree(lab.directory, ignore_errors=True)
        server.stop()
        sshd.stop()
        user.remove()


if __name__ == "__main__":
    main()
