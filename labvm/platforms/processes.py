"""Processes on every laptop: found, ended and detached (psutil on Windows, /proc or ps elsewhere)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from ..errors import LabvmError
from . import LINUX, WSL, current, is_windows

# Process creation flags (learn.microsoft.com/windows/win32/procthread/process-creation-flags);
# subprocess has them only on Windows.
DETACHED_PROCESS = getattr(subprocess, "DETACHED_PROCESS", 0x00000008)
CREATE_NEW_PROCESS_GROUP = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0x00000200)
CREATE_BREAKAWAY_FROM_JOB = getattr(subprocess, "CREATE_BREAKAWAY_FROM_JOB", 0x01000000)
CREATE_NO_WINDOW = getattr(subprocess, "CREATE_NO_WINDOW", 0x08000000)


def _has_proc() -> bool:
    return current() in (LINUX, WSL) and Path("/proc/self").exists()


def process_argv(pid: int) -> list[str]:
    """A process's command line ([] when it is gone)."""
    if is_windows():
        return _psutil_call(pid, "cmdline", [])
    if _has_proc():
        try:
            return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
        except OSError:
            return []
    # BSD ps (macOS): -ww for the whole line, -o command= for it alone.
    out = subprocess.run(["ps", "-ww", "-o", "command=", "-p", str(pid)], capture_output=True, text=True)
    return out.stdout.split()


def own_processes() -> dict[int, list[str]]:
    """This user's processes and their command lines."""
    if is_windows():
        return _psutil_own_processes()
    uid = _posix_uid()
    if _has_proc():
        found = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if entry.stat().st_uid == uid:
                        found[int(entry.name)] = process_argv(int(entry.name))
                except OSError:
                    continue
        return found
    out = subprocess.run(["ps", "-ww", "-U", str(uid), "-o", "pid=", "-o", "command="], capture_output=True, text=True)
    return {int(line.split()[0]): line.split()[1:] for line in out.stdout.splitlines() if line.strip()}


def parent_pid(pid: int) -> int:
    """The pid of the process's parent; 0 when it cannot be told (the process went)."""
    if is_windows():
        return _psutil_call(pid, "ppid", 0)
    if _has_proc():
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            return int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return 0
    out = subprocess.run(["ps", "-o", "ppid=", "-p", str(pid)], capture_output=True, text=True)
    return int(out.stdout.strip() or 0)


def end_processes(pids: list[int], timeout: float = 5) -> None:
    """Asks each process to end, then kills what is left after the timeout."""
    if is_windows():
        _psutil_end(pids, timeout)
        return
    _signal_posix(pids, timeout)


def _signal_posix(pids: list[int], timeout: float) -> None:
    if sys.platform == "win32":  # for mypy: POSIX signals; Windows never comes here
        return
    import signal

    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(process_argv(p) for p in pids):
        time.sleep(0.05)
    for pid in pids:
        if process_argv(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _posix_uid() -> int:
    if sys.platform == "win32":  # for mypy: Windows has no uid (its callers take their Windows branch first)
        raise LabvmError("no user id on Windows")
    return os.getuid()


def _psutil_call(pid: int, method: str, gone):
    import psutil

    try:
        return getattr(psutil.Process(pid), method)()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, ValueError):
        return gone


def _psutil_own_processes() -> dict[int, list[str]]:
    """Windows has no /proc and no ps: psutil asks the system; another user's processes
    refuse their user name (AccessDenied) or carry another one."""
    import psutil

    me = psutil.Process().username()
    found = {}
    for process in psutil.process_iter(["username", "cmdline"]):
        if process.info["username"] == me:
            found[process.pid] = process.info["cmdline"] or []
    return found


def _psutil_end(pids: list[int], timeout: float) -> None:
    """Windows has no SIGTERM: terminate (TerminateProcess), and kill what still stands.  A process
    that must clean up is asked through its own channel first (the keeper's control file)."""
    import psutil

    processes = []
    for pid in pids:
        try:
            processes.append(psutil.Process(pid))
        except (psutil.NoSuchProcess, ValueError):
            continue
    for process in processes:
        try:
            process.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(processes, timeout=timeout)
    for process in alive:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass


def spawn_detached(
    argv: list[str], launch: Callable[..., subprocess.Popen] = subprocess.Popen, **popen
) -> subprocess.Popen:
    """A process that outlives the terminal (and the `inv`) that started it.

    Windows: no console of its own (DETACHED_PROCESS), Ctrl-C of the starting console does not
    reach it (CREATE_NEW_PROCESS_GROUP), and out of the job object the terminal puts its children
    in (CREATE_BREAKAWAY_FROM_JOB), else closing the terminal ends it; a job that forbids breaking
    away refuses the flag (ERROR_ACCESS_DENIED), and then it starts without it.
    launch: what starts the process (subprocess.Popen; tests on Linux pass a recorder, as
    Popen there refuses creationflags)."""
    if is_windows():
        flags = DETACHED_PROCESS | CREATE_NEW_PROCESS_GROUP
        try:
            return launch(argv, creationflags=flags | CREATE_BREAKAWAY_FROM_JOB, **popen)
        except OSError:  # PermissionError when the job forbids breakaway
            return launch(argv, creationflags=flags, **popen)
    return launch(argv, start_new_session=True, **popen)


def windowless() -> dict:
    """Popen's arguments for a console program (ssh, python) started by the detached keeper: on
    Windows a process without a console gives each such child a console window of its own, one
    flashing up at every question to the VM, unless it is made with CREATE_NO_WINDOW; elsewhere none."""
    return {"creationflags": CREATE_NO_WINDOW} if is_windows() else {}


def can_detach() -> str:
    """How the keeper is detached here, for `inv check`."""
    if is_windows():
        return "a detached process in a new process group, out of the terminal's job where Windows allows it"
    return "a new session (setsid), so closing the terminal does not end it"
