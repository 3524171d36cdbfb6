"""The main job on a plain SSH host: `inv up` -> token URL through an OpenSSH tunnel -> `inv down`."""

import http.server
import re
import socket
import subprocess
import threading
import time

import pytest

from realhost import INV, ROOT, http_status, one_line, ssh_profile


def url_from(output: str) -> str:
    return re.search(r"JupyterLab is ready: (\S+)", output).group(1)


def token_of(url: str) -> str:
    return url.split("token=")[1]


def nothing_left(lab, user, profile="vm"):
    assert user.processes("jupyter-lab") == []
    assert "labvm-notebook" not in user.shell("tmux ls 2>&1; screen -ls 2>&1").stdout
    assert not (lab.ssh_dir / "labvm" / "run" / f"{profile}.json").exists()
    assert laptop_processes(lab) == []


def laptop_processes(lab) -> list[str]:
    """Every process whose command line names this laptop's ssh folder: the tunnel's keeper and its ssh."""
    out = subprocess.run(["pgrep", "-af", str(lab.ssh_dir)], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if "pgrep" not in line]


@pytest.mark.parametrize("multiplexer", ["tmux", "screen", "nohup"])
def test_up_status_up_again_down(lab, user, sshd, multiplexer):
    lab.write_hosts({"vm": ssh_profile(user, sshd, notebook={"multiplexer": multiplexer})})

    first = lab.inv("up", "--host", "vm", "--no-browser")
    url = url_from(first.stdout)
    port = int(re.search(r"127\.0\.0\.1:(\d+)/", url).group(1))
    status_url = f"http://127.0.0.1:{port}/api/status"
    assert http_status(status_url, token_of(url)) == 200
    assert http_status(status_url) == 403
    # Jupyter listens on the host's loopback only: the tunnel is the way in.
    listening = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True).stdout
    remote_port = lab.tunnel_record("vm")["remote_port"]
    assert re.search(rf"127\.0\.0\.1:{remote_port}\s", listening)
    assert not re.search(rf"(0\.0\.0\.0|\*|\[::\]):{remote_port}\s", listening)
    # It survives the SSH session that started it, inside the multiplexer asked for.
    sessions = user.shell("tmux ls 2>&1; screen -ls 2>&1").stdout
    assert ("labvm-notebook" in sessions) == (multiplexer != "nohup")

    status = lab.inv("status").stdout
    assert "vm (ssh, 127.0.0.1" in status and "notebook: running" in status
    assert url in status and "kernels 0" in status

    pids = user.processes("jupyter-lab")
    logins = sshd.log.read_text().count("Accepted publickey")
    again = lab.inv("up", "--host", "vm", "--no-browser").output
    assert sshd.log.read_text().count("Accepted publickey") == logins + 1  # one SSH connection
    assert "nothing to do" in again
    assert "already running" in again and "nothing started" in again
    assert "tunnel: already open" in again
    assert url_from(again) == url
    assert user.processes("jupyter-lab") == pids

    # The positive control of nothing_left: while up, the keeper and its OpenSSH are seen.
    running = laptop_processes(lab)
    assert any("labvm.keeper" in line for line in running) and any(" -N " in line for line in running), running
    down = lab.inv("down", "--host", "vm").stdout
    # Jupyter stops; the URL stays labvm's: asleep, no ssh, the keeper still holds the port.
    assert "stopped Jupyter" in down and f"tunnel: asleep; http://127.0.0.1:{port}/ says why" in down
    assert [line for line in laptop_processes(lab) if " -N " in line] == []
    assert http_status(status_url, token_of(url)) == 503
    assert "tunnel: closed" in lab.inv("tunnel", "--host", "vm", "--stop").stdout
    nothing_left(lab, user)
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0  # the tunnel's port is closed now


def test_keys_make_ssh_alias_work_once(lab, user, sshd):
    lab.write_hosts({"vm": ssh_profile(user, sshd)})
    (lab.ssh_dir).mkdir(mode=0o700)
    (lab.ssh_dir / "config").write_text("Host mine\n    HostName example.org\n")

    lab.inv("keys", "--host", "vm")
    lab.inv("keys", "--host", "vm")

    key = lab.ssh_dir / "labvm" / "id_ed25519"
    assert key.stat().st_mode & 0o777 == 0o600
    assert key.with_suffix(".pub").stat().st_mode & 0o777 == 0o644
    user_config = (lab.ssh_dir / "config").read_text()
    assert user_config.count("Include") == 1 and user_config.startswith("Include ")
    assert "Host mine\n    HostName example.org" in user_config
    authorized = (user.home / ".ssh" / "authorized_keys").read_text()
    assert authorized.count(key.with_suffix(".pub").read_text().split()[1]) == 1
    assert authorized.startswith(user.key.with_suffix(".pub").read_text().strip())
    # `ssh labvm-vm` works with labvm's own key alone (IdentitiesOnly).
    (user.home / ".ssh" / "authorized_keys").write_text(key.with_suffix(".pub").read_text())
    try:
        login = lab.ssh("labvm-vm", "id -un")
    finally:
        (user.home / ".ssh" / "authorized_keys").write_text(authorized)
    assert login.returncode == 0, login.stderr
    assert login.stdout.strip() == user.name
    known = (lab.ssh_dir / "labvm" / "known_hosts").read_text()
    assert f"[127.0.0.1]:{sshd.port}" in known


def test_jump_host(lab, user, sshd, jump_sshd):
    profile = ssh_profile(user, sshd, jump=f"{user.name}@127.0.0.1:{jump_sshd.port}")
    lab.write_hosts({"vm": profile})

    out = lab.inv("up", "--host", "vm", "--no-browser").stdout
    url = url_from(out)
    port = int(re.search(r"127\.0\.0\.1:(\d+)/", url).group(1))
    assert http_status(f"http://127.0.0.1:{port}/api/status", token_of(url)) == 200
    log = jump_sshd.log.read_text()
    # Fabric (the remote steps) and OpenSSH (the tunnel) both went through the jump host.
    assert log.count(f"target 127.0.0.1 port {sshd.port}") >= 2, log[-2000:]
    config = (lab.ssh_dir / "labvm" / "config").read_text()
    assert "ProxyJump labvm-vm+jump" in config and f"Port {jump_sshd.port}" in config
    assert lab.ssh("labvm-vm", "true").returncode == 0

    lab.inv("down", "--host", "vm")
    lab.inv("tunnel", "--host", "vm", "--stop")  # down keeps the URL asleep; this ends it
    nothing_left(lab, user)


def test_busy_local_port_takes_the_next(lab, user, sshd):
    profile = ssh_profile(user, sshd)
    lab.write_hosts({"vm": profile})
    wanted = profile["notebook"]["local_port"]
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", wanted))
        blocker.listen()
        out = lab.inv("up", "--host", "vm", "--no-browser").stdout
        assert f"local port {wanted} is busy; using" in out
        url = url_from(out)
        port = int(re.search(r"127\.0\.0\.1:(\d+)/", url).group(1))
        assert port != wanted
        assert http_status(f"http://127.0.0.1:{port}/api/status", token_of(url)) == 200
    lab.inv("tunnel", "--host", "vm", "--stop")
    assert "tunnel: none was open" in lab.inv("tunnel", "--host", "vm", "--stop").stdout
    lab.inv("down", "--host", "vm")
    nothing_left(lab, user)


def test_hand_started_jupyter_is_reported_and_ended_only_with_force(lab, user, sshd):
    profile = ssh_profile(user, sshd)
    lab.write_hosts({"vm": profile})
    lab.inv("setup", "--host", "vm")
    port = profile["notebook"]["port"]
    # As the seeds do it: jupyter by hand, in the background, default runtime dir.
    user.shell(
        f"cd ~ && nohup ~/.labvm/env/bin/jupyter lab --no-browser --port={port} "
        f"--ServerApp.port_retries=0 >/dev/null 2>&1 &"
    )
    from realhost import wait_for_port

    wait_for_port(port, 60)
    hand = user.processes(f"jupyter-lab --no-browser --port={port}")
    assert len(hand) == 1

    refused = lab.inv("start-notebook", "--host", "vm", check=False)
    assert refused.returncode == 1
    assert "a Jupyter labvm did not start" in refused.stderr and "--force" in refused.stderr
    kept = lab.inv("stop-notebook", "--host", "vm").output
    assert "still runs" in kept and user.processes(f"jupyter-lab --no-browser --port={port}") == hand
    lab.inv("stop-notebook", "--host", "vm", "--force")
    assert user.processes(f"jupyter-lab --no-browser --port={port}") == []


def test_failed_start_shows_the_jupyter_log(lab, user, sshd):
    lab.write_hosts({"vm": ssh_profile(user, sshd)})
    lab.inv("setup", "--host", "vm")
    running_before = user.processes("jupyter-lab")
    # Jupyter exits at once when its root directory is not a directory.
    user.shell("rmdir ~/work && touch ~/work")
    try:
        failed = lab.inv("start-notebook", "--host", "vm", check=False)
    finally:
        user.shell("rm -f ~/work && mkdir ~/work")
    assert failed.returncode == 1
    assert "Jupyter did not start; last lines of ~/.labvm/jupyter.log" in failed.stderr
    assert "labvm: " in failed.stderr
    assert user.processes("jupyter-lab") == running_before  # the failed server is gone


def test_inv_ssh_logs_in_with_labvms_key(lab, user, sshd):
    lab.write_hosts({"vm": ssh_profile(user, sshd)})
    result = subprocess.run(
        [*INV, "ssh", "--host", "vm"],
        input="id -un\n",
        capture_output=True,
        text=True,
        env=lab.env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == user.name


def test_machines_set_up_at_the_same_time_each_keep_their_ssh_alias(tmp_path):
    """A cluster's machines get their keys in parallel: every `ssh labvm-<profile>+w<n>` must work after."""
    from concurrent.futures import ThreadPoolExecutor

    from labvm.config import Profile
    from labvm.sshconfig import SshHome

    ssh = SshHome(tmp_path / "ssh")
    workers = [
        Profile(name=f"lab+w{i}", provider="ssh", source=tmp_path / "hosts.yml", address=f"10.9.0.{i}", user="ada")
        for i in range(1, 25)
    ]
    with ThreadPoolExecutor(len(workers)) as pool:
        list(pool.map(lambda worker: ssh.write_host(worker, worker.address), workers))
    for worker in workers:
        seen = subprocess.run(
            ["ssh", "-F", str(ssh.config), "-G", worker.alias], capture_output=True, text=True, check=True
        ).stdout.splitlines()
        assert f"hostname {worker.address}" in seen, worker.alias
    assert sorted(p.name for p in ssh.config.parent.iterdir()) == ["config"]  # no temporary file left


def test_tasks_at_once_on_one_vm_each_get_whole_scripts(lab, user, sshd):
    """Several profiles on one VM, asked at once by `inv status` when labvm's scripts are new there:
    each task uploads them; none may read a file another is still writing."""
    scripts = user.home / ".labvm" / "scripts"
    user.shell(f"rm -f {scripts}/.digest")
    names = [f"vm{i}" for i in range(8)]
    lab.write_hosts({name: ssh_profile(user, sshd) for name in names})
    shown = lab.inv("status").stdout.splitlines()
    assert sorted(line for line in shown if not line.startswith(" ")) == sorted(
        f"{name} (ssh, 127.0.0.1:{sshd.port}): reachable" for name in names
    )
    for script in (p for p in (ROOT / "scripts").iterdir() if p.is_file()):
        assert (scripts / script.name).read_bytes() == script.read_bytes()
    assert [p.name for p in scripts.iterdir() if ".labvm-" in p.name] == []  # no half-way copies left


def test_a_missing_identity_is_a_warning_where_labvms_key_logs_in(lab, user, sshd):
    """Issue 28, C7: hosts.yml names a key that is not there (a new laptop, a typo), labvm's own key
    already works on the host: one warning naming the file and the key, and the task goes on."""
    lab.write_hosts({"vm": ssh_profile(user, sshd)})
    lab.inv("keys", "--host", "vm")
    missing = lab.directory / "lab_key"
    lab.write_hosts({"vm": ssh_profile(user, sshd, identity=str(missing))})
    result = lab.inv("stop-notebook", "--host", "vm")
    warnings = [line for line in result.output.splitlines() if line.startswith("warning:")]
    key = lab.ssh_dir / "labvm" / "id_ed25519"
    assert warnings == [
        f"warning: {lab.hosts}: profiles.vm.identity: {missing} not found; going on with labvm's key {key}"
    ], result.output
    assert lab.ssh("labvm-vm", "true").returncode == 0  # the ssh alias names no missing file
    # `inv keys` asks about keys: there the missing identity is the answer, and nothing changes.
    one_line(lab.inv("keys", "--host", "vm", check=False), f"profiles.vm.identity: {missing} not found")


def test_a_missing_identity_refuses_where_nothing_else_logs_in(lab, user, sshd):
    """Without labvm's key (a first `up` from this laptop), the missing identity was the only way in."""
    missing = lab.directory / "lab_key"
    lab.write_hosts({"vm": ssh_profile(user, sshd, identity=str(missing))})
    result = lab.inv("stop-notebook", "--host", "vm", check=False)
    one_line(result, f"profiles.vm.identity: {missing} not found")
    assert "warning:" not in result.output


def test_a_web_server_on_the_ssh_port_is_named_at_once(lab):
    """Issue 28, C9: `port:` names a web server's port (Jupyter's, say): one line that says HTTP answers
    there, within seconds, never "no SSH banner within 20 s"."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    lab.write_hosts({"vm": {"provider": "ssh", "address": "127.0.0.1", "port": port}})
    try:
        started = time.monotonic()
        result = lab.inv("keys", "--host", "vm", check=False)
        took = time.monotonic() - started
    finally:
        server.shutdown()
        server.server_close()
    line = one_line(result, f"127.0.0.1:{port} answers HTTP, not SSH: is `port:` right?", "profiles.vm.port")
    assert "banner" not in line
    assert took < 5, took


def test_another_protocol_on_the_ssh_port_is_quoted_cleaned(lab):
    """A server that greets in a protocol of its own (mail's "220"): its first line, cleaned, says what answers."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def greet() -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:  # closed: the test is over
                return
            client.sendall(b"220 mail \x1b]0;owned\x07 ready\r\n")
            time.sleep(1)
            client.close()

    threading.Thread(target=greet, daemon=True).start()
    lab.write_hosts({"vm": {"provider": "ssh", "address": "127.0.0.1", "port": port}})
    try:
        line = one_line(lab.inv("keys", "--host", "vm", check=False), f"127.0.0.1:{port} answers '220 mail ")
    finally:
        server.close()
    assert "\x1b" not in line and "\x07" not in line and "ready', not SSH: is `port:` right?" in line, line
