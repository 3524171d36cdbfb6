"""The keeper's control socket: 127.0.0.1, a port of its own, one line in, one line out
(labvm.keeper.protocol).  Another user of the laptop can connect too (a loopback port is open to
all): without the secret from the 0600 record nothing happens, and a caller that sends slowly
holds only its own connection, for CONTROL_TIMEOUT at most.  Commands are carried out one at a
time."""

from __future__ import annotations

import hmac
import secrets
import socket
import threading
import time
from typing import Callable

from .protocol import CONTROL_TIMEOUT, read_line

CALLERS = 8  # control connections served at once; beyond, a new one is closed unanswered
# What a command is: (the answer line, what to do once it is sent); the keeper's `command`.
Handle = Callable[[str], "tuple[str, Callable[[], None] | None]"]


class Control:
    """The keeper's control socket on 127.0.0.1: one line per connection, the secret first (protocol.tell)."""

    def __init__(self, handle: Handle, log: Callable[[str], None]):
        self.handle, self.log = handle, log
        self.secret = secrets.token_urlsafe(32)
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.wrong_said = False
        self.callers = threading.BoundedSemaphore(CALLERS)
        self.one_at_a_time = threading.Lock()

    def serve(self) -> None:
        """Accepts callers until closed, each in its own thread with a deadline (a slow caller delays no other)."""
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:  # closed: the keeper ends
                return
            if not self.callers.acquire(blocking=False):
                conn.close()
                continue
            threading.Thread(target=self.answer, args=(conn,), daemon=True).start()

    def answer(self, conn: socket.socket) -> None:
        """One caller's line checked (secret, command) and answered; what it asks is done after the answer."""
        try:
            with conn:
                line = read_line(conn, time.monotonic() + CONTROL_TIMEOUT)
                secret, _, request = line.partition(" ")
                if not hmac.compare_digest(secret.encode(), self.secret.encode()):
                    if not self.wrong_said:
                        self.wrong_said = True
                        self.log("control: a request with a wrong secret was ignored (said once)")
                    return
                with self.one_at_a_time:
                    answer, then = self.handle(request)
                    try:
                        conn.sendall(f"{answer}\n".encode())
                    except OSError:  # the caller left: what it asked is done all the same
                        pass
                    if then:  # after the answer: `end` ends the process
                        then()
        except OSError:  # a caller too slow, or gone
            pass
        finally:
            self.callers.release()

    def close(self) -> None:
        """No more callers."""
        self.server.close()
