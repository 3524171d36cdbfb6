"""The kept tunnel against faults made for real: "the VM" is a network namespace with its own
address, sshd and link (tests/netns.py); Jupyter runs inside it (the SSH session is inside).

Proxy variables point at a dead port on both sides all along: on the laptop (the `inv`
environment, which the keeper inherits) and on the VM (sshd's SetEnv, so every session and the
scripts it runs have them).  After each fault the URL answers again with no `inv` command, or
`inv up` repairs it at once; no stray ssh is ever left; `tunnel --stop` leaves no labvm process.
"""

import os
import signal
import subprocess
import time

import pytest

from netns import kept_vm
from realhost import Squatter, ended, free_port

DEAD_PROXY = f"http://127.0.0.1:{free_port()}"  # nothing listens there
PROXIES = {"http_proxy": DEAD_PROXY, "https_proxy": DEAD_PROXY, "HTTP_PROXY": DEAD_PROXY, "HTTPS_PROXY": DEAD_PROXY}
HEAL_WITHIN = 10  # seconds from the network's return to an authorised answer (the target)


@pytest.fixture(scope="module")
def vm(user, sshd, tmp_path_factory):
    with kept_vm(user, sshd, tmp_path_factory, "vm", PROXIES) as kept:
        yield kept


def test_up_leaves_a_detached_keeper_and_proxies_reach_both_sides(vm):
    assert vm.answers()
    record = vm.record()
    assert record["state"] == "up"
    keeper = record["keeper_pid"]
    assert os.getsid(keeper) == keeper  # its own session: closing the terminal does not end it
    vm.assert_one_tunnel()
    # The proxy variables really reach the VM's non-interactive sessions (and so labvm's scripts).
    env = vm.lab.ssh("labvm-vm", "env").stdout
    assert f"http_proxy={DEAD_PROXY}" in env


def test_kill_9_of_the_ssh_heals_without_a_command(vm):
    old = vm.record()["ssh_pid"]
    os.kill(old, signal.SIGKILL)
    vm.seconds_until_answering(HEAL_WITHIN)
    # The new ssh may answer a moment before the keeper has written it down.
    deadline = time.monotonic() + HEAL_WITHIN
    while vm.record()["ssh_pid"] == old and time.monotonic() < deadline:
        time.sleep(0.05)
    assert vm.record()["ssh_pid"] != old
    vm.assert_one_tunnel()


def test_a_stalled_ssh_is_replaced_by_up(vm):
    stalled = vm.record()["ssh_pid"]
    os.kill(stalled, signal.SIGSTOP)  # alive, listening, forwarding nothing: what -O check calls healthy
    try:
        assert not vm.answers()
        started = time.monotonic()
        again = vm.lab.inv("up", "--host", "vm", "--no-browser")
        assert time.monotonic() - started < 40
        assert "replacing its ssh" in again.stdout
        assert f"{vm.base}/lab?token={vm.token}" in again.stdout
        assert vm.answers()
    finally:
        try:
            os.kill(stalled, signal.SIGCONT)
        except ProcessLookupError:
            pass
    assert vm.record()["ssh_pid"] != stalled
    vm.assert_one_tunnel()


def test_a_killed_keeper_is_cleared_by_the_next_up(vm):
    record = vm.record()
    os.kill(record["keeper_pid"], signal.SIGKILL)
    while not ended(record["keeper_pid"]):
        time.sleep(0.05)
    assert not vm.answers()  # the URL's sockets went with it; its ssh is an orphan
    assert not ended(record["ssh_pid"])
    up = vm.lab.inv("up", "--host", "vm", "--no-browser")
    assert f"{vm.base}/lab?token={vm.token}" in up.stdout  # same local port
    assert ended(record["ssh_pid"])  # the orphan was ended, not left beside the new one
    assert vm.record()["keeper_pid"] != record["keeper_pid"]
    vm.assert_one_tunnel()


def test_sshd_restarted_keeps_or_heals_the_tunnel(vm):
    vm.host.restart_sshd(end_sessions=False)  # `systemctl restart ssh`: sessions stay
    assert vm.answers()
    old = vm.record()["ssh_pid"]
    vm.host.restart_sshd(end_sessions=True)  # a crash: every connection dies
    vm.seconds_until_answering(HEAL_WITHIN)
    assert vm.record()["ssh_pid"] != old
    vm.assert_one_tunnel()


def test_stale_control_socket_and_old_ssh_are_cleared_and_others_untouched(vm):
    """What the ControlMaster design left after a kill -9: a socket file and background ssh."""
    config = str(vm.lab.ssh_dir / "config")
    sock = vm.lab.ssh_dir / "labvm" / "run" / "vm.sock"
    port, mine_port = free_port(), free_port()
    old_master = [
        "ssh",
        "-F",
        config,
        "-f",
        "-N",
        "-M",
        "-S",
        str(sock),
        "-o",
        "BatchMode=yes",
        "-L",
        f"127.0.0.1:{port}:127.0.0.1:{vm.record()['remote_port']}",
        "labvm-vm",
    ]
    subprocess.run(old_master, check=True, stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
    master = subprocess.run(["pgrep", "-f", "--", f"-S {sock}"], capture_output=True, text=True).stdout.split()
    os.kill(int(master[0]), signal.SIGKILL)
    assert sock.exists()
    # The old `up` then started a plain client ("disabling multiplexing") on the next port.
    subprocess.run(
        [*old_master[:-3], "-L", f"127.0.0.1:{free_port()}:127.0.0.1:1", "labvm-vm"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=30,
    )
    # The user's own forward to the same alias is not labvm's.
    users = subprocess.Popen(
        ["ssh", "-F", config, "-N", "-o", "BatchMode=yes", "-L", f"127.0.0.1:{mine_port}:127.0.0.1:22", "labvm-vm"],
        stdin=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert "tunnel: closed" in vm.lab.inv("tunnel", "--host", "vm", "--stop").stdout
        assert not sock.exists()
        assert vm.labvm_processes() == [f"{users.pid} {' '.join(users.args)}"]
        up = vm.lab.inv("up", "--host", "vm", "--no-browser")
        assert f"{vm.base}/lab?token={vm.token}" in up.stdout
        vm.assert_one_tunnel()
    finally:
        users.terminate()
        users.wait()


def test_total_loss_for_60s_then_180s_while_another_user_tries_to_take_the_port(vm, neighbour):
    """While the link is gone, ssh ends and starts again and again; another user of the laptop tries
    to bind the URL's port (127.0.0.1 and ::1) all along, as a squatter would: the keeper holds it
    throughout, and nothing the browser (or `inv up`) sends ever reaches the squatter."""
    with Squatter(neighbour, vm.local_port) as squatter:
        for seconds in (60, 180):
            vm.host.drop_all()
            lost = time.monotonic()
            try:
                while vm.record()["state"] == "up":  # keep-alives notice within 45 s
                    assert time.monotonic() - lost < 45, vm.keeper_log()[-1500:]
                    time.sleep(0.5)
                assert vm.record()["state"] == "reconnecting"
                time.sleep(max(0.0, seconds - (time.monotonic() - lost)))
            finally:
                vm.host.restore()
            healed = vm.seconds_until_answering(30)
            assert healed <= HEAL_WITHIN, (
                f"after {seconds}s of loss the tunnel answered {healed:.1f}s after the network"
            )
            vm.assert_one_tunnel()
        up = vm.lab.inv("up", "--host", "vm", "--no-browser")
        assert f"{vm.base}/lab?token={vm.token}" in up.stdout
        assert squatter.bound() == [] and squatter.requests() == [], squatter.noted()


def test_stop_leaves_no_labvm_process(vm):
    assert "tunnel: closed" in vm.lab.inv("tunnel", "--host", "vm", "--stop").stdout
    assert vm.labvm_processes() == []
    assert not (vm.lab.ssh_dir / "labvm" / "run" / "vm.json").exists()
    assert not vm.answers()
    assert "tunnel: none was open" in vm.lab.inv("tunnel", "--host", "vm", "--stop").stdout
