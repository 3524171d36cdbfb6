"""The tunnel keeper: one small detached process per profile on the laptop.

    python -m labvm.keeper PROFILE LOCAL_PORT REMOTE_PORT RUN_DIR SSH_CONFIG ALIAS HOSTS \
        DASHBOARD_LOCAL_PORT DASHBOARD_REMOTE_PORT

It runs the system's OpenSSH in the foreground (`ssh -N -L 127.0.0.1:L:127.0.0.1:R`, plus a
second -L for a cluster's Dask dashboard when DASHBOARD_REMOTE_PORT is not 0; no ControlMaster,
so Windows' OpenSSH serves too), with keep-alives that notice a dead link within 45 s, and starts
it again on the SAME local ports with a backoff capped at a few seconds, so the browser's URLs
stay valid and the link is back within seconds of the network.  It never starts a VM: for a
cloud profile, after repeated failures it asks the provider whether the VM still runs and stops
trying when it is stopped or gone.  SIGTERM ends it and its ssh; SIGUSR1 makes it replace its
ssh at once (what `inv up` does to a tunnel that does not answer).

Before each ssh forwards, and every few seconds while it does, it asks the VM who listens on the
remote ports (one short `ssh -T`, scripts/nbctl.py owner, which reads /proc and connects to
nobody): a port held by another login of a shared VM gets no forward (the browser's token and
cookies would go to that user); the state is then "refused", its reason names the user, and the
keeper asks again every minute, or at once on SIGUSR1.

While the tunnel is up it asks the VM for its autostop report (one short non-interactive ssh,
no pty: a pty login would count as activity) right after each connection and then every minute
(SIGUSR2: now), and warns once per idle stretch, in its log and as a desktop notification, when
the VM will stop itself within autostop's own warning window.

Its state is one JSON file, ~/.ssh/labvm/run/<profile>.json (written whole, atomically):
keeper_pid, ssh_pid, local_port, remote_port, dashboard_local_port, dashboard_remote_port (0
without a dashboard), state ("starting", "up", "reconnecting", "refused", "stopped", "failed"), since (ISO
time), reason (ssh's last line, or why it stopped), autostop_asked (ISO time of the last question
about autostop that was answered, to the microsecond).
"""

from __future__ import annotations

import json
import math
import os
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


def now_iso() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def write_state(path: Path, state: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(state, f)
    os.replace(tmp, path)


def ssh_command(ssh_config: str, alias: str, forwards: list[tuple[int, int]]) -> list[str]:
    """forwards: (local port, remote port) pairs, all carried by this one ssh."""
    return [
        "ssh", "-F", ssh_config, "-N",
        "-o", "ControlMaster=no", "-o", "ControlPath=none",
        "-o", "ExitOnForwardFailure=yes",
        "-o", f"ServerAliveInterval={KEEPALIVE_INTERVAL}",
        "-o", f"ServerAliveCountMax={KEEPALIVE_COUNT}",
        "-o", "BatchMode=yes",
        "-o", f"ConnectTimeout={CONNECT_TIMEOUT}",
        *[arg for local, remote in forwards for arg in ("-L", f"127.0.0.1:{local}:127.0.0.1:{remote}")],
        alias,
    ]


def autostop_command(ssh_config: str, alias: str) -> list[str]:
    return question_command(ssh_config, alias, AUTOSTOP_STATUS)


def owner_command(ssh_config: str, alias: str, ports: list[int]) -> list[str]:
    dashboard = f" --dashboard-port {ports[1]}" if len(ports) > 1 else ""
    return question_command(ssh_config, alias, f"{OWNER_QUESTION} --port {ports[0]}{dashboard}")


def question_command(ssh_config: str, alias: str, question: str) -> list[str]:
    """One question to the VM: -T, as a pty login would count as activity and keep the VM up."""
    return [
        "ssh", "-F", ssh_config, "-T",
        "-o", "ControlMaster=no", "-o", "ControlPath=none",
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
        self.absent = False  # no autostop there: asked again only when rung (reconnect, SIGUSR2)

    def ring(self, *_) -> None:
        """Ask now.  Takes no lock, so a signal handler may call it."""
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
                autostop_command(self.keeper.ssh_config, self.keeper.alias), stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
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
        idle = report.get("idle_for")
        if idle is None or (self.last_idle is not None and idle < self.last_idle):
            self.warned = False  # a new idle stretch: in use again, extended, or a new setting
        self.last_idle = idle
        warning = autostop_warning(report)
        if warning and not self.warned:
            self.warned = True
            profile = self.keeper.profile
            advice = f"use Jupyter or `inv autostop --host {profile} --extend 1h`"
            self.keeper.log(f"autostop: {profile} {warning}; {advice}")
            platforms.notify(f"labvm: {profile}", f"{warning}; {advice}")


class Keeper:
    def __init__(self, profile: str, local_port: int, remote_port: int, run_dir: Path, ssh_config: str,
                 alias: str, hosts: str, dashboard_local_port: int = 0, dashboard_remote_port: int = 0):
        self.profile, self.local_port, self.remote_port = profile, local_port, remote_port
        self.forwards = [(local_port, remote_port)]
        if dashboard_remote_port:
            self.forwards.append((dashboard_local_port, dashboard_remote_port))
        self.record = run_dir / f"{profile}.json"
        self.ssh_config, self.alias, self.hosts = ssh_config, alias, hosts
        self.child: subprocess.Popen | None = None
        self.last_line = ""
        self.stopping = False
        self.wake = threading.Event()
        self.recheck = threading.Event()  # ask who holds the ports now (or ssh ended)
        self.question: subprocess.Popen | None = None
        self.unchecked_said = False
        self.record_lock = threading.Lock()  # the loop and the autostop watch both write the record
        self.watch = AutostopWatch(self)
        self.state = {"keeper_pid": os.getpid(), "ssh_pid": 0, "local_port": local_port,
                      "remote_port": remote_port, "dashboard_local_port": dashboard_local_port,
                      "dashboard_remote_port": dashboard_remote_port, "state": "starting",
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

    # -- signals -----------------------------------------------------------------------

    def on_term(self, *_):
        self.stopping = True
        self.end_child()
        question = self.question
        if question and question.poll() is None:
            question.terminate()
        self.wake.set()

    def on_reconnect(self, *_):
        """`inv up` found the tunnel not answering: a new ssh now, whatever this one's state."""
        self.log("asked to reconnect now")
        self.end_child()
        self.wake.set()

    def end_child(self) -> None:
        child = self.child
        if child and child.poll() is None:
            child.terminate()
            if hasattr(signal, "SIGCONT"):
                os.kill(child.pid, signal.SIGCONT)  # a stopped (stalled) ssh gets its SIGTERM too

    # -- one ssh ------------------------------------------------------------------------

    def start_child(self) -> None:
        command = ssh_command(self.ssh_config, self.alias, self.forwards)
        self.child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE)
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
        while self.child.poll() is None and time.monotonic() < deadline and not self.stopping:
            if all(forward_accepts(local) for local, _ in self.forwards):
                return self.child.poll() is None
            time.sleep(0.05)
        return False

    # -- the loop ----------------------------------------------------------------------

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.on_term)
        signal.signal(signal.SIGINT, self.on_term)
        if hasattr(signal, "SIGUSR1"):
            signal.signal(signal.SIGUSR1, self.on_reconnect)
        if hasattr(signal, "SIGUSR2"):
            signal.signal(signal.SIGUSR2, self.watch.ring)
        if hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, signal.SIG_IGN)  # the terminal that started `inv` may close
        threading.Thread(target=self.watch.run, daemon=True).start()
        try:
            return self.keep()
        finally:
            self.watch.end()

    def keep(self) -> int:
        backoff, failures, was_up, asked_cloud = BACKOFF_FIRST, 0, False, 0.0
        self.set_state("starting")
        while not self.stopping:
            self.last_line = ""
            refused = self.port_refusal()
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
                else:
                    self.end_child()
                self.child.wait()
                self.reader.join(2)  # ssh's last words, for the reason
                if self.stopping:
                    break
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
                    self.child = None
                    self.set_state("stopped", verdict)
                    platforms.notify(f"labvm: {self.profile}", f"tunnel closed: {verdict}")
                    return 0
            if self.wake.wait(backoff):
                backoff = BACKOFF_FIRST  # asked to reconnect: no waiting
            else:
                backoff = min(backoff * 2, BACKOFF_CAP)
            self.wake.clear()
        self.end_child()
        if self.child:
            self.child.wait()
        self.watch.end()  # before the record goes: the watch writes it too
        self.record.unlink(missing_ok=True)
        self.log("stopped by labvm")
        return 0

    # -- who holds the VM's ports ---------------------------------------------------------

    def hold(self) -> str:
        """While ssh forwards: asks who holds the ports every OWNER_ASK_EVERY seconds, and at
        once when a connection found nobody listening; ends ssh and returns the refusal when
        another login took a port; returns "" when ssh ended."""
        while True:
            if self.recheck.wait(OWNER_ASK_EVERY):
                self.recheck.clear()
            if self.stopping or self.ssh_gone.is_set():
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
        if self.wake.wait(REFUSED_RETRY):  # `inv up` (SIGUSR1) asks again at once
            self.wake.clear()

    def port_refusal(self) -> str | None:
        """Why the forwards must not run ("" when each remote port is the user's or free); None
        when the VM could not be asked (ssh's own failure, in last_line); a VM that answers what labvm cannot
        read gets no forward."""
        ports = [remote for _, remote in self.forwards]
        code, out, err = self.ask(owner_command(self.ssh_config, self.alias, ports))
        why = clean(err.strip().splitlines()[-1]) if err.strip() else ""
        if self.stopping:
            return ""
        if code == 255:
            self.last_line = why or "ssh could not reach the VM"
            return None
        if code != 0:  # the VM lacks labvm's scripts (an older labvm set it up): `inv up` puts them there
            if not self.unchecked_said:
                self.unchecked_said = True
                self.log(f"ports: cannot ask {self.alias} who holds port {ports[0]} ({why or f'status {code}'}); "
                         f"`inv up --host {self.profile}` installs the check")
            return ""
        try:
            if not out and err:
                raise ValueError(why)
            return refusal(port_holders(out, ports))
        except (ValueError, RecursionError) as e:  # an answer labvm cannot trust: no forward
            return f"could not tell who holds port {ports[0]} on the VM ({clean(str(e), 200)}); not forwarding there"

    def ask(self, command: list[str]) -> tuple[int, str, str]:
        """(exit status, stdout, stderr) of one bounded question to the VM; 255 when it did not answer."""
        self.question = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE)
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
        """For a cloud profile: "VM stopped"/"VM gone" when the provider says so; else ""."""
        try:
            from .config import load
            from .providers import for_profile

            provider = for_profile(load(Path(self.hosts)).profile(self.profile))
            if not provider.owns_machine:
                return ""
            instance = provider.find()
        except Exception as e:  # no network, no credentials now: keep trying the tunnel
            self.log(f"could not ask the cloud about the VM: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
            return ""
        if instance is None:
            return "VM gone"
        if instance.state != "running":
            return f"VM {instance.state}"
        return ""


def main(argv: list[str]) -> int:
    profile, local_port, remote_port, run_dir, ssh_config, alias, hosts, dashboard_local, dashboard_remote = argv
    keeper = Keeper(profile, int(local_port), int(remote_port), Path(run_dir), ssh_config, alias, hosts,
                    int(dashboard_local), int(dashboard_remote))
    return keeper.run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
