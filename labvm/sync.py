"""Notebooks home: rsync over `ssh labvm-<profile>` between the host's workspace and a local
folder per profile.  Nothing local is ever deleted, and nothing local is overwritten silently.

`.labvm-sync.json` in the local folder records each file as it was after the last sync (size,
mtime).  A file that differs from that record was changed here:
  - the host's copy unchanged since  -> the local edit stays (`--push` sends it);
  - the host's copy changed as well  -> the local edit is kept as NAME.local-<time>.EXT, reported,
                                        and the host's version takes the name.
rsync's --backup-dir catches anything else a pull replaces; a replaced file that was not
exactly the last synced copy is kept the same way.  A dry run first says what would come (and
stops a sync over its size budget); when nothing would, it is the only rsync.

What the VM holds is data, never a command: paths reach the remote rsync through its protocol
(--protect-args), dot-files and dot-folders never travel, invoke's files (tasks.py, invoke.yaml, ...)
never come home (`inv` started in the folder would run them), a file over `sync_max_file` stays on
the host (said), sparse files stay sparse, and a sync that would bring more than `sync_max_total`
stops with one line.

File names are the VM's too: rsync's listing shows every control byte and every byte the locale
cannot print as \\#ooo (rsync.1, --8-bit-output), so each file is one line whatever its name;
labvm reads a name back to its bytes (os.fsdecode, as os.walk gives it), hands names to rsync
NUL-separated as bytes, and prints them only through text.clean.
"""

from __future__ import annotations

import functools
import json
import os
import re
import secrets
import shlex
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import NamedTuple

from . import platforms
from .config import Profile
from .errors import LabvmError
from .sshconfig import SshHome
from .text import clean

MANIFEST = ".labvm-sync.json"
SKIPPED_DIRS = (".*", "__pycache__", "node_modules")  # checkpoints, venvs, git: not notebooks
BACKUP_MARK = ".local-"
# What invoke loads from the folder it starts in (its collection `tasks` as module, package or
# compiled module, and its project config files): a VM's copy must never land where `inv` may run.
INVOKE_FILES = ("tasks.py", "tasks.pyc", "tasks.so", "tasks.*.so", "tasks/__init__.py*",
                "invoke.py", "invoke.pyc", "invoke.yaml", "invoke.yml", "invoke.json")


class Listed(NamedTuple):
    """One file of rsync's itemized listing: its flags (`>f+++++++++`), size, time and path."""
    flags: str
    size: int
    mtime: str
    rel: str


@dataclass
class Outcome:
    updated: list[str] = field(default_factory=list)
    unchanged: int = 0
    kept_as: dict[str, str] = field(default_factory=dict)  # local edit -> its dated backup
    local_only_changes: list[str] = field(default_factory=list)
    too_large: list[str] = field(default_factory=list)  # over sync_max_file: left where they are
    held_back: list[str] = field(default_factory=list)  # invoke's files: left on the host
    notes: list[str] = field(default_factory=list)

    def tally(self, listing: list[Listed], transferred: str) -> set[str]:
        """Counts rsync's itemized files as updated or unchanged; returns their names."""
        for entry in listing:
            if entry.flags.startswith(transferred):
                self.updated.append(entry.rel)
            else:
                self.unchanged += 1
        return {entry.rel for entry in listing}

    def lines(self, where: str, direction: str) -> list[str]:
        moved = "sent to the host" if direction == "push" else "brought home"
        lines = [f"sync: {len(self.updated)} file(s) {moved}, {self.unchanged} unchanged ({where})"]
        lines += [f"sync: your local edit of {name} was kept as {backup}; {name} is now the host's version"
                  for name, backup in self.kept_as.items()]
        if self.local_only_changes:
            lines.append(f"sync: changed here only (kept; --push sends them): {_shown(self.local_only_changes)}")
        if self.too_large:
            lines.append(f"sync: over sync_max_file, left where they are: {_shown(self.too_large)}")
        if self.held_back:
            lines.append(f"sync: left on the host, as invoke would run them from this folder: {_shown(self.held_back)}")
        # File names and rsync's messages come from the VM: each line is cleaned as a whole.
        return [clean(line) for line in lines + [f"sync: {note}" for note in self.notes]]


OVER_MAX_SIZE = b" is over max-size"  # rsync's --info=skip1 line for a file --max-size left out
RSYNC_ESCAPE = re.compile(rb"\\#([0-3][0-7]{2})")  # a byte rsync would not print (rsync.1, --8-bit-output)


class _NoWorkspace(Exception):
    """The workspace folder does not exist on the host (yet)."""


class NotebookSync:
    def __init__(self, profile: Profile, ssh: SshHome):
        self.profile = profile
        self.local = profile.sync_dir
        self.manifest_path = self.local / MANIFEST
        ssh_command = ssh.ssh_command(profile, "-o", "BatchMode=yes", "-o", "ConnectTimeout=10")
        self.ssh_command = shlex.join(ssh_command[:-1])
        workspace = profile.notebook.workspace
        # rsync's path on the host: relative to the login directory, so ~ needs no shell.
        remote = workspace[2:] if workspace.startswith("~/") else "." if workspace == "~" else workspace
        self.remote = f"{profile.alias}:{remote.rstrip('/')}/"
        # Starts each line of rsync's listing: a file name the VM chose before this sync cannot
        # hold it, so no name makes a listing line of its own or hides one as a skip message.
        self.listed_mark = f"labvm-{secrets.token_hex(8)}|".encode()

    # -- the two directions ------------------------------------------------------------------

    def pull(self) -> Outcome:
        self.local.mkdir(parents=True, exist_ok=True)
        try:
            return self._pull()
        except _NoWorkspace:
            return Outcome(notes=[f"{self.profile.notebook.workspace} is not on the host yet; nothing to bring home"])

    def _pull(self) -> Outcome:
        with self._lock():
            record = self._read_manifest()
            changed = [rel for rel, stat in self._scan().items() if record.get(rel, [None, None])[:2] != stat]
            outcome = Outcome()
            conflicts, identical = self._compare_with_host(changed, record, outcome) if changed else (set(), set())
            stamp = time.strftime("%Y%m%d-%H%M%S")
            for rel in sorted(conflicts):
                outcome.kept_as[rel] = self._keep_aside(rel, stamp)
            # Local edits of files the host did not change: never pulled over.
            keep = [rel for rel in changed if rel not in conflicts and rel not in identical]
            outcome.local_only_changes = sorted(rel for rel in keep if rel in record and not record[rel][2:])
            with tempfile.TemporaryDirectory(dir=self.local, prefix=".labvm-sync-replaced-") as replaced:
                excluded = Path(replaced) / ".labvm-sync-keep"
                excluded.write_bytes(b"".join(os.fsencode(_anchored(rel)) + b"\0" for rel in keep))
                options = ["-ii", "--from0", f"--exclude-from={excluded}"]
                listing = self._preview(options, outcome)
                try:
                    if any(entry.flags.startswith(">f") for entry in listing):  # else one rsync was enough
                        listing = self._rsync(
                            [*options, f"--backup-dir={replaced}", "--backup"],
                            self.remote, f"{self.local}/", outcome, budget=self.profile.sync_max_total,
                        )
                finally:  # even when rsync broke off: what it replaced must not go with the folder
                    for rel in _files_under(Path(replaced)):
                        if record.get(rel) != self._stat_of(Path(replaced) / rel) or record[rel][2:]:
                            outcome.kept_as[rel] = self._keep_aside(rel, stamp, Path(replaced) / rel)
            self._write_manifest(record, keep, identical | outcome.tally(listing, ">f"))
        outcome.too_large = sorted(set(outcome.too_large))
        return outcome

    def _preview(self, options: list[str], outcome: Outcome) -> list[Listed]:
        """What the pull would bring, before it brings anything (the listing, invoke's files left
        out): invoke's files among it are named (the pull leaves them on the host), and more than
        sync_max_total stops it here."""
        listing = self._rsync(["--dry-run", *options], self.remote, f"{self.local}/", outcome,
                              filters=self._filters(hold_back_invoke_files=False))
        outcome.held_back = sorted(entry.rel for entry in listing
                                   if entry.flags.startswith(">f") and _is_invoke_file(entry.rel))
        listing = [entry for entry in listing if not _is_invoke_file(entry.rel)]
        total = sum(entry.size for entry in listing if entry.flags.startswith(">f"))
        if total > self.profile.sync_max_total:
            raise LabvmError(
                f"sync: the host offers {_megabytes(total)}, more than sync_max_total "
                f"({_megabytes(self.profile.sync_max_total)}); nothing was copied; narrow sync: or raise "
                f"{self.profile.key('sync_max_total')}"
            )
        return listing

    def push(self) -> Outcome:
        if not self.local.is_dir():
            raise LabvmError(f"sync: nothing to push; {self.local} does not exist yet (`inv sync` fills it)")
        with self._lock():
            record = self._read_manifest()
            # --update: a file that is newer on the host is left alone there.
            outcome = Outcome()
            listing = self._rsync(["-ii", "--update", f"--exclude=*{BACKUP_MARK}[0-9]*"], f"{self.local}/",
                                  self.remote, outcome)
            sent = outcome.tally(listing, "<f")
            current = self._scan()
            record.update({rel: current[rel] for rel in sent if rel in current})
            self._save(record)
        return outcome

    # -- rsync ---------------------------------------------------------------------------

    def _filters(self, hold_back_invoke_files: bool = True) -> list[str]:
        """rsync's rules: no dot-file or dot-folder (rsync's * matches a leading dot, so a pattern
        like *rc would reach .bashrc), no invoke file, then the sync patterns."""
        rules = _safe_rules() + [f"--exclude={name}" for name in INVOKE_FILES if hold_back_invoke_files]
        rules += ["--include=*/"] + [f"--include={pattern}" for pattern in self.profile.sync_patterns]
        return rules + ["--exclude=*"]

    def _rsync(self, options: list[str], source: str, destination: str, outcome: Outcome,
               filters: list[str] | None = None, budget: int = 0) -> list[Listed]:
        """Runs rsync; returns each file it listed.
        budget: bytes the files it transfers may hold in all (0: no limit); past it rsync is ended
        (a host that grows its files after the preview: rsync reports a file once it has it)."""
        # -S: runs of zeros become holes, so a sparse file stays sparse here; safe because labvm never
        # uses --inplace (rsync.1, --sparse: rsync truncates and rewrites the file).
        command = [
            "rsync", "-rtS", *_rsync_options(), f"--max-size={self.profile.sync_max_file}",
            "--prune-empty-dirs", self._out_format(), "-e", self.ssh_command,
            *options, *(self._filters() if filters is None else filters), source, destination,
        ]
        return self._run(command, outcome, budget=budget)

    def _out_format(self) -> str:
        return f"--out-format={self.listed_mark.decode()}%i|%l|%M|%n"

    def _parse(self, line: bytes, outcome: Outcome) -> Listed | None:
        """A file of rsync's listing (None for a folder or a message); a file --max-size left out
        joins outcome.too_large.  %n is last, so a | in a name stays in the name."""
        if not line.startswith(self.listed_mark):
            if line.endswith(OVER_MAX_SIZE):
                outcome.too_large.append(_name(line[: -len(OVER_MAX_SIZE)]))
            return None
        flags, size, mtime, rel = (line[len(self.listed_mark):].split(b"|", 3) + [b"", b"", b""])[:4]
        if flags[1:2] != b"f":
            return None
        return Listed(flags.decode("ascii", "replace"), _size(size.decode("ascii", "replace")),
                      mtime.decode("ascii", "replace"), _name(rel))

    def _run(self, command: list[str], outcome: Outcome, names_may_be_missing: bool = False,
             budget: int = 0) -> list[Listed]:
        """The files rsync lists, read as they come: a sync past `budget` bytes is ended there."""
        if not shutil.which("rsync"):
            raise LabvmError("sync needs rsync on this machine; install it (apt-get install rsync / brew install rsync)")
        listing, moved = [], 0
        with tempfile.TemporaryFile("w+", errors="replace") as stderr, subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.DEVNULL) as process:
            for line in process.stdout:
                entry = self._parse(line.rstrip(b"\n"), outcome)
                if entry is None:
                    continue
                listing.append(entry)
                moved += entry.size if entry.flags[:2] in (">f", "<f") else 0
                if budget and moved > budget:
                    process.terminate()  # not kill: rsync removes its half-written temporary file
                    raise LabvmError(self._over_budget(moved))
            process.wait()
            stderr.seek(0)
            result = subprocess.CompletedProcess(command, process.returncode, "", stderr.read())
        if "change_dir" in result.stderr and "No such file or directory" in result.stderr:
            raise _NoWorkspace
        if result.returncode == 23 and not names_may_be_missing:  # some files could not be read: say which
            problems = [line for line in result.stderr.splitlines() if line.startswith("rsync:")]
            outcome.notes += [f"not transferred: {line}" for line in problems[:5]]
        elif result.returncode not in (0, 23, 24):  # 24: a file vanished on the host while listing
            raise LabvmError(self._explain(result))
        return listing

    def _over_budget(self, moved: int) -> str:
        return (f"sync: stopped after {_megabytes(moved)} from the host, more than sync_max_total "
                f"({_megabytes(self.profile.sync_max_total)}); what came is in {self.local}, the rest stays on "
                f"the host; raise {self.profile.key('sync_max_total')} to bring it home")

    def _explain(self, result: subprocess.CompletedProcess) -> str:
        lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
        last = clean(lines[-1]) if lines else f"exit status {result.returncode}"  # the host's words
        if "command not found" in result.stderr or result.returncode == 127:
            return "sync: rsync is not installed on the host; install it there (sudo apt-get install rsync)"
        if result.returncode == 255 or any(line.startswith(("ssh:", "Connection")) for line in lines):
            return (f"sync: cannot reach {self.profile.alias} ({last}); "
                    f"your local copies in {self.local} are safe; `inv up --host {self.profile.name}` starts the VM")
        if result.returncode in (10, 12, 20, 30, 35):
            return f"sync: the connection to the host broke ({last}); your local copies in {self.local} are safe"
        return f"sync: rsync failed ({last})"

    def _compare_with_host(self, changed: list[str], record: dict, outcome: Outcome) -> tuple[set[str], set[str]]:
        """Of the files changed here: those whose host copy changed too (or was never synced),
        and those the host holds an identical copy of."""
        with tempfile.NamedTemporaryFile("wb", dir=self.local, prefix=".labvm-sync-list-") as names:
            names.write(b"\0".join(os.fsencode(rel) for rel in changed))
            names.flush()
            command = [
                "rsync", "-rt", *_rsync_options(), "--dry-run", "-ii", "--from0", f"--files-from={names.name}",
                self._out_format(), "-e", self.ssh_command, self.remote, f"{self.local}/",
            ]
            listing = self._run(command, outcome, names_may_be_missing=True)
        conflicts, identical, asked = set(), set(), set(changed)
        for entry in listing:
            if entry.rel not in asked:  # only what was asked: a name from the host is never a local path
                continue
            synced = record.get(entry.rel)
            if entry.flags.startswith("."):
                identical.add(entry.rel)
            elif not synced or synced[2:] or [entry.size, entry.mtime] != [synced[0], _rsync_time(synced[1])]:
                conflicts.add(entry.rel)
        return conflicts, identical

    # -- local state ---------------------------------------------------------------------

    def _keep_aside(self, rel: str, stamp: str, current: Path | None = None) -> str:
        """Moves the local version of rel to NAME.local-STAMP.EXT beside it; returns that name."""
        target = self.local / rel
        source = current or target
        backup = target.with_name(f"{target.stem}{BACKUP_MARK}{stamp}{target.suffix}")
        n = 1
        while backup.exists():
            n += 1
            backup = target.with_name(f"{target.stem}{BACKUP_MARK}{stamp}-{n}{target.suffix}")
        os.replace(source, backup)
        return str(backup.relative_to(self.local))

    def _scan(self) -> dict[str, list[int]]:
        found = {}
        for rel in _files_under(self.local):
            if any(fnmatch(Path(rel).name, p) for p in self.profile.sync_patterns):
                found[rel] = self._stat_of(self.local / rel)
        return found

    @staticmethod
    def _stat_of(path: Path) -> list[int]:
        stat = path.stat()
        return [stat.st_size, stat.st_mtime_ns]

    def _read_manifest(self) -> dict[str, list]:
        try:
            return json.loads(self.manifest_path.read_text())
        except (OSError, ValueError):
            return {}

    def _write_manifest(self, record: dict, edited: list[str], on_host: set[str]) -> None:
        """Every local file as it is now, a file the host lacks marked local-only; a local edit
        keeps its old entry, so it still shows as changed here."""
        updated = {}
        for rel, stat in self._scan().items():
            if rel in edited and rel in record and not record[rel][2:]:
                updated[rel] = record[rel]
            else:
                updated[rel] = stat if rel in on_host else [*stat, "local"]
        self._save(updated)

    def _save(self, record: dict) -> None:
        tmp = self.manifest_path.with_name(MANIFEST + ".tmp")
        tmp.write_text(json.dumps(record, sort_keys=True))
        os.replace(tmp, self.manifest_path)

    def _lock(self):
        """One sync at a time per folder (a --watch and a `down` may meet)."""
        return platforms.file_lock(self.local / ".labvm-sync.lock")


def _shown(names: list[str]) -> str:
    return ", ".join(names[:5]) + (" ..." if len(names) > 5 else "")


def _safe_rules() -> list[str]:
    """Filter rules first in every rsync: nothing hidden (.ssh, .aws, .bashrc; checkpoints, git),
    no caches or node_modules."""
    return ["--exclude=.*"] + [f"--exclude={name}/" for name in SKIPPED_DIRS if name != ".*"]


@functools.lru_cache(maxsize=None)
def _rsync_options() -> tuple[str, ...]:
    """rsync's -s where the local rsync has it: paths go to the remote rsync through the protocol,
    never through the remote shell, whatever RSYNC_OLD_ARGS / RSYNC_PROTECT_ARGS say (an explicit
    option overrides them). -s is --protect-args from rsync 3.0.0, named --secluded-args since 3.2.6
    (rsync.1, "--secluded-args, -s": https://download.samba.org/pub/rsync/rsync.1, and
    https://github.com/RsyncProject/rsync/blob/master/rsync.1.md). macOS's rsync 2.6.9 predates it
    and openrsync's options have none (https://github.com/kristapsdz/openrsync/blob/master/openrsync.1):
    there the remote shell reads the path, and config.py's workspace check (plain characters only)
    is what keeps it a path. Also --info=skip1 (3.1.0+), so a file --max-size leaves out is named;
    --max-size (2.6.4+) and --sparse are in 2.6.9 as well."""
    try:
        help_text = subprocess.run(["rsync", "--help"], capture_output=True, text=True, stdin=subprocess.DEVNULL).stdout
    except OSError:
        return ()
    protect = ["-s"] if ("--protect-args" in help_text or "--secluded-args" in help_text) else []
    return tuple(protect + (["--info=skip1"] if "--info=" in help_text else []))


def _name(shown: bytes) -> str:
    """A path as rsync's listing shows it, back to the name on disk (undecodable bytes kept as
    os.fsdecode keeps them, so it equals what os.walk finds); a literal \\#ddd in a name rsync
    shows with its backslash escaped, so reading every \\#ooo back is exact."""
    return os.fsdecode(RSYNC_ESCAPE.sub(lambda escape: bytes([int(escape[1], 8)]), shown))


def _size(text: str) -> int:
    """rsync's %l (digits, grouped with , or . where the locale says so)."""
    digits = text.replace(",", "").replace(".", "")
    return int(digits) if digits.isdigit() else 0


def _is_invoke_file(rel: str) -> bool:
    """rel matches an INVOKE_FILES rule as rsync reads it (a pattern with / matches the path's end)."""
    return any(fnmatch(rel, name) or fnmatch(rel, f"*/{name}") for name in INVOKE_FILES)


def _megabytes(size: int) -> str:
    return f"{size / 2**20:.1f} MB"


def _files_under(root: Path) -> list[str]:
    files = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if not any(fnmatch(d, skip) for skip in SKIPPED_DIRS)]
        base = Path(folder).relative_to(root)
        files += [str(base / name) if str(base) != "." else name for name in names if not name.startswith(".labvm-sync")]
    return files


def _anchored(rel: str) -> str:
    """An rsync rule matching exactly this path from the top (wildcards escaped)."""
    name = "/" + rel
    if any(c in name for c in "*?["):
        name = "".join("\\" + c if c in "*?[\\" else c for c in name)
    return name


def _rsync_time(mtime_ns: int) -> str:
    """A file time as rsync's %M shows it (local time, whole seconds)."""
    return time.strftime("%Y/%m/%d-%H:%M:%S", time.localtime(mtime_ns // 1_000_000_000))
