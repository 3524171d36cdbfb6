"""Requests as the keeper's gate reads them (labvm.gate): HTTP/1.x heads, strictly, each whole
within its deadline, and the answers the keeper writes itself.  The bodies and the answers the
lab writes are never read here."""

from __future__ import annotations

import re
import selectors
import socket
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qs

HEAD_LIMIT = 64 * 1024  # bytes of one request head (tornado, behind, takes as much)
HEAD_DEADLINE = 10.0  # seconds from a relayed head's first byte to its end (browsers send it at once)
RECEIVE = 1 << 18  # bytes asked of a client at once
SECURITY_HEADERS = (
    ("Cache-Control", "no-store"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
)
REASONS = {
    200: "OK",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Content Too Large",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}


class BadRequest(Exception):
    """What a client sent is no request the keeper answers (too slow, too large, not HTTP/1.x)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Request:
    """One request as the gate read it: its line, its headers, and its body when the keeper answers it."""

    method: str
    target: str
    headers: dict[str, str]  # names in lower case; each at most once
    body: bytes = b""

    @property
    def path(self) -> str:
        """The target without its query."""
        return self.target.split("?", 1)[0]

    def query(self, name: str) -> str | None:
        """The value of one query parameter; None when it is missing or given more than once."""
        values = parse_qs(self.target.partition("?")[2], keep_blank_values=True).get(name)
        return values[0] if values and len(values) == 1 else None

    def header(self, name: str, default: str | None = None) -> str | None:
        """The value of one header (its name in lower case), or `default`."""
        return self.headers.get(name, default)

    @property
    def length(self) -> int:
        """Content-Length (0 without one); BadRequest when it is not a plain number."""
        text = self.headers.get("content-length", "0").strip()
        if not (text.isascii() and text.isdigit() and len(text) < 19):
            raise BadRequest(400, "labvm: Content-Length is not a number")
        return int(text)

    @property
    def passes_through(self) -> bool:
        """A body whose end the relay does not count (chunked), or no more HTTP after it (upgrade)."""
        return "transfer-encoding" in self.headers or "upgrade" in self.headers or self.method == "CONNECT"


@dataclass(frozen=True)
class Response:
    """An answer of the keeper's own: a whole body of known length, then the connection closes."""

    status: int
    body: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = field(default=())

    def encode(self, head_only: bool = False) -> bytes:
        """The bytes sent: status line, headers (the security ones first), then the body unless head_only
        (a HEAD request)."""
        lines = [
            f"HTTP/1.1 {self.status} {REASONS.get(self.status, 'Error')}",
            f"Content-Type: {self.content_type}",
            f"Content-Length: {len(self.body)}",
            *(f"{name}: {value}" for name, value in (*SECURITY_HEADERS, *self.headers)),
            "Connection: close",
        ]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        return head if head_only else head + self.body


TOKEN_CHARACTERS = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 5.6.2: a method, a header's name
VALUE_CHARACTERS = re.compile(r"[\t\x20-\x7e\x80-\xff]*")  # RFC 9110 5.5: no control but a tab
TARGET_CHARACTERS = re.compile(r"[\x21-\x7e]+")


SINGLE = ("host", "content-length", "transfer-encoding", "upgrade")  # twice, two servers could read two requests


def parse_head(raw: bytes) -> Request:
    """A request head (its blank line included) read strictly: a request line of three parts,
    header lines `Name: value`, CRLF only (a bare CR or LF, which a server behind might read as a
    line's end, is refused: the gate and the lab see the same requests), no line folding, none of
    the headers that frame a request given twice (others given twice are one, joined by commas, as
    RFC 9110 5.3 has it); BadRequest otherwise."""
    text = raw.decode("latin-1")
    request_line, *lines = text[:-4].split("\r\n")
    parts = request_line.split(" ")
    if (
        len(parts) != 3
        or not TOKEN_CHARACTERS.fullmatch(parts[0])
        or not TARGET_CHARACTERS.fullmatch(parts[1])
        or parts[2] not in ("HTTP/1.0", "HTTP/1.1")
    ):
        raise BadRequest(400, "labvm: not an HTTP/1.x request line")
    headers: dict[str, str] = {}
    for line in lines:
        name, colon, value = line.partition(":")
        name, value = name.lower(), value.strip(" \t")
        if (
            not colon
            or not TOKEN_CHARACTERS.fullmatch(name)
            or not VALUE_CHARACTERS.fullmatch(value)
            or (name in headers and name in SINGLE)
        ):
            raise BadRequest(
                400, "labvm: a header line that is not `Name: value`, or one that frames the request twice"
            )
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return Request(parts[0], parts[1], headers)


class Stream:
    """What a client sends: heads read whole (bounded, against a deadline), the rest as it comes.
    The socket stays blocking (a timeout would make it non-blocking for the thread that relays the
    answers too): a deadline is a wait for it to become readable."""

    def __init__(self, connection: socket.socket):
        self.connection = connection
        self.buffer = bytearray()
        self.readable = selectors.DefaultSelector()
        self.readable.register(connection, selectors.EVENT_READ)

    def close(self) -> None:
        """Releases the selector; the socket is its owner's to close."""
        self.readable.close()

    def head(self, deadline: float | None) -> bytes | None:
        """The next head (with its blank line); None when the client ended before a byte of it.
        deadline: when it must be whole (time.monotonic()); None: a relayed connection between
        requests, where the client may wait as long as it likes and the deadline starts with the
        head's first byte."""
        while (end := self.buffer.find(b"\r\n\r\n", 0, HEAD_LIMIT)) < 0:
            if len(self.buffer) >= HEAD_LIMIT:
                raise BadRequest(431, f"labvm: a request head is at most {HEAD_LIMIT} bytes")
            if deadline is None and self.buffer:
                deadline = time.monotonic() + HEAD_DEADLINE
            if not self._receive(deadline):
                if self.buffer:
                    raise BadRequest(400, "labvm: the request ended inside its head")
                return None
        head = bytes(self.buffer[: end + 4])
        del self.buffer[: end + 4]
        return head

    def body(self, length: int, deadline: float) -> bytes:
        """Exactly `length` bytes of body, by the deadline; BadRequest (400) when the client ends first."""
        while len(self.buffer) < length:
            if not self._receive(deadline):
                raise BadRequest(400, "labvm: the request ended inside its body")
        body = bytes(self.buffer[:length])
        del self.buffer[:length]
        return body

    def take(self, most: int) -> bytes:
        """Up to `most` bytes, what is buffered first; b"" when the client ended."""
        if not self.buffer:
            return self.connection.recv(min(most, RECEIVE))
        data = bytes(self.buffer[:most])
        del self.buffer[:most]
        return data

    def _receive(self, deadline: float | None) -> bool:
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and (left <= 0 or not self.readable.select(left)):
            raise BadRequest(408, "labvm: the request did not arrive in time")
        chunk = self.connection.recv(RECEIVE)
        self.buffer += chunk
        return bool(chunk)
