"""The one module that knows which laptop labvm runs on (Linux, macOS, Windows, WSL).

Everything that differs between them goes through here: finding, ending and detaching
processes, file locks, desktop notifications and the browser.  No other module imports a
POSIX-only module (fcntl, pwd, grp, termios, pty, resource) or reads /proc.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import webbrowser
from contextlib import contextmanager
from pathlib import Path


def process_argv(pid: int) -> list[str]:
    """A process's command line ([] when it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
    except FileNotFoundError:
        if Path("/proc/self").exists():
            return []
    except OSError:
        return []
    out = subprocess.run(["ps", "-ww", "-o", "command=", "-p", str(pid)], capture_output=True, text=True)
    return out.stdout.split()


def own_processes() -> dict[int, list[str]]:
    """This user's processes and their command lines."""
    if Path("/proc/self").exists():
        found = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if entry.stat().st_uid == os.getuid():
                        found[int(entry.name)] = process_argv(int(entry.name))
                except OSError:
                    continue
        return found
    out = subprocess.run(["ps", "-ww", "-U", str(os.getuid()), "-o", "pid=", "-o", "command="],
                         capture_output=True, text=True)
    return {int(line.split()[0]): line.split()[1:] for line in out.stdout.splitlines() if line.strip()}


def parent_pid(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        out = subprocess.run(["ps", "-o", "ppid=", "-p", str(pid)], capture_output=True, text=True)
        return int(out.stdout.strip() or 0)


def end_processes(pids: list[int], timeout: float = 5) -> None:
    """Asks each process to end, then kills what is left after the timeout."""
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


def spawn_detached(argv: list[str], **popen) -> subprocess.Popen:
    """A process that outlives the terminal (and the `inv`) that started it."""
    if os.name == "nt":
        flags = subprocess.DETACHED_PROCESS | subprocess.CREATE_NEW_PROCESS_GROUP
        return subprocess.Popen(argv, creationflags=flags, **popen)
    return subprocess.Popen(argv, start_new_session=True, **popen)


@contextmanager
def file_lock(path: Path):
    """One holder at a time (waits for the lock)."""
    import fcntl

    with open(path, "w") as file:
        fcntl.flock(file, fcntl.LOCK_EX)
        yield


def notify(title: str, message: str) -> None:
    """A desktop notification where the system has one (best effort); the texts are arguments,
    never parsed by a shell or by AppleScript."""
    if sys.platform == "darwin" and shutil.which("osascript"):
        # osascript(1): "Any arguments following the script will be passed as a list of strings
        # to the direct parameter of the run handler."
        command = ["osascript", "-e", "on run argv",
                   "-e", "display notification (item 2 of argv) with title (item 1 of argv)",
                   "-e", "end run", title, message]
    elif shutil.which("notify-send"):
        command = ["notify-send", title, message]
    else:
        return
    try:
        subprocess.run(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        pass


def has_browser() -> bool:
    # Without a display, webbrowser would start a console browser inside the terminal.
    return bool(
        sys.platform == "darwin" or os.environ.get("BROWSER")
        or os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    )


def open_browser(uri: str) -> None:
    webbrowser.open(uri)
