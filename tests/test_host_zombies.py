"""A Jupyter that ended and was never reaped: a zombie holds no port and serves nothing, yet its pid stays
(a container's pid 1 may reap nothing) and its runtime file still names it.  On the host, labvm counts it
as gone (scripts/common.py alive)."""

import json

from realhost import ssh_profile, zombie


def test_a_jupyter_zombies_runtime_file_does_not_hold_the_port(lab, user, sshd):
    """A Jupyter started by hand on the notebook's port and ended by a signal (tmux kill-session) leaves
    jpserver-PID.json in Jupyter's runtime folder; once it is a zombie, `inv up` starts labvm's Jupyter there."""
    profile = ssh_profile(user, sshd)
    lab.write_hosts({"vm": profile})
    with zombie(user) as pid:
        try:
            runtime = user.home / ".local" / "share" / "jupyter" / "runtime"
            user.shell(f"mkdir -p {runtime}")
            left = {"pid": pid, "port": profile["notebook"]["port"], "url": "http://127.0.0.1/", "token": "old"}
            user.shell(f"cat > {runtime}/jpserver-{pid}.json <<'EOF'\n{json.dumps(left)}\nEOF")
            up = lab.inv("up", "--host", "vm", "--no-browser", check=False)
            assert up.returncode == 0, up.output
            assert "JupyterLab is ready" in up.stdout and "did not start" not in up.output
        finally:
            lab.inv("down", "--host", "vm", check=False)
            lab.remove("vm")
