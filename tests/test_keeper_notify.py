"""What the tunnel's keeper does beside the tunnel, against a real "VM": a network namespace with
its own sshd and its own 127.0.0.1 (tests/netns.py).

- A warning a few minutes before the VM stops itself: the keeper asks the VM for its autostop
  report (scripts/autostop.py status, over a non-interactive ssh) and notifies through the
  system's `notify-send`, here a stand-in first on the keeper's PATH that records its arguments.
  Autostop is configured with the VM's own scripts and no crontab line, so no idle check runs
  but the test's own and nothing is ever stopped; the minutes the test cannot wait for are made
  by moving back the moment the VM recorded itself idle from, as tests/test_autostop.py does.
  The keeper asks right after it connects and when told `autostop` on its control socket; the
  test waits for the record to say a question asked after the change was answered.
- One forward only, also for a profile with a cluster: the Dask dashboard is in JupyterLab.

No pty login and no connection to a Jupyter port is ever opened: tests/test_autostop.py, running
beside this file, counts those on this machine.
"""

import json
import os
import shutil
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

import netns
from labvm.keeper import tell
from realhost import Lab, ssh_profile

PERIOD = 30 * 60


class Vm:
    def __init__(self, lab, user, host, tunnel_output):
        self.lab, self.user, self.host = lab, user, host
        self.tunnel_output = tunnel_output
        self.notified = lab.directory / "notified"
        self.state_file = user.home / ".labvm" / "autostop-state.json"

    def record(self) -> dict:
        return self.lab.tunnel_record("vm")

    def keeper_log(self) -> str:
        return (self.lab.ssh_dir / "labvm" / "run" / "vm.log").read_text()

    def notifications(self) -> list[list[str]]:
        lines = self.notified.read_text().splitlines() if self.notified.exists() else []
        return [line.split("\t")[:-1] for line in lines]

    def on_vm(self, command: str) -> str:
        """A command on the VM over plain, non-interactive ssh (no pty: no login to count)."""
        result = self.lab.ssh("labvm-vm", command)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def idle_for(self, seconds: int) -> None:
        """As if the VM had been idle this long: its report counts from then."""
        state = json.loads(self.state_file.read_text())
        state["idle_since"] = (datetime.now(timezone.utc) - timedelta(seconds=seconds)).isoformat()
        self.state_file.write_text(json.dumps(state))  # in place: the file stays the VM user's

    def ask_now(self) -> None:
        """`autostop`: the keeper asks the VM now; returns once a question asked after this call was answered."""
        before = datetime.now(timezone.utc)
        record = self.record()
        assert tell(record["control_port"], record["control_secret"], "autostop") == "ok"
        wait_until(
            lambda: datetime.fromisoformat(self.record().get("autostop_asked", "2000-01-01T00:00:00+00:00")) >= before,
            "the keeper to ask the VM about autostop",
            self,
        )


def wait_until(condition, what: str, vm: Vm, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout:.0f}s for {what}; keeper log: {vm.keeper_log()[-1500:]}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def vm(user, tmp_path_factory):
    missing = netns.available()
    if missing:
        pytest.skip(missing)
    lab = Lab.create()
    host = netns.NetnsHost.create("notify")
    try:
        host.start_sshd(tmp_path_factory.mktemp("notify-sshd"))
        tools = lab.directory / "bin"
        tools.mkdir()
        stand_in = tools / "notify-send"  # the system's tool, not labvm's: one line per call, tab-separated
        stand_in.write_text(
            f"#!/bin/sh\nfor a in \"$@\"; do printf '%s\\t' \"$a\"; done >> '{lab.directory}/notified'\n"
            f"echo >> '{lab.directory}/notified'\n"
        )
        stand_in.chmod(0o755)
        lab.extra_env["PATH"] = f"{tools}{os.pathsep}{os.environ['PATH']}"  # the keeper inherits it
        lab.write_hosts({"vm": ssh_profile(user, host, address=host.address, cluster={"threads": 1})})
        # This login was "the VM" of earlier modules too (a cloud profile's `up` sets autostop up):
        # this VM starts with none.
        user.shell('rm -f "$HOME"/.labvm/autostop*')
        tunnel = lab.inv("tunnel", "--host", "vm")
        yield Vm(lab, user, host, tunnel.output)
    finally:
        lab.inv("tunnel", "--host", "vm", "--stop", check=False)
        # The next module's VM is this same login: it starts, as a new VM does, with no autostop state.
        user.shell('rm -f "$HOME"/.labvm/autostop*')
        host.remove()
        shutil.rmtree(lab.directory, ignore_errors=True)


# -- the warning before an autostop ------------------------------------------------------------


def test_a_vm_without_autostop_is_one_log_line_and_the_tunnel_stays(vm):
    wait_until(lambda: "autostop_asked" in vm.record(), "the first question, right after connecting", vm)
    vm.ask_now()
    log = vm.keeper_log()
    assert log.count("autostop: labvm-vm has none (not set up there); asking again when the tunnel reconnects") == 1, (
        log
    )
    assert vm.record()["state"] == "up"
    assert vm.notifications() == []


def configure_autostop(vm: Vm, seconds: int) -> None:
    """What `autostop.sh apply` writes, without its crontab line: no idle check runs but the
    test's own; the load never counts, and the stop command does nothing."""
    vm.on_vm(
        f"LABVM_AUTOSTOP_IDLE={seconds} LABVM_AUTOSTOP_LOAD=1000 LABVM_PORT=1 LABVM_AUTOSTOP_COMMAND=true "
        f"python3 .labvm/scripts/autostop.py configure"
    )


def test_a_warning_once_per_idle_stretch_before_the_stop(vm):
    configure_autostop(vm, PERIOD)
    vm.on_vm("python3 .labvm/scripts/autostop.py check")  # what cron runs: the state of this boot
    vm.ask_now()
    assert vm.notifications() == []  # 30 minutes to go: nothing to say

    vm.idle_for(26 * 60)
    vm.ask_now()
    advice = "use Jupyter or `inv autostop --host vm --extend 1h`"
    assert vm.notifications() == [["labvm: vm", f"stops itself in 4m (idle 26m of 30m); {advice}"]]
    assert f"autostop: vm stops itself in 4m (idle 26m of 30m); {advice}" in vm.keeper_log()

    vm.idle_for(27 * 60)  # the same stretch, a minute on
    vm.ask_now()
    assert len(vm.notifications()) == 1

    vm.idle_for(0)  # in use, then idle again: a new stretch
    vm.ask_now()
    vm.idle_for(28 * 60)
    vm.ask_now()
    assert vm.notifications()[1:] == [["labvm: vm", f"stops itself in 2m (idle 28m of 30m); {advice}"]]
    assert vm.record()["state"] == "up"
    configure_autostop(vm, 0)  # off: the keepers the next tests start have nothing to say


# -- no second forward: the Dask dashboard is in JupyterLab ------------------------------------


def test_a_profile_with_a_cluster_has_no_dashboard_forward(vm):
    """The dashboard is a unix socket on the head behind Jupyter's proxy (labvm.cluster), not a port."""
    record = vm.record()
    assert "dashboard" not in vm.tunnel_output
    ssh = Path(f"/proc/{record['ssh_pid']}/cmdline").read_bytes().split(b"\0")
    assert ssh.count(b"-L") == 1, ssh


def test_a_profile_without_a_cluster_has_no_dashboard_forward(vm):
    profiles = yaml.safe_load(vm.lab.hosts.read_text())["profiles"]
    profiles["plain"] = ssh_profile(vm.user, vm.host, address=vm.host.address)
    vm.lab.write_hosts(profiles, default="vm")
    try:
        output = vm.lab.inv("tunnel", "--host", "plain").output
        record = vm.lab.tunnel_record("plain")
        assert "dashboard" not in output
        ssh = Path(f"/proc/{record['ssh_pid']}/cmdline").read_bytes().split(b"\0")
        assert ssh.count(b"-L") == 1, ssh
    finally:
        vm.lab.inv("tunnel", "--host", "plain", "--stop", check=False)
