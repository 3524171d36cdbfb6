"""The keeper's relay and the checks of who answers on a loopback port, on every laptop."""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

from . import LINUX, WSL, current, is_windows

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
        if any(
            entry.laddr and entry.raddr and tuple(entry.laddr[:2]) == there and tuple(entry.raddr[:2]) == here
            for entry in sockets
        ):
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
