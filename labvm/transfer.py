"""Datasets in and out: `inv put LOCAL [REMOTE]` sends a file or folder into a folder on the VM,
`inv get REMOTE [LOCAL]` brings one into a folder here, by rsync over `ssh labvm-<profile>` with a
progress line (bytes, rate, time left).

Never overwritten silently: a dry run first lists what would travel; a file that exists at the
destination with other content is not sent (rsync's --ignore-existing is the guarantee, the dry run
is what the user reads: each such file named, and how to send it).  A file the same on both sides
(same size and time, or same checksum) is "unchanged".  The free space at the destination is asked
before a byte is sent (the VM's `df -Pk`, this machine's disk usage).

Resumable: rsync keeps what a broken transfer had in .labvm-partial beside the file (--partial-dir,
not --partial: with --partial the half file would sit under the real name, where the next run's
--ignore-existing, and the user, would take it for the whole file); the next run sends only the rest.

As for `inv sync` (labvm.sync): only an rsync this machine can trust with a VM's data
(sync.local_rsync), paths to the remote rsync through its protocol (-s), no dot-file or dot-folder
either way (.env, .ssh: put never sends the laptop's secrets), and a get brings no invoke file
(tasks.py, ...: `inv` started in that folder would run it), no symlink, device or owner of the VM's.
While the profile's tunnel is up the transfer rides its login (Tunnels.shared_connection).
"""

from __future__ import annotations

import io
import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import IO, NamedTuple

from .config import Profile
from .errors import LabvmError
from .sshconfig import SshHome
from .sync import BROKE, NO_RSYNC, RSYNC_ESCAPE, SAFE_RSYNC_SHOWN, UNREACHED, local_rsync, rsync_failure, ssh_login
from .sync_rules import INVOKE_FILES
from .text import clean

PARTIAL_DIR = ".labvm-partial"  # relative: rsync keeps it beside each file, and leaves it out of every transfer
PROGRESS_EVERY = 5.0  # seconds between progress lines where the output is not a terminal
ANSWER_TIMEOUT = 60  # seconds the VM has to say its free space
LISTING_LIMIT = 1_000_000  # files one transfer may list: a VM that lists without end is stopped there
SHOWN_NAMES = 10  # names shown in one line; the rest counted
# rsync's --info=progress2 line: bytes so far, percent, rate, time, then (xfr#N, to-chk=N/N) once a file is done.
PROGRESS2 = re.compile(rb" *(\d[\d,.]{0,30}) +\d{1,3}% +[\d.,]{1,20}[kMGTP]?B/s +\d{1,6}:\d\d:\d\d(?: \(.{0,80}\))? *")
DF_LINE = re.compile(r"\S.{0,4000}? +\d{1,20} +\d{1,20} +(\d{1,20}) +\d{1,3}% +/.{0,4000}")
# Finds the destination folder or its nearest existing parent on the VM and asks its free space.
FREE_SPACE = 'for d in "$@"; do if [ -d "$d" ]; then exec df -Pk -- "$d"; fi; done; exit 3'


_MOVES = "<>"  # rsync's first flag for a file it would send (<, a put) or receive (>, a get)


class Listed(NamedTuple):
    """One file of the dry run's listing: rsync's flags (`>f+++++++++`), its size and its path."""

    flags: str
    size: int
    rel: str


class Plan(NamedTuple):
    """What a transfer would do, from the dry run: files to send, files that differ there, files the same."""

    sending: list[Listed]
    differ: list[str]
    unchanged: int

    @property
    def size(self) -> int:
        """Bytes the files to send hold."""
        return sum(entry.size for entry in self.sending)


class Transfer:
    """One put or get for one profile over ssh (its own login, or the tunnel's when `shared` is given)."""

    def __init__(self, profile: Profile, ssh: SshHome, shared: Path | None = None):
        self.profile = profile
        self.ssh_argv = ssh_login(profile, ssh, shared)
        self.rsync = local_rsync()
        # Starts each line of the dry run's listing: no file name the VM chose before can hold it.
        self.mark = f"labvm-{secrets.token_hex(8)}|".encode()

    # -- the two directions ------------------------------------------------------------------

    def put(self, local: str, remote: str) -> None:
        """LOCAL (a file or folder here) into the folder REMOTE on the VM (default: the data folder)."""
        source = _local_source(local)
        folder = remote_path(remote or self.default_remote(), "put")
        self._need_rsync("put")
        destination = f"{self.profile.alias}:{folder}/"
        asking = self._ask_free_space(folder)  # while the dry run lists: one login's wait instead of two
        try:
            plan = self._plan(str(source), f"{source.parent}/", destination, ["-a", "--mkpath"], "put")
            if plan.sending:
                self._check_remote_space(folder, plan.size, asking)
        finally:
            _end(asking)
        if plan.sending:
            self._rsync(["-a", "--mkpath"], str(source), destination, plan.size, "put")
        self._report(plan, "put", f"sent to {self.profile.alias}:{folder}", "on the VM", self._put_hint())

    def get(self, remote: str, local: str) -> None:
        """REMOTE (a file or folder on the VM) into the folder LOCAL here (default: the profile's sync folder)."""
        path = remote_path(remote, "get")
        if path in (".", "/"):
            raise LabvmError(f"get: {remote!r} is a whole home or disk; name the file or folder to bring")
        folder = Path(local).expanduser() if local else self.profile.sync_dir
        self._need_rsync("get")
        parent = str(PurePosixPath(path).parent)
        source = f"{self.profile.alias}:{path}"
        plan = self._plan(source, f"{self.profile.alias}:{parent}/", f"{folder}/", _GET_OPTIONS, "get")
        _check_local_space(folder, plan.size)
        if plan.sending:
            folder.mkdir(parents=True, exist_ok=True)
            self._rsync(_GET_OPTIONS, source, f"{folder}/", plan.size, "get")
        hint = f"move or rename them in {folder}, or get into another LOCAL"
        self._report(plan, "get", f"brought into {folder}", "here", hint)

    def default_remote(self) -> str:
        """Where a put goes without REMOTE: the data volume's folder, else Jupyter's workspace."""
        return self.profile.data_mount if self.profile.data else self.profile.notebook.workspace

    def _put_hint(self) -> str:
        return f"move or rename them on the VM (`inv ssh --host {self.profile.name}`), or put into another REMOTE"

    def _need_rsync(self, verb: str) -> None:
        """Only an rsync labvm trusts with a VM's data moves it (sync.local_rsync says why)."""
        if not self.rsync.usable:
            found = self.rsync.summary() if self.rsync.path else "none is on PATH"
            raise LabvmError(
                f"{verb} needs rsync {SAFE_RSYNC_SHOWN}+ on this machine ({found}); install it "
                f"(`brew install rsync`, your distribution's rsync {SAFE_RSYNC_SHOWN}+, or on Windows WSL's), "
                f"or copy by hand with `scp -r` over `ssh {self.profile.alias}`"
            )

    # -- what would travel -------------------------------------------------------------------

    def _plan(self, source: str, base: str, destination: str, options: list[str], verb: str) -> Plan:
        """The dry run: every file flagged against the destination.  A file there with the same size
        but another time is compared by checksum (only those: a first put of 1 GiB reads it once)."""
        listing = self._list([*options, "--dry-run"], source, destination, verb)
        moving = [entry for entry in listing if entry.flags[:1] in _MOVES]
        sending = [entry for entry in moving if entry.flags[2:11] == "+++++++++"]
        # There already: another size differs for sure; the same size with another time may be the same bytes.
        differ = [entry.rel for entry in moving if entry.flags[2:11] != "+++++++++" and entry.flags[3:4] == "s"]
        same_size = [entry.rel for entry in moving if entry.flags[2:11] != "+++++++++" and entry.flags[3:4] != "s"]
        unchanged = len(listing) - len(moving)
        if same_size:
            with tempfile.NamedTemporaryFile("wb", prefix="labvm-transfer-", delete=False) as names:
                names.write(b"".join(os.fsencode(rel) + b"\0" for rel in same_size))
            try:
                checked = self._list(
                    [*options, "--dry-run", "--checksum", "--from0", f"--files-from={names.name}"],
                    base,
                    destination,
                    verb,
                )
            finally:
                os.unlink(names.name)
            still = {entry.rel for entry in checked if entry.flags[:1] in _MOVES}
            differ += [rel for rel in same_size if rel in still]
            unchanged += sum(rel not in still for rel in same_size)
        return Plan(sending, sorted(differ), unchanged)

    def _list(self, options: list[str], source: str, destination: str, verb: str) -> list[Listed]:
        """The files rsync lists (its itemized listing, each line marked), at most LISTING_LIMIT."""
        command = self._command([*options, "-ii", f"--out-format={self.mark.decode()}%i|%l|%n"], source, destination)
        listing: list[Listed] = []
        with (
            tempfile.TemporaryFile("w+", errors="replace") as stderr,
            subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.DEVNULL) as process,
        ):
            assert process.stdout is not None  # for mypy: stdout=PIPE
            for line in process.stdout:
                entry = self._parse(line.rstrip(b"\n"))
                if entry is not None:
                    listing.append(entry)
                if len(listing) > LISTING_LIMIT:
                    process.terminate()
                    raise LabvmError(
                        f"{verb}: more than {LISTING_LIMIT:,} files; nothing was copied; name a smaller folder"
                    )
            process.wait()
            self._check(process.returncode, stderr, verb, source)
        return listing

    def _parse(self, line: bytes) -> Listed | None:
        """A file of the listing (None for a folder, a link or a message).  %n is last, so a | in a
        name stays in the name; the name is shown only through text.clean."""
        if not line.startswith(self.mark):
            return None
        flags, size, rel = (line[len(self.mark) :].split(b"|", 2) + [b"", b""])[:3]
        if flags[1:2] != b"f":
            return None
        digits = size.replace(b",", b"").replace(b".", b"")
        shown = os.fsdecode(RSYNC_ESCAPE.sub(lambda escape: bytes([int(escape[1], 8)]), rel))
        return Listed(flags.decode("ascii", "replace"), int(digits) if digits.isdigit() else 0, shown)

    # -- free space ----------------------------------------------------------------------------

    def _ask_free_space(self, folder: str) -> subprocess.Popen:
        """The VM's `df -Pk` of the destination, or of its nearest parent that exists, asked now."""
        candidates = [folder, *(str(parent) for parent in PurePosixPath(folder).parents)]
        command = shlex.join(
            ["sh", "-c", FREE_SPACE, "sh", *[c if c.startswith("/") else f"./{c}" for c in candidates]]
        )
        return subprocess.Popen(
            [*self.ssh_argv, command], stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL
        )

    def _check_remote_space(self, folder: str, size: int, asking: subprocess.Popen) -> None:
        """Refuses a put larger than the free space of the VM's disk that would hold it (its answer
        read bounded, within ANSWER_TIMEOUT seconds)."""
        timer = threading.Timer(ANSWER_TIMEOUT, asking.kill)
        timer.start()
        try:
            out, err = asking.stdout.read(8192), asking.stderr.read(8192)  # type: ignore[union-attr]
            asking.wait()
        finally:
            timer.cancel()
        if asking.returncode == 255:
            raise LabvmError(self._cannot_reach(err.decode("utf-8", "replace")))
        free = _free_kib(out.decode("utf-8", "replace"))
        if free is None:
            said = clean((out + err)[:200].decode("utf-8", "replace"))
            raise LabvmError(
                f"put: the VM's free space in {folder} could not be read (`df -Pk` said {said!r}); nothing was sent"
            )
        if size > free * 1024:
            raise LabvmError(
                f"put: {_bytes(size)} to send but the VM has {_bytes(free * 1024)} free in {folder}; "
                f"nothing was sent; {self._grow_hint()}"
            )

    def _grow_hint(self) -> str:
        if self.profile.data:
            return f"`inv data --grow SIZE --host {self.profile.name}` enlarges the data volume, or put a smaller set"
        return f"free some space there (`inv ssh --host {self.profile.name}`), or put a smaller set"

    # -- the transfer --------------------------------------------------------------------------

    def _command(self, options: list[str], source: str, destination: str) -> list[str]:
        return [
            self.rsync.path or "rsync",
            "-s",  # paths reach the remote rsync through its protocol, never its shell
            *options,
            "-e",
            shlex.join(self.ssh_argv[:-1]),
            *[f"--exclude={name}" for name in (".*", *INVOKE_FILES)],
            source,
            destination,
        ]

    def _rsync(self, options: list[str], source: str, destination: str, total: int, verb: str) -> None:
        """The transfer itself, resumable, nothing replaced, with labvm's progress line."""
        command = self._command(
            [*options, f"--partial-dir={PARTIAL_DIR}", "--ignore-existing", "--info=progress2"], source, destination
        )
        progress = Progress(verb, total)
        with (
            tempfile.TemporaryFile("w+", errors="replace") as stderr,
            subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.DEVNULL) as process,
        ):
            assert process.stdout is not None  # for mypy: stdout=PIPE
            try:
                for moved in progress_of(process.stdout):  # type: ignore[arg-type]
                    progress.show(moved)
            except BaseException:  # Ctrl-C: rsync ends keeping what it had in PARTIAL_DIR
                process.terminate()
                process.wait()
                progress.end()
                raise
            process.wait()
            progress.end()
            self._check(process.returncode, stderr, verb)

    def _check(self, returncode: int, stderr: IO[str], verb: str, source: str = "") -> None:
        """rsync's failure in one line (its last line is the VM's words: cleaned); source: what the
        dry run lists, named when it is not there."""
        if returncode in (0, 24):  # 24: a file vanished while listing
            return
        stderr.seek(0)
        text = stderr.read(1 << 20)
        kind, last = rsync_failure(returncode, text)
        missing = "No such file or directory" in text and ("link_stat" in text or "change_dir" in text)
        if source and returncode == 23 and missing:  # the file, or a folder on its way, is not there
            raise LabvmError(f"{verb}: {clean(source)} does not exist; nothing was copied")
        if kind == NO_RSYNC:
            raise LabvmError(f"{verb}: rsync is not installed on the VM; install it there (sudo apt-get install rsync)")
        if kind == UNREACHED:
            raise LabvmError(self._cannot_reach(last))
        if kind == BROKE:
            raise LabvmError(f"{verb}: the connection broke ({last}); run the same command again to resume")
        if returncode == 23:
            lines = [line for line in text.strip().splitlines() if line.strip()]
            problems = [clean(line) for line in lines if line.startswith("rsync:")][:3]
            raise LabvmError(f"{verb}: some files could not be copied: {'; '.join(problems) or last}")
        raise LabvmError(f"{verb}: rsync failed ({last})")

    def _cannot_reach(self, last: str) -> str:
        lines = [line for line in last.strip().splitlines() if line.strip()]
        return (
            f"cannot reach {self.profile.alias} ({clean(lines[-1]) if lines else 'no answer'}); nothing was copied; "
            f"`inv up --host {self.profile.name}` starts the VM"
        )

    def _report(self, plan: Plan, verb: str, done: str, there: str, hint: str) -> None:
        """What was sent and what was the same; then each file left alone because it differs there,
        as the task's error (exit 1: a script must not go on with a dataset that did not all arrive)."""
        print(
            f"{verb}: {len(plan.sending)} file(s) {done} ({_bytes(plan.size)}), {plan.unchanged} unchanged", flush=True
        )
        if plan.differ:
            shown = ", ".join(clean(rel) for rel in plan.differ[:SHOWN_NAMES])
            more = f" and {len(plan.differ) - SHOWN_NAMES} more" if len(plan.differ) > SHOWN_NAMES else ""
            raise LabvmError(
                f"{verb}: {len(plan.differ)} file(s) not copied, they differ {there} (kept as they are): "
                f"{shown}{more}; to copy them, {hint}"
            )


# get: files only as data (no symlink, device, permissions or owner the VM chose), times kept.
_GET_OPTIONS = ["-rt"]


class Progress:
    """labvm's one progress line: redrawn in place on a terminal, a line every PROGRESS_EVERY seconds elsewhere."""

    def __init__(self, verb: str, total: int):
        self.verb, self.total = verb, total
        self.started = time.monotonic()
        self.last_line = self.started
        self.terminal = sys.stdout.isatty()
        self.drawn = False

    def show(self, moved: int) -> None:
        """Bytes moved so far (rsync's count: a resumed file's kept part counts as moved)."""
        now = time.monotonic()
        if not self.terminal and now - self.last_line < PROGRESS_EVERY:
            return
        self.last_line = now
        rate = moved / max(now - self.started, 1e-3)
        left = max(self.total - moved, 0) / rate if rate else 0
        share = f" of {_bytes(self.total)} ({min(100, moved * 100 // self.total)}%)" if self.total else ""
        line = f"{self.verb}: {_bytes(moved)}{share}, {_bytes(int(rate))}/s, {_duration(left)} left"
        if self.terminal:
            print(f"\r{line:<78}", end="", flush=True)
            self.drawn = True
        else:
            print(line, flush=True)

    def end(self) -> None:
        """The terminal's redrawn line ends, so the next line starts clean."""
        if self.drawn:
            print(flush=True)
            self.drawn = False


def progress_of(stream: io.BufferedReader) -> Iterator[int]:
    """Bytes so far from each of rsync's progress2 lines on `stream` (split at \\r and \\n, each
    piece bounded; a piece that is not such a line is skipped, never an error)."""
    pending = b""
    while chunk := stream.read1(65536):
        pieces = re.split(rb"[\r\n]", pending + chunk)
        pending = pieces.pop()[-1024:]  # an unfinished piece; a run without end is cut, not kept
        for piece in pieces:
            moved = _progress2_bytes(piece)
            if moved is not None:
                yield moved


def _progress2_bytes(piece: bytes) -> int | None:
    found = PROGRESS2.fullmatch(piece[:256])
    if found is None:
        return None
    digits = found[1].replace(b",", b"").replace(b".", b"")
    return int(digits) if digits.isdigit() else None


# -- paths and sizes --------------------------------------------------------------------------------


def remote_path(text: str, verb: str) -> str:
    """A path on the VM as rsync and df take it: relative to the login folder when it starts with ~/
    (so ~ needs no shell); refused in one line with a control character or a `..` part."""
    if not text or len(text) > 4096 or any(ord(c) < 32 or 127 <= ord(c) < 160 for c in text):
        raise LabvmError(f"{verb}: {clean(text)!r} is not a path on the VM (no control characters, at most 4096)")
    if ".." in text.split("/"):
        raise LabvmError(f"{verb}: {clean(text)!r} holds '..'; name the folder on the VM without it (~/data/set)")
    path = text[2:] if text.startswith("~/") else "." if text == "~" else text
    return path.rstrip("/") or ("/" if text.startswith("/") else ".")


def _local_source(local: str) -> Path:
    """What a put sends: an existing file or folder here, not a hidden one (put never sends .env or .ssh)."""
    path = Path(local).expanduser()
    if not path.exists():
        raise LabvmError(f"put: {clean(local)} is not a file or folder on this machine")
    path = path.resolve()
    if path.name.startswith(".") or not path.name:
        raise LabvmError(
            f"put: {clean(local)} is hidden (or a whole disk); labvm sends no dot-file; copy it under another name"
        )
    return path


def _end(process: subprocess.Popen) -> None:
    """A question to the VM no longer needed (or already answered) ended and reaped."""
    if process.poll() is None:
        process.kill()
    process.communicate()


def _check_local_space(folder: Path, size: int) -> None:
    """Refuses a get larger than the free space of the disk here that would hold it."""
    existing = next((parent for parent in (folder, *folder.parents) if parent.is_dir()), Path.cwd())
    free = shutil.disk_usage(existing).free
    if size > free:
        raise LabvmError(
            f"get: {_bytes(size)} to bring but this machine has {_bytes(free)} free in {existing}; "
            f"nothing was copied; free some space or get a smaller set"
        )


def _free_kib(answer: str) -> int | None:
    """Available KiB from `df -Pk`'s answer: a header and exactly one line (POSIX's format), else None."""
    lines = answer.strip("\n").split("\n")
    if len(lines) != 2 or not lines[0].startswith("Filesystem"):
        return None
    found = DF_LINE.fullmatch(lines[1])
    return int(found[1]) if found else None


def _bytes(size: int) -> str:
    for unit, scale in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


def _duration(seconds: float) -> str:
    seconds = int(min(seconds, 359999))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
