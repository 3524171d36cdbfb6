"""Where labvm's scripts run: this machine (a child process) or one SSH connection (Fabric).

A step is `sh scripts/NAME.sh ARGS` with its inputs as environment variables; every
value is shlex-quoted on the command line, so nothing from hosts.yml is ever parsed by
a shell.  Scripts print progress on stderr (shown live) and data on stdout (returned).
"""

from __future__ import annotations

import codecs
import io
import logging
import os
import secrets
import shlex
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from . import vm
from .config import Profile
from .errors import LabvmError
from .sshconfig import SshHome, parse_jump
from .text import CleanStream, clean, decode

BANNER_TIMEOUT = 20
PROBE_TIMEOUT = 2  # seconds a port that sent no SSH banner gets to say what it is (SshHost._not_ssh)
OUTPUT_LIMIT = 1 << 20  # bytes of a remote command's stdout, and of its stderr, kept: the last ones
READ_LIMIT = 64 * 1024  # bytes of a small file read back from the host (a digest, a password hash)

# paramiko's transport thread logs its failures (a port that is not SSH) with a traceback, which
# Python's last-resort handler prints on stderr; labvm says the same in one line (SshHost._try).
logging.getLogger("paramiko").addHandler(logging.NullHandler())


# A connection's first step compares the host's copy of the scripts with labvm's in its own command
# (no round trip of its own): a copy that differs runs nothing and says so with this line and status.
SCRIPTS_DIFFER = "labvm: the host's scripts differ"
SCRIPTS_DIFFER_STATUS = 97
_ONLY_IF_CURRENT = (
    f'[ "$(head -c {READ_LIMIT} {vm.DIGEST_FILE} 2>/dev/null)" = "$1" ] '
    f'|| {{ echo {shlex.quote(SCRIPTS_DIFFER)}; exit {SCRIPTS_DIFFER_STATUS}; }}; shift; exec sh "$@"'
)


def command_line(script: str, args: tuple[str, ...], env: dict[str, str], digest: str = "") -> str:
    """`NAME=value ... sh SCRIPT ARGS`, every value shlex-quoted: no shell parses anything from hosts.yml.
    digest: the script runs only if the host's scripts have this digest (else SCRIPTS_DIFFER)."""
    assignments = [f"{name}={shlex.quote(str(value))}" for name, value in env.items()]
    guard = ["-c", shlex.quote(_ONLY_IF_CURRENT), "labvm", shlex.quote(digest)] if digest else []
    return " ".join([*assignments, "sh", *guard, shlex.quote(script), *map(shlex.quote, args)])


def _show_and_keep(stream, kept: list[str]) -> None:
    """A local step's stderr: each line shown as it comes, the last OUTPUT_LIMIT bytes kept."""
    size = 0
    for raw in iter(lambda: stream.readline(OUTPUT_LIMIT), b""):
        line = decode(raw)
        sys.stderr.write(line)
        sys.stderr.flush()
        kept.append(line)
        size += len(line)
        while size > OUTPUT_LIMIT and len(kept) > 1:
            size -= len(kept.pop(0))


def _failure(label: str, script: str, stderr: str) -> LabvmError:
    # Lines end at "\n" only: splitlines() would also break at a carriage return or a separator the host sent.
    lines = [line for line in stderr.strip().split("\n") if line.strip()]
    errors = [line[len("error: ") :] for line in lines if line.startswith("error: ")]
    reason = errors[-1] if errors else (lines[-1] if lines else "no output")
    return LabvmError(f"{label}: {Path(script).stem} failed: {clean(reason)}")


def _size(kib: int) -> str:
    for unit, scale in (("GiB", 1024**2), ("MiB", 1024)):
        if kib >= 10 * scale:
            return f"{kib // scale} {unit}"
    return f"{kib} KiB"


class LocalHost:
    """This machine: no SSH, no tunnel."""

    def __init__(self, profile: Profile):
        self.profile = profile
        self.label = profile.name
        self.where = "this machine"

    def run(self, script: str, *args: str, env: dict[str, str] | None = None) -> str:
        """`sh SCRIPT ARGS` as an argument list: no shell parses them, and no shell's start-up hooks
        (BASH_ENV, ENV) run before it.  stderr is shown as it comes (an install's progress) and kept."""
        # The tools labvm was installed with (uv in its virtualenv) come first on PATH.
        tools = os.path.dirname(sys.executable)
        hooks = ("BASH_ENV", "ENV")
        environment = {
            **{k: v for k, v in os.environ.items() if k not in hooks},
            **{k: str(v) for k, v in (env or {}).items()},
            "PATH": f"{tools}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        }
        process = subprocess.Popen(
            ["sh", str(vm.SCRIPTS / script), *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=environment,
        )
        assert process.stdout is not None and process.stderr is not None  # for mypy: both are PIPE
        said: list[str] = []
        shown = threading.Thread(target=_show_and_keep, args=(process.stderr, said), daemon=True)
        shown.start()
        out = process.stdout.read(OUTPUT_LIMIT)
        process.stdout.read()  # the rest is not kept, but the script must not block on a full pipe
        process.wait()
        shown.join()
        if process.returncode != 0:
            raise _failure(self.label, script, "".join(said))
        return decode(out)

    def write(self, path: str, content: str) -> None:
        """A file under the home folder, 0600 from its first byte (its folders made)."""
        target = Path.home() / path
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(content)

    def read(self, path: str) -> str:
        """A file under the home folder; "" when there is none."""
        target = Path.home() / path
        return target.read_text() if target.exists() else ""

    def upload(self, local: Path, path: str) -> str:
        """Nothing to copy: the scripts read the laptop's file where it is."""
        return str(local)

    def close(self) -> None:
        """Nothing to close: no connection was opened."""
        pass


class SshHost:
    """One Fabric connection for the whole task; scripts uploaded with put when they changed."""

    def __init__(self, profile: Profile, hostname: str, ssh: SshHome, cluster_address: str = ""):
        """cluster_address: where the other machines of its Dask cluster reach it, when not at
        hostname (a cloud VM's private address: its public one is often not on its interface)."""
        self.profile = profile
        self.hostname = hostname
        self.cluster_address = cluster_address or hostname
        self.ssh = ssh
        self.label = f"{profile.name} ({profile.user + '@' if profile.user else ''}{hostname}:{profile.port})"
        self.where = f"{hostname}:{profile.port}"
        self._connection = None
        self._scripts_ready = False
        self._step = "connecting"  # what a dropped connection interrupted
        self._jump = None

    @property
    def connection(self):
        """The Fabric connection, opened on first use (through the jump host when the profile has one)."""
        if self._connection is None:
            self._connection = self._open()
        return self._connection

    def _open(self):
        connection = self._connection_factory()
        conn = connection(self.hostname, self.profile.user, self.profile.port, self._gateway(connection))
        self._try(conn.open)
        return conn

    def _connection_factory(self):
        """A function making a Fabric connection with labvm's keys and known_hosts, hosts.yml alone deciding."""
        from fabric import Config, Connection
        from paramiko import SSHConfig

        self.ssh.ensure_known_hosts()  # whichever task connects first
        self.ssh.check_identity(self.profile)
        keys = [self.ssh.key] + ([self.profile.identity] if self.profile.identity else [])
        connect_kwargs = {
            "key_filename": [str(k) for k in keys if k.exists()],
            "banner_timeout": BANNER_TIMEOUT,
            "auth_timeout": 20,
        }

        def connection(host, user, port, gateway=None):
            conn = Connection(
                host=host,
                user=user or None,
                port=port,
                connect_timeout=10,
                connect_kwargs=dict(connect_kwargs),
                gateway=gateway,
                config=Config(ssh_config=SSHConfig()),
            )
            # First contact: accept and remember the key (accept-new); later: strict.
            conn.client.load_host_keys(str(self.ssh.known_hosts))
            return conn

        return connection

    def _gateway(self, connection):
        """The jump host's connection, made once per task: the SSH wait and the session share it."""
        if self.profile.jump and self._jump is None:
            jump_user, jump_host, jump_port = parse_jump(self.profile.jump)
            self._jump = connection(jump_host, jump_user, jump_port)
        return self._jump

    def wait_for_sshd(self, timeout: float) -> None:
        """Until the host's sshd sends its banner (a new VM boots for a while after 'running').

        Behind `jump:` the VM is reachable only from the jump host, so the banner is read
        through a direct-tcpip channel of the jump host's connection.
        """
        where = f"{self.hostname}:{self.profile.port}" + (f" via {self.profile.jump}" if self.profile.jump else "")
        deadline = time.monotonic() + timeout
        start = reported = time.monotonic()
        while True:
            if self._banner():
                return
            now = time.monotonic()
            if now > deadline:
                raise LabvmError(f"{self.label}: SSH on {where} did not answer within {timeout:.0f}s")
            if now - reported >= 5:
                reported = now
                print(f"waiting for SSH on {where} ({now - start:.0f}s)", flush=True)
            time.sleep(0.5)

    def _banner(self) -> bool:
        try:
            if not self.profile.jump:
                with socket.create_connection((self.hostname, self.profile.port), timeout=5) as s:
                    return s.recv(4).startswith(b"SSH-")
            jump = self._jump or self._gateway(self._connection_factory())
            if not (jump.is_connected and jump.transport.is_active()):
                self._try(jump.open)
            channel = jump.transport.open_channel(
                "direct-tcpip", (self.hostname, self.profile.port), ("127.0.0.1", 0), timeout=5
            )
            try:
                channel.settimeout(5)
                return channel.recv(4).startswith(b"SSH-")
            finally:
                channel.close()
        except LabvmError:
            raise  # the jump host itself refuses us: waiting will not help
        except Exception:  # refused, reset, timed out, channel open failed: not up yet
            return False

    def _try(self, action, *args, **kwargs):
        import paramiko

        where = self.label + (f" via jump {self.profile.jump}" if self.profile.jump else "")
        connected = self._connection is not None
        started = time.monotonic()  # a port that never sends a banner: how long it was waited for
        try:
            return action(*args, **kwargs)
        except paramiko.BadHostKeyException as e:
            port = self.profile.port if e.hostname == self.hostname else parse_jump(self.profile.jump)[2]
            host = e.hostname if port == 22 else f"[{e.hostname}]:{port}"  # as known_hosts names it
            raise LabvmError(
                f"{where}: the host key changed since labvm first connected (possible "
                f"impostor, or the VM was recreated). If you recreated it: "
                f"ssh-keygen -f '{self.ssh.known_hosts}' -R '{host}'"
            ) from None
        except paramiko.AuthenticationException:
            raise LabvmError(
                f"{where}: SSH login refused; set {self.profile.key('identity')} (and user) to a key "
                f"the host accepts, or add that key to ssh-agent"
            ) from None
        except socket.gaierror:
            raise LabvmError(f"{where}: cannot resolve the host name; check {self.profile.key('address')}") from None
        except (TimeoutError, socket.timeout):
            raise LabvmError(
                f"{where}: no answer within 10 s; check {self.profile.key('address/port')}, your VPN or jump host"
            ) from None
        except (paramiko.SSHException, EOFError, OSError) as e:
            # paramiko quotes what the other end sent (a banner, a reason): cleaned
            reason = clean(getattr(e, "strerror", None) or str(e) or type(e).__name__, 300)
            # A put whose size came out short is a full disk only when the host says so.
            if "No space left" in reason or (("size mismatch" in reason or connected) and self._disk_full()):
                raise self._disk_full_error() from None
            if connected:
                raise LabvmError(
                    f"{where}: the connection dropped during {self._step}; run the same task again to resume"
                ) from None
            no_banner = ("banner", "Indecipherable protocol version", "No existing session")
            if any(sign in reason for sign in no_banner) or not reason.strip():
                waited = time.monotonic() - started
                raise LabvmError(
                    self._not_ssh(where)
                    or f"{where}: accepted the connection but sent no SSH banner within {waited:.0f} s; "
                    f"is an SSH server on that port? check {self.profile.key('address/port')}"
                ) from None
            raise LabvmError(f"{where}: SSH failed: {reason}; check {self.profile.key('address/port')}") from None

    def _not_ssh(self, where: str) -> str:
        """What answers on the port instead of sshd, in one line ("" when it says nothing, or says SSH):
        paramiko skips the lines before a banner and names none of them.  Asked with an HTTP request, as
        a web server (the usual guest on a wrong port) waits for one, while sshd speaks first anyway.
        Behind `jump:` the port is reachable from the jump host only: not asked."""
        if self.profile.jump:
            return ""
        try:
            with socket.create_connection((self.hostname, self.profile.port), timeout=PROBE_TIMEOUT) as s:
                s.settimeout(PROBE_TIMEOUT)
                s.sendall(b"HEAD / HTTP/1.0\r\n\r\n")
                answer = s.recv(256)
        except OSError:  # gone, refused, or silent: the banner message says enough
            return ""
        first = answer.split(b"\n")[0].strip()
        if not first or first.startswith(b"SSH-"):
            return ""
        # The other end wrote it: cleaned and bounded.
        what = "HTTP" if first.startswith(b"HTTP/") else repr(clean(decode(first), 80))
        return (
            f"{where}: {self.hostname}:{self.profile.port} answers {what}, not SSH: "
            f"is `port:` right? ({self.profile.key('port')})"
        )

    def _free_space(self) -> tuple[int, int] | None:
        """(free, total) KiB where labvm writes on the host (~/.labvm), if the host still answers."""
        try:
            df = "{ df -Pk .labvm 2>/dev/null || df -Pk .; } | tail -n 1"
            out = self._exec(df, limit=READ_LIMIT)[1].split()
            return int(out[3]), int(out[1])
        except Exception:  # the host is gone as well: no figure to give
            return None

    def _disk_full(self) -> bool:
        space = self._free_space()
        return space is not None and space[0] < 1024

    def _disk_full_error(self) -> LabvmError:
        space = self._free_space()
        figure = f" ({_size(space[0])} free of {_size(space[1])})" if space else ""
        return LabvmError(
            f"{self.label}: the VM's disk is full{figure} during {self._step}; free some space "
            f"(e.g. conda clean -a, or a larger volume) and run the same task again"
        )

    def login(self) -> None:
        """Logs in and runs nothing: what `inv check` asks of the SSH path."""
        self._try(self._exec, "true")

    def ensure_scripts(self) -> None:
        """Upload scripts/ (with put) only when their digest differs from the host's copy."""
        digest = vm.digest()
        self._step = "the upload of labvm's scripts"
        if self.read(vm.DIGEST_FILE).strip() != digest:
            folder = vm.layout.SCRIPTS_DIR
            self._checked(f"mkdir -p {folder} && chmod 700 {vm.layout.STATE_DIR}")
            # One rename command, in this order: the digest is renamed last, only once every script was.
            self._put(
                [(str(path), f"{folder}/{path.name}") for path in vm.files()]
                + [(io.BytesIO(digest.encode()), vm.DIGEST_FILE)]
            )
        self._scripts_ready = True

    def _put(self, files: list[tuple], private: bool = False) -> None:
        """Puts each (source, path) under a name of its own, then renames them into place. Two tasks
        on one host at once (`inv status` of two profiles on one VM, the keeper and `inv up`) never
        write into one file together, and a script another task is running keeps the copy it
        started with. private: created 0600 (and any missing folder 0700) before any byte is written."""
        suffix = f".labvm-{secrets.token_hex(6)}"
        if private:
            self._checked(
                "umask 077 && "
                + " && ".join(
                    f"mkdir -p {shlex.quote(str(Path(path).parent))} && : > {shlex.quote(path + suffix)}"
                    for _, path in files
                )
            )
        for source, path in files:
            self._try(self.connection.put, source, path + suffix)
        self._checked(" && ".join(f"mv -f {shlex.quote(path + suffix)} {shlex.quote(path)}" for _, path in files))

    def run(self, script: str, *args: str, env: dict[str, str] | None = None) -> str:
        """`sh SCRIPT ARGS` on the host (the scripts uploaded first where they changed): its stdout;
        its stderr shown as it comes, cleaned; a failure is one line, its last `error:` line."""
        path = f"{vm.layout.SCRIPTS_DIR}/{script}"
        if not self._scripts_ready:  # the first step checks the host's copy itself: one round trip, not two
            self._step = f"the {Path(script).stem} step"
            checked = command_line(path, args, env or {}, digest=vm.digest())
            exited, stdout, stderr = self._try(self._exec, checked, live=True)
            if not (exited == SCRIPTS_DIFFER_STATUS and stdout.strip() == SCRIPTS_DIFFER):
                self._scripts_ready = True
                return self._output(script, exited, stdout, stderr)
            self.ensure_scripts()
        self._step = f"the {Path(script).stem} step"
        exited, stdout, stderr = self._try(self._exec, command_line(path, args, env or {}), live=True)
        return self._output(script, exited, stdout, stderr)

    def _output(self, script: str, exited: int, stdout: str, stderr: str) -> str:
        """A step's stdout; a failure as one line (a full disk said as such)."""
        if exited != 0:
            if "No space left on device" in stderr or self._disk_full():
                raise self._disk_full_error()
            raise _failure(self.label, script, stderr)
        return stdout

    def _exec(self, command: str, live: bool = False, limit: int = OUTPUT_LIMIT) -> tuple[int, str, str]:
        """Runs one command on the task's connection: (exit status, stdout, stderr), each output
        its last `limit` bytes; stderr shown as it comes, cleaned, when `live` (a step's progress).
        Raises LabvmError when the channel closes without an exit status (sshd or the link went)."""
        channel = self.connection.create_session()  # Fabric opens the connection again if it went
        try:
            channel.exec_command(command)
            shown = CleanStream(sys.stderr) if live else None
            err = bytearray()
            reader = threading.Thread(target=_drain, args=(channel.recv_stderr, err, limit, shown), daemon=True)
            reader.start()
            out = bytearray()
            _drain(channel.recv, out, limit, None)
            reader.join()
            if shown:
                shown.flush()
            exited = channel.recv_exit_status()
        finally:
            channel.close()
        if exited == -1:
            raise LabvmError(
                f"{self.label}: the connection dropped during {self._step}; run the same task again to resume"
            )
        return exited, decode(bytes(out)), decode(bytes(err))

    def _checked(self, command: str) -> None:
        """A short command that must succeed (mkdir and the like)."""
        exited, _, stderr = self._try(self._exec, command)
        if exited != 0:
            reason = stderr.strip().splitlines()[-1] if stderr.strip() else f"exit status {exited}"
            raise LabvmError(f"{self.label}: {self._step}: {clean(reason)}")

    def write(self, path: str, content: str) -> None:
        """A file only its owner may read, whole or not at all."""
        self._step = f"writing {path}"
        self._put([(io.BytesIO(content.encode()), path)], private=True)

    def read(self, path: str) -> str:
        """A small file of labvm's on the host ("" when there is none): its first READ_LIMIT bytes."""
        command = f"head -c {READ_LIMIT} {shlex.quote(path)} 2>/dev/null || true"
        return self._try(self._exec, command, limit=READ_LIMIT)[1]

    def upload(self, local: Path, path: str) -> str:
        """A file of the laptop's to the host: its folder made if missing (a VM labvm never set up),
        the file 0600 before its first byte (an environment file may name a private index).
        Returns the path the scripts read it at."""
        self._step = f"the upload of {local.name}"
        self._put([(str(local), path)], private=True)
        return path

    def close(self) -> None:
        """Closes the connection and the jump host's, when they were opened."""
        if self._connection is not None:
            self._connection.close()
        if self._jump is not None:
            self._jump.close()


def _drain(receive, kept: bytearray, limit: int, shown: CleanStream | None) -> None:
    """Reads a channel's stream to its end; keeps its last `limit` bytes, shows it when asked."""
    text = codecs.getincrementaldecoder("utf-8")("replace")  # a character may span two reads
    while data := receive(32768):
        kept += data
        del kept[:-limit]
        if shown:
            shown.write(text.decode(data))
