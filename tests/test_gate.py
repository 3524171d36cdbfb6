"""The gate (labvm/gate.py): the URL's sockets, held for good, relaying to the lab or answering itself.

Real sockets on loopback: behind the gate a stand-in lab (a small HTTP/1.1 server of the test's,
keep-alive, uploads, a large download, an upgrade to a raw echo, a chunked upload), reached the
way the keeper reaches ssh's forward: a fresh connection per client connection.  Clients are
http.client and raw sockets, sending what browsers and attackers send.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import socket
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from labvm import gate, http1, platforms
from labvm.gate import Gate
from labvm.http1 import Request, Response
from realhost import Squatter

BIG = 64 << 20  # bytes of the large download and upload


class StandInLab:
    """HTTP/1.1 with keep-alive: GET /big?n=N sends N bytes; POST /echo answers its body's sha256
    and length; GET /upgrade answers 101 and echoes raw bytes; a chunked POST gets the raw bytes
    of its body back, as they came."""

    def __init__(self):
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.requests = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self.server.close()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        with connection, connection.makefile("rb") as reader:
            while head := self._head(reader):
                self.requests += 1
                method, target, _ = head[0].split(" ")
                headers = dict(line.split(": ", 1) for line in head[1:])
                headers = {name.lower(): value for name, value in headers.items()}
                if target == "/upgrade":
                    connection.sendall(
                        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n"
                    )
                    while data := reader.read1(65536):
                        connection.sendall(data)
                    return
                if headers.get("transfer-encoding") == "chunked":
                    raw = b""
                    while not raw.endswith(b"0\r\n\r\n"):
                        raw += reader.read1(65536)
                    self._answer(connection, raw)
                    continue
                body = reader.read(int(headers.get("content-length", "0")))
                if target.startswith("/big?n="):
                    count = int(target.split("=")[1])
                    connection.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {count}\r\n\r\n".encode())
                    chunk = bytes(range(256)) * 4096
                    while count:
                        count -= connection.send(chunk[: min(count, len(chunk))])
                    continue
                self._answer(
                    connection,
                    json.dumps(
                        {
                            "method": method,
                            "target": target,
                            "length": len(body),
                            "sha256": hashlib.sha256(body).hexdigest(),
                        }
                    ).encode(),
                )

    @staticmethod
    def _head(reader) -> list[str] | None:
        lines = []
        while (line := reader.readline()) not in (b"\r\n", b""):
            lines.append(line.decode().rstrip("\r\n"))
        return lines or None

    @staticmethod
    def _answer(connection: socket.socket, body: bytes) -> None:
        connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nX-Lab: yes\r\n\r\n%s" % (len(body), body))


class Routes:
    """The keeper's side, as the tests set it: /.labvm/ answered, a page while `asleep`, else the lab."""

    def __init__(self, lab: StandInLab):
        self.lab, self.asleep, self.forward = lab, False, True
        self.own_calls: list[Request] = []

    def own(self, request: Request):
        if not request.path.startswith("/.labvm/"):
            return None

        def answer(whole: Request) -> Response:
            self.own_calls.append(whole)
            return Response(200, json.dumps({"own": whole.path, "body": whole.body.decode()}).encode())

        return answer

    def page(self, request: Request) -> Response | None:
        return Response(503, b'{"reason": "asleep"}\n') if self.asleep else None

    def upstream(self, wait: float) -> socket.socket | None:
        if self.asleep or not self.forward:  # as the keeper: no forward while asleep
            return None
        return socket.create_connection(("127.0.0.1", self.lab.port))

    def unavailable(self) -> Response:
        return Response(503, b'{"reason": "reconnecting"}\n')


@pytest.fixture(scope="module")
def lab():
    lab = StandInLab()
    yield lab
    lab.close()


@pytest.fixture(params=["platform's pump", "copy pump"])
def gate_of(request, lab):
    """A gate on a free port in front of the stand-in lab, with the platform's pump (splice on
    Linux) and with the portable one (what macOS and Windows use)."""
    pump = platforms.socket_pump() if request.param == "platform's pump" else platforms._copy_pump
    routes = Routes(lab)
    front = Gate(0, routes, pump)
    yield front, routes
    front.close()


def ask(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict | None = None,
    connection: http.client.HTTPConnection | None = None,
) -> tuple[int, dict, bytes]:
    connection = connection or http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request(method, path, body=body, headers=headers or {})
    response = connection.getresponse()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()


# -- the relay ------------------------------------------------------------------------------


def test_requests_on_one_connection_reach_the_lab_whole_bodies_included(gate_of):
    front, _ = gate_of
    connection = http.client.HTTPConnection("127.0.0.1", front.port, timeout=30)
    upload = bytes(range(256)) * (BIG // 256)
    for method, path, body in (("GET", "/a", None), ("POST", "/echo", upload), ("GET", "/b?x=1", None)):
        status, headers, answer = ask(front.port, method, path, body, connection=connection)
        seen = json.loads(answer)
        assert (status, headers["x-lab"], seen["method"], seen["target"]) == (200, "yes", method, path)
        assert (seen["length"], seen["sha256"]) == (len(body or b""), hashlib.sha256(body or b"").hexdigest())


def test_a_large_download_arrives_whole(gate_of):
    front, _ = gate_of
    status, _, body = ask(front.port, "GET", f"/big?n={BIG}")
    assert status == 200 and len(body) == BIG
    assert hashlib.sha256(body).digest() == hashlib.sha256((bytes(range(256)) * 4096) * (BIG // (256 * 4096))).digest()


def test_an_upgraded_connection_is_carried_raw_both_ways(gate_of):
    """A kernel's websocket: after the Upgrade request the gate reads no more heads."""
    front, routes = gate_of
    with socket.create_connection(("127.0.0.1", front.port), timeout=30) as client:
        client.sendall(b"GET /upgrade HTTP/1.1\r\nHost: x\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
        reader = client.makefile("rb")
        assert reader.readline().startswith(b"HTTP/1.1 101")
        while reader.readline() != b"\r\n":
            pass
        for message in (b"GET /.labvm/progress HTTP/1.1\r\n\r\n", b"\x00\xff" * 1000, b"bytes"):
            client.sendall(message)
            assert reader.read(len(message)) == message
    assert routes.own_calls == []  # a head inside the raw stream is data, not the keeper's


def test_a_chunked_body_passes_through_as_it_came(gate_of):
    front, _ = gate_of
    chunked = b"5\r\nhello\r\n1A\r\nGET /.labvm/x HTTP/1.1\r\n\r\n\r\n0\r\n\r\n"
    with socket.create_connection(("127.0.0.1", front.port), timeout=30) as client:
        client.sendall(b"POST /chunks HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked)
        response = http.client.HTTPResponse(client)
        response.begin()
        assert response.read() == chunked


def test_the_keepers_own_request_is_answered_mid_connection_and_the_connection_then_ends(gate_of):
    front, routes = gate_of
    connection = http.client.HTTPConnection("127.0.0.1", front.port, timeout=30)
    assert ask(front.port, "GET", "/lab", connection=connection)[1]["x-lab"] == "yes"
    status, headers, body = ask(
        front.port,
        "POST",
        "/.labvm/start",
        b'{"proof": "p"}',
        {"Content-Type": "application/json"},
        connection=connection,
    )
    assert (status, json.loads(body), headers["connection"]) == (
        200,
        {"own": "/.labvm/start", "body": '{"proof": "p"}'},
        "close",
    )
    assert routes.own_calls[-1].body == b'{"proof": "p"}'
    assert ask(front.port, "GET", "/lab")[1]["x-lab"] == "yes"  # a new connection goes on to the lab


def test_asleep_the_page_answers_and_no_connection_reaches_the_lab(gate_of, lab):
    front, routes = gate_of
    routes.asleep = True
    before = lab.requests
    status, headers, body = ask(front.port, "GET", "/lab")
    assert (status, json.loads(body), headers["x-frame-options"]) == (503, {"reason": "asleep"}, "DENY")
    assert ask(front.port, "GET", "/.labvm/progress")[0] == 200  # its own calls in every state
    assert lab.requests == before


def test_without_a_forward_a_request_gets_the_reason_not_a_reset(gate_of):
    front, routes = gate_of
    routes.forward = False
    status, _, body = ask(front.port, "GET", "/api/status")
    assert (status, json.loads(body)) == (503, {"reason": "reconnecting"})


# -- what a client may not do ---------------------------------------------------------------


def raw_answer(port: int, data: bytes, timeout: float = 30) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as client:
        client.sendall(data)
        client.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := client.recv(65536):
            answer += chunk
        return answer


@pytest.mark.parametrize(
    "sent, status",
    [
        (b"NOT HTTP\r\n\r\n", 400),
        (b"GET / SPDY/3\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 20\r\n\r\nx", 400),
        (b"GET / HTTP/1.1\r\n folded: header\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nX: a\nHost: smuggled\r\n\r\n", 400),  # a bare LF: a line's end to some servers
        (b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nX: \x00\r\n\r\n", 400),
        (b"GET /\x7f HTTP/1.1\r\n\r\n", 400),
        (b"GET / HTTP/1.2\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nX: " + b"a" * (http1.HEAD_LIMIT + 10) + b"\r\n\r\n", 431),
        (b"GET / HTTP/1.1\r\nHost: x\r\n", 400),  # the client ended inside its head
        (b"POST /.labvm/start HTTP/1.1\r\nContent-Length: 99999\r\n\r\n", 413),
        (b"POST /.labvm/start HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 413),
        (b"POST /.labvm/start HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
        (b"POST /.labvm/start HTTP/1.1\r\nContent-Length: 10\r\n\r\nshort", 400),
    ],
)
def test_a_request_the_gate_cannot_read_gets_one_json_line_and_nothing_is_relayed(gate_of, lab, sent, status):
    front, routes = gate_of
    before = lab.requests
    answer = raw_answer(front.port, sent)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {status} ".encode()), answer[:200]
    assert json.loads(body)["reason"] == "bad-request"
    assert lab.requests == before and routes.own_calls == []


def test_slow_clients_are_cut_off_and_hold_nobody_else_up(gate_of):
    """Slowloris: connections sending a header line every 8 s. Each is answered 408 once its
    request is REQUEST_DEADLINE old; meanwhile everyone else is answered at once."""
    front, _ = gate_of
    slow = [socket.create_connection(("127.0.0.1", front.port), timeout=60) for _ in range(16)]
    started = time.monotonic()
    for client in slow:
        client.sendall(b"GET / HTTP/1.1\r\nX-1: a\r\n")
    took = time.monotonic()
    assert ask(front.port, "GET", "/now")[0] == 200
    assert time.monotonic() - took < 2
    while time.monotonic() - started < 8:
        time.sleep(8 - (time.monotonic() - started))
    for client in slow:
        try:
            client.sendall(b"X-2: b\r\n")
        except OSError:
            pass
    for client in slow:
        answer = client.recv(65536)
        assert answer.startswith(b"HTTP/1.1 408 "), answer
        client.close()
    assert time.monotonic() - started < gate.REQUEST_DEADLINE + 3


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=st.one_of(
        st.binary(max_size=600),
        st.builds(
            lambda line, rest: line + b"\r\n" + rest + b"\r\n\r\n",
            st.sampled_from(
                [
                    b"GET / HTTP/1.1",
                    b"POST /.labvm/start HTTP/1.1",
                    b"GET /.labvm/x HTTP/1.0",
                    b"HEAD / HTTP/1.1",
                    b"GET /upgrade HTTP/1.1",
                ]
            ),
            st.binary(max_size=300),
        ),
    )
)
def test_no_bytes_a_client_sends_end_the_gate(gate_of, data):
    front, _ = gate_of
    answer = raw_answer(front.port, data, timeout=gate.REQUEST_DEADLINE + 5)
    assert answer == b"" or answer.startswith(b"HTTP/1.1 "), answer[:100]
    assert ask(front.port, "GET", "/still")[0] == 200


# -- the sockets are held ---------------------------------------------------------------------


def test_the_gate_holds_both_loopback_addresses_and_frees_them_only_at_close(lab):
    front = Gate(0, Routes(lab))
    port = front.port
    addresses = [("127.0.0.1", socket.AF_INET)] + ([("::1", socket.AF_INET6)] if gate.has_ipv6_loopback() else [])
    try:
        assert not gate.port_free(port)
        for address, family in addresses:
            with socket.socket(family) as other:
                other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                with pytest.raises(OSError):
                    other.bind((address, port))
            with socket.create_connection((address, port), timeout=10) as client:
                client.sendall(b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n")
                assert client.recv(100).startswith(b"HTTP/1.1 200")
    finally:
        front.close()
    assert gate.port_free(port)


def test_a_port_taken_on_either_address_is_no_port_for_the_gate():
    for address, family in [("127.0.0.1", socket.AF_INET)] + (
        [("::1", socket.AF_INET6)] if gate.has_ipv6_loopback() else []
    ):
        with socket.socket(family) as other:
            other.bind((address, 0))
            other.listen()
            port = other.getsockname()[1]
            assert not gate.port_free(port)
            with pytest.raises(OSError):
                Gate(port, Routes(StandInLab()))


def test_another_user_of_the_laptop_cannot_take_the_held_port_and_gets_it_once_closed(lab, neighbour):
    front = Gate(0, Routes(lab))
    with Squatter(neighbour, front.port) as squatter:
        try:
            assert ask(front.port, "GET", "/mine")[1]["x-lab"] == "yes"
            time.sleep(1)  # two hundred tries of the squatter's
            assert squatter.bound() == []
        finally:
            front.close()
        deadline = time.monotonic() + 10
        while "127.0.0.1" not in squatter.bound():  # control: a free port is anyone's
            assert time.monotonic() < deadline, squatter.noted()
            time.sleep(0.05)
