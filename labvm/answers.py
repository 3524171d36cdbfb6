"""What a VM sends back to the laptop, checked field by field before anything uses or shows it.

labvm's scripts on the VM print one JSON object as the last line of their output (nbctl.py's
status, plan and stop; autostop.py's report).  Anyone on the VM can change those scripts or what
they read, so each answer here is: bounded (a few KB), parsed strictly (no NaN or Infinity), each
field of the type and range labvm expects, strings cleaned for the terminal, and the two values
that build the browser's URL (token, base_url) restricted to characters that cannot move it to
another host.  A bad answer is one LabvmError line: where it came from, what came back, what to do.

The sync fallback's program (labvm.sync_fallback) talks in messages of one line each: they pass
here too, each bounded, strict and checked against what labvm asked for.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, NamedTuple

from .errors import LabvmError
from .text import clean, decode

ANSWER_LIMIT = 16 * 1024  # bytes of a status line; labvm's own are under 2 KB
MAX_COUNT = 10 ** 6  # kernels, connections, pids in one answer: more is not a real VM's
MAX_SECONDS = 100 * 366 * 86400  # a century: idle times, ages, epoch seconds up to 2070 and beyond
MAX_EPOCH = 4 * 10 ** 9
MAX_PID = 1 << 32
MAX_BYTES = 1 << 60  # memory and disk sizes
MAX_TEXT = 500  # characters of a free-text field kept (reasons, paths, who set autostop)
MAX_REASONS = 20
# The URL's path prefix: one leading '/', segments of URL-safe characters, a trailing '/'.
# Nothing that ends the authority ('@') or makes a network-path reference ('//').
BASE_URL = re.compile(r"/(?:[A-Za-z0-9._~-]+/)*")
TOKEN = re.compile(r"[A-Za-z0-9._~-]{1,256}")  # nbctl.py makes 48 hex digits


class BadAnswer(LabvmError):
    """One field of an answer is not what labvm expects (the message names it); the parsers say
    where it came from, and a LabvmError, it is never a traceback where one escapes alone."""


def json_line(out: str, where: str, what: str, fix: str) -> Any:
    """The JSON value on the last non-empty line of `out`, bounded and strict."""
    lines = [line for line in (out or "")[-ANSWER_LIMIT * 4:].splitlines() if line.strip()]
    if not lines:
        raise LabvmError(f"{where}: {what}: nothing came back; {fix}")
    line = lines[-1].strip()
    if len(line.encode("utf-8", "surrogatepass")) > ANSWER_LIMIT:
        raise LabvmError(f"{where}: {what}: the answer is larger than {ANSWER_LIMIT // 1024} KiB; {fix}")
    try:
        return json.loads(line, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        raise LabvmError(f"{where}: {what}: not JSON: {clean(line, 120)}; {fix}") from None


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number labvm accepts")


def _setup_again(profile: str) -> str:
    """The next step; a cluster's worker (head+wN) is set up with its head profile."""
    return f"`inv setup --host {profile.split('+')[0]}` installs labvm's scripts on the VM again"


def _checked(parse, value, where: str, what: str, fix: str):
    try:
        return parse(value)
    except BadAnswer as e:
        raise LabvmError(f"{where}: {what}: {e}; {fix}") from None


# -- the notebook's status (scripts/nbctl.py status, plan, wait) ---------------------------------

def notebook_status(out: str, where: str, profile: str) -> dict:
    """nbctl.py's status (plan and wait add `action`): the plain values labvm uses."""
    fix = _setup_again(profile)
    return _checked(_notebook_status, json_line(out, where, "notebook status", fix), where, "notebook status", fix)


def _notebook_status(data) -> dict:
    data = _required(_mapping(data, "the answer"), "", "port", "server", "other", "port_busy", "autostop",
                     "mem_total", "mem_available", "disk_total", "disk_free", "load")
    status = {
        "port": _int(data["port"], "port", 1, 65535),
        "server": _server(data["server"]),
        "other": _other(data["other"]),
        "port_busy": _bool(data["port_busy"], "port_busy"),
        "autostop": _autostop(data["autostop"]),
        "action": _text(data.get("action", ""), "action"),
        "port_holder": _holder(data.get("port_holder")),
    }
    for key in ("mem_total", "mem_available", "disk_total", "disk_free"):
        status[key] = _int(data[key], key, 0, MAX_BYTES)
    status["load"] = _number(data["load"], "load", 0, 1e6)
    return status


def _server(data) -> dict | None:
    if data is None:
        return None
    data = _required(_mapping(data, "server"), "server.", "pid", "port", "token", "answering")
    server = {
        "pid": _int(data["pid"], "server.pid", 1, MAX_PID),
        "port": _int(data["port"], "server.port", 1, 65535),
        "token": token(data["token"]),
        "base_url": base_url(data.get("base_url")),
        "root_dir": _text(data.get("root_dir") or "", "server.root_dir"),
        "runtime_file": _text(data.get("runtime_file") or "", "server.runtime_file"),
        "answering": _bool(data["answering"], "server.answering"),
    }
    if server["answering"]:
        for key in ("kernels", "busy_kernels", "connections"):
            server[key] = _int(data.get(key, 0), f"server.{key}", 0, MAX_COUNT)
        server["idle_seconds"] = _int(data.get("idle_seconds", 0), "server.idle_seconds", -86400, MAX_SECONDS)
    return server


def _other(data) -> dict | None:
    if data is None:
        return None
    data = _required(_mapping(data, "other"), "other.", "pid")
    return {"pid": _int(data["pid"], "other.pid", 1, MAX_PID),
            "runtime_file": _text(data.get("runtime_file", ""), "other.runtime_file")}


def _holder(data) -> dict | None:
    """Another login of the VM listening on the notebook's port (nbctl.py port_owner)."""
    if data is None:
        return None
    data = _required(_mapping(data, "port_holder"), "port_holder.", "uid", "user")
    return {"uid": _int(data["uid"], "port_holder.uid", 0, MAX_PID), "user": _text(data["user"], "port_holder.user")}


def notebook_launched(out: str, where: str, profile: str) -> dict:
    """nbctl.py's launched: {"port", "token", "base_url"} of a Jupyter started a moment ago (or
    running already), what the browser's URL needs before Jupyter answers."""
    fix = _setup_again(profile)

    def parse(data) -> dict:
        data = _required(_mapping(data, "the answer"), "", "port", "token", "base_url")
        return {"port": _int(data["port"], "port", 1, 65535), "token": token(data["token"]),
                "base_url": base_url(data["base_url"])}

    return _checked(parse, json_line(out, where, "notebook launch", fix), where, "notebook launch", fix)


def notebook_stopped(out: str, where: str, profile: str) -> dict:
    """nbctl.py's stop: {"stopped": [pid, ...], "other": None or {"pid", "runtime_file"}}."""
    fix = _setup_again(profile)

    def parse(data) -> dict:
        data = _mapping(data, "the answer")
        stopped = data.get("stopped")
        if not isinstance(stopped, list) or len(stopped) > 100:
            raise BadAnswer(f"stopped: {_shown(stopped)} is not a list of process ids")
        return {"stopped": [_int(pid, "stopped[]", 1, MAX_PID) for pid in stopped], "other": _other(data.get("other"))}

    return _checked(parse, json_line(out, where, "notebook stop", fix), where, "notebook stop", fix)


# -- the autostop report (scripts/autostop.py report) ----------------------------------------

def autostop_report(out: str, where: str, profile: str) -> dict | None:
    """autostop.py's report (None: autostop is not set up there)."""
    fix = f"`inv autostop --host {profile.split('+')[0]}` sets it up again"
    return _checked(_autostop, json_line(out, where, "autostop report", fix), where, "autostop report", fix)


def autostop_fields(data) -> dict | None:
    """The same checks on a report already parsed (the keeper's, nbctl.py's `autostop` field);
    raises BadAnswer."""
    return _autostop(data)


def _autostop(data) -> dict | None:
    if data is None:
        return None
    data = _required(_mapping(data, "autostop"), "autostop.", "idle_seconds")
    reasons = data.get("reasons") or []
    if not isinstance(reasons, list) or len(reasons) > MAX_REASONS:
        raise BadAnswer(f"autostop.reasons: {_shown(reasons)} is not a short list of texts")
    return {
        "idle_seconds": _int(data["idle_seconds"], "autostop.idle_seconds", 0, MAX_SECONDS),
        "set_by": _text(data.get("set_by") or "", "autostop.set_by"),
        "scheduler": _text(data.get("scheduler") or "", "autostop.scheduler"),
        "idle_for": _optional_int(data.get("idle_for"), "autostop.idle_for", 0, MAX_SECONDS),
        "last_check_ago": _optional_int(data.get("last_check_ago"), "autostop.last_check_ago", -86400, MAX_SECONDS),
        "stop_requested": _bool(bool(data.get("stop_requested")), "autostop.stop_requested"),
        "reasons": [_text(reason, "autostop.reasons[]") for reason in reasons],
        "extended_until": _optional_int(data.get("extended_until"), "autostop.extended_until", 0, MAX_EPOCH),
        "stopped_at": _optional_int(data.get("stopped_at"), "autostop.stopped_at", 0, MAX_EPOCH),
        "stopped_after": _optional_int(data.get("stopped_after"), "autostop.stopped_after", 0, MAX_SECONDS),
        "dask_scheduler": _text(data.get("dask_scheduler") or "", "autostop.dask_scheduler"),
        "worker_grace": _optional_int(data.get("worker_grace"), "autostop.worker_grace", 0, MAX_SECONDS),
    }


# -- the sync fallback's messages (sync_fallback.HOST_PROGRAM) -----------------------------------

SYNC_LINE_LIMIT = 16 * 1024  # bytes of one message: a name of PATH_MAX (4096 bytes) is 8,192 hex digits
MAX_FILE_SIZE = (1 << 63) - 1  # off_t: no file system holds more
# File times from 1970 to the year 3000: sync compares and shows them through localtime(), which
# ends there on Windows (learn.microsoft.com/cpp/c-runtime-library/reference/localtime-s-localtime32-s-localtime64-s).
MAX_FILE_TIME_NS = 32503680000 * 10**9 - 1
HEX_NAME = re.compile(r"(?:[0-9a-f]{2})+")


class ListedFile(NamedTuple):
    """One regular file of the host's listing: its name's bytes, size and modification time."""
    name: bytes
    size: int
    mtime_ns: int


def sync_listed(line: bytes) -> ListedFile | str:
    """A line of the listing: a file, or "missing" (no workspace there) or "end"; raises BadAnswer."""
    data = _sync_message(line)
    for word in ("missing", "end"):
        if data == {word: True} and data[word] is True:
            return word
    _exactly(data, "f", "s", "m")
    if not isinstance(data["f"], str) or not HEX_NAME.fullmatch(data["f"]):
        raise BadAnswer(f"f: {_shown(data['f'])} is not a name in hex digits")
    return ListedFile(bytes.fromhex(data["f"]), _int(data["s"], "s", 0, MAX_FILE_SIZE), _file_time(data["m"], "m"))


def sync_sending(line: bytes, asked: int) -> int | str:
    """The host's answer to a request for `asked` bytes of a file: their modification time (the bytes
    follow), or the host's reason it sends none; raises BadAnswer."""
    data = _sync_message(line)
    if "error" in data:
        return _reason(data)
    _exactly(data, "size", "m")
    if _int(data["size"], "size", 0, MAX_FILE_SIZE) != asked:
        raise BadAnswer(f"size: {_shown(data['size'])} bytes, not the {asked} asked for")
    return _file_time(data["m"], "m")


def sync_done(line: bytes) -> str | None:
    """What ends a file's bytes, or answers a file sent: None when all is well, else the host's reason;
    raises BadAnswer."""
    data = _sync_message(line)
    if "error" in data:
        return _reason(data)
    if data != {"ok": True} or data["ok"] is not True:
        raise BadAnswer(f"{_shown(data)} is neither {{\"ok\": true}} nor {{\"error\": ...}}")
    return None


def _sync_message(line: bytes) -> dict:
    if len(line) > SYNC_LINE_LIMIT:
        raise BadAnswer(f"a line longer than {SYNC_LINE_LIMIT // 1024} KiB")
    if not line.endswith(b"\n"):
        raise BadAnswer(f"an unfinished line: {clean(decode(line), 80)}")
    try:
        data = json.loads(line, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        raise BadAnswer(f"not JSON: {clean(decode(line[:-1]), 80)}") from None
    return _mapping(data, "the message")


def _exactly(data: dict, *keys: str) -> None:
    _required(data, "", *keys)
    extra = sorted(set(data) - set(keys))
    if extra:
        raise BadAnswer(f"{clean(', '.join(extra), 80)}: not a field labvm's program sends")


def _reason(data: dict) -> str:
    _exactly(data, "error")
    return _text(data["error"], "error")


def _file_time(value, name: str) -> int:
    whole = int(value) if isinstance(value, float) and math.isfinite(value) and value.is_integer() else value
    if isinstance(whole, bool) or not isinstance(whole, int) or not 0 <= whole <= MAX_FILE_TIME_NS:
        raise BadAnswer(f"{name}: {_shown(value)} is not a file time from 1970 to 3000 (nanoseconds)")
    return whole


# -- the browser's URL ---------------------------------------------------------------------

def base_url(value) -> str:
    """Jupyter's base_url as a path that can only follow the laptop's 127.0.0.1:PORT: one leading
    '/', URL-safe segments, a trailing '/' (added when missing, as Jupyter does)."""
    if value in (None, ""):
        return "/"
    if not isinstance(value, str) or len(value) > 200:
        raise BadAnswer(f"server.base_url: {_shown(value)} is not a URL path")
    path = value if value.endswith("/") else value + "/"
    if not BASE_URL.fullmatch(path):
        raise BadAnswer(f"server.base_url: {_shown(value)} is not a plain path like /user/lab/ "
                        f"(one leading '/', letters, digits and . _ ~ -)")
    return path


def token(value) -> str:
    if not isinstance(value, str) or not TOKEN.fullmatch(value):
        raise BadAnswer(f"server.token: {_shown(value)} is not a token (letters, digits and . _ ~ -)")
    return value


def lab_url(local_port: int, server: dict, with_token: bool = True) -> str:
    """http://127.0.0.1:PORT/BASE/lab[?token=...] from a checked server (notebook_status)."""
    url = f"http://127.0.0.1:{int(local_port)}{base_url(server.get('base_url'))}lab"
    return f"{url}?token={token(server.get('token'))}" if with_token else url


# -- one field at a time -----------------------------------------------------------------------

def _shown(value) -> str:
    return clean(json.dumps(value) if not isinstance(value, str) else repr(value), 80)


def _required(data: dict, prefix: str, *keys: str) -> dict:
    missing = [prefix + key for key in keys if key not in data]
    if missing:
        raise BadAnswer(f"{', '.join(missing)} missing")
    return data


def _mapping(value, name: str) -> dict:
    if not isinstance(value, dict):
        raise BadAnswer(f"{name}: {_shown(value)} is not a JSON object")
    return value


def _int(value, name: str, low: int, high: int) -> int:
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BadAnswer(f"{name}: {_shown(value)} is not a whole number from {low} to {high}")
    return value


def _optional_int(value, name: str, low: int, high: int) -> int | None:
    return None if value is None else _int(value, name, low, high)


def _number(value, name: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise BadAnswer(f"{name}: {_shown(value)} is not a number from {low:g} to {high:g}")
    return float(value)


def _bool(value, name: str) -> bool:
    if not isinstance(value, bool):
        raise BadAnswer(f"{name}: {_shown(value)} is not true or false")
    return value


def _text(value, name: str) -> str:
    """A free-text field, cleaned for the terminal (it is only ever shown)."""
    if not isinstance(value, str):
        raise BadAnswer(f"{name}: {_shown(value)} is not a text")
    return clean(value, MAX_TEXT)
