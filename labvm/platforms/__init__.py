"""The one module that knows which laptop labvm runs on (Linux, macOS, Windows, WSL).

Everything that differs between them goes through here (this package): finding, ending and
detaching processes (processes.py), file locks and private files (permissions.py), desktop
notifications and the browser (desktop.py), the keeper's relay and who answers on a loopback port
(sockets.py).  No other module imports a POSIX-only module (fcntl, pwd, grp, termios, pty,
resource) or reads /proc.

current() decides the platform once; tests switch it with simulating() (a seam of this module,
not an environment variable, so no .env can change what labvm believes it runs on).  Branches
test current(); around a call that one platform lacks they also test sys.platform, which is what
mypy reads: `mypy --platform win32` checks the Windows calls, `--platform darwin` the POSIX ones,
and a call that does not exist there fails the check.  Windows-only constants are read with
getattr fallbacks, so this module imports everywhere.
"""

from __future__ import annotations

import functools
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LINUX, MACOS, WINDOWS, WSL = "linux", "macos", "windows", "wsl"
PLATFORMS = (LINUX, MACOS, WINDOWS, WSL)

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
    """True on Windows itself (not WSL, which is Linux)."""
    return current() == WINDOWS


def ssh_shares_connections() -> bool:
    """OpenSSH's ControlMaster (one login carries other ssh sessions): not in Windows' OpenSSH, whose
    client fails on a control socket ("getsockname failed: Not a socket")."""
    return not is_windows()


def has_unix_sockets() -> bool:
    """Whether this Python can reach an OpenSSH unix-socket forward (not Windows': its OpenSSH
    forwards no unix socket, and its Python has no AF_UNIX)."""
    return not is_windows() and hasattr(socket, "AF_UNIX")


# What the rest of labvm calls, from the parts of this package (they use current() above).
from .desktop import browser_command, has_browser, notification_command, notify, open_browser  # noqa: E402
from .permissions import file_lock, make_private, owned_mode  # noqa: E402
from .processes import (  # noqa: E402
    CREATE_BREAKAWAY_FROM_JOB,
    CREATE_NEW_PROCESS_GROUP,
    CREATE_NO_WINDOW,
    DETACHED_PROCESS,
    can_detach,
    end_processes,
    own_processes,
    parent_pid,
    process_argv,
    spawn_detached,
    windowless,
)
from .sockets import (  # noqa: E402
    _copy_pump,
    answered_by,
    connect_unix,
    raise_open_files_limit,
    socket_pump,
)

__all__ = [
    "LINUX",
    "MACOS",
    "WINDOWS",
    "WSL",
    "PLATFORMS",
    "current",
    "simulating",
    "is_windows",
    "ssh_shares_connections",
    "has_unix_sockets",
    "browser_command",
    "has_browser",
    "notification_command",
    "notify",
    "open_browser",
    "file_lock",
    "make_private",
    "owned_mode",
    "CREATE_BREAKAWAY_FROM_JOB",
    "CREATE_NEW_PROCESS_GROUP",
    "CREATE_NO_WINDOW",
    "DETACHED_PROCESS",
    "can_detach",
    "end_processes",
    "own_processes",
    "parent_pid",
    "process_argv",
    "spawn_detached",
    "windowless",
    "_copy_pump",
    "answered_by",
    "connect_unix",
    "raise_open_files_limit",
    "socket_pump",
]
