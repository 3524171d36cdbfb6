"""Text from outside (a VM, a cloud, a jump host, another user) on its way to a terminal or a log.

One sanitiser: every C0/C1 control, DEL, the Unicode line and paragraph separators, the
bidirectional overrides and lone surrogates (undecodable bytes) are written visibly as `\\xNN`
or `\\uNNNN`, so no escape sequence (window title, OSC 52 clipboard, erased line, cursor moves)
and no carriage return reaches a terminal; a newline stays a newline only where the text is
lines.  And bounded reads: whatever a pipe or a socket sends, labvm keeps at most a few KB of it.
"""

from __future__ import annotations

import re
import subprocess
import threading
from typing import IO

# Cc (C0, DEL, C1), U+2028/2029 (Python's splitlines() breaks there), the bidi embeddings,
# overrides and isolates (text that reads differently from what it is), lone surrogates.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff]")
LINE_LIMIT = 2000  # characters of one line from outside shown on the terminal
ANSWER_LIMIT = 64 * 1024  # bytes of one answer (JSON, a report, a banner) kept from outside


def unsafe(text: str) -> bool:
    """Whether a text holds a character `clean` would have to write visibly (a control, an escape,
    a bidi override): what hosts.yml's plain values may not hold."""
    return bool(_UNSAFE.search(text))


def _visible(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def clean(text: str, limit: int = LINE_LIMIT) -> str:
    """One line for a terminal or a log: every control character (newlines too) escaped, at most
    `limit` characters kept (the cut said with an ellipsis)."""
    if not isinstance(text, str):
        text = bytes(text).decode("utf-8", "replace") if isinstance(text, (bytes, bytearray)) else str(text)
    shown = _UNSAFE.sub(_visible, text[:limit])
    return shown if len(text) <= limit else shown + "…"


def clean_lines(text: str, limit: int = LINE_LIMIT) -> str:
    """Several lines: each cleaned as `clean` does, the newlines between them kept."""
    return "\n".join(clean(line, limit) for line in text.split("\n"))


def decode(data: bytes) -> str:
    """Bytes from outside as text: undecodable bytes become U+FFFD, never an exception."""
    return data.decode("utf-8", "replace")


class CleanStream:
    """A writable stream that passes cleaned, whole lines on to `target` (a terminal), and at most
    `budget` characters in all: a VM that prints without end does not fill the laptop's terminal."""

    def __init__(self, target: IO[str], budget: int = 256 * 1024):
        self.target, self.budget, self.pending = target, budget, ""

    def write(self, data: str) -> int:
        """Passes on each whole line, cleaned; keeps the rest until its line ends (or grows too long)."""
        self.pending += data
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            self._emit(line)
        if len(self.pending) > LINE_LIMIT:  # a line without end: shown cut, the rest dropped
            self._emit(self.pending)
            self.pending = ""
        return len(data)

    def flush(self) -> None:
        """Passes on what is left of the last line, then flushes the target."""
        if self.pending:
            self._emit(self.pending)
            self.pending = ""
        self.target.flush()

    def _emit(self, line: str) -> None:
        if self.budget <= 0:
            return
        shown = clean(line.rstrip("\r"))
        self.budget -= len(shown) + 1
        self.target.write((shown if self.budget > 0 else "… (more output from outside was dropped)") + "\n")


def read_bounded(stream: IO[bytes], limit: int = ANSWER_LIMIT) -> tuple[bytes, bool]:
    """At most `limit` bytes of a stream (read until its end, or one byte past the limit);
    (the bytes, whether there was more)."""
    data = bytearray()
    while len(data) <= limit:
        chunk = stream.read(min(65536, limit + 1 - len(data)))
        if not chunk:
            return bytes(data), False
        data += chunk
    return bytes(data[:limit]), True


def communicate_bounded(
    process: subprocess.Popen, timeout: float, limit: int = ANSWER_LIMIT
) -> tuple[bytes, bytes, bool]:
    """communicate() that keeps at most `limit` bytes of stdout and of stderr (binary pipes):
    a process sending more is ended.  (stdout, stderr, whether one said too much); raises
    subprocess.TimeoutExpired as communicate() does (the process is then still running)."""
    results: dict[str, tuple[bytes, bool]] = {}

    def drain(name: str, stream: IO[bytes]) -> None:
        results[name] = read_bounded(stream, limit)
        if results[name][1]:
            process.kill()  # enough: the rest is not read, and the sender must not block forever

    readers = [
        threading.Thread(target=drain, args=(name, stream), daemon=True)
        for name, stream in (("out", process.stdout), ("err", process.stderr))
    ]
    for reader in readers:
        reader.start()
    process.wait(timeout)
    for reader in readers:
        reader.join()
    out, too_much_out = results.get("out", (b"", False))
    err, too_much_err = results.get("err", (b"", False))
    return out, err, too_much_out or too_much_err
