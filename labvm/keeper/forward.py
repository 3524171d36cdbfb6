"""The keeper's ssh: the system's OpenSSH in the foreground, forwarding the lab to a place only the
user can reach, and the way the gate reaches it.

`ssh -N -L RUN_DIR/PROFILE.fwd:127.0.0.1:REMOTE_PORT`: a unix socket in the 0700 run folder, which
no other user can open.  On Windows, whose OpenSSH forwards no unix socket (and where the run
folder's path cannot hold one), ssh listens on a fresh loopback port instead, and every connection
there is checked to reach that very ssh (a port is anyone's to take while its ssh is gone).
Keep-alives notice a dead link within 45 s.  Where the platform's ssh can (not Windows'), it is also
a ControlMaster: `inv sync` and the keeper's questions ride its login.
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable

from .. import platforms, ssh_options
from ..gate import free_port
from ..text import LINE_LIMIT, clean, decode
from .protocol import ACCEPT_TIMEOUT, CONNECT_TIMEOUT, forward_socket, shared_connection

KEEPALIVE_INTERVAL = 10  # seconds; 3 missed answers end ssh: a dead link is noticed in 30-40 s
KEEPALIVE_COUNT = 3
SSH_LINES_LOGGED = 200  # of one ssh's stderr (a jump host's banner may never end)
END_WAIT = 2  # seconds for an ssh to end when asked before it is killed (a stopped one never would)


def ssh_command(ssh_config: str, alias: str, forward: str, remote_port: int, shared: Path | None = None) -> list[str]:
    """forward: where ssh listens for the gate's connections (a unix socket's path, or on Windows
    127.0.0.1:PORT); shared: the socket through which other ssh may use this login (ControlMaster);
    None: no sharing, whatever the user's own ssh config says (Windows' OpenSSH breaks on it)."""
    sharing = ["ControlMaster=yes", f"ControlPath={shared}"] if shared else ["ControlMaster=no", "ControlPath=none"]
    return [
        "ssh",
        "-F",
        ssh_config,
        "-N",
        "-o",
        sharing[0],
        "-o",
        sharing[1],
        *ssh_options.for_forward(),
        "-o",
        "ExitOnForwardFailure=yes",
        "-o",
        "StreamLocalBindUnlink=yes",  # a socket an ssh killed left behind is replaced
        "-o",
        "StreamLocalBindMask=0177",  # 0600, whatever the user's config says (the folder is 0700 too)
        "-o",
        f"ServerAliveInterval={KEEPALIVE_INTERVAL}",
        "-o",
        f"ServerAliveCountMax={KEEPALIVE_COUNT}",
        "-o",
        "BatchMode=yes",
        "-o",
        f"ConnectTimeout={CONNECT_TIMEOUT}",
        "-L",
        f"{forward}:127.0.0.1:{remote_port}",
        alias,
    ]


class Forward:
    """One ssh at a time: started, its stderr logged (its last line kept: the reason it ended),
    reached, ended.  `changed` is called when the ssh ended or found nobody on the VM's port."""

    def __init__(
        self,
        run_dir: Path,
        profile: str,
        ssh_config: str,
        alias: str,
        remote_port: int,
        log: Callable[[str], None],
        changed: Callable[[], None],
    ):
        self.alias, self.remote_port, self.log, self.changed = alias, remote_port, log, changed
        self.shared = shared_connection(run_dir, profile)
        self.path = forward_socket(run_dir, profile)
        self.ssh_config = ssh_config  # the user's (see leave_out_forwards)
        self.labvm_config = str(run_dir.parent / "config")  # labvm's own blocks (labvm.sshconfig.SshHome.config)
        self.inner_port = 0  # without a unix socket (Windows): the loopback port the ssh listens on
        self.child: subprocess.Popen | None = None
        self.ending = False  # asked to end: a stopped (stalled) ssh never closes its stderr
        self.gone = threading.Event()  # its stderr closed: it ended
        self.reader: threading.Thread | None = None
        self.last_line = ""

    def leave_out_forwards(self) -> None:
        """A `Host *` that forwards ports for every host would make this ssh bind them too (and end
        it where one is taken, ExitOnForwardFailure); it then reads labvm's own blocks only.
        Forwards add up in OpenSSH, so no `-o` can take them back one by one."""
        found = ssh_options.forwards_in(self.ssh_config, self.alias)
        if found:
            self.log(
                f"{self.ssh_config} forwards ports for {self.alias} ({clean(found[0], 80)}): the tunnel's "
                f"ssh reads only {self.labvm_config}"
            )
            self.ssh_config = self.labvm_config

    @property
    def pid(self) -> int:
        """The running ssh's; 0 while none runs."""
        child = self.child
        return child.pid if child is not None and child.poll() is None else 0

    def running(self) -> bool:
        """Whether an ssh is running now."""
        return self.child is not None and self.child.poll() is None

    def start(self) -> None:
        """A new ssh forwarding the VM's port to this keeper's socket (the last one's socket files cleared first)."""
        if self.shared:  # one left by an ssh killed with its keeper: ssh would not share through it
            self.shared.unlink(missing_ok=True)
        if self.path:
            forward = str(self.path)
        else:
            self.inner_port = free_port()
            forward = f"127.0.0.1:{self.inner_port}"
        command = ssh_command(self.ssh_config, self.alias, forward, self.remote_port, self.shared)
        self.ending, self.last_line = False, ""
        child = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            **platforms.windowless(),
        )
        self.child, self.gone = child, threading.Event()
        self.reader = threading.Thread(target=self._read_errors, args=(child, self.gone), daemon=True)
        self.reader.start()

    def _read_errors(self, child: subprocess.Popen, gone: threading.Event) -> None:
        try:
            self._log_errors(child)
        finally:  # stderr closed: ssh ended; whoever waits on it goes on at once
            gone.set()
            self.changed()

    def _log_errors(self, child: subprocess.Popen) -> None:
        """ssh's stderr, one bounded line at a time; the first lines logged, the last one kept."""
        logged, errors = 0, child.stderr
        assert errors is not None  # stderr=PIPE
        for raw in iter(lambda: errors.readline(LINE_LIMIT), b""):
            line = clean(decode(raw).strip())
            if not line:
                continue
            logged += 1
            if logged <= SSH_LINES_LOGGED:
                self.log(f"ssh: {line}")
            elif logged == SSH_LINES_LOGGED + 1:
                self.log(f"ssh: more than {SSH_LINES_LOGGED} lines; only its last one is kept")
            if "open failed" not in line:  # a probe of the forward before Jupyter listened
                self.last_line = line
            else:  # nobody listens there now (Jupyter stopped): someone else may take the port next
                self.changed()

    def wait_until_accepting(self, given_up: Callable[[], bool]) -> bool:
        """Until the forward accepts (True), or ssh ended, ACCEPT_TIMEOUT passed or `given_up()`."""
        deadline = time.monotonic() + ACCEPT_TIMEOUT
        while self.running() and time.monotonic() < deadline and not (given_up() or self.ending):
            probe = self.connect()
            if probe:
                probe.close()
                return self.running()
            time.sleep(0.05)
        return False

    def connect(self) -> socket.socket | None:
        """A connection to the lab through this ssh's forward; None when it does not accept.  The
        unix socket is in the 0700 run folder; a loopback port (Windows) is anyone's to take while
        its ssh is gone, so each connection there is checked to be that ssh's."""
        child = self.child
        try:
            if self.path:
                return platforms.connect_unix(self.path, CONNECT_TIMEOUT)
            connection = socket.create_connection(("127.0.0.1", self.inner_port), timeout=CONNECT_TIMEOUT)
        except OSError:
            return None
        connection.settimeout(None)
        if child and platforms.answered_by(child.pid, connection):
            return connection
        connection.close()
        self.log(f"127.0.0.1:{self.inner_port} is not this keeper's ssh (another program took it): a new ssh")
        self.end()
        return None

    def end(self) -> None:
        """Asks ssh to end; `reap` kills it when it does not (a stopped process cannot)."""
        child = self.child
        if child and child.poll() is None:
            self.ending = True
            child.terminate()
        self.changed()

    def reap(self) -> int | None:
        """Waits for the ended ssh (kills it past END_WAIT) and removes what a killed one leaves;
        its exit status, and its last words read."""
        child = self.child
        if child is None:
            return None
        try:
            child.wait(END_WAIT)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        for left in (self.shared, self.path):  # a killed ssh leaves its sockets: the next one would not share
            if left:
                left.unlink(missing_ok=True)
        if self.reader:
            self.reader.join(2)  # ssh's last words, for the reason
        return child.returncode
