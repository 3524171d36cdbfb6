"""`inv sync` where the laptop has no usable rsync (every Windows PC; macOS's own openrsync and
2.6.9, see sync.local_rsync): the same promises over one ssh connection.

sync.py's rules decide everything (which files travel, the manifest, what is a conflict, the
NAME.local-<time>.EXT copies, sync_max_file and sync_max_total, invoke's files held back); this
module only moves bytes.  On the host a small Python program (python3, which every VM labvm
sets up has; not rsync) lists the workspace and then answers requests, all through the one
`ssh` that started it:

    host -> laptop   a mark line (what a chatty login script printed before it is skipped),
                     one JSON line per regular file {"f": hex name, "s": size, "m": mtime_ns},
                     {"end": true}
    laptop -> host   {"get": hex, "max": bytes}  ->  {"size": n, "m": mtime_ns} + n bytes, or {"error": ...}
                     {"put": hex, "size": n, "m": mtime_ns} + n bytes  ->  {"ok": true} or {"error": ...}
                     {"done": true}

Names travel as hex of their bytes, so no name can end a line or forge a record; a name from
the host becomes a local path only after sync.safe_relative_path accepts it.  Nothing is
deleted on either side; a file is written next to its place under a .labvm-sync- name and
renamed over it only when sync.py's rules allow (else the local copy is kept aside first).
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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from .errors import LabvmError
from .text import clean
from .sync import SKIPPED_DIRS, NotebookSync, Outcome, is_backup, is_invoke_file, safe_relative_path

# The host's side: Python 3.6+ standard library only.  Symbolic links and other non-regular
# files are not listed (rsync -r without -l skips them too); a file is opened without
# following a link that replaced it after the listing.
HOST_PROGRAM = r"""
import json, os, stat, sys
from fnmatch import fnmatch
root, mark, skipped = os.fsencode(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])
out, inp = sys.stdout.buffer, sys.stdin.buffer
def say(**message):
    out.write(json.dumps(message).encode() + b"\n")
out.write(mark.encode() + b"\n")
if not os.path.isdir(root):
    say(missing=True)  # a push makes it
for folder, dirs, names in os.walk(root):
    dirs[:] = [d for d in dirs if not any(fnmatch(os.fsdecode(d), p) for p in skipped)]
    for name in names:
        path = os.path.join(folder, name)
        try:
            info = os.lstat(path)
        except OSError:
            continue
        if stat.S_ISREG(info.st_mode):
            say(f=path[len(root) + 1:].hex(), s=info.st_size, m=info.st_mtime_ns)
say(end=True)
out.flush()
while True:
    ask = json.loads(inp.readline() or b'{"done": true}')
    if "get" in ask:
        try:
            fd = os.open(os.path.join(root, bytes.fromhex(ask["get"])), os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
            with os.fdopen(fd, "rb") as file:
                data, info = file.read(ask["max"] + 1), os.fstat(fd)
        except OSError as e:
            say(error=e.strerror or str(e))
        else:
            if len(data) > ask["max"]:
                say(error="grew over sync_max_file")
            else:
                say(size=len(data), m=info.st_mtime_ns)
                out.write(data)
    elif "put" in ask:
        data = inp.read(ask["size"])
        path = os.path.join(root, bytes.fromhex(ask["put"]))
        temporary = os.path.join(os.path.dirname(path), b".labvm-sync-incoming-%d" % os.getpid())
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(temporary, "wb") as file:
                file.write(data)
            os.utime(temporary, ns=(ask["m"], ask["m"]))
            os.replace(temporary, path)
        except OSError as e:
            say(error=e.strerror or str(e))
        else:
            say(ok=True)
    else:
        break
    out.flush()
"""

HostFiles = dict[str, tuple[int, int]]  # name -> (size, mtime_ns)


class _HostGone(Exception):
    """The connection ended before the host answered."""


class Host:
    """The program on the host behind one ssh connection."""

    def __init__(self, sync: NotebookSync):
        self.sync = sync
        self.mark = f"labvm-sync-{secrets.token_hex(8)}"
        remote = sync.remote_path
        command = shlex.join(["python3", "-c", HOST_PROGRAM, remote, self.mark,
                              json.dumps(SKIPPED_DIRS)])
        self.stderr: IO[str] = tempfile.TemporaryFile("w+", errors="replace")
        try:
            self.process = subprocess.Popen([*sync.ssh_argv, sync.profile.alias, command],
                                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr)
        except OSError as e:
            self.stderr.close()
            raise LabvmError(f"sync: cannot start ssh ({e.strerror or e}); `inv check` says what this machine lacks") from None
        assert self.process.stdin is not None and self.process.stdout is not None
        self.send, self.receive = self.process.stdin, self.process.stdout

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.send.write(b'{"done": true}\n')
                self.send.close()
            except OSError:
                pass
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.stderr.close()

    def _line(self) -> dict:
        line = self.receive.readline()
        if not line:
            raise _HostGone
        try:
            return json.loads(line)
        except ValueError:
            raise LabvmError(f"sync: the host answered something else than labvm's program "
                             f"({line[:80]!r}); your local copies in {self.sync.local} are safe") from None

    def listing(self) -> HostFiles | None:
        """Every regular file in the workspace (None when the workspace is not there)."""
        while (line := self.receive.readline()) and line.rstrip(b"\r\n") != self.mark.encode():
            continue  # a login script's chatter
        if not line:
            raise _HostGone
        files: HostFiles = {}
        missing = False
        while "end" not in (entry := self._line()):
            if entry.get("missing"):
                missing = True
                continue
            name = os.fsdecode(bytes.fromhex(entry["f"]))
            files[name] = (int(entry["s"]), int(entry["m"]))
        return None if missing else files

    def ask_for(self, names: list[str], limit: int) -> None:
        """Sends the requests from a thread of their own, so neither side waits on a full pipe."""
        def write() -> None:
            try:
                for name in names:
                    self.send.write(json.dumps({"get": os.fsencode(name).hex(), "max": limit}).encode() + b"\n")
                self.send.flush()
            except OSError:  # the host went away: the reader says so
                pass

        threading.Thread(target=write, daemon=True).start()

    def answer(self) -> tuple[bytes, int] | str:
        """The next requested file's bytes and mtime_ns, or the host's reason it could not send it."""
        reply = self._line()
        if "error" in reply:
            return str(reply["error"])
        size = int(reply["size"])
        data = self.receive.read(size)
        if len(data) != size:
            raise _HostGone
        return data, int(reply["m"])

    def put(self, name: str, path: Path) -> str | None:
        """Sends one local file; the host's reason when it could not write it."""
        data = path.read_bytes()
        header = {"put": os.fsencode(name).hex(), "size": len(data), "m": path.stat().st_mtime_ns}
        self.send.write(json.dumps(header).encode() + b"\n" + data)
        self.send.flush()
        reply = self._line()
        return str(reply["error"]) if "error" in reply else None

    def failure(self) -> LabvmError:
        """Why the connection ended, in sync.py's words."""
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.stderr.seek(0)
        result = subprocess.CompletedProcess(self.process.args, self.process.returncode, "", self.stderr.read())
        if result.returncode == 127 or "python3: not found" in result.stderr or "command not found" in result.stderr:
            return LabvmError("sync: without rsync on this machine labvm copies through python3 on the host, and the "
                              "host has none; install rsync here (see `inv check`) or python3 there")
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        if result.returncode == 255 or any(line.startswith(("ssh:", "Connection")) for line in lines):
            return LabvmError(self.sync.explain(result))  # the connection's failure, in sync.py's words
        last = clean(lines[-1]) if lines else f"exit status {result.returncode}"  # the host's words
        return LabvmError(f"sync: labvm's copy program on the host stopped ({last}); "
                          f"your local copies in {self.sync.local} are safe")


@contextmanager
def _host(sync: NotebookSync) -> Iterator[Host]:
    host = Host(sync)
    try:
        yield host
    except (_HostGone, BrokenPipeError):
        raise host.failure() from None
    except BaseException:  # a stop of labvm's own (sync_max_total, Ctrl-C): the host may be mid-file
        host.process.kill()
        raise
    finally:
        host.close()


def pull(sync: NotebookSync) -> Outcome:
    with sync.lock(), _host(sync) as host:
        record = sync.read_manifest()  # while ssh connects
        here = sync.scan()
        listed = host.listing()
        if listed is None:
            return sync.no_workspace()
        changed = [rel for rel, stat in here.items() if record.get(rel, [None, None])[:2] != stat]
        outcome = Outcome()
        offered = {}
        for rel, (size, mtime_ns) in listed.items():
            if not sync.travels(rel):
                continue
            if size > sync.profile.sync_max_file:
                outcome.too_large.append(rel)
            elif is_invoke_file(rel):
                if _differs(here.get(rel), size, mtime_ns):
                    outcome.held_back.append(rel)
            else:
                offered[rel] = (size, mtime_ns)
        conflicts, identical = set(), set()
        for rel in changed:
            if rel in offered:
                size, mtime_ns = offered[rel]
                if not _differs(here[rel], size, mtime_ns):
                    identical.add(rel)
                elif sync.host_changed(record.get(rel), size, mtime_ns):
                    conflicts.add(rel)
        keep = [rel for rel in changed if rel not in conflicts and rel not in identical]
        outcome.local_only_changes = sorted(rel for rel in keep if rel in record and not record[rel][2:])
        listing = {rel: entry for rel, entry in offered.items() if rel not in keep}
        wanted = sorted(rel for rel, (size, mtime_ns) in listing.items()
                        if rel in conflicts or _differs(here.get(rel), size, mtime_ns))
        sync.check_total(sum(listing[rel][0] for rel in wanted))

        stamp = time.strftime("%Y%m%d-%H%M%S")
        for rel in sorted(conflicts):
            outcome.kept_as[rel] = sync.keep_aside(rel, stamp)
        _fetch(sync, host, wanted, record, stamp, outcome)
        # Nothing came and nothing was set aside: the scan still holds (no second walk).
        sync.write_manifest(record, keep, identical | set(listing),
                            None if outcome.updated or outcome.kept_as else here)
        outcome.unchanged = len(listing) - len(outcome.updated)
    outcome.held_back.sort()
    outcome.too_large.sort()
    return outcome


def _fetch(sync: NotebookSync, host: Host, wanted: list[str], record: dict, stamp: str, outcome: Outcome) -> None:
    """The wanted files, each written beside its place and renamed over it; a local file that
    is not exactly the last synced copy is kept aside first (as rsync's --backup-dir catches it)."""
    host.ask_for(wanted, sync.profile.sync_max_file)
    moved = 0
    for rel in wanted:
        answer = host.answer()
        if isinstance(answer, str):
            outcome.notes.append(f"not transferred: {rel}: {answer}")
            continue
        data, mtime_ns = answer
        moved += len(data)
        if moved > sync.profile.sync_max_total:
            raise LabvmError(sync.over_budget(moved))
        target = safe_relative_path(sync.local, rel)
        if target is None:
            outcome.notes.append(f"not transferred: {rel}: not a name this machine can hold")
            continue
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            incoming = target.with_name(f".labvm-sync-incoming-{os.getpid()}")
            incoming.write_bytes(data)
            os.utime(incoming, ns=(mtime_ns, mtime_ns))
            if target.exists() and (record.get(rel) != sync.stat_of(target) or record[rel][2:]):
                outcome.kept_as[rel] = sync.keep_aside(rel, stamp)
            os.replace(incoming, target)
        except OSError as e:
            outcome.notes.append(f"not transferred: {rel}: {e.strerror or e}")
            continue
        outcome.updated.append(rel)


def push(sync: NotebookSync) -> Outcome:
    with sync.lock(), _host(sync) as host:
        record = sync.read_manifest()  # while ssh connects
        here = sync.scan()
        listed = host.listing() or {}  # no workspace yet: the host makes it
        outcome = Outcome()
        sent = []
        for rel, (size, mtime_ns) in sorted(here.items()):
            if is_backup(rel) or is_invoke_file(rel) or not sync.travels(rel):
                continue
            if size > sync.profile.sync_max_file:
                outcome.too_large.append(rel)
                continue
            on_host = listed.get(rel)
            # Like rsync --update: a file that is newer on the host is left alone there.
            if on_host and (not _differs([size, mtime_ns], *on_host) or
                            _whole_seconds(on_host[1]) > _whole_seconds(mtime_ns)):
                outcome.unchanged += 1
                continue
            problem = host.put(rel, sync.local / rel)
            if problem:
                outcome.notes.append(f"not transferred: {rel}: {problem}")
            else:
                outcome.updated.append(rel)
                sent.append(rel)
        current = sync.scan()
        record.update({rel: current[rel] for rel in sent if rel in current})
        sync.save_manifest(record)
    return outcome


def _differs(local: list[int] | None, size: int, mtime_ns: int) -> bool:
    """rsync's quick check: size or modification time (whole seconds) differ, or no local copy."""
    return local is None or local[0] != size or _whole_seconds(local[1]) != _whole_seconds(mtime_ns)


def _whole_seconds(mtime_ns: int) -> int:
    return mtime_ns // 1_000_000_000

