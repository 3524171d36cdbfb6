"""The way in: 127.0.0.1:LOCAL on the laptop to 127.0.0.1:REMOTE on the host (one forward, also for
a profile with a cluster: its Dask dashboard is inside JupyterLab), held by labvm.keeper (one
detached process per profile: it holds the local port for good, labvm.gate, and relays it to the
system's OpenSSH forward, restarting ssh when it dies).

The keeper's record, ~/.ssh/labvm/run/<profile>.json, says which processes are labvm's and
where the keeper's control socket listens (labvm.keeper.tell: reconnect, wake, sleep, lab, end;
no signals); a pid is ended only after its command line shows it is labvm's keeper or ssh for
that profile.  What an unclean end leaves (a keeper killed with its ssh still running, a stale
record, a forward's socket, the control socket and background ssh of the earlier ControlMaster
design) is cleared by the next open or close.  A token goes only to the keeper's own socket
(wait_until_answering).  Fabric/paramiko forwarding is never used (measured 31x slower).

A profile's local port is its own for good: ~/.ssh/labvm/run/ports.json remembers it (close
leaves it), so `down` then `up` gives the URL the browser's tab already has.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from . import platforms
from .config import Profile
from .errors import LabvmError
from .gate import port_free
from .files import write_private
from .keeper import (
    ACCEPT_TIMEOUT,
    CONNECT_TIMEOUT,
    KEEPER_MODULE,
    OK,
    SLEEPING,
    WAKE_WITHIN,
    Command,
    Record,
    State,
    forward_socket,
    log_path,
    read_record,
    record_path,
    shared_connection,
    tell,
)
from .sshconfig import SshHome
from .text import clean

PORT_SEARCH = 50
ANSWER_WITHIN = 3  # seconds an authorised request through a healthy tunnel needs, at most
REPLACE_TIMEOUT = 2 * CONNECT_TIMEOUT + 10  # seconds for a replaced ssh to carry requests again
LOG_LIMIT = 1 << 20  # a keeper's log starts over beyond this many bytes
END_WAIT = 10  # seconds for a keeper told to end to go (it ends its ssh first) before it is killed
SLEEP_WAIT = 10  # seconds for a keeper told to sleep to serve its page


@dataclass(frozen=True)
class Tunnel:
    """A profile's kept tunnel, as its keeper's record says it is."""

    local_port: int
    remote_port: int
    pid: int  # the ssh carrying the forward; 0 while none runs
    state: str = "up"  # "up", "starting", "reconnecting since 14:02:11 (reason)", "asleep: stopped by inv down"
    keeper_pid: int = 0

    @property
    def is_up(self) -> bool:
        """The forward carries requests now (not starting, reconnecting or asleep)."""
        return self.state == "up"


def _local_time(iso: str) -> str:
    try:
        return datetime.fromisoformat(iso).astimezone().strftime("%H:%M:%S")
    except ValueError:
        return iso


class Tunnels:
    """The keepers of every profile under one SSH home: found, opened, told and closed through their
    records and control sockets (labvm.keeper)."""

    def __init__(self, ssh: SshHome):
        self.ssh = ssh
        self.say_woken = True  # open() says it found a keeper it woke (`inv tunnel`); `up` says the URL instead

    # -- what is labvm's -----------------------------------------------------------------

    def _record_path(self, profile: Profile) -> Path:
        return record_path(self.ssh.run, profile.name)

    def _read_record(self, profile: Profile) -> Record | None:
        return read_record(self._record_path(profile))

    def control_socket(self, profile: Profile) -> Path:
        """The earlier design's ControlMaster socket: nothing opens it now; open and close remove a stale one."""
        return self.ssh.run / f"{profile.name}.sock"

    def _is_keeper(self, pid: int, profile: Profile) -> bool:
        argv = platforms.process_argv(pid) if pid else []
        if KEEPER_MODULE not in argv:
            return False
        rest = argv[argv.index(KEEPER_MODULE) + 1 :]
        return len(rest) >= 4 and rest[0] == profile.name and rest[3] == str(self.ssh.run)

    def _strays(self, profile: Profile) -> list[int]:
        """labvm's ssh for this profile with no keeper of labvm's above it: a kept tunnel's ssh
        whose keeper was killed, or a master (or failed master) of the ControlMaster design."""
        sock = str(self.control_socket(profile))
        found = []
        for pid, argv in platforms.own_processes().items():
            if not argv or Path(argv[0]).name != "ssh" or argv[-1] != profile.alias or "-N" not in argv:
                continue
            old_design = sock in argv
            kept = ("ControlPath=none" in argv or "ControlMaster=yes" in argv) and (
                str(self.ssh.user_config) in argv or str(self.ssh.config) in argv
            )
            if (old_design or kept) and not self._is_keeper(platforms.parent_pid(pid), profile):
                found.append(pid)
        return found

    def _clear(self, profile: Profile) -> bool:
        """Ends labvm's keeper and ssh for the profile and removes their files; True if any ran."""
        record = self._read_record(profile) or {}
        ended = []
        keeper = int(record.get("keeper_pid") or 0)
        if self._is_keeper(keeper, profile):
            ended.append(keeper)
            # Told through its control socket, it ends its ssh and goes; killed only when it does not.
            if self._tell(record, Command.END) != OK or not self._ends(keeper, profile, END_WAIT):
                platforms.end_processes([keeper])
        strays = self._strays(profile)
        platforms.end_processes(strays)
        self.control_socket(profile).unlink(missing_ok=True)
        for left in (shared_connection(self.ssh.run, profile.name), forward_socket(self.ssh.run, profile.name)):
            if left:  # the kept ssh's, if it was killed before it could remove it
                left.unlink(missing_ok=True)
        self._record_path(profile).unlink(missing_ok=True)
        return bool(ended or strays)

    # -- the API the session uses ----------------------------------------------------------

    def shared_connection(self, profile: Profile) -> Path | None:
        """The kept tunnel's login, for another ssh to ride (labvm.keeper.shared_connection): its socket
        while the tunnel is up, else None (that ssh then logs in itself)."""
        tunnel = self.find(profile)
        shared = shared_connection(self.ssh.run, profile.name)
        return shared if tunnel and tunnel.is_up and shared and shared.exists() else None

    def find(self, profile: Profile) -> Tunnel | None:
        """The kept tunnel (any state), or one whose keeper stopped and said why; None otherwise."""
        record = self._read_record(profile)
        if not record or "keeper_pid" not in record:
            return None
        if not self._is_keeper(int(record["keeper_pid"]), profile):
            return None  # stale: cleared by the next open or close
        return Tunnel(
            int(record["local_port"]),
            int(record["remote_port"]),
            int(record.get("ssh_pid") or 0),
            _describe(record),
            int(record["keeper_pid"]),
        )

    def _kept(self, profile: Profile, remote_port: int) -> Tunnel | None:
        """The profile's keeper, where it forwards (or would) to this remote port; else None."""
        current = self.find(profile)
        record = self._read_record(profile) or {}
        if current and int(record.get("remote_port") or 0) == remote_port and record.get("control_port"):
            return current
        return None

    def open(self, profile: Profile, remote_port: int) -> Tunnel:
        """Starts (or finds) the profile's keeper; returns once its forward accepts."""
        current = self._kept(profile, remote_port)
        if current:
            woken = not current.is_up
            if woken:  # asleep too: woken, its port goes from the page to ssh
                current = self._reconnect(profile, current)
            if not woken or self.say_woken:
                print(
                    f"tunnel: already open, 127.0.0.1:{current.local_port} -> host port {remote_port} ({current.state})"
                )
            return current
        previous = self._read_record(profile) or {}
        self._clear(profile)
        local_port = self._local_port(profile, int(previous.get("local_port") or 0))
        self._remember_port(profile, local_port)
        self._start_keeper(profile, local_port, remote_port)
        record = self._wait_for(profile, lambda r: r.get("state") != State.STARTING, ACCEPT_TIMEOUT + 10)
        if not record or record.get("state") != State.UP:
            reason = (record or {}).get("reason") or "the keeper did not start (see its log)"
            self._clear(profile)
            raise LabvmError(f"tunnel to {profile.alias} failed: {clean(reason)} (log: {self._log_path(profile)})")
        print(
            f"tunnel: 127.0.0.1:{local_port} -> host port {remote_port} "
            f"(kept by pid {record['keeper_pid']}, ssh pid {record['ssh_pid']})"
        )
        opened = self.find(profile)
        if opened is None:
            raise LabvmError(f"tunnel to {profile.alias}: its keeper ended at once (log: {self._log_path(profile)})")
        return opened

    def ensure(self, profile: Profile, remote_port: int, token: str) -> Tunnel:
        """open(), then an authorised /api/status must answer through it within a few seconds;
        else its ssh is replaced, whatever its state says (a stalled link looks healthy).  The
        token goes only to the keeper itself (labvm.platforms.answered_by).  A tunnel `up` has just
        opened is not opened again (nor said again)."""
        kept = self._kept(profile, remote_port)
        tunnel = kept if kept and kept.is_up else self.open(profile, remote_port)
        if answers(tunnel.local_port, token, tunnel.keeper_pid, ANSWER_WITHIN):
            return tunnel
        print(f"tunnel: no answer through 127.0.0.1:{tunnel.local_port} within {ANSWER_WITHIN}s; replacing its ssh")
        tunnel = self._reconnect(profile, tunnel)
        wait_until_answering(tunnel.local_port, token, tunnel.keeper_pid, REPLACE_TIMEOUT)
        return tunnel

    def tell_url(self, profile: Profile, url: str) -> None:
        """The lab's URL, with its token, to the keeper: its asleep page moves a tab there, and a
        browser that opens it gets the page's proof (labvm.asleep)."""
        record = self._read_record(profile) or {}
        if self._is_keeper(int(record.get("keeper_pid") or 0), profile):
            self._tell(record, Command.LAB, url)

    def close(self, profile: Profile) -> bool:
        """Ends the keeper and its ssh, or its asleep page (and what an unclean end left); True
        if any ran.  The profile keeps its local port (ports.json)."""
        return self._clear(profile)

    def sleep(self, profile: Profile, why: str) -> bool:
        """Tells a running keeper its VM is stopped (why: "stopped by inv down"): it ends ssh and
        serves the asleep page on the same port.  True if a keeper was told (and now serves it)."""
        record = self._read_record(profile) or {}
        if not self._is_keeper(int(record.get("keeper_pid") or 0), profile):
            return False
        if self._tell(record, Command.SLEEP, why) != OK:
            return False
        now = self._wait_for(profile, lambda r: r.get("state") in SLEEPING, SLEEP_WAIT)
        return bool(now and now.get("state") in SLEEPING)

    # -- helpers ----------------------------------------------------------------------------

    def _reconnect(self, profile: Profile, tunnel: Tunnel) -> Tunnel:
        """Asks the keeper for a new ssh now (an asleep one hands its page's port over to ssh);
        waits until it is up (or the wait is over)."""
        record = self._read_record(profile) or {}
        self._tell(record, Command.RECONNECT)
        if record.get("state") in SLEEPING:
            # Up, or a first attempt failed (the VM does not run): the state says which.
            self._wait_for(profile, lambda r: r.get("state") not in (*SLEEPING, State.STARTING), WAKE_WITHIN)
        else:
            self._wait_for(
                profile, lambda r: r.get("state") == State.UP and r.get("ssh_pid") != tunnel.pid, REPLACE_TIMEOUT
            )
        return self.find(profile) or tunnel

    def _tell(self, record: Record, command: Command, words: str = "") -> str | None:
        """One command to the keeper of this record (found alive by the caller); its answer."""
        port, secret = int(record.get("control_port") or 0), str(record.get("control_secret") or "")
        return tell(port, secret, command, words) if port and secret else None

    def _ends(self, keeper: int, profile: Profile, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self._is_keeper(keeper, profile):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def _wait_for(self, profile: Profile, condition, timeout: float) -> Record | None:
        deadline = time.monotonic() + timeout
        while True:
            record = self._read_record(profile)
            keeper = int((record or {}).get("keeper_pid") or 0)
            if record and (condition(record) or not self._is_keeper(keeper, profile)):
                return record
            if time.monotonic() > deadline:
                return record
            time.sleep(0.05)

    def _local_port(self, profile: Profile, previous: int) -> int:
        """The profile's own port (ports.json: the one its first `up` took, for as long as
        notebook.local_port stays what it was then), else the port the browser used last, else
        notebook.local_port, else the next free one that is no other profile's."""
        remembered = self._remembered_ports()
        own = remembered.get(profile.name, {})
        mine = own.get("port") if own.get("wanted") == profile.notebook.local_port else 0
        others = tuple(entry["port"] for name, entry in remembered.items() if name != profile.name)
        return _pick_port(
            mine or previous, profile.notebook.local_port, others, f"set profiles.{profile.name}.notebook.local_port"
        )

    def _ports_path(self) -> Path:
        return self.ssh.run / "ports.json"

    def _remembered_ports(self) -> dict[str, dict]:
        """{profile: {"port": its local port, "wanted": notebook.local_port then}}; entries that
        are not that are left out."""
        try:
            data = json.loads(self._ports_path().read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict):
            return {}
        return {
            name: entry
            for name, entry in data.items()
            if isinstance(entry, dict)
            and all(type(entry.get(key)) is int and 0 < entry[key] < 65536 for key in ("port", "wanted"))
        }

    def _remember_port(self, profile: Profile, port: int) -> None:
        with platforms.file_lock(self.ssh.run / "ports.lock"):  # another profile's `up` may write too
            remembered = self._remembered_ports()
            entry = {"port": port, "wanted": profile.notebook.local_port}
            if remembered.get(profile.name) != entry:
                write_private(self._ports_path(), json.dumps({**remembered, profile.name: entry}))

    def _log_path(self, profile: Profile) -> Path:
        return log_path(self.ssh.run, profile.name)

    def _start_keeper(self, profile: Profile, local_port: int, remote_port: int) -> None:
        log = self._log_path(profile)
        mode = "w" if log.exists() and log.stat().st_size > LOG_LIMIT else "a"
        package_root = str(Path(__file__).resolve().parent.parent)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
        with open(log, mode) as out:
            platforms.spawn_detached(
                [
                    sys.executable,
                    "-m",
                    KEEPER_MODULE,
                    profile.name,
                    str(local_port),
                    str(remote_port),
                    str(self.ssh.run),
                    str(self.ssh.user_config),
                    profile.alias,
                    str(profile.source),
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=str(self.ssh.run),
                env=env,
                close_fds=True,
            )


def _pick_port(previous: int, wanted: int, taken: tuple[int, ...], remedy: str) -> int:
    """previous when it is free again (a killed ssh may hold it for a moment), else wanted, else
    the next free port after it that is not taken."""
    if previous:
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            if port_free(previous):
                return previous
            time.sleep(0.05)
    search = range(wanted, min(wanted + PORT_SEARCH, 65536))
    port = next((p for p in search if p not in taken and port_free(p)), None)
    if port is None:
        raise LabvmError(f"tunnel: local ports {wanted}-{search[-1]} are all busy; {remedy}")
    if port != wanted:
        print(f"tunnel: local port {wanted} is busy; using {port} instead")
    return port


def _describe(record: Record) -> str:
    """The keeper's state in words; its reason quotes ssh (and so a jump host or the VM): cleaned."""
    state = clean(str(record.get("state", "")))
    reason = clean(str(record.get("reason") or ""))
    if state == "reconnecting":
        return f"reconnecting since {_local_time(record.get('since', ''))}" + (f" ({reason})" if reason else "")
    if state in ("failed", "refused"):
        return f"{state}: {reason}"
    if state == "asleep":
        return f"asleep: {reason} (its URL has a Start button)"
    if state == "gone":
        return f"gone: {reason}"
    return state


def answers(port: int, token: str, peer: int, within: float) -> bool:
    """An authorised /api/status answers through 127.0.0.1:port within so many seconds."""
    try:
        wait_until_answering(port, token, peer, within)
        return True
    except NotOurs:
        raise
    except LabvmError:
        return False


class NotOurs(LabvmError):
    """Something else than labvm's process answers on the port: no token goes there."""


def wait_until_answering(port: int, token: str, peer: int, timeout: float = 20) -> None:
    """Until an authorised /api/status answers on 127.0.0.1:port (a tunnel accepts before that).
    peer: the process that must hold the other end (the keeper, or the local profile's Jupyter):
    the token goes to no other, whoever took the port (labvm.platforms.answered_by).  http.client:
    no proxy (http_proxy without no_proxy is common on lab networks)."""
    import http.client  # here: http.client, ssl and email are no part of the tasks that never wait

    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=max(0.5, min(5, left)))
        try:
            connection.connect()
            if not platforms.answered_by(peer, connection.sock):
                raise NotOurs(
                    f"tunnel: 127.0.0.1:{port} is answered by another program than labvm's "
                    f"(pid {peer} is not at its other end): no token sent there; `inv down` then "
                    f"`inv up` gives the profile a port of its own"
                )
            connection.request("GET", "/api/status", headers={"Authorization": f"token {token}"})
            status = connection.getresponse().status
            if status == 200:
                return
            error = f"HTTP {status}"
        except OSError as e:
            error = str(e)
        finally:
            connection.close()
        if time.monotonic() > deadline:
            raise LabvmError(f"tunnel: Jupyter did not answer on 127.0.0.1:{port} ({clean(error)})")
        time.sleep(0.1)
