"""The asleep page: what a profile's local URL answers while its VM is stopped.

The keeper holds the profile's local port for good.  While the VM is stopped it runs an
AsleepPage there instead of ssh's forward: a top-level page load gets a page that says which VM
sleeps, since when, why and at what price, with a Start button; everything else (JupyterLab's API
calls, kernels, websockets, static files) gets 503 with a JSON body, so a background tab never
starts a VM.  Start is a POST carrying this page's secret, from `127.0.0.1:PORT` or
`localhost:PORT` with the matching Origin: another web site (CSRF), another local port or a
DNS-rebinding name cannot start a VM.  After Start the page polls `/progress`, shows each step,
and once the lab answers on the port (the keeper closed this page and handed the port to ssh) it
moves into the lab by itself.

Standard library only: the keeper runs on every laptop labvm supports.
"""

from __future__ import annotations

import hmac
import html
import json
import logging
import secrets
import selectors
import socket
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler
from typing import Callable

from labvm.text import clean

log = logging.getLogger(__name__)

BODY_LIMIT = 4096  # bytes of a POST /start body; the real one is ~60
DRAIN_LIMIT = 64 * 1024  # a refused body up to this size is read away, so the client sees the answer, not a reset
LINGER = 2  # seconds a refused body of unknown size is read away after the answer
SOCKET_TIMEOUT = 10  # seconds a client may take per read or write (a slow client holds a thread no longer)
CONNECTIONS = 16  # requests served at once; beyond, a new connection is closed unanswered
PROGRESS_LINES = 200  # the last lines of progress() shown
STATES = ("idle", "starting", "ready", "failed")
# Top-level pages of JupyterLab, Notebook 7 and the classic notebook: a bookmark or an open tab.
PAGE_PREFIXES = ("/lab", "/tree", "/notebooks", "/doc", "/edit", "/consoles", "/terminals")
# Under those prefixes, what JupyterLab fetches in the background is no page.
NOT_PAGE_PREFIXES = ("/lab/api", "/lab/extensions", "/terminals/websocket")


@dataclass(frozen=True)
class PageFacts:
    profile: str
    size: str
    region: str
    stopped_at: str  # ISO 8601; UTC when it names no zone (labvm records UTC)
    why: str  # autostop's last reasons, or "stopped by inv down"
    price: str  # "" or "about $0.085/h": never a guess
    gone: bool  # the VM was deleted: nothing to start


class AsleepPage:
    """Serves the asleep page on 127.0.0.1:port in a daemon thread until close().

    `start()` must return at once (the keeper starts the VM in a thread of its own) and should
    make progress() say "starting" before it returns: a second click, or a second tab, then
    does not start twice.  `progress()` returns {"lines": [...], "state": "idle" | "starting" |
    "ready" | "failed", "url": str | None, "error": str}; it may name the lab's URL (with its
    token) as soon as it is known: the page goes there once the lab answers on this port.
    """

    def __init__(self, port: int, facts: PageFacts, start: Callable[[], None], progress: Callable[[], dict]):
        self.facts, self._start, self._progress = facts, start, progress
        self._secret = secrets.token_urlsafe(32)
        self._start_lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(CONNECTIONS)
        self._connections: dict[socket.socket, threading.Thread] = {}
        self._connections_lock = threading.Lock()
        self._closing = threading.Event()
        self._listener = _listen(port)
        self.port = self._listener.getsockname()[1]
        self.hosts = (f"127.0.0.1:{self.port}", f"localhost:{self.port}")
        self.lab_prefixes = tuple(f"http://{host}/" for host in self.hosts)
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._server = threading.Thread(target=self._serve, name=f"labvm-asleep-{self.port}", daemon=True)
        self._server.start()

    def __enter__(self) -> AsleepPage:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stops serving; on return the port is free (the keeper binds ssh's forward there)."""
        if self._closing.is_set():
            return
        self._closing.set()
        self._wake_writer.send(b"x")
        self._server.join()
        self._listener.close()
        self._wake_reader.close()
        self._wake_writer.close()
        with self._connections_lock:
            open_now = dict(self._connections)
        for connection in open_now:
            try:  # wakes a handler waiting on a slow client; its thread then closes the socket
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for thread in open_now.values():
            if thread is not threading.current_thread():
                thread.join(SOCKET_TIMEOUT)

    # -- serving ----------------------------------------------------------------------

    def _serve(self) -> None:
        """Accepts connections until close(); sleeps in select() in between (no polling)."""
        with selectors.DefaultSelector() as selector:
            selector.register(self._listener, selectors.EVENT_READ)
            selector.register(self._wake_reader, selectors.EVENT_READ)
            while True:
                for key, _ in selector.select():
                    if key.fileobj is self._wake_reader:
                        return
                    self._accept()

    def _accept(self) -> None:
        try:
            connection, address = self._listener.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return
        except OSError as error:  # out of file descriptors, say: wait a moment rather than spin
            log.warning("asleep page on port %d: %s", self.port, clean(str(error)))
            self._closing.wait(0.1)
            return
        if not self._slots.acquire(blocking=False):
            connection.close()
            return
        thread = threading.Thread(target=self._handle, args=(connection, address), daemon=True)
        with self._connections_lock:
            self._connections[connection] = thread
        thread.start()

    def _handle(self, connection: socket.socket, address) -> None:
        try:
            connection.setblocking(True)
            _Request(connection, address, self)  # type: ignore[arg-type]  # http.server needs no socketserver of it
        except Exception as error:  # a client gone mid-answer, a reset: that connection only
            log.debug("asleep page on port %d: %s", self.port, clean(repr(error)))
        finally:
            with self._connections_lock:
                self._connections.pop(connection, None)
            connection.close()
            self._slots.release()

    # -- what the page answers --------------------------------------------------------

    def asleep_message(self) -> str:
        return (f"labvm: the VM of profile {clean(self.facts.profile)} is asleep; "
                f"open http://127.0.0.1:{self.port}/ to start it")

    def secret_matches(self, offered: str) -> bool:
        return hmac.compare_digest(offered.encode("utf-8", "replace"), self._secret.encode())

    def start_once(self) -> dict:
        """Calls start() unless a start is already under way or done; says which."""
        with self._start_lock:
            state = self.progress()["state"]
            if state in ("starting", "ready"):
                return {"state": state, "started": False}
            self._start()
            return {"state": "starting", "started": True}

    def progress(self) -> dict:
        """progress() made safe to show: lines and error cleaned, the state one of four, and
        the URL kept only where it is on this port (it comes from the VM side)."""
        answer = self._progress()
        state = answer.get("state")
        url = answer.get("url")
        return {
            "lines": [clean(str(line)) for line in list(answer.get("lines") or [])[-PROGRESS_LINES:]],
            "state": state if state in STATES else "failed",
            "url": url if isinstance(url, str) and url.startswith(self.lab_prefixes) and url.isprintable()
            and " " not in url else None,
            "error": clean(str(answer.get("error") or "")) if state in STATES else f"unknown state {clean(str(state))}",
        }

    def html(self, nonce: str) -> str:
        return _page(self, nonce)


def _listen(port: int) -> socket.socket:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if sys.platform == "win32":
            # Windows' SO_REUSEADDR lets another process take a bound port; this is the opposite.
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_EXCLUSIVEADDRUSE, 1)
        else:
            # As ssh binds its forward: connections in TIME_WAIT do not keep the port busy.
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(CONNECTIONS)
        listener.setblocking(False)
    except OSError:
        listener.close()
        raise
    return listener


class _Request(BaseHTTPRequestHandler):
    """One request per connection (HTTP/1.0): nothing stays open to hold the port's hand-over."""

    server: AsleepPage  # type: ignore[assignment]  # the page, not a socketserver
    server_version = "labvm-asleep"
    timeout = SOCKET_TIMEOUT
    error_content_type = "application/json"

    def __getattr__(self, name: str):
        # http.server answers 501 to a method it finds no do_ method for; here every method
        # gets this page's answer (503 for an API call, 405 for a page).
        if name.startswith("do_"):
            return self._answer
        raise AttributeError(name)

    def version_string(self) -> str:
        return self.server_version  # no Python version for whoever asks

    def log_request(self, code="-", size="-") -> None:
        pass  # a request line may hold the lab's token (`/lab?token=…`): it stays out of logs

    def log_message(self, format: str, *args) -> None:
        log.debug("asleep page on port %d: %s", self.server.port, clean(format % args))

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own refusals (a bad request line, headers too long or too many) as one JSON line."""
        self.close_connection = True
        said = message or self.responses.get(code, ("",))[0]
        self._json(code, {"message": f"labvm: {clean(said)}", "reason": "bad-request"})

    def _answer(self) -> None:
        page = self.server
        path = self.path.split("?", 1)[0]
        if self.headers.get("Host") not in page.hosts:
            # A DNS-rebinding name or a wrong port: it learns nothing, not even the profile.
            return self._refuse(403, f"labvm: this page answers only to http://127.0.0.1:{page.port}/", "host")
        if path == "/start":
            if self.command != "POST":
                return self._refuse(405, "labvm: /start takes a POST from the page's Start button", "method")
            return self._start()
        if path == "/progress":
            if self.command not in ("GET", "HEAD"):
                return self._refuse(405, "labvm: /progress is read with GET", "method")
            try:
                return self._json(200, {"asleep": True, **page.progress()})
            except Exception as error:  # the keeper's progress() failed: say it, keep serving
                return self._refuse(503, f"labvm: the start's progress is unknown: {clean(repr(error))}", "error")
        if self._is_page_load(path):
            if self.command not in ("GET", "HEAD"):
                return self._refuse(405, "labvm: this page is read with GET", "method")
            nonce = secrets.token_urlsafe(16)
            return self._send(200, "text/html; charset=utf-8", page.html(nonce).encode(), nonce)
        self._refuse(503, page.asleep_message(), "asleep")

    def _is_page_load(self, path: str) -> bool:
        """A top-level page load: a bookmark or a tab, not a background fetch or a websocket."""
        if self.headers.get("Upgrade") is not None:
            return False
        if self.headers.get("Sec-Fetch-Dest", "document") != "document":
            return False  # browsers say what a request is for: an iframe, a fetch, a script
        if path == "/" or any(path == p or path.startswith(p + "/") for p in PAGE_PREFIXES):
            return not any(path == p or path.startswith(p + "/") for p in NOT_PAGE_PREFIXES)
        return False

    def _start(self) -> None:
        page = self.server
        host = self.headers["Host"]
        if self.headers.get("Origin") != f"http://{host}":
            return self._refuse(403, "labvm: a start must come from this page (Origin)", "origin")
        if page.facts.gone:
            profile = clean(page.facts.profile)
            return self._refuse(403, f"labvm: the VM of profile {profile} was deleted; "
                                     f"make a new one with inv up --host {profile}", "gone")
        if "Transfer-Encoding" in self.headers:
            return self._refuse(413, "labvm: a start's body needs a Content-Length", "size")
        length = self._content_length()
        if length is None or length > BODY_LIMIT:
            return self._refuse(413, f"labvm: a start's body is at most {BODY_LIMIT} bytes", "size")
        body = self._read_body(length)
        if self.headers.get("Content-Type", "").split(";")[0].strip().lower() != "application/json":
            return self._refuse(403, "labvm: a start is sent as application/json", "content-type")
        try:
            offered = json.loads(body).get("secret")
        except (ValueError, AttributeError, RecursionError):
            offered = None
        if not isinstance(offered, str) or not page.secret_matches(offered):
            return self._refuse(403, "labvm: a start must come from this page (secret); load the page again", "secret")
        try:
            answer = page.start_once()
        except Exception as error:  # the keeper's start failed at once: say it, keep serving
            log.warning("asleep page on port %d: start: %s", page.port, clean(repr(error)))
            return self._refuse(503, f"labvm: the start failed: {clean(str(error))}", "error")
        self._json(200, answer)

    def _content_length(self) -> int | None:
        text = self.headers.get("Content-Length", "0").strip()
        return int(text) if text.isdigit() and len(text) < 10 else None

    def _refuse(self, code: int, message: str, reason: str) -> None:
        self._drain_body()
        self._json(code, {"message": message, "reason": reason})

    def _read_body(self, length: int) -> bytes:
        self.body_read = True
        return self.rfile.read(length)

    def _drain_body(self) -> None:
        """Reads a small refused body away: closing with unread bytes would reset the
        connection, and the client would see the reset instead of the answer.  A body of
        unknown or large size is read away after the answer, for a moment (finish)."""
        if getattr(self, "body_read", False):
            return
        length = self._content_length()
        if "Transfer-Encoding" in self.headers or length is None or length > DRAIN_LIMIT:
            self.linger = True
        elif length:
            self._read_body(length)

    def finish(self) -> None:
        super().finish()
        if getattr(self, "linger", False):
            _linger(self.connection)

    def _json(self, code: int, body: dict) -> None:
        self._send(code, "application/json", (json.dumps(body) + "\n").encode(), None)

    def _send(self, code: int, content_type: str, body: bytes, nonce: str | None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("X-Labvm", "asleep")  # the page tells its own answers from the lab's
        if nonce:
            self.send_header("Content-Security-Policy", (
                f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
                "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"))
        else:
            self.send_header("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


def _linger(connection: socket.socket) -> None:
    """Says the answer is complete (FIN), then reads what the client still sends, at most
    DRAIN_LIMIT bytes for at most LINGER seconds, so that the close does not reset the
    connection before the client has read the answer."""
    connection.shutdown(socket.SHUT_WR)
    deadline = time.monotonic() + LINGER
    received = 0
    while received < DRAIN_LIMIT and (left := deadline - time.monotonic()) > 0:
        connection.settimeout(left)
        try:
            data = connection.recv(DRAIN_LIMIT)
        except OSError:  # the timeout, or a reset
            return
        if not data:
            return
        received += len(data)


# -- the page itself ------------------------------------------------------------------

def _when(stopped_at: str, now: datetime | None = None) -> str:
    """'Wed 2 Dec 2026, 14:02 CET (5 h 12 min ago)' in the laptop's time; the text as given
    when it is no ISO 8601 time."""
    try:
        stamp = datetime.fromisoformat(stopped_at.strip().replace("Z", "+00:00"))
    except ValueError:
        return stopped_at
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=timezone.utc)
    local = stamp.astimezone()
    shown = f"{local:%a} {local.day} {local:%b %Y, %H:%M %Z}".rstrip()
    seconds = ((now or datetime.now(timezone.utc)) - stamp).total_seconds()
    return f"{shown} ({_ago(seconds)})" if seconds >= 0 else shown


def _ago(seconds: float) -> str:
    minutes = int(seconds // 60)
    if minutes < 1:
        return "just now"
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days} day{'s' if days > 1 else ''} {hours} h ago"
    return f"{hours} h {minutes} min ago" if hours else f"{minutes} min ago"


_STYLE = """
body { font: 16px/1.5 system-ui, sans-serif; max-width: 40rem; margin: 3rem auto; padding: 0 1rem; color: #222; }
h1 { font-size: 1.4rem; }
dt { font-weight: 600; float: left; clear: left; width: 8rem; }
dd { margin: 0 0 .3rem 8rem; }
button { font-size: 1.1rem; padding: .5rem 1.5rem; margin: 1rem 0; cursor: pointer; }
#log { font: 13px/1.4 ui-monospace, monospace; background: #f4f4f4; padding: .5rem 2rem; }
#log:empty { display: none; }
#error { color: #a00; white-space: pre-wrap; }
code { background: #f4f4f4; padding: 0 .3rem; }
"""

# Shows the start's steps with textContent only (never as HTML), and moves into the lab once
# something other than this page answers on the port: the keeper has handed it to the lab.
_SCRIPT = """
"use strict";
const main = document.querySelector("main");
const button = document.getElementById("start");
const status = document.getElementById("status");
const error = document.getElementById("error");
const log = document.getElementById("log");
const labPrefixes = JSON.parse(main.dataset.labPrefixes);
let following = false;  // a start is under way: poll often, and go into the lab when it answers
let labUrl = null;
let timer = null;

function schedule() {
  clearTimeout(timer);
  // The URL known: the keeper hands the port over once the page has asked again after it.
  timer = setTimeout(poll, labUrl ? 100 : following ? 500 : 5000);
}

function intoLab() {
  // Only to this port: the URL comes from the VM side.
  const target = labUrl && labPrefixes.some((prefix) => labUrl.startsWith(prefix)) ? labUrl : location.href;
  location.replace(target);
}

function show(answer) {
  if (answer.url) labUrl = answer.url;
  log.replaceChildren(...answer.lines.map((line) => {
    const item = document.createElement("li");
    item.textContent = line;
    return item;
  }));
  if (answer.state === "starting" || answer.state === "ready") {
    following = true;
    button.hidden = true;
    error.textContent = "";
    status.textContent = answer.state === "ready" ? "Ready: opening the lab…" : "Starting…";
  } else if (answer.state === "failed") {
    following = false;
    status.textContent = "The start failed:";
    error.textContent = answer.error;
    button.textContent = "Retry";
    button.hidden = false;
    button.disabled = false;
  }
}

async function poll() {
  let response;
  try {
    response = await fetch("/progress", {cache: "no-store", redirect: "manual"});
  } catch (e) {
    schedule();  // nothing answers on the port for a moment: the hand-over to the lab
    return;
  }
  if (response.headers.get("X-Labvm") !== "asleep") {
    intoLab();  // the lab answers on this port now
    return;
  }
  try {
    show(await response.json());
  } catch (e) {}
  schedule();
}

async function start() {
  button.disabled = true;
  error.textContent = "";
  status.textContent = "Asking to start…";
  try {
    const response = await fetch("/start", {
      method: "POST", cache: "no-store", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({secret: main.dataset.secret}),
    });
    const answer = await response.json();
    if (!response.ok) throw new Error(answer.message);
    following = true;
    button.hidden = true;
    status.textContent = "Starting…";
  } catch (e) {
    status.textContent = "";
    error.textContent = e.message;
    button.disabled = false;
  }
  poll();
}

button.addEventListener("click", start);
poll();
"""


def _page(page: AsleepPage, nonce: str) -> str:
    facts, e = page.facts, html.escape
    rows = [("Size", facts.size), ("Region", facts.region), ("Stopped", _when(facts.stopped_at)), ("Why", facts.why)]
    if facts.price and not facts.gone:
        rows.append(("Price", f"{facts.price} while it runs"))
    details = "\n".join(f"<dt>{e(name)}</dt><dd>{e(value)}</dd>" for name, value in rows)
    if facts.gone:
        title = f"The VM of profile {facts.profile} was deleted"
        body = (f"<p>There is nothing to start. To make a new VM for this profile, run "
                f"<code>inv up --host {e(facts.profile)}</code> in labvm's folder.</p>")
        script = ""
    else:
        title = f"The VM of profile {facts.profile} is asleep"
        body = ('<p>Start runs what <code>inv up</code> does: the VM, Jupyter and the tunnel. This page '
                'shows each step and then moves into JupyterLab by itself, on this same address.</p>\n'
                '<button id="start" type="button">Start</button>\n'
                '<p id="status" role="status"></p><p id="error" role="alert"></p>\n'
                '<ol id="log"></ol>')
        script = f'<script nonce="{nonce}">{_SCRIPT}</script>'
    prefixes = e(json.dumps(page.lab_prefixes))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(facts.profile)} is {"deleted" if facts.gone else "asleep"} · labvm</title>
<style nonce="{nonce}">{_STYLE}</style>
</head><body>
<main data-secret="{"" if facts.gone else e(page._secret)}" data-lab-prefixes="{prefixes}">
<h1>{e(title)}</h1>
<dl>
{details}
</dl>
{body}
</main>
{script}
</body></html>
"""
