"""Notebooks home: rsync over `ssh labvm-<profile>` between the host's workspace and a local
folder per profile.  Nothing local is ever deleted, and nothing local is overwritten silently.

`.labvm-sync.json` in the local folder records each file as it was after the last sync (size,
mtime).  A file that differs from that record was changed here:
  - the host's copy unchanged since  -> the local edit stays (`--push` sends it);
  - the host's copy changed as well  -> the local edit is kept as NAME.local-<time>.EXT, reported,
                                        and the host's version takes the name.
rsync's --backup-dir catches anything else a pull replaces; a replaced file that was not
exactly the last synced copy is kept the same way.  One rsync in the usual case.
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path

from .config import Profile
from .errors import LabvmError
from .sshconfig import SshHome

MANIFEST = ".labvm-sync.json"
SKIPPED_DIRS = (".*", "__pycache__", "node_modules")  # checkpoints, venvs, git: not notebooks
BACKUP_MARK = ".local-"


@dataclass
class Outcome:
    updated: list[str] = field(default_factory=list)
    unchanged: int = 0
    kept_as: dict[str, str] = field(default_factory=dict)  # local edit -> its dated backup
    local_only_changes: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def tally(self, listing: list[tuple[str, str]], transferred: str) -> set[str]:
        """Counts rsync's itemized files as updated or unchanged; returns their names."""
        for flags, rel in listing:
            if flags.startswith(transferred):
                self.updated.append(rel)
            else:
                self.unchanged += 1
        return {rel for _, rel in listing}

    def lines(self, where: str, direction: str) -> list[str]:
        moved = "sent to the host" if direction == "push" else "brought home"
        lines = [f"sync: {len(self.updated)} file(s) {moved}, {self.unchanged} unchanged ({where})"]
        lines += [f"sync: your local edit of {name} was kept as {backup}; {name} is now the host's version"
                  for name, backup in self.kept_as.items()]
        if self.local_only_changes:
            shown = ", ".join(self.local_only_changes[:5]) + (" ..." if len(self.local_only_changes) > 5 else "")
            lines.append(f"sync: changed here only (kept; --push sends them): {shown}")
        return lines + [f"sync: {note}" for note in self.notes]


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
                excluded.write_text("".join(_anchored(rel) + "\0" for rel in keep))
                try:
                    listing = self._rsync(
                        ["-ii", f"--backup-dir={replaced}", "--backup", "--from0", f"--exclude-from={excluded}"],
                        self.remote, f"{self.local}/", outcome,
                    )
                finally:  # even when rsync broke off: what it replaced must not go with the folder
                    for rel in _files_under(Path(replaced)):
                        if record.get(rel) != self._stat_of(Path(replaced) / rel) or record[rel][2:]:
                            outcome.kept_as[rel] = self._keep_aside(rel, stamp, Path(replaced) / rel)
            self._write_manifest(record, keep, identical | outcome.tally(listing, ">f"))
        return outcome

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

    def _filters(self) -> list[str]:
        rules = [f"--exclude={name}/" for name in SKIPPED_DIRS]
        rules += ["--exclude=.labvm-sync*", "--include=*/"]
        rules += [f"--include={pattern}" for pattern in self.profile.sync_patterns]
        return rules + ["--exclude=*"]

    def _rsync(self, options: list[str], source: str, destination: str, outcome: Outcome) -> list[tuple[str, str]]:
        """Runs rsync; returns (itemized flags, path) for each file it listed."""
        command = [
            "rsync", "-rt", "--prune-empty-dirs", "--out-format=%i|%n", "-e", self.ssh_command,
            *options, *self._filters(), source, destination,
        ]
        files = []
        for line in self._run(command, outcome).splitlines():
            flags, _, rel = line.partition("|")
            if len(flags) > 1 and flags[1] == "f":
                files.append((flags, rel))
        return files

    def _run(self, command: list[str], outcome: Outcome, names_may_be_missing: bool = False) -> str:
        if not shutil.which("rsync"):
            raise LabvmError("sync needs rsync on this machine; install it (apt-get install rsync / brew install rsync)")
        result = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if "change_dir" in result.stderr and "No such file or directory" in result.stderr:
            raise _NoWorkspace
        if result.returncode == 23 and not names_may_be_missing:  # some files could not be read: say which
            problems = [line for line in result.stderr.splitlines() if line.startswith("rsync:")]
            outcome.notes += [f"not transferred: {line}" for line in problems[:5]]
        elif result.returncode not in (0, 23, 24):  # 24: a file vanished on the host while listing
            raise LabvmError(self._explain(result))
        return result.stdout

    def _explain(self, result: subprocess.CompletedProcess) -> str:
        lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
        last = lines[-1] if lines else f"exit status {result.returncode}"
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
        with tempfile.NamedTemporaryFile("w", dir=self.local, prefix=".labvm-sync-list-") as names:
            names.write("\0".join(changed))
            names.flush()
            command = [
                "rsync", "-rt", "--dry-run", "-ii", "--from0", f"--files-from={names.name}",
                "--out-format=%i|%l|%M|%n", "-e", self.ssh_command, self.remote, f"{self.local}/",
            ]
            listing = self._run(command, outcome, names_may_be_missing=True)
        conflicts, identical = set(), set()
        for line in listing.splitlines():
            flags, size, mtime, rel = (line.split("|", 3) + ["", "", ""])[:4]
            if len(flags) < 2 or flags[1] != "f":
                continue
            synced = record.get(rel)
            if flags.startswith("."):
                identical.add(rel)
            elif not synced or synced[2:] or [int(size.replace(",", "")), mtime] != [synced[0], _rsync_time(synced[1])]:
                conflicts.add(rel)
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
        return _Lock(self.local / ".labvm-sync.lock")


class _Lock:
    """One sync at a time per folder (a --watch and a `down` may meet)."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        self.file = open(self.path, "w")
        fcntl.flock(self.file, fcntl.LOCK_EX)

    def __exit__(self, *exc):
        self.file.close()


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
