"""The keeper's watch on autostop: while the tunnel is up it asks the VM for its autostop report
(one short non-interactive ssh, no pty: a pty login would count as activity) right after each
connection and then every minute (or when rung), and warns once per idle stretch, in its log and
as a desktop notification, when the VM will stop itself within autostop's own warning window
(with its price when known).  Its last report says why the VM stopped, if it did.
"""

from __future__ import annotations

import math
import select
import socket
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from .. import platforms
from ..autostop import autostop_report
from ..errors import LabvmError
from ..vm import duration, python_command
from .questions import Questions, question_command

AUTOSTOP_ASK_EVERY = 60  # seconds: the VM's check runs every minute
AUTOSTOP_ASK_TIMEOUT = 30  # seconds for the whole question, connection included
AUTOSTOP_WARN_WITHIN = 300  # seconds, or half a shorter period: scripts/autostop.py's `wall` warning
AUTOSTOP_DUE_WITHIN = 2 * AUTOSTOP_ASK_EVERY  # this close to its autostop when last asked: autostop stopped it
AUTOSTOP_STATUS = python_command("autostop.py", "status")  # the VM's report, as the minute's check makes it
AUTOSTOP_ANSWER_LIMIT = 64 * 1024  # bytes of the VM's answer kept (its report is under 1 KB)


def autostop_warning(report: dict) -> str:
    """The words "stops itself in 4m (idle 26m of 30m)" when the VM will stop within the warning window;
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


def autostop_stopped_it(report: dict | None, reasons: list[str]) -> str:
    """The words "stopped by its autostop (idle 30m of 30m: last in use for 1 kernel(s) busy)" when the
    VM's last report said it was about to stop itself; "" otherwise."""
    if not report or not report.get("idle_seconds"):
        return ""
    period, idle = report["idle_seconds"], report.get("idle_for")
    if not report.get("stop_requested") and (idle is None or period - idle > AUTOSTOP_DUE_WITHIN):
        return ""
    last = f": last in use for {'; '.join(reasons)}" if reasons else ""
    stopped_after = duration(report.get("stopped_after") or period)
    return f"stopped by its autostop (idle {stopped_after} of {duration(period)}{last})"


class AutostopWatch:
    """Its own thread: a slow or failing question never delays or ends the tunnel."""

    def __init__(
        self,
        profile: str,
        ssh_config: str,
        alias: str,
        shared: Path | None,
        is_up: Callable[[], bool],
        note: Callable[..., None],
        log: Callable[[str], None],
        price_words: Callable[[], str],
    ):
        self.profile, self.ssh_config, self.alias, self.shared = profile, ssh_config, alias, shared
        self.is_up, self.note, self.log, self.price_words = is_up, note, log, price_words
        self.bell, self.ringer = socket.socketpair()
        self.ringer.setblocking(False)
        self.questions = Questions()
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
        """The watch's thread: asks every AUTOSTOP_ASK_EVERY seconds, or at once when rung, while up."""
        while True:
            rung = bool(select.select([self.bell], [], [], AUTOSTOP_ASK_EVERY)[0])
            if rung:
                self.bell.recv(64)
            if self.questions.ended:
                return
            if self.is_up() and (rung or not self.absent):
                try:
                    self.ask()
                except Exception as e:  # the VM's answer is checked; whatever else goes wrong, the watch lives on
                    self.failed(
                        "error",
                        f"autostop: asking {self.alias} failed: {type(e).__name__}: {e}; asking again in a minute",
                    )

    def end(self) -> None:
        """Ends a question under way: nothing of labvm's outlives the keeper."""
        self.questions.end()
        self.ring()

    def forget(self) -> None:
        """A new stop, a new start: the last stop's report is said."""
        self.last_report, self.last_reasons = None, []

    def ask(self) -> None:
        """One question, its answer judged."""
        answer = self.answer()
        if answer is None:
            return
        asked, code, out, err = answer
        self.judge(code, out, err)
        with self.questions.lock:  # after any warning, so whoever reads it sees the outcome; never after the end
            if not self.questions.ended:
                self.note(autostop_asked=asked)

    def judge(self, code: int, out: str, err: str) -> None:
        """The VM's answer read (a report, or why there is none) and considered."""
        why = err.strip().splitlines()[-1] if err.strip() else ""
        if code == 255:  # ssh's own failure: no route, refused, no answer
            self.failed(
                "unreachable", f"autostop: could not ask {self.alias}: {why or 'ssh failed'}; asking again in a minute"
            )
            return
        try:
            report = autostop_report(out, f"autostop: {self.alias}", self.profile) if code == 0 else None
        except LabvmError as e:  # checked field by field: a report labvm cannot use is said once
            self.absent = True
            self.failed("bad answer", f"{e}; asking again when the tunnel reconnects")
            return
        if report is None:  # `null`: not set up there; a failure: a VM an older labvm set up
            self.absent = True
            self.failed(
                "absent",
                f"autostop: {self.alias} has none ({why or 'not set up there'}); "
                f"asking again when the tunnel reconnects",
            )
            return
        self.absent, self.trouble = False, ""
        self.consider(report)

    def answer(self) -> tuple[str, int, str, str] | None:
        """(when it was asked, exit status, stdout, stderr) of one question; None once the keeper
        ends.  The moment is precise: the answer reflects the VM as it was then or later."""
        asked = datetime.now(timezone.utc).isoformat()
        answer = self.questions.ask(
            question_command(self.ssh_config, self.alias, AUTOSTOP_STATUS, self.shared),
            AUTOSTOP_ASK_TIMEOUT,
            AUTOSTOP_ANSWER_LIMIT,
        )
        if answer is None:
            return None
        if answer.too_much:
            return asked, 1, "", f"its answer was larger than {AUTOSTOP_ANSWER_LIMIT // 1024} KiB"
        return asked, answer.code, answer.out, answer.err

    def failed(self, kind: str, line: str) -> None:
        """A failure to ask logged once per kind, not every minute."""
        if kind != self.trouble:
            self.trouble = kind
            self.log(line)

    def consider(self, report: dict) -> None:
        """A report kept (why it stopped, later) and warned about when the stop is near."""
        self.last_report = report
        if report.get("reasons"):
            self.last_reasons = report["reasons"]
        idle = report.get("idle_for")
        if idle is None or (self.last_idle is not None and idle < self.last_idle):
            self.warned = False  # a new idle stretch: in use again, extended, or a new setting
        self.last_idle = idle
        warning = autostop_warning(report)
        if warning and report.get("notes"):  # GPU memory an idle kernel holds: what stops with the VM
            warning += f" ({'; '.join(report['notes'])})"
        if warning and not self.warned:
            self.warned = True
            advice = f"use Jupyter or `inv autostop --host {self.profile} --extend 1h`"
            price = self.price_words()
            if price:
                advice += f" (it costs {price} while it runs)"
            self.log(f"autostop: {self.profile} {warning}; {advice}")
            platforms.notify(f"labvm: {self.profile}", f"{warning}; {advice}")
