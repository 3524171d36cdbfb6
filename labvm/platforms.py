"""The one module that knows which laptop labvm runs on (Linux, macOS, Windows, WSL).

Everything that differs between them goes through here: finding, ending and detaching
processes, file locks, private key files, desktop notifications and the browser.  No other
module imports a POSIX-only module (fcntl, pwd, grp, termios, pty, resource) or reads /proc.

current() decides the platform once; tests switch it with simulating() (a seam of this module,
not an environment variable, so no .env can change what labvm believes it runs on).  Branches
test current(); around a call that one platform lacks they also test sys.platform, which is what
mypy reads: `mypy --platform win32` checks the Windows calls, `--platform darwin` the POSIX ones,
and a call that does not exist there fails the check.  Windows-only constants are read with
getattr fallbacks, so this module imports everywhere.
"""

from __future__ import annotations

import functools
import getpass
import html
import os
import shutil
import socket
import subprocess
import sys
import time
import webbrowser
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import LabvmError

LINUX, MACOS, WINDOWS, WSL = "linux", "macos", "windows", "wsl"
PLATFORMS = (LINUX, MACOS, WINDOWS, WSL)

# Process creation flags (learn.microsoft.com/windows/win32/procthread/process-creation-flags);
# subprocess has them only on Windows.
DETACHED_PROCESS = getattr(subprocess, "DETACHED_PROCESS", 0x00000008)
CREATE_NEW_PROCESS_GROUP = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0x00000200)
CREATE_BREAKAWAY_FROM_JOB = getattr(subprocess, "CREATE_BREAKAWAY_FROM_JOB", 0x01000000)
CREATE_NO_WINDOW = getattr(subprocess, "CREATE_NO_WINDOW", 0x08000000)

_simulated: str | None = None


def current() -> str:
    """linux, macos, windows or wsl (a Linux inside Windows: Linux tools, Windows' browser)."""
    return _simulated or _detected()


@functools.lru_cache(maxsize=None)
def _detected() -> str:
    if sys.platform == "win32":
        return WINDOWS
    if sys.platform == "darwin":
        return MACOS
    # WSL's kernel names itself ("...-microsoft-standard-WSL2"); WSL sets WSL_DISTRO_NAME.
    if os.environ.get("WSL_DISTRO_NAME") or "microsoft" in _proc_version().lower():
        return WSL
    return LINUX


def _proc_version() -> str:
    try:
        return Path("/proc/version").read_text(errors="replace")
    except OSError:
        return ""


@contextmanager
def simulating(platform: str) -> Iterator[None]:
    """For tests on Linux: labvm takes the given platform's branches (the calls a real Linux
    lacks, such as msvcrt, still fail)."""
    global _simulated
    if platform not in PLATFORMS:
        raise ValueError(f"{platform!r} is not one of {PLATFORMS}")
    before, _simulated = _simulated, platform
    try:
        yield
    finally:
        _simulated = before


def is_windows() -> bool:
    return current() == WINDOWS


def ssh_shares_connections() -> bool:
    """OpenSSH's ControlMaster (one login carries other ssh sessions): not in Windows' OpenSSH, whose
    client fails on a control socket ("getsockname failed: Not a socket")."""
    return not is_windows()


# -- processes ------------------------------------------------------------------------------

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
    out = subprocess.run(["ps", "-ww", "-U", str(uid), "-o", "pid=", "-o", "command="],
                         capture_output=True, text=True)
    return {int(line.split()[0]): line.split()[1:] for line in out.stdout.splitlines() if line.strip()}


def parent_pid(pid: int) -> int:
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


def spawn_detached(argv: list[str], launch: Callable[..., subprocess.Popen] = subprocess.Popen,
                   **popen) -> subprocess.Popen:
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


# -- files ----------------------------------------------------------------------------------

@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """One holder at a time (waits for the lock)."""
    with open(path, "a+b") as file:
        if is_windows():
            _lock_windows(file)
        else:
            _lock_posix(file)
        yield


def _lock_posix(file) -> None:
    if sys.platform != "win32":  # for mypy (fcntl is POSIX)
        import fcntl

        fcntl.flock(file, fcntl.LOCK_EX)


def _lock_windows(file) -> None:
    """msvcrt.locking locks bytes (here the first) and retries for 10 s before OSError: retried
    until it is ours; the lock goes with the file's handle."""
    if sys.platform == "win32":  # for mypy (msvcrt is Windows')
        import msvcrt

        file.seek(0)
        while True:
            try:
                msvcrt.locking(file.fileno(), msvcrt.LK_LOCK, 1)
                return
            except OSError:
                continue


def make_private(path: Path) -> None:
    """Only this user may read the file (OpenSSH refuses a private key others can read).

    Windows' OpenSSH reads the ACL, not a mode: inherited entries removed and the user alone
    granted full access, as its documentation's icacls lines do
    (learn.microsoft.com/windows-server/administration/openssh/openssh-server-configuration)."""
    if not is_windows():
        os.chmod(path, 0o600)
        return
    user = os.environ.get("USERNAME") or getpass.getuser()
    command = ["icacls", str(path), "/inheritance:r", "/grant:r", f"{user}:F"]
    try:
        result = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    except OSError as e:
        raise LabvmError(f"{path}: could not set its permissions ({e.strerror}); run: "
                         f"icacls \"{path}\" /inheritance:r /grant:r \"%USERNAME%:F\"") from None
    if result.returncode != 0:
        raise LabvmError(f"{path}: icacls refused ({(result.stdout + result.stderr).strip()[:200]}); run: "
                         f"icacls \"{path}\" /inheritance:r /grant:r \"%USERNAME%:F\"")


def owned_mode(path: Path) -> tuple[bool, int] | None:
    """(whether this user owns the file, its permission bits) where those mean something;
    None on Windows, where an ACL decides (make_private sets it)."""
    if is_windows():
        return None
    info = path.stat()
    return info.st_uid == _posix_uid(), info.st_mode & 0o777


# -- the desktop ----------------------------------------------------------------------------

# A toast from Windows PowerShell 5.1 (WinRT types; pwsh 7 lacks them), in the name of
# PowerShell's own AppUserModelID, which every Windows 10/11 has registered.  The texts are
# read from the environment and become XML text nodes: never parsed by PowerShell.
WINDOWS_TOAST = r"""
$ErrorActionPreference = 'Stop'
[Windows.UI.Notifications.ToastNotificationManager, Windows.UI.Notifications, ContentType = WindowsRuntime] > $null
$xml = [Windows.UI.Notifications.ToastNotificationManager]::GetTemplateContent([Windows.UI.Notifications.ToastTemplateType]::ToastText02)
$texts = $xml.GetElementsByTagName('text')
$texts.Item(0).AppendChild($xml.CreateTextNode($env:LABVM_NOTIFY_TITLE)) > $null
$texts.Item(1).AppendChild($xml.CreateTextNode($env:LABVM_NOTIFY_MESSAGE)) > $null
$app = '{1AC14E77-02E7-4E5D-B744-2EB1AE5198B7}\WindowsPowerShell\v1.0\powershell.exe'
[Windows.UI.Notifications.ToastNotificationManager]::CreateToastNotifier($app).Show([Windows.UI.Notifications.ToastNotification]::new($xml))
"""


def notification_command(title: str, message: str) -> tuple[list[str], dict[str, str]] | None:
    """The command (and extra environment) that shows a desktop notification here; None where
    there is none.  The texts are arguments or environment values, never parsed by a shell,
    AppleScript or PowerShell; the message may hold the VM's words (its autostop reasons), so
    where it would be read as markup it is escaped."""
    if current() == MACOS and shutil.which("osascript"):
        # osascript(1): "Any arguments following the script will be passed as a list of strings
        # to the direct parameter of the run handler."
        return ["osascript", "-e", "on run argv",
                "-e", "display notification (item 2 of argv) with title (item 1 of argv)",
                "-e", "end run", title, message], {}
    if is_windows():
        powershell = shutil.which("powershell.exe") or shutil.which("powershell")
        if not powershell:
            return None
        return ([powershell, "-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass", "-Command", WINDOWS_TOAST],
                {"LABVM_NOTIFY_TITLE": title, "LABVM_NOTIFY_MESSAGE": message})
    if shutil.which("notify-send"):
        # "Body text may contain markup": <b>, <i>, <u>, <a href>, <img src> and XML entities (Desktop
        # Notifications Specification, https://specifications.freedesktop.org/notification/latest/markup.html),
        # as GNOME Shell, KDE Plasma, dunst and mako read it; the summary is plain text.  Escaped, a VM's
        # "<a href=...>" or "&lt;" shows as the characters it is.
        return ["notify-send", title, html.escape(message, quote=False)], {}
    return None


def notify(title: str, message: str) -> None:
    """A desktop notification where the system has one (best effort: never a failure). The keeper
    calls it, detached: on Windows the toast's PowerShell must not flash a console window up."""
    found = notification_command(title, message)
    if found is None:
        return
    command, extra_env = found
    try:
        subprocess.run(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=10, check=False, env={**os.environ, **extra_env} if extra_env else None,
                       **windowless())
    except (OSError, subprocess.SubprocessError):
        pass


def has_browser() -> bool:
    # Without a display, webbrowser would start a console browser inside the terminal.
    return bool(
        current() in (MACOS, WINDOWS) or (current() == WSL and browser_command("http://127.0.0.1/"))
        or os.environ.get("BROWSER") or os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    )


def browser_command(uri: str) -> list[str] | None:
    """WSL: Windows' browser, through wslu's wslview or explorer.exe (a file of the Linux side
    by its \\\\wsl.localhost path, from wslpath -w); None elsewhere (webbrowser knows: `open` on
    macOS, the default browser on Windows and Linux)."""
    if current() != WSL:
        return None
    if shutil.which("wslview"):
        return ["wslview", uri]
    if not shutil.which("explorer.exe"):
        return None
    if uri.startswith("file://"):
        from urllib.parse import unquote, urlparse

        local = unquote(urlparse(uri).path)
        try:
            windows = subprocess.run(["wslpath", "-w", local], capture_output=True, text=True, check=True)
        except (OSError, subprocess.CalledProcessError):
            return None
        uri = windows.stdout.strip()
    return ["explorer.exe", uri]


def open_browser(uri: str) -> None:
    command = browser_command(uri)
    if command is None:
        webbrowser.open(uri)
        return
    try:  # explorer.exe answers 1 even when it opened the page
        subprocess.run(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        webbrowser.open(uri)


# -- sockets (the keeper's relay and the checks of who answers on a loopback port) -----------

RELAY_BUFFER = 1 << 18  # bytes per copy where the platform has no splice
PIPE_SIZE = 1 << 20  # the splice pipe's capacity (Linux's default is 64 KiB)
F_SETPIPE_SZ = 1031  # fcntl.F_SETPIPE_SZ (Python 3.10+ names it; a literal for mypy elsewhere)
OPEN_FILES_WANTED = 4096  # the keeper's relay holds ~5 descriptors a connection


def socket_pump() -> Callable[[socket.socket, socket.socket], None]:
    """What copies one direction of a relayed connection until its end (then ends the other side's
    writing): os.splice through a pipe on Linux (the bytes never enter Python), else large buffers."""
    if current() in (LINUX, WSL) and hasattr(os, "splice"):
        return _splice_pump
    return _copy_pump


def _copy_pump(source: socket.socket, target: socket.socket) -> None:
    buffer = bytearray(RELAY_BUFFER)
    view = memoryview(buffer)
    try:
        while count := source.recv_into(buffer):
            target.sendall(view[:count])
    except OSError:
        pass
    finally:
        _end_writing(target)


def _splice_pump(source: socket.socket, target: socket.socket) -> None:
    if sys.platform != "linux":  # for mypy: os.splice and fcntl are Linux's
        return
    import fcntl
    import selectors

    read_end, write_end = os.pipe()
    try:
        try:
            fcntl.fcntl(write_end, F_SETPIPE_SZ, PIPE_SIZE)
        except OSError:  # a lower /proc/sys/fs/pipe-max-size: the default pipe works too
            pass
        with selectors.DefaultSelector() as ready:
            while count := _splice(source.fileno(), write_end, PIPE_SIZE, ready, selectors.EVENT_READ):
                while count:
                    count -= _splice(read_end, target.fileno(), count, ready, selectors.EVENT_WRITE, target.fileno())
    except OSError:
        pass
    finally:
        os.close(read_end)
        os.close(write_end)
        _end_writing(target)


def _splice(source: int, target: int, count: int, ready, event: int, waited: int | None = None) -> int:
    """One splice; a socket another thread made non-blocking (a timeout) is waited for."""
    if sys.platform != "linux":
        return 0
    waited = source if waited is None else waited
    while True:
        try:
            return os.splice(source, target, count)
        except BlockingIOError:
            ready.register(waited, event)
            try:
                ready.select()
            finally:
                ready.unregister(waited)


def _end_writing(target: socket.socket) -> None:
    try:
        target.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def raise_open_files_limit() -> None:
    """The keeper relays many connections at once: its soft limit on open files goes up to
    OPEN_FILES_WANTED where the hard limit allows (macOS starts at 256); Windows has none to raise."""
    if sys.platform == "win32" or is_windows():
        return
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = OPEN_FILES_WANTED if hard == resource.RLIM_INFINITY else min(OPEN_FILES_WANTED, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError):
            pass


def answered_by(pid: int, connection: socket.socket, within: float = 2.0) -> bool:
    """Whether the other end of this connected loopback TCP socket is a socket of process `pid`
    (one of this user's): a token, and the browser's requests, go only to a process labvm started,
    never to whoever took a port while it was free.  psutil reads the process's own sockets on
    every platform (no privilege needed for a process of one's own).  A connection the process has
    not accepted yet is in no process's hands: asked again for up to `within` seconds."""
    import psutil

    here, there = tuple(connection.getsockname()[:2]), tuple(connection.getpeername()[:2])
    deadline = time.monotonic() + within
    while True:
        try:
            sockets = psutil.Process(pid).net_connections(kind="tcp")
        except (psutil.Error, OSError, ValueError):
            return False
        if any(entry.laddr and entry.raddr and tuple(entry.laddr[:2]) == there and tuple(entry.raddr[:2]) == here
               for entry in sockets):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


def connect_unix(path: Path, timeout: float) -> socket.socket:
    """A blocking connection to a unix socket (OSError when none listens there)."""
    if sys.platform == "win32":  # for mypy: has_unix_sockets() keeps Windows from coming here
        raise OSError("no unix sockets on Windows")
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        connection.settimeout(timeout)
        connection.connect(str(path))
        connection.settimeout(None)
    except OSError:
        connection.close()
        raise
    return connection


def has_unix_sockets() -> bool:
    """Whether this Python can reach an OpenSSH unix-socket forward (not Windows': its OpenSSH
    forwards no unix socket, and its Python has no AF_UNIX)."""
    return not is_windows() and hasattr(socket, "AF_UNIX")
