"""The tunnel keeper: one small detached process per profile on the laptop.

    python -m labvm.keeper PROFILE LOCAL_PORT REMOTE_PORT

It runs the system's OpenSSH in the foreground (`ssh -N -L 127.0.0.1:L:127.0.0.1:R`, no
ControlMaster, so Windows' OpenSSH serves too), with keep-alives that notice a dead link within
45 s, and starts it again on the SAME local port with a backoff capped at a few seconds, so the
browser's URL stays valid and the link is back within seconds of the network.  It never starts
a VM: for a cloud profile, after repeated failures it asks the provider whether the VM still
runs and stops trying when it is stopped or gone.  SIGTERM ends it and its ssh; SIGUSR1 makes
it replace its ssh at once (what `inv up` does to a tunnel that does not answer).

Its state is one JSON file, ~/.ssh/labvm/run/<profile>.json (written whole, atomically):
keeper_pid, ssh_pid, local_port, remote_port, state ("starting", "up", "reconnecting",
"stopped", "failed"), since (ISO time), reason (ssh's last line, or why it stopped).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

KEEPALIVE_INTERVAL = 10  # seconds; 3 missed answers end ssh: a dead link is noticed in 30-40 s
KEEPALIVE_COUNT = 3
CONNECT_TIMEOUT = 5  # seconds per attempt while the network is gone
BACKOFF_FIRST, BACKOFF_CAP = 0.5, 3.0  # attempt every <= 8 s: back within 10 s of the network
ASK_CLOUD_AFTER = 3  # failed attempts in a row before asking the cloud whether the VM still runs
ASK_CLOUD_EVERY = 60  # seconds between those questions
ACCEPT_TIMEOUT = 30  # seconds for the first ssh to reach the point where its forward accepts
KEEPER_MODULE = "labvm.keeper"


def now_iso() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def write_state(path: Path, state: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(state, f)
    os.replace(tmp, path)


def ssh_command(ssh_config: str, alias: str, local_port: int, remote_port: int) -> list[str]:
    return [
        "ssh", "-F", ssh_config, "-N",
        "-o", "ControlMaster=no", "-o", "ControlPath=none",
        "-o", "ExitOnForwardFailure=yes",
        "-o", f"ServerAliveInterval={KEEPALIVE_INTERVAL}",
        "-o", f"ServerAliveCountMax={KEEPALIVE_COUNT}",
        "-o", "BatchMode=yes",
        "-o", f"ConnectTimeout={CONNECT_TIMEOUT}",
        "-L", f"127.0.0.1:{local_port}:127.0.0.1:{remote_port}",
        alias,
    ]


def forward_accepts(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def notify(title: str, message: str) -> None:
    """A desktop notification where the system has one (best effort)."""
    if shutil.which("notify-send"):
        subprocess.run(["notify-send", title, message], stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10, check=False)


class Keeper:
    def __init__(self, profile: str, local_port: int, remote_port: int, run_dir: Path, ssh_config: str,
                 alias: str, hosts: str):
        self.profile, self.local_port, self.remote_port = profile, local_port, remote_port
        self.record = run_dir / f"{profile}.json"
        self.ssh_config, self.alias, self.hosts = ssh_config, alias, hosts
        self.child: subprocess.Popen | None = None
        self.last_line = ""
        self.stopping = False
        self.wake = threading.Event()
        self.state = {"keeper_pid": os.getpid(), "ssh_pid": 0, "local_port": local_port,
                      "remote_port": remote_port, "state": "starting", "since": now_iso(), "reason": ""}

    def log(self, line: str) -> None:
        print(f"{now_iso()} {line}", flush=True)

    def set_state(self, state: str, reason: str = "", keep_since: bool = False) -> None:
        if not (keep_since and self.state["state"] == state):
            self.state["since"] = now_iso()
        self.state.update(state=state, reason=reason, ssh_pid=self.child.pid if self.child else 0)
        write_state(self.record, self.state)
        self.log(f"{state}{': ' + reason if reason else ''}")

    # -- signals -----------------------------------------------------------------------

    def on_term(self, *_):
        self.stopping = True
        self.end_child()
        self.wake.set()

    def on_reconnect(self, *_):
        """`inv up` found the tunnel not answering: a new ssh now, whatever this one's state."""
        self.log("asked to reconnect now")
        self.end_child()
        self.wake.set()

    def end_child(self) -> None:
        child = self.child
        if child and child.poll() is None:
            child.terminate()
            if hasattr(signal, "SIGCONT"):
                os.kill(child.pid, signal.SIGCONT)  # a stopped (stalled) ssh gets its SIGTERM too

    # -- one ssh ------------------------------------------------------------------------

    def start_child(self) -> None:
        command = ssh_command(self.ssh_config, self.alias, self.local_port, self.remote_port)
        self.child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, text=True, errors="replace")
        self.reader = threading.Thread(target=self.read_errors, args=(self.child,), daemon=True)
        self.reader.start()

    def read_errors(self, child: subprocess.Popen) -> None:
        for line in child.stderr:
            line = line.strip()
            if line:
                self.log(f"ssh: {line}")
                if "open failed" not in line:  # a probe of the forward before Jupyter listened
                    self.last_line = line

    def wait_until_accepting(self) -> bool:
        deadline = time.monotonic() + ACCEPT_TIMEOUT
        while self.child.poll() is None and time.monotonic() < deadline and not self.stopping:
            if forward_accepts(self.local_port):
                return self.child.poll() is None
            time.sleep(0.05)
        return False

    # -- the loop ----------------------------------------------------------------------

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.on_term)
        signal.signal(signal.SIGINT, self.on_term)
        if hasattr(signal, "SIGUSR1"):
            signal.signal(signal.SIGUSR1, self.on_reconnect)
        if hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, signal.SIG_IGN)  # the terminal that started `inv` may close
        backoff, failures, was_up, asked_cloud = BACKOFF_FIRST, 0, False, 0.0
        self.set_state("starting")
        while not self.stopping:
            self.last_line = ""
            self.start_child()
            if self.wait_until_accepting():
                was_up, failures, backoff = True, 0, BACKOFF_FIRST
                self.set_state("up")
            else:
                self.end_child()
            self.child.wait()
            self.reader.join(2)  # ssh's last words, for the reason
            if self.stopping:
                break
            reason = self.last_line or f"ssh exited with status {self.child.returncode}"
            if not was_up:  # the first connection never worked: say why, do not insist
                self.set_state("failed", reason)
                return 1
            failures += 1
            self.set_state("reconnecting", reason, keep_since=True)
            if failures >= ASK_CLOUD_AFTER and time.monotonic() - asked_cloud >= ASK_CLOUD_EVERY:
                asked_cloud = time.monotonic()
                verdict = self.vm_not_running()
                if verdict:
                    self.child = None
                    self.set_state("stopped", verdict)
                    notify(f"labvm: {self.profile}", f"tunnel closed: {verdict}")
                    return 0
            if self.wake.wait(backoff):
                backoff = BACKOFF_FIRST  # asked to reconnect: no waiting
            else:
                backoff = min(backoff * 2, BACKOFF_CAP)
            self.wake.clear()
        self.end_child()
        if self.child:
            self.child.wait()
        self.record.unlink(missing_ok=True)
        self.log("stopped by labvm")
        return 0

    def vm_not_running(self) -> str:
        """For a cloud profile: "VM stopped"/"VM gone" when the provider says so; else ""."""
        try:
            from .config import load
            from .providers import for_profile

            provider = for_profile(load(Path(self.hosts)).profile(self.profile))
            if not provider.owns_machine:
                return ""
            instance = provider.find()
        except Exception as e:  # no network, no credentials now: keep trying the tunnel
            self.log(f"could not ask the cloud about the VM: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
            return ""
        if instance is None:
            return "VM gone"
        if instance.state != "running":
            return f"VM {instance.state}"
        return ""


def main(argv: list[str]) -> int:
    profile, local_port, remote_port, run_dir, ssh_config, alias, hosts = argv
    keeper = Keeper(profile, int(local_port), int(remote_port), Path(run_dir), ssh_config, alias, hosts)
    return keeper.run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
