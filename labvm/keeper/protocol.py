"""What the keeper and the rest of labvm say to each other, each word in one place.

- The record, ~/.ssh/labvm/run/<profile>.json (0600, written whole): which processes are the
  keeper's, where its control socket listens, its state (`State`, moving only as TRANSITIONS
  allows), since when and why.
- The control channel: a loopback TCP port of the keeper's; a caller sends one line,
  "<secret> <command> [words]", and reads one answer line (`OK`, or why not).  The same on every
  platform: no signals.
- The page's start (labvm.asleep_start): its last line is `URL_LINE` + the lab's URL, and its exit
  status GONE_STATUS says the VM was deleted.
- The files of the run folder: the record, the log, the browser's proof, the sockets of the
  keeper's ssh (its shared login, its forward).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import time
from enum import Enum
from pathlib import Path
from typing import TypedDict, cast

from .. import platforms
from ..files import write_private
from ..text import decode

KEEPER_MODULE = "labvm.keeper"  # `python -m` of it: how a keeper is found among the user's processes
CONNECT_TIMEOUT = 5  # seconds per ssh attempt while the network is gone
ACCEPT_TIMEOUT = 30  # seconds for the first ssh to reach the point where its forward accepts
OWNER_ASK_TIMEOUT = 15  # seconds for the question who holds the VM's port, connection included
WAKE_WITHIN = OWNER_ASK_TIMEOUT + ACCEPT_TIMEOUT  # asleep to up, at most


class State(str, Enum):
    """The keeper's states, as the record names them (TRANSITIONS: the moves between them)."""

    STARTING = "starting"  # ssh connecting: the keeper starts, or wakes
    UP = "up"  # ssh forwards: connections are relayed to the lab
    RECONNECTING = "reconnecting"  # ssh ended (the link or the VM went); tried again every few seconds
    REFUSED = "refused"  # another login of a shared VM holds the remote port: no forward
    ASLEEP = "asleep"  # the VM is stopped: no ssh, the asleep page answers
    GONE = "gone"  # the VM was deleted: the page says so, no Start
    FAILED = "failed"  # the very first connection failed, or the port was taken: the keeper ends


COMING = (State.STARTING, State.RECONNECTING)  # the forward is on its way: connections wait for it
SLEEPING = (State.ASLEEP, State.GONE)  # no ssh: the asleep page answers
AWAKE = (State.STARTING, State.UP, State.RECONNECTING, State.REFUSED)
TRANSITIONS: dict[State, frozenset[State]] = {
    State.STARTING: frozenset({State.STARTING, State.UP, State.RECONNECTING, State.REFUSED, State.FAILED, *SLEEPING}),
    State.UP: frozenset({State.RECONNECTING, State.REFUSED, *SLEEPING}),
    State.RECONNECTING: frozenset({State.RECONNECTING, State.UP, State.REFUSED, *SLEEPING}),
    State.REFUSED: frozenset({State.REFUSED, State.UP, State.RECONNECTING, *SLEEPING}),
    State.ASLEEP: frozenset({State.STARTING, *SLEEPING}),
    State.GONE: frozenset({State.STARTING, *SLEEPING}),
    State.FAILED: frozenset(),
}


class Record(TypedDict, total=False):
    """The record file RUN/<profile>.json (0600): what `inv tunnel`, `status` and `up` read of a keeper."""

    keeper_pid: int
    ssh_pid: int  # 0 while none runs
    local_port: int
    remote_port: int
    control_port: int
    control_secret: str
    state: str  # a State's value
    since: str  # ISO time
    reason: str  # ssh's last line, or why it sleeps
    autostop_asked: str  # ISO time, to the microsecond, of the last answered question about autostop


def record_path(run_dir: Path, profile: str) -> Path:
    """The profile's record file."""
    return run_dir / f"{profile}.json"


def log_path(run_dir: Path, profile: str) -> Path:
    """The profile's keeper log."""
    return run_dir / f"{profile}.log"


def read_record(path: Path) -> Record | None:
    """The record, or None where there is none (or none whole)."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return cast(Record, record) if isinstance(record, dict) else None


def write_record(path: Path, record: Record) -> None:
    """The record written whole (files.write_private: 0600, atomically)."""
    write_private(path, json.dumps(record))


# -- the control channel --------------------------------------------------------------------


class Command(str, Enum):
    """What a keeper is told through its control socket (tell)."""

    RECONNECT = "reconnect"  # a new ssh now, whatever its state; asleep, it wakes
    WAKE = "wake"  # asleep: ssh again
    AUTOSTOP = "autostop"  # ask the VM about autostop now
    SLEEP = "sleep"  # + why: the VM is stopped; ssh ends, the page answers
    LAB = "lab"  # + the lab's URL with its current token (from `inv up`)
    END = "end"  # the keeper ends, and the port is free


OK = "ok"
CONTROL_TIMEOUT = 5  # seconds a caller has for its whole control line, and waits for the answer
CONTROL_LINE_LIMIT = 1024  # bytes of one control line


def read_line(conn: socket.socket, deadline: float) -> str:
    """One control line (without its newline), at most CONTROL_LINE_LIMIT bytes, whole by the deadline."""
    data = b""
    while b"\n" not in data and len(data) < CONTROL_LINE_LIMIT:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no whole line in time")
        conn.settimeout(left)
        chunk = conn.recv(CONTROL_LINE_LIMIT - len(data))
        if not chunk:
            break
        data += chunk
    return decode(data.split(b"\n", 1)[0]).strip()


def tell(port: int, secret: str, command: Command | str, words: str = "") -> str | None:
    """Sends one command to a keeper's control socket; its answer line, or None without one.
    `command` may carry its words already ("sleep stopped by inv down")."""
    line = " ".join(filter(None, [secret, getattr(command, "value", command), words]))
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=CONTROL_TIMEOUT) as conn:
            conn.sendall(f"{line}\n".encode())
            return read_line(conn, time.monotonic() + CONTROL_TIMEOUT) or None
    except OSError:
        return None


# -- the page's start -------------------------------------------------------------------------

START_MODULE = "labvm.asleep_start"  # what the page's Start runs: `inv up` without a browser
URL_LINE = "url: "  # the start's last line, once the lab answers: the lab's URL follows
GONE_STATUS = 3  # the start's exit status when the VM was deleted: no new VM is made from a page


# -- the run folder's sockets and the browser's proof -----------------------------------------

SOCKET_PATH = re.compile(r"[\w./+-]+")  # what ssh takes as a path as it is (no spaces, quotes, %, $, :)
UNIX_PATH_LIMIT = 104  # bytes of a unix socket's path, with its NUL: macOS's sun_path (Linux: 108)
MUX_ADDED = 17  # ssh binds its ControlPath with "." and 16 characters added (mux.c)
PROOF = re.compile(r"[A-Za-z0-9_-]{43}")  # secrets.token_urlsafe(32)


def socket_path(run_dir: Path, name: str, added: int = 0) -> Path | None:
    """RUN_DIR/NAME where ssh can take it as a unix socket's path as it is: no character ssh reads as
    its own syntax (whitespace, quotes, %, $, and : in a forward), and short enough for macOS with
    the `added` characters ssh puts on it while binding."""
    path = run_dir / name
    if not SOCKET_PATH.fullmatch(str(path)) or len(os.fsencode(path)) + added >= UNIX_PATH_LIMIT:
        return None
    return path


def shared_connection(run_dir: Path, profile: str) -> Path | None:
    """Where the keeper's ssh lets another ssh ride its login (a sync: no handshake of its own, 0.2 s
    less on loopback, 0.4 s at a 50 ms round trip); None where the platform's ssh cannot share
    (Windows'), or the path cannot be a socket's."""
    if not platforms.ssh_shares_connections():
        return None
    return socket_path(run_dir, f"{profile}.mux", added=MUX_ADDED)


def forward_socket(run_dir: Path, profile: str) -> Path | None:
    """The unix socket ssh forwards the lab to: in the 0700 run folder, so no other user can connect;
    None where this laptop has no unix-socket forward (Windows) or the path cannot be one."""
    return socket_path(run_dir, f"{profile}.fwd") if platforms.has_unix_sockets() else None


def own_proof(run_dir: Path, profile: str) -> str:
    """What the profile's page takes as proof that a browser is the user's (labvm.asleep): made
    once, kept in a 0600 file of the run folder (0700), so a tab that holds it keeps its Start
    across keepers."""
    path = run_dir / f"{profile}.proof"
    try:
        kept = path.read_text().strip()
        if PROOF.fullmatch(kept):
            return kept
    except OSError:
        pass
    proof = secrets.token_urlsafe(32)
    write_private(path, proof)
    return proof
