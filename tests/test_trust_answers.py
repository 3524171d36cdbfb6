"""What comes back from outside (a VM, a cloud's metadata, a jump host, another user's folder)
into the laptop's terminal, logs and ssh config (issue 18: items 1, 3, 13-17).

Each case is what a hostile or broken source does; labvm answers with one clean line or carries
on, never a traceback, never a raw control byte on the terminal, never a directive of the
source's own in the ssh config, never more than a bounded amount of memory.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import socket
import stat
import subprocess
import threading
import tracemalloc
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

from labvm import config as labvm_config
from labvm import vm
from labvm.errors import LabvmError
from labvm.keeper import Keeper
from labvm.sshconfig import SshHome
from realhost import ssh_profile

RAW_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202e]")  # what a terminal must never get
OSC52 = "\x1b]52;c;ZWNobyBwd25lZA==\x07"  # "write this to the clipboard"
TITLE = "\x1b]0;root@bank\x07"
ERASE = "\r\x1b[2K"


def one_clean_line(text: str) -> None:
    assert text.strip() and "\n" not in text.strip() and not RAW_CONTROL.search(text), repr(text)


def profile_at(tmp_path: Path, **values) -> labvm_config.Profile:
    values = {"provider": "ssh", "address": "127.0.0.1", "user": "lab", **values}
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump({"profiles": {"vm": values}}))
    return labvm_config.load(tmp_path / "hosts.yml").profile("vm")


def ssh_g(config: Path, alias: str) -> dict[str, str]:
    out = subprocess.run(
        ["ssh", "-G", "-F", str(config), alias], capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=10
    )
    assert out.returncode == 0, out.stderr
    return dict(line.split(" ", 1) for line in out.stdout.splitlines() if " " in line)


# -- item 3: the ssh config's writer checks every value, whatever its origin -------------------------

HOSTILE_USERS = [
    "lab\n    ProxyCommand touch {m}",
    "lab\r\nLocalCommand touch {m}",
    "lab\x00x",
    "-oProxyCommand=touch {m}",
    "lab lab",
    'lab"',
    "lab%h",
    "lab\u2028ProxyCommand touch {m}",
    "lab\x1b]0;x\x07",
]


@pytest.mark.parametrize("user", HOSTILE_USERS)
def test_a_login_from_cloud_metadata_cannot_add_a_directive(tmp_path, user):
    """GCE's OS Login user comes from the instance's metadata (labvm-login), which a co-member
    of the project can set: session.py puts it in the profile as it is."""
    marker = tmp_path / "PWNED"
    profile = dataclasses.replace(profile_at(tmp_path), user=user.replace("{m}", str(marker)))
    ssh = SshHome(tmp_path / "ssh")
    with pytest.raises(LabvmError) as refused:
        ssh.write_host(profile, "127.0.0.1")
    one_clean_line(str(refused.value))
    assert "login" in str(refused.value) and "nothing was written" in str(refused.value)
    assert not ssh.config.exists() and not marker.exists()


@pytest.mark.parametrize("port", ["22\n    LocalCommand touch x", 0, 70000, True, "22"])
def test_a_port_that_is_not_a_port_is_one_line(tmp_path, port):
    profile = dataclasses.replace(profile_at(tmp_path), port=port)
    with pytest.raises(LabvmError) as refused:
        SshHome(tmp_path / "ssh").write_host(profile, "127.0.0.1")
    one_clean_line(str(refused.value))
    assert "profiles.vm.port" in str(refused.value)


# -- item 17: aliases never collide ------------------------------------------------------------


@pytest.mark.parametrize("order", [("a", "a-jump"), ("a-jump", "a")])
def test_a_jump_alias_never_collides_with_a_profile(tmp_path, order):
    (tmp_path / "hosts.yml").write_text(
        yaml.safe_dump(
            {
                "profiles": {
                    "a": {
                        "provider": "ssh",
                        "address": "10.0.0.1",
                        "user": "lab",
                        "jump": "gate@login.example.org:2222",
                    },
                    "a-jump": {"provider": "ssh", "address": "10.0.0.2", "user": "lab"},
                }
            }
        )
    )
    config = labvm_config.load(tmp_path / "hosts.yml")
    ssh = SshHome(tmp_path / "ssh")
    for name in order:
        profile = config.profile(name)
        ssh.write_host(profile, profile.address)
    a = ssh_g(ssh.config, "labvm-a")
    jump = ssh_g(ssh.config, a["proxyjump"])
    assert (a["hostname"], jump["hostname"], jump["port"], jump["user"]) == (
        "10.0.0.1",
        "login.example.org",
        "2222",
        "gate",
    )
    assert ssh_g(ssh.config, "labvm-a-jump")["hostname"] == "10.0.0.2"
    assert "proxyjump" not in ssh_g(ssh.config, "labvm-a-jump")


def test_no_profile_name_holds_the_jump_aliases_character(tmp_path):
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump({"profiles": {"a+jump": {"provider": "ssh", "address": "h"}}}))
    with pytest.raises(LabvmError, match="profiles.a\\+jump: a profile name may hold letters"):
        labvm_config.load(tmp_path / "hosts.yml")


# -- items 1 and 16: labvm's SSH folder is the user's alone ------------------------------------------


def test_ssh_folders_are_made_0700_and_the_key_0600(tmp_path):
    ssh = SshHome(tmp_path / "home" / ".ssh")
    ssh.ensure_key()
    ssh.write_host(profile_at(tmp_path), "127.0.0.1")
    for folder in (ssh.root, ssh.labvm, ssh.run):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    for private in (ssh.key, ssh.known_hosts, ssh.config):
        assert stat.S_IMODE(private.stat().st_mode) == 0o600, private


def test_an_ssh_dir_others_may_write_is_refused(tmp_path, monkeypatch):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    monkeypatch.setenv("LABVM_SSH_DIR", str(shared))
    with pytest.raises(LabvmError) as refused:
        SshHome.current()
    one_clean_line(str(refused.value))
    assert "LABVM_SSH_DIR" in str(refused.value) and "chmod go-w" in str(refused.value)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="chown to another user needs root")
def test_an_ssh_dir_of_another_user_is_refused(tmp_path, monkeypatch):
    theirs = tmp_path / "theirs"
    (theirs / "labvm").mkdir(parents=True, mode=0o700)
    os.chown(theirs / "labvm", 65534, 65534)  # nobody: its config could hold a `Match exec` of theirs
    monkeypatch.setenv("LABVM_SSH_DIR", str(theirs))
    with pytest.raises(LabvmError) as refused:
        SshHome.current()
    one_clean_line(str(refused.value))
    assert "belongs to another user" in str(refused.value)


# -- items 13, 14, 15: the keeper's autostop question ------------------------------------------------


@pytest.fixture
def keeper(tmp_path) -> Keeper:
    return Keeper("vm", 1, 1, tmp_path, str(tmp_path / "config"), "labvm-vm", str(tmp_path / "hosts.yml"))


REPORT = {
    "idle_seconds": 1800,
    "set_by": "hosts.yml",
    "scheduler": "cron",
    "idle_for": 1700,
    "last_check_ago": 30,
    "stop_requested": False,
    "reasons": [],
    "extended_until": None,
    "stopped_at": None,
    "stopped_after": None,
    "dask_scheduler": None,
    "worker_grace": None,
}


@pytest.mark.parametrize(
    "answer",
    [
        '{"idle_seconds": 1800, "idle_for": Infinity}',
        '{"idle_seconds": 1800, "idle_for": NaN}',
        '{"idle_seconds": 1800, "idle_for": 1e400}',
        '{"idle_seconds": 1800, "idle_for": 99999999999999999999999999999}',
        '{"idle_seconds": "30m", "idle_for": 10}',
        '{"idle_seconds": 1800, "idle_for": 1700, "reasons": "x"}',
        "[" * 100000,
        '{"idle_seconds": 1800, "idle_for": 1700, "set_by": "' + OSC52 + '"}',
    ],
)
def test_a_bad_autostop_report_is_one_log_line_and_the_watch_lives_on(keeper, capsys, answer):
    keeper.watch.judge(0, answer + "\n", "")
    log = capsys.readouterr().out
    one_clean_line(log)
    assert "autostop" in log and "labvm-vm" in log
    keeper.watch.judge(0, json.dumps(REPORT) + "\n", "")  # the next good answer is used as ever
    assert "stops itself" in capsys.readouterr().out


def test_what_ssh_says_reaches_the_keeper_log_cleaned(keeper, capsys):
    keeper.watch.judge(255, "", f"banner {OSC52}{TITLE}{ERASE}\nConnection closed by 10.0.0.1 port 22{TITLE}\n")
    log = capsys.readouterr().out
    one_clean_line(log)
    assert "Connection closed by 10.0.0.1 port 22\\x1b]0;root@bank\\x07" in log


def test_the_keeper_reads_a_bounded_answer(lab, user, sshd, plant, tmp_path):
    """A VM answering the autostop question with 200 MB: the keeper keeps 64 KiB of it."""
    lab.write_hosts({"vm": ssh_profile(user, sshd)})
    lab.inv("keys", "--host", "vm")
    flood = "import sys\nchunk = b'x' * (1 << 20)\nfor _ in range(200):\n    sys.stdout.buffer.write(chunk)\n"
    plant("autostop.py", flood)
    keeper = Keeper("vm", 1, 1, tmp_path, str(lab.ssh_dir / "config"), "labvm-vm", str(lab.hosts))
    tracemalloc.start()
    try:
        asked, code, out, err = keeper.watch.answer()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"{peak >> 20} MiB held for one answer"
    assert code != 0 and "larger than 64 KiB" in err


# -- item 13: the jump host's banner in `inv check` ----------------------------------------------------


def banner_server(banner: bytes) -> tuple[socket.socket, int]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)

    def serve():
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            with client:
                client.sendall(banner)

    threading.Thread(target=serve, daemon=True).start()
    return server, server.getsockname()[1]


def test_a_jump_hosts_banner_reaches_the_terminal_cleaned(lab, user, sshd):
    server, port = banner_server(f"SSH-2.0-OpenSSH_9.2{OSC52}{TITLE}{ERASE}\r\n".encode())
    try:
        lab.write_hosts({"vm": ssh_profile(user, sshd, jump=f"127.0.0.1:{port}")})
        result = lab.inv("check", "--host", "vm", check=False)
    finally:
        server.close()
    assert not RAW_CONTROL.search(result.output.replace("\n", "")), repr(result.output)
    assert "answers (SSH-2.0-OpenSSH_9.2\\x1b]52;c;" in result.stdout


# -- items 13 and 15: what a step on the VM prints ------------------------------------------------


@pytest.fixture
def plant(user):
    """A VM whose user rewrote one of labvm's scripts (the digest still says they are labvm's);
    afterwards the next task uploads labvm's own again (the login is shared by the session's tests)."""
    yield lambda name, text: plant_script(user, name, text)
    (user.home / ".labvm" / "scripts" / ".digest").unlink(missing_ok=True)


def plant_script(user, name: str, text: str) -> None:
    files = vm.files()  # labvm's scripts, and the digest that says a host has them
    digest = hashlib.sha256(b"".join(p.name.encode() + p.read_bytes() for p in files)).hexdigest()
    folder = user.home / ".labvm" / "scripts"
    folder.mkdir(parents=True, exist_ok=True)
    for path in files:
        (folder / path.name).write_bytes(path.read_bytes())
    (folder / name).write_text(text)
    (folder / ".digest").write_text(digest)
    subprocess.run(["chown", "-R", f"{user.name}:{user.name}", str(user.home / ".labvm")], check=True)


def test_a_steps_stderr_reaches_the_terminal_cleaned(lab, user, sshd, plant):
    lab.write_hosts({"vm": ssh_profile(user, sshd)})
    lab.inv("keys", "--host", "vm")
    plant(
        "notebook.sh",
        "#!/bin/sh\n"
        f"printf 'progress %s\\n' '{OSC52}{TITLE}' >&2\n"
        "head -c 3000000 /dev/zero | tr '\\0' 'y' >&2; echo >&2\n"
        f"printf 'error: boom %s\\n' '{ERASE}{TITLE}' >&2\nexit 1\n",
    )
    result = lab.inv("status", "--host", "vm", check=False)
    assert not RAW_CONTROL.search(result.output.replace("\n", "")), repr(result.output[:400])
    assert "progress \\x1b]52;c;" in result.stderr and "boom \\x0d\\x1b[2K" in result.output
    assert len(result.stderr) < 1 << 20  # 3 MB of progress were not all shown


def test_a_port_that_is_not_ssh_is_one_line_without_paramikos_traceback(lab, user, sshd):
    server, port = banner_server(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
    try:
        lab.write_hosts({"vm": ssh_profile(user, sshd, port=port)})
        result = lab.inv("keys", "--host", "vm", check=False)  # Lab.inv fails on any traceback
    finally:
        server.close()
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("labvm: ") and "profiles.vm.port" in lines[0], result.stderr


# -- items 15, 16: the notebook's status and the browser's URL ----------------------------------------

STATUS = {
    "port": 8888,
    "server": {
        "pid": 42,
        "port": 8888,
        "token": "ab12" * 12,
        "base_url": "/",
        "root_dir": "/home/lab/work",
        "runtime_file": "/x.json",
        "answering": True,
        "kernels": 1,
        "busy_kernels": 0,
        "connections": 1,
        "idle_seconds": 5,
    },
    "other": None,
    "port_busy": False,
    "mem_total": 4 << 30,
    "mem_available": 1 << 30,
    "disk_total": 10 << 30,
    "disk_free": 5 << 30,
    "load": 0.1,
    "autostop": REPORT,
}


def with_server(**changes) -> str:
    return json.dumps({**STATUS, "server": {**STATUS["server"], **changes}})


@pytest.mark.parametrize(
    "answer, words",
    [
        ("Traceback (most recent call last):", "not JSON"),
        ("", "not JSON: progress"),
        ('{"port": 8888}', "server, other, port_busy"),
        (json.dumps({**STATUS, "server": {}}), "server.pid"),
        (with_server(token="abc\r\nSet-Cookie: x"), "server.token"),
        (with_server(token=None), "server.token"),
        (with_server(base_url="@evil.example/"), "server.base_url"),
        (with_server(base_url="//evil.example/"), "server.base_url"),
        (with_server(base_url="/a/../b/" + TITLE), "server.base_url"),
        (with_server(pid=1e400), "not JSON"),
        (with_server(kernels=-1), "server.kernels"),
        (json.dumps({**STATUS, "load": "NaN"}), "load"),
        ('{"a": ' * 2000, "not JSON"),
        ("x" * (1 << 20), "larger than"),
    ],
)
def test_a_bad_notebook_status_is_one_line(answer, words):
    from labvm import notebook

    with pytest.raises(LabvmError) as refused:
        notebook.notebook_status(f"progress\n{answer}\n", "vm (lab@10.0.0.1:22)", "vm")
    one_clean_line(str(refused.value))
    assert str(refused.value).startswith("vm (lab@10.0.0.1:22): notebook status")
    assert words in str(refused.value) and "`inv setup --host vm`" in str(refused.value)


def test_a_good_notebook_status_gives_its_values_with_texts_cleaned():
    from labvm import notebook

    status = notebook.notebook_status(with_server(root_dir=f"/home/{TITLE}"), "vm", "vm")
    assert status["server"]["token"] == "ab12" * 12 and status["server"]["kernels"] == 1
    assert status["server"]["root_dir"] == "/home/\\x1b]0;root@bank\\x07"
    assert notebook.lab_url(9000, status["server"]) == f"http://127.0.0.1:9000/lab?token={'ab12' * 12}"


@pytest.mark.parametrize(
    "base_url",
    [
        "@evil.example/",
        "//evil.example/",
        "/@evil.example/",
        "/a//b/",
        "\\\\evil.example/",
        "/a?x=@evil/",
        "/a#@evil/",
        "/a/%2F%2Fevil/",
        " /a/",
        "/a/\n",
        "http://evil.example/",
    ],
)
def test_a_base_url_never_moves_the_url_to_another_host(base_url):
    from labvm import answers, notebook

    with pytest.raises(answers.BadAnswer):
        notebook.lab_url(9000, {"base_url": base_url, "token": "abc"})


@given(st.text(alphabet=st.sampled_from("/@:.?#%\\a-_~ \t\r\nA9"), max_size=30))
def test_any_accepted_base_url_keeps_the_host(base_url):
    from labvm import answers, notebook

    try:
        url = notebook.lab_url(9000, {"base_url": base_url, "token": "abc"})
    except answers.BadAnswer:
        return
    parts = urlsplit(url)
    assert (parts.hostname, parts.port, parts.query) == ("127.0.0.1", 9000, "token=abc")
    assert parts.path.startswith("/") and "//" not in parts.path


def test_an_extension_past_any_calendar_is_refused():
    """`--extend 99999999999999999h` comes back as extended_until: never a traceback when shown."""
    from labvm import autostop

    with pytest.raises(LabvmError) as refused:
        autostop.autostop_report(json.dumps({**REPORT, "extended_until": 360000000000000000000}), "vm", "vm")
    assert "autostop.extended_until" in str(refused.value)


# -- hypothesis: every parser and printer, any answer -----------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
field_names = st.sampled_from(sorted({*STATUS, *STATUS["server"], *REPORT}))


def hostile_answer():
    """A near-miss of a real answer: one field (or a whole part) replaced by anything."""

    def mutate(pair):
        key, value = pair
        status = json.loads(json.dumps(STATUS))
        target = status["server"] if key in STATUS["server"] and key not in STATUS else status
        target = status["autostop"] if key in REPORT and key not in STATUS["server"] else target
        target[key] = value
        return json.dumps(status, allow_nan=True)

    return st.one_of(
        st.tuples(field_names, json_values).map(mutate),
        json_values.map(json.dumps),
        st.text(max_size=200),
        st.binary(max_size=200).map(lambda b: b.decode("utf-8", "replace")),
    )


def texts_in(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from texts_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from texts_in(item)


@settings(max_examples=400, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(answer=hostile_answer())
def test_every_parser_answers_anything_with_values_or_one_clean_line(answer):
    from labvm import autostop, notebook

    for parse in (notebook.notebook_status, autostop.autostop_report, notebook.notebook_stopped):
        try:
            values = parse(answer, "vm", "vm")
        except LabvmError as e:
            one_clean_line(str(e))
            assert len(str(e)) < 1000
            continue
        for text in texts_in(values):
            assert not RAW_CONTROL.search(text) and "\n" not in text, repr(text)
        for number in (values or {}).values():
            assert not (isinstance(number, float) and not math.isfinite(number))


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    report=st.fixed_dictionaries(
        {
            key: json_values
            for key in ("idle_seconds", "idle_for", "extended_until", "stop_requested", "dask_scheduler", "reasons")
        }
    )
)
def test_the_keeper_lives_through_any_report(tmp_path_factory, report):
    keeper = Keeper("vm", 1, 1, tmp_path_factory.mktemp("k"), "config", "labvm-vm", "hosts.yml")
    keeper.watch.judge(0, json.dumps(report, allow_nan=True) + "\n", "")


@settings(max_examples=300, deadline=None, derandomize=True)
@given(text=st.text(max_size=3000) | st.binary(max_size=300).map(lambda b: b.decode("utf-8", "surrogateescape")))
def test_the_sanitiser_lets_no_control_byte_through(text):
    import io

    from labvm.text import LINE_LIMIT, CleanStream, clean, clean_lines

    line = clean(text)
    assert not RAW_CONTROL.search(line) and "\n" not in line and len(line) <= 6 * LINE_LIMIT + 1
    line.encode("utf-8")  # no lone surrogate: printable on any terminal
    assert not RAW_CONTROL.search(clean_lines(text).replace("\n", ""))
    terminal = io.StringIO()
    stream = CleanStream(terminal, budget=4000)
    for start in range(0, len(text), 7):
        stream.write(text[start : start + 7])
    stream.flush()
    assert (
        not RAW_CONTROL.search(terminal.getvalue().replace("\n", ""))
        and len(terminal.getvalue()) < 4000 + 6 * LINE_LIMIT
    )
