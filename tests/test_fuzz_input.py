"""Fuzzed hosts.yml values (hypothesis): control characters, quotes, newlines, `%` tokens,
`-o...`, `$(...)`, `${...}`, non-UTF-8 and very long strings in every string field, written
directly, through `${VAR}` from the environment, and through `.env`.

Whatever the value: labvm answers with its own error or a working profile, never a
traceback; the ssh config it writes holds exactly labvm's directives (read back with
`ssh -G`, which would also run an injected `Match exec`); no payload ever runs.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

from labvm import config as labvm_config
from labvm.errors import LabvmError
from labvm.sshconfig import SshHome
from realhost import INV, free_port

MARKER = "PWNED"
FRAGMENTS = [
    "\n", "\r", "\t", "\x00", "\x1b", "\x7f", "\u2028", '"', "'", "%", "%d", "%h", "%%", "-o", "-", " ", "#",
    "\\", "..", "/", "~", ":", "@", "[", "]", "é", "a" * 300, "${HOME}", "${FUZZ_INNER}", "$(touch {m})",
    "`touch {m}`", "-oProxyCommand=touch {m}", "\n    ProxyCommand sh -c 'touch {m}'",
    '\nMatch exec "touch {m}"', '"\n    LocalCommand touch {m}\n#', "127.0.0.1", "ws1.example.org", "lab",
]
STRING_FIELDS = [
    "address", "user", "identity", "jump", "sync_dir", "notebook.workspace", "notebook.password",
    "env.prefix", "env.python", "env.conda_root", "env.conda_installer_url",
]
NUMBER_FIELDS = ["port", "notebook.port", "notebook.local_port", "autostop"]
LABVM_DIRECTIVES = [  # what labvm writes for a profile, in order; anything else is injected
    "HostName", "Port", "User", "IdentityFile", "IdentitiesOnly", "UserKnownHostsFile",
    "StrictHostKeyChecking", "ServerAliveInterval", "ServerAliveCountMax", "ProxyJump",
]


def hostile(marker: Path):
    pieces = st.one_of(st.sampled_from([f.replace("{m}", str(marker)) for f in FRAGMENTS]), st.text(max_size=6))
    return st.lists(pieces, min_size=1, max_size=6).map("".join)


@contextmanager
def scratch():
    """A laptop of its own per example (hypothesis runs many in one test), environment restored."""
    directory = Path(tempfile.mkdtemp(prefix="lvf-"))
    saved = dict(os.environ)
    try:
        yield directory
    finally:
        os.environ.clear()
        os.environ.update(saved)
        shutil.rmtree(directory, ignore_errors=True)


def write_laptop(directory: Path, field: str, value, how: str) -> None:
    profile = {"provider": "ssh", "address": "127.0.0.1", "user": "lab"}
    written = value if how == "direct" else "${FUZZ}"
    section, _, key = field.rpartition(".")
    (profile.setdefault(section, {}) if section else profile)[key] = written
    (directory / "hosts.yml").write_text(yaml.safe_dump({"profiles": {"vm": profile}}))
    os.environ["FUZZ_INNER"] = f"x\n    ProxyCommand touch {directory / MARKER}"
    if how == "environment":
        os.environ["FUZZ"] = value
    elif how == ".env":
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        (directory / ".env").write_text(f'FUZZ="{escaped}"\n', encoding="utf-8", errors="surrogateescape")
    elif how == ".env bytes":
        (directory / ".env").write_bytes(b"FUZZ=" + value + b"\n")


def same_host(read: str, written: str) -> bool:
    """OpenSSH lower-cases names and reads "0" or "10.1" as IPv4 the way inet_aton does."""
    try:
        return socket.inet_aton(read) == socket.inet_aton(written)
    except OSError:
        return read == written.lower()


def check_ssh_config(directory: Path, profile) -> None:
    config = directory / "ssh" / "labvm" / "config"
    block = [line.split()[0] for line in config.read_text().split("Host labvm-vm\n", 1)[1].split("\n") if line.strip()]
    expected = [d for d in LABVM_DIRECTIVES if not (d == "User" and not profile.user)
                and not (d == "ProxyJump" and not profile.jump)]
    if profile.identity:
        expected.insert(expected.index("IdentityFile"), "IdentityFile")
    assert [d for d in block if d != "Host"][: len(expected)] == expected, config.read_text()
    read = subprocess.run(["ssh", "-G", "-F", str(config), "labvm-vm"], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=10)
    assert read.returncode == 0, read.stderr
    options = dict(line.split(" ", 1) for line in read.stdout.splitlines() if " " in line)
    assert same_host(options["hostname"], profile.address)
    assert "localcommand" not in options and options.get("proxycommand", "none") == "none"


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_no_value_breaks_out_of_its_place(data):
    with scratch() as directory:
        marker = directory / MARKER
        field = data.draw(st.sampled_from(STRING_FIELDS + NUMBER_FIELDS), label="field")
        how = data.draw(st.sampled_from(["direct", "environment", ".env", ".env bytes"]), label="how")
        if how == ".env bytes":
            value = data.draw(st.binary(min_size=1, max_size=40).filter(lambda b: b"\n" not in b and b"\r" not in b))
        else:
            value = data.draw(hostile(marker), label="value")
            if how == "environment" and "\x00" in value:
                how = ".env"
        write_laptop(directory, field, value, how)
        try:
            profile = labvm_config.load(directory / "hosts.yml").profile("vm")
            SshHome(directory / "ssh").write_host(profile, profile.address)
        except LabvmError as e:
            assert str(e).strip() and "Traceback" not in str(e)
        else:
            check_ssh_config(directory, profile)
        assert not marker.exists()


@settings(max_examples=12, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_inv_answers_any_value_with_one_clean_failure(data):
    """As a user runs it: `inv keys` on a profile with a fuzzed value and nothing listening."""
    with scratch() as directory:
        marker = directory / MARKER
        field = data.draw(st.sampled_from(STRING_FIELDS), label="field")
        value = data.draw(hostile(marker), label="value").replace("\x00", "")
        how = data.draw(st.sampled_from(["direct", "environment"]), label="how")
        write_laptop(directory, field, value, how)
        hosts = yaml.safe_load((directory / "hosts.yml").read_text())
        hosts["profiles"]["vm"].setdefault("port", free_port())  # nothing listens there
        (directory / "hosts.yml").write_text(yaml.safe_dump(hosts))
        env = {k: v for k, v in os.environ.items() if not k.startswith("LABVM_")}
        env.update(LABVM_HOSTS=str(directory / "hosts.yml"), LABVM_SSH_DIR=str(directory / "ssh"),
                   HOME=str(directory))
        result = subprocess.run([*INV, "keys", "--host", "vm"], capture_output=True, text=True, env=env,
                                stdin=subprocess.DEVNULL, timeout=120, cwd=directory)
        assert "Traceback" not in result.stdout + result.stderr, result.stderr
        assert result.returncode == 1 and result.stderr.strip().splitlines()[-1].startswith("labvm: "), result.stderr
        assert not (directory / "ssh" / "labvm" / "config").exists()  # nothing reached, nothing written
        assert not marker.exists()
