"""The keeper's control channel, its asleep state and the local port a profile keeps for good,
against a real sshd ("the VM", tests/conftest.py) and a real keeper started by `inv tunnel`.

Behind the tunnel, on the VM's 127.0.0.1, a plain `python -m http.server` stands in for Jupyter:
what these tests look at is which server answers on the laptop's port (the stand-in through ssh,
or the keeper's asleep page), not Jupyter.  Every command to the keeper goes through its control
socket (labvm.keeper.tell, as labvm.tunnel does): no signal is sent to it.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone

import pytest
import yaml

from labvm.keeper import autostop_stopped_it, tell
from realhost import Lab, ended, free_port, lab_after_up, put_to_sleep, ssh_profile, url_of, wait_for_port

LOOPBACK = urllib.request.build_opener(urllib.request.ProxyHandler({}))
STAND_IN = b"the VM's own server\n"


class Laptop:
    def __init__(self, lab: Lab, remote_port: int):
        self.lab, self.remote_port = lab, remote_port

    def record(self, profile: str = "vm") -> dict:
        return self.lab.tunnel_record(profile)

    def log(self, profile: str = "vm") -> str:
        path = self.lab.ssh_dir / "labvm" / "run" / f"{profile}.log"
        return path.read_text() if path.exists() else ""

    def tell(self, command: str, secret: str | None = None) -> str | None:
        record = self.record()
        return tell(record["control_port"], secret or record["control_secret"], command)

    def wait_until(self, condition, what: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"waited {timeout:.0f}s for {what}; keeper log: {self.log()[-2000:]}")
            time.sleep(0.05)

    def wait_for_state(self, state: str, timeout: float = 30) -> dict:
        self.wait_until(lambda: self.record()["state"] == state, f"the keeper to be {state}", timeout)
        return self.record()

    def ssh_children(self, keeper: int) -> list[str]:
        """The keeper's forwarding ssh processes (not its short questions to the VM), as ps shows them."""
        out = subprocess.run(["pgrep", "-a", "-P", str(keeper)], capture_output=True, text=True).stdout
        return [line for line in out.splitlines() if line.split()[1] == "ssh" and " -N " in line and " -L " in line]


def get(port: int, path: str, dest: str = "document", headers: dict | None = None) -> tuple[int | None, str, bytes]:
    """(status, content type, body) of a GET on the laptop's port, as a browser's tab sends it
    (dest "empty": as a script in a background tab fetches it)."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", headers={"Sec-Fetch-Dest": dest, **(headers or {})}
    )
    try:
        with LOOPBACK.open(request, timeout=5) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read()
    except (ConnectionError, urllib.error.URLError, TimeoutError):
        return None, "", b""


def fetch(port: int, path: str, headers: dict | None = None) -> tuple[int | None, str, bytes]:
    return get(port, path, "empty", headers)


def stand_in_answers(port: int) -> bool:
    return get(port, "/status")[2] == STAND_IN


@pytest.fixture(scope="module")
def laptop(user, sshd, tmp_path_factory):
    served = tmp_path_factory.mktemp("served")
    (served / "status").write_bytes(STAND_IN)
    remote_port = free_port()
    stand_in = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(remote_port), "--bind", "127.0.0.1", "--directory", str(served)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    lab = Lab.create()
    try:
        wait_for_port(remote_port)
        lab.write_hosts({"vm": ssh_profile(user, sshd, notebook={"port": remote_port})})
        yield Laptop(lab, remote_port)
    finally:
        lab.inv("tunnel", "--host", "vm", "--stop", check=False)
        stand_in.kill()
        stand_in.wait()
        shutil.rmtree(lab.directory, ignore_errors=True)


@pytest.fixture
def kept(laptop):
    """A kept tunnel of profile vm, up and carrying the stand-in."""
    opened = laptop.lab.inv("tunnel", "--host", "vm", check=False)
    assert opened.returncode == 0, f"{opened.output}\nkeeper log: {laptop.log()[-2000:]}"
    record = laptop.wait_for_state("up")
    laptop.wait_until(lambda: stand_in_answers(record["local_port"]), "the stand-in through the tunnel")
    return laptop


# -- the control channel --------------------------------------------------------------------


def test_the_record_names_a_private_control_socket(kept):
    record = kept.record()
    assert os.stat(kept.lab.ssh_dir / "labvm" / "run" / "vm.json").st_mode & 0o777 == 0o600
    assert record["control_port"] not in (record["local_port"], 0)
    assert len(record["control_secret"]) >= 32


def test_reconnect_replaces_the_ssh_on_the_same_port(kept):
    before = kept.record()
    assert kept.tell("reconnect") == "ok"
    kept.wait_until(
        lambda: kept.record()["state"] == "up" and kept.record()["ssh_pid"] != before["ssh_pid"], "a new ssh"
    )
    assert stand_in_answers(before["local_port"])
    kept.wait_until(lambda: ended(before["ssh_pid"]), "the old ssh to end")
    assert kept.record()["local_port"] == before["local_port"]
    assert len(kept.ssh_children(before["keeper_pid"])) == 1
    assert "asked to reconnect now" in kept.log()


def test_autostop_is_asked_when_told(kept):
    before = datetime.now(timezone.utc)
    assert kept.tell("autostop") == "ok"
    kept.wait_until(
        lambda: datetime.fromisoformat(kept.record().get("autostop_asked", "2000-01-01T00:00:00+00:00")) >= before,
        "a question about autostop asked after the command",
    )


def test_a_wrong_secret_does_nothing_and_is_logged_once(kept):
    before = kept.record()
    wrong = "x" * len(before["control_secret"])
    assert kept.tell("end", secret=wrong) is None
    assert kept.tell("sleep stopped by a stranger", secret=wrong) is None
    assert kept.tell("reconnect", secret=before["control_secret"][:-1]) is None
    record = kept.record()
    assert (record["state"], record["keeper_pid"], record["ssh_pid"]) == ("up", before["keeper_pid"], before["ssh_pid"])
    assert stand_in_answers(before["local_port"])
    assert kept.log().count("control: a request with a wrong secret was ignored") == 1
    # The positive control: the right secret is obeyed.
    assert kept.tell("reconnect") == "ok"
    kept.wait_until(
        lambda: kept.record()["ssh_pid"] not in (0, before["ssh_pid"]) and kept.record()["state"] == "up", "a new ssh"
    )


def test_an_unknown_command_is_answered_and_changes_nothing(kept):
    before = kept.record()
    assert kept.tell("explode") == "unknown command 'explode'"
    assert kept.record()["ssh_pid"] == before["ssh_pid"]


def test_close_ends_the_keeper_through_its_channel(kept):
    record = kept.record()
    assert "tunnel: closed" in kept.lab.inv("tunnel", "--host", "vm", "--stop").stdout
    assert "asked to end" in kept.log()
    assert ended(record["keeper_pid"]) and ended(record["ssh_pid"])
    assert not (kept.lab.ssh_dir / "labvm" / "run" / "vm.json").exists()
    assert get(record["local_port"], "/status")[0] is None


# -- asleep ---------------------------------------------------------------------------------


def assert_asleep_page(port: int, why: str) -> None:
    status, kind, body = get(port, "/")
    assert (status, kind.split(";")[0]) == (200, "text/html"), (status, kind, body[:300])
    page = body.decode()
    assert "vm" in page and why in page, page
    for path in ("/api/kernels", "/status"):  # JupyterLab's background calls, anything not a page
        status, kind, body = fetch(port, path)
        assert (status, kind.split(";")[0]) == (503, "application/json"), (path, status, kind)
        assert "asleep" in json.loads(body)["message"]


def test_sleep_ends_ssh_and_serves_the_asleep_page_then_wake_hands_the_port_back(kept):
    before = kept.record()
    port = before["local_port"]
    assert kept.tell("sleep stopped by inv down") == "ok"
    asleep = kept.wait_for_state("asleep")
    assert (asleep["reason"], asleep["ssh_pid"], asleep["local_port"]) == ("stopped by inv down", 0, port)
    kept.wait_until(lambda: ended(before["ssh_pid"]), "its ssh to end")
    assert kept.ssh_children(before["keeper_pid"]) == []
    kept.wait_until(lambda: get(port, "/")[0] == 200, "the asleep page")
    assert_asleep_page(port, "stopped by inv down")

    assert kept.tell("wake") == "ok"
    up = kept.wait_for_state("up")
    assert (up["keeper_pid"], up["local_port"]) == (before["keeper_pid"], port)
    kept.wait_until(lambda: stand_in_answers(port), "the stand-in on the same port again")
    assert len(kept.ssh_children(before["keeper_pid"])) == 1


def test_inv_tunnel_wakes_an_asleep_keeper_as_up_does(kept):
    """What `inv up` does after starting the VM: Tunnels.open finds the keeper and wakes it."""
    before = kept.record()
    assert kept.tell("sleep stopped by its autostop") == "ok"
    kept.wait_for_state("asleep")
    kept.wait_until(lambda: get(before["local_port"], "/")[0] == 200, "the asleep page")
    opened = kept.lab.inv("tunnel", "--host", "vm").stdout
    assert f"tunnel: already open, 127.0.0.1:{before['local_port']} -> host port {kept.remote_port} (up)" in opened
    assert kept.record()["keeper_pid"] == before["keeper_pid"]
    assert stand_in_answers(before["local_port"])


def test_tunnels_sleep_tells_a_running_keeper_and_no_other(kept, monkeypatch):
    """Tunnels.sleep, what `inv down`/`inv stop` call for a cloud profile, in this process."""
    from labvm.config import load
    from labvm.sshconfig import SshHome
    from labvm.tunnel import Tunnels

    for name, value in kept.lab.env.items():
        monkeypatch.setenv(name, value)
    profile = load(kept.lab.hosts).profile("vm")
    tunnels = Tunnels(SshHome.current())
    port = kept.record()["local_port"]
    assert tunnels.sleep(profile, "stopped by inv stop")
    assert tunnels.find(profile).state == "asleep: stopped by inv stop (its URL has a Start button)"
    assert_asleep_page(port, "stopped by inv stop")
    assert tunnels.close(profile)
    assert get(port, "/")[0] is None  # close ends the page too
    assert not tunnels.sleep(profile, "stopped by inv stop")  # no keeper: nobody told


def test_an_asleep_keeper_ends_once_its_profile_leaves_hosts_yml(kept):
    """It looks once a minute (ASLEEP_CHECK_EVERY): a profile removed from hosts.yml leaves no
    process holding a port; the other profile's keeper goes on."""
    from labvm.keeper.core import ASLEEP_CHECK_EVERY

    lab = kept.lab
    profiles = yaml.safe_load(lab.hosts.read_text())["profiles"]
    lab.write_hosts(
        {
            **profiles,
            "leaving": {**profiles["vm"], "notebook": {**profiles["vm"]["notebook"], "local_port": free_port()}},
        },
        default="vm",
    )
    try:
        lab.inv("tunnel", "--host", "leaving")
        leaving = kept.record("leaving")
        assert tell(leaving["control_port"], leaving["control_secret"], "sleep stopped by inv down") == "ok"
        kept.wait_until(lambda: kept.record("leaving")["state"] == "asleep", "the keeper to sleep")
        lab.write_hosts(profiles, default="vm")
        kept.wait_until(lambda: ended(leaving["keeper_pid"]), "the keeper to end", ASLEEP_CHECK_EVERY + 30)
        assert f"profile leaving is no longer in {lab.hosts}: ending" in kept.log("leaving")
        assert get(leaving["local_port"], "/")[0] is None
        assert not ended(kept.record()["keeper_pid"]) and stand_in_answers(kept.record()["local_port"])
    finally:
        lab.write_hosts({**profiles, "leaving": profiles["vm"]}, default="vm")
        lab.inv("tunnel", "--host", "leaving", "--stop", check=False)
        lab.write_hosts(profiles, default="vm")


# -- the port kept for good -----------------------------------------------------------------


def test_a_profile_keeps_the_port_its_first_up_took(laptop):
    lab = laptop.lab
    profiles = yaml.safe_load(lab.hosts.read_text())["profiles"]
    wanted = free_port()
    profiles["moved"] = {**profiles["vm"], "notebook": {**profiles["vm"]["notebook"], "local_port": wanted}}
    lab.write_hosts(profiles, default="vm")
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", wanted))
    squatter.listen()
    try:
        first = lab.inv("tunnel", "--host", "moved").stdout
        taken = int(re.search(rf"local port {wanted} is busy; using (\d+) instead", first).group(1))
    finally:
        squatter.close()
    try:
        assert lab.inv("tunnel", "--host", "moved", "--stop").stdout.strip().endswith("tunnel: closed")
        again = lab.inv("tunnel", "--host", "moved").stdout
        assert "busy" not in again
        assert lab.tunnel_record("moved")["local_port"] == taken  # the URL the tab already has
        ports = lab.ssh_dir / "labvm" / "run" / "ports.json"
        assert os.stat(ports).st_mode & 0o777 == 0o600
        assert json.loads(ports.read_text())["moved"] == {"port": taken, "wanted": wanted}
        assert stand_in_answers(taken)
    finally:
        lab.inv("tunnel", "--host", "moved", "--stop", check=False)


# -- why it sleeps ----------------------------------------------------------------------------


REPORT = {
    "idle_seconds": 1800,
    "set_by": "hosts.yml",
    "scheduler": "cron",
    "idle_for": 1740,
    "last_check_ago": 30,
    "stop_requested": False,
    "reasons": [],
    "extended_until": None,
    "stopped_at": None,
    "stopped_after": None,
    "dask_scheduler": None,
    "worker_grace": None,
}


def test_a_vm_its_autostop_stopped_says_so_with_what_last_kept_it_up():
    assert (
        autostop_stopped_it(REPORT, ["1 kernel(s) busy"])
        == "stopped by its autostop (idle 30m of 30m: last in use for 1 kernel(s) busy)"
    )
    assert (
        autostop_stopped_it({**REPORT, "stop_requested": True, "stopped_after": 1860, "idle_for": 5}, [])
        == "stopped by its autostop (idle 31m of 30m)"
    )
    # Far from its stop, or autostop off: something else stopped it.
    assert autostop_stopped_it({**REPORT, "idle_for": 600}, []) == ""
    assert autostop_stopped_it({**REPORT, "idle_seconds": 0}, []) == ""
    assert autostop_stopped_it(None, []) == ""


# -- Start on the asleep page: `up` again, the same URL, a new token ---------------------------


@pytest.fixture(scope="module")
def lab_up(user, sshd):
    with lab_after_up(user, sshd) as (lab, url):
        yield lab, url


def proof_of(lab: Lab, profile: str) -> str:
    """What the user's browser holds once it opened the lab (labvm.asleep): the profile's proof."""
    return (lab.ssh_dir / "labvm" / "run" / f"{profile}.proof").read_text()


def progress(port: int, proof: str) -> dict:
    """The page's script's look at the start (labvm/pages/asleep.js)."""
    status, _, body = fetch(port, "/.labvm/progress", {"X-Labvm-Proof": proof})
    assert status == 200, body
    return json.loads(body)


def follow_the_page(port: int, proof: str, timeout: float = 300) -> dict:
    """What the page's script does after Start: reads its progress until the keeper says the lab
    is ready; returns that last answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        said = progress(port, proof)
        assert said["state"] != "failed", said
        if said["state"] == "ready":
            return said
        time.sleep(0.2)
    raise AssertionError(f"the lab was not ready on port {port} within {timeout:.0f}s; the page said {said}")


def press_start(lab: Lab, port: int) -> str:
    """Jupyter stopped and the keeper asleep, as `inv down` leaves a cloud profile; then Start, as
    the page's button sends it from the user's browser; returns the proof it sent."""
    put_to_sleep(lab, "nb")
    assert get(port, "/lab")[0] == 200  # the tab left open, reloaded
    proof = proof_of(lab, "nb")
    start = urllib.request.Request(
        f"http://127.0.0.1:{port}/.labvm/start",
        data=json.dumps({"proof": proof}).encode(),
        headers={"Content-Type": "application/json", "Origin": f"http://127.0.0.1:{port}"},
        method="POST",
    )
    with LOOPBACK.open(start, timeout=10) as response:
        assert json.loads(response.read())["state"] == "starting"
    return proof


def test_start_on_the_asleep_page_brings_the_lab_back_on_the_same_url(lab_up):
    lab, url = lab_up
    base, token = url.split("/lab?token=")
    port = int(re.search(r"127\.0\.0\.1:(\d+)/", url).group(1))
    proof = press_start(lab, port)
    said = follow_the_page(port, proof)
    new_url = said["url"]
    assert new_url.startswith(f"{base}/lab?token=") and new_url != url  # the same port, Jupyter's new token
    assert any(line.startswith("notebook: starting JupyterLab") for line in said["lines"]), said["lines"]
    assert get(port, f"/api/status?token={new_url.split('token=')[1]}")[0] == 200
    assert token not in (log := (lab.ssh_dir / "labvm" / "run" / "nb.log").read_text()) and new_url not in log
    record = lab.tunnel_record("nb")
    assert (record["state"], record["local_port"]) == ("up", port)


def test_a_jupyter_that_fails_after_the_hand_over_brings_the_page_back_saying_why(lab_up, user):
    """The page gave its port to ssh while Jupyter booted; Jupyter then exits at once (a stand-in
    for it on the VM): the keeper sleeps again, and the page says the start failed, with Retry."""
    lab, url = lab_up
    port = int(re.search(r"127\.0\.0\.1:(\d+)/", url).group(1))
    jupyter = user.home / ".labvm" / "env" / "bin" / "jupyter"
    real = jupyter.with_name("jupyter.real")
    jupyter.rename(real)
    try:
        jupyter.write_text("#!/bin/sh\necho 'jupyter: a stand-in that fails' >&2\nexit 1\n")
        jupyter.chmod(0o755)
        os.chown(jupyter, user.uid, user.uid)
        proof = press_start(lab, port)
        deadline, said = time.monotonic() + 120, {}
        while said.get("state") != "failed":
            assert time.monotonic() < deadline, f"the page did not come back to say why; it said {said}"
            said = progress(port, proof)
            time.sleep(0.1)
        assert "Jupyter did not start" in said["error"], said
        record = lab.tunnel_record("nb")
        assert (record["state"], record["local_port"]) == ("asleep", port)
        assert record["reason"].startswith("the start failed: "), record
    finally:
        jupyter.unlink(missing_ok=True)
        real.rename(jupyter)
    lab.inv("up", "--host", "nb", "--no-browser")  # as it was, for the tests after this one


# -- a cloud VM stopped behind the keeper's back ---------------------------------------------


@pytest.mark.parametrize(
    "end, state, reason, title",
    [
        ("stop_instances", "asleep", "VM stopped", "aws is asleep"),
        ("terminate_instances", "gone", "VM gone", "aws is deleted"),
    ],
)
def test_a_vm_the_cloud_says_is_stopped_or_gone_puts_the_keeper_to_sleep(
    moto, ec2, user, sshd, end, state, reason, title
):
    """An aws profile on moto whose SSH goes to the sshd fixture (address:): after `up`, the VM
    is stopped (or terminated) in EC2 and its sshd no longer answers; the keeper asks the cloud,
    and its port serves the asleep page naming the VM's size and region instead of exiting."""
    from aws_world import REGION, aws_env, labvm_instances

    lab = Lab.create()
    lab.extra_env.update(aws_env(moto), LABVM_OWNER="keeper")
    ami = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    profile = ssh_profile(
        user,
        sshd,
        provider="aws",
        region=REGION,
        instance_type="t3.small",
        image=ami,
        ssh_cidr="127.0.0.1/32",
        autostop="off",
    )
    lab.write_hosts({"aws": profile})
    laptop = Laptop(lab, profile["notebook"]["port"])
    try:
        url = url_of(lab.inv("up", "--host", "aws", "--no-browser").output)
        port = int(re.search(r"127\.0\.0\.1:(\d+)/", url).group(1))
        [instance] = labvm_instances(ec2, "running")
        getattr(ec2, end)(InstanceIds=[instance["InstanceId"]])
        # Its sshd goes with it: the alias now leads to a port where nothing listens.
        config = lab.ssh_dir / "labvm" / "config"
        config.write_text(config.read_text().replace(f"Port {sshd.port}\n", f"Port {free_port()}\n"))
        record = lab.tunnel_record("aws")
        os.kill(record["ssh_pid"], signal.SIGKILL)  # the connection drops as the VM powers off
        laptop.wait_until(lambda: lab.tunnel_record("aws")["state"] == state, f"the keeper to be {state}", 90)
        asleep = lab.tunnel_record("aws")
        assert (asleep["reason"], asleep["keeper_pid"], asleep["local_port"]) == (reason, record["keeper_pid"], port)
        status, _, body = get(port, "/lab")
        page = body.decode()
        assert status == 200 and all(word in page for word in (title, "t3.small", REGION, reason)), page
        assert ('id="start"' in page) == (state == "asleep")  # no start for a deleted VM
        assert fetch(port, "/api/kernels")[0] == 503
    finally:
        lab.inv("tunnel", "--host", "aws", "--stop", check=False)
        lab.inv("terminate", "--host", "aws", "--yes", "--force", "--no-sync", check=False)
        user.end_processes()
        shutil.rmtree(lab.directory, ignore_errors=True)
        urllib.request.urlopen(urllib.request.Request(f"{moto}/moto-api/reset", method="POST"), timeout=10)


def test_every_move_the_keepers_above_made_is_in_the_table(laptop):
    """protocol.TRANSITIONS is the keeper's state machine: a move it does not list is logged as a
    fault; the keepers of this module's tests (their logs kept across them) made none."""
    from labvm.keeper.protocol import TRANSITIONS, State

    assert set(TRANSITIONS) == set(State) and TRANSITIONS[State.FAILED] == frozenset()
    log = laptop.log()
    assert "asked to sleep" in log and "asked to reconnect now" in log  # control: the moves were made
    assert "is not a transition it makes" not in log
