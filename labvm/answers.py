"""How labvm reads what a VM sends back: bounded, strict, checked field by field before anything
uses or shows it.

labvm's scripts on the VM print one JSON object as the last line of their output; the sync
fallback's program talks in messages of one line each.  Anyone on the VM can change those scripts
or what they read, so each answer is: bounded (a few KB), parsed strictly (no NaN or Infinity), each
field of the type and range labvm expects, strings cleaned for the terminal.  A bad answer is one
LabvmError line: where it came from, what came back, what to do.

Here are the tools; each subject's answer is read beside its step (labvm.notebook: nbctl.py's
status and stop, and the browser's URL; labvm.autostop: autostop.py's report;
labvm.sync_messages: the sync program's messages; labvm.cluster: dask.sh's).
"""

from __future__ import annotations

import json
import math
from typing import Any

from .errors import LabvmError
from .text import clean

ANSWER_LIMIT = 16 * 1024  # bytes of a status line; labvm's own are under 2 KB
MAX_COUNT = 10**6  # kernels, connections, pids in one answer: more is not a real VM's
MAX_SECONDS = 100 * 366 * 86400  # a century: idle times, ages, epoch seconds up to 2070 and beyond
MAX_EPOCH = 4 * 10**9
MAX_PID = 1 << 32
MAX_BYTES = 1 << 60  # memory and disk sizes
MAX_TEXT = 500  # characters of a free-text field kept (reasons, paths, who set autostop)


class BadAnswer(LabvmError):
    """One field of an answer is not what labvm expects (the message names it); the parsers say
    where it came from, and a LabvmError, it is never a traceback where one escapes alone."""


def json_line(out: str, where: str, what: str, fix: str) -> Any:
    """The JSON value on the last non-empty line of `out`, bounded and strict."""
    lines = [line for line in (out or "")[-ANSWER_LIMIT * 4 :].splitlines() if line.strip()]
    if not lines:
        raise LabvmError(f"{where}: {what}: nothing came back; {fix}")
    line = lines[-1].strip()
    if len(line.encode("utf-8", "surrogatepass")) > ANSWER_LIMIT:
        raise LabvmError(f"{where}: {what}: the answer is larger than {ANSWER_LIMIT // 1024} KiB; {fix}")
    try:
        return strict_json(line)
    except (ValueError, RecursionError):
        raise LabvmError(f"{where}: {what}: not JSON: {clean(line, 120)}; {fix}") from None


def strict_json(line: str | bytes) -> Any:
    """One JSON value, without NaN or Infinity; raises ValueError (or RecursionError, nested too deep)."""
    return json.loads(line, parse_constant=_no_constant)


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number labvm accepts")


def checked(parse, value, where: str, what: str, fix: str):
    """parse(value), a BadAnswer as one LabvmError line: where, what, why and the next step."""
    try:
        return parse(value)
    except BadAnswer as e:
        raise LabvmError(f"{where}: {what}: {e}; {fix}") from None


# -- one field at a time: each raises BadAnswer naming the field ------------------------------


def shown(value) -> str:
    """A value as a message quotes it: short and cleaned."""
    return clean(json.dumps(value) if not isinstance(value, str) else repr(value), 80)


def required(data: dict, prefix: str, *keys: str) -> dict:
    """`data`, once each of `keys` is in it."""
    missing = [prefix + key for key in keys if key not in data]
    if missing:
        raise BadAnswer(f"{', '.join(missing)} missing")
    return data


def mapping(value, name: str) -> dict:
    """A JSON object."""
    if not isinstance(value, dict):
        raise BadAnswer(f"{name}: {shown(value)} is not a JSON object")
    return value


def whole_number(value, name: str, low: int, high: int) -> int:
    """A whole number from low to high (a float without a fraction counts; a bool does not)."""
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BadAnswer(f"{name}: {shown(value)} is not a whole number from {low} to {high}")
    return value


def optional_whole_number(value, name: str, low: int, high: int) -> int | None:
    """None, or a whole number from low to high."""
    return None if value is None else whole_number(value, name, low, high)


def number(value, name: str, low: float, high: float) -> float:
    """A number from low to high."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise BadAnswer(f"{name}: {shown(value)} is not a number from {low:g} to {high:g}")
    return float(value)


def flag(value, name: str) -> bool:
    """true or false, nothing that merely reads as one."""
    if not isinstance(value, bool):
        raise BadAnswer(f"{name}: {shown(value)} is not true or false")
    return value


def text(value, name: str) -> str:
    """A free-text field, cleaned for the terminal (it is only ever shown)."""
    if not isinstance(value, str):
        raise BadAnswer(f"{name}: {shown(value)} is not a text")
    return clean(value, MAX_TEXT)
