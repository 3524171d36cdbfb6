"""File locks and private files on every laptop (fcntl or msvcrt; a mode or an ACL)."""

from __future__ import annotations

import getpass
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import LabvmError
from . import is_windows
from .processes import _posix_uid


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
        raise LabvmError(
            f"{path}: could not set its permissions ({e.strerror}); run: "
            f'icacls "{path}" /inheritance:r /grant:r "%USERNAME%:F"'
        ) from None
    if result.returncode != 0:
        raise LabvmError(
            f"{path}: icacls refused ({(result.stdout + result.stderr).strip()[:200]}); run: "
            f'icacls "{path}" /inheritance:r /grant:r "%USERNAME%:F"'
        )


def owned_mode(path: Path) -> tuple[bool, int] | None:
    """(whether this user owns the file, its permission bits) where those mean something;
    None on Windows, where an ACL decides (make_private sets it)."""
    if is_windows():
        return None
    info = path.stat()
    return info.st_uid == _posix_uid(), info.st_mode & 0o777
