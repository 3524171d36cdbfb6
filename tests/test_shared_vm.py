"""A shared VM: another login of the same machine must never receive the browser's token.

A second throwaway Unix user plays the colleague; the VM is a real sshd with a real Jupyter.
"""

import subprocess

import pytest

from realhost import User, ssh_profile, wait_for_port


@pytest.fixture
def colleague(user, tmp_path):
    other = User.create(tmp_path)
    yield other
    other.remove()


def test_a_port_another_user_took_is_named_and_never_served(lab, user, sshd, colleague):
    profile = ssh_profile(user, sshd)
    port = profile["notebook"]["port"]
    lab.write_hosts({"vm": profile})
    lab.inv("up", "--host", "vm", "--no-browser")
    lab.inv("stop-notebook", "--host", "vm")
    # The colleague binds the port the tunnel forwards to (after a stop, a crash or a reboot).
    squatter = subprocess.Popen(
        ["su", "-s", "/bin/sh", colleague.name, "-c",
         f"exec python3 -c 'import socket,time; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind((\"127.0.0.1\", {port})); s.listen(); time.sleep(600)'"])
    try:
        wait_for_port(port)
        status = lab.inv("status", "--host", "vm").stdout
        assert f"port {port} is held by user {colleague.name}, not you" in status, status
        started = lab.inv("start-notebook", "--host", "vm", check=False)
        assert started.returncode == 1
        assert f"port {port} on the host is held by user {colleague.name}, not you" in started.output
        assert user.processes("jupyter-lab") == []
    finally:
        squatter.kill()
        lab.inv("down", "--host", "vm", "--no-sync", check=False)
