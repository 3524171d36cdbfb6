"""Idle auto-stop against a real JupyterLab on the sshd fixture.  The VM is an aws profile on
moto (autostop is for cloud profiles) whose SSH goes to the fixture through `address:`.

The check runs exactly as cron would run it (the line `inv up` put in the user's crontab),
with a 10-minute period; the stop command appends to a file, so the test sees each call instead
of a power-off.  Decisions are read from ~/.labvm/autostop.log.  Minutes the test cannot wait
for are made by moving back the moment the check recorded the VM as idle from (`idle_for`):
no test sleeps for time to pass, and each check decides from what is true on the VM now.
"""

import json
import os
import re
import select
import shlex
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

import boto3
import pytest
import websocket

from realhost import Lab, User, ssh_profile
from aws_world import REGION, aws_env

from labvm import cluster
from labvm.config import load
from labvm.remote import SshHost
from labvm.sshconfig import SshHome

# dask and distributed: the cluster tests at the end make the VM a cluster's head (one env build for all).
PACKAGES = ["jupyterlab", "dask", "distributed"]


class Vm:
    def __init__(self, lab, user, port, local_port):
        self.lab, self.user, self.port, self.local_port = lab, user, port, local_port
        self.stops = user.home / ".labvm" / "stop-called"
        self.log = user.home / ".labvm" / "autostop.log"

    def cron_line(self) -> str:
        listing = subprocess.run(["crontab", "-l", "-u", self.user.name], capture_output=True, text=True).stdout
        lines = [line for line in listing.splitlines() if "# labvm-autostop" in line]
        return lines[0] if lines else ""

    def check(self) -> str:
        """One idle check, as cron runs it; returns the decision it logged."""
        command = self.cron_line().split(None, 5)[5]
        before = self.log.read_text().count("\n") if self.log.exists() else 0
        result = self.user.shell(command)
        assert result.returncode == 0, result.stderr
        return "\n".join(self.log.read_text().splitlines()[before:])

    def idle_for(self, seconds: int) -> None:
        """As if the VM had been idle for this long before now: its next check counts from then."""
        state_file = self.user.home / ".labvm" / "autostop-state.json"
        state = json.loads(state_file.read_text())
        state["idle_since"] = (datetime.now(timezone.utc) - timedelta(seconds=seconds)).isoformat()
        state_file.write_text(json.dumps(state))  # in place: the file stays the VM user's

    def connections_to_jupyter(self) -> int:
        """Established TCP connections to Jupyter's port on the VM, as `ss` sees them."""
        listing = subprocess.run(
            ["ss", "-Htn", "state", "established", f"( sport = :{self.port} )"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return len(listing.splitlines())

    def stop_calls(self) -> int:
        return len(self.stops.read_text().splitlines()) if self.stops.exists() else 0

    def token(self) -> str:
        return (self.user.home / ".labvm" / "token").read_text().strip()

    def api(self, method: str, path: str) -> dict:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/api/{path}",
            method=method,
            data=b"{}" if method == "POST" else None,
            headers={"Authorization": f"token {self.token()}"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
            return json.loads(body) if body else {}


@pytest.fixture(scope="module")
def vm(moto, user, sshd):  # noqa: F811
    lab = Lab.create()
    # Runs on the VM instead of `sudo -n shutdown -h now`.
    lab.extra_env.update(
        aws_env(moto), LABVM_OWNER="autostop", LABVM_AUTOSTOP_COMMAND='echo stop >> "$HOME/.labvm/stop-called"'
    )
    ec2 = boto3.client(
        "ec2", region_name=REGION, endpoint_url=moto, aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    ami = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    profile = ssh_profile(
        user,
        sshd,
        provider="aws",
        region=REGION,
        instance_type="t3.small",
        image=ami,
        ssh_cidr="127.0.0.1/32",
        autostop="1h",
        autostop_load=50,
        env={"packages": PACKAGES},
    )
    lab.write_hosts({"aws": profile})
    try:  # the clean-up runs even when `up` fails: a keeper it started would hold its port for ever
        up = lab.inv("up", "--host", "aws")
        assert "autostop: stops after 60m idle (set by hosts.yml, checked by cron); not checked yet" in up.output
        yield Vm(lab, user, profile["notebook"]["port"], profile["notebook"]["local_port"])
    finally:
        try:
            lab.inv("down", "--host", "aws", "--no-sync", check=False)
        finally:
            lab.remove("aws")
            subprocess.run(["crontab", "-r", "-u", user.name], capture_output=True)
            user.end_processes()
            # The next module's "VM" is this same login: it starts, as a new VM does, with no autostop state.
            user.shell('rm -f "$HOME"/.labvm/autostop* "$HOME/.labvm/stop-called"')
            # moto's servers in one process share their state: leave none to the next module.
            urllib.request.urlopen(urllib.request.Request(f"{moto}/moto-api/reset", method="POST"), timeout=10)
    assert not lab.keepers(), f"a keeper outlived the module: {lab.keepers()}"


def test_setup_installs_the_check_and_status_shows_it(vm):
    assert "autostop.py' check" in vm.cron_line()
    vm.lab.inv("autostop", "--host", "aws")  # hosts.yml again; idempotent
    assert vm.check().endswith(
        "idle 0s of 60m: no kernel busy or used, no connection, no SSH session, load under 50.00"
    )
    status = vm.lab.inv("status", "--host", "aws").output
    assert "autostop: stops after 60m idle (set by hosts.yml, checked by cron); idle" in status


def test_an_idle_server_is_stopped_once(vm):
    result = vm.lab.inv("autostop", "--host", "aws", "--idle", "10m")
    assert "autostop: stops after 10m idle (set by inv autostop, checked by cron)" in result.output
    calls = vm.stop_calls()
    assert "idle 0s of 10m" in vm.check()
    vm.idle_for(7 * 60)  # in the last five minutes: logged-in users are warned, once
    warned = vm.check()
    assert "idle 7m of 10m" in warned and "warned logged-in users: stopping in 2m" in warned
    assert "warned" not in vm.check()
    assert vm.stop_calls() == calls
    vm.idle_for(10 * 60)  # the whole period
    assert "stopping: idle 10m >= 10m; running: echo stop" in vm.check()
    assert "stop already requested" in vm.check()
    assert vm.stop_calls() == calls + 1
    assert "stopping now" in vm.lab.inv("status", "--host", "aws").output


def test_a_busy_kernel_keeps_it_running(vm):
    vm.lab.inv("autostop", "--host", "aws", "--idle", "10m")
    calls = vm.stop_calls()
    vm.check()
    kernel = vm.api("POST", "kernels")
    try:
        run_in_a_closed_tab(vm, kernel["id"], "import time; time.sleep(600)")
        vm.idle_for(11 * 60)  # idle before the cell started, and longer than the period
        decision = vm.check()
        assert "active: 1 kernel(s) busy" in decision
        assert "open connection" not in decision  # the tab is closed: only the kernel counts
        assert vm.stop_calls() == calls
    finally:
        vm.api("DELETE", f"kernels/{kernel['id']}")


def test_a_jupyter_on_another_port_than_the_settings_say_is_still_watched(vm):
    """On a shared VM labvm's Jupyter moves off a labmate's port (notebook.sh --pick); an `inv autostop` that
    wrote the profile's port must still see labvm's own Jupyter (the one in labvm's runtime folder)."""
    vm.lab.inv("autostop", "--host", "aws", "--idle", "10m")
    calls = vm.stop_calls()
    settings_file = vm.user.home / ".labvm" / "autostop.json"
    settings = json.loads(settings_file.read_text())
    settings_file.write_text(json.dumps({**settings, "port": vm.port + 1}))  # in place: still the VM user's
    kernel = vm.api("POST", "kernels")
    try:
        run_in_a_closed_tab(vm, kernel["id"], "import time; time.sleep(600)")
        vm.idle_for(11 * 60)
        assert "active: 1 kernel(s) busy" in vm.check()
        assert vm.stop_calls() == calls
    finally:
        vm.api("DELETE", f"kernels/{kernel['id']}")
        settings_file.write_text(json.dumps(settings))


def test_an_open_browser_keeps_it_running_but_an_idle_tunnel_does_not(vm):
    vm.lab.inv("autostop", "--host", "aws", "--idle", "10m")
    calls = vm.stop_calls()
    vm.check()
    tunnel = vm.lab.tunnel_record("aws")["local_port"]
    # JupyterLab in a browser tab holds a websocket open, through the tunnel.
    tab = websocket.create_connection(f"ws://127.0.0.1:{tunnel}/api/events/subscribe?token={vm.token()}", timeout=30)
    try:
        vm.idle_for(11 * 60)
        decision = vm.check()
        assert "open connection(s) to Jupyter's port" in decision
        assert vm.stop_calls() == calls
    finally:
        tab.close()
    # The tunnel is still open, with no browser on it: that is idle.
    wait_until(lambda: vm.connections_to_jupyter() == 0, "the closed tab's connection to end")
    assert "idle 0s of 10m" in vm.check()  # the count starts when the tab is gone
    vm.idle_for(10 * 60)
    assert "tunnel: already open" in vm.lab.inv("tunnel", "--host", "aws").output
    assert "stopping: idle 10m >= 10m" in vm.check()
    assert vm.stop_calls() == calls + 1


def test_an_ssh_login_keeps_it_running(vm):
    vm.lab.inv("autostop", "--host", "aws", "--idle", "10m")
    calls = vm.stop_calls()
    vm.check()
    login = subprocess.Popen(
        ["ssh", "-F", str(vm.lab.ssh_dir / "config"), "-tt", "-o", "BatchMode=yes", "labvm-aws", "sleep 600"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: vm.user.processes(f"sshd(-session)?: {vm.user.name}@pts"), "the SSH login")
        vm.idle_for(11 * 60)
        decision = vm.check()
        assert f"active: interactive SSH: {vm.user.name} on pts/" in decision
        assert vm.stop_calls() == calls
    finally:
        login.kill()
        login.wait()
        wait_until(lambda: not vm.user.processes(f"sshd(-session)?: {vm.user.name}@pts"), "the SSH login to end")


def test_off_stops_nothing_and_survives_setup(vm):
    check_command = vm.cron_line()
    result = vm.lab.inv("autostop", "--host", "aws", "--off")
    assert "autostop: off (set by inv autostop)" in result.output
    assert vm.cron_line() == ""
    calls = vm.stop_calls()
    vm.user.shell(check_command.split(None, 5)[5])  # a check that was already running, say
    assert "off: autostop is turned off" in vm.log.read_text().splitlines()[-1]
    assert vm.stop_calls() == calls
    assert "autostop: off (set by inv autostop)" in vm.lab.inv("status", "--host", "aws").output

    again = vm.lab.inv("setup", "--host", "aws")  # `inv up` does this too
    assert "keeping the setting made with `inv autostop` (off)" in again.output
    assert vm.cron_line() == ""
    back = vm.lab.inv("autostop", "--host", "aws")
    assert "autostop: stops after 60m idle (set by hosts.yml, checked by cron)" in back.output


def test_autostop_is_for_cloud_profiles_only(lab, user, sshd):
    lab.write_hosts({"lab": ssh_profile(user, sshd)})
    result = lab.inv("autostop", "--host", "lab", "--idle", "1h", check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "labvm: autostop is not supported for profile 'lab' (provider ssh: labvm uses the machine, it does not manage it)"
    )


def test_a_bad_period_is_one_line(vm):
    result = vm.lab.inv("autostop", "--host", "aws", "--idle", "soon", check=False)
    assert result.returncode == 1
    assert result.output.strip() == "labvm: --idle: must be a duration like 60m, 2h or 1h30m, not 'soon'"


def wait_until(condition, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout:.0f}s for {what}")
        time.sleep(0.05)


# -- autostop that explains itself and can be told to wait ---------------------------------------------
# `inv autostop --extend` runs `autostop.sh extend` on the VM; the checks run as cron runs them. Time the
# test cannot wait for passes by rewriting the moments the VM recorded (when it became idle, until when
# it is extended, which boot wrote the state): no test sleeps for time to pass. These share this file,
# and so one pytest-xdist worker, with the tests above: an idle check counts every interactive login on
# the machine, and every test "VM" is on this one.


def report(vm: Vm) -> dict:
    """The VM's autostop report, what `inv status` receives as status["autostop"]."""
    result = vm.user.shell("python3 ~/.labvm/scripts/autostop.py status")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def rewrite_state(vm: Vm, **changes) -> None:
    state_file = vm.user.home / ".labvm" / "autostop-state.json"
    state = json.loads(state_file.read_text())
    state.update(changes)
    state_file.write_text(json.dumps(state))  # in place: the file stays the VM user's


def test_extend_keeps_an_idle_vm_up_until_its_time_then_the_check_stops_it(vm):
    vm.lab.inv("autostop", "--host", "aws", "--idle", "10m")
    calls = vm.stop_calls()
    assert "idle 0s of 10m" in vm.check()

    before = time.time()
    extended = vm.lab.inv("autostop", "--host", "aws", "--extend", "3h")
    assert "kept up until" in extended.output
    until = report(vm)["extended_until"]
    assert before + 3 * 3600 - 5 <= until <= time.time() + 3 * 3600

    vm.idle_for(11 * 60)  # nobody uses it for longer than the period: the extension holds
    assert "active: extended until " in vm.check()
    assert vm.stop_calls() == calls
    now = report(vm)
    [reason] = now["reasons"]  # the date too when the extension ends on another day
    assert reason.startswith("extended until ") and reason.endswith(time.strftime("%H:%M UTC", time.gmtime(until)))
    assert now["idle_for"] is None
    assert "in use: extended until" in vm.lab.inv("status", "--host", "aws").output

    rewrite_state(vm, extended_until=int(time.time()) - 1)  # three hours later
    decision = vm.check()
    assert "the extension until" in decision and "is over: idle time counts from now" in decision
    assert "idle 0s of 10m" in decision  # a whole period again from the extension's end
    assert report(vm)["extended_until"] is None
    assert vm.stop_calls() == calls

    vm.idle_for(10 * 60)
    assert "stopping: idle 10m >= 10m" in vm.check()
    assert vm.stop_calls() == calls + 1


def test_extend_off_ends_the_extension_at_once(vm):
    vm.lab.inv("autostop", "--host", "aws", "--idle", "10m")
    vm.lab.inv("autostop", "--host", "aws", "--extend", "2h")
    assert "active: extended until" in vm.check()
    vm.lab.inv("autostop", "--host", "aws", "--extend", "off")
    assert report(vm)["extended_until"] is None
    assert "idle 0s of 10m" in vm.check()
    assert report(vm)["reasons"] == []


def test_the_reasons_name_a_busy_kernel_and_an_ssh_login(vm):
    vm.lab.inv("autostop", "--host", "aws", "--idle", "10m")
    vm.check()
    assert report(vm)["reasons"] == []
    kernel = vm.api("POST", "kernels")
    login = subprocess.Popen(
        ["ssh", "-F", str(vm.lab.ssh_dir / "config"), "-tt", "-o", "BatchMode=yes", "labvm-aws", "sleep 600"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        run_in_a_closed_tab(vm, kernel["id"], "import time; time.sleep(600)")
        wait_until(lambda: vm.user.processes(f"sshd(-session)?: {vm.user.name}@pts"), "the SSH login")
        vm.check()
        reasons = report(vm)["reasons"]
        assert "1 kernel(s) busy" in reasons
        assert any(reason.startswith(f"interactive SSH: {vm.user.name} on pts/") for reason in reasons)
        status = vm.lab.inv("status", "--host", "aws").output
        assert "in use: " in status and "1 kernel(s) busy" in status and f"{vm.user.name} on pts/" in status
    finally:
        login.kill()
        login.wait()
        wait_until(lambda: not vm.user.processes(f"sshd(-session)?: {vm.user.name}@pts"), "the SSH login to end")
        vm.api("DELETE", f"kernels/{kernel['id']}")


LOAD_MAX = 0.05  # under what one busy process adds to the 1-minute load within seconds


def test_a_busy_load_keeps_it_running_and_the_reason_names_the_load(vm):
    """A script started outside Jupyter (no kernel, no login, no browser): only the load shows it runs."""
    import yaml

    written = vm.lab.hosts.read_text()
    hosts = yaml.safe_load(written)
    hosts["profiles"]["aws"]["autostop_load"] = LOAD_MAX
    vm.lab.hosts.write_text(yaml.safe_dump(hosts))
    busy = subprocess.Popen(["/usr/bin/python3", "-c", "while True: pass"], user=vm.user.uid, cwd=vm.user.home)
    try:
        vm.lab.inv("autostop", "--host", "aws", "--idle", "10m")
        calls = vm.stop_calls()
        vm.check()
        # The "VM" is this machine: its load average is the one the check reads.
        wait_until(lambda: os.getloadavg()[0] >= LOAD_MAX, "the load to rise", timeout=60)
        vm.idle_for(11 * 60)
        decision = vm.check()
        assert re.search(r"active: .*load \d+\.\d\d >= 0\.05", decision), decision
        assert vm.stop_calls() == calls
        status = vm.lab.inv("status", "--host", "aws").output
        assert re.search(r"in use: .*load \d+\.\d\d >= 0\.05", status), status
    finally:
        busy.kill()
        busy.wait()
        vm.lab.hosts.write_text(written)
        vm.lab.inv("autostop", "--host", "aws")


def test_after_an_autostop_status_says_when_and_after_how_long_idle_even_after_a_restart(vm):
    vm.lab.inv("autostop", "--host", "aws", "--idle", "10m")
    vm.check()
    vm.idle_for(12 * 60)
    assert "stopping: idle 12m >= 10m" in vm.check()
    stopped = report(vm)
    assert abs(stopped["stopped_at"] - time.time()) < 60 and stopped["stopped_after"] == 12 * 60

    rewrite_state(vm, boot_id="the boot before the stop")  # the VM was started again
    vm.lab.inv("up", "--host", "aws")
    restarted = report(vm)
    assert not restarted["stop_requested"]
    assert (restarted["stopped_at"], restarted["stopped_after"]) == (stopped["stopped_at"], 12 * 60)
    assert "idle 0s of 10m" in vm.check()  # a new boot counts again from its start
    at = time.strftime("%Y-%m-%d %H:%M", time.localtime(stopped["stopped_at"]))
    assert f"last stopped this VM {at} after 12m idle" in vm.lab.inv("status", "--host", "aws").output


def run_in_a_closed_tab(vm: Vm, kernel_id: str, code: str) -> None:
    """What a browser does to run a cell, then the tab closes while the cell still runs."""
    ws = websocket.create_connection(
        f"ws://127.0.0.1:{vm.port}/api/kernels/{kernel_id}/channels?token={vm.token()}", timeout=30
    )
    ws.send(
        json.dumps(
            {
                "header": {
                    "msg_id": "run-1",
                    "msg_type": "execute_request",
                    "username": "t",
                    "session": "s1",
                    "version": "5.3",
                },
                "parent_header": {},
                "metadata": {},
                "channel": "shell",
                "content": {
                    "code": code,
                    "silent": False,
                    "store_history": False,
                    "user_expressions": {},
                    "allow_stdin": False,
                },
            }
        )
    )
    while True:
        message = json.loads(ws.recv())
        if (
            message.get("msg_type") == "status"
            and message["content"]["execution_state"] == "busy"
            and message["parent_header"].get("msg_id") == "run-1"
        ):
            break
    ws.close()
    wait_until(lambda: vm.connections_to_jupyter() == 0, "the closed tab's connection to end")


# -- a Dask cluster: the head's check counts its computation, and its workers stop without it -----------
# The head is the VM above; the worker VM is a second throwaway user on the same sshd, reached as
# "localhost" (a machine of its own: its own home, crontab, autostop state and stop-called file),
# running dask from the head's env.  Both checks run as cron runs them; the scheduler's and workers'
# real processes are the ones labvm.cluster starts, as `inv up` does on a cloud.

WORKER_GRACE = 120  # scripts/autostop.py: what the checks say, in seconds
SCHEDULER_HOST = "127.0.0.2"  # the head's address inside the cluster's network (loopback: any 127/8 is this machine)


@pytest.fixture(scope="module")
def dask_cluster(vm, sshd, tmp_path_factory):
    """(head SshHost, worker Vm, worker SshHost, head's profile) with scheduler and worker running."""
    import yaml

    second = User.create(tmp_path_factory.mktemp("workerkey"))
    env = vm.user.home / ".labvm" / "env"
    for folder in (vm.user.home, vm.user.home / ".labvm"):  # the worker runs the head's env
        folder.chmod(folder.stat().st_mode | 0o001)
    hosts = yaml.safe_load(vm.lab.hosts.read_text())
    hosts["profiles"]["worker"] = ssh_profile(
        second, sshd, address="localhost", env={"packages": PACKAGES, "prefix": str(env)}
    )
    vm.lab.hosts.write_text(yaml.safe_dump(hosts))
    config = load(vm.lab.hosts)
    ssh = SshHome(vm.lab.ssh_dir)
    head = SshHost(config.profile("aws"), "127.0.0.1", ssh, cluster_address=SCHEDULER_HOST)
    worker = SshHost(config.profile("worker"), "localhost", ssh)
    worker.run("authorize-key.sh", env={"LABVM_PUBKEY": ssh.ensure_key()})
    try:
        yield head, Vm(vm.lab, second, 0, 0), worker, config.profile("aws")
    finally:
        cluster.stop(config.profile("aws"), head, [worker])
        head.close()
        worker.close()
        second.remove()


def start_cluster(dask_cluster) -> None:
    """What `inv up` does for a cloud cluster: scheduler and worker running, the worker's autostop armed."""
    head, worker_vm, worker, profile = dask_cluster
    # The scheduler on the head's "private" address, another than the one labvm reaches it at over SSH.
    lines = cluster.ensure(profile, SshHome(worker_vm.lab.ssh_dir), head, [worker])
    assert lines[0].startswith(f"cluster: scheduler tls://{SCHEDULER_HOST}:8786 on 127.0.0.1: "), lines
    [seen] = cluster.status(profile, head)  # found where ensure put it
    assert seen.startswith("cluster: worker localhost (tls://") and "0 tasks processing" in seen, seen
    os.environ["LABVM_AUTOSTOP_COMMAND"] = 'echo worker >> "$HOME/.labvm/stop-called"'  # as the head's
    try:
        armed = cluster.arm_worker_autostop(profile, head, [worker])
    finally:
        del os.environ["LABVM_AUTOSTOP_COMMAND"]
    assert armed == [f"cluster: worker localhost: stops itself 2m after the scheduler {SCHEDULER_HOST}:8786 is gone"]
    rewrite_state(worker_vm, boot_id="the boot before")  # each test: a worker VM (re)started by `inv up`
    assert f"active: the head's dask scheduler {SCHEDULER_HOST}:8786 answers" in worker_vm.check()


def scheduler_pid(vm: Vm) -> int | None:
    pidfile = vm.user.home / ".labvm" / "dask" / "scheduler-127.0.0.1.pid"
    return int(pidfile.read_text()) if pidfile.exists() else None


LONG_COMPUTATION = """
import sys, time
from dask.distributed import Client
client = Client(timeout=30)
future = client.submit(time.sleep, 300, pure=False)
print("submitted", flush=True)
sys.stdin.read()  # until the test closes stdin: then the client leaves and its task is released
"""


def test_a_busy_dask_computation_keeps_the_head_and_its_workers_up(vm, dask_cluster):
    head, worker_vm, worker, profile = dask_cluster
    cluster.stop(profile, head, [worker])
    # Another program on 8787 (the dashboard's TCP port before it became a unix socket): nothing changes.
    with socket.socket() as taken:
        try:
            taken.bind(("127.0.0.1", 8787))
            taken.listen()
        except OSError:
            pass  # taken already
        start_cluster(dask_cluster)
    vm.lab.inv("autostop", "--host", "aws", "--idle", "10m")
    calls, worker_calls = vm.stop_calls(), worker_vm.stop_calls()
    vm.check()

    # A notebook's Client() on the head, with nothing typed, runs a long task on the worker.
    client = subprocess.Popen(
        ["su", "-s", "/bin/sh", vm.user.name, "-c", f"~/.labvm/env/bin/python -c {shlex.quote(LONG_COMPUTATION)}"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(vm.user.home)},
    )
    try:
        assert client.stdout.readline().strip() == "submitted"
        running = "dask: 1 task(s) processing on 1 worker(s)"
        wait_until(lambda: running in vm.check(), "the task to run on the worker")
        vm.idle_for(11 * 60)  # idle (for Jupyter) longer than the period
        assert f"active: {running}" in vm.check()
        worker_vm.idle_for(10 * WORKER_GRACE)
        assert f"active: the head's dask scheduler {SCHEDULER_HOST}:8786 answers" in worker_vm.check()
        assert (vm.stop_calls(), worker_vm.stop_calls()) == (calls, worker_calls)
        assert f"in use: {running}" in vm.lab.inv("status", "--host", "aws").output
        # The worker's minute checks leave no trace in the scheduler's log (they finish the TLS handshake).
        assert "handshake failed" not in (vm.user.home / ".labvm" / "dask" / "scheduler-127.0.0.1.log").read_text()
    finally:
        client.stdin.close()
        client.wait(30)
    # The computation is over: idle time counts from now.
    wait_until(lambda: "idle 0s of 10m" in vm.check(), "the task to be released")
    assert vm.stop_calls() == calls


def test_a_dask_scheduler_that_does_not_answer_keeps_the_head_up(vm, dask_cluster):
    start_cluster(dask_cluster)
    vm.lab.inv("autostop", "--host", "aws", "--idle", "10m")
    calls = vm.stop_calls()
    vm.check()
    with frozen(scheduler_pid(vm)):
        vm.idle_for(11 * 60)
        assert "active: dask scheduler runs but its dashboard does not answer (not idle while unsure)" in vm.check()
    assert vm.stop_calls() == calls


FREEZER_V1 = Path("/sys/fs/cgroup/freezer")


def cgroup2_root() -> Path | None:
    """Where the cgroup v2 hierarchy is mounted: /sys/fs/cgroup (unified) or /sys/fs/cgroup/unified (hybrid)."""
    for line in Path("/proc/self/mounts").read_text().splitlines():
        _, where, kind, *_ = line.split()
        if kind == "cgroup2":
            return Path(where)
    return None


@contextmanager
def frozen(pid: int, versions: tuple[int, ...] = (2, 1)):
    """The process runs but does nothing: the cgroup freezer (tmux resumes a pane's process stopped by
    SIGSTOP, and the kernel drops SIGTTIN for its orphaned process group).  cgroup v2 where it is
    mounted, else v1's freezer; a skip only where neither is."""
    v2 = cgroup2_root()
    if 2 in versions and v2 is not None and os.geteuid() == 0:
        with frozen_v2(v2, pid):
            yield
    elif 1 in versions and (FREEZER_V1 / "tasks").exists():
        with frozen_v1(pid):
            yield
    else:
        pytest.skip(f"no cgroup freezer (version {' or '.join(map(str, versions))}) this test can use here")


@contextmanager
def frozen_v2(root: Path, pid: int):
    """cgroup v2: a child cgroup made for the process, frozen by writing 1 to its cgroup.freeze; the
    process is back in its own cgroup afterwards (https://docs.kernel.org/admin-guide/cgroup-v2.html)."""
    [home] = [line[3:] for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines() if line.startswith("0::")]
    group = root / f"labvm-test-{os.getpid()}"
    group.mkdir(exist_ok=True)
    (group / "cgroup.procs").write_text(str(pid))
    try:
        (group / "cgroup.freeze").write_text("1")
        wait_until(lambda: "frozen 1" in (group / "cgroup.events").read_text(), "the freezer")
        yield
    finally:
        (group / "cgroup.freeze").write_text("0")
        for task in (group / "cgroup.procs").read_text().split():
            (root / home.lstrip("/") / "cgroup.procs").write_text(task)
        group.rmdir()


@contextmanager
def frozen_v1(pid: int):
    """cgroup v1: the freezer hierarchy's FROZEN state, in a group made for the process."""
    group = FREEZER_V1 / f"labvm-test-{os.getpid()}"
    group.mkdir(exist_ok=True)
    (group / "tasks").write_text(str(pid))
    try:
        (group / "freezer.state").write_text("FROZEN")
        wait_until(lambda: (group / "freezer.state").read_text().strip() == "FROZEN", "the freezer")
        yield
    finally:
        (group / "freezer.state").write_text("THAWED")
        for task in (group / "tasks").read_text().split():
            (FREEZER_V1 / "tasks").write_text(task)
        group.rmdir()


@pytest.mark.parametrize("version", [1, 2])
def test_the_freezer_holds_a_process_on_each_cgroup_version(version):
    """What the frozen-scheduler test relies on: a frozen process answers nothing until thawed."""
    if os.geteuid() != 0:
        pytest.skip("a cgroup of one's own needs root")
    echo = subprocess.Popen(
        [sys.executable, "-u", "-c", "import sys\nprint('ready')\nfor line in sys.stdin: print(line, end='')"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert echo.stdout.readline() == "ready\n"
        with frozen(echo.pid, versions=(version,)):
            echo.stdin.write("while frozen\n")
            echo.stdin.flush()
            assert not select.select([echo.stdout], [], [], 0.5)[0], "a frozen process answered"
        assert echo.stdout.readline() == "while frozen\n"  # thawed: it goes on where it stopped
        assert f"labvm-test-{os.getpid()}" not in Path(f"/proc/{echo.pid}/cgroup").read_text()
    finally:
        echo.kill()
        echo.wait()


def test_an_idle_cluster_stops_the_head_then_each_worker_once(vm, dask_cluster):
    head, worker_vm, worker, profile = dask_cluster
    start_cluster(dask_cluster)
    vm.lab.inv("autostop", "--host", "aws", "--idle", "10m")
    calls, worker_calls = vm.stop_calls(), worker_vm.stop_calls()
    assert "idle 0s of 10m" in vm.check()
    vm.idle_for(10 * 60)
    decision = vm.check()
    assert "stopping: idle 10m >= 10m" in decision
    assert "ended the dask scheduler (127.0.0.1): its workers stop themselves" in decision
    assert vm.stop_calls() == calls + 1
    assert scheduler_pid(vm) is None and not vm.user.processes("dask.scheduler")

    assert f"head gone 0s of 2m: its dask scheduler {SCHEDULER_HOST}:8786 does not answer" in worker_vm.check()
    assert worker_vm.stop_calls() == worker_calls
    worker_vm.idle_for(WORKER_GRACE)
    decision = worker_vm.check()
    assert f"stopping: the head's dask scheduler {SCHEDULER_HOST}:8786 has not answered for 2m >= 2m" in decision
    assert worker_vm.stop_calls() == worker_calls + 1
    assert "stop already requested" in worker_vm.check() and "stop already requested" in vm.check()
    assert (vm.stop_calls(), worker_vm.stop_calls()) == (calls + 1, worker_calls + 1)


def test_a_worker_whose_head_is_gone_stops_itself_after_the_grace_not_before(vm, dask_cluster):
    head, worker_vm, worker, profile = dask_cluster
    start_cluster(dask_cluster)
    vm.lab.inv("autostop", "--host", "aws", "--idle", "10m")
    calls, worker_calls = vm.stop_calls(), worker_vm.stop_calls()
    subprocess.run(["kill", "-KILL", str(scheduler_pid(vm))], check=True)  # the head is gone, its check never ran
    assert "head gone 0s of 2m" in worker_vm.check()
    worker_vm.idle_for(WORKER_GRACE - 30)
    assert "head gone 90s of 2m" in worker_vm.check()
    assert worker_vm.stop_calls() == worker_calls
    worker_vm.idle_for(WORKER_GRACE)
    assert f"stopping: the head's dask scheduler {SCHEDULER_HOST}:8786 has not answered for 2m" in worker_vm.check()
    assert worker_vm.stop_calls() == worker_calls + 1
    assert vm.stop_calls() == calls
