"""Idle auto-stop, one subject end to end: the step (scripts/autostop.sh, which runs
scripts/autostop.py), its report read strictly, and the lines `status`, `autostop` and `up` print.

The host's check runs every minute and stops the machine from inside (no cloud credential on it);
labvm sets it up, changes it, extends it and reads what it last saw.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import answers, steps
from .answers import MAX_EPOCH, MAX_SECONDS, BadAnswer
from .config import Member, parse_duration
from .errors import LabvmError
from .vm import duration

if TYPE_CHECKING:
    from .config import Profile
    from .providers import Provider

EXTEND_LIMIT = 366 * 86400  # --extend: past a year the VM's clock arithmetic overflows; nobody means it
MAX_REASONS = 20


class Autostop:
    """The profile's autostop on the host `host()` gives; the provider says whether labvm powers the machine."""

    def __init__(self, profile: Profile, provider: Provider, host: Callable[[], Any]):
        self.profile, self.provider, self.host = profile, provider, host

    def change(self, idle: str = "", off: bool = False, extend: str = "") -> None:
        """`inv autostop`: --idle or --off is kept on the VM (setup leaves it alone); neither applies
        hosts.yml again.  extend: the VM counts as in use until then (a long job outside Jupyter),
        then idle time counts again."""
        self.provider.require("autostop")
        if extend:
            self._extend(extend)
        elif off:
            self.apply(0, set_by="inv autostop")
        elif idle:
            seconds = parse_duration(idle)
            if not seconds:
                raise LabvmError(f"--idle: must be a duration like 60m, 2h or 1h30m, not {idle!r}")
            self.apply(seconds, set_by="inv autostop")
        else:
            self.apply(self.provider.autostop_seconds() or 0, set_by="hosts.yml")

    def setup(self) -> None:
        """hosts.yml's autostop on a machine labvm powers (what setup does), a setting made with
        `inv autostop` kept; nothing where labvm does not power the machine."""
        seconds = self.provider.autostop_seconds()
        if seconds is not None:
            self.apply(seconds, set_by="hosts.yml", keep=True)

    def apply(self, seconds: int, set_by: str, keep: bool = False) -> None:
        """The idle period on the host (0: off), and the line that says what it is now."""
        report = apply_setting(self.profile, self.host(), seconds, set_by, keep)
        if report is None:
            raise LabvmError(f"autostop: the VM kept no setting; `inv setup --host {self.profile.name}` tries again")
        print(f"autostop: {autostop_line(report)}")

    def _extend(self, extend: str) -> None:
        seconds = parse_duration(extend)  # off: 0, the extension ends now
        if seconds is None:
            raise LabvmError(f"--extend: must be a duration like 3h, 90m or 1h30m (or off), not {extend!r}")
        if seconds > EXTEND_LIMIT:
            raise LabvmError(f"--extend: at most {EXTEND_LIMIT // 3600}h (a year), not {extend!r}")
        until = int(time.time()) + seconds if seconds else 0
        report = run_step(self.profile, self.host(), "extend", {"LABVM_AUTOSTOP_UNTIL": str(until)})
        if report is None:
            raise LabvmError(f"autostop is not set up on this VM yet; `inv up --host {self.profile.name}` sets it up")
        print(f"autostop: {autostop_line(report)}")


def apply_setting(
    profile: Profile, host, seconds: int, set_by: str, keep: bool = False, scheduler: str = ""
) -> dict | None:
    """autostop.sh apply: the setting on the host; its report (None: the host kept none).
    keep: leave a setting made with `inv autostop` as it is (what setup does).
    scheduler: a cluster worker's; it stops once that scheduler has been gone a while."""
    return run_step(
        profile,
        host,
        "apply",
        {
            "LABVM_AUTOSTOP_IDLE": str(seconds),
            "LABVM_AUTOSTOP_LOAD": str(profile.autostop_load),
            "LABVM_AUTOSTOP_GPU": str(profile.autostop_gpu),
            # Tests and labs with their own power-off action set this; empty means shutdown -h.
            "LABVM_AUTOSTOP_COMMAND": os.environ.get("LABVM_AUTOSTOP_COMMAND", ""),
            "LABVM_AUTOSTOP_SET_BY": set_by,
            "LABVM_AUTOSTOP_KEEP": "1" if keep else "0",
            "LABVM_PORT": str(profile.notebook.port),
            "LABVM_AUTOSTOP_SCHEDULER": scheduler,
        },
    )


def run_step(profile: Profile, host, action: str, env: dict[str, str]) -> dict | None:
    """autostop.sh ACTION on the host, and the report it ends with."""
    return autostop_report(steps.run(host, profile, "autostop.sh", action, env=env), host.label, profile.name)


# -- autostop.py's report ----------------------------------------------------------------------


def autostop_report(out: str, where: str, profile: str) -> dict | None:
    """autostop.py's report, the last line of `out` (None: autostop is not set up there)."""
    fix = f"`inv autostop --host {Member.head_of(profile)}` sets it up again"
    return answers.checked(
        autostop_fields, answers.json_line(out, where, "autostop report", fix), where, "autostop report", fix
    )


def autostop_fields(data) -> dict | None:
    """A report already parsed (nbctl.py's `autostop` field, the keeper's question), checked field by
    field; raises BadAnswer."""
    if data is None:
        return None
    data = answers.required(answers.mapping(data, "autostop"), "autostop.", "idle_seconds")
    reasons, notes = _texts(data, "reasons"), _texts(data, "notes")
    optional = answers.optional_whole_number
    return {
        "idle_seconds": answers.whole_number(data["idle_seconds"], "autostop.idle_seconds", 0, MAX_SECONDS),
        "set_by": answers.text(data.get("set_by") or "", "autostop.set_by"),
        "scheduler": answers.text(data.get("scheduler") or "", "autostop.scheduler"),
        "idle_for": optional(data.get("idle_for"), "autostop.idle_for", 0, MAX_SECONDS),
        "last_check_ago": optional(data.get("last_check_ago"), "autostop.last_check_ago", -86400, MAX_SECONDS),
        "stop_requested": answers.flag(bool(data.get("stop_requested")), "autostop.stop_requested"),
        "reasons": reasons,
        "notes": notes,
        "extended_until": optional(data.get("extended_until"), "autostop.extended_until", 0, MAX_EPOCH),
        "stopped_at": optional(data.get("stopped_at"), "autostop.stopped_at", 0, MAX_EPOCH),
        "stopped_after": optional(data.get("stopped_after"), "autostop.stopped_after", 0, MAX_SECONDS),
        "dask_scheduler": answers.text(data.get("dask_scheduler") or "", "autostop.dask_scheduler"),
        "worker_grace": optional(data.get("worker_grace"), "autostop.worker_grace", 0, MAX_SECONDS),
    }


def _texts(data: dict, key: str) -> list[str]:
    """A short list of texts (reasons: what keeps the VM up; notes: what holds a GPU while it idles)."""
    values = data.get(key) or []
    if not isinstance(values, list) or len(values) > MAX_REASONS:
        raise BadAnswer(f"autostop.{key}: {answers.shown(values)} is not a short list of texts")
    return [answers.text(value, f"autostop.{key}[]") for value in values]


# -- what labvm says of a report ----------------------------------------------------------------


def autostop_line(report: dict) -> str:
    """The VM's autostop setting and what its last check saw, in one line."""
    if not report["idle_seconds"]:
        return f"off (set by {report['set_by']})"
    line = f"stops after {duration(report['idle_seconds'])} idle (set by {report['set_by']}"
    line += f", checked by {report['scheduler']})" if report["scheduler"] else "; no timer or cron entry found)"
    if report["stop_requested"]:
        return line + "; stopping now"
    if report["last_check_ago"] is None:
        return line + "; not checked yet"
    if report["last_check_ago"] > 180:
        return line + f"; last check {duration(report['last_check_ago'])} ago: is cron or the timer running?"
    reasons = report.get("reasons") or []
    if report.get("extended_until") and not any(r.startswith("extended until") for r in reasons):
        # Said by the next check ("extended until 17:30 UTC"); until then, here.
        reasons = [*reasons, f"kept up until {time.strftime('%H:%M', time.localtime(report['extended_until']))}"]
    if report["idle_for"] is None:
        return line + (f"; in use: {', '.join(reasons)}" if reasons else "; in use")
    # A GPU's memory held while idle does not keep the VM up: said, so its owner knows what stops with it.
    return line + f"; idle {duration(report['idle_for'])}" + "".join(f"; {note}" for note in report.get("notes") or [])


def last_autostop(report: dict) -> list[str]:
    """When the VM last stopped itself, and after how long idle (the state survives the stop)."""
    if not report.get("stopped_at"):
        return []
    after = f" after {duration(report['stopped_after'])} idle" if report.get("stopped_after") else ""
    stopped_at = time.strftime("%Y-%m-%d %H:%M", time.localtime(report["stopped_at"]))
    return [f"  autostop: last stopped this VM {stopped_at}{after}"]
