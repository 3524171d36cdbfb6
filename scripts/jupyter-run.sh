#!/bin/sh
# Runs inside tmux, screen or nohup: JupyterLab with labvm's config (127.0.0.1, token),
# its runtime files in layout.py's RUNTIME_DIR so labvm can tell its own server from others.
set -eu
. "$(dirname "$0")/layout.py"
prefix=$1
echo $$ > "$HOME/$RUNNER_PID"
JUPYTER_RUNTIME_DIR="$HOME/$RUNTIME_DIR"
PATH="$prefix/bin:$PATH"
export JUPYTER_RUNTIME_DIR PATH
printf '\n--- labvm: starting JupyterLab %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >> "$HOME/$JUPYTER_LOG"
exec "$prefix/bin/jupyter" lab --config="$HOME/$JUPYTER_CONFIG" >> "$HOME/$JUPYTER_LOG" 2>&1
