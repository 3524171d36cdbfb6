"""`inv sync` where the laptop has no usable rsync (every Windows PC; macOS's own openrsync and
2.6.9; an rsync older than the fixes for what a hostile VM can send it: see sync.local_rsync): the
same promises over one ssh connection.

labvm.sync_rules decides everything (which files travel, the manifest, what is a conflict, the
NAME.local-<time>.EXT copies, sync_max_file and sync_max_total, invoke's files held back); this
module only moves bytes.  On the host labvm's program scripts/sync_host.py (uploaded with the other
scripts; python3, which every VM labvm sets up has; not rsync) lists the workspace and then answers
requests, all through the one `ssh` that started it (labvm.sync_messages has the messages).

Whoever controls the VM can answer anything instead, so every line from the host passes
labvm.sync_messages (bounded, strict, checked against what was asked), and labvm alone decides how
much it reads: a file's size as listed (at most sync_max_file), in chunks straight into a file
beside its place, never whole in memory.  A host that sends more, less or something else is
refused in one line naming it and the file, and that file's bytes are removed.  Names travel as
hex of their bytes, so no name can end a line or forge a record; a name from the host becomes a
local path only after sync_rules.safe_relative_path accepts it, else it is never asked for.  Nothing is
deleted on either side; a file is written next to its place under a .labvm-sync- name and
renamed over it only when sync_rules' rules allow (else the local copy is kept aside first).
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from . import sync_messages, vm
from .answers import BadAnswer
from .errors import LabvmError
from .sync_rules import (
    SKIPPED_DIRS,
    NotebookFolder,
    NotSynced,
    Outcome,
    Remote,
    is_backup,
    is_invoke_file,
    safe_relative_path,
)
from .text import clean

CHUNK = 1 << 20  # bytes read or sent at a time: a file never sits whole in memory
BINARY = getattr(os, "O_BINARY", 0)  # Windows: no newline translation
# What one listing may hold in names (each counted with ~100 bytes of bookkeeping): a workspace
# of 300,000 notebooks fits; a VM that lists without end is stopped there.
LISTING_BUDGET = 64 << 20

HostFiles = dict[str, tuple[int, int]]  # name -> (size, mtime_ns)
# The program runs only where the host's scripts are labvm's current ones (their digest, as
# labvm.remote keeps it beside them); else this exit status, before a byte, and labvm puts them
# there and starts again: the program and this module always speak the same messages.
STALE_SCRIPTS = 97
STARTER = (
    f'[ "$(cat {vm.DIGEST_FILE} 2>/dev/null)" = "$1" ] || exit {STALE_SCRIPTS}; shift; '
    f'exec python3 {vm.layout.SCRIPTS_DIR}/sync_host.py "$@"'
)


class _HostGone(Exception):
    """The connection ended before the host answered."""


class _CutShort(Exception):
    """The connection ended inside a file's bytes."""

    def __init__(self, rel: str, got: int, size: int):
        super().__init__(rel)
        self.rel, self.got, self.size = rel, got, size


class Replies:
    """What the host's program says, read from its output: each line through labvm.answers, each
    file's bytes exactly as many as labvm asked for, nothing sized or ended by the host."""

    def __init__(self, stream: IO[bytes], alias: str, local: Path, mark: str, narrow: str):
        """narrow: the hosts.yml key that narrows what a sync takes (a listing too large names it)."""
        self.stream, self.alias, self.local, self.mark, self.narrow = stream, alias, local, mark.encode(), narrow
        self.greeted = False

    def refusal(self, what: str) -> LabvmError:
        """One line for a host that does not answer as labvm's program: who, what, and what to do."""
        return LabvmError(
            f"sync: {self.alias} {what}; the sync stopped there, your local copies in {self.local} "
            f"are safe; `ssh {self.alias} command -v python3` shows which python3 answered "
            f"(labvm's copy program runs in it; one someone else put there answers as they like)"
        )

    def _message(self, parse: Callable[[bytes], Any], lie: str) -> Any:
        """The host's next line, parsed; a line out of shape is refused, `lie` saying what the host did."""
        line = self.stream.readline(sync_messages.SYNC_LINE_LIMIT + 1)
        if len(line) <= sync_messages.SYNC_LINE_LIMIT and not line.endswith(b"\n"):
            raise _HostGone  # the connection ended, between lines or inside one
        try:
            return parse(line)
        except BadAnswer as e:
            raise self.refusal(f"{lie} ({e})") from None

    def greeting(self) -> None:
        """Past a login script's chatter, to the program's mark line (once)."""
        while not self.greeted:
            line = self.stream.readline(sync_messages.SYNC_LINE_LIMIT + 1)
            if not line:
                raise _HostGone
            self.greeted = line.rstrip(b"\r\n") == self.mark

    def listing(self, keep: Callable[[str], bool]) -> HostFiles | None:
        """The workspace's regular files whose names `keep` accepts (None when the workspace is not there)."""
        self.greeting()
        files: HostFiles = {}
        missing, budget = False, LISTING_BUDGET
        while (
            entry := self._message(sync_messages.sync_listed, "sent a listing labvm's program never sends")
        ) != "end":
            if not isinstance(entry, sync_messages.ListedFile):
                missing = True
                continue
            rel = _local_name(entry.name)
            if not keep(rel):
                continue
            budget -= len(entry.name) + 100
            if budget < 0:
                raise LabvmError(
                    f"sync: {self.alias} lists more matching files than one sync takes "
                    f"({len(files):,}); narrow {self.narrow}"
                )
            files[rel] = (entry.size, entry.mtime_ns)
        return None if missing else files

    def next_file(self, rel: str, size: int, into: IO[bytes] | None) -> int | str:
        """The next asked-for file: exactly `size` bytes (as listed) written to `into` (None: read and
        dropped), then their mtime_ns; or why they are not to be kept (the host's reason, or this machine's)."""
        shown = clean(rel)
        sent = self._message(
            lambda line: sync_messages.sync_sending(line, size), f"answered for {shown} as labvm's program never does"
        )
        if isinstance(sent, str):
            return sent
        problem, left = None, size
        while left:
            data = self.stream.read(min(left, CHUNK))
            if not data:
                raise _CutShort(rel, size - left, size)
            left -= len(data)
            if into is not None and problem is None:
                try:
                    into.write(data)
                except OSError as e:  # this machine's disk: the rest is read all the same
                    problem = e.strerror or str(e)
        changed = self._message(
            sync_messages.sync_done, f"sent something else than the {size} bytes it listed for {shown}"
        )
        return changed or problem or sent

    def written(self, rel: str) -> str | None:
        """The host's answer to a file sent: None when it wrote it, else its reason."""
        return self._message(
            sync_messages.sync_done, f"answered {clean(rel)} (sent from here) as labvm's program never does"
        )


class Host:
    """The program on the host behind one ssh connection: requests go in, Replies come out."""

    def __init__(self, folder: NotebookFolder, remote: Remote):
        self.folder = folder
        mark = f"labvm-sync-{secrets.token_hex(8)}"
        # Folders skipped by name, and the data folder by its path from the top (sync_host.py: "data/").
        skipped = [*SKIPPED_DIRS, *([f"{folder.data_folder}/"] if folder.data_folder else [])]
        command = shlex.join(["sh", "-c", STARTER, "sh", vm.digest(), remote.path, json.dumps(skipped), mark])
        self.stderr: IO[str] = tempfile.TemporaryFile("w+", errors="replace")
        try:
            self.process = subprocess.Popen(
                [*remote.ssh_argv, remote.alias, command],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self.stderr,
            )
        except OSError as e:
            self.stderr.close()
            raise LabvmError(
                f"sync: cannot start ssh ({e.strerror or e}); `inv check` says what this machine lacks"
            ) from None
        assert self.process.stdin is not None and self.process.stdout is not None
        self.send = self.process.stdin
        self.replies = Replies(self.process.stdout, remote.alias, folder.local, mark, folder.profile.key("sync"))

    def started(self) -> bool:
        """The program answers (its mark came); False when the host's scripts are not labvm's current ones."""
        try:
            self.replies.greeting()
        except _HostGone:
            if self._ended() == STALE_SCRIPTS:
                return False
            raise
        return True

    def close(self) -> None:
        """Tells the host's program it is done, closes its input and waits for it (killed after 30 s)."""
        if self.process.poll() is None:
            try:
                self.send.write(b'{"done": true}\n')
            except OSError:
                pass
        try:
            self.send.close()  # the end of its input: the host's program ends there, whatever it is
        except OSError:  # what was left to flush into a pipe the host closed
            pass
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.replies.stream.close()
        self.stderr.close()

    def ask_for(self, wanted: list[tuple[str, int]]) -> None:
        """Asks for each (name, listed size) from a thread of its own, so neither side waits on a full pipe."""

        def write() -> None:
            try:
                for name, size in wanted:
                    self.send.write(json.dumps({"get": os.fsencode(name).hex(), "size": size}).encode() + b"\n")
                self.send.flush()
            except (OSError, ValueError):  # the host went away, or the sync ended: the reader says why
                pass

        threading.Thread(target=write, daemon=True).start()

    def put(self, rel: str, path: Path) -> str | None:
        """Sends one local file, in chunks; the host's reason when it could not write it."""
        try:
            fd = os.open(path, os.O_RDONLY | BINARY)
        except OSError as e:
            return f"cannot read it here ({e.strerror or e})"
        with os.fdopen(fd, "rb") as file:
            info = os.fstat(fd)
            header = {"put": os.fsencode(rel).hex(), "size": info.st_size, "m": info.st_mtime_ns}
            self.send.write(json.dumps(header).encode() + b"\n")
            left = info.st_size
            while left:
                try:
                    data = file.read(min(left, CHUNK))
                except OSError as e:
                    data, problem = b"", e.strerror or str(e)
                else:
                    problem = "it changed here while it was sent"
                if not data:  # the host keeps nothing of a file cut short
                    raise LabvmError(
                        f"sync: {clean(rel)}: {problem}; `inv sync --host {self.folder.profile.name} "
                        f"--push` sends it again"
                    )
                self.send.write(data)
                left -= len(data)
        self.send.flush()
        return self.replies.written(rel)

    def _ended(self) -> int:
        """The ssh's exit status, once it ended (killed after 30 s)."""
        try:
            return self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def failure(self, short: _CutShort | None = None) -> LabvmError:
        """Why the connection ended, in labvm.sync_rules' words."""
        self._ended()
        self.stderr.seek(0)
        result = subprocess.CompletedProcess(self.process.args, self.process.returncode, "", self.stderr.read())
        if result.returncode == 127 or "python3: not found" in result.stderr or "command not found" in result.stderr:
            return LabvmError(
                "sync: without rsync on this machine labvm copies through python3 on the host, and the "
                "host has none; install rsync here (see `inv check`) or python3 there"
            )
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        last = clean(lines[-1]) if lines else f"exit status {result.returncode}"  # the host's words
        if result.returncode == 255 or any(line.startswith(("ssh:", "Connection")) for line in lines):
            return LabvmError(self.folder.cannot_reach(last))
        if short:
            return self.replies.refusal(
                f"sent {short.got} of the {short.size} bytes it listed for {clean(short.rel)}, then stopped ({last})"
            )
        return LabvmError(
            f"sync: labvm's copy program on the host stopped ({last}); "
            f"your local copies in {self.folder.local} are safe"
        )


def _local_name(raw: bytes) -> str:
    """A name from the host as os.walk gives names here; on Windows (strict UTF-8 names) bytes that are
    not UTF-8 stay lone surrogates, which safe_relative_path refuses there."""
    try:
        return os.fsdecode(raw)
    except UnicodeDecodeError:
        return raw.decode("utf-8", "surrogateescape")


@contextmanager
def _host(folder: NotebookFolder, remote: Remote) -> Iterator[Host]:
    """The program on the host, started (labvm's scripts put there first where they are not current)."""
    host = Host(folder, remote)
    try:
        if not host.started():
            host.close()
            remote.ensure_scripts()
            host = Host(folder, remote)
            if not host.started():  # still not: said as the program's end
                raise _HostGone
        yield host
    except (_HostGone, BrokenPipeError):
        raise host.failure() from None
    except _CutShort as short:
        raise host.failure(short) from None
    except BaseException:  # a stop of labvm's own (a refused answer, sync_max_total, Ctrl-C): the host may be mid-file
        host.process.kill()
        raise
    finally:
        host.close()


def pull(folder: NotebookFolder, remote: Remote) -> Outcome:
    """What the host offers that this folder lacks or has older, brought home (NotebookSync.pull's promises)."""
    with folder.lock(), _host(folder, remote) as host:
        record = folder.read_manifest()  # while ssh connects
        here = folder.scan()
        untaken = NotSynced()
        listed = host.replies.listing(lambda rel: folder.travels(rel, untaken))
        if listed is None:
            return folder.no_workspace()
        changed = [rel for rel, stat in here.items() if record.get(rel, [None, None])[:2] != stat]
        outcome = Outcome(notes=[folder.not_synced(untaken)] if untaken.total else [])
        offered = _offered(folder, listed, here, outcome)
        conflicts, identical = set(), set()
        for rel in changed:
            if rel in offered:
                size, mtime_ns = offered[rel]
                if not _differs(here[rel], size, mtime_ns):
                    identical.add(rel)
                elif folder.host_changed(record.get(rel), size, mtime_ns):
                    conflicts.add(rel)
        keep = [rel for rel in changed if rel not in conflicts and rel not in identical]
        outcome.local_only_changes = sorted(rel for rel in keep if rel in record and not record[rel][2:])
        listing = {rel: entry for rel, entry in offered.items() if rel not in keep}
        wanted = sorted(
            rel
            for rel, (size, mtime_ns) in listing.items()
            if rel in conflicts or _differs(here.get(rel), size, mtime_ns)
        )
        folder.check_total(sum(listing[rel][0] for rel in wanted))
        _fetch(folder, host, [(rel, listing[rel][0]) for rel in wanted], record, outcome)
        # A file that did not come is not in step with the host: its entry stays as it was (a
        # local edit still an edit, a never-synced file local-only), so no later sync replaces it unseen.
        missed = set(wanted) - set(outcome.updated)
        # Nothing came and nothing was set aside: the scan still holds (no second walk).
        folder.write_manifest(
            record,
            keep + sorted(missed),
            identical | set(listing) - missed,
            None if outcome.updated or outcome.kept_as else here,
        )
        outcome.unchanged = len(listing) - len(wanted)
    outcome.held_back.sort()
    outcome.too_large.sort()
    return outcome


def _offered(folder: NotebookFolder, listed: HostFiles, here: dict, outcome: Outcome) -> HostFiles:
    """What of the host's listing may come: a name this machine can hold, within sync_max_file, not
    invoke's (those are named in outcome, and never asked for)."""
    offered = {}
    for rel, (size, mtime_ns) in listed.items():
        if safe_relative_path(folder.local, rel) is None:
            outcome.notes.append(f"not transferred: {rel}: not a name this machine can hold")
        elif size > folder.profile.sync_max_file:
            outcome.too_large.append(rel)
        elif is_invoke_file(rel):
            if _differs(here.get(rel), size, mtime_ns):
                outcome.held_back.append(rel)
        else:
            offered[rel] = (size, mtime_ns)
    return offered


def _fetch(folder: NotebookFolder, host: Host, wanted: list[tuple[str, int]], record: dict, outcome: Outcome) -> None:
    """The wanted files (name, listed size), each read into a file beside its place and renamed over
    it; a local file that is not exactly the last synced copy is kept aside first (as rsync's
    --backup-dir catches it), once the host's version is here whole."""
    host.ask_for(wanted)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for rel, size in wanted:
        target = folder.local.joinpath(*rel.split("/"))  # _offered: safe_relative_path accepted it
        incoming = target.with_name(f".labvm-sync-incoming-{os.getpid()}")
        try:
            answer = _receive(host, rel, size, incoming)
            if isinstance(answer, int):
                os.utime(incoming, ns=(answer, answer))
                if target.exists() and (record.get(rel) != folder.stat_of(target) or record[rel][2:]):
                    outcome.kept_as[rel] = folder.keep_aside(rel, stamp)
                os.replace(incoming, target)
                outcome.updated.append(rel)
        except OSError as e:
            answer = e.strerror or str(e)
        finally:  # a refused answer, Ctrl-C, a full disk: no half-written file stays
            incoming.unlink(missing_ok=True)
        if isinstance(answer, str):
            outcome.notes.append(f"not transferred: {rel}: {answer}")


def _receive(host: Host, rel: str, size: int, incoming: Path) -> int | str:
    """The host's next answer written to `incoming` (made with its folder): the file's mtime_ns, or why not."""
    try:
        incoming.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(incoming, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | BINARY, 0o666)
    except OSError as e:
        host.replies.next_file(rel, size, None)  # read and dropped: the next answer follows it
        return e.strerror or str(e)
    with os.fdopen(fd, "wb") as file:
        return host.replies.next_file(rel, size, file)


def push(folder: NotebookFolder, remote: Remote) -> Outcome:
    """This folder's edits sent; a file newer on the host is left alone there (as rsync --update)."""
    with folder.lock(), _host(folder, remote) as host:
        record = folder.read_manifest()  # while ssh connects
        here = folder.scan()
        listed = host.replies.listing(folder.travels) or {}  # no workspace yet: the host makes it
        outcome = Outcome()
        sent = []
        for rel, (size, mtime_ns) in sorted(here.items()):
            if is_backup(rel) or is_invoke_file(rel) or not folder.travels(rel):
                continue
            if size > folder.profile.sync_max_file:
                outcome.too_large.append(rel)
                continue
            on_host = listed.get(rel)
            # Like rsync --update: a file that is newer on the host is left alone there.
            if on_host and (
                not _differs([size, mtime_ns], *on_host) or _whole_seconds(on_host[1]) > _whole_seconds(mtime_ns)
            ):
                outcome.unchanged += 1
                continue
            problem = host.put(rel, folder.local / rel)
            if problem:
                outcome.notes.append(f"not transferred: {rel}: {problem}")
            else:
                outcome.updated.append(rel)
                sent.append(rel)
        current = folder.scan()
        record.update({rel: current[rel] for rel in sent if rel in current})
        folder.save_manifest(record)
    return outcome


def _differs(local: list[int] | None, size: int, mtime_ns: int) -> bool:
    """rsync's quick check: size or modification time (whole seconds) differ, or no local copy."""
    return local is None or local[0] != size or _whole_seconds(local[1]) != _whole_seconds(mtime_ns)


def _whole_seconds(mtime_ns: int) -> int:
    return mtime_ns // 1_000_000_000
