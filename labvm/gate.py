"""The URL's sockets: 127.0.0.1:PORT and [::1]:PORT are the keeper's for the URL's whole life.

A loopback port is open to every user of the laptop, and a port freed for a moment (an ssh
reconnecting, a page handing over) can be taken by another: the browser then sends that origin's
cookies and tokens to the taker, and a service worker the taker registers there outlives it.  So
the keeper binds the URL's sockets once, when the profile's tunnel opens, and holds them until the
tunnel is closed for good; what answers behind them follows the keeper's state (labvm.keeper):
its own answers (labvm.asleep: the asleep page and its calls under /.labvm/, which every state
answers), or a relay to the keeper's ssh over a path no other user can open.

The relay reads the heads of the requests a client sends (never a body, never an answer), so
that the keeper can answer some itself (`own`); a body of known length, a chunked body and an
upgraded connection (a kernel's websocket) pass through untouched; a head it cannot read as
HTTP/1.x is refused, so that the lab behind never reads a request the gate did not see.

Every connection has deadlines of its own: a request the keeper answers must arrive whole within
REQUEST_DEADLINE of the connection, a head within HEAD_DEADLINE of its first byte (a client that
sends a line every few seconds is cut off, and holds none of the others up).

Standard library only: the keeper runs on every laptop labvm supports.
"""

from __future__ import annotations

import json
import logging
import queue
import socket
import sys
import threading
import time
from typing import Callable, Protocol

from . import platforms
from .http1 import HEAD_DEADLINE, BadRequest, Request, Response, Stream, parse_head
from .text import clean

log = logging.getLogger(__name__)

BODY_LIMIT = 4096  # bytes of a body the keeper reads itself (a Start's is ~70)
REQUEST_DEADLINE = 10.0  # seconds from a connection to the whole of a request the keeper answers
HOLD = 20.0  # seconds a request waits for the forward (ssh reconnecting) before it is answered 503
CONNECTIONS = 256  # at once; beyond, a new connection is closed unanswered
UPSTREAM_END_WAIT = 30.0  # seconds for the lab to finish answering a client that stopped sending
ACCEPT_BACKLOG = 128


Handler = Callable[[Request], Response]


class Routes(Protocol):
    """The keeper's side: who answers a request, by the keeper's state at that moment."""

    def own(self, request: Request) -> Handler | None:
        """What answers a request that is the keeper's own in any state, relayed or not (/.labvm/,
        given the request again with its body); None: not the keeper's."""

    def page(self, request: Request) -> Response | None:
        """The answer while no lab is behind the port (asleep); None while there is one."""

    def upstream(self, wait: float) -> socket.socket | None:
        """A connection to the lab through the keeper's ssh, waiting at most `wait` seconds for
        the forward; None when there is none to give (its reason in unavailable())."""

    def unavailable(self) -> Response:
        """The answer when upstream() gave none."""


class Gate:
    """The URL's sockets, bound once; each connection served in a thread of its own."""

    def __init__(self, port: int, routes: Routes, pump: Callable[[socket.socket, socket.socket], None] | None = None):
        self.routes = routes
        self.pump = pump or platforms.socket_pump()
        self.listeners = bind_url_sockets(port)
        self.port = self.listeners[0].getsockname()[1]
        self.slots = threading.BoundedSemaphore(CONNECTIONS)
        self.workers = Workers(2 * CONNECTIONS)
        self.closing = threading.Event()
        self.threads = [
            threading.Thread(target=self._accept, args=(listener,), daemon=True, name=f"labvm-gate-{self.port}")
            for listener in self.listeners
        ]
        for thread in self.threads:
            thread.start()

    def close(self) -> None:
        """Stops accepting; the port is free on return (only when the URL ends for good)."""
        self.closing.set()
        for listener in self.listeners:
            try:
                listener.shutdown(socket.SHUT_RDWR)  # wakes accept() on Linux; close() alone does not
            except OSError:
                pass
            listener.close()
        for thread in self.threads:
            thread.join(5)

    def _accept(self, listener: socket.socket) -> None:
        while not self.closing.is_set():
            try:
                connection, _ = listener.accept()
            except OSError as error:
                if self.closing.is_set():
                    return
                log.warning("gate on port %d: %s", self.port, clean(str(error)))
                self.closing.wait(0.1)  # out of file descriptors, say: a moment rather than a spin
                continue
            if not self.slots.acquire(blocking=False):
                connection.close()
                continue
            self.workers.run(self._serve, connection)

    def _serve(self, connection: socket.socket) -> None:
        try:
            with connection:
                connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                Exchange(connection, self.routes, self.pump, self.workers).run()
        except OSError:  # the client left, a reset: that connection only
            pass
        except Exception as error:  # a fault of the keeper's must not end the gate
            log.warning("gate on port %d: %s", self.port, clean(repr(error)))
        finally:
            self.slots.release()


class Workers:
    """Daemon threads that take work from one queue, made as needed (at most `most`) and kept:
    a new connection costs a wake-up, not a thread's start.  Daemons: a connection left open
    never keeps the keeper from ending."""

    def __init__(self, most: int):
        self.most, self.made, self.idle = most, 0, 0
        self.work: queue.SimpleQueue = queue.SimpleQueue()
        self.lock = threading.Lock()

    def run(self, task: Callable, *args) -> None:
        """Hands task(*args) to an idle thread, or to a new one while fewer than `most` were made."""
        with self.lock:
            more = self.idle == 0 and self.made < self.most
            if more:
                self.made += 1
            else:
                self.idle -= 1
        self.work.put((task, args))
        if more:
            threading.Thread(target=self._work, daemon=True, name="labvm-gate").start()

    def _work(self) -> None:
        while True:
            task, args = self.work.get()
            try:
                task(*args)
            except Exception as error:  # a fault of the keeper's must not end the gate
                log.warning("gate: %s", clean(repr(error)))
            with self.lock:
                self.idle += 1


class Exchange:
    """One client connection: its first request decides who answers; a relayed one is read on for
    the requests the keeper answers itself (own)."""

    def __init__(
        self,
        client: socket.socket,
        routes: Routes,
        pump: Callable[[socket.socket, socket.socket], None],
        workers: Workers,
    ):
        self.client, self.routes, self.pump, self.workers = client, routes, pump, workers
        self.stream = Stream(client)

    def run(self) -> None:
        """Serves the connection until either side ends it; the stream is closed whatever happens."""
        try:
            self._run()
        finally:
            self.stream.close()

    def _run(self) -> None:
        # The lab's side is opened at once, while the request is on its way (as ssh -L does: the
        # channel's round trip to the VM is not added to the first request's); closed unused
        # when the keeper answers the request itself.
        upstream = self._upstream(0)
        try:
            deadline = time.monotonic() + REQUEST_DEADLINE
            try:
                raw = self.stream.head(deadline)
                if raw is None:
                    return
                request = parse_head(raw)
                answer = self._answer(request, deadline)
                if answer is None:
                    answer = self.routes.page(request)
                if answer is not None:
                    self._send(request, answer)
                    return
                upstream = upstream or self._upstream(HOLD)
                if upstream is None:
                    self._send(request, self.routes.unavailable())
                    return
            except BadRequest as error:
                self._refuse(error)
                return
            self._relay(upstream, raw, request)
        finally:
            if upstream:
                upstream.close()

    def _upstream(self, wait: float) -> socket.socket | None:
        try:
            return self.routes.upstream(wait)
        except OSError:  # the forward went away as it was asked
            return None

    def _answer(self, request: Request, deadline: float) -> Response | None:
        """The keeper's own answer (its body read first, by the deadline), or None."""
        handler = self.routes.own(request)
        if handler is None:
            return None
        if "transfer-encoding" in request.headers:
            raise BadRequest(413, "labvm: a request to labvm needs a Content-Length")
        if request.length > BODY_LIMIT:
            raise BadRequest(413, f"labvm: a request to labvm has a body of at most {BODY_LIMIT} bytes")
        body = self.stream.body(request.length, deadline)
        return handler(Request(request.method, request.target, request.headers, body))

    def _relay(self, upstream: socket.socket, raw: bytes, request: Request) -> None:
        answered = threading.Event()
        self.workers.run(self._answers, upstream, answered)
        try:
            self._carry(upstream, raw, request)
        except (OSError, BadRequest):
            pass  # the connection ends: the browser opens another
        finally:
            _shutdown(upstream, socket.SHUT_WR)
            if not answered.wait(UPSTREAM_END_WAIT):
                _shutdown(upstream, socket.SHUT_RDWR)  # a lab (or ssh) that never ends its answer
                answered.wait()

    def _answers(self, upstream: socket.socket, answered: threading.Event) -> None:
        """The lab's answers to the client as they come; once they end, so does the connection
        (the client's side too: a client that never closes holds nothing)."""
        try:
            self.pump(upstream, self.client)
            _shutdown(self.client, socket.SHUT_RDWR)
        finally:
            answered.set()

    def _carry(self, upstream: socket.socket, raw: bytes, request: Request) -> None:
        """The client's requests to the lab: each head read and passed on whole, its body counted
        through; the keeper's own requests answered (and the connection then closed)."""
        while True:
            upstream.sendall(raw)
            if request.passes_through:
                break
            self._pass_body(upstream, request.length)
            following = self.stream.head(None)
            if following is None:
                return
            raw = following
            try:
                request = parse_head(raw)
            except BadRequest as error:  # refused, as the first request would be: the lab sees what the gate read
                self._refuse(error)
                return
            answer = self._answer(request, time.monotonic() + HEAD_DEADLINE)
            if answer is not None:
                self._send(request, answer)
                self.client.shutdown(socket.SHUT_RDWR)
                return
        while data := self.stream.take(1 << 18):
            upstream.sendall(data)

    def _pass_body(self, upstream: socket.socket, length: int) -> None:
        while length:
            data = self.stream.take(length)
            if not data:
                raise OSError("the client ended inside a body")
            upstream.sendall(data)
            length -= len(data)

    def _send(self, request: Request, answer: Response) -> None:
        self.client.sendall(answer.encode(head_only=request.method == "HEAD"))
        _linger(self.client)

    def _refuse(self, error: BadRequest) -> None:
        body = (json.dumps({"message": str(error), "reason": "bad-request"}) + "\n").encode()
        try:
            self.client.sendall(Response(error.status, body).encode())
            _linger(self.client)
        except OSError:
            pass


def _shutdown(connection: socket.socket, how: int) -> None:
    try:
        connection.shutdown(how)
    except OSError:
        pass


def _linger(connection: socket.socket) -> None:
    """Says the answer is complete (FIN), then reads away what the client still sends, briefly, so
    that closing does not reset the connection before the client has read the answer."""
    connection.shutdown(socket.SHUT_WR)
    deadline = time.monotonic() + 1
    received = 0
    while received < 1 << 16 and (left := deadline - time.monotonic()) > 0:
        connection.settimeout(left)
        try:
            data = connection.recv(1 << 16)
        except OSError:
            return
        if not data:
            return
        received += len(data)


def bind_url_sockets(port: int) -> list[socket.socket]:
    """127.0.0.1:port, and [::1]:port where the laptop has IPv6's loopback (a browser's
    `localhost` may go there first); OSError when either is taken."""
    sockets = [_listen(socket.AF_INET, "127.0.0.1", port)]
    port = sockets[0].getsockname()[1]
    try:
        if has_ipv6_loopback():
            sockets.append(_listen(socket.AF_INET6, "::1", port))
    except OSError:
        sockets[0].close()
        raise
    return sockets


def _listen(family: int, address: str, port: int) -> socket.socket:
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        if sys.platform == "win32":
            # Windows' SO_REUSEADDR lets another process take a bound port; this is the opposite.
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_EXCLUSIVEADDRUSE, 1)
        else:
            # As ssh binds: connections in TIME_WAIT do not keep the port busy (another user's
            # listener still does: Linux and BSD refuse a second one on a bound port).
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        listener.bind((address, port))
        listener.listen(ACCEPT_BACKLOG)
    except OSError:
        listener.close()
        raise
    return listener


def has_ipv6_loopback() -> bool:
    """Whether ::1 can be bound here (a kernel or container without IPv6 has no ::1 for anyone)."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


def free_port() -> int:
    """A loopback port nobody holds now (for a listener of labvm's own that is checked on each use)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def port_free(port: int) -> bool:
    """Both of the URL's sockets could be bound on this port now."""
    try:
        for listener in bind_url_sockets(port):
            listener.close()
    except OSError:
        return False
    return True
