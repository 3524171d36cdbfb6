"""Waits end: a wait for an answer that never comes gives up within its time-out, with its one line.

The case a time-out exists for: a tunnel whose keeper accepts each connection while the Jupyter behind it
never answers (a VM that hangs, a half-open SSH channel).  The wait must not hang `up` for ever.
"""

import os
import socket
import threading
import time

import pytest

from labvm.errors import LabvmError
from labvm.tunnel import wait_until_answering

TIMEOUT = 2.0
# One connection's read may run to the wait's deadline (at least 0.5 s), plus the ownership check.
SLACK = 2.5


@pytest.fixture
def silent_port():
    """A loopback port whose listener (this process, as a keeper would be) accepts and never answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])  # held open, never read or written
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join(5)
    for connection in accepted:
        connection.close()
    listener.close()


def test_a_tunnel_that_accepts_and_never_answers_ends_the_wait_within_its_timeout(silent_port):
    outcome: dict = {}

    def wait() -> None:
        started = time.monotonic()
        try:
            wait_until_answering(silent_port, "the-token", os.getpid(), timeout=TIMEOUT)
        except LabvmError as error:
            outcome["error"] = str(error)
        outcome["took"] = time.monotonic() - started

    # In a thread: a wait that never ends fails this test instead of hanging the suite.
    waiting = threading.Thread(target=wait, daemon=True)
    waiting.start()
    waiting.join(TIMEOUT + SLACK + 10)
    assert not waiting.is_alive(), f"the {TIMEOUT:.0f}s wait had not ended after {TIMEOUT + SLACK + 10:.0f}s"
    assert outcome["took"] < TIMEOUT + SLACK, outcome
    assert outcome.get("error") == f"tunnel: Jupyter did not answer on 127.0.0.1:{silent_port} (timed out)"
