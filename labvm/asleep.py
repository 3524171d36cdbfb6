"""What the keeper answers itself on a profile's URL (labvm.gate): the asleep page, its calls under
/.labvm/, and the proof a browser gets when it opens the lab with its token.

While the VM is stopped a top-level page load gets a page that says which VM sleeps, since when,
why and at what price, with a Start button; everything else (JupyterLab's API calls, kernels,
websockets, static files) gets 503 with a JSON body, so a background tab never starts a VM.

Only the user's own browser may start the VM or learn the lab's new URL (its token).  A loopback
port is open to every user of the laptop, so the page cannot tell who asks; what it can tell is
the proof: a secret of the profile's (a 0600 file in the run folder, labvm.keeper) that reaches
the browser labvm opens (its 0600 opener goes through WELCOME, the proof in the URL's fragment)
and a browser which opens the lab with the lab's current token (a top-level navigation with
`?token=` equal to it: only someone who holds the token, from `inv up` or the user's own files,
can make one).  The proof goes into that origin's localStorage, which no other origin (another
web site, another local port) can read; the page's script sends it with each call.  Without it
the page shows no Start, `/.labvm/start` refuses, and `/.labvm/progress` carries nothing but the
state: no steps, no URL.  A start must also come from this page: Host and Origin are this port's
and the body is JSON (no CSRF, no DNS rebinding).

Standard library only: the keeper runs on every laptop labvm supports.
"""

from __future__ import annotations

import hmac
import html
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources
from typing import Callable
from urllib.parse import urlencode

from .gate import Handler
from .http1 import Request, Response
from .text import clean

OWN_PREFIX = "/.labvm/"  # the keeper's own calls, answered in every state (never a path of Jupyter's)
WELCOME = OWN_PREFIX + "welcome"  # where labvm's opener sends the browser, the proof in the fragment
PROOF_HEADER = "x-labvm-proof"
PROGRESS_LINES = 200  # the last lines of progress() shown
STATES = ("idle", "starting", "ready", "failed")
# Top-level pages of JupyterLab, Notebook 7 and the classic notebook: a bookmark or an open tab.
PAGE_PREFIXES = ("/lab", "/tree", "/notebooks", "/doc", "/edit", "/consoles", "/terminals")
# Under those prefixes, what JupyterLab fetches in the background is no page.
NOT_PAGE_PREFIXES = ("/lab/api", "/lab/extensions", "/terminals/websocket")


@dataclass(frozen=True)
class PageFacts:
    """What the asleep page says of a sleeping VM (the keeper fills it in from its record and the cloud's
    words); every field is escaped where the page shows it."""

    profile: str
    size: str
    region: str
    stopped_at: str  # ISO 8601; UTC when it names no zone (labvm records UTC)
    why: str  # autostop's last reasons, or "stopped by inv down"
    price: str  # "" or "about $0.085/h": never a guess
    gone: bool  # the VM was deleted: nothing to start
    vm: bool = True  # a cloud VM; False: a machine labvm does not power (ssh), where only Jupyter stopped
    data: str = ""  # "" or "a 100 GB volume, about $8.00 a month": what the kept data volume bills (hosts.yml data:)


class Pages:
    """The keeper's own answers on one port (labvm.gate.Routes' own() and page()).

    `start()` must return at once (the keeper starts the VM in a thread of its own) and make
    progress() say "starting" before it returns: a second click, or a second tab, then does not
    start twice.  `progress()` returns {"lines": [...], "state": "idle" | "starting" | "ready" |
    "failed", "url": str | None, "error": str}; it says "ready", and names the lab's URL (with
    its token), once the lab answers through the tunnel.  `facts` is set while the VM sleeps
    (the page is served) and None while the lab is behind the port; `token` is the lab's current
    token, when the keeper knows it.
    """

    def __init__(self, port: int, proof: str, start: Callable[[], None], progress: Callable[[], dict]):
        self.port, self._proof, self._start, self._progress = port, proof, start, progress
        self.hosts = (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}")
        self.lab_prefixes = tuple(f"http://{host}/" for host in self.hosts)
        self.facts: PageFacts | None = None
        self.token: str | None = None

    # -- gate.Routes' share ----------------------------------------------------------------

    def own(self, request: Request) -> Handler | None:
        """gate.Routes.own: the welcome, a call under /.labvm/, or the proof for a browser that opens the
        lab with its token; None for the rest, which the lab (or page()) answers."""
        if request.path == WELCOME:
            return self._welcome
        if request.path.startswith(OWN_PREFIX):
            return self._call
        if self._opens_the_lab(request):
            return self._give_proof
        return None

    def page(self, request: Request) -> Response | None:
        """The asleep page and its refusals while the VM sleeps; None while the lab is behind the port."""
        facts = self.facts
        if facts is None:
            return None
        if request.header("host") not in self.hosts:
            # A DNS-rebinding name or a wrong port: it learns nothing, not even the profile.
            return _refusal(403, f"labvm: this page answers only to http://127.0.0.1:{self.port}/", "host")
        if not _is_page_load(request):
            return _refusal(503, self.asleep_message(facts), "asleep")
        if request.method not in ("GET", "HEAD"):
            return _refusal(405, "labvm: this page is read with GET", "method")
        nonce = secrets.token_urlsafe(16)
        return _html(_page(self, facts, nonce), nonce)

    # -- /.labvm/ ------------------------------------------------------------------------------

    def _call(self, request: Request) -> Response:
        if request.header("host") not in self.hosts:
            return _refusal(403, f"labvm: this page answers only to http://127.0.0.1:{self.port}/", "host")
        if request.path == OWN_PREFIX + "start":
            if request.method != "POST":
                return _refusal(405, "labvm: /.labvm/start takes a POST from the page's Start button", "method")
            return self._start_call(request)
        if request.path == OWN_PREFIX + "progress":
            if request.method not in ("GET", "HEAD"):
                return _refusal(405, "labvm: /.labvm/progress is read with GET", "method")
            return _json(200, self.progress(self._proven(request.header(PROOF_HEADER))))
        return _refusal(404, "labvm: no such call", "unknown")

    def _start_call(self, request: Request) -> Response:
        host = request.header("host")
        if request.header("origin") != f"http://{host}":
            return _refusal(403, "labvm: a start must come from this page (Origin)", "origin")
        if (request.header("content-type") or "").split(";")[0].strip().lower() != "application/json":
            return _refusal(403, "labvm: a start is sent as application/json", "content-type")
        try:
            offered = json.loads(request.body).get("proof")
        except (ValueError, AttributeError, RecursionError):
            offered = None
        if not self._proven(offered):
            return _refusal(
                403,
                "labvm: this browser has not opened this lab; start it with "
                "`inv up` in labvm's folder (it opens the lab here)",
                "proof",
            )
        facts = self.facts
        if facts is None:
            return _json(200, {"state": self.progress(True)["state"], "started": False})
        if facts.gone:
            profile = clean(facts.profile)
            return _refusal(
                403,
                f"labvm: the VM of profile {profile} was deleted; make a new one with inv up --host {profile}",
                "gone",
            )
        try:
            return _json(200, self.start_once())
        except Exception as error:  # the keeper's start failed at once: say it, keep serving
            return _refusal(503, f"labvm: the start failed: {clean(str(error))}", "error")

    def _proven(self, offered: object) -> bool:
        return isinstance(offered, str) and hmac.compare_digest(
            offered.encode("utf-8", "replace"), self._proof.encode()
        )

    def start_once(self) -> dict:
        """Calls start() unless a start is already under way or done; says which."""
        state = self.progress(True)["state"]
        if state in ("starting", "ready"):
            return {"state": state, "started": False}
        self._start()
        return {"state": "starting", "started": True}

    def progress(self, proven: bool) -> dict:
        """progress() made safe to show: lines and error cleaned, the state one of four, the URL
        kept only where it is on this port (it comes from the VM side); without the proof, the
        state alone."""
        answer = self._progress()
        state = answer.get("state") if answer.get("state") in STATES else "failed"
        shown: dict = {"asleep": self.facts is not None, "state": state, "proven": proven}
        if not proven:
            return shown
        url = answer.get("url")
        return {
            **shown,
            "lines": [clean(str(line)) for line in list(answer.get("lines") or [])[-PROGRESS_LINES:]],
            "url": url
            if isinstance(url, str) and url.startswith(self.lab_prefixes) and url.isprintable() and " " not in url
            else None,
            "error": clean(str(answer.get("error") or ""))
            if answer.get("state") in STATES
            else f"unknown state {clean(str(answer.get('state')))}",
        }

    def asleep_message(self, facts: PageFacts) -> str:
        """The one line a call that is no page load gets while the VM sleeps: where to start it."""
        return (
            f"labvm: the VM of profile {clean(facts.profile)} is asleep; open http://127.0.0.1:{self.port}/ to start it"
        )

    # -- the proof -----------------------------------------------------------------------------

    def _opens_the_lab(self, request: Request) -> bool:
        """A browser opening the lab with its current token, from outside this origin (a link, the
        address bar): it gets the proof first.  A navigation from this origin (the proof's own
        reload, the welcome's, the page moving into the lab) goes on to the lab."""
        token = self.token
        if not token or "token=" not in request.target:  # most requests: nothing to read further
            return False
        offered = request.query("token")
        return bool(
            offered
            and request.method == "GET"
            and request.header("host") in self.hosts
            and request.header("sec-fetch-mode") == "navigate"
            and request.header("sec-fetch-dest") == "document"
            and request.header("sec-fetch-site") != "same-origin"
            and hmac.compare_digest(offered.encode("utf-8", "replace"), token.encode())
        )

    def _welcome(self, request: Request) -> Response:
        """Where labvm's opener sends the browser (welcome_url): the proof comes in the fragment."""
        if request.header("host") not in self.hosts:
            return _refusal(403, f"labvm: this page answers only to http://127.0.0.1:{self.port}/", "host")
        nonce = secrets.token_urlsafe(16)
        return _html(
            f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>JupyterLab · labvm</title>'
            f'</head><body>\n<script nonce="{nonce}">{_asset("welcome.js")}</script>\n'
            f"<noscript>JupyterLab needs JavaScript.</noscript>\n</body></html>\n",
            nonce,
        )

    def _give_proof(self, request: Request) -> Response:
        nonce = secrets.token_urlsafe(16)
        text = (
            f'<!DOCTYPE html>\n<html lang="en" data-proof="{html.escape(self._proof)}"><head>'
            f'<meta charset="utf-8"><title>JupyterLab · labvm</title></head><body>\n'
            f'<script nonce="{nonce}">{_asset("proof.js")}</script>\n'
            f"<noscript>JupyterLab needs JavaScript.</noscript>\n</body></html>\n"
        )
        return _html(text, nonce)


def welcome_url(url: str, proof: str) -> str:
    """The lab's URL (on its port) as labvm's own opener gives it to the browser: through WELCOME,
    with the proof in the fragment (a fragment never reaches a server, nor a log), then the lab."""
    origin, _, rest = url.partition("//")[2].partition("/")
    return f"http://{origin}{WELCOME}#" + urlencode({"proof": proof, "next": "/" + rest})


def _is_page_load(request: Request) -> bool:
    """A top-level page load: a bookmark or a tab, not a background fetch or a websocket."""
    if request.header("upgrade") is not None:
        return False
    if request.header("sec-fetch-dest", "document") != "document":
        return False  # browsers say what a request is for: an iframe, a fetch, a script
    path = request.path
    if path == "/" or any(path == p or path.startswith(p + "/") for p in PAGE_PREFIXES):
        return not any(path == p or path.startswith(p + "/") for p in NOT_PAGE_PREFIXES)
    return False


def _json(status: int, body: dict) -> Response:
    return Response(
        status,
        (json.dumps(body) + "\n").encode(),
        headers=(("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'"), ("X-Labvm", "asleep")),
    )


def _refusal(status: int, message: str, reason: str) -> Response:
    return _json(status, {"message": message, "reason": reason})


def _html(text: str, nonce: str) -> Response:
    policy = (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )
    return Response(
        200, text.encode(), "text/html; charset=utf-8", (("Content-Security-Policy", policy), ("X-Labvm", "asleep"))
    )


def _asset(name: str) -> str:
    """One of the page's files (labvm/pages/), as shipped with the package."""
    return resources.files("labvm").joinpath("pages", name).read_text(encoding="utf-8")


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


def _page(pages: Pages, facts: PageFacts, nonce: str) -> str:
    e = html.escape
    where = [("Size", facts.size), ("Region", facts.region)] if facts.vm else [("Host", facts.region)]
    rows = [*where, ("Stopped", _when(facts.stopped_at)), ("Why", facts.why)]
    if facts.price and not facts.gone:
        rows.append(("Price", f"{facts.price} while it runs"))
    if facts.data:  # billed whether the VM runs, sleeps or was deleted
        rows.append(("Data", f"{facts.data}, billed while it is kept"))
    details = "\n".join(f"<dt>{e(name)}</dt><dd>{e(value)}</dd>" for name, value in rows)
    machine, started = (
        ("The VM", "the VM, Jupyter and the tunnel") if facts.vm else ("The lab", "Jupyter and the tunnel")
    )
    command = f"<code>inv up --host {e(facts.profile)}</code>"
    if facts.gone:
        title = f"The VM of profile {facts.profile} was deleted"
        body = f"<p>There is nothing to start. To make a new VM for this profile, run {command} in labvm's folder.</p>"
    else:
        title = f"{machine} of profile {facts.profile} is asleep"
        body = (
            f"<p>Start runs what <code>inv up</code> does: {started}. This page shows each step and "
            "then moves into JupyterLab by itself, on this same address.</p>\n"
            '<button id="start" type="button" hidden disabled>Start</button>\n'
            f'<p id="stranger" hidden>This browser has not opened this lab yet, so it cannot start it: run '
            f"{command} in labvm's folder (it opens the lab here, and this page then has a Start button).</p>\n"
        )
    body += '<p id="status" role="status"></p><p id="error" role="alert"></p>\n<ol id="log"></ol>'
    prefixes = e(json.dumps(pages.lab_prefixes))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(facts.profile)} is {"deleted" if facts.gone else "asleep"} · labvm</title>
<style nonce="{nonce}">{_asset("asleep.css")}</style>
</head><body>
<main data-lab-prefixes="{prefixes}">
<h1>{e(title)}</h1>
<dl>
{details}
</dl>
{body}
</main>
<script nonce="{nonce}">{_asset("asleep.js")}</script>
</body></html>
"""
