"""Bad input: each case exits non-zero with one clear message naming file, profile and key,
never a traceback (the helper fails on any), and changes nothing it should not."""

import random
import socket
from pathlib import Path

import pytest

from realhost import free_port, ssh_profile

GOOD_LOCAL = "  local: {provider: local, env: {manager: uv}}\n"

BROKEN_FILES = [
    (
        "typo'd key",
        "profiles:\n" + GOOD_LOCAL + "  lab: {provider: ssh, address: h, notebok: {port: 9}}\n",
        ["profiles.lab.notebok: unknown key (did you mean 'notebook'?)"],
    ),
    (
        "typo'd nested key",
        "profiles:\n  lab: {provider: ssh, address: h, notebook: {prot: 9}}\n",
        ["profiles.lab.notebook.prot: unknown key (did you mean 'port'?)"],
    ),
    (
        "wrong type",
        "profiles:\n  lab: {provider: ssh, address: h, env: {packages: numpy}}\n",
        ["profiles.lab.env.packages: must be a list of strings"],
    ),
    (
        "bad port",
        "profiles:\n  lab: {provider: ssh, address: h, port: 70000}\n",
        ["profiles.lab.port: must be a port number from 1 to 65535, not 70000"],
    ),
    (
        "unknown provider",
        "profiles:\n  lab: {provider: shh, address: h}\n",
        ["profiles.lab.provider: must be one of local, ssh, openstack, aws, gce (did you mean 'ssh'?)"],
    ),
    (
        "ssh without address",
        "profiles:\n  lab: {provider: ssh}\n",
        ["profiles.lab.address: required for provider ssh"],
    ),
    (
        "unknown multiplexer",
        "profiles:\n  lab: {provider: ssh, address: h, notebook: {multiplexer: tmxu}}\n",
        ["profiles.lab.notebook.multiplexer: must be one of tmux, screen, nohup, not 'tmxu' (did you mean 'tmux'?)"],
    ),
    (
        "autostop is not a duration",
        "profiles:\n  lab: {provider: ssh, address: h, autostop: 60}\n",
        ["profiles.lab.autostop: must be a duration like 60m, 2h, 1h30m or off, not 60"],
    ),
    (
        "typo'd autostop",
        "defaults: {autostp: 30m}\nprofiles:\n" + GOOD_LOCAL,
        ["profiles.local.autostp: unknown key (did you mean 'autostop'?)"],
    ),
    (
        "negative worker count",
        "profiles:\n  lab: {provider: aws, region: us-east-1, user: ubuntu, cluster: {workers: -1}}\n",
        ["profiles.lab.cluster.workers: must be"],
    ),
    (
        "worker count in words",
        "profiles:\n  lab: {provider: aws, region: us-east-1, user: ubuntu, cluster: {workers: many}}\n",
        ["profiles.lab.cluster.workers: must be"],
    ),
    (
        "a cluster on the local profile",
        "profiles:\n  lab: {provider: local, cluster: {hosts: [ws2.example.org]}}\n",
        ["profiles.lab.cluster: the local profile is one machine"],
    ),
    (
        "typo'd cluster key",
        "profiles:\n  lab: {provider: ssh, address: h, cluster: {host: [ws2.example.org]}}\n",
        ["profiles.lab.cluster.host: unknown key (did you mean 'hosts'?)"],
    ),
    (
        "a data volume on an ssh profile",
        "profiles:\n  lab: {provider: ssh, address: h, data: {size: 20}}\n",
        ["profiles.lab.data: labvm makes data volumes on cloud profiles only"],
    ),
    (
        "a data volume without its size",
        "profiles:\n  lab: {provider: aws, region: us-east-1, user: ubuntu, data: {type: gp3}}\n",
        ["profiles.lab.data.size: required: the volume's size in GB (data: {size: 20})"],
    ),
    (
        "a data volume too large",
        "profiles:\n  lab: {provider: aws, region: us-east-1, user: ubuntu, data: {size: 100000}}\n",
        ["profiles.lab.data.size: must be the volume's size in GB, a whole number from 1 to 16384, not 100000"],
    ),
    (
        "a data volume over the root",
        "profiles:\n  lab: {provider: aws, region: us-east-1, user: ubuntu, data: {size: 20, mount: /}}\n",
        ["profiles.lab.data.mount: must be a folder inside the home or a new top-level folder"],
    ),
    (
        "a data volume over ~/.ssh",
        "profiles:\n  lab: {provider: aws, region: us-east-1, user: ubuntu, data: {size: 20, mount: ~/.ssh}}\n",
        ["profiles.lab.data.mount: must not be a hidden folder"],
    ),
    (
        "a data volume over /etc",
        "profiles:\n  lab: {provider: aws, region: us-east-1, user: ubuntu, data: {size: 20, mount: /etc/x}}\n",
        ["profiles.lab.data.mount: must not cover a system folder (/etc)"],
    ),
    (
        "all problems at once",
        "defaults: {notebok: {}}\nprofiles:\n  lab: {provider: ssh, address: h, port: x}\n",
        ["profiles.lab.notebok: unknown key", "profiles.lab.port: must be a port number"],
    ),
    (
        "not YAML",
        "profiles: [unclosed\n",
        ["not valid YAML"],
    ),
    (
        "default names no profile",
        "default: lcoal\nprofiles:\n" + GOOD_LOCAL,
        ["default: no profile 'lcoal' (did you mean 'local'?); profiles: local"],
    ),
]


@pytest.mark.parametrize("name,text,messages", BROKEN_FILES, ids=[case[0] for case in BROKEN_FILES])
def test_broken_hosts_file(lab, name, text, messages):
    lab.write_hosts({}, raw=text)
    result = lab.inv("up", "--host", "lab", "--no-browser", check=False)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == len(messages), result.stderr
    for line, message in zip(lines, messages):
        assert line.startswith(f"labvm: {lab.hosts}: "), line
        assert message in line, line
    assert not lab.ssh_dir.exists()  # nothing half-done


YAML_MISTAKES = [
    ("a tab", "profiles:\n  lab:\n    provider: ssh\n\taddress: h\n", 4, "a tab: YAML indents with spaces only"),
    (
        "a colon in a value",
        "profiles:\n  lab:\n    provider: ssh\n    address: h\n    user: me: you\n",
        5,
        'a value with ": " in it needs quotes (key: "a: b")',
    ),
    (
        "a colon in a value inside braces",
        "profiles:\n  lab: {provider: ssh, address: h, user: me: you}\n",
        2,
        'a value with ": " or "," in it needs quotes (key: "a: b")',
    ),
    (
        "indented less than its neighbours",
        "profiles:\n  lab:\n    provider: ssh\n   address: h\n",
        4,
        "check the indentation: the keys of one mapping start in the same column",
    ),
    (
        "a key without its colon",
        "profiles:\n  lab:\n    provider ssh\n    address: h\n",
        4,
        "check the colon and the indentation of this line and the one above",
    ),
    ("an unclosed bracket", "profiles: [unclosed\n", 2, "a [ or { is not closed"),
    ("an unclosed quote", "profiles:\n  lab: {provider: 'ssh}\n", 3, "a quote is not closed"),
    (
        "a pattern starting with *",
        "profiles:\n  lab:\n    provider: ssh\n    address: h\n    sync: [*.ipynb]\n",
        5,
        'a value starting with * needs quotes (sync: ["*.ipynb"])',
    ),
]


@pytest.mark.parametrize("name,text,line,hint", YAML_MISTAKES, ids=[case[0] for case in YAML_MISTAKES])
def test_a_yaml_mistake_is_one_line_with_its_file_line_and_likely_cause(lab, name, text, line, hint):
    lab.write_hosts({}, raw=text)
    result = lab.inv("up", "--host", "lab", "--no-browser", check=False)
    assert result.returncode == 1
    (message,) = result.stderr.strip().splitlines()
    assert message.startswith(f"labvm: {lab.hosts}: line {line}: not valid YAML ("), message
    assert hint in message, message


def test_unknown_profile_lists_the_profiles(lab):
    lab.write_hosts({}, raw="profiles:\n" + GOOD_LOCAL + "  lab: {provider: ssh, address: h}\n")
    result = lab.inv("up", "--host", "lba", check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"labvm: {lab.hosts}: no profile 'lba' (from --host) (did you mean 'lab'?); profiles: local, lab"
    )


def test_labvm_host_variable_picks_the_profile(lab):
    lab.write_hosts({}, raw="default: local\nprofiles:\n" + GOOD_LOCAL)
    env = lab.env
    env["LABVM_HOST"] = "nope"
    import subprocess
    from realhost import INV

    result = subprocess.run([*INV, "setup"], env=env, capture_output=True, text=True)
    assert result.returncode == 1
    assert "no profile 'nope' (from LABVM_HOST)" in result.stderr


def test_missing_variable_names_it_only_for_the_profile_used(lab):
    lab.write_hosts(
        {}, raw=("default: local\nprofiles:\n" + GOOD_LOCAL + "  gpu: {provider: ssh, address: '${LAB_GPU_HOST}'}\n")
    )
    assert lab.inv("hosts").returncode == 0  # the other profiles still work
    result = lab.inv("keys", "--host", "gpu", check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"labvm: {lab.hosts}: profiles.gpu.address: ${{LAB_GPU_HOST}} is not set; set LAB_GPU_HOST "
        "in .env beside hosts.yml (see .env.example)"
    )
    (lab.directory / ".env").write_text("LAB_GPU_HOST=bad host name\n")
    result = lab.inv("keys", "--host", "gpu", check=False)
    assert "profiles.gpu.address: must be a host name or IP address, not 'bad host name'" in result.stderr


def test_hostile_user_is_refused_before_any_shell(lab):
    lab.write_hosts({}, raw="profiles:\n  lab: {provider: ssh, address: h, user: 'x; touch PWNED'}\n")
    result = lab.inv("up", "--host", "lab", check=False)
    assert result.returncode == 1
    assert "profiles.lab.user: must be a login name" in result.stderr
    assert not list(lab.directory.rglob("PWNED"))


def test_unreachable_host(lab, user):
    closed = free_port()
    lab.write_hosts({"vm": {"provider": "ssh", "address": "127.0.0.1", "port": closed, "user": user.name}})
    result = lab.inv("up", "--host", "vm", "--no-browser", check=False)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"labvm: vm ({user.name}@127.0.0.1:{closed}): ")
    assert "profiles.vm.address/port" in last


def test_unreachable_worker_host_names_its_cluster_entry(lab, user, sshd):
    closed = free_port()
    head = ssh_profile(user, sshd, cluster={"hosts": [f"127.0.0.1:{closed}"]})
    lab.write_hosts({"lab": head})
    result = lab.inv("cluster", "--host", "lab", check=False)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"labvm: lab+w1 ({user.name}@127.0.0.1:{closed}): ")
    assert lines[0].endswith(f"check {lab.hosts}: profiles.lab.cluster.hosts[0]")


def test_changed_host_key_is_refused_with_the_fix(lab, user, sshd, tmp_path):
    from realhost import Sshd

    lab.write_hosts({"vm": ssh_profile(user, sshd)})
    lab.inv("keys", "--host", "vm")
    known_hosts = lab.ssh_dir / "labvm" / "known_hosts"
    assert f"[127.0.0.1]:{sshd.port}" in known_hosts.read_text()
    authorized = (user.home / ".ssh" / "authorized_keys").read_text()
    # Another server (say, a recreated VM) now answers at an address labvm knows.
    impostor = Sshd(tmp_path / "impostor")
    try:
        entry = known_hosts.read_text().replace(f"[127.0.0.1]:{sshd.port}", f"[127.0.0.1]:{impostor.port}")
        known_hosts.write_text(entry)
        lab.write_hosts({"vm": ssh_profile(user, impostor)})
        result = lab.inv("up", "--host", "vm", "--no-browser", check=False)
    finally:
        impostor.stop()
    assert result.returncode == 1
    message = result.stderr.strip().splitlines()[-1]
    assert "the host key changed since labvm first connected" in message
    assert f"ssh-keygen -f '{known_hosts}' -R '[127.0.0.1]:{impostor.port}'" in message
    assert (user.home / ".ssh" / "authorized_keys").read_text() == authorized  # nothing half-done


def test_missing_identity_file(lab, user, sshd):
    lab.write_hosts({"vm": ssh_profile(user, sshd, identity="/nonexistent/key")})
    result = lab.inv("keys", "--host", "vm", check=False)
    assert result.returncode == 1
    assert result.stderr.strip().endswith("profiles.vm.identity: /nonexistent/key not found")


def test_local_profile_has_no_ssh(lab):
    lab.write_hosts({}, raw="profiles:\n" + GOOD_LOCAL)
    result = lab.inv("ssh", "--host", "local", check=False)
    assert result.returncode == 1
    assert "the local profile is this machine" in result.stderr


def test_local_ports_all_busy(lab, user, sshd):
    profile = ssh_profile(user, sshd)
    blockers = ports_held_below_the_ephemeral_range(50)
    wanted = blockers[0].getsockname()[1]
    profile["notebook"]["local_port"] = wanted
    lab.write_hosts({"vm": profile})
    try:
        result = lab.inv("tunnel", "--host", "vm", check=False)
    finally:
        for s in blockers:
            s.close()
    assert result.returncode == 1
    assert f"local ports {wanted}-{wanted + 49} are all busy; set profiles.vm.notebook.local_port" in result.stderr


def ports_held_below_the_ephemeral_range(count: int) -> list[socket.socket]:
    """count consecutive loopback ports, bound here. Below the kernel's ephemeral range, so no
    passing connection of a test running alongside holds one for a moment and frees it later."""
    lowest_ephemeral = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for first in random.sample(range(10000, lowest_ephemeral - count), 200):
        held = []
        for port in range(first, first + count):
            s = socket.socket()
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                s.close()
                break
            held.append(s)
        if len(held) == count:
            return held
        for s in held:
            s.close()
    raise AssertionError(f"no {count} free ports in a row below {lowest_ephemeral}")


def test_status_reports_every_profile_even_when_one_is_down(lab, user):
    closed = free_port()
    lab.write_hosts(
        {},
        raw=(
            "default: local\nprofiles:\n  local: {provider: local, env: {manager: uv}, notebook: {port: %d}}\n"
            "  gone: {provider: ssh, address: 127.0.0.1, port: %d, user: %s}\n" % (free_port(), closed, user.name)
        ),
    )
    result = lab.inv("status")
    lines = result.stdout.splitlines()
    assert lines[0] == "local (local, this machine): reachable"
    assert "  notebook: not running" in lines
    assert any(line.startswith(f"gone: gone ({user.name}@127.0.0.1:{closed}): ") for line in lines), lines


@pytest.mark.parametrize(
    "args, refused",
    [
        (["create"], "create"),
        (["start"], "start"),
        (["stop"], "stop"),
        (["snapshot"], "snapshot"),
        (["resize", "--size", "m5.large"], "resize"),
        (["images"], "images"),
        (["terminate", "--yes"], "terminate"),
        (["up", "--no-browser", "--replace", "--yes"], "--replace"),
        (["up", "--no-browser", "--from-image", "latest"], "--from-image"),
        (["autostop", "--idle", "1h"], "autostop"),
        (["autostop", "--off"], "autostop"),
    ],
)
def test_what_makes_or_powers_a_machine_is_refused_where_labvm_does_not_manage_it(lab, args, refused):
    # ws1.example.org does not resolve: a task that tried to reach it before refusing would say so instead.
    lab.write_hosts({}, raw="profiles:\n  lab: {provider: ssh, address: ws1.example.org}\n" + GOOD_LOCAL)
    for profile, provider in (("lab", "ssh"), ("local", "local")):
        result = lab.inv(args[0], "--host", profile, *args[1:], check=False)
        assert result.returncode == 1
        # `stop` has a verb that does what it can here: the refusal names it.
        down = f"; `inv down --host {profile}` syncs notebooks home and stops the notebook" if refused == "stop" else ""
        assert result.stderr.strip() == (
            f"labvm: {refused} is not supported for profile {profile!r} "
            f"(provider {provider}: labvm uses the machine, it does not manage it{down})"
        )


def test_up_of_a_machine_labvm_does_not_start_says_at_once_why_ssh_fails(lab, user):
    # A cloud VM boots for minutes after it runs, so up waits for its SSH; a lab server is up or it is
    # not: the connection's own error comes at once, with the key to check.
    closed = free_port()
    lab.write_hosts(
        {}, raw="profiles:\n  gone: {provider: ssh, address: 127.0.0.1, port: %d, user: %s}\n" % (closed, user.name)
    )
    result = lab.inv("up", "--host", "gone", "--no-browser", check=False, timeout=60)
    assert result.returncode == 1
    assert "waiting for SSH" not in result.output
    assert result.stderr.strip().startswith(f"labvm: gone ({user.name}@127.0.0.1:{closed}): SSH failed: ")
    assert result.stderr.strip().endswith(f"; check {lab.hosts}: profiles.gone.address/port")


@pytest.mark.parametrize("verb", [["up"], ["down"], ["terminate", "--force"], ["cluster"]])
def test_plan_is_refused_where_labvm_makes_no_cloud_call(lab, verb):
    lab.write_hosts({}, raw="profiles:\n  lab: {provider: ssh, address: ws1.example.org}\n" + GOOD_LOCAL)
    for profile in ("lab", "local"):
        result = lab.inv(verb[0], "--host", profile, *verb[1:], "--plan", check=False)
        assert result.returncode == 1
        assert result.stderr.strip() == f"labvm: --plan shows cloud API calls; profile {profile!r} makes none"


def test_listing_tasks_imports_no_cloud_sdk_fabric_or_yaml():
    import subprocess
    import sys

    from realhost import ROOT

    probe = (
        "import sys; sys.path.insert(0, %r); import tasks; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'boto3', 'botocore', 'openstack', 'google', 'fabric', 'paramiko', 'dotenv', 'argon2'}))" % str(ROOT)
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
