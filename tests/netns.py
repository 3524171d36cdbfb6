"""Test hosts in their own network namespaces: "a VM" with its own address, its own sshd and
a link that can fail for real.

    host = NetnsHost.create("vm")                   # 10.231.N.2 inside, 10.231.N.1 on this side
    host.start_sshd(directory, env={"http_proxy": ...})   # every session gets env (sshd SetEnv)
    host.drop_all(); ...; host.restore()            # 100 % packet loss on the host's link (iptables)
    inner = NetnsHost.create("vm2", behind=host)    # reachable only from `host` (a jump host test)
    host.remove()                                   # sshd, processes inside, namespace, veth

    with namespaced_lab(user, sshd, tmp_path_factory, ["head", "w1"]) as (lab, hosts):
        ...                     # a laptop and VMs whose env is built; removed on leaving
    with kept_vm(user, sshd, tmp_path_factory, "vm") as vm:
        ...                     # profile "vm" after `inv up`: vm.base, vm.token, vm.record()

Everything runs inside the namespace through `ip netns exec`, so an SSH session (and the
Jupyter it starts) is inside it too.  Names carry a per-run prefix; `remove_all()` is the
finalizer that cleans up after a failed test.  Needs root, iproute2 and iptables.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from realhost import Lab, http_status, sshd_config, ssh_profile

RUN = f"{os.getpid() % 0xFFFF:04x}"
SUBNET = "10.231"
_created: list["NetnsHost"] = []


def available() -> str | None:
    """Why these hosts cannot be made here, or None."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "iptables"):
        if not shutil.which(tool):
            return f"{tool} is missing (apt-get install iproute2 iptables)"
    return None


def _ip(*args: str, namespace: str | None = None) -> str:
    command = ["ip", *(["-n", namespace] if namespace else []), *args]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout


def _free_subnet() -> int:
    used = _ip("-o", "-4", "addr", "show")
    for other in Path("/run/netns").glob("*") if Path("/run/netns").exists() else []:
        used += subprocess.run(
            ["ip", "-n", other.name, "-o", "-4", "addr", "show"], capture_output=True, text=True
        ).stdout
    taken = {int(n) for n in re.findall(rf"{re.escape(SUBNET)}\.(\d+)\.", used)}
    # pytest-xdist workers make hosts at the same time: each takes subnets from its own share.
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:])
    share = 254 // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    return next(n for n in range(1 + worker * share, 1 + (worker + 1) * share) if n not in taken)


class NetnsHost:
    def __init__(
        self, name: str, namespace: str, outer_link: str, inner_link: str, subnet: int, behind: "NetnsHost | None"
    ):
        self.name, self.namespace = name, namespace
        self.outer_link, self.inner_link = outer_link, inner_link
        self.address = f"{SUBNET}.{subnet}.2"
        self.gateway = f"{SUBNET}.{subnet}.1"  # this side's address (in `behind`'s namespace)
        self.behind = behind
        self.port = 22  # its own network, its own port 22
        self.sshd: subprocess.Popen | None = None
        self.sshd_config: Path | None = None
        self.sshd_log: Path | None = None

    @classmethod
    def create(cls, name: str, behind: "NetnsHost | None" = None) -> "NetnsHost":
        index = len(_created)
        namespace = f"lvt{RUN}-{name}"
        outer, inner = f"lv{RUN}{index}o", f"lv{RUN}{index}i"
        subnet = _free_subnet()
        host = cls(name, namespace, outer, inner, subnet, behind)
        _created.append(host)
        outer_ns = behind.namespace if behind else None
        # Test addresses never leave this machine: one not on a test host's own link is unreachable
        # here, instead of going to the default gateway.
        subprocess.run(["ip", "route", "replace", "unreachable", f"{SUBNET}.0.0/16"], check=True)
        subprocess.run(["ip", "netns", "add", namespace], check=True)
        _ip("link", "add", outer, "type", "veth", "peer", "name", inner, "netns", namespace, namespace=outer_ns)
        _ip("addr", "add", f"{host.gateway}/30", "dev", outer, namespace=outer_ns)
        _ip("link", "set", outer, "up", namespace=outer_ns)
        _ip("addr", "add", f"{host.address}/30", "dev", inner, namespace=namespace)
        _ip("link", "set", inner, "up", namespace=namespace)
        _ip("link", "set", "lo", "up", namespace=namespace)
        return host

    def exec(self, *command: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["ip", "netns", "exec", self.namespace, *command], check=check, capture_output=True, text=True
        )

    # -- its sshd --------------------------------------------------------------------------

    def start_sshd(self, directory: Path, env: dict[str, str] | None = None) -> None:
        """sshd on ADDRESS:22 inside; `env` reaches every session (sshd_config SetEnv, OpenSSH 7.8+),
        the way /etc/environment does through pam_env on a cloud image."""
        directory.mkdir(parents=True, exist_ok=True)
        key = directory / "ssh_host_ed25519_key"
        if not key.exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        set_env = "".join(f"SetEnv {name}={value}\n" for name, value in (env or {}).items())
        self.sshd_config = directory / "sshd_config"
        self.sshd_config.write_text(sshd_config(self.port, self.address, key) + set_env)
        self.sshd_log = directory / "sshd.log"
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)
        self.sshd = subprocess.Popen(
            ["ip", "netns", "exec", self.namespace, "/usr/sbin/sshd", "-D", "-e", "-f", str(self.sshd_config)],
            stdin=subprocess.DEVNULL,
            stderr=self.sshd_log.open("a"),
        )
        deadline = time.monotonic() + 10
        while f"{self.address}:{self.port} " not in self.exec("ss", "-Hltn").stdout:
            if time.monotonic() > deadline or self.sshd.poll() is not None:
                raise RuntimeError(f"sshd in {self.namespace} did not start: {self.sshd_log.read_text()[-500:]}")
            time.sleep(0.02)

    def restart_sshd(self, end_sessions: bool) -> None:
        """sshd stopped and started again; end_sessions: its open connections die too (a crash,
        an OOM kill), else they stay as with `systemctl restart ssh`."""
        sessions = self._sshd_sessions() if end_sessions else []
        self.sshd.terminate()
        self.sshd.wait(10)
        for pid in sessions:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.start_sshd(self.sshd_config.parent)

    def _sshd_sessions(self) -> list[int]:
        pids = subprocess.run(["ip", "netns", "pids", self.namespace], capture_output=True, text=True).stdout.split()
        found = []
        for pid in pids:
            try:
                title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
            except OSError:
                continue
            if title.startswith("sshd") and int(pid) != self.sshd.pid:
                found.append(int(pid))
        return found

    # -- its link ---------------------------------------------------------------------------

    def drop_all(self) -> None:
        """Every packet in or out of the host's link is lost, silently, both ways."""
        self.exec("iptables", "-I", "INPUT", "-i", self.inner_link, "-j", "DROP")
        self.exec("iptables", "-I", "OUTPUT", "-o", self.inner_link, "-j", "DROP")

    def restore(self) -> None:
        self.exec("iptables", "-D", "INPUT", "-i", self.inner_link, "-j", "DROP", check=False)
        self.exec("iptables", "-D", "OUTPUT", "-o", self.inner_link, "-j", "DROP", check=False)

    # -- the end ----------------------------------------------------------------------------

    def remove(self) -> None:
        if self.sshd and self.sshd.poll() is None:
            self.sshd.terminate()
            self.sshd.wait(10)
        pids = subprocess.run(["ip", "netns", "pids", self.namespace], capture_output=True, text=True).stdout.split()
        for pid in pids:  # everything started inside it (sessions, Jupyter) is this test's
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        subprocess.run(["ip", "netns", "del", self.namespace], capture_output=True)
        outer_ns = ["-n", self.behind.namespace] if self.behind else []
        subprocess.run(["ip", *outer_ns, "link", "del", self.outer_link], capture_output=True)
        if self in _created:
            _created.remove(self)


def remove_all() -> None:
    """Inner hosts first: what this run made, even after a failed test."""
    for host in reversed(list(_created)):
        host.remove()


@contextmanager
def namespaced_lab(
    user,
    sshd,
    tmp_path_factory,
    names: list[str],
    packages: tuple[str, ...] = ("jupyterlab",),
    sshd_env: dict[str, str] | None = None,
):
    """(lab, hosts): a laptop and one "VM" per name, each in its own namespace with its own sshd
    (`sshd_env` reaching every session), all logging in as `user` with one home, where the env
    (`packages`, uv) is already built: through the loopback `sshd`, as the namespaces have no way
    to PyPI.  Several VMs reach each other through this machine, as a cloud network's machines
    do.  Skips where namespaces cannot be made; on leaving, the VMs (and all that runs in them)
    and the lab are gone."""
    missing = available()
    if missing:
        pytest.skip(missing)
    lab = Lab.create()
    forwarding = Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()
    try:
        lab.write_hosts({"loop": ssh_profile(user, sshd, env={"packages": list(packages)})})
        lab.inv("env", "--host", "loop", timeout=900)
        hosts = [NetnsHost.create(name) for name in names]
        for host in hosts:
            host.start_sshd(tmp_path_factory.mktemp(f"sshd-{host.name}"), env=sshd_env)
        if len(hosts) > 1:
            subprocess.run(["sysctl", "-qw", "net.ipv4.ip_forward=1"], check=True)
            for host in hosts:
                host.exec("ip", "route", "add", f"{SUBNET}.0.0/16", "via", host.gateway)
        yield lab, hosts
    finally:
        remove_all()
        subprocess.run(["sysctl", "-qw", f"net.ipv4.ip_forward={forwarding}"], check=True)
        shutil.rmtree(lab.directory, ignore_errors=True)


class KeptVm:
    """A namespaced VM after `inv up` on the laptop `lab`: its kept tunnel, as the browser uses it."""

    def __init__(self, lab, host, url):
        self.lab, self.host = lab, host
        self.base, self.token = url.split("/lab?token=")
        self.local_port = int(re.search(r"127\.0\.0\.1:(\d+)/", url).group(1))

    def record(self) -> dict:
        return self.lab.tunnel_record("vm")

    def answers(self) -> bool:
        try:
            return http_status(f"{self.base}/api/status", self.token) == 200
        except TimeoutError:  # accepted, never answered: a stalled link
            return False

    def seconds_until_answering(self, timeout: float) -> float:
        started = time.monotonic()
        while not self.answers():
            if time.monotonic() - started > timeout:
                raise AssertionError(
                    f"no answer through the tunnel within {timeout:.0f}s; keeper log: {self.keeper_log()[-1500:]}"
                )
            time.sleep(0.1)
        return time.monotonic() - started

    def keeper_log(self) -> str:
        log = self.lab.ssh_dir / "labvm" / "run" / "vm.log"
        return log.read_text() if log.exists() else ""

    def labvm_processes(self) -> list[str]:
        """Every process whose command line names this laptop's ssh folder: keepers and ssh."""
        out = subprocess.run(["pgrep", "-af", str(self.lab.ssh_dir)], capture_output=True, text=True).stdout
        return [line for line in out.splitlines() if "pgrep" not in line]

    def tunnel_ssh(self) -> list[str]:
        return [line for line in self.labvm_processes() if re.search(r"^\d+ ssh .* -o ControlPath=\S+ .*-L ", line)]

    def assert_one_tunnel(self) -> None:
        assert len(self.tunnel_ssh()) == 1, self.labvm_processes()
        assert self.record()["local_port"] == self.local_port  # the browser's URL still holds


@contextmanager
def kept_vm(user, sshd, tmp_path_factory, name: str, proxies: dict | None = None):
    """Profile "vm": a namespaced VM after `inv up` (proxies set on both sides), `down` at the end."""
    with namespaced_lab(user, sshd, tmp_path_factory, [name], sshd_env=proxies) as (lab, [host]):
        lab.extra_env.update(proxies or {})
        # nohup: a tmux server of another test would run Jupyter outside the namespace.
        lab.write_hosts({"vm": ssh_profile(user, host, address=host.address, notebook={"multiplexer": "nohup"})})
        user.forget_jupyterlab_layout()
        try:
            up = lab.inv("up", "--host", "vm", "--no-browser")
            yield KeptVm(lab, host, re.search(r"JupyterLab is ready: (\S+)", up.stdout).group(1))
        finally:
            lab.inv("down", "--host", "vm", check=False, timeout=120)
