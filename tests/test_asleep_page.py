"""The asleep page (labvm/asleep.py): what a profile's local URL answers while its VM is stopped.

Real HTTP on loopback (http.client, and urllib without proxies), then Debian's chromium driven by
Playwright: a click on Start, each step shown, and the move into the lab once the port is handed
over to a stand-in lab; a page on another local port, and a DNS-rebinding name, that try to start
the VM.  The keeper's side is `Keeper` below: the two callbacks of AsleepPage's contract.
"""

from __future__ import annotations

import http.client
import http.server
import json
import re
import socket
import threading
import urllib.request
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from chromium import chromium_tab, playwright_or_skip
from labvm.asleep import AsleepPage, PageFacts

LOOPBACK = urllib.request.build_opener(urllib.request.ProxyHandler({}))
FACTS = PageFacts(profile="aws", size="c5.large", region="us-west-2", stopped_at="2026-12-02T06:30:00+00:00",
                  why="autostop: no kernel busy for 60 min", price="about $0.085/h", gone=False)
ANSWERS = {200, 403, 404, 405, 413, 503}


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


@pytest.fixture
def keeper():
    return Keeper()


@pytest.fixture
def page(keeper):
    with AsleepPage(0, FACTS, keeper.start, keeper.progress) as page:
        yield page


def ask(page: AsleepPage, method: str, path: str, headers: dict | None = None, body: bytes | None = None,
        host: str | None = "127.0.0.1") -> tuple[int, dict, bytes]:
    """One request with exactly these headers.  `host`: a name (the page's port is added), a
    whole Host header (with a colon), or None for none at all."""
    connection = http.client.HTTPConnection("127.0.0.1", page.port, timeout=30)
    try:
        connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        if host is not None:
            connection.putheader("Host", host if ":" in host else f"{host}:{page.port}")
        for name, value in (headers or {}).items():
            connection.putheader(name, value)
        if body is not None:
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def load(page: AsleepPage, path: str = "/", host: str = "127.0.0.1") -> str:
    with LOOPBACK.open(f"http://{host}:{page.port}{path}", timeout=30) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/html; charset=utf-8"
        return response.read().decode()


def secret_of(html: str) -> str:
    return re.search(r'data-secret="([^"]*)"', html).group(1)


def a_start(page: AsleepPage, secret: str) -> dict:
    """What the page's Start button sends."""
    return {"method": "POST", "path": "/start", "body": json.dumps({"secret": secret}).encode(),
            "headers": {"Origin": f"http://127.0.0.1:{page.port}", "Content-Type": "application/json"}}


def one_json_line(body: bytes) -> dict:
    assert body.endswith(b"\n") and body.count(b"\n") == 1, body
    return json.loads(body)


# -- the page -------------------------------------------------------------------------

def test_the_page_names_the_vm_when_and_why_it_stopped_its_price_and_offers_start(keeper):
    stopped = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=5, minutes=12, seconds=10)
    facts = PageFacts("aws", "c5.large", "us-west-2", stopped.isoformat(), "autostop: no kernel busy for 60 min",
                      "about $0.085/h", False)
    with AsleepPage(0, facts, keeper.start, keeper.progress) as page:
        with LOOPBACK.open(f"http://127.0.0.1:{page.port}/lab/tree/analysis.ipynb", timeout=30) as response:
            html, headers = response.read().decode(), response.headers
    assert "The VM of profile aws is asleep" in html
    assert "<dd>c5.large</dd>" in html and "<dd>us-west-2</dd>" in html
    assert f"{stopped.astimezone():%H:%M}" in html and "(5 h 12 min ago)" in html
    assert "<dd>autostop: no kernel busy for 60 min</dd>" in html
    assert "<dd>about $0.085/h while it runs</dd>" in html
    assert '<button id="start" type="button">Start</button>' in html
    nonce = re.search(r"script-src 'nonce-([^']+)'", headers["Content-Security-Policy"]).group(1)
    assert headers["Content-Security-Policy"] == (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; connect-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
    assert f'<script nonce="{nonce}">' in html and f'<style nonce="{nonce}">' in html
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Cache-Control"] == "no-store"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert keeper.calls == 0


def test_facts_from_outside_are_text_on_the_page_never_markup(keeper):
    hostile = PageFacts(profile="<script>alert(1)</script>", size='"><img src=x onerror=alert(2)>',
                        region="</style><script>alert(3)</script>", stopped_at="<b>yesterday</b>",
                        why="idle & <i>quiet</i> \u202eevil", price="<u>$1</u>", gone=False)
    with AsleepPage(0, hostile, keeper.start, keeper.progress) as page:
        html = load(page)
    for raw in ("<script>alert", "<img", "</style><script>", "<b>yesterday", "<i>quiet", "<u>$1"):
        assert raw not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&quot;&gt;&lt;img src=x onerror=alert(2)&gt;" in html
    assert "&lt;b&gt;yesterday&lt;/b&gt;" in html  # no ISO 8601 time: shown as given
    assert "idle &amp; &lt;i&gt;quiet&lt;/i&gt;" in html
    assert html.count("<script") == 1  # the page's own, with its nonce


def test_without_a_known_price_the_page_shows_none(keeper):
    facts = PageFacts("os1", "m1.large", "RegionOne", "2026-12-02T06:30:00Z", "stopped by inv down", "", False)
    with AsleepPage(0, facts, keeper.start, keeper.progress) as page:
        html = load(page)
    assert "<dd>m1.large</dd>" in html and "<dd>stopped by inv down</dd>" in html
    assert "Price" not in html and "$" not in html


@pytest.mark.parametrize("path", ["/", "/lab", "/lab/tree/a.ipynb", "/lab/workspaces/auto-x", "/tree",
                                  "/notebooks/a.ipynb", "/doc/tree/a.ipynb?factory=Notebook", "/lab?token=abc"])
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_a_top_level_page_load_gets_the_page(page, path, host):
    status, headers, body = ask(page, "GET", path, {"Sec-Fetch-Dest": "document", "Accept": "text/html"}, host=host)
    assert status == 200 and headers["content-type"] == "text/html; charset=utf-8"
    assert b"The VM of profile aws is asleep" in body


WEBSOCKET = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
             "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}


@pytest.mark.parametrize("method, path, headers", [
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
])
def test_everything_but_a_page_load_gets_503_saying_asleep_and_starts_nothing(page, keeper, method, path, headers):
    status, answer_headers, body = ask(page, method, path, headers, body=b"{}" if method == "POST" else None)
    assert status == 503 and answer_headers["content-type"] == "application/json"
    assert one_json_line(body) == {
        "message": f"labvm: the VM of profile aws is asleep; open http://127.0.0.1:{page.port}/ to start it",
        "reason": "asleep"}
    assert keeper.calls == 0


@pytest.mark.parametrize("host", ["evil.example", "127.0.0.2", "LOCALHOST", None])
def test_another_host_name_learns_nothing(page, host):
    """A DNS-rebinding name (or a wrong port) gets neither the page, its secret, nor the profile."""
    for path in ("/", "/progress", "/api/kernels"):
        status, _, body = ask(page, "GET", path, host=host)
        assert status == 403
        assert one_json_line(body)["reason"] == "host"
        assert b"aws" not in body
    assert ask(page, "GET", "/")[0] == 200  # control: the right name


# -- the start ------------------------------------------------------------------------

def with_body(json_of_secret):
    return lambda request, port, secret: {**request, "body": json.dumps(json_of_secret(secret)).encode()}


def with_headers(**changes):
    """Headers changed (None: left out); PORT is the page's port, OTHER another one."""
    def change(request, port, secret):
        headers = {**request["headers"], **{name.replace("_", "-"): value for name, value in changes.items()}}
        return {**request, "headers": {name: value.replace("PORT", str(port)).replace("OTHER", str(port + 1))
                                       for name, value in headers.items() if value is not None}}
    return change


def with_host(host: str):
    """Another Host, with the Origin a page of that name would send."""
    def change(request, port, secret):
        named = host.replace("PORT", str(port)).replace("OTHER", str(port + 1))
        return {**request, "host": named, "headers": {**request["headers"], "Origin": f"http://{named}"}}
    return change


REFUSALS = {
    "no secret": (403, "secret", with_body(lambda secret: {})),
    "wrong secret": (403, "secret", with_body(lambda secret: {"secret": secret[:-1] + ("B" if secret[-1] == "A" else "A")})),
    "secret not text": (403, "secret", with_body(lambda secret: {"secret": [secret]})),
    "body not JSON": (403, "secret", lambda request, port, secret: {**request, "body": b"secret=" + secret.encode()}),
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
    "oversize": (413, "size", with_body(lambda secret: {"secret": secret, "pad": "x" * 8000})),
    "GET": (405, "method", lambda request, port, secret: {**request, "method": "GET", "body": None}),
}


def send(page: AsleepPage, request: dict) -> tuple[int, dict, bytes]:
    return ask(page, request["method"], request["path"], request["headers"], request["body"],
               host=request.get("host", "127.0.0.1"))


@pytest.mark.parametrize("case", REFUSALS)
def test_a_start_not_from_the_page_itself_is_refused(page, keeper, case):
    code, reason, change = REFUSALS[case]
    secret = secret_of(load(page))
    status, headers, body = send(page, change(a_start(page, secret), page.port, secret))
    assert status == code and headers["content-type"] == "application/json"
    assert one_json_line(body)["reason"] == reason
    assert keeper.calls == 0
    # control: the page's own request, on the same page
    status, _, body = send(page, a_start(page, secret))
    assert (status, json.loads(body)) == (200, {"state": "starting", "started": True})
    assert keeper.calls == 1


def test_a_chunked_start_is_refused(page, keeper):
    secret = secret_of(load(page))
    request = a_start(page, secret)
    connection = http.client.HTTPConnection("127.0.0.1", page.port, timeout=30)
    connection.request("POST", "/start", body=iter([request["body"]]), encode_chunked=True,
                       headers={**request["headers"], "Transfer-Encoding": "chunked"})
    response = connection.getresponse()
    assert response.status == 413 and one_json_line(response.read())["reason"] == "size"
    connection.close()
    assert keeper.calls == 0
    assert send(page, request)[0] == 200 and keeper.calls == 1  # control


def test_the_start_button_starts_once_and_a_retry_after_a_failure_starts_again(page, keeper):
    html = load(page, host="localhost")
    request = a_start(page, secret_of(html))
    request["host"] = "localhost"
    request["headers"]["Origin"] = f"http://localhost:{page.port}"
    status, _, body = send(page, request)
    assert (status, one_json_line(body)) == (200, {"state": "starting", "started": True})
    assert keeper.calls == 1
    # a second click, or a second tab, while the VM starts: no second start
    status, _, body = send(page, request)
    assert (status, json.loads(body)) == (200, {"state": "starting", "started": False})
    assert keeper.calls == 1
    keeper.say(state="failed", error="InsufficientInstanceCapacity")
    assert send(page, request)[0] == 200
    assert keeper.calls == 2


def test_a_deleted_vm_says_how_to_make_a_new_one_and_starts_nothing(keeper):
    gone = PageFacts("aws", "c5.large", "us-west-2", "2026-12-02T06:30:00+00:00", "terminated by inv terminate",
                     "about $0.085/h", True)
    with AsleepPage(0, gone, keeper.start, keeper.progress) as page:
        html = load(page)
        assert "The VM of profile aws was deleted" in html
        assert "<code>inv up --host aws</code>" in html
        assert "<button" not in html and "<script" not in html and "$0.085" not in html
        assert secret_of(html) == ""
        status, _, body = send(page, a_start(page, secret_of(html)))
        assert status == 403
        assert one_json_line(body) == {
            "message": "labvm: the VM of profile aws was deleted; make a new one with inv up --host aws",
            "reason": "gone"}
    assert keeper.calls == 0
    with AsleepPage(0, FACTS, keeper.start, keeper.progress) as page:  # control: the same profile, not deleted
        assert send(page, a_start(page, secret_of(load(page))))[0] == 200
    assert keeper.calls == 1


def test_progress_is_shown_cleaned_and_only_a_url_on_this_port_is_passed_on(page, keeper):
    keeper.say(state="starting", lines=["Starting i-0abc", "\x1b]52;c;ZXZpbA==\x07 <b>x</b>"],
               url="http://evil.example/lab?token=t")
    status, headers, body = ask(page, "GET", "/progress")
    assert status == 200 and headers["x-labvm"] == "asleep"
    assert one_json_line(body) == {"asleep": True, "lines": ["Starting i-0abc", "\\x1b]52;c;ZXZpbA==\\x07 <b>x</b>"],
                                   "state": "starting", "url": None, "error": ""}
    for url in (f"http://localhost:{page.port}/lab?token=t", f"http://127.0.0.1:{page.port}/lab?token=t"):
        keeper.say(url=url)
        assert json.loads(ask(page, "GET", "/progress")[2])["url"] == url
    for url in (f"http://127.0.0.1:{page.port}@evil.example/", f"http://127.0.0.1:{page.port + 1}/lab",
                f"https://127.0.0.1:{page.port}/lab", f"javascript:alert(1)//http://127.0.0.1:{page.port}/"):
        keeper.say(url=url)
        assert json.loads(ask(page, "GET", "/progress")[2])["url"] is None
    keeper.say(state="<bogus>")
    answer = json.loads(ask(page, "GET", "/progress")[2])
    assert (answer["state"], answer["error"]) == ("failed", "unknown state <bogus>")
    assert ask(page, "POST", "/progress", body=b"")[0] == 405
    assert keeper.calls == 0


# -- the port ---------------------------------------------------------------------------

def bind_as_ssh_does(port: int) -> socket.socket:
    """ssh binds its -L forward with SO_REUSEADDR (channels.c, channel_setup_fwd_listener_tcpip)."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen()
    return listener


def test_close_frees_the_port_at_once_even_with_a_client_connected(keeper):
    page = AsleepPage(0, FACTS, keeper.start, keeper.progress)
    assert load(page)  # a served connection (TIME_WAIT on the page's side)
    idle = socket.create_connection(("127.0.0.1", page.port))  # a client that says nothing
    idle.sendall(b"GET / HTTP/1.1\r\n")
    page.close()
    assert idle.recv(1024) == b""  # closed by the page, not left to time out
    idle.close()
    with bind_as_ssh_does(page.port):
        pass
    page.close()  # twice: nothing happens


def test_a_taken_port_raises_oserror(keeper):
    with bind_as_ssh_does(0) as taken:
        with pytest.raises(OSError):
            AsleepPage(taken.getsockname()[1], FACTS, keeper.start, keeper.progress)


def test_the_port_can_be_taken_back_right_after_close_again_and_again(keeper):
    """The keeper's hand-over both ways: page, ssh, page, on one port."""
    page = AsleepPage(0, FACTS, keeper.start, keeper.progress)
    port = page.port
    for _ in range(3):
        load(page)
        page.close()
        bind_as_ssh_does(port).close()
        page = AsleepPage(port, FACTS, keeper.start, keeper.progress)
    page.close()


# -- fuzz ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fuzzed():
    keeper = Keeper()
    with AsleepPage(0, FACTS, keeper.start, keeper.progress) as page:
        yield page, keeper


HEADER_TEXT = st.text(st.characters(codec="latin-1", exclude_categories=("Cc",)), max_size=120)
URL_TEXT = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7e), max_size=80)


@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(method=st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "PROPFIND", "G%T"]),
       path=st.tuples(st.sampled_from(["/", "/lab", "/lab/", "/api/", "/start", "/progress", "/tree/", "//", ""]),
                      URL_TEXT).map("".join),
       host=st.one_of(st.none(), st.sampled_from(["127.0.0.1", "localhost", "evil.example"]), HEADER_TEXT),
       headers=st.dictionaries(st.sampled_from(["Origin", "Content-Type", "Upgrade", "Sec-Fetch-Dest", "Connection",
                                                "Accept", "Cookie", "Expect", "X-Forwarded-Host"]),
                               st.one_of(st.sampled_from(["application/json", "websocket", "document", "null",
                                                          "http://127.0.0.1:PORT", "100-continue"]), HEADER_TEXT)),
       body=st.one_of(st.none(), st.binary(max_size=6000)))
def test_no_request_gets_a_traceback_or_a_start(fuzzed, method, path, host, headers, body):
    page, keeper = fuzzed
    headers = {name: value.replace("PORT", str(page.port)) for name, value in headers.items()}
    connection = http.client.HTTPConnection("127.0.0.1", page.port, timeout=30)
    connection.putrequest(method, path or "/", skip_host=True, skip_accept_encoding=True)
    if host is not None:
        named = host in ("127.0.0.1", "localhost", "evil.example")  # a name and the port, or any text
        connection.putheader("Host", f"{host}:{page.port}" if named else host)
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

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Answer)  # SO_REUSEADDR, as ssh
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_in_a_browser_start_shows_each_step_then_moves_into_the_lab_on_the_same_url(tab, sync_api, keeper):
    expect = sync_api.expect
    page = AsleepPage(0, FACTS, keeper.start, keeper.progress)
    port = page.port
    lab = f"http://127.0.0.1:{port}/lab?token=the-same-token"
    try:
        tab.goto(f"http://127.0.0.1:{port}/lab/tree/analysis.ipynb")
        expect(tab.get_by_role("heading")).to_have_text("The VM of profile aws is asleep")
        tab.get_by_role("button", name="Start").click()
        keeper.wait_for_calls(1)
        keeper.say(lines=["Starting i-0abc in us-west-2", "<b>Jupyter</b> answers"], url=lab)
        expect(tab.locator("#log li")).to_have_text(["Starting i-0abc in us-west-2", "<b>Jupyter</b> answers"])
        keeper.say(state="failed", error="the cloud said <no>")
        expect(tab.get_by_role("alert")).to_have_text("the cloud said <no>")
        tab.get_by_role("button", name="Retry").click()
        keeper.wait_for_calls(2)
        keeper.say(state="ready", lines=["Starting i-0abc in us-west-2", "The lab answers"])
        expect(tab.get_by_role("status")).to_have_text("Ready: opening the lab…")
        assert tab.url == f"http://127.0.0.1:{port}/lab/tree/analysis.ipynb"  # not before the lab holds the port
    finally:
        page.close()  # the keeper's hand-over: the page lets the port go, ssh -L binds it
    with serving(port, "<title>stand-in lab</title>"):
        tab.wait_for_url(lab, timeout=30_000)
        expect(tab).to_have_title("stand-in lab")
    assert keeper.calls == 2


def test_in_a_browser_a_tab_left_on_the_page_goes_back_into_the_lab_started_elsewhere(tab, sync_api, keeper):
    """`inv up` in a terminal: the keeper hands the port over without a click on the page."""
    page = AsleepPage(0, FACTS, keeper.start, keeper.progress)
    tab.goto(f"http://127.0.0.1:{page.port}/lab")
    sync_api.expect(tab.get_by_role("button", name="Start")).to_be_visible()
    page.close()
    with serving(page.port, "<title>stand-in lab</title>"):
        sync_api.expect(tab).to_have_title("stand-in lab", timeout=30_000)  # its next look, within 5 s
    assert tab.url == f"http://127.0.0.1:{page.port}/lab"
    assert keeper.calls == 0


ATTACK = """<title>attacker</title><script>
const target = "http://127.0.0.1:PORT/start";
const body = JSON.stringify({secret: "SECRET"});
Promise.allSettled([
  fetch(target, {method: "POST", mode: "no-cors", headers: {"Content-Type": "text/plain"}, body}),
  fetch(target, {method: "POST", headers: {"Content-Type": "application/json"}, body}),
  fetch(target, {method: "POST", mode: "no-cors", body: new URLSearchParams({secret: "SECRET"})}),
]).then((results) => { document.title = results.map((result) => result.status).join(" "); });
</script>"""


def test_in_a_browser_a_page_on_another_local_port_cannot_start_the_vm(tab, sync_api, page, keeper):
    """Even knowing the secret: a simple POST is sent (and refused), a JSON one dies at its preflight."""
    secret = secret_of(load(page))
    with serving(0, ATTACK.replace("PORT", str(page.port)).replace("SECRET", secret)) as attacker:
        tab.goto(f"http://127.0.0.1:{attacker}/")
        sync_api.expect(tab).to_have_title("fulfilled rejected fulfilled")  # the two simple POSTs were answered
    assert keeper.calls == 0
    # control: the same JSON fetch from the page itself
    tab.goto(f"http://127.0.0.1:{page.port}/")
    status = tab.evaluate("""async () => (await fetch("/start", {method: "POST",
        headers: {"Content-Type": "application/json"},
        body: JSON.stringify({secret: document.querySelector("main").dataset.secret})})).status""")
    assert status == 200 and keeper.calls == 1


def test_in_a_browser_a_dns_rebinding_name_cannot_read_the_page_or_start_the_vm(tab, sync_api, keeper):
    """evil.example resolves to 127.0.0.1 (--host-resolver-rules): its page was served from the
    port before the asleep page took it, so the asleep page is same-origin to it."""
    with serving(0, "<title>evil</title>") as port:
        tab.goto(f"http://evil.example:{port}/")
        sync_api.expect(tab).to_have_title("evil")
    with AsleepPage(port, FACTS, keeper.start, keeper.progress) as page:
        secret = secret_of(load(page))  # even given the secret
        attempt = """async (secret) => {
            const read = await fetch("/api/kernels");
            const start = await fetch("/start", {method: "POST", headers: {"Content-Type": "application/json"},
                                                 body: JSON.stringify({secret})});
            return [read.status, start.status, (await read.text()).includes("aws")];
        }"""
        assert tab.evaluate(attempt, secret) == [403, 403, False]
        assert keeper.calls == 0
        tab.goto(f"http://127.0.0.1:{port}/")  # control: the same script from the page's own name
        assert tab.evaluate(attempt, secret) == [503, 200, True]
        assert keeper.calls == 1
