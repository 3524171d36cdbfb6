"""Hostile and broken input, as a user (or an attacker's shared hosts.yml) meets it.

Each case runs `inv` in a subprocess: exit status 1, one line naming the file, key or option
and the next step, never a traceback (Lab.inv fails on any), no command from hosts.yml ever
runs on the laptop, and the laptop's ssh configs are as they were where the task failed.
"""

from __future__ import annotations

import re
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml

from realhost import free_port, one_line, ssh_profile


def laptop_state(lab) -> dict:
    """The files a failed task must leave as they were."""
    paths = [lab.ssh_dir / "config", lab.ssh_dir / "labvm" / "config"]
    return {path: path.read_bytes() for path in paths if path.exists()}


def ssh_g(config: Path, alias: str) -> dict[str, list[str]]:
    """What OpenSSH itself reads from a config for an alias (`ssh -G`), as option -> values."""
    out = subprocess.run(
        ["ssh", "-G", "-F", str(config), alias], capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=10
    )
    assert out.returncode == 0, out.stderr
    options: dict[str, list[str]] = {}
    for line in out.stdout.splitlines():
        key, _, value = line.partition(" ")
        options.setdefault(key, []).append(value)
    return options


@pytest.fixture
def reached(lab, user, sshd):
    """A laptop whose `vm` profile worked once: ~/.ssh/labvm/config holds its good block."""
    lab.write_hosts({"vm": ssh_profile(user, sshd)})
    lab.inv("keys", "--host", "vm")
    return lab


def rewrite_vm(lab, **changes) -> None:
    document = yaml.safe_load(lab.hosts.read_text())
    document["profiles"]["vm"].update(changes)
    lab.hosts.write_text(yaml.safe_dump(document))


# -- commands from hosts.yml never run on the laptop --------------------------------------------


def test_an_identity_that_would_add_a_proxycommand_is_refused_everywhere(reached):
    marker = reached.directory / "PWNED"
    good = laptop_state(reached)
    for identity in (
        f'/tmp/nokey"\n    ProxyCommand sh -c "touch {marker}"\n#',
        f"/tmp/nokey\n    ProxyCommand sh -c 'touch {marker}'",
    ):
        rewrite_vm(reached, identity=identity)
        for task in (["up", "--no-browser"], ["tunnel"], ["sync"], ["keys"], ["ssh"]):
            result = reached.inv(task[0], "--host", "vm", *task[1:], check=False)
            one_line(result, f"{reached.hosts}: profiles.vm.identity: must be a file path without control characters")
        assert laptop_state(reached) == good
        reached.ssh("labvm-vm", "true")  # what VS Code and a plain ssh do with the config
        assert not marker.exists()


@pytest.mark.parametrize("source", ["environment", "single-quoted .env line", "double-quoted .env line"])
def test_a_variable_whose_value_holds_a_variable_is_still_checked(reached, source):
    marker = reached.directory / "PWNED"
    value = f"127.0.0.1${{X}}\n    ProxyCommand sh -c 'touch {marker}'"
    rewrite_vm(reached, address="${LAB_ADDR}")
    if source == "environment":
        reached.extra_env["LAB_ADDR"] = value
    elif source == "single-quoted .env line":
        (reached.directory / ".env").write_text(f"LAB_ADDR='127.0.0.1${{X}} -oProxyCommand=touch {marker}'\n")
    else:
        (reached.directory / ".env").write_text('LAB_ADDR="127.0.0.1\\n    ProxyCommand touch %s"\n' % marker)
    good = laptop_state(reached)
    for task in ("up", "tunnel", "sync"):
        one_line(
            reached.inv(task, "--host", "vm", check=False), "profiles.vm.address: must be a host name or IP address"
        )
    assert laptop_state(reached) == good
    reached.ssh("labvm-vm", "true")
    assert not marker.exists()


# -- nothing half-done ---------------------------------------------------------------------------


def silent_port() -> tuple[socket.socket, int]:
    """A server that accepts TCP and never says a word (no SSH banner)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held = []
    threading.Thread(target=lambda: held.extend(iter(lambda: server.accept()[0], None)), daemon=True).start()
    return server, server.getsockname()[1]


def test_a_failed_connection_keeps_the_last_good_ssh_block(reached, user):
    good = laptop_state(reached)
    closed = free_port()
    rewrite_vm(reached, port=closed)
    one_line(reached.inv("up", "--host", "vm", "--no-browser", check=False), f"127.0.0.1:{closed}")
    rewrite_vm(
        reached,
        port=int(ssh_g(reached.ssh_dir / "labvm" / "config", "labvm-vm")["port"][0]),
        identity="/nonexistent/key",
    )
    one_line(reached.inv("keys", "--host", "vm", check=False), "profiles.vm.identity: /nonexistent/key not found")
    server, silent = silent_port()
    try:
        rewrite_vm(reached, port=silent, identity=str(user.key))
        started = time.monotonic()
        line = one_line(reached.inv("keys", "--host", "vm", check=False))
        took = time.monotonic() - started
    finally:
        server.close()
    waited = re.search(r"sent no SSH banner within (\d+) s", line)
    assert waited and "profiles.vm.address/port" in line, line
    # The seconds said are the ones waited (paramiko's time-out, 10 s, where the message said 20): the
    # task's own time, less its start (a Python process, hosts.yml read) and the second look at the port.
    assert took - 8 <= int(waited.group(1)) <= took + 0.5, (line, took)
    assert laptop_state(reached) == good
    assert reached.ssh("labvm-vm", "true").returncode == 0  # still the host that worked


def test_a_profile_name_too_long_is_refused_before_anything(lab):
    name = "a" * 33
    lab.write_hosts({}, raw=f"profiles:\n  {name}: {{provider: ssh, address: ws1.example.org}}\n")
    one_line(lab.inv("up", "--host", name, check=False), "a profile name is at most 32 characters")
    assert not lab.ssh_dir.exists()


# -- other unsafe behaviour ------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["parent folder", "absolute path", "symlink out"])
def test_environment_file_outside_the_hosts_folder_is_refused(lab, where):
    secret = lab.directory.parent / f"{lab.directory.name}-secret"
    secret.mkdir()
    (secret / "id_rsa").write_text("PRIVATE KEY\n")
    value = {
        "parent folder": f"../{secret.name}/id_rsa",
        "absolute path": str(secret / "id_rsa"),
        "symlink out": "environment.yml",
    }[where]
    if where == "symlink out":
        (lab.directory / "environment.yml").symlink_to(secret / "id_rsa")
    try:
        lab.write_hosts(
            {},
            raw=(
                f"profiles:\n  vm: {{provider: ssh, address: ws1.example.org, env: {{environment_file: '{value}'}}}}\n"
            ),
        )
        one_line(
            lab.inv("env", "--host", "vm", check=False),
            "profiles.vm.env.environment_file",
            "put the environment file in hosts.yml's folder",
        )
    finally:
        (secret / "id_rsa").unlink()
        secret.rmdir()


def test_jump_aliases_cannot_collide_with_another_profile(lab):
    """Profile `a` jumps through login.example.org; a profile named `a-jump` must not take its jump alias."""
    from labvm import config as labvm_config
    from labvm.sshconfig import SshHome

    lab.write_hosts(
        {},
        raw=(
            "profiles:\n"
            "  a: {provider: ssh, address: 10.0.0.5, jump: 'me@login.example.org:2222'}\n"
            "  a-jump: {provider: ssh, address: evil.example.org}\n"
        ),
    )
    loaded = labvm_config.load(lab.hosts)
    home = SshHome(lab.ssh_dir)
    for name in ("a", "a-jump"):
        home.write_host(loaded.profile(name), loaded.profile(name).address)
    config = lab.ssh_dir / "labvm" / "config"
    jump = ssh_g(config, "labvm-a")["proxyjump"][0]
    assert ssh_g(config, jump)["hostname"] == ["login.example.org"]
    assert ssh_g(config, jump)["port"] == ["2222"]
    assert ssh_g(config, "labvm-a-jump")["hostname"] == ["evil.example.org"]


def test_the_browser_gets_a_private_page_not_the_token_on_its_command_line(lab, user, sshd):
    seen = lab.directory / "browser-argv"
    browser = lab.directory / "browser.sh"
    browser.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {seen}\n')
    browser.chmod(0o755)
    lab.write_hosts({"vm": ssh_profile(user, sshd)})
    lab.extra_env["BROWSER"] = str(browser)
    try:
        result = lab.inv("up", "--host", "vm")
    finally:
        lab.inv("down", "--host", "vm", check=False)
    token = result.output.split("?token=")[1].split()[0]
    for _ in range(100):  # webbrowser starts the browser in the background
        if seen.exists() and seen.read_text():
            break
        time.sleep(0.05)
    argv = seen.read_text()
    proof = (lab.ssh_dir / "labvm" / "run" / "vm.proof").read_text()
    assert token not in argv and proof not in argv
    page = Path(argv.strip().removeprefix("file://"))
    assert page.stat().st_mode & 0o777 == 0o600
    # The keeper's welcome gives the browser the asleep page's proof (in the fragment), then the lab.
    assert f"/.labvm/welcome#proof={proof}&amp;next=%2Flab%3Ftoken%3D{token}" in page.read_text()


def test_a_crlf_or_symlinked_ssh_config_keeps_its_form(lab, user, sshd):
    lab.write_hosts({"vm": ssh_profile(user, sshd)})
    dotfiles = lab.directory / "dotfiles"
    dotfiles.mkdir()
    target = dotfiles / "ssh_config"
    mine = b"Host old\r\n    User me\r\n"
    target.write_bytes(mine)
    target.chmod(0o644)
    lab.ssh_dir.mkdir()
    (lab.ssh_dir / "config").symlink_to(target)
    lab.inv("keys", "--host", "vm")
    assert (lab.ssh_dir / "config").is_symlink()
    assert target.read_bytes() == f'Include "{lab.ssh_dir / "labvm" / "config"}"\r\n'.encode() + mine
    assert target.stat().st_mode & 0o777 == 0o644
    lab.inv("keys", "--host", "vm")  # a second run changes nothing
    assert target.read_bytes().count(b"Include") == 1


def test_an_identity_readable_by_others_is_refused_with_the_chmod(lab, user, sshd, tmp_path):
    key = tmp_path / "id_ed25519"
    key.write_bytes(user.key.read_bytes())
    key.chmod(0o644)
    lab.write_hosts({"vm": ssh_profile(user, sshd, identity=str(key))})
    one_line(
        lab.inv("keys", "--host", "vm", check=False), "profiles.vm.identity", "readable by others", f"chmod 600 '{key}'"
    )
    assert not (lab.ssh_dir / "labvm" / "config").exists()


# -- OpenSSH opens the identity labvm checked ------------------------------------------------------


def opened(config: Path, alias: str, cwd: Path) -> dict[str, str]:
    """identity file -> its key type as a real login through the config, run from `cwd`, reads them
    (ssh -v: "identity file PATH type N"; -1: nothing there)."""
    run = subprocess.run(
        ["ssh", "-v", "-F", str(config), "-o", "BatchMode=yes", alias, "true"],
        cwd=cwd,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=30,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    found = [
        line.split(" ", 3)[3].rsplit(" type ", 1)
        for line in run.stderr.splitlines()
        if line.startswith("debug1: identity file ")
    ]
    return dict(found)


def test_an_identity_in_this_folder_is_the_file_ssh_opens_from_any_folder(reached, user):
    """A relative identity (hosts.yml's folder is the working folder) and OpenSSH's own syntax in its name."""
    keys = reached.directory / "keys"
    keys.mkdir()
    key = keys / "lab's %d key"  # '%d' would be OpenSSH's home-folder token
    key.write_bytes(user.key.read_bytes())
    key.chmod(0o600)
    rewrite_vm(reached, identity="keys/lab's %d key")
    reached.inv("keys", "--host", "vm")
    assert opened(reached.ssh_dir / "config", "labvm-vm", Path("/"))[str(key)] == "3"  # ED25519, read


@pytest.mark.parametrize(
    "name,problem",
    [
        ("k${HOME}", "'${'"),  # OpenSSH 8.4+ opens k<your home>: another file than labvm checked
        ("k\\id", "a backslash"),  # OpenSSH 8.7+ reads \\ as one backslash, older ones as two
    ],
)
def test_an_identity_ssh_would_read_as_another_file_is_refused(reached, user, name, problem):
    keys = reached.directory / "keys"
    keys.mkdir()
    key = keys / name  # the file labvm would check (its mode) and log in with (Fabric)
    key.write_bytes(user.key.read_bytes())
    key.chmod(0o600)
    (reached.directory / ".env").write_text(f"LAB_KEY='{key}'\n")  # a colleague's .env: taken literally
    rewrite_vm(reached, identity="${LAB_KEY}")
    good = laptop_state(reached)
    one_line(reached.inv("keys", "--host", "vm", check=False), "profiles.vm.identity", problem, "move or link the key")
    checked = reached.inv("check", "--host", "vm", check=False)
    (line,) = [line for line in checked.stdout.splitlines() if "profiles.vm.identity" in line]
    assert checked.returncode == 1 and problem in line and "move or link the key" in line, checked.stdout
    assert laptop_state(reached) == good


@pytest.mark.parametrize(
    "folder,problem",
    [
        ("a%b", "'%'"),
        ("a${HOME}", "'${'"),
        ("a*", "'*'"),
        ("a?", "'?'"),
        ("a[1]", "'['"),
        ("a\\b", "a backslash"),
        ('a"b', "a double quote"),
    ],
)
def test_an_ssh_folder_openssh_would_read_as_syntax_is_refused(lab, folder, problem):
    """labvm's folder is named by Include (globbed; tokens from 9.9), UserKnownHostsFile (tokens from 8.4)
    and IdentityFile in the ssh config."""
    lab.write_hosts({}, raw="profiles:\n  vm: {provider: ssh, address: ws1.example.org}\n")
    lab.extra_env["LABVM_SSH_DIR"] = str(lab.directory / folder)
    one_line(lab.inv("keys", "--host", "vm", check=False), "LABVM_SSH_DIR", problem, "set LABVM_SSH_DIR to a folder")
    assert not (lab.directory / folder).exists()


def test_an_ssh_folder_with_a_space_and_a_quote_is_read_back_by_openssh(lab, monkeypatch):
    from labvm import config as labvm_config
    from labvm.sshconfig import SshHome

    lab.write_hosts({}, raw="profiles:\n  vm: {provider: ssh, address: ws1.example.org}\n")
    monkeypatch.setenv("LABVM_SSH_DIR", str(lab.directory / "lab's ssh"))
    home = SshHome.current()
    home.write_host(labvm_config.load(lab.hosts).profile("vm"), "ws1.example.org")
    read = ssh_g(home.user_config, "labvm-vm")  # through the Include line
    assert read["hostname"] == ["ws1.example.org"]
    assert read["userknownhostsfile"] == [str(home.known_hosts)]


# -- tracebacks and unclear errors -------------------------------------------------------------------


def test_labvm_paths_of_the_wrong_kind(lab):
    lab.write_hosts({}, raw="profiles:\n  local: {provider: local}\n")
    folder = lab.directory / "folder"
    folder.mkdir()
    lab.extra_env["LABVM_HOSTS"] = str(folder)
    one_line(lab.inv("up", check=False), f"{folder}: not a file; LABVM_HOSTS must name a hosts.yml file")
    lab.extra_env.pop("LABVM_HOSTS")
    lab.ssh_dir.write_text("not a folder\n")
    lab.write_hosts({}, raw="profiles:\n  vm: {provider: ssh, address: ws1.example.org}\n")
    one_line(lab.inv("keys", "--host", "vm", check=False), f"{lab.ssh_dir}: not a folder; LABVM_SSH_DIR must name")


def test_bytes_that_are_not_utf8(lab):
    lab.hosts.write_bytes(b"profiles:\n  local: {provider: local}\n# caf\xe9\n")
    one_line(lab.inv("up", check=False), f"{lab.hosts}: line 3: byte 0xe9 is not UTF-8; save hosts.yml as UTF-8")
    lab.write_hosts({}, raw="profiles:\n  local: {provider: local}\n")
    (lab.directory / ".env").write_bytes(b"A=1\nB=caf\xe9\n")
    one_line(lab.inv("up", check=False), f"{lab.directory / '.env'}: line 2: byte 0xe9 is not UTF-8")


@pytest.mark.parametrize("address", ["exa..mple.org", "a" * 64 + ".example.org", "-oProxyCommand=x", ".example.org"])
def test_host_names_that_dns_would_refuse(lab, address):
    lab.write_hosts({}, raw=f"profiles:\n  vm: {{provider: ssh, address: '{address}'}}\n")
    one_line(
        lab.inv("keys", "--host", "vm", check=False),
        f"profiles.vm.address: must be a host name or IP address, not {address!r}",
    )


def test_a_region_name_botocore_refuses_is_one_line(lab):
    region = "us west 2"
    lab.write_hosts({"aws": {"provider": "aws", "region": region, "user": "ubuntu"}})
    one_line(lab.inv("up", "--host", "aws", check=False), "profiles.aws.region", "is not a region name", repr(region))
    audited = lab.inv("audit", check=False)  # every cloud profile's credentials are asked: no traceback either
    assert "profiles.aws.region" in audited.stdout


@pytest.mark.parametrize(
    "key, value",
    [("region", "us-west-2\x1b[2J"), ("instance_type", "c5.large\u202e"), ("tags", {"Project": "ocean\x9b31m"})],
)
def test_a_hosts_yml_value_a_terminal_would_read_as_an_escape_is_refused_where_it_is_read(lab, key, value):
    """Every text of hosts.yml is printed somewhere (a size, a region, a tag): one with a control,
    escape or bidi-override character never gets that far."""
    lab.write_hosts({"aws": {"provider": "aws", "region": "us-west-2", "user": "ubuntu", key: value}})
    refused = lab.inv("status", check=False)
    line = one_line(refused, f"profiles.aws.{key}: must be")
    assert "plain text" in line and "\x1b" not in refused.output and "\u202e" not in refused.output


@pytest.mark.parametrize(
    "args,message",
    [
        (["sync", "--interval", "banana"], "--interval: must be a whole number, e.g. --interval 30, not 'banana'"),
        (["sync", "--watch", "--interval", "0"], "--interval: must be at least 1, not 0"),
        (["images", "--keep", "banana"], "--keep: must be a whole number, e.g. --keep 3, not 'banana'"),
        (["images", "--prune", "--keep", "0"], "--keep: must be at least 1, not 0"),
    ],
)
def test_numeric_options(lab, args, message):
    lab.write_hosts({}, raw="profiles:\n  local: {provider: local}\n")
    assert one_line(lab.inv(*args, check=False)) == f"labvm: {message}"


@pytest.mark.parametrize(
    "text,message",
    [
        (
            "profiles:\n  vm: {provider: ssh, address: a.example.org}\n  vm: {provider: local}\n",
            "line 3: not valid YAML (key 'vm' is given twice (line 2 and line 3); keep one)",
        ),
        (
            "profiles:\n  vm:\n    provider: ssh\n    address: a.example.org\n    address: b.example.org\n",
            "line 5: not valid YAML (key 'address' is given twice (line 4 and line 5); keep one)",
        ),
    ],
)
def test_duplicate_keys(lab, text, message):
    lab.write_hosts({}, raw=text)
    one_line(lab.inv("keys", "--host", "vm", check=False), message)


def test_a_number_from_a_variable_is_a_number(lab, user, sshd):
    profile = ssh_profile(user, sshd, port="${VM_SSH_PORT}")
    lab.write_hosts({"vm": profile})
    (lab.directory / ".env").write_text(f"VM_SSH_PORT={sshd.port}\n")
    lab.inv("keys", "--host", "vm")
    assert ssh_g(lab.ssh_dir / "labvm" / "config", "labvm-vm")["port"] == [str(sshd.port)]
    (lab.directory / ".env").write_text("VM_SSH_PORT=ssh\n")
    one_line(
        lab.inv("keys", "--host", "vm", check=False),
        "profiles.vm.port: must be a port number from 1 to 65535, not 'ssh'",
    )


def test_a_malformed_env_line_is_named(lab):
    lab.write_hosts({}, raw="profiles:\n  local: {provider: local}\n")
    (lab.directory / ".env").write_text("GOOD=1\nthis line is not an assignment\n")
    one_line(lab.inv("up", check=False), f"{lab.directory / '.env'}: line 2: not a NAME=value line")


def test_a_yaml_alias_bomb_is_refused_at_once(lab):
    levels = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    for n in range(1, 9):
        levels.append(f"{'abcdefghij'[n]}: &{'abcdefghij'[n]} [" + ", ".join([f"*{'abcdefghij'[n - 1]}"] * 9) + "]")
    lab.write_hosts(
        {},
        raw="defaults:\n  x-bomb:\n"
        + "".join(f"    {line}\n" for line in levels)
        + "profiles:\n  local: {provider: local}\n",
    )
    started = time.monotonic()
    one_line(lab.inv("up", check=False, timeout=60), "more than 10000 values once YAML anchors")
    assert time.monotonic() - started < 30  # before the fix: over 30 s of CPU, then an unknown-key error


# -- the VM side: no banner, a dropped connection, a full disk --------------------------------------------


def test_a_connection_that_drops_during_a_step_says_so_and_a_rerun_completes_the_step(lab, user, sshd):
    lab.write_hosts({"vm": ssh_profile(user, sshd, env={"prefix": "~/.labvm/env-dropped"})})
    lab.inv("keys", "--host", "vm")
    killer_done = threading.Event()

    def drop_when_the_env_step_runs():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killer_done.is_set():
            if user.processes("scripts/env.sh"):
                subprocess.run(["pkill", "-KILL", "-f", f"sshd: {user.name}"], capture_output=True)
                return
            time.sleep(0.02)

    killer = threading.Thread(target=drop_when_the_env_step_runs)
    killer.start()
    try:
        result = lab.inv("env", "--host", "vm", check=False)
    finally:
        killer_done.set()
        killer.join()
    one_line(result, "the connection dropped during the env step; run the same task again to resume")
    lab.inv("env", "--host", "vm")
    user.shell("rm -rf ~/.labvm/env-dropped")


def test_a_full_disk_on_the_vm_is_named_with_its_figure(lab, user, sshd):
    lab.write_hosts({"vm": ssh_profile(user, sshd)})
    state = user.home / ".labvm"
    user.shell('mkdir -p "$HOME/.labvm"')
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size=256k,uid={user.uid},mode=0700", "tmpfs", str(state)], check=True
    )
    try:
        user.shell('dd if=/dev/zero of="$HOME/.labvm/filler" bs=4k 2>/dev/null; true')
        line = one_line(lab.inv("keys", "--host", "vm", check=False), "the VM's disk is full (0 KiB free of 256 KiB)")
        assert "free some space" in line and "run the same task again" in line
    finally:
        subprocess.run(["umount", str(state)], check=True)
    assert not (lab.ssh_dir / "labvm" / "config").exists()
