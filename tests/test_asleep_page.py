"""The asleep page and the keeper's own calls (labvm/asleep.py), behind a real gate (labvm/gate.py).

Real HTTP on loopback (http.client), then Debian's chromium driven by Playwright: the proof a
browser gets by opening the lab with its token, a click on Start, each step shown, and the move
into the lab once it is ready; a browser without the proof (another user of the laptop), a page
on another local port and a DNS-rebinding name, that try to start the VM or read its URL.  The
keeper's side is `Front` below: a gate whose routes are the page, or a stand-in lab.
"""

from __future__ import annotations

import http.client
import http.server
import json
import re
import socket
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from chromium import chromium_tab, playwright_or_skip
from labvm.asleep import PageFacts, Pages, welcome_url
from labvm.gate import Gate
from labvm.http1 import Response

FACTS = PageFacts(
    profile="aws",
    size="c5.large",
    region="us-west-2",
    stopped_at="2026-12-02T06:30:00+00:00",
    why="autostop: no kernel busy for 60 min",
    price="about $0.085/h",
    gone=False,
)
PROOF = "p" * 43  # what the keeper keeps in the run folder (labvm.keeper.own_proof)
TOKEN = "the-lab-token"
ANSWERS = {200, 400, 403, 404, 405, 408, 413, 431, 503}


class Keeper:
    """The keeper's side of the contract: start() returns at once having said "starting";
    the test moves progress() on as the keeper would while the VM starts."""

    def __init__(self):
        self.changed = threading.Condition()
        self.calls = 0
        self.answer = {"lines": [], "state": "idle", "url": None, "error": ""}

    def start(self) -> None:
        with self.changed:
            self.calls += 1
            self.answer = {**self.answer, "state": "starting", "error": ""}
            self.changed.notify_all()

    def progress(self) -> dict:
        with self.changed:
            return dict(self.answer)

    def say(self, **changes) -> None:
        with self.changed:
            self.answer = {**self.answer, **changes}

    def wait_for_calls(self, calls: int) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: self.calls >= calls, timeout=30), f"start() called {self.calls} times"


class Front:
    """A profile's URL: the gate, and behind it the asleep page (`facts`) or a stand-in lab."""

    def __init__(self, facts: PageFacts | None, keeper: Keeper, port: int = 0):
        self.keeper, self.lab_port = keeper, 0
        self.gate = Gate(port, self)
        self.port = self.gate.port
        self.pages = Pages(self.port, PROOF, keeper.start, keeper.progress)
        self.pages.facts = facts
        self.pages.token = TOKEN

    def close(self) -> None:
        self.gate.close()

    def __enter__(self) -> Front:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def wake(self, lab_port: int) -> None:
        self.pages.facts, self.lab_port = None, lab_port

    # labvm.gate.Routes, as the keeper answers
    def own(self, request):
        return self.pages.own(request)

    def page(self, request):
        return self.pages.page(request)

    def upstream(self, wait: float):
        return socket.create_connection(("127.0.0.1", self.lab_port)) if self.lab_port else None

    def unavailable(self) -> Response:
        return Response(503, b'{"message": "labvm: reconnecting", "reason": "reconnecting"}\n')


@pytest.fixture
def keeper():
    return Keeper()


@pytest.fixture
def front(keeper):
    with Front(FACTS, keeper) as opened:
        yield opened


def ask(
    front: Front,
    method: str,
    path: str,
    headers: dict | None = None,
    body: bytes | None = None,
    host: str | None = "127.0.0.1",
) -> tuple[int, dict, bytes]:
    """One request with exactly these headers.  `host`: a name (the port is added), a whole Host
    header (with a colon), or None for none at all."""
    connection = http.client.HTTPConnection("127.0.0.1", front.port, timeout=30)
    try:
        connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        if host is not None:
            connection.putheader("Host", host if ":" in host else f"{host}:{front.port}")
        for name, value in (headers or {}).items():
            connection.putheader(name, value)
        if body is not None:
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def load(front: Front, path: str = "/", host: str = "127.0.0.1") -> str:
    status, headers, body = ask(front, "GET", path, {"Sec-Fetch-Dest": "document"}, host=host)
    assert (status, headers["content-type"]) == (200, "text/html; charset=utf-8")
    return body.decode()


def progress(front: Front, proof: str | None = PROOF) -> dict:
    status, headers, body = ask(front, "GET", "/.labvm/progress", {"X-Labvm-Proof": proof} if proof else {})
    assert (status, headers["x-labvm"]) == (200, "asleep")
    return one_json_line(body)


def a_start(front: Front, proof: str = PROOF) -> dict:
    """What the page's Start button sends."""
    return {
        "method": "POST",
        "path": "/.labvm/start",
        "body": json.dumps({"proof": proof}).encode(),
        "headers": {"Origin": f"http://127.0.0.1:{front.port}", "Content-Type": "application/json"},
    }


def one_json_line(body: bytes) -> dict:
    assert body.endswith(b"\n") and body.count(b"\n") == 1, body
    return json.loads(body)


# -- the page -------------------------------------------------------------------------


def test_the_page_names_the_vm_when_and_why_it_stopped_its_price_and_offers_start(keeper):
    stopped = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=5, minutes=12, seconds=10)
    facts = PageFacts(
        "aws",
        "c5.large",
        "us-west-2",
        stopped.isoformat(),
        "autostop: no kernel busy for 60 min",
        "about $0.085/h",
        False,
    )
    with Front(facts, keeper) as front:
        status, headers, body = ask(front, "GET", "/lab/tree/analysis.ipynb")
    html = body.decode()
    assert status == 200 and "The VM of profile aws is asleep" in html
    assert "<dd>c5.large</dd>" in html and "<dd>us-west-2</dd>" in html
    assert f"{stopped.astimezone():%H:%M}" in html and "(5 h 12 min ago)" in html
    assert "<dd>autostop: no kernel busy for 60 min</dd>" in html
    assert "<dd>about $0.085/h while it runs</dd>" in html
    # Hidden until the page's script has the proof's word (another user's browser never shows it)
    assert '<button id="start" type="button" hidden disabled>Start</button>' in html
    nonce = re.search(r"script-src 'nonce-([^']+)'", headers["content-security-policy"]).group(1)
    assert headers["content-security-policy"] == (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; connect-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )
    assert f'<script nonce="{nonce}">' in html and f'<style nonce="{nonce}">' in html
    assert (headers["x-frame-options"], headers["cache-control"], headers["referrer-policy"]) == (
        "DENY",
        "no-store",
        "no-referrer",
    )
    assert PROOF not in html and TOKEN not in html
    assert keeper.calls == 0


def test_facts_from_outside_are_text_on_the_page_never_markup(keeper):
    hostile = PageFacts(
        profile="<script>alert(1)</script>",
        size='"><img src=x onerror=alert(2)>',
        region="</style><script>alert(3)</script>",
        stopped_at="<b>yesterday</b>",
        why="idle & <i>quiet</i> \u202eevil",
        price="<u>$1</u>",
        gone=False,
    )
    with Front(hostile, keeper) as front:
        html = load(front)
    for raw in ("<script>alert", "<img", "</style><script>", "<b>yesterday", "<i>quiet", "<u>$1"):
        assert raw not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&quot;&gt;&lt;img src=x onerror=alert(2)&gt;" in html
    assert "&lt;b&gt;yesterday&lt;/b&gt;" in html  # no ISO 8601 time: shown as given
    assert "idle &amp; &lt;i&gt;quiet&lt;/i&gt;" in html
    assert html.count("<script") == 1  # the page's own, with its nonce


def test_a_machine_labvm_does_not_power_is_a_lab_asleep_with_its_host(keeper):
    """An ssh profile after `down`: the machine stays on, Jupyter stopped; Start is `up`."""
    facts = PageFacts("lab", "", "ws1.example.org", "2026-12-02T06:30:00Z", "stopped by inv down", "", False, vm=False)
    with Front(facts, keeper) as front:
        html = load(front)
    assert "The lab of profile lab is asleep" in html and "VM" not in html
    assert "<dt>Host</dt><dd>ws1.example.org</dd>" in html and "Region" not in html
    assert "Start runs what <code>inv up</code> does: Jupyter and the tunnel." in html


def test_without_a_known_price_the_page_shows_none(keeper):
    facts = PageFacts("os1", "m1.large", "RegionOne", "2026-12-02T06:30:00Z", "stopped by inv down", "", False)
    with Front(facts, keeper) as front:
        html = load(front)
    assert "<dd>m1.large</dd>" in html and "<dd>stopped by inv down</dd>" in html
    assert "Price" not in html and "$" not in html


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/lab",
        "/lab/tree/a.ipynb",
        "/lab/workspaces/auto-x",
        "/tree",
        "/notebooks/a.ipynb",
        "/doc/tree/a.ipynb?factory=Notebook",
        "/lab?token=abc",
    ],
)
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]"])
def test_a_top_level_page_load_gets_the_page(front, path, host):
    status, headers, body = ask(
        front, "GET", path, {"Sec-Fetch-Dest": "document", "Accept": "text/html"}, host=f"{host}:{front.port}"
    )
    assert status == 200 and headers["content-type"] == "text/html; charset=utf-8"
    assert b"The VM of profile aws is asleep" in body


WEBSOCKET = {
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
}


@pytest.mark.parametrize(
    "method, path, headers",
    [
        ("GET", "/api/kernels", {}),
        ("GET", "/api/kernels/5e1c/channels?session_id=1", WEBSOCKET),
        ("GET", "/lab", WEBSOCKET),
        ("GET", "/terminals/websocket/1", WEBSOCKET),
        ("GET", "/lab", {"Sec-Fetch-Dest": "empty"}),  # a fetch of a page path by a background tab
        ("GET", "/lab/api/settings", {}),
        ("GET", "/lab/extensions/x/remoteEntry.js", {}),
        ("GET", "/static/lab/main.js", {}),
        ("GET", "/favicon.ico", {}),
        ("GET", "/kernels", {}),
        ("POST", "/api/kernels", {"Content-Type": "application/json"}),
        ("DELETE", "/api/sessions/1", {}),
    ],
)
def test_everything_but_a_page_load_gets_503_saying_asleep_and_starts_nothing(front, keeper, method, path, headers):
    status, answer_headers, body = ask(front, method, path, headers, body=b"{}" if method == "POST" else None)
    assert status == 503 and answer_headers["content-type"] == "application/json"
    assert one_json_line(body) == {
        "message": f"labvm: the VM of profile aws is asleep; open http://127.0.0.1:{front.port}/ to start it",
        "reason": "asleep",
    }
    assert keeper.calls == 0


@pytest.mark.parametrize("host", ["evil.example", "127.0.0.2", "LOCALHOST", None])
def test_another_host_name_learns_nothing(front, host):
    """A DNS-rebinding name (or a wrong port) gets neither the page, its progress, nor the profile."""
    for path in ("/", "/.labvm/progress", "/api/kernels"):
        status, _, body = ask(front, "GET", path, {"X-Labvm-Proof": PROOF}, host=host)
        assert status == 403
        assert one_json_line(body)["reason"] == "host"
        assert b"aws" not in body
    assert ask(front, "GET", "/")[0] == 200  # control: the right name


# -- the proof --------------------------------------------------------------------------

NAVIGATION = {"Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document", "Sec-Fetch-Site": "none"}


def test_a_browser_that_opens_the_lab_with_its_token_gets_the_proof_then_the_lab(front, keeper):
    with serving(0, "<title>stand-in lab</title>") as lab:
        front.wake(lab)
        status, headers, body = ask(front, "GET", f"/lab?token={TOKEN}", NAVIGATION)
        assert (status, headers["content-type"]) == (200, "text/html; charset=utf-8")
        assert f'data-proof="{PROOF}"' in body.decode() and "localStorage.setItem" in body.decode()
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        # its reload, from the page itself: on to the lab
        assert (
            b"stand-in lab"
            in ask(front, "GET", f"/lab?token={TOKEN}", {**NAVIGATION, "Sec-Fetch-Site": "same-origin"})[2]
        )


@pytest.mark.parametrize(
    "case", ["a wrong token", "no token", "a background fetch", "no fetch metadata", "another host", "a POST"]
)
def test_nothing_else_gets_the_proof(front, case):
    path, headers, method, host = f"/lab?token={TOKEN}", dict(NAVIGATION), "GET", "127.0.0.1"
    if case == "a wrong token":
        path = f"/lab?token={TOKEN}x"
    elif case == "no token":
        path = "/lab"
    elif case == "a background fetch":
        headers.update({"Sec-Fetch-Mode": "cors", "Sec-Fetch-Dest": "empty"})
    elif case == "no fetch metadata":
        headers = {}
    elif case == "another host":
        host = "evil.example"
    elif case == "a POST":
        method = "POST"
    with serving(0, "<title>stand-in lab</title>") as lab:
        front.wake(lab)
        assert PROOF.encode() not in ask(front, method, path, headers, host=host)[2]
    front.pages.facts, front.pages.token, front.lab_port = FACTS, None, 0  # asleep: no token known
    assert PROOF.encode() not in ask(front, "GET", f"/lab?token={TOKEN}", NAVIGATION)[2]


def test_without_the_proof_progress_carries_the_state_alone(front, keeper):
    keeper.say(state="ready", lines=["Starting i-0abc"], url=f"http://127.0.0.1:{front.port}/lab?token=new")
    for proof in (None, "", PROOF[:-1] + "q", PROOF + "p"):
        assert progress(front, proof) == {"asleep": True, "state": "ready", "proven": False}
    assert progress(front)["url"] == f"http://127.0.0.1:{front.port}/lab?token=new"  # control


# -- the start ------------------------------------------------------------------------


def with_body(body):
    return lambda request, port: {**request, "body": json.dumps(body).encode()}


def with_headers(**changes):
    """Headers changed (None: left out); PORT is the page's port, OTHER another one."""

    def change(request, port):
        headers = {**request["headers"], **{name.replace("_", "-"): value for name, value in changes.items()}}
        return {
            **request,
            "headers": {
                name: value.replace("PORT", str(port)).replace("OTHER", str(port + 1))
                for name, value in headers.items()
                if value is not None
            },
        }

    return change


def with_host(host: str):
    """Another Host, with the Origin a page of that name would send."""

    def change(request, port):
        named = host.replace("PORT", str(port)).replace("OTHER", str(port + 1))
        return {**request, "host": named, "headers": {**request["headers"], "Origin": f"http://{named}"}}

    return change


REFUSALS = {
    "no proof": (403, "proof", with_body({})),
    "wrong proof": (403, "proof", with_body({"proof": PROOF[:-1] + "q"})),
    "proof not text": (403, "proof", with_body({"proof": [PROOF]})),
    "body not JSON": (403, "proof", lambda request, port: {**request, "body": b"proof=" + PROOF.encode()}),
    "evil Host": (403, "host", with_host("evil.example:PORT")),
    "Host of another port": (403, "host", with_host("127.0.0.1:OTHER")),
    "no Origin": (403, "origin", with_headers(Origin=None)),
    "Origin of another port": (403, "origin", with_headers(Origin="http://127.0.0.1:OTHER")),
    "Origin null": (403, "origin", with_headers(Origin="null")),
    "Origin https": (403, "origin", with_headers(Origin="https://127.0.0.1:PORT")),
    "Origin localhost for Host 127.0.0.1": (403, "origin", with_headers(Origin="http://localhost:PORT")),
    "text/plain": (403, "content-type", with_headers(Content_Type="text/plain")),
    "form": (403, "content-type", with_headers(Content_Type="application/x-www-form-urlencoded")),
    "no content type": (403, "content-type", with_headers(Content_Type=None)),
    "oversize": (413, "bad-request", with_body({"proof": PROOF, "pad": "x" * 8000})),
    "GET": (405, "method", lambda request, port: {**request, "method": "GET", "body": None}),
}


def send(front: Front, request: dict) -> tuple[int, dict, bytes]:
    return ask(
        front,
        request["method"],
        request["path"],
        request["headers"],
        request["body"],
        host=request.get("host", "127.0.0.1"),
    )


@pytest.mark.parametrize("case", REFUSALS)
def test_a_start_not_from_the_users_page_is_refused(front, keeper, case):
    code, reason, change = REFUSALS[case]
    status, headers, body = send(front, change(a_start(front), front.port))
    assert status == code and headers["content-type"] == "application/json"
    assert one_json_line(body)["reason"] == reason
    assert keeper.calls == 0
    # control: the page's own request
    status, _, body = send(front, a_start(front))
    assert (status, json.loads(body)) == (200, {"state": "starting", "started": True})
    assert keeper.calls == 1


def test_a_chunked_start_is_refused(front, keeper):
    request = a_start(front)
    connection = http.client.HTTPConnection("127.0.0.1", front.port, timeout=30)
    connection.request(
        "POST",
        request["path"],
        body=iter([request["body"]]),
        encode_chunked=True,
        headers={**request["headers"], "Transfer-Encoding": "chunked"},
    )
    response = connection.getresponse()
    assert response.status == 413 and one_json_line(response.read())["reason"] == "bad-request"
    connection.close()
    assert keeper.calls == 0
    assert send(front, request)[0] == 200 and keeper.calls == 1  # control


def test_the_start_button_starts_once_and_a_retry_after_a_failure_starts_again(front, keeper):
    request = {**a_start(front), "host": "localhost"}
    request["headers"]["Origin"] = f"http://localhost:{front.port}"
    status, _, body = send(front, request)
    assert (status, one_json_line(body)) == (200, {"state": "starting", "started": True})
    assert keeper.calls == 1
    # a second click, or a second tab, while the VM starts: no second start
    status, _, body = send(front, request)
    assert (status, json.loads(body)) == (200, {"state": "starting", "started": False})
    assert keeper.calls == 1
    keeper.say(state="failed", error="InsufficientInstanceCapacity")
    assert send(front, request)[0] == 200
    assert keeper.calls == 2


def test_a_deleted_vm_says_how_to_make_a_new_one_and_starts_nothing(keeper):
    gone = PageFacts(
        "aws",
        "c5.large",
        "us-west-2",
        "2026-12-02T06:30:00+00:00",
        "terminated by inv terminate",
        "about $0.085/h",
        True,
    )
    with Front(gone, keeper) as front:
        html = load(front)
        assert "The VM of profile aws was deleted" in html
        assert "<code>inv up --host aws</code>" in html
        assert "<button" not in html and "$0.085" not in html
        status, _, body = send(front, a_start(front))
        assert status == 403
        assert one_json_line(body) == {
            "message": "labvm: the VM of profile aws was deleted; make a new one with inv up --host aws",
            "reason": "gone",
        }
    assert keeper.calls == 0
    with Front(FACTS, keeper) as front:  # control: the same profile, not deleted
        assert send(front, a_start(front))[0] == 200
    assert keeper.calls == 1


def test_progress_is_shown_cleaned_and_only_a_url_on_this_port_is_passed_on(front, keeper):
    keeper.say(
        state="starting",
        lines=["Starting i-0abc", "\x1b]52;c;ZXZpbA==\x07 <b>x</b>"],
        url="http://evil.example/lab?token=t",
    )
    assert progress(front) == {
        "asleep": True,
        "lines": ["Starting i-0abc", "\\x1b]52;c;ZXZpbA==\\x07 <b>x</b>"],
        "state": "starting",
        "url": None,
        "error": "",
        "proven": True,
    }
    for url in (f"http://localhost:{front.port}/lab?token=t", f"http://127.0.0.1:{front.port}/lab?token=t"):
        keeper.say(url=url)
        assert progress(front)["url"] == url
    for url in (
        f"http://127.0.0.1:{front.port}@evil.example/",
        f"http://127.0.0.1:{front.port + 1}/lab",
        f"https://127.0.0.1:{front.port}/lab",
        f"javascript:alert(1)//http://127.0.0.1:{front.port}/",
    ):
        keeper.say(url=url)
        assert progress(front)["url"] is None
    keeper.say(state="<bogus>")
    answer = progress(front)
    assert (answer["state"], answer["error"]) == ("failed", "unknown state <bogus>")
    assert ask(front, "POST", "/.labvm/progress", body=b"")[0] == 405
    assert ask(front, "GET", "/.labvm/other")[0] == 404
    assert keeper.calls == 0


# -- fuzz ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fuzzed():
    keeper = Keeper()
    with Front(FACTS, keeper) as front:
        yield front, keeper


HEADER_TEXT = st.text(st.characters(codec="latin-1", exclude_categories=("Cc",)), max_size=120)
URL_TEXT = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=80)


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    method=st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "PROPFIND", "G%T"]),
    path=st.tuples(
        st.sampled_from(
            [
                "/",
                "/lab",
                "/lab/",
                "/api/",
                "/.labvm/start",
                "/.labvm/progress",
                "/.labvm/",
                f"/lab?token={TOKEN}",
                "/tree/",
                "//",
                "",
            ]
        ),
        URL_TEXT,
    ).map("".join),
    host=st.one_of(st.none(), st.sampled_from(["127.0.0.1", "localhost", "evil.example"]), HEADER_TEXT),
    headers=st.dictionaries(
        st.sampled_from(
            [
                "Origin",
                "Content-Type",
                "Upgrade",
                "Sec-Fetch-Dest",
                "Connection",
                "Sec-Fetch-Mode",
                "Sec-Fetch-Site",
                "X-Labvm-Proof",
                "Accept",
                "Cookie",
                "Expect",
                "X-Forwarded-Host",
            ]
        ),
        st.one_of(
            st.sampled_from(
                [
                    "application/json",
                    "websocket",
                    "document",
                    "navigate",
                    "null",
                    "http://127.0.0.1:PORT",
                    "100-continue",
                ]
            ),
            HEADER_TEXT,
        ),
    ),
    body=st.one_of(st.none(), st.binary(max_size=6000)),
)
def test_no_request_gets_a_traceback_a_start_or_the_proof(fuzzed, method, path, host, headers, body):
    front, keeper = fuzzed
    headers = {name: value.replace("PORT", str(front.port)) for name, value in headers.items()}
    connection = http.client.HTTPConnection("127.0.0.1", front.port, timeout=30)
    connection.putrequest(method, path or "/", skip_host=True, skip_accept_encoding=True)
    if host is not None:
        named = host in ("127.0.0.1", "localhost", "evil.example")  # a name and the port, or any text
        connection.putheader("Host", f"{host}:{front.port}" if named else host)
    for name, value in headers.items():
        connection.putheader(name, value)
    if body is not None:
        connection.putheader("Content-Length", str(len(body)))
    connection.endheaders(body)
    response = connection.getresponse()
    answer = response.read()
    connection.close()
    assert response.status in ANSWERS, (response.status, answer)
    if method == "HEAD":
        assert answer == b""
    elif response.getheader("Content-Type") == "application/json":
        assert one_json_line(answer)["message"].startswith("labvm: ")
    else:
        assert response.status == 200 and b"<!DOCTYPE html>" in answer
    assert PROOF.encode() not in answer or "Sec-Fetch-Mode" in headers
    assert keeper.calls == 0


# -- a real browser -----------------------------------------------------------------------

REBINDING = "--host-resolver-rules=MAP evil.example 127.0.0.1"  # a DNS-rebinding name, on loopback


@pytest.fixture(scope="module")
def sync_api():
    return playwright_or_skip()


@pytest.fixture
def tab(sync_api):
    with chromium_tab(sync_api, (REBINDING,)) as opened:
        yield opened


@contextmanager
def serving(port: int, html: str):
    """A tiny HTTP server on loopback: `html` for every GET of /lab or of /, 404 for the rest."""

    class Answer(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            found = self.path.split("?")[0] in ("/", "/lab")
            self.send_response(200 if found else 404)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(html.encode() if found else b"not found")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Answer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def open_the_lab(tab, front: Front, lab: int) -> None:
    """What `inv up` does for the user's browser: the lab's URL with its token, from outside the
    origin (labvm's opener is a local file); the tab keeps the proof."""
    front.wake(lab)
    tab.goto(f"http://127.0.0.1:{front.port}/lab?token={TOKEN}")
    tab.wait_for_function("document.title === 'stand-in lab'")
    assert tab.evaluate("localStorage.getItem('labvm-proof')") == PROOF


def test_in_a_browser_labvms_opener_gives_the_proof_in_a_fragment_then_the_lab_without_a_token(tab, sync_api, front):
    """What `inv up` opens: the keeper's welcome, the proof in the fragment (never sent to a server),
    then the lab; in password mode too, where the lab's URL holds no token to give the proof for."""
    with serving(0, "<title>stand-in lab</title>") as lab:
        front.wake(lab)
        front.pages.token = None  # password mode: no token known
        tab.goto(welcome_url(f"http://127.0.0.1:{front.port}/lab", PROOF))
        tab.wait_for_url(f"http://127.0.0.1:{front.port}/lab", timeout=30_000)
        sync_api.expect(tab).to_have_title("stand-in lab")
        assert tab.evaluate("localStorage.getItem('labvm-proof')") == PROOF
        assert PROOF not in tab.evaluate("history.length > 0 && location.href")
    # a fragment with anything else than a proof stores nothing, and goes nowhere off this origin
    tab.evaluate("localStorage.clear()")
    tab.goto(f"http://127.0.0.1:{front.port}/.labvm/welcome#proof=%3Cscript%3E&next=//evil.example/")
    tab.wait_for_url(f"http://127.0.0.1:{front.port}/", timeout=30_000)
    assert tab.evaluate("localStorage.getItem('labvm-proof')") is None


def test_in_a_browser_start_shows_each_step_then_moves_into_the_lab_on_the_same_url(tab, sync_api, keeper, front):
    expect = sync_api.expect
    with serving(0, "<title>stand-in lab</title>") as lab:
        open_the_lab(tab, front, lab)
        front.pages.facts, front.lab_port = FACTS, 0  # the VM stops
        tab.goto(f"http://127.0.0.1:{front.port}/lab/tree/analysis.ipynb")  # the tab reloaded
        expect(tab.get_by_role("heading")).to_have_text("The VM of profile aws is asleep")
        tab.get_by_role("button", name="Start").click()
        keeper.wait_for_calls(1)
        keeper.say(lines=["Starting i-0abc in us-west-2", "<b>Jupyter</b> answers"])
        expect(tab.locator("#log li")).to_have_text(["Starting i-0abc in us-west-2", "<b>Jupyter</b> answers"])
        keeper.say(state="failed", error="the cloud said <no>")
        expect(tab.get_by_role("alert")).to_have_text("the cloud said <no>")
        tab.get_by_role("button", name="Retry").click()
        keeper.wait_for_calls(2)
        front.wake(lab)  # the keeper's ssh carries the port again
        time.sleep(1)
        assert tab.url == f"http://127.0.0.1:{front.port}/lab/tree/analysis.ipynb"  # not before the lab is ready
        lab_url = f"http://127.0.0.1:{front.port}/lab?token=the-new-token"
        keeper.say(state="ready", lines=["Starting i-0abc in us-west-2", "The lab answers"], url=lab_url)
        tab.wait_for_url(lab_url, timeout=30_000)
        expect(tab).to_have_title("stand-in lab")
    assert keeper.calls == 2


def test_in_a_browser_a_tab_left_on_the_page_goes_back_into_the_lab_started_elsewhere(tab, sync_api, keeper, front):
    """`inv up` in a terminal: the tab left on the page moves into the lab without a click."""
    with serving(0, "<title>stand-in lab</title>") as lab:
        open_the_lab(tab, front, lab)
        front.pages.facts, front.lab_port = FACTS, 0
        tab.goto(f"http://127.0.0.1:{front.port}/lab")
        sync_api.expect(tab.get_by_role("button", name="Start")).to_be_visible()
        front.wake(lab)
        keeper.say(url=f"http://127.0.0.1:{front.port}/lab?token=from-up")
        tab.wait_for_url(
            f"http://127.0.0.1:{front.port}/lab?token=from-up", timeout=30_000
        )  # its next look, within 5 s
        sync_api.expect(tab).to_have_title("stand-in lab")
    assert keeper.calls == 0


def test_in_a_browser_without_the_proof_there_is_no_start_and_no_url(tab, sync_api, keeper, front):
    """Another user of the laptop, or a browser that never opened the lab: the page says how to
    start it from a terminal; its script's own calls get no start and no URL."""
    keeper.say(url=f"http://127.0.0.1:{front.port}/lab?token=secret-of-the-user")
    tab.goto(f"http://127.0.0.1:{front.port}/lab")
    sync_api.expect(tab.locator("#stranger")).to_be_visible()
    sync_api.expect(tab.get_by_role("button", name="Start")).to_be_hidden()
    attempt = """async () => {
        const start = await fetch("/.labvm/start", {method: "POST", headers: {"Content-Type": "application/json"},
                                                     body: JSON.stringify({proof: ""})});
        const progress = await (await fetch("/.labvm/progress")).text();
        return [start.status, progress.includes("secret-of-the-user")];
    }"""
    assert tab.evaluate(attempt) == [403, False]
    assert keeper.calls == 0


def test_in_a_browser_a_start_needs_the_page_seen_for_a_moment(tab, sync_api, keeper, front):
    """Double-clickjacking: a page that opens this one under the pointer gets no Start from the
    second half of a double click; a script's synthetic click gets none at all."""
    with serving(0, "<title>stand-in lab</title>") as lab:
        open_the_lab(tab, front, lab)
    front.pages.facts, front.lab_port = FACTS, 0
    tab.goto(f"http://127.0.0.1:{front.port}/lab")
    button = tab.locator("#start")
    sync_api.expect(button).to_be_visible()
    tab.evaluate("window.dispatchEvent(new Event('focus'))")  # the moment it comes in front
    button.click(force=True)  # at once, as the second click of a double click lands
    button.dispatch_event("click")  # not trusted
    time.sleep(1)
    assert keeper.calls == 0
    button.click()  # once enabled: a click the user meant
    keeper.wait_for_calls(1)


ATTACK = """<title>attacker</title><script>
const target = "http://127.0.0.1:PORT/.labvm/start";
const body = JSON.stringify({proof: "PROOF"});
Promise.allSettled([
  fetch(target, {method: "POST", mode: "no-cors", headers: {"Content-Type": "text/plain"}, body}),
  fetch(target, {method: "POST", headers: {"Content-Type": "application/json"}, body}),
  fetch(target, {method: "POST", mode: "no-cors", body: new URLSearchParams({proof: "PROOF"})}),
]).then((results) => { document.title = results.map((result) => result.status).join(" "); });
</script>"""


def test_in_a_browser_a_page_on_another_local_port_cannot_start_the_vm(tab, sync_api, front, keeper):
    """Even knowing the proof: a simple POST is sent (and refused), a JSON one dies at its preflight."""
    with serving(0, ATTACK.replace("PORT", str(front.port)).replace("PROOF", PROOF)) as attacker:
        tab.goto(f"http://127.0.0.1:{attacker}/")
        sync_api.expect(tab).to_have_title("fulfilled rejected fulfilled")  # the two simple POSTs were answered
    assert keeper.calls == 0
    # control: the same JSON fetch from the page itself
    tab.goto(f"http://127.0.0.1:{front.port}/")
    status = tab.evaluate(
        """async (proof) => (await fetch("/.labvm/start", {method: "POST",
        headers: {"Content-Type": "application/json"}, body: JSON.stringify({proof})})).status""",
        PROOF,
    )
    assert status == 200 and keeper.calls == 1


def test_in_a_browser_a_dns_rebinding_name_cannot_read_the_page_or_start_the_vm(tab, sync_api, keeper):
    """evil.example resolves to 127.0.0.1 (--host-resolver-rules): its page was served from the
    port before the gate took it, so the gate is same-origin to it."""
    with serving(0, "<title>evil</title>") as port:
        tab.goto(f"http://evil.example:{port}/")
        sync_api.expect(tab).to_have_title("evil")
    with Front(FACTS, keeper, port):
        attempt = """async (proof) => {
            const read = await fetch("/api/kernels");
            const start = await fetch("/.labvm/start", {method: "POST", headers: {"Content-Type": "application/json"},
                                                        body: JSON.stringify({proof})});
            return [read.status, start.status, (await read.text()).includes("aws")];
        }"""
        assert tab.evaluate(attempt, PROOF) == [403, 403, False]  # even given the proof
        assert keeper.calls == 0
        tab.goto(f"http://127.0.0.1:{port}/")  # control: the same script from the page's own name
        assert tab.evaluate(attempt, PROOF) == [503, 200, True]
        assert keeper.calls == 1


def test_a_kept_data_volume_is_on_the_page_with_its_price_even_once_the_vm_is_gone(keeper):
    """Issue 29: a stopped VM's data volume still bills, and a deleted VM's too (terminate keeps it)."""
    for gone in (False, True):
        facts = PageFacts(
            "aws",
            "c5.large",
            "us-west-2",
            "2026-12-02T06:30:00Z",
            "stopped by inv down",
            "about $0.085/h",
            gone,
            data="a 100 GB volume, about $8.00 a month",
        )
        with Front(facts, keeper) as front:
            html = load(front)
        assert "<dt>Data</dt><dd>a 100 GB volume, about $8.00 a month, billed while it is kept</dd>" in html
