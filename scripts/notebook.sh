#!/bin/sh
# JupyterLab on the host: notebook.sh config|start|stop|status
#   LABVM_ENV_PREFIX  the environment holding jupyter
#   LABVM_PORT        port on the host (Jupyter binds 127.0.0.1 only)
#   LABVM_WORKSPACE   Jupyter's root directory (~ allowed)
#   LABVM_MUX         tmux | screen | nohup: what keeps Jupyter alive after logout
#   LABVM_AUTH        token | password (layout.py PASSWORD_HASH, put there by labvm)
#   LABVM_TIMEOUT     seconds to wait for an authorised /api/status
#   LABVM_FORCE       1: stop also ends a Jupyter labvm did not start on that port
#   LABVM_PICK        1: LABVM_PORT is notebook.port's default; when another program holds it, config
#                     takes the next free one (kept for this login while free) and the rest follow it
# Every start of Jupyter gets a new token (nbctl.py plan --new-token); a running one keeps its own.
# Prints one JSON object on stdout; progress and errors go to stderr.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"

prefix=$(expand_home "${LABVM_ENV_PREFIX:?}")
port=${LABVM_PORT:-8888}
mux=${LABVM_MUX:-tmux}
nbctl="$here/nbctl.py"
py=$(env_python "$prefix")
pick=
[ "${LABVM_PICK:-0}" = 1 ] && pick=--pick
mkdir -p "$STATE"

need_multiplexer() {
    command -v "$mux" >/dev/null 2>&1 && return 0
    if command -v apt-get >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        say "notebook: installing $mux"
        sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$mux" >&2 && return 0
    fi
    die "$mux is not installed on the host; install it (sudo apt-get install $mux) or set notebook.multiplexer: nohup"
}

stop_all() {
    if [ "${LABVM_FORCE:-0}" = 1 ]; then "$py" "$nbctl" stop --port "$port" $pick --force
    else "$py" "$nbctl" stop --port "$port" $pick; fi
    if command -v tmux >/dev/null 2>&1; then tmux kill-session -t "$NOTEBOOK_SESSION" 2>/dev/null || true; fi
    if command -v screen >/dev/null 2>&1; then screen -S "$NOTEBOOK_SESSION" -X quit >/dev/null 2>&1 || true; fi
}

# Starts Jupyter and returns at once (running=1: one runs already, left as it is).
launch_jupyter() {
    [ -x "$prefix/bin/jupyter" ] || die "no jupyter in $prefix yet; run the env step first (inv setup)"
    [ -f "$HOME/$JUPYTER_CONFIG" ] || die "no Jupyter config yet; run inv setup first"
    # A start or restart gets its new token here (plan --new-token), before anything is stopped or started.
    plan=$("$py" "$nbctl" plan --port "$port" $pick --new-token) || exit 1
    # The port the plan is for (with --pick, the one config chose); the rest of the start uses it.
    port=$(printf '%s\n' "$plan" | sed -n 's/^{"port": \([0-9]*\),.*/\1/p')
    pick=
    running=0
    case $plan in
        *'"action": "running"'*)
            say "notebook: already running on port $port; nothing started"
            running=1
            return ;;
        *'"action": "restart"'*)
            say "notebook: settings changed since Jupyter started; restarting it"
            stop_all > /dev/null ;;
    esac
    need_multiplexer
    rm -f "$HOME/$RUNNER_PID"
    case $mux in
        tmux)
            tmux kill-session -t "$NOTEBOOK_SESSION" 2>/dev/null || true
            tmux new-session -d -s "$NOTEBOOK_SESSION" sh "$here/jupyter-run.sh" "$prefix" ;;
        screen)
            screen -S "$NOTEBOOK_SESSION" -X quit >/dev/null 2>&1 || true
            screen -dmS "$NOTEBOOK_SESSION" sh "$here/jupyter-run.sh" "$prefix" ;;
        nohup)
            nohup sh "$here/jupyter-run.sh" "$prefix" </dev/null >/dev/null 2>&1 & ;;
        *) die "notebook.multiplexer must be tmux, screen or nohup, not $mux" ;;
    esac
    say "notebook: starting JupyterLab in $mux (session $NOTEBOOK_SESSION) on 127.0.0.1:$port"
}

# Until Jupyter answers, then its status; a Jupyter that does not is stopped.
wait_for_jupyter() {
    "$py" "$nbctl" wait --port "$port" --timeout "${LABVM_TIMEOUT:-120}" || { stop_all > /dev/null; exit 1; }
}

start() {
    launch_jupyter
    if [ "$running" = 1 ]; then
        printf '%s\n' "$plan"
    else
        wait_for_jupyter
    fi
}

case ${1:-} in
    config) "$py" "$nbctl" config --port "$port" $pick --prefix "$prefix" --workspace "$(expand_home "${LABVM_WORKSPACE:-~/work}")" --auth "${LABVM_AUTH:-token}" ;;
    start) start ;;
    stop) stop_all ;;
    status) "$py" "$nbctl" status --port "$port" $pick ;;
    *) die "usage: notebook.sh config|start|stop|status" ;;
esac
