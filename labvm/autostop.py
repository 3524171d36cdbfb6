"""What a VM's autostop report says, in the lines `status`, `autostop` and `up` print."""

from __future__ import annotations

import time


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
    return line + f"; idle {duration(report['idle_for'])}"


def last_autostop(report: dict) -> list[str]:
    """When the VM last stopped itself, and after how long idle (the state survives the stop)."""
    if not report.get("stopped_at"):
        return []
    after = f" after {duration(report['stopped_after'])} idle" if report.get("stopped_after") else ""
    return [f"  autostop: last stopped this VM {time.strftime('%Y-%m-%d %H:%M', time.localtime(report['stopped_at']))}{after}"]


def duration(seconds: int) -> str:
    if seconds < 90:
        return f"{seconds}s"
    if seconds < 5400:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
