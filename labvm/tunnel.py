"""The way in: the system's OpenSSH forwarding 127.0.0.1:LOCAL to 127.0.0.1:REMOTE on the host
(and, for a profile with a cluster, a second local port to the Dask dashboard on the head), kept
alive by labvm.keeper (one detached process per profile, restarting ssh on the same ports).

The keeper's record, ~/.ssh/labvm/run/<profile>.json, says which processes are labvm's; a pid is
ended only after its command line shows it is labvm's keeper or ssh for that profile.  What an
unclean end leaves (a keeper killed with its ssh still running, a stale record, the control
socket and background ssh of the earlier ControlMaster design) is cleared by the next open or
close.  Fabric/paramiko forwarding is never used (measured 31x slower).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from . import platforms
from .config import Profile
from .errors import LabvmError
from .keeper import ACCEPT_TIMEOUT, CONNECT_TIMEOUT, KEEPER_MODULE
from .sshconfig import SshHome
from .text import clean

PORT_SEARCH = 50
ANSWER_WITHIN = 3  # seconds an authorised request through a healthy tunnel needs, at most
REPLACE_TIMEOUT = 2 * CONNECT_TIMEOUT + 10  # seconds for a replaced ssh to carry requests again
LOG_LIMIT = 1 << 20  # a keeper's log starts over beyond this many bytes

# Requests to 127.0.0.1 never go through a proxy (http_proxy without no_proxy is common on lab
# networks, and urllib honours it for 127.0.0.1).
LOOPBACK = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class Tunnel:
    local_port: int
    remote_port: int
    pid: int  # the ssh carrying the forward; 0 while none runs
    state: str = "up"  # "up", "starting", "reconnecting since 14:02:11 (reason)", "stopped: VM stopped"
    keeper_pid: int = 0
    dashboard_port: int = 0  # the local port of the head's Dask dashboard; 0 without a cluster

    @property
    def is_up(self) -> bool:
        return self.state == "up"


def port_free(port: int) -> bool:
    with socket.socket() as s:
        if os.name != "nt":
            # As ssh binds its forward: closed connections in TIME_WAIT do not make the port busy.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True








def _local_time(iso: str) -> str:
    try:
        return datetime.fromisoformat(iso).astimezone().strftime("%H:%M:%S")
    except ValueError:
        return iso


class Tunnels:
    def __init__(self, ssh: SshHome):
        self.ssh = ssh

    # -- what is labvm's -----------------------------------------------------------------

    def _record_path(self, profile: Profile) -> Path:
        return self.ssh.run / f"{profile.name}.json"

    def _read_record(self, profile: Profile) -> dict | None:
        try:
            return json.loads(self._record_path(profile).read_text())
        except (OSError, ValueError):
            return None

    def control_socket(self, profile: Profile) -> Path:
        """The earlier design's ControlMaster socket: nothing opens it now; open and close remove
        a stale one, and a sync passing it finds none and opens its own connection."""
        return self.ssh.run / f"{profile.name}.sock"

    def _is_keeper(self, pid: int, profile: Profile) -> bool:
        argv = platforms.process_argv(pid) if pid else []
        if KEEPER_MODULE not in argv:
            return False
        rest = argv[argv.index(KEEPER_MODULE) + 1:]
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
            kept = "ControlPath=none" in argv and str(self.ssh.user_config) in argv
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
            platforms.end_processes([keeper])  # it ends its ssh itself
        strays = self._strays(profile)
        platforms.end_processes(strays)
        self.control_socket(profile).unlink(missing_ok=True)
        self._record_path(profile).unlink(missing_ok=True)
        return bool(ended or strays)

    # -- the API the session uses ----------------------------------------------------------

    def find(self, profile: Profile) -> Tunnel | None:
        """The kept tunnel (any state), or one whose keeper stopped and said why; None otherwise."""
        record = self._read_record(profile)
        if not record or "keeper_pid" not in record:
            return None
        alive = self._is_keeper(int(record["keeper_pid"]), profile)
        if not alive and record.get("state") != "stopped":
            return None  # stale: cleared by the next open or close
        return Tunnel(int(record["local_port"]), int(record["remote_port"]),
                      int(record.get("ssh_pid") or 0) if alive else 0, _describe(record),
                      int(record["keeper_pid"]) if alive else 0, int(record.get("dashboard_local_port") or 0))

    def open(self, profile: Profile, remote_port: int) -> Tunnel:
        """Starts (or finds) the profile's keeper; returns once its forwards accept."""
        current = self.find(profile)
        dashboard = _dashboard_remote_port(profile)
        previous = self._read_record(profile) or {}
        forwards = (int(previous.get("remote_port") or 0), int(previous.get("dashboard_remote_port") or 0))
        if current and current.keeper_pid and forwards == (remote_port, dashboard):
            if not current.is_up:
                current = self._reconnect(profile, current)
            print(f"tunnel: already open, 127.0.0.1:{current.local_port} -> host port {remote_port}"
                  f"{_dashboard_words(current.dashboard_port, dashboard)} ({current.state})")
            return current
        self._clear(profile)
        local_port = self._local_port(profile, int(previous.get("local_port") or 0))
        dashboard_port = self._dashboard_local_port(int(previous.get("dashboard_local_port") or 0), dashboard,
                                                    local_port) if dashboard else 0
        self._start_keeper(profile, local_port, remote_port, dashboard_port, dashboard)
        record = self._wait_for(profile, lambda r: r.get("state") != "starting", ACCEPT_TIMEOUT + 10)
        if not record or record.get("state") != "up":
            reason = (record or {}).get("reason") or "the keeper did not start (see its log)"
            self._clear(profile)
            raise LabvmError(f"tunnel to {profile.alias} failed: {clean(reason)} (log: {self._log_path(profile)})")
        print(f"tunnel: 127.0.0.1:{local_port} -> host port {remote_port}"
              f"{_dashboard_words(dashboard_port, dashboard)} "
              f"(kept by pid {record['keeper_pid']}, ssh pid {record['ssh_pid']})")
        return self.find(profile)

    def ensure(self, profile: Profile, remote_port: int, token: str) -> Tunnel:
        """open(), then an authorised /api/status must answer through it within a few seconds;
        else its ssh is replaced, whatever its state says (a stalled link looks healthy)."""
        tunnel = self.open(profile, remote_port)
        if answers(tunnel.local_port, token, ANSWER_WITHIN):
            return tunnel
        print(f"tunnel: no answer through 127.0.0.1:{tunnel.local_port} within {ANSWER_WITHIN}s; "
              f"replacing its ssh")
        tunnel = self._reconnect(profile, tunnel)
        wait_until_answering(tunnel.local_port, token, REPLACE_TIMEOUT)
        return tunnel

    def close(self, profile: Profile) -> bool:
        """Ends the keeper and its ssh (and what an unclean end left); True if any ran."""
        return self._clear(profile)

    # -- helpers ----------------------------------------------------------------------------

    def _reconnect(self, profile: Profile, tunnel: Tunnel) -> Tunnel:
        """Asks the keeper for a new ssh now; waits until it is up (or the wait is over)."""
        try:
            os.kill(tunnel.keeper_pid, signal.SIGUSR1)
        except ProcessLookupError:
            pass
        self._wait_for(profile, lambda r: r.get("state") == "up" and r.get("ssh_pid") != tunnel.pid,
                       REPLACE_TIMEOUT)
        return self.find(profile) or tunnel

    def _wait_for(self, profile: Profile, condition, timeout: float) -> dict | None:
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
        """The port the browser used last (kept across restarts), else notebook.local_port, else
        the next free one."""
        return _pick_port(previous, profile.notebook.local_port, "", (),
                          f"set profiles.{profile.name}.notebook.local_port")

    def _dashboard_local_port(self, previous: int, wanted: int, notebook_port: int) -> int:
        """The same rule for the Dask dashboard: the port used last, else its own port number
        (8787, as on the head), else the next free one."""
        return _pick_port(previous, wanted, " (the Dask dashboard)", (notebook_port,),
                          "end what listens there (`ss -ltnp` lists them)")

    def _log_path(self, profile: Profile) -> Path:
        return self.ssh.run / f"{profile.name}.log"

    def _start_keeper(self, profile: Profile, local_port: int, remote_port: int, dashboard_local_port: int,
                      dashboard_remote_port: int) -> None:
        log = self._log_path(profile)
        mode = "w" if log.exists() and log.stat().st_size > LOG_LIMIT else "a"
        package_root = str(Path(__file__).resolve().parent.parent)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
        with open(log, mode) as out:
            platforms.spawn_detached(
                [sys.executable, "-m", KEEPER_MODULE, profile.name, str(local_port), str(remote_port),
                 str(self.ssh.run), str(self.ssh.user_config), profile.alias, str(profile.source),
                 str(dashboard_local_port), str(dashboard_remote_port)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=str(self.ssh.run),
                env=env, close_fds=True,
            )


def _pick_port(previous: int, wanted: int, what: str, taken: tuple[int, ...], remedy: str) -> int:
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
        raise LabvmError(f"tunnel: local ports {wanted}-{search[-1]}{what} are all busy; {remedy}")
    if port != wanted:
        print(f"tunnel: local port {wanted}{what} is busy; using {port} instead")
    return port


def _dashboard_remote_port(profile: Profile) -> int:
    """The head's Dask dashboard port for a profile with a cluster; 0 otherwise."""
    if profile.cluster is None:
        return 0
    from .cluster import DASHBOARD_PORT  # here, not at the top: labvm.cluster loads Fabric

    return DASHBOARD_PORT


def _dashboard_words(local_port: int, remote_port: int) -> str:
    return f", 127.0.0.1:{local_port} -> dashboard port {remote_port}" if remote_port else ""




def _describe(record: dict) -> str:
    """The keeper's state in words; its reason quotes ssh (and so a jump host or the VM): cleaned."""
    state = clean(str(record.get("state", "")))
    reason = clean(str(record.get("reason") or ""))
    if state == "reconnecting":
        return f"reconnecting since {_local_time(record.get('since', ''))}" + (f" ({reason})" if reason else "")
    if state in ("stopped", "failed", "refused"):
        return f"{state}: {reason}"
    return state


def answers(port: int, token: str, within: float) -> bool:
    """An authorised /api/status answers through 127.0.0.1:port within so many seconds."""
    try:
        wait_until_answering(port, token, within)
        return True
    except LabvmError:
        return False


def wait_until_answering(port: int, token: str, timeout: float = 20) -> None:
    """Until an authorised /api/status answers through the tunnel (it accepts before that)."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/status")
    request.add_header("Authorization", f"token {token}")
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        try:
            with LOOPBACK.open(request, timeout=max(0.5, min(5, left))):
                return
        except OSError as e:  # HTTPError included
            error = e
        if time.monotonic() > deadline:
            raise LabvmError(f"tunnel: Jupyter did not answer on 127.0.0.1:{port} ({clean(str(error))})")
        time.sleep(0.1)
