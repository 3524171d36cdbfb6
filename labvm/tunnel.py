"""The way in: the system's OpenSSH forwarding 127.0.0.1:LOCAL to 127.0.0.1:REMOTE on the host.

The tunnel is an OpenSSH control master (`-M -S socket`) in the background, so
`ssh -O check` finds it and `ssh -O exit` ends it: no pid guessing.  Fabric/paramiko
forwarding is never used (measured 31x slower).
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .config import Profile
from .errors import LabvmError
from .sshconfig import SshHome

PORT_SEARCH = 50


@dataclass(frozen=True)
class Tunnel:
    local_port: int
    remote_port: int
    pid: int


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class Tunnels:
    def __init__(self, ssh: SshHome):
        self.ssh = ssh

    def _socket(self, profile: Profile) -> str:
        path = str(self.ssh.run / f"{profile.name}.sock")
        if len(path) > 85:  # sun_path is 108 bytes and OpenSSH adds a 17-byte suffix
            raise LabvmError(f"{path}: too long for a control socket; set LABVM_SSH_DIR to a shorter path")
        return path

    def control_socket(self, profile: Profile) -> Path:
        """Where the tunnel's master connection listens; other OpenSSH clients may share it."""
        return Path(self._socket(profile))

    def _record(self, profile: Profile):
        return self.ssh.run / f"{profile.name}.json"

    def _control(self, profile: Profile, operation: str) -> subprocess.CompletedProcess:
        command = self.ssh.ssh_command(profile, "-S", self._socket(profile), "-O", operation)
        return subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL)

    def find(self, profile: Profile) -> Tunnel | None:
        record = self._record(profile)
        if not record.exists():
            return None
        check = self._control(profile, "check")
        match = re.search(r"pid=(\d+)", check.stderr)
        if check.returncode != 0 or not match:
            record.unlink(missing_ok=True)
            return None
        ports = json.loads(record.read_text())
        return Tunnel(ports["local_port"], ports["remote_port"], int(match.group(1)))

    def open(self, profile: Profile, remote_port: int) -> Tunnel:
        current = self.find(profile)
        if current and current.remote_port == remote_port:
            print(f"tunnel: already open, 127.0.0.1:{current.local_port} -> host port {remote_port}")
            return current
        if current:
            self.close(profile)
        wanted = profile.notebook.local_port
        local_port = next(
            (p for p in range(wanted, min(wanted + PORT_SEARCH, 65536)) if port_free(p)), None
        )
        if local_port is None:
            raise LabvmError(
                f"tunnel: local ports {wanted}-{wanted + PORT_SEARCH - 1} are all busy; "
                f"set profiles.{profile.name}.notebook.local_port"
            )
        if local_port != wanted:
            print(f"tunnel: local port {wanted} is busy; using {local_port} instead")
        command = self.ssh.ssh_command(
            profile,
            "-f", "-N", "-M", "-S", self._socket(profile),
            "-o", "ControlPersist=no",
            "-o", "ExitOnForwardFailure=yes",
            "-o", "BatchMode=yes",
            "-o", "ConnectTimeout=10",
            "-L", f"127.0.0.1:{local_port}:127.0.0.1:{remote_port}",
        )
        # A file, not a pipe: the backgrounded ssh (and a ProxyJump child) keep stderr open.
        with tempfile.TemporaryFile("w+") as errors:
            result = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errors)
            errors.seek(0)
            messages = errors.read().strip()
        if result.returncode != 0:
            reason = messages.splitlines()[-1] if messages else "no output"
            raise LabvmError(f"tunnel to {profile.alias} failed: {reason}")
        self._record(profile).write_text(
            json.dumps({"local_port": local_port, "remote_port": remote_port})
        )
        tunnel = self.find(profile)
        if tunnel is None:
            raise LabvmError(f"tunnel to {profile.alias} exited right after starting")
        print(f"tunnel: 127.0.0.1:{local_port} -> host port {remote_port} (ssh pid {tunnel.pid})")
        return tunnel

    def close(self, profile: Profile) -> bool:
        if not self.find(profile):
            return False
        self._control(profile, "exit")
        self._record(profile).unlink(missing_ok=True)
        return True


def wait_until_answering(port: int, token: str, timeout: float = 20) -> None:
    """Until an authorised /api/status answers through the tunnel (it accepts before that)."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/status")
    request.add_header("Authorization", f"token {token}")
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(request, timeout=5):
                return
        except OSError as e:  # HTTPError included
            error = e
        if time.monotonic() > deadline:
            raise LabvmError(f"tunnel: Jupyter did not answer on 127.0.0.1:{port} ({error})")
        time.sleep(0.1)
