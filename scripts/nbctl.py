"""Jupyter on the host: config, status, readiness, stop.  Run by notebook.sh.

Standard library only (it also runs before the env exists, for `inv status`), and
Python 3.8+ (older cloud images).  Prints one JSON object on stdout; messages go to stderr.
labvm's own servers are the ones whose runtime files are in layout.RUNTIME_DIR
(JUPYTER_RUNTIME_DIR, set by jupyter-run.sh); any other Jupyter is someone else's.
"""

import argparse
import glob
import json
import os
import re
import secrets
import signal
import socket
import sys
import time
import urllib.error
from datetime import datetime, timezone

import layout
from common import RUNTIME, alive, api, home_path, parse_time, say, servers, write_private

CONFIG = home_path(layout.JUPYTER_CONFIG)
TOKEN = home_path(layout.TOKEN_FILE)
PASSWORD_HASH = home_path(layout.PASSWORD_HASH)
LOG = home_path(layout.JUPYTER_LOG)
RUNNER_PID = home_path(layout.RUNNER_PID)
# dask-labextension's panel opens the cluster's dashboard with nothing typed: its setting defaultURL
# (schema/plugin.json of the plugin "dask-labextension:plugin") takes a path relative to Jupyter's
# base URL (src/dashboard.tsx normalizeDashboardUrl).  The dashboard is a unix socket only its user
# can open (dask.sh, dask_dashboard.py), served in JupyterLab behind its token by a named server of
# jupyter-server-proxy: a ServerProcess with no command proxies to one running already, and
# unix_socket is the path of its socket (jupyter_server_proxy/config.py, 4.x).
DASK_PLUGIN = "dask-labextension:plugin"
DASHBOARD_SOCKET = home_path(layout.DASHBOARD_SOCKET)
# Jupyter signs its login cookie with a secret kept here (jupyter_server serverapp.py
# cookie_secret_file, in JUPYTER_RUNTIME_DIR): a cookie outlives a new token unless it changes too.
COOKIE_SECRET = os.path.join(RUNTIME, "jupyter_cookie_secret")
OTHER_RUNTIME_DIRS = [
    os.path.expanduser("~/.local/share/jupyter/runtime"),
    os.path.join(os.environ.get("XDG_RUNTIME_DIR", "/nonexistent"), "jupyter"),
]


PORT_SEARCH = 50  # ports after notebook.port's default tried on a shared host (labvm.tunnel does the same here)


def configured_port():
    """The port labvm's Jupyter config names (the one the last `config` chose), or None."""
    try:
        with open(CONFIG) as f:
            port = json.load(f)["ServerApp"]["port"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return port if isinstance(port, int) else None


def port_in_use(port):
    """Another program (any login's) listens on the port: seen in /proc, else by connecting."""
    return port_owner(port) is not None or port_open(port)


def choose_port(wanted):
    """notebook.port's default on a host others share: the port this login's last `config` chose
    while it is still free (or its own Jupyter's), else the default, else the next free one."""
    own = {s.get("port") for s in servers(RUNTIME)}
    previous = configured_port()
    search = range(wanted, min(wanted + PORT_SEARCH, 65536))
    if previous in search and (previous in own or not port_in_use(previous)):
        if previous != wanted:
            say("jupyter: using port %d on the host, as at the last start" % previous)
        return previous
    port = next((p for p in search if p in own or not port_in_use(p)), None)
    if port is None:
        say("error: ports %d-%d on the host are all in use; set notebook.port" % (wanted, search[-1]))
        sys.exit(1)
    if port != wanted:
        say("jupyter: %d is taken on the host; using %d" % (wanted, port))
    return port


def resolve_port(args):
    """--pick (notebook.port left at its default): the port `config` chose; else notebook.port."""
    if args.pick and args.command != "config":
        previous = configured_port()
        if previous in range(args.port, args.port + PORT_SEARCH):
            args.port = previous


def config(args):
    """`config`: the workspace, the token and Jupyter's config file written (with --pick, on a port
    chosen free); says whether it changed and the port."""
    if args.pick:
        args.port = choose_port(args.port)
    workspace = os.path.expanduser(args.workspace)
    os.makedirs(workspace, exist_ok=True)
    os.makedirs(RUNTIME, mode=0o700, exist_ok=True)
    if not os.path.exists(TOKEN):
        write_private(TOKEN, secrets.token_hex(24) + "\n")
    server = {
        "ip": "127.0.0.1",
        "port": args.port,
        "port_retries": 0,
        "open_browser": False,
        "root_dir": workspace,
    }
    if os.geteuid() == 0:
        server["allow_root"] = True
    # The token stays on in password mode too: labvm's own status and idle checks use it.
    with open(TOKEN) as f:
        settings = {"ServerApp": server, "IdentityProvider": {"token": f.read().strip()}}
    # No news feed or update check from the server (jupyterlab/labapp.py: news_url "Set to None
    # to turn off fetching announcements"; docs user/announcements: NeverCheckForUpdate).
    settings["LabApp"] = {"news_url": None, "check_for_updates_class": "jupyterlab.NeverCheckForUpdate"}
    if has_dask_panel(args.prefix):
        settings["ServerProxy"] = {
            "servers": {layout.DASHBOARD_ROUTE: {"unix_socket": DASHBOARD_SOCKET, "launcher_entry": {"enabled": False}}}
        }
    defaults_changed = settings_overrides(args.prefix)
    if args.auth == "password":
        with open(PASSWORD_HASH) as f:
            settings["PasswordIdentityProvider"] = {"hashed_password": f.read().strip()}
    text = json.dumps(settings, indent=1, sort_keys=True) + "\n"
    try:
        with open(CONFIG) as f:
            changed = f.read() != text
    except OSError:
        changed = True
    if changed:
        write_private(CONFIG, text)
        say("notebook: Jupyter config written to ~/%s" % layout.JUPYTER_CONFIG)
    elif defaults_changed:
        # Newer than the running server's runtime file: `plan` restarts Jupyter, which reads the
        # defaults (and loads a newly installed server extension) only when it starts.
        os.utime(CONFIG)
        changed = True
        say("notebook: JupyterLab settings defaults changed (overrides.d/labvm.json in the env)")
    else:
        say("notebook: Jupyter config unchanged")
    return {"changed": changed, "port": args.port}


def settings_overrides(prefix):
    """JupyterLab defaults labvm sets in the env's settings overrides.d (jupyterlab_server's
    settings_utils._get_overrides reads <app_settings_dir>/overrides.d/*.json, once, when Jupyter
    starts); the user's own settings still win over them.  True when the file changed.

    JupyterLab's front end asks "Would you like to get notified about official Jupyter news?"
    while its setting fetchNews is "none" (apputils-extension/src/announcements.ts); "false"
    answers it, and the user may still turn news on."""
    overrides = {"@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False}}
    if has_dask_panel(prefix):
        overrides[DASK_PLUGIN] = {"defaultURL": layout.DASHBOARD_ROUTE}
    folder = os.path.join(prefix, "share", "jupyter", "lab", "settings", "overrides.d")
    text = json.dumps(overrides, indent=1) + "\n"
    path = os.path.join(folder, "labvm.json")
    try:
        with open(path) as f:
            if f.read() == text:
                return False
    except OSError:
        pass
    os.makedirs(folder, exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    return True


def has_dask_panel(prefix):
    """dask-labextension (which brings jupyter-server-proxy) is in the env: a cluster's profile."""
    return os.path.isdir(os.path.join(prefix, "share", "jupyter", "labextensions", "dask-labextension"))


def new_token(args):
    """Before every start of a Jupyter: a new token and login-cookie secret.  Whoever held the
    port while none ran (after a stop, a crash, a reboot) received the open tab's token and
    cookie: neither opens the new server.  A running server keeps both (status reports its own)."""
    write_private(TOKEN, secrets.token_hex(24) + "\n")
    with open(CONFIG) as f:
        settings = json.load(f)
    with open(TOKEN) as f:
        settings["IdentityProvider"]["token"] = f.read().strip()
    write_private(CONFIG, json.dumps(settings, indent=1, sort_keys=True) + "\n")  # as config() writes it
    try:
        os.remove(COOKIE_SECRET)  # Jupyter writes a new one when it starts
    except FileNotFoundError:
        pass
    return {"token": "new"}


def port_open(port):
    """Something accepts a TCP connection on 127.0.0.1:port."""
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def port_owner(port):
    """The uid of the process listening on 127.0.0.1:port (or [::1]:port, ::), None if none is seen.
    /proc/net/tcp{,6}: local_address hex IP:PORT, st 0A = LISTEN, uid the 8th column (proc(5))."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) > 7 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                return int(fields[7])
    return None


def owner_name(uid):
    """The user name of a uid, or "uid N" when it has none."""
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return "uid %d" % uid


def machine():
    """The host's memory, disk of the home folder, and 1-minute load, for `inv status`."""
    meminfo = {}
    with open("/proc/meminfo") as f:
        for line in f:
            key, value = line.split(":", 1)
            meminfo[key] = int(value.split()[0]) * 1024
    disk = os.statvfs(os.path.expanduser("~"))
    return {
        "mem_total": meminfo.get("MemTotal", 0),
        "mem_available": meminfo.get("MemAvailable", 0),
        "disk_total": disk.f_blocks * disk.f_frsize,
        "disk_free": disk.f_bavail * disk.f_frsize,
        "load": os.getloadavg()[0],
    }


def status(args):
    """`status`: labvm's Jupyter on the port (its token, kernels, idle time), who else holds the port,
    the machine, its NVIDIA GPUs and autostop."""
    own = servers(RUNTIME)
    mine = next((s for s in own if s.get("port") == args.port), own[0] if own else None)
    import autostop  # beside this file; only status needs it (`owner` runs every 10 s)
    import gpu

    result = {"port": args.port, "server": None, "other": None, "port_busy": False}
    result.update(machine(), autostop=autostop.report(), gpus=[found.as_dict() for found in gpu.gpus()[0]])
    if mine:
        result["server"] = {k: mine.get(k) for k in ("pid", "port", "token", "base_url", "root_dir", "runtime_file")}
        try:
            api_status = api(mine, "status")
            kernels = api(mine, "kernels")
            result["server"].update(
                kernels=len(kernels),
                busy_kernels=sum(1 for k in kernels if k.get("execution_state") == "busy"),
                connections=api_status.get("connections", 0),
                last_activity=api_status.get("last_activity"),
                started=api_status.get("started"),
                idle_seconds=int(
                    (datetime.now(timezone.utc) - parse_time(api_status["last_activity"])).total_seconds()
                ),
                answering=True,
            )
        except (OSError, ValueError, KeyError, urllib.error.URLError):
            result["server"]["answering"] = False
    owner = port_owner(args.port)
    if owner is not None and owner != os.geteuid():
        # Another login of this machine listens where labvm forwards: a browser's token would go to it.
        result["port_holder"] = {"uid": owner, "user": owner_name(owner)}
    if not mine or mine.get("port") != args.port:
        # Never a connection to another login's socket: it would see labvm knocking (and could answer).
        result["port_busy"] = bool(result.get("port_holder")) or port_open(args.port)
        for directory in OTHER_RUNTIME_DIRS:
            other = next((s for s in servers(directory) if s.get("port") == args.port), None)
            if other:
                result["other"] = {"pid": other["pid"], "runtime_file": other["runtime_file"]}
                break
    return result


def owner(args):
    """Who listens on the port the tunnel forwards to: one JSON line, read from /proc only (no
    connection to the holder).  labvm's keeper asks before it forwards."""
    uid = port_owner(args.port)
    print(
        json.dumps(
            {
                "port": args.port,
                "uid": uid,
                "mine": uid is not None and uid == os.geteuid(),
                "user": None if uid is None else owner_name(uid),
            }
        )
    )


def plan(args):
    """What start should do: nothing (running), start, or restart (config changed); with --new-token,
    a start or restart gets its new token and cookie secret here (new_token)."""
    result = status(args)
    server = result["server"]
    if result.get("port_holder"):
        say(
            "error: port %d on the host is held by user %s, not you: labvm will not forward your browser there; "
            "set notebook.port to another port" % (args.port, result["port_holder"]["user"])
        )
        sys.exit(1)
    if server and server["port"] == args.port and server.get("answering"):
        stale = os.path.getmtime(CONFIG) > os.path.getmtime(server["runtime_file"])
        result["action"] = "restart" if stale else "running"
    elif server:
        result["action"] = "restart"
    elif result["other"]:
        say(
            "error: port %d on the host is taken by a Jupyter labvm did not start (pid %d); "
            "end it with: inv stop-notebook --force, or set notebook.port" % (args.port, result["other"]["pid"])
        )
        sys.exit(1)
    elif result["port_busy"]:
        say("error: port %d on the host is in use by another program; set notebook.port" % args.port)
        sys.exit(1)
    else:
        result["action"] = "start"
    if args.new_token and result["action"] != "running":
        new_token(args)  # in this process: one Python start less on every start of Jupyter
    return result


def ready(port):
    """An authorised /api/status answers."""
    mine = next((s for s in servers(RUNTIME) if s.get("port") == port), None)
    if not mine:
        return False
    try:
        api(mine, "status")
        return True
    except (OSError, ValueError):
        return False


def last_start_log():
    """The log lines of the last start (jupyter-run.sh marks each start)."""
    try:
        with open(LOG, errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    starts = [i for i, line in enumerate(lines) if line.startswith("--- labvm: starting JupyterLab")]
    return lines[starts[-1] :] if starts else lines


def log_tail(lines=20):
    """The last lines of the last start's log, for a start that failed."""
    tail = last_start_log()[-lines:]
    return "\n".join(tail) + "\n" if tail else "(no log at ~/%s)\n" % layout.JUPYTER_LOG


JUPYTER_ERROR = re.compile(r"^\[(E|C) |\b(ERROR|CRITICAL)\b")


def failure_causes(lines, keep=5):
    """The ERROR/CRITICAL lines of Jupyter's log, and each traceback's exception line (its last)."""
    causes = []
    in_traceback = False
    for line in lines:
        if line.startswith("Traceback (most recent call last)"):
            in_traceback = True
        elif in_traceback and line and not line[0].isspace():
            in_traceback = False
            causes.append(line.strip())
        elif JUPYTER_ERROR.search(line):
            causes.append(line.strip())
    return causes[-keep:]


def wait(args):
    """`wait`: status once Jupyter answers; else the log's errors and exit status 1 (its runner exited,
    or the timeout)."""
    deadline = time.monotonic() + args.timeout
    started = time.monotonic()
    reported = 0
    exited = False
    while time.monotonic() < deadline:
        if ready(args.port):
            return status(args)
        try:
            with open(RUNNER_PID) as f:
                pid = int(f.read().strip() or 0)
        except (OSError, ValueError):
            pid = 0
        if pid and not alive(pid):
            exited = True
            break
        waited = int(time.monotonic() - started)
        if waited >= reported + 5:
            reported = waited
            say("notebook: waiting for Jupyter to answer (%ds)" % waited)
        time.sleep(0.05)
    say("notebook: Jupyter did not start; last lines of ~/%s:" % layout.JUPYTER_LOG)
    sys.stderr.write(log_tail())
    causes = failure_causes(last_start_log())
    if causes:
        say("notebook: the errors in that log:")
        sys.stderr.write("".join("  %s\n" % line for line in causes))
    # The last `error:` line is the one-line message labvm shows.
    say(
        "error: Jupyter did not start: %s (~/%s)"
        % (
            causes[-1]
            if causes
            else "it exited without an error in its log"
            if exited
            else "no answer within %ds and no error in its log" % args.timeout,
            layout.JUPYTER_LOG,
        )
    )
    sys.exit(1)


def stop(args):
    """`stop`: labvm's Jupyter ended (SIGTERM, SIGKILL after 20 s), and with --force the other one on the
    port; the dead servers' runtime files removed."""
    targets = [s["pid"] for s in servers(RUNTIME)]
    current = status(args)
    if current["other"] and args.force:
        targets.append(current["other"]["pid"])
    for pid in targets:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 20
    while any(alive(p) for p in targets) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in targets:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
    for path in glob.glob(os.path.join(RUNTIME, "jpserver-*")):
        pid = path.rsplit("-", 1)[-1].split(".")[0]
        if pid.isdigit() and not alive(int(pid)):
            os.remove(path)
    return {"stopped": targets, "other": None if args.force else current["other"]}


def main():
    """`nbctl.py COMMAND [options]`: one JSON object on stdout (`owner` prints its own line)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["config", "status", "plan", "new-token", "wait", "stop", "owner"])
    parser.add_argument("--port", type=int, default=8888)
    parser.add_argument("--workspace", default="~/work")
    parser.add_argument("--prefix", default=sys.prefix, help="the environment Jupyter runs from")
    parser.add_argument("--auth", choices=["token", "password"], default="token")
    parser.add_argument("--timeout", type=float, default=120)
    parser.add_argument("--force", action="store_true")
    parser.add_argument("--new-token", action="store_true", help="plan: a new token when Jupyter is to start")
    parser.add_argument("--pick", action="store_true", help="--port is the default: another is taken when it is busy")
    args = parser.parse_args()
    resolve_port(args)
    if args.command == "owner":
        owner(args)
        return
    result = {"config": config, "status": status, "plan": plan, "new-token": new_token, "wait": wait, "stop": stop}[
        args.command
    ](args)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
