"""The README's main command: `inv up` on the built-in `local` profile (no SSH, no cloud)."""

import re
import subprocess

from realhost import free_port, http_status


def test_local_up_again_status_down(lab):
    port = free_port()
    lab.write_hosts(
        {
            "local": {
                "provider": "local",
                "env": {"manager": "uv", "packages": ["jupyterlab"]},
                "notebook": {"port": port, "start_timeout": 180},
            }
        }
    )
    first = lab.inv("up", "--no-browser").output  # the default profile
    assert "keys: the local profile needs no SSH key" in first
    url = re.search(r"JupyterLab is ready: (\S+)", first).group(1)
    assert url.startswith(f"http://127.0.0.1:{port}/lab?token=")
    token = url.split("token=")[1]
    assert http_status(f"http://127.0.0.1:{port}/api/status", token) == 200
    assert http_status(f"http://127.0.0.1:{port}/api/status") == 403
    assert (lab.home / ".labvm" / "token").stat().st_mode & 0o777 == 0o600

    again = lab.inv("up", "--no-browser").output
    assert "env: nothing to do" in again and "nothing started" in again
    assert url in again
    assert url in lab.inv("status").output

    lab.inv("down")
    jupyter = subprocess.run(["pgrep", "-f", f"{lab.home}/.labvm/env/bin/jupyter"], capture_output=True)
    assert jupyter.stdout == b""
    assert http_status(f"http://127.0.0.1:{port}/api/status", token) is None
