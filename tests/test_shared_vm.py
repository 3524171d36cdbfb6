"""A shared VM: another login of the same machine must never receive the browser's token.

A second throwaway Unix user plays the colleague; the VM is a real sshd with a real Jupyter.
"""

import pwd
import re
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from realhost import User, http_status, ssh_profile, url_of, wait_for_port


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
        [
            "su",
            "-s",
            "/bin/sh",
            colleague.name,
            "-c",
            f"exec python3 -c 'import socket,time; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind((\"127.0.0.1\", {port})); s.listen(); time.sleep(600)'",
        ]
    )
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


# What the colleague runs: a socket on the notebook port that writes a file when anyone connects.
TATTLER = (
    "import socket, sys; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
    "s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen(); s.accept(); open(sys.argv[2], 'w').write('reached')"
)


def wait_for_record(lab, state: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while (record := lab.tunnel_record("vm"))["state"] != state:
        if time.monotonic() > deadline:
            raise AssertionError(f"keeper still {record['state']!r} after {timeout:.0f}s, not {state!r}: {record}")
        time.sleep(0.1)
    return record


def test_the_kept_tunnel_never_forwards_to_a_port_another_user_took(lab, user, sshd, colleague):
    profile = ssh_profile(user, sshd)
    port = profile["notebook"]["port"]
    lab.write_hosts({"vm": profile})
    url = url_of(lab.inv("up", "--host", "vm", "--no-browser").output)
    base, token = url.split("/lab?token=")
    lab.inv("stop-notebook", "--host", "vm")
    evidence = Path(tempfile.mkdtemp(prefix="colleague-"))
    evidence.chmod(0o777)  # the colleague writes there
    reached = evidence / "reached"
    squatter = subprocess.Popen(
        ["python3", "-c", TATTLER, str(port), str(reached)],
        cwd=evidence,
        user=colleague.uid,
        group=pwd.getpwnam(colleague.name).pw_gid,
        extra_groups=[],
    )
    try:
        wait_for_port_owned_by(colleague, port)
        record = wait_for_record(lab, "refused")
        assert f"port {port} on the VM is held by user {colleague.name}, not you" in record["reason"], record
        # The local URL is still labvm's (no other user of the laptop can take it either), and says why
        # it leads nowhere now.
        assert http_status(f"{base}/api/status", token) == 503
        status = lab.inv("status", "--host", "vm").stdout
        assert f"port {port} is held by user {colleague.name}, not you" in status, status
        assert not reached.exists(), "the colleague's socket received a connection"
        log = (lab.ssh_dir / "labvm" / "run" / "vm.log").read_text()
        assert log.count(f"refused: port {port} on the VM is held by user {colleague.name}") == 1, log
    finally:
        squatter.kill()
        squatter.wait()
    again = url_of(lab.inv("up", "--host", "vm", "--no-browser").output)
    assert lab.tunnel_record("vm")["state"] == "up"
    assert again.split("/lab?token=")[0] == base  # the same local URL
    assert http_status(f"{base}/api/status", again.split("/lab?token=")[1]) == 200
    assert not reached.exists()
    lab.inv("down", "--host", "vm", "--no-sync", check=False)


def test_a_port_taken_is_noticed_even_while_the_vm_refuses_new_logins(lab, user, sshd, colleague):
    """The keeper asks who holds the port over the forward's own login (ControlMaster): a VM that takes
    no new login for a while (fail2ban, MaxStartups, authorized_keys rewritten) cannot blind it."""
    profile = ssh_profile(user, sshd)
    port = profile["notebook"]["port"]
    lab.write_hosts({"vm": profile})
    lab.inv("up", "--host", "vm", "--no-browser")
    lab.inv("stop-notebook", "--host", "vm")
    keys = user.home / ".ssh" / "authorized_keys"
    allowed = keys.read_text()
    evidence = Path(tempfile.mkdtemp(prefix="colleague-"))
    evidence.chmod(0o777)
    reached = evidence / "reached"
    squatter = None
    try:
        keys.write_text("")  # no new login from now on; the tunnel's login goes on
        squatter = subprocess.Popen(
            ["python3", "-c", TATTLER, str(port), str(reached)],
            cwd=evidence,
            user=colleague.uid,
            group=pwd.getpwnam(colleague.name).pw_gid,
            extra_groups=[],
        )
        wait_for_port_owned_by(colleague, port)
        record = wait_for_record(lab, "refused")
        assert f"port {port} on the VM is held by user {colleague.name}, not you" in record["reason"], record
        assert not reached.exists(), "the colleague's socket received a connection"
    finally:
        keys.write_text(allowed)
        if squatter:
            squatter.kill()
            squatter.wait()
        lab.inv("down", "--host", "vm", "--no-sync", check=False)


def test_every_start_of_jupyter_has_a_new_token_and_a_rerun_keeps_the_open_tab(lab, user, sshd):
    """Whoever held the port while no Jupyter ran received the open tab's token and cookie: neither
    may open the next Jupyter.  A re-run while it runs changes nothing for the tab."""
    lab.write_hosts({"vm": ssh_profile(user, sshd)})
    first = url_of(lab.inv("up", "--host", "vm", "--no-browser").output)
    base, token = first.split("/lab?token=")
    tab = urllib.request.build_opener(urllib.request.ProxyHandler({}), urllib.request.HTTPCookieProcessor())
    with tab.open(first, timeout=30) as page:  # what the browser does with the URL: a login cookie
        assert page.status == 200
    try:
        assert url_of(lab.inv("up", "--host", "vm", "--no-browser").output) == first
        assert lab.inv("start-notebook", "--host", "vm").returncode == 0
        assert cookie_status(tab, base) == 200  # the open tab, by its cookie alone
        lab.inv("stop-notebook", "--host", "vm")
        lab.inv("start-notebook", "--host", "vm")
        url = re.search(r"url: (\S+)", lab.inv("status", "--host", "vm").stdout).group(1)
        assert url.split("/lab?token=")[0] == base
        new = url.split("/lab?token=")[1]
        assert new != token and (user.home / ".labvm" / "token").read_text().strip() == new
        assert http_status(f"{base}/api/status", token) == 403
        assert cookie_status(tab, base) == 403  # its cookie was signed with the old secret
        assert http_status(f"{base}/api/status", new) == 200  # the positive control
        assert url_of(lab.inv("up", "--host", "vm", "--no-browser").output) == url
    finally:
        lab.inv("down", "--host", "vm", "--no-sync", check=False)


def cookie_status(tab, base: str) -> int:
    try:
        with tab.open(f"{base}/api/status", timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code


def wait_for_port_owned_by(colleague, port: int, timeout: float = 10) -> None:
    """The colleague's socket listens (seen in /proc, as labvm sees it: no connection to it)."""
    deadline = time.monotonic() + timeout
    while not any(
        line.split()[3] == "0A"
        and int(line.split()[1].rsplit(":", 1)[1], 16) == port
        and int(line.split()[7]) == colleague.uid
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]
    ):
        if time.monotonic() > deadline:
            raise AssertionError(f"the colleague's socket on port {port} did not appear")
        time.sleep(0.05)


NOBODY = '{"port": 8888, "uid": null, "mine": false, "user": null}'


@pytest.mark.parametrize(
    "answer, refused",
    [
        (NOBODY, ""),
        ('{"port": 8888, "uid": 1000, "mine": true, "user": "me"}', ""),
        ('{"port": 8888, "uid": 0, "mine": false, "user": "root"}', ""),  # root reads the token anyway
        ('{"port": 8888, "uid": 1001, "mine": false, "user": "bob\\u001b]0;x\\u0007"}', "held by user bob"),
    ],
)
def test_the_owner_answer_decides_the_forward(answer, refused):
    from labvm.keeper import port_holders, refusal

    reason = refusal(port_holders(answer, [8888]))
    assert refused in reason if refused else reason == ""


@pytest.mark.parametrize(
    "answer",
    [
        "",
        "not json",
        "[" * 5000,
        '{"port": 8888}',
        NOBODY + "\n" + NOBODY,
        NOBODY.replace("8888", "9999"),
        '{"port": 8888, "uid": true, "mine": false, "user": "x"}',
        '{"port": 8888, "uid": 5, "mine": 1, "user": "x"}',
        '{"port": 8888, "uid": -1, "mine": false, "user": "x"}',
        '{"port": 8888, "uid": 5, "mine": false, "user": ""}',
        NOBODY[:-1] + ', "extra": 1}',
    ],
)
def test_an_owner_answer_labvm_cannot_read_is_refused(answer):
    from labvm.keeper import port_holders

    with pytest.raises((ValueError, RecursionError)):
        port_holders(answer, [8888])


HOLDER = (
    "import socket, time; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
    "s.bind(('127.0.0.1', 8888)); s.listen(); time.sleep(600)"
)


def test_a_labmate_on_the_default_port_moves_jupyter_to_the_next_free_one(lab, user, sshd, colleague):
    """A shared workstation: the first labmate holds 8888; the next one's `up` takes the next free port,
    says which, and keeps it at the next `up` while it is free (issue 28 C1)."""
    profile = ssh_profile(user, sshd)
    profile["notebook"] = {"local_port": profile["notebook"]["local_port"], "start_timeout": 180}  # port: default
    lab.write_hosts({"vm": profile})
    holder = subprocess.Popen(
        ["python3", "-c", HOLDER], user=colleague.uid, group=pwd.getpwnam(colleague.name).pw_gid, extra_groups=[]
    )
    try:
        wait_for_port(8888)  # the colleague's, or (on a busy test machine) another program's: taken either way
        first = lab.inv("up", "--host", "vm", "--no-browser").output
        moved = re.search(r"jupyter: 8888 is taken on the host; using (\d+)", first)
        assert moved, first
        port = int(moved.group(1))
        url = url_of(first)
        assert http_status(f"{url.split('/lab?token=')[0]}/api/status", url.split("token=")[1]) == 200
        assert lab.tunnel_record("vm")["remote_port"] == port
        assert f"notebook: running on host port {port}" in lab.inv("status", "--host", "vm").stdout
        lab.inv("down", "--host", "vm", "--no-sync")
        again = lab.inv("up", "--host", "vm", "--no-browser").output
        assert lab.tunnel_record("vm")["remote_port"] == port, again  # the same port while it is free
        assert user.processes("jupyter-lab")
    finally:
        holder.kill()
        holder.wait()
        lab.inv("down", "--host", "vm", "--no-sync", check=False)


def test_a_written_default_port_a_labmate_holds_is_refused_never_moved(lab, user, sshd, colleague):
    """hosts.yml writes `notebook.port: 8888`: that port is the one asked for, even though it is also
    labvm's default; a labmate holding it is named and Jupyter starts nowhere else (issue 28 C1)."""
    profile = ssh_profile(user, sshd)
    profile["notebook"] = {**profile["notebook"], "port": 8888}
    lab.write_hosts({"vm": profile})
    holder = subprocess.Popen(
        ["python3", "-c", HOLDER], user=colleague.uid, group=pwd.getpwnam(colleague.name).pw_gid, extra_groups=[]
    )
    try:
        wait_for_port(8888)  # the colleague's, or (on a busy test machine) another program's: taken either way
        result = lab.inv("up", "--host", "vm", "--no-browser", check=False)
        assert result.returncode == 1, result.output
        assert "port 8888 on the host is" in result.output and "taken on the host; using" not in result.output
        if holder.poll() is None:  # the port is the colleague's: named as theirs
            assert f"held by user {colleague.name}, not you" in result.output, result.output
        assert user.processes("jupyter-lab") == []
    finally:
        holder.kill()
        holder.wait()
        lab.inv("down", "--host", "vm", "--no-sync", check=False)
