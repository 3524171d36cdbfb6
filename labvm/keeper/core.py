"""The tunnel keeper: one small detached process per profile on the laptop.

    python -m labvm.keeper PROFILE LOCAL_PORT REMOTE_PORT RUN_DIR SSH_CONFIG ALIAS HOSTS

It holds the profile's URL for good: 127.0.0.1:LOCAL_PORT and [::1]:LOCAL_PORT are bound once,
when it starts, and kept until it ends (labvm.gate); no reconnect, sleep or wake ever frees them,
so no other user of the laptop can take the port the browser's tab, its cookies and its token go
to.  Behind them it runs the system's OpenSSH (forward.py) and relays each connection to it; a
connection that comes while ssh reconnects waits for it (labvm.gate.HOLD).

Its states and the moves between them are protocol.State and protocol.TRANSITIONS:

    starting --forward accepts--> up --ssh ended--> reconnecting --forward accepts--> up
    starting --first connection never worked, or the port taken--> failed (the keeper ends)
    any awake --another login holds the VM's port--> refused --the port is free again--> up
    any awake --`sleep`, or the cloud says stopped / deleted--> asleep / gone --`wake`, `reconnect`--> starting

Before each ssh forwards, and every few seconds while it does, it asks the VM who holds the remote
port (questions.PortCheck).  While up it watches autostop (watch.py).  After three failed attempts
in a row (and at most once a minute) it asks the cloud whether the VM still runs; a stopped VM
puts it to sleep.  Asleep it runs no ssh: the same sockets answer with the asleep page
(labvm.asleep), whose Start runs `up` (start.py); it looks every few seconds whether its profile
left hosts.yml, to end then.  What it is told comes through its control socket (control.py).
"""

from __future__ import annotations

import functools
import json
import os
import signal
import socket
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from .. import platforms
from ..asleep import PageFacts, Pages
from ..gate import Gate, Handler
from ..http1 import Request, Response
from ..text import clean
from .control import Control
from .forward import Forward
from .protocol import AWAKE, COMING, TRANSITIONS, Command, OK, Record, State, own_proof, record_path, write_record
from .questions import REFUSED_RETRY, OWNER_ASK_EVERY, PortCheck
from .start import PageStart
from .watch import AutostopWatch, autostop_stopped_it

BACKOFF_FIRST, BACKOFF_CAP = 0.5, 3.0  # attempt every <= 8 s: back within 10 s of the network
ASK_CLOUD_AFTER = 3  # failed attempts in a row before asking the cloud whether the VM still runs
ASK_CLOUD_EVERY = 60  # seconds between those questions
SLEEP_WHY_LIMIT = 300  # characters of why it sleeps
ASLEEP_CHECK_EVERY = 5  # seconds: asleep, whether its profile is still in hosts.yml (two stats; read when changed)


def now_iso() -> str:
    """Now in UTC to the second, as the record and the log say times."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


class Keeper:
    """The loop (keep), what it is told (command), and the URL's routes (labvm.gate.Routes)."""

    def __init__(
        self, profile: str, local_port: int, remote_port: int, run_dir: Path, ssh_config: str, alias: str, hosts: str
    ):
        self.profile, self.local_port, self.remote_port, self.hosts = profile, local_port, remote_port, hosts
        self.record = record_path(run_dir, profile)
        self.record_lock = threading.Lock()  # the loop, the autostop watch and the start write the record
        self.forwarding = threading.Condition()  # notified at each change of state: the gate's connections wait on it
        self.stopping = False
        self.nudge = threading.Event()  # a command came, or the loop may go on
        self.recheck = threading.Event()  # ask who holds the port now (or ssh ended)
        self.forward = Forward(run_dir, profile, ssh_config, alias, remote_port, self.log, self.recheck.set)
        self.ports = PortCheck(profile, ssh_config, alias, remote_port, self.forward.shared, self.log)
        self.watch = AutostopWatch(
            profile,
            ssh_config,
            alias,
            self.forward.shared,
            lambda: self.state["state"] == State.UP,
            self.note,
            self.log,
            self.price_words,
        )
        self.pages = Pages(local_port, own_proof(run_dir, profile), self.begin_start, self.progress)
        self.start = PageStart(
            hosts,
            profile,
            self.pages,
            self.log,
            lambda: self.gone,
            lambda: self.sleep("VM gone: it was deleted", gone=True),
        )
        # Asleep: set by `sleep` (control thread) or the cloud's answer (loop); read by the loop.
        self.sleep_asked: tuple[str, bool] | None = None  # (why, gone)
        self.wake_asked = False  # `wake`/`reconnect` while asleep
        self.asleep_why, self.asleep_since, self.gone = "", "", False
        self.hosts_seen = self.hosts_mtime()
        self.state: Record = {
            "keeper_pid": os.getpid(),
            "ssh_pid": 0,
            "local_port": local_port,
            "remote_port": remote_port,
            "state": State.STARTING.value,
            "since": now_iso(),
            "reason": "",
        }

    def log(self, line: str) -> None:
        """One line of the keeper's log; its words may come from the VM or a jump host: cleaned."""
        print(f"{now_iso()} {clean(line)}", flush=True)

    def set_state(self, state: State, reason: str = "", keep_since: bool = False) -> None:
        """A move of protocol.TRANSITIONS: written to the record, told to the waiting connections, logged."""
        was = State(self.state["state"])
        if state not in TRANSITIONS[was]:  # never in a test: a fault of labvm's, said and lived with
            self.log(f"keeper: {was.value} -> {state.value} is not a transition it makes (a fault in labvm)")
        fields: Record = {"state": state.value, "reason": reason, "ssh_pid": self.forward.pid}
        if not (keep_since and was == state):
            fields["since"] = now_iso()
        self.note(**fields)
        with self.forwarding:
            self.forwarding.notify_all()
        self.log(f"{state.value}{': ' + reason if reason else ''}")

    def note(self, **fields) -> None:
        """Fields of the record changed and the record written (0600, atomically)."""
        with self.record_lock:
            self.state.update(fields)  # type: ignore[typeddict-item]
            write_record(self.record, self.state)

    # -- what it is told (control channel, SIGTERM) ---------------------------------------

    def command(self, request: str):
        """(answer, what to do after answering) for one control request."""
        word, _, words = request.partition(" ")
        try:
            command = Command(word)
        except ValueError:
            return f"unknown command {clean(word, 40)!r}", None
        if command is Command.LAB:
            return (OK, None) if self.start.learn_url(words.strip()) else ("not a URL of this port", None)
        if command is Command.SLEEP:
            return OK, functools.partial(self.on_sleep, clean(words.strip(), SLEEP_WHY_LIMIT) or "VM stopped")
        return OK, {
            Command.RECONNECT: self.on_reconnect,
            Command.WAKE: self.on_wake,
            Command.AUTOSTOP: self.watch.ring,
            Command.END: self.on_end,
        }[command]

    def on_end(self) -> None:
        """`end`: as SIGTERM (`inv tunnel --stop`)."""
        self.log("asked to end")
        self.on_term()

    def on_term(self, *_) -> None:
        """SIGTERM, SIGINT, `end`: ssh ends, the loop ends, the record goes."""
        self.stopping = True
        self.forward.end()
        self.ports.questions.cut_short()
        self.nudge.set()

    def on_reconnect(self) -> None:
        """`inv up` found the tunnel not answering, or asleep: a new ssh now, whatever this one's state."""
        self.log("asked to reconnect now")
        self.wake_asked = True
        self.forward.end()
        self.nudge.set()

    def on_wake(self) -> None:
        """`wake`: asleep, ssh again (`inv up` started the VM)."""
        self.log("asked to wake")
        self.wake_asked = True
        self.nudge.set()

    def on_sleep(self, why: str) -> None:
        """`sleep`: `inv down` stopped the VM (or the user's keeper is told why)."""
        self.log(f"asked to sleep: {why}")
        self.sleep(why, gone=False)

    def sleep(self, why: str, gone: bool) -> None:
        """From any thread: ssh ends and the loop goes asleep (stay_asleep), the page saying why."""
        self.sleep_asked, self.wake_asked = (why, gone), False
        self.forward.end()
        self.ports.questions.cut_short()
        self.nudge.set()

    # -- the URL's sockets (labvm.gate.Routes) ------------------------------------------------

    def own(self, request: Request) -> Handler | None:
        """labvm's own routes (/.labvm/...), answered in every state."""
        return self.pages.own(request)

    def page(self, request: Request) -> Response | None:
        """The asleep page while asleep; None while awake (the request goes to Jupyter)."""
        return self.pages.page(request)

    def upstream(self, wait: float) -> socket.socket | None:
        """A connection through ssh's forward, waiting while ssh (re)connects; None when asleep,
        refused, failed, or the forward is not back within `wait`."""
        deadline = time.monotonic() + wait
        while True:
            with self.forwarding:
                self.forwarding.wait_for(
                    lambda: self.state["state"] not in COMING or self.stopping, max(0.0, deadline - time.monotonic())
                )
                state = None if self.stopping else State(self.state["state"])
            connection = self.forward.connect() if state == State.UP else None
            if connection or time.monotonic() >= deadline or state not in (State.UP, *COMING):
                return connection
            time.sleep(0.1)  # "up" a moment after its ssh ended: the loop is about to say so

    def unavailable(self) -> Response:
        """503 with why, when no forward came back in time (refused, failed, still reconnecting)."""
        state, reason = str(self.state["state"]), str(self.state["reason"])
        words = f"{state}: {reason}" if reason else state
        return Response(
            503,
            (
                json.dumps(
                    {"message": f"labvm: no way to the VM of {self.profile} now ({clean(words)})", "reason": state}
                )
                + "\n"
            ).encode(),
        )

    # -- the loop ----------------------------------------------------------------------

    def run(self) -> int:
        """Binds the URL's sockets, serves control and the watch, and keeps the forward until told to end."""
        signal.signal(signal.SIGTERM, self.on_term)
        signal.signal(signal.SIGINT, self.on_term)
        if hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, signal.SIG_IGN)  # the terminal that started `inv` may close
        platforms.raise_open_files_limit()
        try:
            gate = Gate(self.local_port, self)
        except OSError as e:  # another program took the port since `inv up` chose it
            self.set_state(
                State.FAILED,
                f"127.0.0.1:{self.local_port} is taken ({e.strerror or e}); "
                f"`inv up --host {self.profile}` again picks another port",
            )
            self.record.unlink(missing_ok=True)
            return 1
        self.forward.leave_out_forwards()
        control = Control(self.command, self.log)
        self.state.update({"control_port": control.port, "control_secret": control.secret})
        threading.Thread(target=control.serve, daemon=True).start()
        threading.Thread(target=self.watch.run, daemon=True).start()
        try:
            return self.keep()
        finally:
            control.close()
            self.watch.end()
            gate.close()

    def keep(self) -> int:
        """The loop of states (module docstring): 0 when told to end, 1 when the first forward never worked."""
        backoff, failures, was_up, asked_cloud = BACKOFF_FIRST, 0, False, 0.0
        self.set_state(State.STARTING)
        while not self.stopping:
            if self.sleep_asked:
                self.stay_asleep()
                if self.stopping:
                    break
                # Woken for a VM that runs again: never given up on, asked about at the third failure.
                was_up, failures, backoff, asked_cloud = True, 0, BACKOFF_FIRST, 0.0
                self.set_state(State.STARTING)
                self.pages.facts = None  # connections now wait for the forward
                continue
            reason, refused, forwarded = self.forward_once()
            if forwarded:
                was_up, failures, backoff = True, 0, BACKOFF_FIRST
            if self.stopping or self.sleep_asked:
                continue
            if refused:
                self.refuse(refused)
                continue
            if not was_up:  # the first connection never worked: say why, do not insist
                self.set_state(State.FAILED, reason)
                return 1
            failures += 1
            self.set_state(State.RECONNECTING, reason, keep_since=True)
            if failures >= ASK_CLOUD_AFTER and time.monotonic() - asked_cloud >= ASK_CLOUD_EVERY:
                asked_cloud = time.monotonic()
                if self.sleep_if_the_cloud_says_so():
                    continue
            if self.nudge.wait(backoff):
                backoff = BACKOFF_FIRST  # asked to reconnect: no waiting
            else:
                backoff = min(backoff * 2, BACKOFF_CAP)
            self.nudge.clear()
        self.forward.end()
        self.forward.reap()
        self.watch.end()  # before the record goes: the watch writes it too
        self.record.unlink(missing_ok=True)
        self.log("stopped by labvm")
        return 0

    def forward_once(self) -> tuple[str, str, bool]:
        """One ssh, from the question who holds the port to its end: (why it ended, the refusal or
        "", whether it forwarded)."""
        refused = self.ports.refusal(lambda: self.stopping or bool(self.sleep_asked))
        if refused is None:  # the VM could not be asked: ssh itself would fail the same way
            return self.ports.unreachable, "", False
        if refused or self.stopping or self.sleep_asked:
            return "", refused, False
        self.forward.start()
        forwarded = self.forward.wait_until_accepting(lambda: self.stopping or bool(self.sleep_asked))
        if forwarded:
            self.set_state(State.UP)
            self.watch.ring()  # a new connection, maybe after a long gap: how close is the stop?
            refused = self.hold()
        self.forward.end()
        code = self.forward.reap()
        return self.forward.last_line or f"ssh exited with status {code}", refused, forwarded

    def hold(self) -> str:
        """While ssh forwards: asks who holds the port every OWNER_ASK_EVERY seconds, and at once
        when a connection found nobody listening; ends ssh and returns the refusal when another
        login took it; returns "" when ssh ended."""
        while True:
            if self.recheck.wait(OWNER_ASK_EVERY):
                self.recheck.clear()
            if self.stopping or self.sleep_asked or self.forward.ending or self.forward.gone.is_set():
                return ""
            refused = self.ports.refusal(lambda: self.stopping or bool(self.sleep_asked))
            if refused:
                self.forward.end()
                return refused

    def refuse(self, reason: str) -> None:
        """No forward while another login holds the port: said once, asked again later."""
        if (self.state["state"], self.state["reason"]) != (State.REFUSED.value, reason):
            self.set_state(State.REFUSED, reason)
        if self.nudge.wait(REFUSED_RETRY):  # `inv up` (`reconnect`) asks again at once
            self.nudge.clear()

    def sleep_if_the_cloud_says_so(self) -> bool:
        """After failed attempts: whether the cloud says the VM is stopped or gone (then asleep)."""
        verdict = self.vm_not_running()
        if not verdict:
            return False
        gone = verdict == "VM gone"
        why = verdict if gone else (autostop_stopped_it(self.watch.last_report, self.watch.last_reasons) or verdict)
        self.sleep(why, gone)
        platforms.notify(
            f"labvm: {self.profile}",
            f"{why}; http://127.0.0.1:{self.local_port}/ {'says so' if gone else 'has a Start button'}",
        )
        return True

    # -- asleep: the port answers with the asleep page ------------------------------------

    def stay_asleep(self) -> None:
        """No ssh; the port answers with the asleep page until `wake`/`reconnect` or the end."""
        while not self.stopping:
            request, self.sleep_asked = self.sleep_asked, None
            if request:
                self.show_asleep(*request)
            if self.wake_asked:
                break
            woken = self.nudge.wait(ASLEEP_CHECK_EVERY)
            self.nudge.clear()
            if not woken and self.profile_removed():
                self.log(f"profile {self.profile} is no longer in {self.hosts}: ending")
                self.stopping = True
        self.wake_asked = False

    def show_asleep(self, why: str, gone: bool) -> None:
        """The asleep page's facts and the record say why; a stop from awake starts a new asleep stretch."""
        if State(self.state["state"]) in AWAKE:  # from awake: a new stop, a new start
            self.asleep_since = now_iso()
            self.watch.forget()
            self.start.reset()
        self.asleep_why, self.gone = why, gone
        self.pages.token = None  # the stopped lab's token opens nothing now, and gives no proof
        size, region, vm = self.profile_facts()
        self.pages.facts = PageFacts(
            profile=self.profile,
            size=size,
            region=region,
            stopped_at=self.asleep_since,
            why=why,
            price=self.price_words(),
            gone=gone,
            vm=vm,
            data=self.data_words(),
        )
        state = State.GONE if gone else State.ASLEEP
        if (self.state["state"], self.state["reason"]) != (state.value, why):
            self.set_state(state, why)

    def progress(self) -> dict:
        """The page's Start as the page polls it (start.PageStart)."""
        return self.start.progress()

    def begin_start(self) -> None:
        """The page's Start button, its proof checked: `inv up` in the background."""
        self.start.begin()

    def profile_facts(self) -> tuple[str, str, bool]:
        """(size, region, whether it is a cloud VM) as hosts.yml names them; a machine labvm does
        not power (ssh) gives its address for the region ("" where hosts.yml cannot be read)."""
        try:
            from ..config import load
            from ..providers import describe

            description = describe(load(Path(self.hosts)).profile(self.profile))
        except Exception:  # hosts.yml being edited: the page shows less
            return "", "", True
        return clean(description.size, 100), clean(description.place, 100), description.vm

    def price_words(self) -> str:
        """The words "about $0.085/h" when the price is known on this laptop (no network); else ""."""
        try:
            from ..prices import known_price, per_hour

            price = known_price(self.profile, self.hosts)
            return clean(per_hour(price), 100) if price is not None else ""
        except Exception:  # prices are never a reason to fail
            return ""

    def data_words(self) -> str:
        """ "a 100 GB volume, about $8.00 a month" for a profile with data: (its price as labvm last priced it, on
        this laptop: no network); "" without data:."""
        try:
            from ..prices import known_data_month

            known = known_data_month(self.profile, self.hosts)
            if known is None:
                return ""
            size, usd = known
            return clean(f"a {size} GB volume" + (f", about ${usd:.2f} a month" if usd is not None else ""), 100)
        except Exception:  # prices are never a reason to fail
            return ""

    def hosts_mtime(self) -> float:
        """hosts.yml's modification time (0 when missing): read again only when it changes."""
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
            from ..config import load

            return self.profile not in load(Path(self.hosts)).names
        except Exception:
            return False

    def vm_not_running(self) -> str:
        """The words "VM stopped"/"VM gone" when the provider says so (a machine labvm does not make always
        runs); else ""."""
        try:
            from ..config import load
            from ..providers import for_profile

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
    """`python -m labvm.keeper ...`: the keeper's exit status."""
    profile, local_port, remote_port, run_dir, ssh_config, alias, hosts = argv
    return Keeper(profile, int(local_port), int(remote_port), Path(run_dir), ssh_config, alias, hosts).run()
