"""The user's own ~/.ssh/config, with a `Host *` that is common and hostile to labvm's use of ssh:
multiplexing that persists (the keeper's master would fork away and its ssh exit 0), a remote
command and a forced pty (a question to the VM would run something else, and a pty login keeps
autostop from ever stopping the VM), a session type of none, stdin from /dev/null (rsync speaks
over stdin), a fork after login, a local command, an agent forwarded, and a port forwarded for
every host.  labvm's ssh (the keeper's, its questions, rsync's) must work as if it were not there,
and do none of it; `ssh labvm-<profile>` (the user's own login) keeps the user's settings.

A real sshd ("the VM") and a real `inv up`, `inv sync`, `inv down`.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from labvm.gate import port_free
from realhost import Lab, free_port, notebook_answers, put, ssh_profile


def hostile_block(lab: Lab, forwarded: int) -> str:
    return (
        "Host *\n"
        "    ControlMaster auto\n"
        f"    ControlPath {lab.directory}/cm-%C\n"
        "    ControlPersist 10m\n"
        "    RemoteCommand echo hijacked\n"
        "    RequestTTY force\n"
        "    SessionType none\n"
        "    StdinNull yes\n"
        "    ForkAfterAuthentication yes\n"
        "    ForwardAgent yes\n"
        "    PermitLocalCommand yes\n"
        f"    LocalCommand touch {lab.directory}/local-command-ran\n"
        f"    LocalForward 127.0.0.1:{forwarded} 127.0.0.1:22\n"
    )


@pytest.fixture
def hostile(lab, user, sshd, workspace):
    forwarded = free_port()
    lab.write_hosts({"vm": ssh_profile(user, sshd)})
    lab.ssh_dir.mkdir(mode=0o700, exist_ok=True)
    (lab.ssh_dir / "config").write_text(hostile_block(lab, forwarded))
    yield lab, forwarded
    lab.inv("down", "--host", "vm", check=False)


def masters_of(lab: Lab) -> list[str]:
    """ssh processes the user's own ControlPersist would have left behind."""
    out = subprocess.run(["pgrep", "-af", f"{lab.directory}/cm-"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if "pgrep" not in line]


def test_a_hostile_but_common_host_star_breaks_nothing_labvm_runs(hostile, user):
    lab, forwarded = hostile
    if subprocess.run(["ssh", "-G", "-F", str(lab.ssh_dir / "config"), "x"], capture_output=True).returncode:
        pytest.skip("this OpenSSH does not know an option of the hostile config (SessionType and kin: 8.7+)")
    up = lab.inv("up", "--host", "vm", "--no-browser")
    assert notebook_answers(up.stdout)
    record = lab.tunnel_record("vm")
    assert record["state"] == "up", record
    log = (lab.ssh_dir / "labvm" / "run" / "vm.log").read_text()
    assert "forwards ports for labvm-vm" in log and "the tunnel's ssh reads only" in log
    # The keeper's questions to the VM ran what labvm asked (the owner of the port: forwarded),
    # and its autostop question came back as a report, not "hijacked" through a pty.
    assert "hijacked" not in log and "cannot ask" not in log, log[-2000:]

    put(user, "analysis.ipynb", '{"cells": []}')
    synced = lab.inv("sync", "--host", "vm")
    assert (lab.directory / "notebooks" / "vm" / "analysis.ipynb").exists(), synced.output

    assert port_free(forwarded)  # the user's LocalForward was never bound by labvm's ssh
    assert not (lab.directory / "local-command-ran").exists()
    assert masters_of(lab) == []
    lab.inv("down", "--host", "vm")
    lab.inv("tunnel", "--host", "vm", "--stop")  # down keeps the URL asleep; this ends it
    assert masters_of(lab) == []
    out = subprocess.run(["pgrep", "-af", str(lab.ssh_dir)], capture_output=True, text=True).stdout
    assert [line for line in out.splitlines() if "pgrep" not in line] == []


def test_the_users_own_login_keeps_the_users_settings(hostile):
    """`ssh labvm-vm` is the user's: labvm's block comes first, the user's `Host *` still applies
    to what labvm's block does not set (here: the remote command)."""
    lab, _ = hostile
    lab.inv("keys", "--host", "vm")
    shown = subprocess.run(
        ["ssh", "-G", "-F", str(lab.ssh_dir / "config"), "labvm-vm"], capture_output=True, text=True
    ).stdout
    assert "remotecommand echo hijacked" in shown and "controlpersist 600" in shown
    shutil.rmtree(lab.directory / "notebooks", ignore_errors=True)
