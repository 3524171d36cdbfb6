"""Idle auto-stop on the host: `check` runs every minute (systemd timer or cron, set up by
autostop.sh) and stops the machine from inside once it has been idle for the whole period.

Idle means all of these, at every check through the period:
  - no kernel busy, none with activity within the period, no terminal used within it and no
    websocket open (Jupyter's REST API with labvm's token);
  - no established TCP connection to Jupyter's port (a browser through the tunnel; the tunnel
    alone opens none, so an idle tunnel is not activity);
  - no interactive (pty) SSH session;
  - the 1-minute load average under the threshold (a script running outside Jupyter);
  - no NVIDIA GPU at or above its threshold of utilisation (gpu.py; GPU memory held by an idle
    kernel is not activity, the costliest idle there is: the state's notes name who holds it);
  - no extension in force (`extend`: the user said a job outside Jupyter runs until then);
  - no task processing or waiting in labvm's Dask scheduler, when one runs here (a cluster's
    head): a computation keeps the head, and so its workers, up.
Then it ends labvm's Dask scheduler (its workers see it gone at once) and runs the stop command
(`sudo -n shutdown -h now`: no cloud credential on the host; EC2 launched with shutdown
behaviour stop, GCE and OpenStack stop on a guest shutdown), once per boot.  Every decision is
one line in ~/.labvm/autostop.log with its reasons; the last check's reasons, an extension and
the last autostop are in the state file, which outlives the stop (it is in ~/.labvm, not /run),
so `inv status` can say why the VM stopped after it restarts.

A cluster's worker VM watches its head instead (settings "dask_scheduler": host:port): it stops
itself once the head's scheduler has not accepted a TCP connection for WORKER_GRACE and no one
is logged in over SSH.  No cloud credential and no SSH between the machines: each decides alone.

Standard library only, Python 3.8+; it shares nbctl.py's view of labvm's Jupyter (common.py).
"""

import fcntl
import glob
import http.client
import json
import os
import pwd
import re
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
from contextlib import contextmanager
from datetime import datetime, timezone

import gpu
import layout
from common import RUNTIME, api, home_path, parse_time, read_json, say, servers, write_private
from words import duration

SETTINGS = home_path(layout.AUTOSTOP_SETTINGS)
STATE = home_path(layout.AUTOSTOP_STATE)
LOG = home_path(layout.AUTOSTOP_LOG)
LOG_KEEP = 5000  # lines; a check a minute is about three and a half days
DEFAULT_COMMAND = "sudo -n shutdown -h now"
DEFAULT_GPU_PERCENT = 10.0  # hosts.yml autostop_gpu's default, for settings an older labvm wrote
SSH_PTY_SESSION = re.compile(r"sshd(?:-session)?: (\S+)@(pts/\d+)")
# What outlives a new boot and a new setting: the last autostop, and an extension until its time.
CARRIED = ("stopped_at", "stopped_after", "extended_until")
HERE = os.path.dirname(os.path.abspath(__file__))
DASK = home_path(layout.DASK_DIR)  # dask.sh's pid and args files, one set per role and host
# A worker whose head's scheduler is gone this long (whole minutes) stops itself.  Checks come a
# minute apart, so a worker stops within 4 minutes of its head (its first check without the
# scheduler, then the grace to the next minute): the cluster within the idle period + 5 minutes.
WORKER_GRACE = 120


@contextmanager
def state_lock():
    """The minute's check, `extend` and `configure` each read and rewrite the state: one at a time."""
    with open(STATE + ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def current_state():
    """The state of this boot; a new boot starts a new count and keeps only what outlives it."""
    state = read_json(STATE, {})
    return state if state.get("boot_id") == boot_id() else fresh_state(state)


def fresh_state(old):
    """A new boot's state: only what outlives a boot (CARRIED) taken from the old one."""
    state = {key: old[key] for key in CARRIED if key in old}
    state["boot_id"] = boot_id()
    return state


def clock(epoch):
    """A moment in the VM's words (cloud images keep UTC), with its date when not today."""
    moment = time.gmtime(epoch)
    today = time.strftime("%Y-%m-%d", time.gmtime()) == time.strftime("%Y-%m-%d", moment)
    return time.strftime("%H:%M UTC" if today else "%Y-%m-%d %H:%M UTC", moment)


def log(line):
    """One line in ~/.labvm/autostop.log with its UTC time; past LOG_KEEP lines, the older half goes."""
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    try:
        with open(LOG) as f:
            lines = f.readlines()
    except OSError:
        lines = []
    if len(lines) >= LOG_KEEP:
        with open(LOG, "w") as f:
            f.writelines(lines[-LOG_KEEP // 2 :])
    with open(LOG, "a") as f:
        f.write("%s %s\n" % (stamp, line))


def established_connections(port):
    """Established TCP connections whose local end is Jupyter's port (/proc/net/tcp{,6})."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.readlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if fields[3] == "01" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                count += 1
    return count


def ssh_sessions():
    """Interactive SSH logins: sshd names each pty session's process `sshd: USER@pts/N`."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                title = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        match = SSH_PTY_SESSION.match(title)
        if match:
            found.append("%s on %s" % match.groups())
    return sorted(set(found))


def age(text, now):
    """Seconds since an ISO time of Jupyter's or the state's; infinite when there is none."""
    return (now - parse_time(text)).total_seconds() if text else float("inf")


def jupyter_port(configured):
    """The port labvm's Jupyter runs on: the configured one, or where labvm's Jupyter moved when a labmate
    held it (notebook.sh's --pick); RUNTIME holds labvm's own servers only."""
    ports = [s["port"] for s in servers(RUNTIME) if isinstance(s.get("port"), int)]
    if configured in ports or not ports:
        return configured
    return ports[0]


def jupyter_activity(port, period, now):
    """Why labvm's Jupyter on this port is in use: busy kernels, kernels or terminals used within the
    period, open kernel websockets."""
    server = next((s for s in servers(RUNTIME) if s.get("port") == port), None)
    if not server:
        return []
    try:
        status = api(server, "status")
        kernels = api(server, "kernels")
    except (OSError, ValueError, urllib.error.URLError):
        return ["Jupyter runs but its API does not answer (not idle while unsure)"]
    try:
        terminals = api(server, "terminals")
    except (OSError, ValueError, urllib.error.URLError):
        terminals = []  # no terminal extension: no terminals
    reasons = []
    busy = [k for k in kernels if k.get("execution_state") == "busy"]
    if busy:
        reasons.append("%d kernel(s) busy" % len(busy))
    recent = [k for k in kernels if k not in busy and age(k.get("last_activity"), now) < period]
    if recent:
        latest = min(age(k["last_activity"], now) for k in recent)
        reasons.append("kernel activity %s ago" % duration(latest))
    used = [t for t in terminals if age(t.get("last_activity"), now) < period]
    if used:
        reasons.append("%d terminal(s) used within the period" % len(used))
    if status.get("connections"):
        reasons.append("%d kernel websocket(s) open" % status["connections"])
    return reasons


def labvm_schedulers():
    """The host name of each Dask scheduler dask.sh runs here, from its pid files."""
    found = []
    for pidfile in sorted(glob.glob(os.path.join(DASK, "scheduler-*.pid"))):
        try:
            with open(pidfile) as f:
                pid = int(f.read().strip())
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                command = f.read().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError):
            continue
        # setproctitle, when the env has it, renames the scheduler "dask scheduler [tls://...]"
        if "distributed.cli.dask_scheduler" not in command and not command.startswith("dask scheduler ["):
            continue
        found.append(os.path.basename(pidfile)[len("scheduler-") : -len(".pid")])
    return found


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP to a server on a unix socket (the dashboard: dask_dashboard.py)."""

    def __init__(self, socket_path, timeout):
        super().__init__("localhost", timeout=timeout)
        self.socket_path = socket_path

    def connect(self):
        """Connects to the unix socket instead of a TCP port."""
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.socket_path)


COUNTS_LIMIT = 64 * 1024  # the answer is a few hundred bytes


def dask_counts():
    """The dashboard's /json/counts.json, served with or without bokeh (distributed/http/scheduler/json.py,
    CountsJSON; in distributed.scheduler.http.routes by default): "processing" sums every worker's
    processing tasks, "waiting" counts tasks waiting on others."""
    connection = UnixHTTPConnection(home_path(layout.DASHBOARD_SOCKET), timeout=5)
    try:
        connection.request("GET", "/json/counts.json")
        response = connection.getresponse()
        if response.status != 200:
            raise ValueError("HTTP %d" % response.status)
        return json.loads(response.read(COUNTS_LIMIT))
    finally:
        connection.close()


def dask_activity():
    """A scheduler of labvm's runs here: what its dashboard counts (one dashboard socket per home,
    the one Jupyter's proxy names)."""
    if not labvm_schedulers():
        return []
    try:
        counts = dask_counts()
        processing, waiting, workers = counts["processing"], counts["waiting"], counts["workers"]
    except (OSError, ValueError, KeyError, TypeError, http.client.HTTPException):
        return ["dask scheduler runs but its dashboard does not answer (not idle while unsure)"]
    if processing or waiting:
        return [
            "dask: %d task(s) processing%s on %d worker(s)"
            % (processing, ", %d waiting" % waiting if waiting else "", workers)
        ]
    return []


def stop_dask_schedulers():
    """Ends labvm's schedulers the way `inv down` does, so the workers see their head gone at once."""
    for host in labvm_schedulers():
        result = subprocess.run(
            ["/bin/sh", os.path.join(HERE, "dask.sh"), "stop"],
            stdin=subprocess.DEVNULL,
            env=dict(os.environ, LABVM_DASK_ROLE="scheduler", LABVM_DASK_HOST=host),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        log(
            "ended the dask scheduler (%s): its workers stop themselves" % host
            if result.returncode == 0
            else "could not end the dask scheduler (%s): %s" % (host, result.stderr.strip()[-300:])
        )


def scheduler_answers(address):
    """A TCP connection accepted is enough: the scheduler's process and its machine are up."""
    host, port = address.rsplit(":", 1)
    try:
        connection = socket.create_connection((host.strip("[]"), int(port)), timeout=5)
    except OSError:
        return False
    try:
        # The worker's own certificate only closes the connection politely: a connection closed
        # before its TLS handshake is a warning in the scheduler's log, every minute from every worker.
        context = ssl.create_default_context(cafile=os.path.join(DASK, "ca.pem"))
        context.check_hostname = False  # labvm's certificates name roles, not addresses
        context.load_cert_chain(os.path.join(DASK, "worker.pem"), os.path.join(DASK, "worker.key"))
        context.wrap_socket(connection).close()
    except (OSError, ValueError):  # ssl.SSLError is an OSError
        pass
    finally:
        connection.close()
    return True


def ssh_activity():
    """The interactive SSH logins, as one reason."""
    sessions = ssh_sessions()
    return ["interactive SSH: " + ", ".join(sessions)] if sessions else []


def activity(settings, now, gpus):
    """Why the machine is not idle now; an empty list means idle.  gpus: this minute's gpu.Look."""
    if settings.get("dask_scheduler"):
        return worker_activity(settings["dask_scheduler"])
    port, period = jupyter_port(settings["port"]), settings["idle_seconds"]
    # Counted before labvm's own API calls below, which are connections to the same port.
    reasons = []
    connections = established_connections(port)
    if connections:
        reasons.append("%d open connection(s) to Jupyter's port %d (a browser)" % (connections, port))
    reasons += jupyter_activity(port, period, now)
    reasons += dask_activity()
    reasons += ssh_activity()
    load = os.getloadavg()[0]
    if load >= settings["load_max"]:
        reasons.append("load %.2f >= %.2f" % (load, settings["load_max"]))
    return reasons + gpus.busy


def worker_activity(scheduler):
    """A cluster worker is in use while its head's scheduler answers (the head decides) or someone is logged in."""
    head = ["the head's dask scheduler %s answers" % scheduler] if scheduler_answers(scheduler) else []
    return head + ssh_activity()


def boot_id():
    """This boot's id (the kernel's); "" when it cannot be read."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def warn_users(message):
    """A line on every logged-in terminal (best effort: wall may be missing or refused)."""
    if shutil.which("wall"):
        subprocess.run(
            ["wall", message],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=10,
            check=False,
        )


def check():
    """The minute's check: its reasons noted (state and log), and the idle count, or a worker's
    count of its head gone, taken on to the stop."""
    settings = read_json(SETTINGS, {})
    period = settings.get("idle_seconds", 0)
    now = datetime.now(timezone.utc)
    with state_lock():
        state = current_state()
        state["last_check"] = now.isoformat()
        if not period:
            state["reasons"] = []
            log("off: autostop is turned off (inv autostop --idle 60m turns it on)")
        elif state.get("stop_requested"):
            log("stop already requested at %s; waiting for the shutdown" % state["stop_requested"])
        else:
            gpus = look_at_gpus(settings)
            state["reasons"] = extension(state, now) + activity(settings, now, gpus)
            state["notes"] = gpus.held
            if state["reasons"]:
                state.pop("idle_since", None)
                state.pop("warned", None)
                log("active: " + "; ".join(state["reasons"]))
            elif settings.get("dask_scheduler"):
                count_head_gone(state, settings, now)
            else:
                count_idle(state, settings, now)
        write_private(STATE, json.dumps(state) + "\n")


def look_at_gpus(settings):
    """This minute's gpu.Look (none on a cluster's worker, which follows its head); what nvidia-smi said
    that did not parse is logged."""
    if settings.get("dask_scheduler"):
        return gpu.Look([], [], [])
    seen = gpu.look(settings.get("gpu_percent", DEFAULT_GPU_PERCENT))
    for problem in seen.problems:
        log(problem)
    return seen


def extension(state, now):
    """The extension in force as a reason; one that has run out is dropped, and idle time counts again."""
    until = state.get("extended_until")
    if until and until > now.timestamp():
        return ["extended until %s" % clock(until)]
    if until:
        del state["extended_until"]
        log("the extension until %s is over: idle time counts from now" % clock(until))
    return []


def count_idle(state, settings, now):
    """One idle check: a warning near the end of the period, the stop command at its end."""
    period = settings["idle_seconds"]
    state.setdefault("idle_since", now.isoformat())
    idle = age(state["idle_since"], now)
    left = period - idle
    held = "".join("; " + note for note in state.get("notes", []))
    if left > 0:
        log(
            "idle %s of %s: no kernel busy or used, no connection, no SSH session, load under %.2f%s"
            % (duration(idle), duration(period), settings["load_max"], held)
        )
        if left <= min(300, period / 2) and not state.get("warned"):
            warn_users(
                "labvm: this machine has been idle %s and stops itself in %s%s; "
                "use Jupyter or log in to keep it running" % (duration(idle), duration(left), held)
            )
            state["warned"] = now.isoformat()
            log("warned logged-in users: stopping in %s" % duration(left))
        return
    command = settings.get("stop_command") or DEFAULT_COMMAND
    log("stopping: idle %s >= %s%s; running: %s" % (duration(idle), duration(period), held, command))
    stop_dask_schedulers()
    run_stop_command(state, command, idle, now)


def count_head_gone(state, settings, now):
    """One check of a cluster worker whose head's scheduler does not answer: the stop command after the grace."""
    scheduler = settings["dask_scheduler"]
    state.setdefault("idle_since", now.isoformat())
    gone = age(state["idle_since"], now)
    if gone < WORKER_GRACE:
        log(
            "head gone %s of %s: its dask scheduler %s does not answer, no SSH session"
            % (duration(gone), duration(WORKER_GRACE), scheduler)
        )
        return
    command = settings.get("stop_command") or DEFAULT_COMMAND
    log(
        "stopping: the head's dask scheduler %s has not answered for %s >= %s; running: %s"
        % (scheduler, duration(gone), duration(WORKER_GRACE), command)
    )
    run_stop_command(state, command, gone, now)


def run_stop_command(state, command, idle, now):
    """Runs the stop command; on success the state says when and after how long idle."""
    result = subprocess.run(
        ["/bin/sh", "-c", command], stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False
    )
    if result.returncode == 0:
        state.update(stop_requested=now.isoformat(), stopped_at=int(now.timestamp()), stopped_after=int(idle))
    else:
        log(
            "stop command failed (exit %d): %s; trying again next minute"
            % (result.returncode, (result.stderr or result.stdout).strip()[-300:])
        )


def extend():
    """LABVM_AUTOSTOP_UNTIL (epoch seconds): in use until then, whatever the checks see; 0 ends it."""
    until = int(os.environ["LABVM_AUTOSTOP_UNTIL"])
    with state_lock():
        state = current_state()
        if until > time.time():
            state["extended_until"] = until
            # In use from now: the idle count starts again when the extension ends.
            state.pop("idle_since", None)
            state.pop("warned", None)
            log("extended by the user: in use until %s" % clock(until))
        elif state.pop("extended_until", None):
            log("extension ended by the user: idle time counts from the next check")
        write_private(STATE, json.dumps(state) + "\n")
    if state.get("stop_requested"):
        say("autostop: this machine already asked to stop itself at %s" % state["stop_requested"])


def configure():
    """Writes the settings from LABVM_AUTOSTOP_*; prints the idle period now in force (seconds)."""
    current = read_json(SETTINGS, None)
    explicit = os.environ.get("LABVM_AUTOSTOP_SET_BY") == "inv autostop"
    wanted = {
        "idle_seconds": int(os.environ["LABVM_AUTOSTOP_IDLE"]),
        "load_max": float(os.environ["LABVM_AUTOSTOP_LOAD"]),
        "gpu_percent": float(os.environ.get("LABVM_AUTOSTOP_GPU") or DEFAULT_GPU_PERCENT),
        "port": int(os.environ["LABVM_PORT"]),
        "stop_command": os.environ.get("LABVM_AUTOSTOP_COMMAND") or DEFAULT_COMMAND,
        "set_by": "inv autostop" if explicit else "hosts.yml",
    }
    if os.environ.get("LABVM_AUTOSTOP_SCHEDULER"):  # a cluster's worker: it watches its head's scheduler
        wanted["dask_scheduler"] = os.environ["LABVM_AUTOSTOP_SCHEDULER"]
    if os.environ.get("LABVM_AUTOSTOP_KEEP") == "1" and current and current.get("set_by") == "inv autostop":
        # The period stays as the user set it; the port and the rest follow hosts.yml.
        wanted.update(idle_seconds=current["idle_seconds"], set_by="inv autostop")
        say(
            "autostop: keeping the setting made with `inv autostop` (%s); `inv autostop` alone "
            "applies hosts.yml again" % (duration(current["idle_seconds"]) if current["idle_seconds"] else "off")
        )
    if wanted != current:
        write_private(SETTINGS, json.dumps(wanted, indent=1, sort_keys=True) + "\n")
    if wanted != current or explicit:
        # A new setting, or the user saying so, starts a new count (a stop asked for too).
        with state_lock():
            write_private(STATE, json.dumps(fresh_state(read_json(STATE, {}))) + "\n")
    return wanted["idle_seconds"]


def scheduler():
    """What runs the minute's check for this user: "systemd timer", "cron", or "" when neither."""
    user = pwd.getpwuid(os.getuid()).pw_name
    if os.path.exists("/etc/systemd/system/%s%s.timer" % (layout.AUTOSTOP_UNIT_PREFIX, user)):
        return "systemd timer"
    if shutil.which("crontab"):
        listing = subprocess.run(["crontab", "-l"], capture_output=True, text=True, check=False).stdout
        if layout.AUTOSTOP_CRON_MARK in listing:
            return "cron"
    return ""


def report():
    """What `inv status` shows: the setting, how long the host has been idle and why, the last
    check, an extension in force, and the last time the machine stopped itself."""
    settings = read_json(SETTINGS, None)
    if settings is None:
        return None
    state = read_json(STATE, {})
    now = datetime.now(timezone.utc)
    current_boot = state.get("boot_id") == boot_id()
    extended_until = state.get("extended_until")
    return {
        "idle_seconds": settings["idle_seconds"],
        "set_by": settings.get("set_by"),
        "scheduler": scheduler(),
        "idle_for": int(age(state["idle_since"], now)) if current_boot and state.get("idle_since") else None,
        "last_check_ago": int(age(state["last_check"], now)) if state.get("last_check") else None,
        "stop_requested": current_boot and bool(state.get("stop_requested")),
        "reasons": state.get("reasons", []) if current_boot else [],
        "notes": state.get("notes", []) if current_boot else [],
        "extended_until": extended_until if extended_until and extended_until > now.timestamp() else None,
        "stopped_at": state.get("stopped_at"),
        "stopped_after": state.get("stopped_after"),
        "dask_scheduler": settings.get("dask_scheduler"),
        "worker_grace": WORKER_GRACE if settings.get("dask_scheduler") else None,
    }


def main():
    """`autostop.py check|configure|extend|status`, as autostop.sh and nbctl.py run it."""
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    os.makedirs(home_path(layout.STATE_DIR), exist_ok=True)
    if command == "check":
        check()
    elif command == "configure":
        print(configure())
    elif command == "extend":
        extend()
    elif command == "status":
        print(json.dumps(report()))
    else:
        say("usage: autostop.py check|configure|extend|status")
        sys.exit(2)


if __name__ == "__main__":
    main()
