"""What the sync fallback's program on the host (scripts/sync_host.py) says, read strictly: every
message one line, bounded, checked against what labvm asked for (labvm.sync_fallback reads them;
labvm.answers has the tools).

    host -> laptop   a mark line (what a chatty login script printed before it is skipped),
                     {"missing": true} when the workspace is not there,
                     one JSON line per regular file {"f": hex name, "s": size, "m": mtime_ns},
                     {"end": true}
    laptop -> host   {"get": hex, "size": n}  ->  {"size": n, "m": mtime_ns}, exactly n bytes, then
                                                  {"ok": true} or {"error": ...} (it changed while read);
                                                  or {"error": ...} alone
                     {"put": hex, "size": n, "m": mtime_ns} + n bytes  ->  {"ok": true} or {"error": ...}
                     {"done": true}
"""

from __future__ import annotations

import math
import re
from typing import NamedTuple

from . import answers
from .answers import BadAnswer
from .text import clean, decode

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
    data = _message(line)
    for word in ("missing", "end"):
        if data == {word: True} and data[word] is True:
            return word
    _exactly(data, "f", "s", "m")
    if not isinstance(data["f"], str) or not HEX_NAME.fullmatch(data["f"]):
        raise BadAnswer(f"f: {answers.shown(data['f'])} is not a name in hex digits")
    size = answers.whole_number(data["s"], "s", 0, MAX_FILE_SIZE)
    return ListedFile(bytes.fromhex(data["f"]), size, _file_time(data["m"], "m"))


def sync_sending(line: bytes, asked: int) -> int | str:
    """The host's answer to a request for `asked` bytes of a file: their modification time (the bytes
    follow), or the host's reason it sends none; raises BadAnswer."""
    data = _message(line)
    if "error" in data:
        return _reason(data)
    _exactly(data, "size", "m")
    if answers.whole_number(data["size"], "size", 0, MAX_FILE_SIZE) != asked:
        raise BadAnswer(f"size: {answers.shown(data['size'])} bytes, not the {asked} asked for")
    return _file_time(data["m"], "m")


def sync_done(line: bytes) -> str | None:
    """What ends a file's bytes, or answers a file sent: None when all is well, else the host's reason;
    raises BadAnswer."""
    data = _message(line)
    if "error" in data:
        return _reason(data)
    if data != {"ok": True} or data["ok"] is not True:
        raise BadAnswer(f'{answers.shown(data)} is neither {{"ok": true}} nor {{"error": ...}}')
    return None


def _message(line: bytes) -> dict:
    if len(line) > SYNC_LINE_LIMIT:
        raise BadAnswer(f"a line longer than {SYNC_LINE_LIMIT // 1024} KiB")
    if not line.endswith(b"\n"):
        raise BadAnswer(f"an unfinished line: {clean(decode(line), 80)}")
    try:
        data = answers.strict_json(line)
    except (ValueError, RecursionError):
        raise BadAnswer(f"not JSON: {clean(decode(line[:-1]), 80)}") from None
    return answers.mapping(data, "the message")


def _exactly(data: dict, *keys: str) -> None:
    answers.required(data, "", *keys)
    extra = sorted(set(data) - set(keys))
    if extra:
        raise BadAnswer(f"{clean(', '.join(extra), 80)}: not a field labvm's program sends")


def _reason(data: dict) -> str:
    _exactly(data, "error")
    return answers.text(data["error"], "error")


def _file_time(value, name: str) -> int:
    whole = int(value) if isinstance(value, float) and math.isfinite(value) and value.is_integer() else value
    if isinstance(whole, bool) or not isinstance(whole, int) or not 0 <= whole <= MAX_FILE_TIME_NS:
        raise BadAnswer(f"{name}: {answers.shown(value)} is not a file time from 1970 to 3000 (nanoseconds)")
    return whole
