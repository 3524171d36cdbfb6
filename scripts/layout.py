# Where labvm's files are on a host, and the names and ports both sides use: one file, read by the
# laptop (labvm.vm loads it) and by every script here (Python: `import layout`, this file sits beside
# them; sh: `. layout.py`, in common.sh).  So it holds only NAME="value" lines and comments, which
# sh and Python read alike: no spaces around '=', no expressions.
#
# Paths are relative to the login's home folder: SFTP and ssh commands start there, and the
# scripts join them to $HOME (sh) or os.path.expanduser("~") (Python).

STATE_DIR=".labvm"
SCRIPTS_DIR=".labvm/scripts"
# Jupyter's runtime files (JUPYTER_RUNTIME_DIR, set by jupyter-run.sh): a server whose file is here
# is labvm's; any other Jupyter is someone else's.
RUNTIME_DIR=".labvm/runtime"
JUPYTER_CONFIG=".labvm/jupyter_config.json"
JUPYTER_LOG=".labvm/jupyter.log"
TOKEN_FILE=".labvm/token"
PASSWORD_HASH=".labvm/password_hash"
RUNNER_PID=".labvm/runner.pid"
ENV_LOG=".labvm/env.log"
# An environment file of hosts.yml (env.environment_file) is uploaded here, with its own suffix.
ENVIRONMENT_FILE=".labvm/environment"
# The tmux or screen session Jupyter runs in.
NOTEBOOK_SESSION="labvm-notebook"

AUTOSTOP_SETTINGS=".labvm/autostop.json"
AUTOSTOP_STATE=".labvm/autostop-state.json"
AUTOSTOP_LOG=".labvm/autostop.log"
AUTOSTOP_CRON_MARK="# labvm-autostop"
AUTOSTOP_UNIT_PREFIX="labvm-autostop-"

# Dask: certificates, pid and log files, and the scheduler's dashboard, a unix socket only its user
# can open (dask_dashboard.py), which JupyterLab shows at DASHBOARD_ROUTE (jupyter-server-proxy,
# behind Jupyter's token; nbctl.py config).  Not "dask": that prefix is dask-labextension's own API.
DASK_DIR=".labvm/dask"
DASHBOARD_SOCKET=".labvm/dask/dashboard.sock"
DASHBOARD_ROUTE="dask-dashboard"
SCHEDULER_PORT=8786
