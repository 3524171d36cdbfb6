"""Notebooks home: rsync over `ssh labvm-<profile>` between the host's workspace and a local
folder per profile.  Nothing local is ever deleted, and nothing local is overwritten silently
(labvm.sync_rules: the manifest, conflicts, what travels).

rsync's --backup-dir catches anything else a pull replaces; a replaced file that was not
exactly the last synced copy is kept the same way.  A dry run first lists what the host offers
(which also tells which local edits meet a host edit, and stops a sync over its size budget);
when nothing would come, it is the only rsync and the only SSH connection.

What the VM holds is data, never a command: paths reach the remote rsync through its protocol
(--protect-args), dot-files and dot-folders never travel, invoke's files (tasks.py, invoke.yaml, ...)
never come home (`inv` started in the folder would run them), a file over `sync_max_file` stays on
the host (said), sparse files stay sparse, and a sync that would bring more than `sync_max_total`
stops with one line.

Without a usable rsync here (none on PATH, macOS's own, or one older than the fixes for what a
VM's rsync can send it: see local_rsync) sync_fallback.py keeps the same promises through the same
rules, over one ssh connection and labvm's program on the host (scripts/sync_host.py), every answer
checked.
Every ssh labvm runs for a sync passes ControlMaster=no and its own ControlPath, so a user's own
multiplexing (which breaks Windows' ssh) cannot interfere, nor anything else of a `Host *` that would
break a transport (labvm.ssh_options: no forwards, no pty, no remote command): while the profile's tunnel is up (and the
platform's ssh can share, labvm.keeper.shared_connection) the sync rides the keeper's login and
logs in no more; otherwise (ControlPath=none) a sync is one connection.

File names are the VM's too: rsync's listing shows every control byte and every byte the locale
cannot print as \\#ooo (rsync.1, --8-bit-output), so each file is one line whatever its name;
labvm reads a name back to its bytes (os.fsdecode, as os.walk gives it), hands names to rsync
NUL-separated as bytes, and prints them only through text.clean.
"""

from __future__ import annotations

import functools
import os
import re
import secrets
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from . import ssh_options, sync_fallback
from .config import Profile
from .errors import LabvmError
from .sshconfig import SshHome
from .sync_rules import (
    BACKUP_MARK,
    INVOKE_FILES,
    SKIPPED_DIRS,
    NotebookFolder,
    NotSynced,
    Outcome,
    Remote,
    files_under,
    is_invoke_file,
)
from .text import clean

_SAID: set[str] = set()  # what this run already said once (the rsync labvm leaves alone)


class Listed(NamedTuple):
    """One file of rsync's itemized listing: its flags (`>f+++++++++`), size, time and path."""

    flags: str
    size: int
    mtime: str
    rel: str


OVER_MAX_SIZE = b" is over max-size"  # rsync's --info=skip1 line for a file --max-size left out
RSYNC_ESCAPE = re.compile(rb"\\#([0-3][0-7]{2})")  # a byte rsync would not print (rsync.1, --8-bit-output)


def _tally(outcome: Outcome, listing: list[Listed], transferred: str) -> set[str]:
    """Counts rsync's itemized files as updated or unchanged; returns their names."""
    for entry in listing:
        if entry.flags.startswith(transferred):
            outcome.updated.append(entry.rel)
        else:
            outcome.unchanged += 1
    return {entry.rel for entry in listing}


def ssh_login(profile: Profile, ssh: SshHome, shared: Path | None) -> list[str]:
    """The ssh every transfer of the profile's files runs (sync, put, get), its alias last: no question asked
    (BatchMode), a bounded connect, never a master of its own, riding `shared` (the tunnel keeper's login) or
    none, and the options commands take (ssh_options)."""
    return ssh.ssh_command(
        profile,
        "-o",
        "BatchMode=yes",
        "-o",
        "ConnectTimeout=10",
        "-o",
        "ControlMaster=no",
        "-o",
        f"ControlPath={shared or 'none'}",
        *ssh_options.for_commands(),
    )


# What went wrong when rsync over ssh failed (rsync_failure), whatever the verb that ran it.
NO_RSYNC, UNREACHED, BROKE, OTHER = "no rsync on the host", "host not reached", "connection broke", "other"


# ssh's words when it never logged in: "user@host: Permission denied (publickey)." (sshconnect2.c; not rsync's
# "Permission denied (13)" of a file) and "Host key verification failed." (sshconnect.c).
SSH_REFUSED = re.compile(
    r"Permission denied \((?:publickey|password|keyboard-interactive|hostbased|gssapi)|Host key verification failed"
)


def rsync_failure(returncode: int, stderr: str) -> tuple[str, str]:
    """(what went wrong, rsync's last line cleaned: the host's words) of a failed rsync over ssh: no rsync on
    the host (127), the host never reached (ssh's 255; or rsync's 12 with nothing received, when rsync reads the
    closed pipe before it reaps ssh), the connection broken on the way (rsync's 10, 12, 20, 30, 35: rsync(1)
    EXIT VALUES), or another failure."""
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    last = clean(lines[-1]) if lines else f"exit status {returncode}"
    if "command not found" in stderr or returncode == 127:
        return NO_RSYNC, last
    # rsync may meet the closed pipe first, writing ("write error: Broken pipe") or reading ("0 bytes received
    # so far"), and say 12; ssh's own words on the same stderr say it never logged in.
    never_reached = "(0 bytes received so far)" in stderr or SSH_REFUSED.search(stderr) is not None
    if returncode == 255 or never_reached or any(line.startswith(("ssh:", "Connection")) for line in lines):
        return UNREACHED, last
    if returncode in (10, 12, 20, 30, 35):
        return BROKE, last
    return OTHER, last


class _NoWorkspace(Exception):
    """The workspace folder does not exist on the host (yet)."""


class NotebookSync:
    """One sync of the profile's notebooks, by rsync where this machine has a usable one, else by
    labvm.sync_fallback; either way under labvm.sync_rules' promises."""

    def __init__(
        self,
        profile: Profile,
        ssh: SshHome,
        shared: Path | None = None,
        ensure_scripts: Callable[[], None] = lambda: None,
    ):
        """shared: the tunnel keeper's login to ride (Tunnels.shared_connection); None: a login of its own.
        ensure_scripts: labvm's scripts current on the host (the fallback runs one of them there)."""
        self.profile = profile
        self.folder = NotebookFolder(profile)
        self.local = self.folder.local
        ssh_argv = ssh_login(profile, ssh, shared)[:-1]
        self.ssh_command = shlex.join(ssh_argv)
        workspace = profile.notebook.workspace
        # The path on the host: relative to the login directory, so ~ needs no shell.
        remote = workspace[2:] if workspace.startswith("~/") else "." if workspace == "~" else workspace
        self.host = Remote(ssh_argv, profile.alias, remote.rstrip("/") or "/", ensure_scripts)
        self.remote = f"{profile.alias}:{remote.rstrip('/')}/"
        self.rsync = local_rsync()
        # Starts each line of rsync's listing: a file name the VM chose before this sync cannot
        # hold it, so no name makes a listing line of its own or hides one as a skip message.
        self.listed_mark = f"labvm-{secrets.token_hex(8)}|".encode()

    # -- the two directions ------------------------------------------------------------------

    def pull(self) -> Outcome:
        """What the host's workspace holds that this folder lacks or has older, brought home."""
        self.local.mkdir(parents=True, exist_ok=True)
        if not self.rsync.usable:
            return self._fallback(push=False)
        try:
            return self._pull()
        except _NoWorkspace:
            return self.folder.no_workspace()

    def _fallback(self, push: bool) -> Outcome:
        """sync_fallback instead of rsync; an rsync here that labvm leaves alone is named once a run."""
        outcome = sync_fallback.push(self.folder, self.host) if push else sync_fallback.pull(self.folder, self.host)
        if self.rsync.path and self.rsync.summary() not in _SAID:
            _SAID.add(self.rsync.summary())
            outcome.notes.insert(0, self.rsync.summary())
        return outcome

    def _pull(self) -> Outcome:
        """One rsync lists what the host offers (while this side reads its manifest and folder),
        and tells which local edits meet a host edit; a second one brings what differs, if anything."""
        with self.folder.lock():
            outcome = Outcome()
            seen: dict = {}

            def look_here() -> None:  # while rsync connects and lists the host
                seen.update(record=self.folder.read_manifest(), here=self.folder.scan())

            offered = self._preview(outcome, look_here)
            record, here = seen["record"], seen["here"]
            changed = [rel for rel, stat in here.items() if record.get(rel, [None, None])[:2] != stat]
            conflicts, identical = self._compare_with_host(changed, record, offered)
            # Local edits of files the host did not change: never pulled over.
            keep = [rel for rel in changed if rel not in conflicts and rel not in identical]
            outcome.local_only_changes = sorted(rel for rel in keep if rel in record and not record[rel][2:])
            kept = set(keep)
            listing = [entry for entry in offered if entry.rel not in kept]
            self.folder.check_total(sum(entry.size for entry in listing if entry.flags.startswith(">f")))
            stamp = time.strftime("%Y%m%d-%H%M%S")
            for rel in sorted(conflicts):
                outcome.kept_as[rel] = self.folder.keep_aside(rel, stamp)
            if any(entry.flags.startswith(">f") for entry in listing):  # else one rsync was enough
                listing = self._bring(keep, record, stamp, outcome)
            on_host = identical | _tally(outcome, listing, ">f")
            # Nothing came and nothing was set aside: the local scan still holds (1,000 unchanged
            # notebooks are not walked twice).
            self.folder.write_manifest(record, keep, on_host, None if outcome.updated or outcome.kept_as else here)
        outcome.too_large = sorted(set(outcome.too_large))
        return outcome

    def _bring(self, keep: list[str], record: dict, stamp: str, outcome: Outcome) -> list[Listed]:
        """The transfer: local edits excluded, and anything else it replaces caught in a backup
        folder; a replaced file that was not exactly the last synced copy is kept aside."""
        with tempfile.TemporaryDirectory(dir=self.local, prefix=".labvm-sync-replaced-") as replaced:
            excluded = Path(replaced) / ".labvm-sync-keep"
            excluded.write_bytes(b"".join(os.fsencode(_anchored(rel)) + b"\0" for rel in keep))
            try:
                return self._rsync(
                    ["-ii", "--from0", f"--exclude-from={excluded}", f"--backup-dir={replaced}", "--backup"],
                    self.remote,
                    f"{self.local}/",
                    outcome,
                    budget=self.profile.sync_max_total,
                )
            finally:  # even when rsync broke off: what it replaced must not go with the folder
                for rel in files_under(Path(replaced)):
                    if record.get(rel) != self.folder.stat_of(Path(replaced) / rel) or record[rel][2:]:
                        outcome.kept_as[rel] = self.folder.keep_aside(rel, stamp, Path(replaced) / rel)

    def _preview(self, outcome: Outcome, meanwhile: Callable[[], None]) -> list[Listed]:
        """Everything the host offers, each file flagged against the local folder, before
        anything comes (a dry run); invoke's files among what differs are named (the pull leaves
        them on the host) and left out, and so are the files no sync pattern names (counted, with
        the patterns that would take them).  meanwhile runs while rsync connects."""
        everything = self._rsync(
            ["--dry-run", "-ii"],
            self.remote,
            f"{self.local}/",
            outcome,
            filters=self._safe_rules(),  # every file that could travel: those no pattern names are counted
            meanwhile=meanwhile,
        )
        listing = [entry for entry in everything if self.folder.patterns(entry.rel)]
        untaken = NotSynced()
        for rel in [entry.rel for entry in everything] + outcome.too_large:  # --max-size lists no file
            if not self.folder.patterns(rel):
                untaken.add(rel)
        outcome.too_large = [rel for rel in outcome.too_large if self.folder.patterns(rel)]
        if untaken.total:
            outcome.notes.append(self.folder.not_synced(untaken))
        outcome.held_back = sorted(
            entry.rel for entry in listing if entry.flags.startswith(">f") and is_invoke_file(entry.rel)
        )
        return [entry for entry in listing if not is_invoke_file(entry.rel)]

    def push(self) -> Outcome:
        """This folder's edits sent to the host; a file newer there is left alone."""
        if not self.local.is_dir():
            raise LabvmError(f"sync: nothing to push; {self.local} does not exist yet (`inv sync` fills it)")
        if not self.rsync.usable:
            return self._fallback(push=True)
        with self.folder.lock():
            record = self.folder.read_manifest()
            # --update: a file that is newer on the host is left alone there.
            outcome = Outcome()
            listing = self._rsync(
                ["-ii", "--update", f"--exclude=*{BACKUP_MARK}[0-9]*"], f"{self.local}/", self.remote, outcome
            )
            sent = _tally(outcome, listing, "<f")
            current = self.folder.scan()
            record.update({rel: current[rel] for rel in sent if rel in current})
            self.folder.save_manifest(record)
        return outcome

    # -- rsync ---------------------------------------------------------------------------

    def _safe_rules(self) -> list[str]:
        """The filter rules first in every rsync of this profile: _safe_rules', and its data folder where it is
        inside the workspace (anchored: the folder at the top, not any folder of that name)."""
        folder = self.folder.data_folder
        return _safe_rules() + ([f"--exclude={_anchored(folder)}/"] if folder else [])

    def _filters(self) -> list[str]:
        """rsync's rules: no dot-file or dot-folder (rsync's * matches a leading dot, so a pattern
        like *rc would reach .bashrc), no invoke file, then the sync patterns."""
        rules = self._safe_rules() + [f"--exclude={name}" for name in INVOKE_FILES]
        rules += ["--include=*/"] + [f"--include={pattern}" for pattern in self.profile.sync_patterns]
        return rules + ["--exclude=*"]

    def _rsync(
        self,
        options: list[str],
        source: str,
        destination: str,
        outcome: Outcome,
        filters: list[str] | None = None,
        budget: int = 0,
        meanwhile: Callable[[], None] | None = None,
    ) -> list[Listed]:
        """Runs rsync; returns each file it listed.
        budget: bytes the files it transfers may hold in all (0: no limit); past it rsync is ended
        (a host that grows its files after the preview: rsync reports a file once it has it)."""
        # -S: runs of zeros become holes, so a sparse file stays sparse here; safe because labvm never
        # uses --inplace (rsync.1, --sparse: rsync truncates and rewrites the file).
        command = [
            self.rsync.path or "rsync",
            "-rtS",
            *self.rsync.options,
            f"--max-size={self.profile.sync_max_file}",
            "--prune-empty-dirs",
            self._out_format(),
            "-e",
            self.ssh_command,
            *options,
            *(self._filters() if filters is None else filters),
            source,
            destination,
        ]
        return self._run(command, outcome, budget=budget, meanwhile=meanwhile)

    def _out_format(self) -> str:
        return f"--out-format={self.listed_mark.decode()}%i|%l|%M|%n"

    def _parse(self, line: bytes, outcome: Outcome) -> Listed | None:
        """A file of rsync's listing (None for a folder or a message); a file --max-size left out
        joins outcome.too_large.  %n is last, so a | in a name stays in the name."""
        if not line.startswith(self.listed_mark):
            if line.endswith(OVER_MAX_SIZE):
                outcome.too_large.append(_name(line[: -len(OVER_MAX_SIZE)]))
            return None
        flags, size, mtime, rel = (line[len(self.listed_mark) :].split(b"|", 3) + [b"", b"", b""])[:4]
        if flags[1:2] != b"f":
            return None
        return Listed(
            flags.decode("ascii", "replace"),
            _size(size.decode("ascii", "replace")),
            mtime.decode("ascii", "replace"),
            _name(rel),
        )

    def _run(
        self, command: list[str], outcome: Outcome, budget: int = 0, meanwhile: Callable[[], None] | None = None
    ) -> list[Listed]:
        """The files rsync lists, read as they come: a sync past `budget` bytes is ended there.
        meanwhile: work of this side done while rsync connects (the SSH handshake is most of it)."""
        listing, moved = [], 0
        with (
            tempfile.TemporaryFile("w+", errors="replace") as stderr,
            subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.DEVNULL) as process,
        ):
            assert process.stdout is not None  # for mypy: stdout=PIPE
            if meanwhile is not None:
                try:
                    meanwhile()
                except BaseException:
                    process.terminate()
                    raise
            for line in process.stdout:
                entry = self._parse(line.rstrip(b"\n"), outcome)
                if entry is None:
                    continue
                listing.append(entry)
                moved += entry.size if entry.flags[:2] in (">f", "<f") else 0
                if budget and moved > budget:
                    process.terminate()  # not kill: rsync removes its half-written temporary file
                    raise LabvmError(self.folder.over_budget(moved))
            process.wait()
            stderr.seek(0)
            result = subprocess.CompletedProcess(command, process.returncode, "", stderr.read())
        if "change_dir" in result.stderr and "No such file or directory" in result.stderr:
            raise _NoWorkspace
        if result.returncode == 23:  # some files could not be read: say which
            problems = [line for line in result.stderr.splitlines() if line.startswith("rsync:")]
            outcome.notes += [f"not transferred: {line}" for line in problems[:5]]
        elif result.returncode not in (0, 23, 24):  # 24: a file vanished on the host while listing
            raise LabvmError(self.explain(result))
        return listing

    def explain(self, result: subprocess.CompletedProcess) -> str:
        """Why rsync failed, in one line (its last line is the host's words: cleaned)."""
        kind, last = rsync_failure(result.returncode, result.stderr)
        if kind == NO_RSYNC:
            return "sync: rsync is not installed on the host; install it there (sudo apt-get install rsync)"
        if kind == UNREACHED:
            return self.folder.cannot_reach(last)
        if kind == BROKE:
            return f"sync: the connection to the host broke ({last}); your local copies in {self.local} are safe"
        return f"sync: rsync failed ({last})"

    def _compare_with_host(self, changed: list[str], record: dict, offered: list[Listed]) -> tuple[set[str], set[str]]:
        """Of the files changed here: those whose host copy changed too (or was never synced),
        and those the host holds an identical copy of (rsync's listing flags them '.')."""
        conflicts, identical = set(), set()
        on_host = {entry.rel: entry for entry in offered}
        for rel in changed:  # only local names: a name from the host is never taken as a local path
            entry = on_host.get(rel)
            if entry is None:
                continue
            if entry.flags.startswith("."):
                identical.add(rel)
            elif self.folder.host_changed(record.get(rel), entry.size, 0, entry.mtime):
                conflicts.add(rel)
        return conflicts, identical


def _safe_rules() -> list[str]:
    """Filter rules first in every rsync: nothing hidden (.ssh, .aws, .bashrc; checkpoints, git),
    no caches or node_modules."""
    return ["--exclude=.*"] + [f"--exclude={name}/" for name in SKIPPED_DIRS if name != ".*"]


class LocalRsync(NamedTuple):
    """The laptop's rsync: where, which, whether labvm's rsync path can use it, and its options."""

    path: str | None
    version: str  # "3.2.7", "openrsync", "" when none
    usable: bool
    options: tuple[str, ...]
    why_not: str = ""  # why labvm leaves it alone, and what would change that

    def summary(self) -> str:
        """What `inv check` says of it: its path and version, or why the built-in fallback is used."""
        if self.path is None:
            return "none: the built-in fallback (ssh + python3 on the host) is used"
        if not self.usable:
            return f"{self.path} is {self.version}: the built-in fallback is used ({self.why_not})"
        return f"{self.path}, rsync {self.version}"


# The first rsync labvm lets meet a VM: the VM is the sender in `inv sync` and the receiver in
# --push, and whoever controls it controls what its rsync says.  What older releases let such a peer
# do to this machine's rsync, from rsync's NEWS (https://download.samba.org/pub/rsync/NEWS, and
# NEWS.md in each release):
#   3.2.5  CVE-2022-29154: a sender writes files outside the destination;
#   3.4.0  CVE-2024-12084/12085: a receiver overflows the sender's heap and reads its stack;
#          CVE-2024-12086: a sender reads any file of the receiver's; CVE-2024-12087: it writes
#          outside the destination;
#   3.4.3  CVE-2026-43620: a sender crashes any client that pulls (inc_recurse, the default);
#   3.5.0  CVE-2026-70458: a sender's file entry makes the receiver write out of bounds (the
#          companion CVE-2026-70459 reproduced on 3.2.7, 3.4.0 and 3.4.1); CVE-2026-53792: a
#          receiver's zero block length drives the sender's arithmetic negative.
# Distributions backport fixes without changing the number (Debian's and Ubuntu's 3.2.7 carry the
# 2024 ones): `rsync --version` cannot tell a patched build, so an older number takes
# sync_fallback, whose every byte from the VM passes labvm.answers.
SAFE_RSYNC = (3, 5, 0)
SAFE_RSYNC_SHOWN = ".".join(map(str, SAFE_RSYNC))
OLD_RSYNC = (
    f"rsync before {SAFE_RSYNC_SHOWN} lacks fixes for what a VM's rsync can send it: CVE-2024-12086, "
    f"CVE-2024-12087, CVE-2026-43620, CVE-2026-70458, ...; rsync {SAFE_RSYNC_SHOWN}+ is used"
)
BREW_RSYNC = f"`brew install rsync` gives rsync {SAFE_RSYNC_SHOWN}+, which labvm then uses"


@functools.lru_cache(maxsize=None)
def local_rsync() -> LocalRsync:
    """Which rsync this machine has, decided per option labvm's rsync path needs, then by SAFE_RSYNC:

    - the listing it reads (-ii, --out-format with %i %l %M %n), --from0 with --exclude-from,
      --backup-dir, --max-size, --prune-empty-dirs, -S: in rsync 3.x (rsync.1,
      https://download.samba.org/pub/rsync/rsync.1).  macOS 15+'s /usr/bin/rsync is openrsync, whose
      manual has neither --out-format nor -i nor --prune-empty-dirs (openrsync.1, macOS 15:
      https://leancrew.com/all-this/man/man1/openrsync.html; upstream
      https://github.com/kristapsdz/openrsync/blob/master/openrsync.1): not usable.
    - -s (--protect-args from 3.0.0, --secluded-args since 3.2.6): paths reach the remote rsync
      through its protocol, never through the remote shell, whatever RSYNC_OLD_ARGS /
      RSYNC_PROTECT_ARGS say.  Older macOS's rsync 2.6.9 predates it (and %M in --out-format is
      3.x's too): not usable either.  Both then take sync_fallback, which needs neither.
    - --info=skip1 (3.1.0+), so a file --max-size leaves out is named.
    - SAFE_RSYNC: an older release is not trusted with a VM's data (above).
    """
    path = shutil.which("rsync")
    if path is None:
        return LocalRsync(None, "", False, ())
    try:
        shown = subprocess.run(
            [path, "--version"], capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return LocalRsync(None, "", False, ())
    text = shown.stdout + shown.stderr
    if "openrsync" in text:
        return LocalRsync(path, "openrsync", False, (), BREW_RSYNC)
    found = re.search(r"version\s+v?(\d+)\.(\d+)\.(\d+)", text)
    if not found:
        return LocalRsync(path, "an rsync labvm does not know", False, (), BREW_RSYNC)
    version = tuple(int(part) for part in found.groups())
    shown_version = ".".join(found.groups())
    if version < (3, 0, 0):
        return LocalRsync(path, f"rsync {shown_version}", False, (), BREW_RSYNC)
    if version < SAFE_RSYNC:
        return LocalRsync(path, f"rsync {shown_version}", False, (), OLD_RSYNC)
    return LocalRsync(path, shown_version, True, ("-s", "--info=skip1"))


def _name(shown: bytes) -> str:
    """A path as rsync's listing shows it, back to the name on disk (undecodable bytes kept as
    os.fsdecode keeps them, so it equals what os.walk finds); a literal \\#ddd in a name rsync
    shows with its backslash escaped, so reading every \\#ooo back is exact."""
    return os.fsdecode(RSYNC_ESCAPE.sub(lambda escape: bytes([int(escape[1], 8)]), shown))


def _size(text: str) -> int:
    """rsync's %l (digits, grouped with , or . where the locale says so)."""
    digits = text.replace(",", "").replace(".", "")
    return int(digits) if digits.isdigit() else 0


def _anchored(rel: str) -> str:
    """An rsync rule matching exactly this path from the top (wildcards escaped)."""
    name = "/" + rel
    if any(c in name for c in "*?["):
        name = "".join("\\" + c if c in "*?[\\" else c for c in name)
    return name
