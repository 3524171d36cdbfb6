"""What a sync promises, whichever way the bytes move (rsync, labvm.sync; or labvm.sync_fallback):
the local folder of one profile's notebooks, its manifest, which files travel, what is a conflict,
where a local edit is kept aside, and the words for what happened.

`.labvm-sync.json` in the local folder records each file as it was after the last sync (size,
mtime).  A file that differs from that record was changed here:
  - the host's copy unchanged since  -> the local edit stays (`--push` sends it);
  - the host's copy changed as well  -> the local edit is kept as NAME.local-<time>.EXT, reported,
                                        and the host's version takes the name.
Nothing local is ever deleted; dot-files and dot-folders never travel, nor invoke's files (`inv`
started in the folder would run them); a name from the host becomes a local path only through
safe_relative_path.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fnmatch import fnmatch
from fnmatch import translate as fnmatch_translate
from pathlib import Path
from typing import NamedTuple

from . import platforms
from .config import Profile
from .errors import LabvmError
from .files import write_private
from .text import clean

MANIFEST = ".labvm-sync.json"
# checkpoints, venvs, git: not notebooks; nor ext4's lost+found (root's only: unreadable to the login).
SKIPPED_DIRS = (".*", "__pycache__", "node_modules", "lost+found")
BACKUP_MARK = ".local-"
# What invoke loads from the folder it starts in (its collection `tasks` as module, package or
# compiled module, and its project config files): a VM's copy must never land where `inv` may run.
INVOKE_FILES = (
    "tasks.py",
    "tasks.pyc",
    "tasks.so",
    "tasks.*.so",
    "tasks/__init__.py*",
    "invoke.py",
    "invoke.pyc",
    "invoke.yaml",
    "invoke.yml",
    "invoke.json",
)


@dataclass
class Outcome:
    """What one sync did, and what it left where it was (said by lines())."""

    updated: list[str] = field(default_factory=list)
    unchanged: int = 0
    kept_as: dict[str, str] = field(default_factory=dict)  # local edit -> its dated backup
    local_only_changes: list[str] = field(default_factory=list)
    too_large: list[str] = field(default_factory=list)  # over sync_max_file: left where they are
    held_back: list[str] = field(default_factory=list)  # invoke's files: left on the host
    notes: list[str] = field(default_factory=list)

    def lines(self, where: str, direction: str) -> list[str]:
        """What the sync did, one line each, cleaned (names come from the VM); direction: pull or push."""
        moved = "sent to the host" if direction == "push" else "brought home"
        lines = [f"sync: {len(self.updated)} file(s) {moved}, {self.unchanged} unchanged ({where})"]
        lines += [
            f"sync: your local edit of {name} was kept as {backup}; {name} is now the host's version"
            for name, backup in self.kept_as.items()
        ]
        if self.local_only_changes:
            lines.append(f"sync: changed here only (kept; --push sends them): {_shown(self.local_only_changes)}")
        if self.too_large:
            lines.append(f"sync: over sync_max_file, left where they are: {_shown(self.too_large)}")
        if self.held_back:
            lines.append(f"sync: left on the host, as invoke would run them from this folder: {_shown(self.held_back)}")
        # File names and rsync's messages come from the VM: each line is cleaned as a whole.
        return [clean(line) for line in lines + [f"sync: {note}" for note in self.notes]]


# What Windows cannot hold in a file name (learn.microsoft.com/windows/win32/fileio/naming-a-file),
# and lone surrogates: a VM's bytes that are not UTF-8, which Windows' file names cannot spell.
WINDOWS_FORBIDDEN = re.compile(r'[<>:"\\|?*\x00-\x1f\ud800-\udfff]')
WINDOWS_DEVICES = {"CON", "PRN", "AUX", "NUL", *(f"COM{n}" for n in range(1, 10)), *(f"LPT{n}" for n in range(1, 10))}


class Remote(NamedTuple):
    """How a sync reaches the host's workspace: ssh's command line up to the alias, the alias, the
    workspace's path there (relative to the login folder), and how labvm's scripts get there current."""

    ssh_argv: list[str]
    alias: str
    path: str
    ensure_scripts: Callable[[], None]


def data_folder(profile: Profile) -> str:
    """The data volume's folder as a path inside the workspace ("data"), where hosts.yml mounts it there (the
    default: data.mount written as the workspace is, ~/... or /...); "" otherwise.  A sync never walks it:
    datasets travel by put and get, and a volume of them is no notebook folder."""
    if profile.data is None:
        return ""
    workspace = profile.notebook.workspace.rstrip("/") + "/"
    return profile.data_mount[len(workspace) :].strip("/") if profile.data_mount.startswith(workspace) else ""


class NotebookFolder:
    """The profile's local folder (sync_dir) and its manifest: what a sync reads, keeps and writes here."""

    def __init__(self, profile: Profile):
        self.profile = profile
        self.local = profile.sync_dir
        self.manifest_path = self.local / MANIFEST
        self.patterns = _matcher(profile.sync_patterns)
        self.data_folder = data_folder(profile)  # never walked, either way

    def no_workspace(self) -> Outcome:
        """What a pull says of a workspace the host does not have yet."""
        return Outcome(notes=[f"{self.profile.notebook.workspace} is not on the host yet; nothing to bring home"])

    def check_total(self, total: int) -> None:
        """Stops a pull whose files hold more than sync_max_total, before anything is copied."""
        if total > self.profile.sync_max_total:
            raise LabvmError(
                f"sync: the host offers {_megabytes(total)}, more than sync_max_total "
                f"({_megabytes(self.profile.sync_max_total)}); nothing was copied; narrow sync: or raise "
                f"{self.profile.key('sync_max_total')}"
            )

    def not_synced(self, untaken: NotSynced) -> str:
        """What a pull leaves on the host because no sync pattern names it, and the patterns that would."""
        wanted = sorted(untaken.by_pattern, key=lambda pattern: (-untaken.by_pattern[pattern], pattern))
        return (
            f"{untaken.total} file(s) on the host not synced ({_shown(wanted)}): "
            f"add them to {self.profile.key('sync')} to bring them home"
        )

    def over_budget(self, moved: int) -> str:
        """Why a pull stopped once more than sync_max_total came."""
        return (
            f"sync: stopped after {_megabytes(moved)} from the host, more than sync_max_total "
            f"({_megabytes(self.profile.sync_max_total)}); what came is in {self.local}, the rest stays on "
            f"the host; raise {self.profile.key('sync_max_total')} to bring it home"
        )

    def cannot_reach(self, last: str) -> str:
        """Why a sync failed when ssh did not reach the host (`last`: ssh's last line, cleaned)."""
        return (
            f"sync: cannot reach {self.profile.alias} ({last}); "
            f"your local copies in {self.local} are safe; `inv up --host {self.profile.name}` starts the VM"
        )

    @staticmethod
    def host_changed(synced: list | None, size: int, mtime_ns: int, shown_mtime: str = "") -> bool:
        """The host's copy (size, mtime; or the mtime as rsync's %M shows it) is not the one the
        last sync left here (or none was synced, or it was local-only): an edit here as well is
        a conflict.  Whole seconds, as rsync's quick check compares them."""
        return (
            not synced
            or bool(synced[2:])
            or [size, shown_mtime or _rsync_time(mtime_ns)] != [synced[0], _rsync_time(synced[1])]
        )

    def keep_aside(self, rel: str, stamp: str, current: Path | None = None) -> str:
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

    def scan(self) -> dict[str, list[int]]:
        """Each local file a sync pattern names, as [size, mtime_ns]."""
        found = {}
        for rel in files_under(self.local):
            if self.patterns(rel):
                found[rel] = self.stat_of(self.local / rel)
        return found

    def travels(self, rel: str, untaken: NotSynced | None = None) -> bool:
        """What the rsync filters let through (_filters, without invoke's files): no dot-file or
        dot-folder, nothing in the data folder or under a skipped folder, and a sync pattern matches (else
        it is counted in `untaken`)."""
        parts = rel.split("/")
        if any(part.startswith(".") for part in parts):
            return False
        if self.data_folder and f"{rel}/".startswith(f"{self.data_folder}/"):
            return False
        if any(fnmatch(part, skip) for part in parts[:-1] for skip in SKIPPED_DIRS):
            return False
        if self.patterns(rel):
            return True
        if untaken is not None:
            untaken.add(rel)
        return False

    @staticmethod
    def stat_of(path: Path) -> list[int]:
        """[size, mtime_ns], as the manifest records a file."""
        stat = path.stat()
        return [stat.st_size, stat.st_mtime_ns]

    def read_manifest(self) -> dict[str, list]:
        """Each file as the last sync left it ({} before the first, or for a manifest not whole)."""
        try:
            return json.loads(self.manifest_path.read_text())
        except (OSError, ValueError):
            return {}

    def write_manifest(
        self, record: dict, edited: list[str], on_host: set[str], scanned: dict[str, list[int]] | None = None
    ) -> None:
        """Every local file as it is now (scanned: a scan still current), a file the host lacks
        marked local-only; a local edit keeps its old entry, so it still shows as changed here."""
        updated = {}
        for rel, stat in (self.scan() if scanned is None else scanned).items():
            if rel in edited and rel in record and not record[rel][2:]:
                updated[rel] = record[rel]
            else:
                updated[rel] = stat if rel in on_host else [*stat, "local"]
        if updated != record:
            self.save_manifest(updated)

    def save_manifest(self, record: dict) -> None:
        """The record whole, renamed into place."""
        write_private(self.manifest_path, json.dumps(record, sort_keys=True))

    def lock(self):
        """One sync at a time per folder (a --watch and a `down` may meet)."""
        return platforms.file_lock(self.local / ".labvm-sync.lock")


class NotSynced:
    """The files a pull leaves on the host because no sync pattern names them, counted by the pattern
    that would take each (`*.csv`, or the name itself where it has no suffix).  A host's listing has
    no end a VM cannot choose, so only the first PATTERNS_KEPT patterns are kept by name."""

    PATTERNS_KEPT = 1000

    def __init__(self) -> None:
        self.total = 0
        self.by_pattern: dict[str, int] = {}

    def add(self, rel: str) -> None:
        name = rel.rpartition("/")[2]
        pattern = f"*{Path(name).suffix}" if Path(name).suffix else name
        self.total += 1
        if pattern in self.by_pattern or len(self.by_pattern) < self.PATTERNS_KEPT:
            self.by_pattern[pattern] = self.by_pattern.get(pattern, 0) + 1


def _shown(names: list[str]) -> str:
    return ", ".join(names[:5]) + (" ..." if len(names) > 5 else "")


def _matcher(patterns) -> Callable[[str], bool]:
    """Whether a path matches one of the patterns as rsync's include/exclude reads them: a
    pattern without / matches the name, one with / the path's end (one regex: 1,000 notebooks
    are checked in a blink)."""
    names = [fnmatch_translate(p) for p in patterns if "/" not in p]
    ends = [fnmatch_translate(p) for p in patterns if "/" in p]
    by_name = re.compile("|".join(names)).match if names else None
    by_end = re.compile("|".join(f"(?:.*/)?{p}" for p in ends)).match if ends else None

    def matches(rel: str) -> bool:
        return bool((by_name and by_name(rel.rpartition("/")[2])) or (by_end and by_end(rel)))

    return matches


is_invoke_file = _matcher(INVOKE_FILES)  # rel is one of invoke's files, as rsync reads the rules
is_backup = _matcher([f"*{BACKUP_MARK}[0-9]*"])  # a kept-aside local copy: it never travels


def safe_relative_path(root: Path, rel: str) -> Path | None:
    """root/rel for a name from the host, or None when that is not a plain path below root on
    this machine: an empty, . or .. part, an absolute name, and on Windows a character or
    name Windows cannot hold (or reads as a separator or a device)."""
    parts = rel.split("/")
    if not rel or any(part in ("", ".", "..") for part in parts) or "\0" in rel:
        return None
    if platforms.is_windows() and any(
        WINDOWS_FORBIDDEN.search(part) or part.rstrip(". ") != part or part.split(".")[0].upper() in WINDOWS_DEVICES
        for part in parts
    ):
        return None
    return root.joinpath(*parts)


def _megabytes(size: int) -> str:
    return f"{size / 2**20:.1f} MB"


def files_under(root: Path) -> list[str]:
    """Every file below root (skipped folders and labvm's own sync files left out), as a/b/c."""
    files = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if not any(fnmatch(d, skip) for skip in SKIPPED_DIRS)]
        base = Path(folder).relative_to(root)
        # Names with / whatever the platform: the manifest and the host use them as they are.
        files += [
            (base / name).as_posix() if str(base) != "." else name
            for name in names
            if not name.startswith(".labvm-sync")
        ]
    return files


def _rsync_time(mtime_ns: int) -> str:
    """A file time as rsync's %M shows it (local time, whole seconds)."""
    return time.strftime("%Y/%m/%d-%H:%M:%S", time.localtime(mtime_ns // 1_000_000_000))
