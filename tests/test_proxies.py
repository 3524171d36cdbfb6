"""Proxy variables on both sides (common on lab networks), a failed start that names its cause,
and a quiet first run.

The laptop's `inv` gets http_proxy/https_proxy/HTTP_PROXY pointing at a dead port.  The VM's
sessions get them from sshd_config `SetEnv` (what reaches non-interactive `ssh host cmd` and
Fabric's exec: sshd builds each session's environment itself and does not read ~/.profile,
nor ~/.ssh/environment unless PermitUserEnvironment; on cloud images /etc/environment does it
through pam_env).  There they point at a real forwarding proxy that, like any proxy, cannot
reach the VM's own 127.0.0.1: requests for a loopback address get 502 (a proxy's 127.0.0.1 is
its own), everything else is relayed, so the env step still installs through it.
"""

import json
import re
import select
import socket
import socketserver
import threading
import urllib.request

import pytest

from realhost import Lab, Sshd, free_port, ssh_profile

DEAD = f"http://127.0.0.1:{free_port()}"
LAPTOP_PROXIES = {"http_proxy": DEAD, "https_proxy": DEAD, "HTTP_PROXY": DEAD, "HTTPS_PROXY": DEAD}
LOOPBACK_NAMES = ("127.", "localhost", "[::1]", "::1")


class Proxy(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), ProxyHandler)
        self.requests: list[str] = []  # "CONNECT pypi.org:443", "GET http://127.0.0.1:8888/..."
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class ProxyHandler(socketserver.StreamRequestHandler):
    def handle(self):
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.request.recv(4096)
            if not chunk:
                return
            head += chunk
        method, target = head.split(b"\r\n", 1)[0].decode().split()[:2]
        self.server.requests.append(f"{method} {target}")
        host = target.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0]
        if method != "CONNECT" or host.startswith(LOOPBACK_NAMES):
            self.request.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        name, port = target.rsplit(":", 1)
        with socket.create_connection((name, int(port)), timeout=30) as upstream:
            self.request.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            relay(self.request, upstream)


def relay(a: socket.socket, b: socket.socket) -> None:
    while True:
        readable, _, _ = select.select([a, b], [], [], 120)
        if not readable:
            return
        for source in readable:
            data = source.recv(65536)
            if not data:
                return
            (b if source is a else a).sendall(data)


@pytest.fixture(scope="module")
def proxied(user, tmp_path_factory):
    """An sshd whose sessions all have the proxy variables, and a laptop with dead ones."""
    proxy = Proxy()
    sshd = Sshd(tmp_path_factory.mktemp("proxied-sshd"))
    sshd.stop()
    with sshd.config.open("a") as config:
        for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
            config.write(f"SetEnv {name}={proxy.url}\n")
    sshd.start()
    lab = Lab.create()
    lab.extra_env.update(LAPTOP_PROXIES)
    yield lab, sshd, proxy
    lab.inv("down", "--host", "vm", check=False)
    lab.remove("vm")
    sshd.stop()
    proxy.shutdown()


def test_up_works_with_proxies_on_both_sides(proxied, user):
    lab, sshd, proxy = proxied
    # iniconfig: a small package the shared env does not have yet, so the env step installs something.
    lab.write_hosts(
        {"vm": ssh_profile(user, sshd, env={"packages": ["jupyterlab", "iniconfig"]}, notebook={"start_timeout": 40})}
    )

    up = lab.inv("up", "--host", "vm", "--no-browser")

    url = re.search(r"JupyterLab is ready: (\S+)", up.stdout).group(1)
    base, token = url.split("/lab?token=")
    request = urllib.request.Request(f"{base}/api/status", headers={"Authorization": f"token {token}"})
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request, timeout=10) as answer:
        assert answer.status == 200
    assert lab.ssh("labvm-vm", "echo $http_proxy").stdout.strip() == proxy.url  # the VM really had it
    loopback = [r for r in proxy.requests if r.split()[1].split("://")[-1].startswith(LOOPBACK_NAMES)]
    assert loopback == []  # nbctl and the autostop check went straight to Jupyter
    # The env step installed with the variables in place, and said so in one line, not one per package.
    assert re.search(r"env: installed [a-z ]*iniconfig: \d+ packages in \d+s", up.output), up.output
    assert "+ iniconfig==" not in up.output


def test_first_run_does_not_ask_about_jupyter_news(proxied):
    lab, _, _ = proxied
    url = re.search(r"JupyterLab is ready: (\S+)", lab.inv("up", "--host", "vm", "--no-browser").stdout).group(1)
    base, token = url.split("/lab?token=")
    # The front end asks while fetchNews is "none" (apputils-extension/src/announcements.ts).
    request = urllib.request.Request(
        f"{base}/lab/api/settings/@jupyterlab/apputils-extension:notification",
        headers={"Authorization": f"token {token}"},
    )
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request, timeout=10) as answer:
        settings = json.load(answer)
    # Overrides become the schema's defaults (jupyterlab_server/settings_utils.py _override); the
    # user's own choice, if any, still wins.
    defaults = settings["schema"]["properties"]
    assert defaults["fetchNews"]["default"] == "false"
    assert defaults["checkForUpdates"]["default"] is False


def test_a_failed_start_names_the_cause(proxied, user):
    lab, _, _ = proxied
    lab.inv("stop-notebook", "--host", "vm")
    user.shell("rmdir ~/work && touch ~/work")  # Jupyter exits at once: its root is not a folder
    try:
        failed = lab.inv("start-notebook", "--host", "vm", check=False)
    finally:
        user.shell("rm -f ~/work && mkdir ~/work")
    assert failed.returncode == 1
    last = failed.stderr.strip().splitlines()[-1]
    assert last.startswith("labvm: ") and "Jupyter did not start: " in last
    assert re.search(r"\[(C|E) .*(root_dir|directory)", last, re.IGNORECASE), last
    assert "notebook: the errors in that log:" in failed.stderr
