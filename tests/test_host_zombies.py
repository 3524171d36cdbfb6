"""A Jupyter that ended and was never reaped: a zombie holds no port and serves nothing, yet its pid stays
(a container's pid 1 may reap nothing) and its runtime file still names it.  On the host, labvm counts it
as gone (scripts/common.py alive)."""

import json
import subprocess
import time
from pathlib import Path

from realhost import ssh_profile

# A child that exits at once while its parent never waits for it: a zombie until the parent ends.
ZOMBIE_PARENT = """
import os, sys
child = os.fork()
if child == 0:
    os._exit(0)
print(child, flush=True)
sys.stdin.read()
"""


def test_a_jupyter_zombies_runtime_file_does_not_hold_the_port(lab, user, sshd):
    """A Jupyter started by hand on the notebook's port and ended by a signal (tmux kill-session) leaves
    jpserver-PID.json in Jupyter's runtime folder; once it is a zombie, `inv up` starts labvm's Jupyter there."""
    profile = ssh_profile(user, sshd)
    lab.write_hosts({"vm": profile})
    parent = subprocess.Popen(
        ["/usr/bin/python3", "-c", ZOMBIE_PARENT], user=user.uid, stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        zombie = int(parent.stdout.readline())
        deadline = time.monotonic() + 10
        while Path(f"/proc/{zombie}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
            assert time.monotonic() < deadline, "the child did not become a zombie"
            time.sleep(0.05)
        runtime = user.home / ".local" / "share" / "jupyter" / "runtime"
        user.shell(f"mkdir -p {runtime}")
        left = {"pid": zombie, "port": profile["notebook"]["port"], "url": "http://127.0.0.1/", "token": "old"}
        user.shell(f"cat > {runtime}/jpserver-{zombie}.json <<'EOF'\n{json.dumps(left)}\nEOF")
        up = lab.inv("up", "--host", "vm", "--no-browser", check=False)
        assert up.returncode == 0, up.output
        assert "JupyterLab is ready" in up.stdout and "did not start" not in up.output
    finally:
        parent.stdin.close()
        parent.wait(timeout=10)
        lab.inv("down", "--host", "vm", check=False)
        lab.remove("vm")
