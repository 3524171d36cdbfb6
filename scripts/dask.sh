#!/bin/sh
# Dask distributed on the host: dask.sh versions|install-certificates|start-scheduler|start-worker|stop|status
#   LABVM_ENV_PREFIX      the environment holding dask and distributed (all but stop)
#   LABVM_DASK_HOST       this host's address as the cluster's other machines reach it: dask
#                         binds it, and it names this host's state (homes and /tmp may be shared)
#   LABVM_DASK_LISTEN     start-*: the address dask binds (and, for the scheduler, Client() uses)
#                         when not LABVM_DASK_HOST (a cloud VM's private address)
#   LABVM_DASK_SCHEDULER  tls://HEAD:PORT (start-worker); status asks the one Client() is configured for
#   LABVM_DASK_PORT       the scheduler's port
#   LABVM_DASK_THREADS, LABVM_DASK_MEMORY   per worker; empty: what the machine has
#   LABVM_DASK_RESTART    1: start again even when running with the same settings (a new scheduler)
#   LABVM_DASK_ROLE       stop: scheduler | worker
#   LABVM_DASK_FILES      install-certificates: the files labvm put in DASK_DIR/incoming-HOST, one a line
#   LABVM_PACKAGES        versions: requirements whose installed versions are reported, one a line
#   LABVM_MUX             tmux | screen | nohup: what keeps dask alive after logout
#   LABVM_TIMEOUT         seconds a start may take (a worker: until the scheduler registered it)
# Certificates are in DASK_DIR (layout.py; put there by labvm), and the scheduler's dashboard is a
# unix socket there, DASHBOARD_SOCKET (dask_dashboard.py), which JupyterLab proxies.
# Prints one JSON object on stdout; progress and errors go to stderr.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"

prefix=$(expand_home "${LABVM_ENV_PREFIX:-}")
py="$prefix/bin/python"
mux=${LABVM_MUX:-tmux}
DASK="$HOME/$DASK_DIR"
DASHBOARD_SOCKET="$HOME/$DASHBOARD_SOCKET"  # where Jupyter's proxy (nbctl.py) and autostop.py look for it
WORKER_PORTS=8790:8799  # fixed ranges, so a firewall can open exactly these between the machines
NANNY_PORTS=8800:8809

need_env() {
    [ -n "$prefix" ] || die "LABVM_ENV_PREFIX is not set"
    [ -x "$py" ] || die "no Python environment at $prefix; run the env step first (inv setup)"
}

# State of one process, named by role and address: a shared home or /tmp must not mix hosts up.
select_process() {
    role=$1
    host=${LABVM_DASK_HOST:?}
    name="$role-$(printf '%s' "$host" | tr -c 'A-Za-z0-9.-' '_')"
    pidfile="$DASK/$name.pid"
    argsfile="$DASK/$name.args"
    log="$DASK/$name.log"
    socket="labvm-dask-$name"
    session="labvm-dask-$role"
}

running() {
    [ -s "$pidfile" ] || return 1
    pid=$(cat "$pidfile")
    kill -0 "$pid" 2>/dev/null || return 1
    # setproctitle, when the env has it, renames the scheduler "dask scheduler [tls://...]"
    ps -o args= -p "$pid" 2>/dev/null | grep -qE "distributed\.cli\.dask_$role|^dask $role \["
}

need_multiplexer() {
    command -v "$mux" >/dev/null 2>&1 && return 0
    case $mux in tmux|screen) ;; nohup) return 0 ;; esac
    die "$mux is not installed on the host; install it (sudo apt-get install $mux) or set notebook.multiplexer: nohup"
}

stop_process() {
    if running; then
        pgid=$(ps -o pgid= -p "$pid" | tr -d ' ')
        kill -TERM "$pid" 2>/dev/null || true
        tries=0
        while kill -0 "$pid" 2>/dev/null && [ $tries -lt 100 ]; do sleep 0.1; tries=$((tries + 1)); done
        # The nanny's worker process shares the group: nothing of it may outlive the stop.
        if [ -n "$pgid" ] && [ "$pgid" != "$(ps -o pgid= -p $$ | tr -d ' ')" ]; then kill -KILL -- "-$pgid" 2>/dev/null || true; fi
        stopped=1
    else
        stopped=0
    fi
    if command -v tmux >/dev/null 2>&1; then tmux -L "$socket" kill-server 2>/dev/null || true; fi
    if command -v screen >/dev/null 2>&1; then screen -S "$socket" -X quit >/dev/null 2>&1 || true; fi
    rm -f "$pidfile" "$argsfile"
}

# The multiplexer's child: records its pid, then becomes dask (exec keeps the pid).
run_process() {
    pidfile=$1 log=$2
    shift 2
    printf '%s\n' "$$" > "$pidfile"
    exec env DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION=True LABVM_DASK_DASHBOARD_SOCKET="$DASHBOARD_SOCKET" \
        "$@" >> "$log" 2>&1
}

last_error() {
    grep -E 'Error|error|refused|denied|Timed out' "$log" 2>/dev/null | tail -n 1 | sed 's/^.* - labvm: error: //' | cut -c1-300
}

# start ROLE READY-MARKER DASK-ARGS...: already running with these arguments: nothing to do.
start_process() {
    role=$1 marker=$2
    shift 2
    settings=$(printf '%s\n' "$@")
    if running && [ "$(cat "$argsfile" 2>/dev/null)" = "$settings" ] && [ "${LABVM_DASK_RESTART:-0}" != 1 ]; then
        say "dask: $role on $host already running (pid $pid); nothing started"
        printf '{"action": "running", "pid": %s%s}\n' "$pid" "$(described)"
        return
    fi
    action=started
    if running; then action=restarted; say "dask: restarting the $role on $host"; fi
    stop_process
    need_multiplexer
    : > "$log"
    printf '%s\n' "$settings" > "$argsfile"
    module="distributed.cli.dask_$role"
    case $mux in
        tmux) tmux -L "$socket" new-session -d -s "$session" sh "$here/dask.sh" run "$pidfile" "$log" "$py" -m "$module" "$@" ;;
        screen) screen -dmS "$socket" sh "$here/dask.sh" run "$pidfile" "$log" "$py" -m "$module" "$@" ;;
        nohup) setsid nohup sh "$here/dask.sh" run "$pidfile" "$log" "$py" -m "$module" "$@" </dev/null >/dev/null 2>&1 & ;;
        *) die "notebook.multiplexer must be tmux, screen or nohup, not $mux" ;;
    esac
    say "dask: starting the $role on $host in $mux"
    started=$(date +%s)
    deadline=$(( started + ${LABVM_TIMEOUT:-120} ))
    reported=$started
    while ! grep -q "$marker" "$log" 2>/dev/null; do
        sleep 0.1
        if [ $(( $(date +%s) - reported )) -ge 10 ]; then
            reported=$(date +%s)
            say "dask: waiting for the $role on $host ($(( reported - started ))s)"
        fi
        if ! running && [ -s "$pidfile" ]; then
            die "the dask $role on $host exited: $(last_error) (log: $log)"
        fi
        if [ "$(date +%s)" -gt "$deadline" ]; then
            stop_process
            die "the dask $role on $host was not ready within ${LABVM_TIMEOUT:-120} s: $(last_error) (log: $log)"
        fi
    done
    running || die "the dask $role on $host exited right after starting: $(last_error) (log: $log)"
    printf '{"action": "%s", "pid": %s%s}\n' "$action" "$pid" "$(described)"
}

# A worker's threads and memory limit as it logged them at start ("Threads: 2", "Memory: 1.00 GiB").
described() {
    [ "$role" = worker ] || return 0
    threads=$(sed -n 's/.* Threads: *\([0-9][0-9]*\).*/\1/p' "$log" | tail -n 1)
    memory=$(sed -n 's/.* Memory: *\([0-9.]* [A-Za-z]*\).*/\1/p' "$log" | tail -n 1)
    printf ', "threads": %s, "memory": "%s"' "${threads:-0}" "$memory"
}

start_scheduler() {
    need_env
    port=${LABVM_DASK_PORT:-8786}
    select_process scheduler
    listen=${LABVM_DASK_LISTEN:-$host}
    write_client_config "tls://$(bracketed "$listen"):$port"
    # One started before its dashboard moved to the socket, or whose socket was removed: start it again.
    if running && [ ! -S "$DASHBOARD_SOCKET" ]; then LABVM_DASK_RESTART=1; fi
    # The dashboard's TCP listener lives from the scheduler's __init__ until dask_dashboard.py moves
    # it to the socket: port 0 on loopback, which no one can take ahead and nothing forwards to.
    start_process scheduler "labvm: dashboard on unix socket" \
        --host "$listen" --port "$port" --protocol tls \
        --tls-ca-file "$DASK/ca.pem" --tls-cert "$DASK/scheduler.pem" --tls-key "$DASK/scheduler.key" \
        --dashboard-address 127.0.0.1:0 --preload "$here/dask_dashboard.py"
    check_dashboard
}

# The socket JupyterLab proxies: labvm's scheduler bound it, it is yours and only you can open it.
check_dashboard() {
    [ -S "$DASHBOARD_SOCKET" ] || die "the dask scheduler on $host serves no dashboard at $DASHBOARD_SOCKET (log: $log); run inv up again"
    owner=$(stat -c %u "$DASHBOARD_SOCKET")
    mode=$(stat -c %a "$DASHBOARD_SOCKET")
    if [ "$owner" != "$(id -u)" ] || [ "$mode" != 600 ]; then
        die "$DASHBOARD_SOCKET on $host is not yours alone (owner uid $owner, mode $mode); remove it, then run inv up again"
    fi
}

start_worker() {
    need_env
    scheduler=${LABVM_DASK_SCHEDULER:?}
    select_process worker
    # --no-dashboard still serves /health and /metrics (on all addresses by default): loopback only.
    set -- --host "${LABVM_DASK_LISTEN:-$host}" --name "$host" --protocol tls \
        --no-dashboard --dashboard-address 127.0.0.1:0 \
        --worker-port "$WORKER_PORTS" --nanny-port "$NANNY_PORTS" --local-directory "$DASK/$name" \
        --tls-ca-file "$DASK/ca.pem" --tls-cert "$DASK/worker.pem" --tls-key "$DASK/worker.key"
    [ -n "${LABVM_DASK_THREADS:-}" ] && set -- "$@" --nthreads "$LABVM_DASK_THREADS"
    [ -n "${LABVM_DASK_MEMORY:-}" ] && set -- "$@" --memory-limit "$LABVM_DASK_MEMORY"
    start_process worker "Registered to:" "$@" "$scheduler"
}

bracketed() {  # an IPv6 address inside a URL
    case $1 in *:*) printf '[%s]' "$1" ;; *) printf '%s' "$1" ;; esac
}

# ~/.config/dask/labvm.yaml: `Client()` in a notebook on the head finds the cluster and its certificates.
write_client_config() {
    folder=${DASK_CONFIG:-$HOME/.config/dask}
    mkdir -p "$folder"
    new="$folder/.labvm.yaml.$$"
    cat > "$new" <<END
# Written by labvm: Client() with no arguments connects to this profile's Dask cluster; its
# dashboard link is JupyterLab's route to the scheduler's dashboard socket (same origin as the lab).
scheduler-address: "$1"
distributed:
  dashboard:
    link: "/dask-dashboard/status"
  comm:
    require-encryption: true
    tls:
      ca-file: "$DASK/ca.pem"
      client:
        cert: "$DASK/client.pem"
        key: "$DASK/client.key"
END
    if cmp -s "$new" "$folder/labvm.yaml"; then rm -f "$new"; else mv "$new" "$folder/labvm.yaml"; fi
}

# Renamed into place one by one (rename is atomic): hosts sharing a home may install at once.
install_certificates() {
    incoming="$DASK/incoming-$(printf '%s' "${LABVM_DASK_HOST:?}" | tr -c 'A-Za-z0-9.-' '_')"
    while IFS= read -r file; do
        case $file in */*|.*|'') die "not a certificate file name: $file" ;; esac
        chmod 600 "$incoming/$file"
        mv -f "$incoming/$file" "$DASK/$file"
    done <<END
${LABVM_DASK_FILES:?}
END
    rmdir "$incoming" 2>/dev/null || true
    say "dask: certificates installed in $DASK"
    printf '{"installed": true}\n'
}

stop() {
    select_process "${LABVM_DASK_ROLE:?}"
    stop_process
    if [ "$stopped" = 1 ]; then say "dask: $role on $host stopped"; else say "dask: no $role running on $host"; fi
    printf '{"stopped": %s}\n' "$([ "$stopped" = 1 ] && echo true || echo false)"
}

versions() {
    need_env
    "$py" - "$@" <<'END'
import json, re, sys
from importlib import metadata

def version(name):
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None

names = ["dask", "distributed"]
for spec in sys.argv[1:]:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[|[<>=!~;]|$)", spec)
    if match and match.group(1).lower() not in names:
        names.append(match.group(1).lower())
found = {name: version(name) for name in names}
found["python"] = "%d.%d.%d" % sys.version_info[:3]
print(json.dumps(found))
END
}

status() {
    need_env
    "$py" - "$DASK" <<'END'
import json, sys
folder = sys.argv[1]
try:
    import dask
    from distributed import Client
    from distributed.security import Security
except ImportError as e:  # the env step has not run with the cluster's packages yet
    print(f"error: {e} in {sys.prefix}", file=sys.stderr)
    sys.exit(1)

address = dask.config.get("scheduler-address", None)  # what Client() uses: write_client_config's file
if not address:
    print("error: no dask scheduler was started here (no scheduler-address in ~/.config/dask/labvm.yaml)",
          file=sys.stderr)
    sys.exit(1)

security = Security(tls_ca_file=f"{folder}/ca.pem", tls_client_cert=f"{folder}/client.pem",
                    tls_client_key=f"{folder}/client.key", require_encryption=True)
try:
    client = Client(address, security=security, timeout=10, set_as_default=False)
except OSError as e:
    print(f"error: no dask scheduler answers at {address}: {e}", file=sys.stderr)
    sys.exit(1)
with client:
    workers = client.scheduler_info(n_workers=-1)["workers"]
    processing = client.processing()
    print(json.dumps({"scheduler": address, "workers": [
        {"address": a, "name": str(w.get("name")), "threads": w["nthreads"], "memory": w["memory_limit"],
         "processing": len(processing.get(a, ()))}
        for a, w in sorted(workers.items())]}))
END
}

mkdir -p "$STATE"
# -p: machines sharing a home may make it at the same moment; chmod: labvm's SFTP upload of the
# certificates may have made it first, with the umask. It holds keys and the dashboard's socket.
mkdir -p "$DASK"
chmod 700 "$DASK"
case ${1:-} in
    versions) shift; set --
        while IFS= read -r requirement; do [ -n "$requirement" ] && set -- "$@" "$requirement"; done <<END
${LABVM_PACKAGES:-}
END
        versions "$@" ;;
    start-scheduler) start_scheduler ;;
    start-worker) start_worker ;;
    install-certificates) install_certificates ;;
    stop) stop ;;
    status) status ;;
    run) shift; run_process "$@" ;;
    *) die "usage: dask.sh versions|install-certificates|start-scheduler|start-worker|stop|status" ;;
esac
