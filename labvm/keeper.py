"""The tunnel keeper: one small detached process per profile on the laptop.

    python -m labvm.keeper PROFILE LOCAL_PORT REMOTE_PORT RUN_DIR SSH_CONFIG ALIAS HOSTS

It holds the profile's URL for good: 127.0.0.1:LOCAL_PORT and [::1]:LOCAL_PORT are bound once,
when it starts, and kept until it ends (labvm.gate); no reconnect, sleep or wake ever frees them,
so no other user of the laptop can take the port the browser's tab, its cookies and its token go
to.  Behind them it runs the system's OpenSSH in the foreground (`ssh -N -L RUN_DIR/PROFILE.fwd:
127.0.0.1:REMOTE_PORT`: a unix socket in the 0700 run folder, which no other user can open; on
Windows, whose OpenSSH forwards no unix socket, a loopback port whose listener is checked to be
that ssh, connection by connection), with keep-alives that notice a dead link within 45 s, and
starts it again with a backoff capped at a few seconds; the gate relays each connection to it, and
a connection that comes while ssh reconnects waits for it (labvm.gate.HOLD).  One forward: a
cluster's Dask dashboard is inside JupyterLab (labvm.cluster).  Where the platform's ssh can (not
Windows'), that ssh is also a ControlMaster at RUN_DIR/PROFILE.mux: `inv sync` rides its login
instead of making one (see shared_connection).

Its control channel is a loopback TCP socket of its own (the same on every platform, no
signals): the record names its port and a random secret; a caller sends one line
"<secret> <command>" and reads one answer line ("ok").  Commands: `reconnect` (a new ssh now,
what `inv up` asks of a tunnel that does not answer, and wakes an asleep keeper), `wake`,
`autostop` (ask the VM about autostop now), `sleep <why>`, `lab <url>` (the lab's URL with its
current token, from `inv up`), `end`.  A wrong secret is ignored (and logged once).  SIGTERM
still ends it, as a fallback.

Asleep: when a cloud profile's VM is stopped (`sleep <why>` from `inv down`/`inv stop`, or the
cloud says so after repeated failures), the keeper ends ssh and the same sockets answer with the
asleep page (labvm.asleep), which names the profile, why and when it stopped, the price, and offers
a Start button (state "gone", no Start, when the VM was deleted) to the user's own browser only.
Start runs `python -m labvm.asleep_start` (what `inv up` does) as a child whose output the page
shows; its `up` wakes the keeper, whose ssh then carries the port's connections again, and the
page moves into the lab once the child says it answers.  Asleep it runs no ssh and looks every
few seconds whether its profile left hosts.yml (two stats; it ends then).

Before each ssh forwards, and every few seconds while it does, it asks the VM who listens on the
remote ports (one short `ssh -T`, riding the forward's login while it runs, scripts/nbctl.py
owner, which reads /proc and connects to nobody): a port held by another login of a shared VM
gets no forward (the browser's token and cookies would go to that user); the state is then
"refused", its reason names the user, and the keeper asks again every minute, or at once on
`reconnect`.

While the tunnel is up it asks the VM for its autostop report (one short non-interactive ssh,
no pty: a pty login would count as activity) right after each connection and then every minute
(`autostop`: now), and warns once per idle stretch, in its log and as a desktop notification,
when the VM will stop itself within autostop's own warning window (with its price when known).

Its state is one JSON file, ~/.ssh/labvm/run/<profile>.json (0600, written whole, atomically):
keeper_pid, ssh_pid, local_port, remote_port, control_port, control_secret, state ("starting", "up", "reconnecting",
"refused", "asleep", "gone", "failed"), since (ISO time), reason (ssh's last line, or why it
sleeps), autostop_asked (ISO time of the last question about autostop that was answered, to the
microsecond).  The browser's proof (labvm.asleep) is ~/.ssh/labvm/run/<profile>.proof, 0600, made
once and kept, so a tab that has it keeps its Start across keepers.
"""

from __future__ import annotations

import hmac
import json
import math
import os
import re
import secrets
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from . import answers, platforms, ssh_options
from .asleep import PageFacts, Pages
from .errors import LabvmError
from .gate import Gate, Handler, Request, Response, free_port
from .text import LINE_LIMIT, clean, communicate_bounded, decode

KEEPALIVE_INTERVAL = 10  # seconds; 3 missed answers end ssh: a dead link is noticed in 30-40 s
KEEPALIVE_COUNT = 3
CONNECT_TIMEOUT = 5  # seconds per attempt while the network is gone
BACKOFF_FIRST, BACKOFF_CAP = 0.5, 3.0  # attempt every <= 8 s: back within 10 s of the network
ASK_CLOUD_AFTER = 3  # failed attempts in a row before asking the cloud whether the VM still runs
ASK_CLOUD_EVERY = 60  # seconds between those questions
ACCEPT_TIMEOUT = 30  # seconds for the first ssh to reach the point where its forward accepts
KEEPER_MODULE = "labvm.keeper"
SOCKET_PATH = re.compile(r"[\w./+-]+")  # what ssh takes as a path as it is (no spaces, quotes, %, $, :)
UNIX_PATH_LIMIT = 104  # bytes of a unix socket's path, with its NUL: macOS's sun_path (Linux: 108)
AUTOSTOP_ASK_EVERY = 60  # seconds: the VM's check runs every minute
AUTOSTOP_ASK_TIMEOUT = 30  # seconds for the whole question, connection included
AUTOSTOP_WARN_WITHIN = 300  # seconds, or half a shorter period: scripts/autostop.py's `wall` warning
# The VM's report, run from the login directory (labvm.remote.REMOTE_SCRIPTS, not imported: it
# loads Fabric); the system's python3, as the minute's check uses.
AUTOSTOP_STATUS = "python3 .labvm/scripts/autostop.py status"
AUTOSTOP_ANSWER_LIMIT = 64 * 1024  # bytes of the VM's answer kept (its report is under 1 KB)
SSH_LINES_LOGGED = 200  # of one ssh's stderr (a jump host's banner may never end)
# Who listens on the VM's ports (scripts/nbctl.py owner, read from /proc: no connection to them),
# asked before each ssh forwards, then every OWNER_ASK_EVERY seconds while it does.
OWNER_QUESTION = "python3 .labvm/scripts/nbctl.py owner"
OWNER_ASK_EVERY = 10  # seconds
OWNER_ASK_TIMEOUT = 15  # seconds for the whole question, connection included
OWNER_ANSWER_LIMIT = 4096  # bytes: one short JSON line per port
OWNER_FIELDS = {"port", "uid", "mine", "user"}
ROOT_UID = 0
REFUSED_RETRY = 60  # seconds between questions while another login holds a port
CONTROL_TIMEOUT = 5  # seconds a caller has for its whole control line, and waits for the answer
CONTROL_LINE_LIMIT = 1024  # bytes of one control line
CONTROL_CALLERS = 8  # control connections served at once; beyond, a new one is closed unanswered
SLEEP_WHY_LIMIT = 300  # characters of why it sleeps
CHILD_END_WAIT = 2  # seconds for an ssh to end when asked before it is killed (a stopped one never would)
ASLEEP_CHECK_EVERY = 5  # seconds: asleep, whether its profile is still in hosts.yml (two stats; read when changed)
WAKE_WITHIN = OWNER_ASK_TIMEOUT + ACCEPT_TIMEOUT  # asleep to up, at most
COMING = ("starting", "reconnecting")  # states in which the forward is on its way: connections wait
START_MODULE = "labvm.asleep_start"  # what the page's Start runs: `inv up` without a browser
START_LINES = 200  # of the start's output, the last ones the page shows
GONE_STATUS = 3  # asleep_start's exit status when the VM was deleted: no new VM is made from a page
AUTOSTOP_DUE_WITHIN = 2 * AUTOSTOP_ASK_EVERY  # this close to its autostop when last asked: autostop stopped it
TOKEN = re.compile(r"(token=)[^&\s]+")  # kept out of the log and the page's lines (the page gets the URL)
PROOF = re.compile(r"[A-Za-z0-9_-]{43}")  # secrets.token_urlsafe(32)


def now_iso() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def write_state(path: Path, state: dict) -> None:
    write_private(path, json.dumps(state))


def write_private(path: Path, text: str) -> None:
    """The file whole (a reader sees the old one or the new one), 0600 from its first byte."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def own_proof(run_dir: Path, profile: str) -> str:
    """What the profile's page takes as proof that a browser is the user's (labvm.asleep): made
    once, kept in a 0600 file of the run folder (0700), so a tab that holds it keeps its Start
    across keepers."""
    path = run_dir / f"{profile}.proof"
    try:
        kept = path.read_text().strip()
        if PROOF.fullmatch(kept):
            return kept
    except OSError:
        pass
    proof = secrets.token_urlsafe(32)
    write_private(path, proof)
    return proof


def socket_path(run_dir: Path, name: str, added: int = 0) -> Path | None:
    """RUN_DIR/NAME where ssh can take it as a unix socket's path as it is: no character ssh reads as
    its own syntax (whitespace, quotes, %, $, and : in a forward), and short enough for macOS with
    the `added` characters ssh puts on it while binding."""
    path = run_dir / name
    if not SOCKET_PATH.fullmatch(str(path)) or len(os.fsencode(path)) + added >= UNIX_PATH_LIMIT:
        return None
    return path


def shared_connection(run_dir: Path, profile: str) -> Path | None:
    """Where the keeper's ssh lets another ssh ride its login (a sync: no handshake of its own, 0.2 s
    less on loopback, 0.4 s at a 50 ms round trip); None where the platform's ssh cannot share, or the
    path cannot be a socket's: ssh binds it with "." and 16 characters added (mux.c)."""
    if not platforms.ssh_shares_connections():
        return None
    return socket_path(run_dir, f"{profile}.mux", added=17)


def forward_socket(run_dir: Path, profile: str) -> Path | None:
    """The unix socket ssh forwards the lab to: in the 0700 run folder, so no other user can connect;
    None where this laptop has no unix-socket forward (Windows) or the path cannot be one."""
    return socket_path(run_dir, f"{profile}.fwd") if platforms.has_unix_sockets() else None


def ssh_command(ssh_config: str, alias: str, forward: str, remote_port: int, shared: Path | None = None) -> list[str]:
    """forward: where ssh listens for the gate's connections (a unix socket's path, or on Windows
    127.0.0.1:PORT); shared: the socket through which other ssh may use this login (ControlMaster);
    None: no sharing, whatever the user's own ssh config says (Windows' OpenSSH breaks on it)."""
    sharing = ["ControlMaster=yes", f"ControlPath={shared}"] if shared else ["ControlMaster=no", "ControlPath=none"]
    return [
        "ssh", "-F", ssh_config, "-N",
        "-o", sharing[0], "-o", sharing[1], *ssh_options.for_forward(),
        "-o", "ExitOnForwardFailure=yes",
        "-o", "StreamLocalBindUnlink=yes",  # a socket an ssh killed left behind is replaced
        "-o", "StreamLocalBindMask=0177",  # 0600, whatever the user's config says (the folder is 0700 too)
        "-o", f"ServerAliveInterval={KEEPALIVE_INTERVAL}",
        "-o", f"ServerAliveCountMax={KEEPALIVE_COUNT}",
        "-o", "BatchMode=yes",
        "-o", f"ConnectTimeout={CONNECT_TIMEOUT}",
        "-L", f"{forward}:127.0.0.1:{remote_port}",
        alias,
    ]


def autostop_command(ssh_config: str, alias: str, shared: Path | None = None) -> list[str]:
    return question_command(ssh_config, alias, AUTOSTOP_STATUS, shared)


def owner_command(ssh_config: str, alias: str, port: int, shared: Path | None = None) -> list[str]:
    return question_command(ssh_config, alias, f"{OWNER_QUESTION} --port {port}", shared)


def question_command(ssh_config: str, alias: str, question: str, shared: Path | None = None) -> list[str]:
    """One question to the VM: -T, as a pty login would count as activity and keep the VM up.
    shared: the forward's ssh's socket; while that ssh runs the question rides its login (no new
    login on the VM every 10 s, and an answer even while the VM takes no new login); otherwise,
    the socket absent, ssh logs in itself."""
    return [
        "ssh", "-F", ssh_config, "-T",
        "-o", "ControlMaster=no", "-o", f"ControlPath={shared or 'none'}",
        *ssh_options.for_commands(),  # no forward: the tunnel's ports are the keeper's ssh's
        "-o", "BatchMode=yes",
        "-o", f"ConnectTimeout={CONNECT_TIMEOUT}",
        alias, question,
    ]


def port_holders(out: str, ports: list[int]) -> dict[int, dict]:
    """nbctl.py owner's answer, checked line by line: {port: its line} for exactly the ports
    asked; ValueError for anything else (the answer comes from the VM)."""
    held: dict[int, dict] = {}
    for line in out.splitlines():
        entry = json.loads(line)
        if not isinstance(entry, dict) or set(entry) != OWNER_FIELDS:
            raise ValueError(f"a line that is not {{{', '.join(sorted(OWNER_FIELDS))}}}")
        port, uid, mine, user = entry["port"], entry["uid"], entry["mine"], entry["user"]
        if type(port) is not int or port not in ports or port in held:
            raise ValueError(f"port {port!r} was not asked")
        nobody = uid is None and mine is False and user is None
        somebody = type(uid) is int and uid >= 0 and type(mine) is bool and isinstance(user, str) and user
        if not (nobody or somebody):
            raise ValueError(f"port {port}: uid {uid!r}, mine {mine!r}, user {user!r}")
        held[port] = entry
    if set(held) != set(ports):
        raise ValueError(f"no word on port {min(set(ports) - set(held))}")
    return held


def refusal(held: dict[int, dict]) -> str:
    """Why the browser must not be forwarded: "" when each port is the user's own, root's or free.
    Root reads the token file and the user's sessions anyway: refusing it protects nothing (and a
    system service, a test's stand-in, may serve a port as root)."""
    for port, entry in held.items():
        if entry["uid"] not in (None, ROOT_UID) and not entry["mine"]:
            return (f"port {port} on the VM is held by user {entry['user']}, not you; not forwarding there "
                    f"(asking again every {REFUSED_RETRY}s, or at `inv up`)")
    return ""


def read_line(conn: socket.socket, deadline: float) -> str:
    """One control line (without its newline), at most CONTROL_LINE_LIMIT bytes, whole by the deadline."""
    data = b""
    while b"\n" not in data and len(data) < CONTROL_LINE_LIMIT:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no whole line in time")
        conn.settimeout(left)
        chunk = conn.recv(CONTROL_LINE_LIMIT - len(data))
        if not chunk:
            break
        data += chunk
    return decode(data.split(b"\n", 1)[0]).strip()


def tell(port: int, secret: str, command: str) -> str | None:
    """Sends one command to a keeper's control socket; its answer line, or None without one."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=CONTROL_TIMEOUT) as conn:
            conn.sendall(f"{secret} {command}\n".encode())
            return read_line(conn, time.monotonic() + CONTROL_TIMEOUT) or None
    except OSError:
        return None


def duration(seconds: float) -> str:
    """As scripts/autostop.py writes a duration: 90s, 26m, 2h05m."""
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def autostop_warning(report: dict) -> str:
    """"stops itself in 4m (idle 26m of 30m)" when the VM will stop within the warning window;
    "" when it will not (autostop off, in use, extended, or already stopping)."""
    period, idle = report.get("idle_seconds") or 0, report.get("idle_for")
    if not period or idle is None or report.get("extended_until") or report.get("stop_requested"):
        return ""
    if report.get("dask_scheduler"):  # a cluster worker: it follows its head, which is what we watch
        return ""
    left = period - idle
    if left > min(AUTOSTOP_WARN_WITHIN, period / 2):
        return ""
    # The stop comes at the first minute's check past the period: round the time left up.
    when = f"in {duration(math.ceil(left / 60) * 60 if left >= 120 else left)}" if left > 0 else "at its next check"
    return f"stops itself {when} (idle {duration(idle)} of {duration(period)})"


class AutostopWatch:
    """Asks the VM how close it is to stopping itself while the tunnel is up, and warns once per
    idle stretch.  Its own thread: a slow or failing question never delays or ends the tunnel."""

    def __init__(self, keeper: "Keeper"):
        self.keeper = keeper
        self.bell, self.ringer = socket.socketpair()
        self.ringer.setblocking(False)
        self.lock = threading.Lock()
        self.question: subprocess.Popen | None = None
        self.ended = False
        self.warned = False
        self.last_idle: int | None = None
        self.trouble = ""  # the kind of failure already logged, until an answer comes
        self.absent = False  # no autostop there: asked again only when rung (reconnect, `autostop`)
        self.last_report: dict | None = None  # the VM's last good report: why it stopped, if it did
        self.last_reasons: list[str] = []  # what last kept it in use

    def ring(self, *_) -> None:
        """Ask now.  Takes no lock: any thread may call it at any moment."""
        try:
            self.ringer.send(b"!")
        except OSError:  # already rung (full), or ended
            pass

    def run(self) -> None:
        while True:
            rung = bool(select.select([self.bell], [], [], AUTOSTOP_ASK_EVERY)[0])
            if rung:
                self.bell.recv(64)
            if self.ended:
                return
            if self.keeper.state["state"] == "up" and (rung or not self.absent):
                try:
                    self.ask()
                except Exception as e:  # the VM's answer is checked; whatever else goes wrong, the watch lives on
                    self.failed("error", f"autostop: asking {self.keeper.alias} failed: "
                                         f"{type(e).__name__}: {e}; asking again in a minute")

    def end(self) -> None:
        """Ends a question under way: nothing of labvm's outlives the keeper."""
        with self.lock:
            self.ended = True
            question = self.question
        self.ring()
        if question and question.poll() is None:
            question.terminate()
            question.wait(5)

    def ask(self) -> None:
        answer = self.answer()
        if answer is None:
            return
        asked, code, out, err = answer
        self.judge(code, out, err)
        with self.lock:  # after any warning, so whoever reads it sees the outcome; never after the end
            if not self.ended:
                self.keeper.note(autostop_asked=asked)

    def judge(self, code: int, out: str, err: str) -> None:
        why = err.strip().splitlines()[-1] if err.strip() else ""
        if code == 255:  # ssh's own failure: no route, refused, no answer
            self.failed("unreachable", f"autostop: could not ask {self.keeper.alias}: {why or 'ssh failed'}; "
                                       f"asking again in a minute")
            return
        try:
            report = answers.autostop_report(out, f"autostop: {self.keeper.alias}", self.keeper.profile) if code == 0 else None
        except LabvmError as e:  # checked field by field: a report labvm cannot use is said once
            self.absent = True
            self.failed("bad answer", f"{e}; asking again when the tunnel reconnects")
            return
        if report is None:  # `null`: not set up there; a failure: a VM an older labvm set up
            self.absent = True
            self.failed("absent", f"autostop: {self.keeper.alias} has none ({why or 'not set up there'}); "
                                  f"asking again when the tunnel reconnects")
            return
        self.absent, self.trouble = False, ""
        self.consider(report)

    def answer(self) -> tuple[str, int, str, str] | None:
        """(when it was asked, exit status, stdout, stderr) of one question; None once the keeper
        ends.  The moment is precise: the answer reflects the VM as it was then or later."""
        with self.lock:
            if self.ended:
                return None
            asked = datetime.now(timezone.utc).isoformat()
            self.question = subprocess.Popen(
                autostop_command(self.keeper.ssh_config, self.keeper.alias, self.keeper.shared), stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, **platforms.windowless())
        try:
            out, err, too_much = communicate_bounded(self.question, AUTOSTOP_ASK_TIMEOUT, AUTOSTOP_ANSWER_LIMIT)
        except subprocess.TimeoutExpired:
            self.question.kill()
            self.question.wait()
            return asked, 255, "", f"no answer within {AUTOSTOP_ASK_TIMEOUT}s"
        if too_much:
            return asked, 1, "", f"its answer was larger than {AUTOSTOP_ANSWER_LIMIT // 1024} KiB"
        return asked, self.question.returncode, decode(out), decode(err)

    def failed(self, kind: str, line: str) -> None:
        if kind != self.trouble:
            self.trouble = kind
            self.keeper.log(line)

    def consider(self, report: dict) -> None:
        self.last_report = report
        if report.get("reasons"):
            self.last_reasons = report["reasons"]
        idle = report.get("idle_for")
        if idle is None or (self.last_idle is not None and idle < self.last_idle):
            self.warned = False  # a new idle stretch: in use again, extended, or a new setting
        self.last_idle = idle
        warning = autostop_warning(report)
        if warning and not self.warned:
            self.warned = True
            profile = self.keeper.profile
            advice = f"use Jupyter or `inv autostop --host {profile} --extend 1h`"
            price = self.keeper.price_words()
            if price:
                advice += f" (it costs {price} while it runs)"
            self.keeper.log(f"autostop: {profile} {warning}; {advice}")
            platforms.notify(f"labvm: {profile}", f"{warning}; {advice}")


def autostop_stopped_it(report: dict | None, reasons: list[str]) -> str:
    """"stopped by its autostop (idle 30m of 30m: last in use for 1 kernel(s) busy)" when the VM's
    last report said it was about to stop itself; "" otherwise."""
    if not report or not report.get("idle_seconds"):
        return ""
    period, idle = report["idle_seconds"], report.get("idle_for")
    if not report.get("stop_requested") and (idle is None or period - idle > AUTOSTOP_DUE_WITHIN):
        return ""
    last = f": last in use for {'; '.join(reasons)}" if reasons else ""
    return f"stopped by its autostop (idle {duration(report.get('stopped_after') or period)} of {duration(period)}{last})"


class Control:
    """The keeper's control socket: 127.0.0.1, a port of its own, one line in, one line out.
    Another user of the laptop can connect too (a loopback port is open to all): without the
    secret from the 0600 record nothing happens, and a caller that sends slowly holds only its own
    connection, for CONTROL_TIMEOUT at most.  Commands are carried out one at a time."""

    def __init__(self, keeper: "Keeper"):
        self.keeper = keeper
        self.secret = secrets.token_urlsafe(32)
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.wrong_said = False
        self.callers = threading.BoundedSemaphore(CONTROL_CALLERS)
        self.one_at_a_time = threading.Lock()

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:  # closed: the keeper ends
                return
            if not self.callers.acquire(blocking=False):
                conn.close()
                continue
            threading.Thread(target=self.answer, args=(conn,), daemon=True).start()

    def answer(self, conn: socket.socket) -> None:
        then = None
        try:
            with conn:
                line = read_line(conn, time.monotonic() + CONTROL_TIMEOUT)
                secret, _, request = line.partition(" ")
                if not hmac.compare_digest(secret.encode(), self.secret.encode()):
                    if not self.wrong_said:
                        self.wrong_said = True
                        self.keeper.log("control: a request with a wrong secret was ignored (said once)")
                    return
                with self.one_at_a_time:
                    answer, then = self.keeper.command(request)
                    try:
                        conn.sendall(f"{answer}\n".encode())
                    except OSError:  # the caller left: what it asked is done all the same
                        pass
                    if then:  # after the answer: `end` ends the process
                        then()
        except OSError:  # a caller too slow, or gone
            pass
        finally:
            self.callers.release()

    def close(self) -> None:
        self.server.close()


class Keeper:
    """The loop (keep), what it is told (command), and the URL's routes (labvm.gate.Routes)."""

    def __init__(self, profile: str, local_port: int, remote_port: int, run_dir: Path, ssh_config: str,
                 alias: str, hosts: str):
        self.profile, self.local_port, self.remote_port = profile, local_port, remote_port
        self.record = run_dir / f"{profile}.json"
        self.shared = shared_connection(run_dir, profile)
        self.forward_path = forward_socket(run_dir, profile)
        self.inner_port = 0  # without a unix socket (Windows): the loopback port the ssh listens on
        self.ssh_config, self.alias, self.hosts = ssh_config, alias, hosts
        self.forward_config = ssh_config  # the forwarding ssh's config (see run)
        self.labvm_config = str(run_dir.parent / "config")  # labvm's own blocks (labvm.sshconfig.SshHome.config)
        self.child: subprocess.Popen | None = None
        self.ssh_ending = False  # asked to end: a stopped (stalled) ssh never closes its stderr
        self.last_line = ""
        self.stopping = False
        self.wake = threading.Event()
        self.recheck = threading.Event()  # ask who holds the ports now (or ssh ended)
        self.question: subprocess.Popen | None = None
        self.unchecked_said = False
        self.record_lock = threading.Lock()  # the loop, the autostop watch and the start write the record
        self.forwarding = threading.Condition()  # notified at each change of state: the gate's connections wait on it
        self.watch = AutostopWatch(self)
        # Asleep: set by `sleep` (control thread) or the cloud's answer (loop); read by the loop.
        self.sleep_request: tuple[str, bool] | None = None  # (why, gone)
        self.awaken = False  # `wake`/`reconnect` while asleep
        self.asleep_why, self.asleep_since, self.gone = "", "", False
        self.hosts_seen = self.hosts_mtime()
        # The page's Start: a child running `up`, its output; the lab's URL once known.
        self.start_lock = threading.Lock()
        self.started: dict = {"lines": [], "state": "idle", "error": ""}
        self.lab_url: str | None = None
        self.pages = Pages(local_port, own_proof(run_dir, profile), self.start_from_page, self.progress)
        self.state = {"keeper_pid": os.getpid(), "ssh_pid": 0, "local_port": local_port,
                      "remote_port": remote_port, "state": "starting",
                      "since": now_iso(), "reason": ""}

    def log(self, line: str) -> None:
        """One line of the keeper's log; its words may come from the VM or a jump host: cleaned."""
        print(f"{now_iso()} {clean(line)}", flush=True)

    def set_state(self, state: str, reason: str = "", keep_since: bool = False) -> None:
        fields = {"state": state, "reason": reason, "ssh_pid": self.child.pid if self.child else 0}
        if not (keep_since and self.state["state"] == state):
            fields["since"] = now_iso()
        self.note(**fields)
        with self.forwarding:
            self.forwarding.notify_all()
        self.log(f"{state}{': ' + reason if reason else ''}")

    def note(self, **fields) -> None:
        with self.record_lock:
            self.state.update(fields)
            write_state(self.record, self.state)

    # -- what it is told (control channel, SIGTERM) ---------------------------------------

    def command(self, request: str):
        """(answer, what to do after answering) for one control request."""
        command, _, words = request.partition(" ")
        if command == "reconnect":
            return "ok", self.on_reconnect
        if command == "wake":
            return "ok", self.on_wake
        if command == "autostop":
            return "ok", self.watch.ring
        if command == "sleep":
            return "ok", lambda: self.on_sleep(clean(words.strip(), SLEEP_WHY_LIMIT) or "VM stopped")
        if command == "lab":
            return ("ok", None) if self.learn_url(words.strip()) else ("not a URL of this port", None)
        if command == "end":
            return "ok", self.on_end
        return f"unknown command {clean(command, 40)!r}", None

    def learn_url(self, url: str) -> bool:
        """The lab's URL with its current token (from `inv up`, or the page's start): the page moves
        there, and a browser opening it gets the page's proof.  Only a URL on this port."""
        if not (url.startswith(self.pages.lab_prefixes) and url.isprintable() and " " not in url):
            return False
        token = TOKEN.search(url)
        self.lab_url, self.pages.token = url, token.group(0)[len("token="):] if token else None
        return True

    def on_end(self) -> None:
        self.log("asked to end")
        self.on_term()

    def on_term(self, *_):
        self.stopping = True
        self.end_child()
        self.end_question()
        self.wake.set()

    def on_reconnect(self, *_):
        """`inv up` found the tunnel not answering, or asleep: a new ssh now, whatever this one's state."""
        self.log("asked to reconnect now")
        self.awaken = True
        self.end_child()
        self.wake.set()

    def on_wake(self) -> None:
        self.log("asked to wake")
        self.awaken = True
        self.wake.set()

    def on_sleep(self, why: str) -> None:
        self.log(f"asked to sleep: {why}")
        self.fall_asleep(why, gone=False)

    def fall_asleep(self, why: str, gone: bool) -> None:
        self.sleep_request, self.awaken = (why, gone), False
        self.end_child()
        self.end_question()
        self.wake.set()

    def end_question(self) -> None:
        question = self.question
        if question and question.poll() is None:
            question.terminate()

    def end_child(self) -> None:
        """Asks ssh to end; `reap` kills it when it does not (a stopped process cannot)."""
        child = self.child
        if child and child.poll() is None:
            self.ssh_ending = True
            child.terminate()
        self.recheck.set()

    def reap(self) -> None:
        try:
            self.child.wait(CHILD_END_WAIT)
        except subprocess.TimeoutExpired:
            self.child.kill()
            self.child.wait()
        if self.shared:  # a killed ssh leaves its socket: each ssh pointed at it would complain, then log in
            self.shared.unlink(missing_ok=True)
        if self.forward_path:
            self.forward_path.unlink(missing_ok=True)

    # -- one ssh ------------------------------------------------------------------------

    def start_child(self) -> None:
        if self.shared:  # one left by an ssh killed with its keeper: ssh would not share through it
            self.shared.unlink(missing_ok=True)
        if self.forward_path:
            forward = str(self.forward_path)
        else:
            self.inner_port = free_port()
            forward = f"127.0.0.1:{self.inner_port}"
        command = ssh_command(self.forward_config, self.alias, forward, self.remote_port, self.shared)
        self.ssh_ending = False
        self.child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, **platforms.windowless())
        self.ssh_gone = threading.Event()
        self.reader = threading.Thread(target=self.read_errors, args=(self.child, self.ssh_gone), daemon=True)
        self.reader.start()

    def read_errors(self, child: subprocess.Popen, gone: threading.Event) -> None:
        try:
            self.log_errors(child)
        finally:  # stderr closed: ssh ended; the loop waiting on it goes on at once
            gone.set()
            self.recheck.set()

    def log_errors(self, child: subprocess.Popen) -> None:
        """ssh's stderr, one bounded line at a time; the first lines logged, the last one kept."""
        logged = 0
        while line := child.stderr.readline(LINE_LIMIT):
            line = clean(decode(line).strip())
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
                self.recheck.set()

    def wait_until_accepting(self) -> bool:
        deadline = time.monotonic() + ACCEPT_TIMEOUT
        while (self.child.poll() is None and time.monotonic() < deadline
               and not (self.stopping or self.sleep_request or self.ssh_ending)):
            probe = self.connect_forward()
            if probe:
                probe.close()
                return self.child.poll() is None
            time.sleep(0.05)
        return False

    def connect_forward(self) -> socket.socket | None:
        """A connection to the lab through this ssh's forward; None when it does not accept.  The
        unix socket is in the 0700 run folder; a loopback port (Windows) is anyone's to take while
        its ssh is gone, so each connection there is checked to be that ssh's."""
        child = self.child
        try:
            if self.forward_path:
                return platforms.connect_unix(self.forward_path, CONNECT_TIMEOUT)
            connection = socket.create_connection(("127.0.0.1", self.inner_port), timeout=CONNECT_TIMEOUT)
        except OSError:
            return None
        connection.settimeout(None)
        if child and platforms.answered_by(child.pid, connection):
            return connection
        connection.close()
        self.log(f"127.0.0.1:{self.inner_port} is not this keeper's ssh (another program took it): a new ssh")
        self.end_child()
        return None

    # -- the URL's sockets (labvm.gate.Routes) ------------------------------------------------

    def own(self, request: Request) -> Handler | None:
        return self.pages.own(request)

    def page(self, request: Request) -> Response | None:
        return self.pages.page(request)

    def upstream(self, wait: float) -> socket.socket | None:
        """A connection through ssh's forward, waiting while ssh (re)connects; None when asleep,
        refused, failed, or the forward is not back within `wait`."""
        deadline = time.monotonic() + wait
        while True:
            with self.forwarding:
                self.forwarding.wait_for(lambda: self.state["state"] not in COMING or self.stopping,
                                         max(0.0, deadline - time.monotonic()))
                state = "ended" if self.stopping else self.state["state"]
            connection = self.connect_forward() if state == "up" else None
            if connection or time.monotonic() >= deadline or state not in ("up", *COMING):
                return connection
            time.sleep(0.1)  # "up" a moment after its ssh ended: the loop is about to say so

    def unavailable(self) -> Response:
        state, reason = str(self.state["state"]), str(self.state["reason"])
        words = f"{state}: {reason}" if reason else state
        return Response(503, (json.dumps({"message": f"labvm: no way to the VM of {self.profile} now ({clean(words)})",
                                          "reason": state}) + "\n").encode())

    # -- the loop ----------------------------------------------------------------------

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.on_term)
        signal.signal(signal.SIGINT, self.on_term)
        if hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, signal.SIG_IGN)  # the terminal that started `inv` may close
        platforms.raise_open_files_limit()
        try:
            gate = Gate(self.local_port, self)
        except OSError as e:  # another program took the port since `inv up` chose it
            self.set_state("failed", f"127.0.0.1:{self.local_port} is taken ({e.strerror or e}); "
                                     f"`inv up --host {self.profile}` again picks another port")
            self.record.unlink(missing_ok=True)
            return 1
        self.leave_out_forwards_of_the_users_config()
        control = Control(self)
        self.state.update(control_port=control.port, control_secret=control.secret)
        threading.Thread(target=control.serve, daemon=True).start()
        threading.Thread(target=self.watch.run, daemon=True).start()
        try:
            return self.keep()
        finally:
            control.close()
            self.watch.end()
            gate.close()

    def leave_out_forwards_of_the_users_config(self) -> None:
        """A `Host *` that forwards ports for every host would make the forwarding ssh bind them too
        (and end it where one is taken, ExitOnForwardFailure); that ssh then reads labvm's own
        blocks only.  Forwards add up in OpenSSH, so no `-o` can take them back one by one."""
        found = ssh_options.forwards_in(self.ssh_config, self.alias)
        if found:
            self.forward_config = self.labvm_config
            self.log(f"{self.ssh_config} forwards ports for {self.alias} ({clean(found[0], 80)}): the tunnel's "
                     f"ssh reads only {self.labvm_config}")

    def keep(self) -> int:
        backoff, failures, was_up, asked_cloud = BACKOFF_FIRST, 0, False, 0.0
        self.set_state("starting")
        while not self.stopping:
            if self.sleep_request:
                self.sleep()
                if self.stopping:
                    break
                # Woken for a VM that runs again: never given up on, asked about at the third failure.
                was_up, failures, backoff, asked_cloud = True, 0, BACKOFF_FIRST, 0.0
                self.set_state("starting")
                self.pages.facts = None  # connections now wait for the forward
                continue
            self.last_line = ""
            refused = self.port_refusal()
            if self.stopping or self.sleep_request:
                continue
            if refused:
                self.refuse(refused)
                continue
            if refused == "":
                self.start_child()
                if self.wait_until_accepting():
                    was_up, failures, backoff = True, 0, BACKOFF_FIRST
                    self.set_state("up")
                    self.watch.ring()  # a new connection, maybe after a long gap: how close is the stop?
                    refused = self.hold()
                self.end_child()
                self.reap()
                self.reader.join(2)  # ssh's last words, for the reason
                if self.stopping or self.sleep_request:
                    continue
                if refused:
                    self.refuse(refused)
                    continue
            reason = self.last_line or f"ssh exited with status {self.child.returncode}"
            if not was_up:  # the first connection never worked: say why, do not insist
                self.set_state("failed", reason)
                return 1
            failures += 1
            self.set_state("reconnecting", reason, keep_since=True)
            if failures >= ASK_CLOUD_AFTER and time.monotonic() - asked_cloud >= ASK_CLOUD_EVERY:
                asked_cloud = time.monotonic()
                verdict = self.vm_not_running()
                if verdict:
                    gone = verdict == "VM gone"
                    why = verdict if gone else (autostop_stopped_it(self.watch.last_report, self.watch.last_reasons)
                                                or verdict)
                    self.fall_asleep(why, gone)
                    platforms.notify(f"labvm: {self.profile}", f"{why}; http://127.0.0.1:{self.local_port}/ "
                                                               f"{'says so' if gone else 'has a Start button'}")
                    continue
            if self.wake.wait(backoff):
                backoff = BACKOFF_FIRST  # asked to reconnect: no waiting
            else:
                backoff = min(backoff * 2, BACKOFF_CAP)
            self.wake.clear()
        self.end_child()
        if self.child:
            self.reap()
        self.watch.end()  # before the record goes: the watch writes it too
        self.record.unlink(missing_ok=True)
        self.log("stopped by labvm")
        return 0

    # -- asleep: the port serves the asleep page --------------------------------------------

    def sleep(self) -> None:
        """No ssh; the port answers with the asleep page until `wake`/`reconnect` or the end."""
        self.child = None
        while not self.stopping:
            request, self.sleep_request = self.sleep_request, None
            if request:
                self.be_asleep(*request)
            if self.awaken:
                break
            woken = self.wake.wait(ASLEEP_CHECK_EVERY)
            self.wake.clear()
            if not woken and self.profile_removed():
                self.log(f"profile {self.profile} is no longer in {self.hosts}: ending")
                self.stopping = True
        self.awaken = False

    def be_asleep(self, why: str, gone: bool) -> None:
        if self.state["state"] not in ("asleep", "gone"):  # from awake: a new stop, a new start
            self.asleep_since = now_iso()
            self.watch.last_report, self.watch.last_reasons = None, []  # said; the next stop has its own
            with self.start_lock:
                self.started = {"lines": [], "state": "idle", "error": ""}
        self.asleep_why, self.gone = why, gone
        self.pages.token = None  # the stopped lab's token opens nothing now, and gives no proof
        size, region, vm = self.profile_facts()
        self.pages.facts = PageFacts(profile=self.profile, size=size, region=region, stopped_at=self.asleep_since,
                                     why=why, price=self.price_words(), gone=gone, vm=vm)
        if (self.state["state"], self.state["reason"]) != ("gone" if gone else "asleep", why):
            self.set_state("gone" if gone else "asleep", why)

    def progress(self) -> dict:
        """What the page shows of a start, and the lab's URL where it answers (after the page's
        start, or while the lab is up: a tab left on the page goes into it)."""
        with self.start_lock:
            seen = {**self.started, "lines": list(self.started["lines"])}
        seen["url"] = self.lab_url if seen["state"] in ("idle", "ready") and not self.pages.facts else None
        return seen

    def start_from_page(self) -> None:
        """The page's Start: `up` in a child; returns at once."""
        with self.start_lock:
            if self.gone or self.started["state"] in ("starting", "ready"):
                return
            self.started = {"lines": [], "state": "starting", "error": ""}
        self.log("asleep page: Start")
        threading.Thread(target=self.run_start, daemon=True).start()

    def run_start(self) -> None:
        command = [sys.executable, "-m", START_MODULE, self.hosts, self.profile]
        try:
            child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                                     **platforms.windowless())
        except OSError as e:
            self.start_said(f"could not start {START_MODULE}: {e}", failed=True)
            return
        last, url = "", None
        while raw := child.stdout.readline(LINE_LIMIT):
            line = clean(decode(raw).rstrip("\r\n"))
            if line.startswith("url: "):
                url = line[len("url: "):]
            elif line.strip():
                last = line
                self.start_said(line)
        code = child.wait()
        if code == GONE_STATUS:
            self.start_said(last, failed=True)
            self.fall_asleep("VM gone: it was deleted", gone=True)
        elif code != 0 or not url or not self.learn_url(url):
            self.start_said(last or f"the start ended with status {code}", failed=True)
        else:
            with self.start_lock:
                self.started["state"] = "ready"
            self.log("asleep page: started")

    def start_said(self, line: str, failed: bool = False) -> None:
        shown = TOKEN.sub(r"\1…", line)
        with self.start_lock:
            if failed:
                self.started.update(state="failed", error=shown)
            else:
                self.started["lines"] = [*self.started["lines"], shown][-START_LINES:]
        self.log(f"start: {'failed: ' if failed else ''}{shown}")

    def profile_facts(self) -> tuple[str, str, bool]:
        """(size, region, whether it is a cloud VM) as hosts.yml names them; a machine labvm does
        not power (ssh) gives its address for the region ("" where hosts.yml cannot be read)."""
        try:
            from .config import load

            profile = load(Path(self.hosts)).profile(self.profile)
        except Exception:  # hosts.yml being edited: the page shows less
            return "", "", True
        settings = profile.cloud_settings
        if profile.provider in ("ssh", "local"):
            return "", clean(str(profile.address or ""), 100), False
        size = settings.get("instance_type") or settings.get("machine_type") or settings.get("flavor") or ""
        region = settings.get("region") or settings.get("zone") or settings.get("cloud") or ""
        return clean(str(size), 100), clean(str(region), 100), True

    def price_words(self) -> str:
        """"about $0.085/h" when the price is known on this laptop (no network); else ""."""
        try:
            from .prices import known_price, per_hour

            price = known_price(self.profile, self.hosts)
            return clean(per_hour(price), 100) if price is not None else ""
        except Exception:  # prices are never a reason to fail
            return ""

    def hosts_mtime(self) -> float:
        try:
            return os.stat(self.hosts).st_mtime
        except OSError:
            return 0.0

    def profile_removed(self) -> bool:
        """hosts.yml changed and no longer has this profile (a file being edited does not count),
        or its folder is gone (the repository was deleted)."""
        if not Path(self.hosts).parent.exists():
            return True
        seen = self.hosts_mtime()
        if seen == self.hosts_seen:
            return False
        self.hosts_seen = seen
        try:
            from .config import load

            return self.profile not in load(Path(self.hosts)).names
        except Exception:
            return False

    # -- who holds the VM's ports ---------------------------------------------------------

    def hold(self) -> str:
        """While ssh forwards: asks who holds the ports every OWNER_ASK_EVERY seconds, and at
        once when a connection found nobody listening; ends ssh and returns the refusal when
        another login took a port; returns "" when ssh ended."""
        while True:
            if self.recheck.wait(OWNER_ASK_EVERY):
                self.recheck.clear()
            if self.stopping or self.sleep_request or self.ssh_ending or self.ssh_gone.is_set():
                return ""
            refused = self.port_refusal()
            if refused:
                self.end_child()
                return refused

    def refuse(self, reason: str) -> None:
        """No forward while another login holds a port: said once, asked again later."""
        self.child = None
        if (self.state["state"], self.state["reason"]) != ("refused", reason):
            self.set_state("refused", reason)
        if self.wake.wait(REFUSED_RETRY):  # `inv up` (`reconnect`) asks again at once
            self.wake.clear()

    def port_refusal(self) -> str | None:
        """Why the forward must not run ("" when the remote port is the user's or free); None
        when the VM could not be asked (ssh's own failure, in last_line); a VM that answers what labvm cannot
        read gets no forward."""
        code, out, err = self.ask(owner_command(self.ssh_config, self.alias, self.remote_port, self.shared))
        why = clean(err.strip().splitlines()[-1]) if err.strip() else ""
        if self.stopping or self.sleep_request:  # the question was ended: no word on the ports
            return ""
        if code == 255:
            self.last_line = why or "ssh could not reach the VM"
            return None
        if code != 0:  # the VM lacks labvm's scripts (an older labvm set it up): `inv up` puts them there
            if not self.unchecked_said:
                self.unchecked_said = True
                self.log(f"ports: cannot ask {self.alias} who holds port {self.remote_port} ({why or f'status {code}'}); "
                         f"`inv up --host {self.profile}` installs the check")
            return ""
        try:
            if not out and err:
                raise ValueError(why)
            return refusal(port_holders(out, [self.remote_port]))
        except (ValueError, RecursionError) as e:  # an answer labvm cannot trust: no forward
            return f"could not tell who holds port {self.remote_port} on the VM ({clean(str(e), 200)}); not forwarding there"

    def ask(self, command: list[str]) -> tuple[int, str, str]:
        """(exit status, stdout, stderr) of one bounded question to the VM; 255 when it did not answer."""
        self.question = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, **platforms.windowless())
        try:
            out, err, too_much = communicate_bounded(self.question, OWNER_ASK_TIMEOUT, OWNER_ANSWER_LIMIT)
        except subprocess.TimeoutExpired:
            self.question.kill()
            self.question.wait()
            return 255, "", f"no answer within {OWNER_ASK_TIMEOUT}s"
        if too_much:  # a VM that says more than asked: its answer is not read at all
            return 0, "", f"its answer was larger than {OWNER_ANSWER_LIMIT} bytes"
        return self.question.returncode, decode(out), decode(err)

    def vm_not_running(self) -> str:
        """"VM stopped"/"VM gone" when the provider says so (a machine labvm does not make always runs); else ""."""
        try:
            from .config import load
            from .providers import for_profile

            instance = for_profile(load(Path(self.hosts)).profile(self.profile)).find()
        except Exception as e:  # no network, no credentials now: keep trying the tunnel
            self.log(f"could not ask the cloud about the VM: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
            return ""
        if instance is None:
            return "VM gone"
        if instance.state != "running":
            return f"VM {instance.state}"
        return ""


def main(argv: list[str]) -> int:
    profile, local_port, remote_port, run_dir, ssh_config, alias, hosts = argv
    keeper = Keeper(profile, int(local_port), int(remote_port), Path(run_dir), ssh_config, alias, hosts)
    return keeper.run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
