"""The tunnel keeper: one small detached process per profile on the laptop.

    python -m labvm.keeper PROFILE LOCAL_PORT REMOTE_PORT RUN_DIR SSH_CONFIG ALIAS HOSTS

It runs the system's OpenSSH in the foreground (`ssh -N -L 127.0.0.1:L:127.0.0.1:R`, one forward:
a cluster's Dask dashboard is inside JupyterLab, labvm.cluster), with keep-alives that notice a
dead link within 45 s, and starts it again on the SAME local port with a backoff capped at a few
seconds, so the browser's URLs stay valid and the link is back within seconds of the network.
Where the platform's ssh can (not Windows'), that ssh is also a ControlMaster at RUN_DIR/PROFILE.mux:
`inv sync` rides its login instead of making one (see shared_connection).

Its control channel is a loopback TCP socket of its own (the same on every platform, no
signals): the record names its port and a random secret; a caller sends one line
"<secret> <command>" and reads one answer line ("ok").  Commands: `reconnect` (a new ssh now,
what `inv up` asks of a tunnel that does not answer, and wakes an asleep keeper), `wake`,
`autostop` (ask the VM about autostop now), `sleep <why>`, `end`.  A wrong secret is ignored
(and logged once).  SIGTERM still ends it, as a fallback.

Asleep: when a cloud profile's VM is stopped (`sleep <why>` from `inv down`/`inv stop`, or the
cloud says so after repeated failures), the keeper ends ssh but keeps the local port: it serves
the asleep page there (labvm.asleep), which names the profile, why and when it stopped, the
price, and offers a Start button (state "gone", no Start, when the VM was deleted).  Start runs
`python -m labvm.asleep_start` (what `inv up` does) as a child whose output the page shows;
its `up` wakes the keeper, which tells the page the URL, then hands the port over to ssh.
Asleep it runs no ssh and wakes once a minute (to end when its profile left hosts.yml).

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
microsecond).
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

from . import answers, platforms
from .errors import LabvmError
from .text import LINE_LIMIT, clean, communicate_bounded, decode

KEEPALIVE_INTERVAL = 10  # seconds; 3 missed answers end ssh: a dead link is noticed in 30-40 s
KEEPALIVE_COUNT = 3
CONNECT_TIMEOUT = 5  # seconds per attempt while the network is gone
BACKOFF_FIRST, BACKOFF_CAP = 0.5, 3.0  # attempt every <= 8 s: back within 10 s of the network
ASK_CLOUD_AFTER = 3  # failed attempts in a row before asking the cloud whether the VM still runs
ASK_CLOUD_EVERY = 60  # seconds between those questions
ACCEPT_TIMEOUT = 30  # seconds for the first ssh to reach the point where its forward accepts
KEEPER_MODULE = "labvm.keeper"
SOCKET_PATH = re.compile(r"[\w./+-]+")  # what ssh takes as a ControlPath as it is (no spaces, quotes, %)
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
CONTROL_TIMEOUT = 5  # seconds either side waits for one control line
CONTROL_LINE_LIMIT = 1024  # bytes of one control line
SLEEP_WHY_LIMIT = 300  # characters of why it sleeps
CHILD_END_WAIT = 2  # seconds for an ssh to end when asked before it is killed (a stopped one never would)
ASLEEP_CHECK_EVERY = 60  # seconds: asleep, it looks whether its profile is still in hosts.yml
PAGE_RETRY = 10  # seconds between tries to serve the asleep page on a port something else holds
URL_WAIT = 5  # seconds for the start's URL line to reach the keeper after that start's `up` woke it
HANDOVER_NOTICE = 10  # seconds the page has to pass the URL to the browser before ssh takes the port
WAKE_WITHIN = URL_WAIT + HANDOVER_NOTICE + OWNER_ASK_TIMEOUT + ACCEPT_TIMEOUT  # asleep to up, at most
START_MODULE = "labvm.asleep_start"  # what the page's Start runs: `inv up` without a browser
START_LINES = 200  # of the start's output, the last ones the page shows
GONE_STATUS = 3  # asleep_start's exit status when the VM was deleted: no new VM is made from a page
AUTOSTOP_DUE_WITHIN = 2 * AUTOSTOP_ASK_EVERY  # this close to its autostop when last asked: autostop stopped it
TOKEN = re.compile(r"(token=)[^&\s]+")  # kept out of the log and the page's lines (the page gets the URL)


def now_iso() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def write_state(path: Path, state: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(state, f)
    os.replace(tmp, path)


def shared_connection(run_dir: Path, profile: str) -> Path | None:
    """Where the keeper's ssh lets another ssh ride its login (a sync: no handshake of its own, 0.2 s
    less on loopback, 0.4 s at a 50 ms round trip); None where the platform's ssh cannot share, or the
    path cannot be a socket's: ssh binds it with "." and 16 characters added (mux.c), macOS holds 104
    bytes, and ssh reads whitespace, quotes and % in ControlPath as its own syntax."""
    path = run_dir / f"{profile}.mux"
    if not platforms.ssh_shares_connections() or not SOCKET_PATH.fullmatch(str(path)):
        return None
    return path if len(os.fsencode(path)) + 17 < 104 else None


def ssh_command(ssh_config: str, alias: str, local_port: int, remote_port: int, shared: Path | None = None) -> list[str]:
    """shared: the socket through which other ssh may use this login (ControlMaster); None: no sharing,
    whatever the user's own ssh config says (Windows' OpenSSH breaks on it)."""
    sharing = ["ControlMaster=yes", f"ControlPath={shared}"] if shared else ["ControlMaster=no", "ControlPath=none"]
    return [
        "ssh", "-F", ssh_config, "-N",
        "-o", sharing[0], "-o", sharing[1],
        "-o", "ExitOnForwardFailure=yes",
        "-o", f"ServerAliveInterval={KEEPALIVE_INTERVAL}",
        "-o", f"ServerAliveCountMax={KEEPALIVE_COUNT}",
        "-o", "BatchMode=yes",
        "-o", f"ConnectTimeout={CONNECT_TIMEOUT}",
        "-L", f"127.0.0.1:{local_port}:127.0.0.1:{remote_port}",
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
        "-o", "ClearAllForwardings=yes",  # the tunnel's ports are the keeper's ssh's
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


def read_line(conn: socket.socket) -> str:
    """One control line (without its newline), at most CONTROL_LINE_LIMIT bytes."""
    data = b""
    while b"\n" not in data and len(data) < CONTROL_LINE_LIMIT:
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
            return read_line(conn) or None
    except OSError:
        return None


def forward_accepts(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


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
    Its own thread; one caller at a time (each has CONTROL_TIMEOUT to say its line)."""

    def __init__(self, keeper: "Keeper"):
        self.keeper = keeper
        self.secret = secrets.token_urlsafe(32)
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.wrong_said = False

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:  # closed: the keeper ends
                return
            then = None
            with conn:
                try:
                    conn.settimeout(CONTROL_TIMEOUT)
                    line = read_line(conn)
                    secret, _, request = line.partition(" ")
                    if not hmac.compare_digest(secret.encode(), self.secret.encode()):
                        if not self.wrong_said:
                            self.wrong_said = True
                            self.keeper.log("control: a request with a wrong secret was ignored (said once)")
                        continue
                    answer, then = self.keeper.command(request)
                    conn.sendall(f"{answer}\n".encode())
                except OSError:  # the caller left: what it asked is done all the same
                    pass
            if then:  # after the answer: `end` ends the process
                then()

    def close(self) -> None:
        self.server.close()


class Keeper:
    def __init__(self, profile: str, local_port: int, remote_port: int, run_dir: Path, ssh_config: str,
                 alias: str, hosts: str):
        self.profile, self.local_port, self.remote_port = profile, local_port, remote_port
        self.record = run_dir / f"{profile}.json"
        self.shared = shared_connection(run_dir, profile)
        self.ssh_config, self.alias, self.hosts = ssh_config, alias, hosts
        self.child: subprocess.Popen | None = None
        self.ssh_ending = False  # asked to end: a stopped (stalled) ssh never closes its stderr
        self.last_line = ""
        self.stopping = False
        self.wake = threading.Event()
        self.recheck = threading.Event()  # ask who holds the ports now (or ssh ended)
        self.question: subprocess.Popen | None = None
        self.unchecked_said = False
        self.record_lock = threading.Lock()  # the loop, the autostop watch and the start write the record
        self.watch = AutostopWatch(self)
        # Asleep: set by `sleep` (control thread) or the cloud's answer (loop); read by the loop.
        self.sleep_request: tuple[str, bool] | None = None  # (why, gone)
        self.awaken = False  # `wake`/`reconnect` while asleep
        self.asleep_why, self.asleep_since, self.gone = "", "", False
        self.page_stale = False  # the page's facts changed: serve it anew
        self.page_trouble = ""  # why the page could not be served, said once
        self.hosts_seen = self.hosts_mtime()
        # The page's Start: a child running `up`, its output, the URL it said.
        self.start_lock = threading.Lock()
        self.start_process: subprocess.Popen | None = None
        self.started: dict = {"lines": [], "state": "idle", "url": None, "error": ""}
        self.url_known = threading.Event()
        self.url_delivered = threading.Event()  # the page handed the URL to the browser
        self.url_answered: str | None = None  # the URL the page's last /progress answer held
        self.asked_on_waking: list[str | None] | None = None  # port_refusal()'s answer, asked while waking
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
        if command == "end":
            return "ok", self.on_end
        return f"unknown command {clean(command, 40)!r}", None

    def on_end(self) -> None:
        self.log("asked to end")
        self.on_term()

    def on_term(self, *_):
        self.stopping = True
        self.end_child()
        self.end_question()
        self.url_delivered.set()
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

    # -- one ssh ------------------------------------------------------------------------

    def start_child(self) -> None:
        if self.shared:  # one left by an ssh killed with its keeper: ssh would not share through it
            self.shared.unlink(missing_ok=True)
        command = ssh_command(self.ssh_config, self.alias, self.local_port, self.remote_port, self.shared)
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
            if forward_accepts(self.local_port):
                return self.child.poll() is None
            time.sleep(0.05)
        return False

    # -- the loop ----------------------------------------------------------------------

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.on_term)
        signal.signal(signal.SIGINT, self.on_term)
        if hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, signal.SIG_IGN)  # the terminal that started `inv` may close
        control = Control(self)
        self.state.update(control_port=control.port, control_secret=control.secret)
        threading.Thread(target=control.serve, daemon=True).start()
        threading.Thread(target=self.watch.run, daemon=True).start()
        try:
            return self.keep()
        finally:
            control.close()
            self.watch.end()

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
                continue
            if self.asked_on_waking:
                [refused], self.asked_on_waking = self.asked_on_waking, None
            else:
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
        """No ssh; the local port serves the asleep page until `wake`/`reconnect` (then the port
        goes to ssh: the page's server closes first) or the end."""
        self.child = None
        page = None
        try:
            while not self.stopping:
                request, self.sleep_request = self.sleep_request, None
                if request:
                    self.be_asleep(*request)
                if self.awaken:
                    break
                if self.page_stale and page:
                    page.close()
                    page = None
                if page is None:
                    page = self.serve_page()
                said = ("gone" if self.gone else "asleep", self.asleep_why)
                if (self.state["state"], self.state["reason"]) != said:  # once the page answers (or cannot)
                    self.set_state(*said)
                woken = self.wake.wait(ASLEEP_CHECK_EVERY if page else PAGE_RETRY)
                self.wake.clear()
                if not woken and self.profile_removed():
                    self.log(f"profile {self.profile} is no longer in {self.hosts}: ending")
                    self.stopping = True
            if not self.stopping:
                # Who holds the VM's port is asked while the page still hands the URL over: the
                # forward starts the moment the page lets the port go.
                self.last_line, answer = "", []
                asking = threading.Thread(target=lambda: answer.append(self.port_refusal()), daemon=True)
                asking.start()
                self.notice_before_handover()
                asking.join()
                self.asked_on_waking = answer or None
        finally:
            if page:
                page.close()
            self.awaken = False

    def be_asleep(self, why: str, gone: bool) -> None:
        if (why, gone) == (self.asleep_why, self.gone) and self.state["state"] in ("asleep", "gone"):
            return
        if self.state["state"] not in ("asleep", "gone"):  # from awake: a new stop, a new start
            self.asleep_since = now_iso()
            self.watch.last_report, self.watch.last_reasons = None, []  # said; the next stop has its own
            with self.start_lock:
                self.started = {"lines": [], "state": "idle", "url": None, "error": ""}
        self.asleep_why, self.gone, self.page_stale = why, gone, True

    def serve_page(self):
        """The asleep page on the local port; None when it cannot be served now (said once)."""
        self.page_stale = False
        try:
            from .asleep import AsleepPage, PageFacts

            size, region = self.profile_facts()
            facts = PageFacts(profile=self.profile, size=size, region=region, stopped_at=self.asleep_since,
                              why=self.asleep_why, price=self.price_words(), gone=self.gone)
            return AsleepPage(self.local_port, facts, self.start_from_page, self.progress)
        except Exception as e:  # the port taken by something else meanwhile: tried again, said once
            said = f"asleep page: not served on 127.0.0.1:{self.local_port} ({type(e).__name__}: {e}); trying again"
            if said != self.page_trouble:
                self.page_trouble = said
                self.log(said)
            return None

    def notice_before_handover(self) -> None:
        """Woken by the page's own start: the page tells the browser the URL before ssh takes
        its port (the browser cannot learn it once the page is gone); a tab that does not poll
        is waited for no longer than HANDOVER_NOTICE."""
        if self.start_process and self.start_process.poll() is None:
            self.url_known.wait(URL_WAIT)
        with self.start_lock:
            url = self.started["url"]
            if url:
                self.started["state"] = "ready"
        if url:  # the page asks again within 0.1 s of an answer that held it
            self.url_delivered.wait(HANDOVER_NOTICE)

    def progress(self) -> dict:
        """What the page shows of a start; the URL as soon as it is known (the page goes there
        once the lab answers on its port)."""
        with self.start_lock:
            seen = {**self.started, "lines": list(self.started["lines"])}
            # Delivered once the page asks again after an answer that held it: the tab asks only
            # after reading the last answer, and one cut off by the hand-over never arrived.
            if seen["url"] and self.url_answered == seen["url"]:
                self.url_delivered.set()
            self.url_answered = seen["url"]
        return seen

    def start_from_page(self) -> None:
        """The page's Start: `up` in a child; returns at once."""
        with self.start_lock:
            if self.gone or self.started["state"] in ("starting", "ready"):
                return
            self.started = {"lines": [], "state": "starting", "url": None, "error": ""}
            self.url_known.clear()
        self.log("asleep page: Start")
        threading.Thread(target=self.run_start, daemon=True).start()

    def run_start(self) -> None:
        command = [sys.executable, "-m", START_MODULE, self.hosts, self.profile, str(self.local_port)]
        try:
            child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                                     **platforms.windowless())
        except OSError as e:
            self.start_said(f"could not start {START_MODULE}: {e}", failed=True)
            return
        self.start_process = child
        last = ""
        while raw := child.stdout.readline(LINE_LIMIT):
            line = clean(decode(raw).rstrip("\r\n"))
            if line.startswith("url: "):
                url = line[len("url: "):]
                if url.startswith(f"http://127.0.0.1:{self.local_port}/") and url != self.started["url"]:
                    with self.start_lock:
                        self.url_delivered.clear()
                        self.started["url"] = url
                    self.url_known.set()
                continue
            if line.strip():
                last = line
                self.start_said(line)
        code = child.wait()
        if code == GONE_STATUS:
            self.start_said(last, failed=True)
            self.fall_asleep("VM gone: it was deleted", gone=True)
        elif code != 0 or not self.started["url"]:
            self.start_said(last or f"the start ended with status {code}", failed=True)
        else:
            self.log("asleep page: started")
        self.url_known.set()

    def start_said(self, line: str, failed: bool = False) -> None:
        shown = TOKEN.sub(r"\1…", line)
        with self.start_lock:
            if failed:
                self.started.update(state="failed", error=shown)
            else:
                self.started["lines"] = [*self.started["lines"], shown][-START_LINES:]
        self.log(f"start: {'failed: ' if failed else ''}{shown}")

    def profile_facts(self) -> tuple[str, str]:
        """The VM's size and region as hosts.yml names them ("", "" where it cannot be read)."""
        try:
            from .config import load

            settings = load(Path(self.hosts)).profile(self.profile).cloud_settings
        except Exception:  # hosts.yml being edited: the page shows less
            return "", ""
        size = settings.get("instance_type") or settings.get("machine_type") or settings.get("flavor") or ""
        region = settings.get("region") or settings.get("zone") or settings.get("cloud") or ""
        return clean(str(size), 100), clean(str(region), 100)

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
