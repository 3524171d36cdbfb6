"""Another user of the laptop (a lab's shared workstation): a login of its own that can bind any
free loopback port and connect to any bound one.  It must never take the URL's port, start the
VM, or read a token, at any moment of the URL's life.

The user is root (the test process); the neighbour is a throwaway Unix user (tests/conftest.py)
whose requests are made by its own processes (`su`), so the kernel, not the test, says what it
may do.  Behind the URL a real Jupyter on "the VM" (the loopback sshd); the faults of a real
network (a link cut while a squatter binds in a loop) are in tests/test_keeper.py and
tests/test_browser.py, on a VM in a network namespace.
"""

from __future__ import annotations

import json
import re
import shlex
import socket
import subprocess
import threading
import time

import pytest

from labvm.tunnel import NotOurs, wait_until_answering
from realhost import Squatter, lab_after_up, put_to_sleep, url_of

ASKS = r"""
import json, sys, urllib.request
port, what = int(sys.argv[1]), sys.argv[2]
loopback = urllib.request.build_opener(urllib.request.ProxyHandler({}))
def ask(path, data=None, headers={}):
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, headers={
        "Sec-Fetch-Dest": "document", **headers}, method="POST" if data else "GET")
    try:
        with loopback.open(request, timeout=30) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
if what == "page":
    print(json.dumps(ask("/lab")))
elif what == "start":
    print(json.dumps(ask("/.labvm/start", json.dumps({"proof": sys.argv[3]}).encode(), {
        "Content-Type": "application/json", "Origin": f"http://127.0.0.1:{port}"})))
elif what == "progress":
    print(json.dumps(ask("/.labvm/progress", headers={"X-Labvm-Proof": sys.argv[3]})))
elif what == "control":
    import socket
    with socket.create_connection(("127.0.0.1", int(sys.argv[3])), timeout=10) as c:
        c.sendall(f"{sys.argv[4]} sleep taken over\n".encode())
        c.settimeout(10)
        print(json.dumps([0, c.recv(100).decode()]))
"""


class Neighbour:
    """What the neighbour's own processes get from the laptop's ports."""

    def __init__(self, user, port: int):
        self.user, self.port = user, port
        self.script = user.home / "asks.py"
        self.script.write_text(ASKS)

    def ask(self, what: str, *words: str) -> tuple[int, str]:
        done = subprocess.run(
            [
                "su",
                "-s",
                "/bin/sh",
                self.user.name,
                "-c",
                "exec python3 " + shlex.join([str(self.script), str(self.port), what, *words]),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return tuple(json.loads(done.stdout))


@pytest.fixture(scope="module")
def lab_up(user, sshd):
    with lab_after_up(user, sshd) as (lab, url):
        yield lab, url


def port_of(url: str) -> int:
    return int(re.search(r"127\.0\.0\.1:(\d+)/", url).group(1))


def test_the_neighbour_gets_a_page_without_start_no_start_and_no_token(lab_up, neighbour):
    lab, url = lab_up
    port = port_of(url)
    neighbour_asks = Neighbour(neighbour, port)
    put_to_sleep(lab, "nb")
    record = lab.tunnel_record("nb")

    status, page = neighbour_asks.ask("page")
    assert status == 200 and "The lab of profile nb is asleep" in page  # an ssh profile: only Jupyter stopped
    assert "hidden disabled>Start" in page  # shown only to a browser with the proof
    for guess in ("", "x" * 43, record["control_secret"][:43]):
        status, said = neighbour_asks.ask("start", guess)
        assert (status, json.loads(said)["reason"]) == (403, "proof")
    status, said = neighbour_asks.ask("progress", "")
    assert json.loads(said) == {"asleep": True, "state": "idle", "proven": False}
    # The control socket is open to the neighbour too; without the 0600 record's secret, nothing.
    neighbour_asks.ask("control", str(record["control_port"]), "guess")
    assert lab.tunnel_record("nb")["state"] == "asleep"
    assert "a request with a wrong secret was ignored" in (lab.ssh_dir / "labvm" / "run" / "nb.log").read_text()

    # The user's own Start, while the neighbour asks for its progress all along: never a URL.
    proof = (lab.ssh_dir / "labvm" / "run" / "nb.proof").read_text()
    seen: list[str] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            seen.append(neighbour_asks.ask("progress", "")[1])

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        request = [
            "curl",
            "-s",
            "-X",
            "POST",
            f"http://127.0.0.1:{port}/.labvm/start",
            "-H",
            "Content-Type: application/json",
            "-H",
            f"Origin: http://127.0.0.1:{port}",
            "--data",
            json.dumps({"proof": proof}),
        ]
        assert json.loads(subprocess.run(request, capture_output=True, text=True, check=True).stdout)["started"]
        deadline, ours = time.monotonic() + 300, {}
        while ours.get("state") != "ready":
            assert time.monotonic() < deadline and ours.get("state") != "failed", ours
            ours = json.loads(
                subprocess.run(
                    ["curl", "-s", f"http://127.0.0.1:{port}/.labvm/progress", "-H", f"X-Labvm-Proof: {proof}"],
                    capture_output=True,
                    text=True,
                ).stdout
            )
            time.sleep(0.2)
    finally:
        stop.set()
        watcher.join()
    new_token = ours["url"].split("token=")[1]
    assert len(seen) >= 3 and not any(new_token in said or "token" in said for said in seen), seen
    assert {json.loads(said)["proven"] for said in seen} == {False}


def test_a_token_goes_only_to_the_process_labvm_started(lab_up, neighbour):
    """Whatever listens on a port labvm is about to send a token to must be labvm's own process."""
    lab, url = lab_up
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        taken = probe.getsockname()[1]
    with Squatter(neighbour, taken) as squatter:
        deadline = time.monotonic() + 10
        while "127.0.0.1" not in squatter.bound():
            assert time.monotonic() < deadline
            time.sleep(0.02)
        keeper = lab.tunnel_record("nb")["keeper_pid"]
        with pytest.raises(NotOurs, match="another program than labvm's"):
            wait_until_answering(taken, "the-users-token", keeper, timeout=5)
        assert not any("the-users-token" in request for request in squatter.requests())
    # control: the same call to the keeper's own port
    lab.inv("up", "--host", "nb", "--no-browser")
    record = lab.tunnel_record("nb")
    token = url_of(lab.inv("up", "--host", "nb", "--no-browser").output).split("token=")[1]
    wait_until_answering(record["local_port"], token, record["keeper_pid"], timeout=30)


def test_the_keepers_port_is_held_on_both_loopback_addresses_while_it_sleeps_and_wakes(lab_up, neighbour):
    lab, url = lab_up
    port = port_of(url)
    with Squatter(neighbour, port) as squatter:
        put_to_sleep(lab, "nb")
        lab.inv("up", "--host", "nb", "--no-browser")  # wakes it: ssh carries the port again
        assert lab.tunnel_record("nb")["state"] == "up"
        assert squatter.bound() == [] and squatter.requests() == []
