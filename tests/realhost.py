"""Real components for tests and benchmarks: OpenSSH sshd on loopback as "the VM", a
throwaway Unix user as its login (its home under /tmp, so nothing touches a real home),
and a "laptop" (hosts.yml + its own ~/.ssh) that runs `inv` in a subprocess.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
INV = [sys.executable, "-m", "invoke", "--search-root", str(ROOT)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


def http_status(url: str, token: str | None = None) -> int | None:
    """The HTTP status of a GET, or None when nothing listens."""
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"token {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code
    except (ConnectionError, urllib.error.URLError):
        return None


def url_of(output: str) -> str:
    return re.search(r"JupyterLab is ready: (\S+)", output).group(1)


def answers(url: str) -> bool:
    base, token = url.split("/lab?token=")
    return http_status(f"{base}/api/status", token) == 200


def notebook_answers(output: str) -> bool:
    """The URL an `inv up` printed answers an authorised /api/status."""
    url = re.search(r"JupyterLab is ready: (\S+)", output).group(1)
    base, token = url.split("/lab?token=")
    return http_status(f"{base}/api/status", token) == 200


@dataclass
class User:
    name: str
    home: Path
    uid: int
    key: Path  # the key this user logs in with "today", before labvm

    def processes(self, pattern: str) -> list[str]:
        """This user's running processes whose command line matches; not a zombie, which pgrep counts
        (an exited process whose parent never waits, such as pid 1 in a container, keeps its name)."""
        out = subprocess.run(["pgrep", "-a", "-u", self.name, "-f", pattern], capture_output=True, text=True)
        return [line for line in out.stdout.splitlines() if not ended(int(line.split()[0]))]

    @classmethod
    def create(cls, key_dir: Path) -> "User":
        name = f"lvt{uuid.uuid4().hex[:8]}"
        home = Path(tempfile.mkdtemp(prefix="labvm-home-"))
        home.rmdir()
        for attempt in range(10):  # useradd gives up on /etc/passwd's lock while another run adds a user
            added = subprocess.run(["useradd", "-m", "-d", str(home), "-s", "/bin/sh", name], capture_output=True)
            if added.returncode == 0 or b"cannot lock" not in added.stderr or attempt == 9:
                break
            time.sleep(0.5)
        added.check_returncode()
        subprocess.run(["usermod", "-p", "*", name], check=True)  # no password, but not locked
        key = key_dir / "id_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        ssh_dir = home / ".ssh"
        ssh_dir.mkdir(mode=0o700)
        (ssh_dir / "authorized_keys").write_text(key.with_suffix(".pub").read_text())
        subprocess.run(["chown", "-R", f"{name}:{name}", str(ssh_dir)], check=True)
        return cls(name, home, pwd.getpwnam(name).pw_uid, key)

    def remove(self) -> None:
        subprocess.run(["crontab", "-r", "-u", self.name], capture_output=True)
        subprocess.run(["pkill", "-KILL", "-u", self.name], capture_output=True)
        time.sleep(0.2)
        subprocess.run(["userdel", "-r", "-f", self.name], capture_output=True)
        shutil.rmtree(self.home, ignore_errors=True)

    def end_processes(self) -> None:
        """What terminating a VM does to what ran on it: the cloud tests' VMs share this user."""
        subprocess.run(["pkill", "-u", self.name, "-f", "jupyter"], capture_output=True)
        self.shell("tmux kill-server 2>/dev/null; screen -wipe >/dev/null 2>&1; true")
        for _ in range(100):
            if not self.processes("jupyter"):
                return
            time.sleep(0.05)

    def forget_jupyterlab_layout(self) -> None:
        """A new VM has no JupyterLab layout saved. This user plays every test's VM: without this,
        a notebook one test left open is restored in the next one's first page, with no launcher."""
        shutil.rmtree(self.home / ".jupyter" / "lab" / "workspaces", ignore_errors=True)

    def shell(self, command: str) -> subprocess.CompletedProcess:
        """A command as this user, with their own environment (tmux ls, screen -ls, ...)."""
        return subprocess.run(
            ["su", "-s", "/bin/sh", self.name, "-c", command],
            capture_output=True,
            text=True,
            env={"PATH": "/usr/bin:/bin", "HOME": str(self.home)},
        )


def sshd_config(port: int, address: str, host_key: Path, log_level: str = "INFO") -> str:
    """A test sshd's configuration: public keys only, forwarding on, no PAM (as root in a container)."""
    return textwrap.dedent(f"""\
        Port {port}
        ListenAddress {address}
        HostKey {host_key}
        PidFile none
        UsePAM no
        StrictModes no
        PasswordAuthentication no
        KbdInteractiveAuthentication no
        PubkeyAuthentication yes
        AuthorizedKeysFile .ssh/authorized_keys
        AllowTcpForwarding yes
        Subsystem sftp internal-sftp
        PermitRootLogin no
        LogLevel {log_level}
        """)


class Sshd:
    """A real OpenSSH server on a free loopback port, with its own host key and log."""

    def __init__(self, directory: Path, log_level: str = "INFO", environment: dict[str, str] | None = None):
        """environment: variables every login gets (sshd_config SetEnv), as a VM's own settings would set
        them (LABVM_DATA_FSTAB: the data step's fstab a test's copy, never /etc/fstab)."""
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.port = free_port()
        self.host_key = directory / "ssh_host_ed25519_key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.host_key)], check=True)
        self.config = directory / "sshd_config"
        self.config.write_text(sshd_config(self.port, "127.0.0.1", self.host_key, log_level))
        if environment:
            with self.config.open("a") as config:
                config.write("".join(f'SetEnv "{name}={value}"\n' for name, value in environment.items()))
        self.log = directory / "sshd.log"
        self.start()

    def start(self) -> None:
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            ["/usr/sbin/sshd", "-D", "-e", "-f", str(self.config)],
            stderr=self.log.open("a"),
            stdin=subprocess.DEVNULL,
        )
        wait_for_port(self.port)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)

    def renew_host_key(self) -> None:
        """The same address, a new machine: what a VM recreated from an image looks like."""
        self.stop()
        self.host_key.unlink()
        self.host_key.with_suffix(".pub").unlink()
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.host_key)], check=True)
        self.start()


@dataclass
class Lab:
    """One user's laptop: a hosts.yml and an ~/.ssh of its own, and `inv` to run."""

    @classmethod
    def create(cls) -> "Lab":
        # Short paths: the tunnel's control socket must fit in 108 bytes.
        directory = Path(tempfile.mkdtemp(prefix="lv-"))
        home = directory / "home"
        home.mkdir()
        return cls(directory, directory / "hosts.yml", directory / "ssh", home)

    directory: Path
    hosts: Path
    ssh_dir: Path
    home: Path

    extra_env: dict = field(default_factory=dict)

    def write_hosts(self, profiles: dict, default: str | None = None, raw: str | None = None) -> None:
        if raw is not None:
            self.hosts.write_text(raw)
            return
        document = {"default": default or next(iter(profiles)), "profiles": profiles}
        self.hosts.write_text(yaml.safe_dump(document))

    @property
    def env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LABVM_") and k not in ("DISPLAY", "BROWSER")}
        env.update(LABVM_HOSTS=str(self.hosts), LABVM_SSH_DIR=str(self.ssh_dir), HOME=str(self.home))
        env.update(self.extra_env)
        return env

    def remove(self, *profiles: str) -> None:
        """The laptop gone: each profile's keeper ended (after `down` it keeps holding the URL, asleep)
        and the folder removed."""
        for profile in profiles:
            self.inv("tunnel", "--host", profile, "--stop", check=False)
        shutil.rmtree(self.directory, ignore_errors=True)

    def keepers(self) -> list[str]:
        """This laptop's keepers still running (pid and command line): each names the lab's ssh folder."""
        found = subprocess.run(
            ["pgrep", "-a", "-f", f"labvm[.]keeper .* {self.ssh_dir}/"], capture_output=True, text=True
        )
        return [line for line in found.stdout.splitlines() if not ended(int(line.split()[0]))]

    def inv(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [*INV, *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            cwd=self.directory,
        )
        result.output = output = result.stdout + result.stderr
        assert "Traceback" not in output, output
        if check:
            assert result.returncode == 0, output
        return result

    def ssh(self, alias: str, command: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["ssh", "-F", str(self.ssh_dir / "config"), "-o", "BatchMode=yes", alias, command],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=30,
        )

    def tunnel_record(self, profile: str) -> dict:
        return json.loads((self.ssh_dir / "labvm" / "run" / f"{profile}.json").read_text())


@contextmanager
def lab_after_up(user: User, sshd: Sshd, profile: str = "nb"):
    """(lab, url): an ssh profile after a real `inv up` (Jupyter on "the VM", a kept tunnel);
    `down` and the lab gone on leaving."""
    lab = Lab.create()
    try:
        lab.write_hosts({profile: ssh_profile(user, sshd)})
        yield lab, url_of(lab.inv("up", "--host", profile, "--no-browser").output)
    finally:
        lab.inv("down", "--host", profile, check=False)
        lab.remove(profile)


def put_to_sleep(lab: Lab, profile: str, why: str = "stopped by inv down") -> dict:
    """Jupyter stopped and the keeper asleep, as `inv down` leaves a cloud profile; its record."""
    from labvm.keeper import tell

    lab.inv("stop-notebook", "--host", profile)
    record = lab.tunnel_record(profile)
    assert tell(record["control_port"], record["control_secret"], f"sleep {why}") == "ok"
    deadline = time.monotonic() + 30
    while lab.tunnel_record(profile).get("state") != "asleep":
        assert time.monotonic() < deadline, "the keeper did not sleep"
        time.sleep(0.05)
    return record


def ssh_profile(user: User, sshd: Sshd, **extra) -> dict:
    """A profile for "the VM": labvm reaches it as a plain SSH host through address:."""
    profile = {
        "provider": "ssh",
        "address": "127.0.0.1",
        "port": sshd.port,
        "user": user.name,
        "identity": str(user.key),
        "env": {"manager": "uv", "packages": ["jupyterlab"]},
        "notebook": {"port": free_port(), "local_port": free_port(), "start_timeout": 180},
    }
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(profile.get(key), dict):
            profile[key] = {**profile[key], **value}
        else:
            profile[key] = value
    return profile


def one_line(result, *fragments: str) -> str:
    """The task failed with one labvm line (progress lines may come before it), holding each fragment."""
    assert result.returncode == 1, result.output
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("labvm: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


def put(user, relative: str, text: str) -> None:
    """A file in the workspace on "the VM", owned by its user."""
    path = user.home / "work" / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    for part in [path, *path.relative_to(user.home).parents]:
        os.chown(user.home / part, user.uid, user.uid)


# File names a VM's user may choose (bytes, as on the VM's disk), each with how labvm must show it.
# rsync prints control bytes, DEL and bytes the locale cannot print as \#ooo (tabs raw; rsync.1,
# --8-bit-output), so its listing is one line per file; labvm reads that back to the real name and
# shows names only through labvm.text.clean.
HOSTILE_NAMES = [
    (b"new\nline.ipynb", "new\\x0aline.ipynb"),
    (b"forged\n>f+++++++++|1|invented.ipynb", "forged\\x0a>f+++++++++|1|invented.ipynb"),
    (b"pipe|99|shifted.ipynb", "pipe|99|shifted.ipynb"),
    (b"tab\there.ipynb", "tab\\x09here.ipynb"),
    (b"\x1b]0;owned\x07title.ipynb", "\\x1b]0;owned\\x07title.ipynb"),
    (b"\x1b[2J\x1b[Hcleared.ipynb", "\\x1b[2J\\x1b[Hcleared.ipynb"),
    ("c1\u009b31mred.ipynb".encode(), "c1\\x9b31mred.ipynb"),
    ("\u202egnp.ipynb".encode(), "\\u202egnp.ipynb"),
    (b"bad\xff\xfeutf8.ipynb", "bad\\udcff\\udcfeutf8.ipynb"),
    (b"-rf --delete.ipynb", "-rf --delete.ipynb"),
    (b"literal\\#012escape.ipynb", "literal\\#012escape.ipynb"),
    ("caf\u00e9.ipynb".encode(), "caf\u00e9.ipynb"),
    (b"CR\rreturn.ipynb", "CR\\x0dreturn.ipynb"),
]
RAW_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u202e]")


def put_raw(user, name: bytes, text: str) -> Path:
    """A file on "the VM" whose name is any bytes."""
    path = os.path.join(bytes(user.home / "work"), name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as file:
        file.write(text)
    os.chown(os.path.dirname(path), user.uid, user.uid)
    os.chown(path, user.uid, user.uid)
    return Path(os.fsdecode(path))


def names_in(folder: Path) -> set[bytes]:
    return {name for name in os.listdir(bytes(folder)) if not name.startswith(b".labvm-sync")}


def ended(pid: int) -> bool:
    """Gone, or a zombie waiting for a parent that does not reap (pid 1 in a container)."""
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def path_without(program: str, tmp_path: Path, path: str | None = None) -> str:
    """This PATH (or `path`) with each folder that holds `program` replaced by links to everything else in it."""
    folders = []
    for index, folder in enumerate((path or os.environ["PATH"]).split(os.pathsep)):
        if not (Path(folder) / program).exists():
            folders.append(folder)
            continue
        copy = tmp_path / f"path{index}"
        copy.mkdir()
        for entry in Path(folder).iterdir():
            if entry.name != program:
                (copy / entry.name).symlink_to(entry)
        folders.append(str(copy))
    return os.pathsep.join(folders)


SQUATTER = r"""
import json, socket, sys, time
port, report = int(sys.argv[1]), sys.argv[2]
held = {}


def note(what):
    with open(report, "a") as out:
        out.write(json.dumps(what) + "\n")


note({"started": True})
while True:
    for family, address in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        if address in held:
            continue
        listener = socket.socket(family)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((address, port))
            listener.listen()
        except OSError:
            listener.close()
            continue
        listener.setblocking(False)
        held[address] = listener
        note({"bound": address})
    for listener in held.values():
        try:
            connection, _ = listener.accept()
        except OSError:
            continue
        connection.settimeout(2)
        try:
            note({"request": connection.recv(65536).decode("latin-1")})
            connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        except OSError:
            pass
        connection.close()
    time.sleep(0.005)
"""


class Squatter:
    """Another user of the laptop who tries all along to bind a port (127.0.0.1 and ::1, as a
    browser's `localhost` may go to either), and notes every request that reaches it."""

    def __init__(self, neighbour: User, port: int):
        self.neighbour, self.port = neighbour, port
        self.script = neighbour.home / "squat.py"
        self.report = neighbour.home / f"squat-{port}.log"
        self.script.write_text(SQUATTER)
        self.report.write_text("")
        os.chown(self.report, neighbour.uid, neighbour.uid)
        self.process = subprocess.Popen(
            ["su", "-s", "/bin/sh", neighbour.name, "-c", f"exec python3 {self.script} {port} {self.report}"],
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while "started" not in self.report.read_text():
            assert time.monotonic() < deadline and self.process.poll() is None, "the squatter did not start"
            time.sleep(0.02)

    def stop(self) -> None:
        subprocess.run(["pkill", "-u", self.neighbour.name, "-f", str(self.script)], capture_output=True)
        self.process.wait(10)

    def __enter__(self) -> "Squatter":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def noted(self) -> list[dict]:
        return [json.loads(line) for line in self.report.read_text().splitlines()]

    def bound(self) -> list[str]:
        return [entry["bound"] for entry in self.noted() if "bound" in entry]

    def requests(self) -> list[str]:
        return [entry["request"] for entry in self.noted() if "request" in entry]


# A child that takes a name (PR_SET_NAME: the kernel keeps 15 bytes) and exits while its parent never waits for
# it: a zombie until the parent ends, as under a container's pid 1 that reaps nothing.  The name comes in two
# pieces on stdin, so that the parent's own command line never matches it.
ZOMBIE_PARENT = """
import ctypes, os, sys
name = sys.stdin.readline().rstrip("\\n").encode()
child = os.fork()
if child == 0:
    if name:
        ctypes.CDLL(None).prctl(15, name, 0, 0, 0)
    os._exit(0)
print(child, flush=True)
sys.stdin.read()
"""


@contextlib.contextmanager
def zombie(user: User, name: str = ""):
    """The pid of a process of `user`'s that exited and is not reaped (named `name`) while the block lasts."""
    parent = subprocess.Popen(
        ["/usr/bin/python3", "-c", ZOMBIE_PARENT],
        user=user.uid,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        parent.stdin.write(name + "\n")
        parent.stdin.flush()
        pid = int(parent.stdout.readline())
        deadline = time.monotonic() + 10
        while not ended(pid):
            assert time.monotonic() < deadline, "the child did not become a zombie"
            time.sleep(0.05)
        yield pid
    finally:
        parent.stdin.close()
        parent.wait(10)
