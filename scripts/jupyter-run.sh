#!/bin/sh
# Runs inside tmux, screen or nohup: JupyterLab with labvm's config (127.0.0.1, token),
# its runtime files in ~/.labvm/runtime so labvm can tell its own server from others.
set -eu
state="$HOME/.labvm"
prefix=$1
echo $$ > "$state/runner.pid"
JUPYTER_RUNTIME_DIR="$state/runtime"
PATH="$prefix/bin:$PATH"
export JUPYTER_RUNTIME_DIR PATH
printf '\n--- labvm: starting JupyterLab %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >> "$state/jupyter.log"
exec "$prefix/bin/jupyter" lab --config="$state/jupyter_config.json" >> "$state/jupyter.log" 2>&1
