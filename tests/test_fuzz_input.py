"""Fuzzed hosts.yml values (hypothesis): control characters, quotes, newlines, `%` tokens,
`-o...`, `$(...)`, `${...}`, non-UTF-8 and very long strings in every string field of every
provider (lists and tag values included: cluster.hosts, env.packages, sync, security_groups,
tags), written directly, through `${VAR}` from the environment, and through `.env`.

Whatever the value: labvm answers with its own error or a working profile, never a
traceback; the ssh config it writes holds exactly labvm's blocks and directives, every line of
it, and OpenSSH reads from it (`ssh -G`, which would also run an injected `Match exec`) nothing
but what labvm set: any directive injected anywhere changes an option and fails; no payload runs.
The identity OpenSSH opens (after its `~`, `%` token and `${VAR}` expansion, which `ssh -G` does not
show: read from `ssh -v`) is the very file labvm checked, or labvm refused the value.
"""

from __future__ import annotations

import dataclasses
import os
import re
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
from labvm.sshconfig import SshHome, parse_jump
from realhost import INV, free_port

MARKER = "PWNED"
FRAGMENTS = [
    "\n",
    "\r",
    "\t",
    "\x00",
    "\x1b",
    "\x7f",
    "\u2028",
    '"',
    "'",
    "%",
    "%d",
    "%h",
    "%%",
    "-o",
    "-",
    " ",
    "#",
    "\\",
    "..",
    "/",
    "~",
    ":",
    "@",
    "[",
    "]",
    "é",
    "a" * 300,
    "${HOME}",
    "${FUZZ_INNER}",
    "$(touch {m})",
    "`touch {m}`",
    "-oProxyCommand=touch {m}",
    "\n    ProxyCommand sh -c 'touch {m}'",
    '\nMatch exec "touch {m}"',
    '"\n    LocalCommand touch {m}\n#',
    "127.0.0.1",
    "ws1.example.org",
    "lab",
]
# A working profile per provider; `address` pins where SSH goes, so each writes an ssh config.
BASES = {
    "ssh": {"provider": "ssh", "address": "127.0.0.1", "user": "lab"},
    "openstack": {
        "provider": "openstack",
        "address": "127.0.0.1",
        "user": "lab",
        "cloud": "c",
        "image": "i",
        "flavor": "f",
    },
    "aws": {
        "provider": "aws",
        "address": "127.0.0.1",
        "user": "lab",
        "region": "us-west-2",
        "image": "ami-1",
        "instance_type": "t3.micro",
    },
    "gce": {
        "provider": "gce",
        "address": "127.0.0.1",
        "user": "lab",
        "project": "p",
        "zone": "us-west1-b",
        "machine_type": "e2-small",
    },
}
# (provider, field); "[]" marks a list (the value is one of its items), "{}" a mapping's value.
STRING_FIELDS = (
    [
        ("ssh", field)
        for field in (
            "address",
            "user",
            "identity",
            "jump",
            "sync_dir",
            "notebook.workspace",
            "notebook.password",
            "env.prefix",
            "env.python",
            "env.conda_root",
            "env.conda_installer_url",
            "env.conda_installer_sha256",
            "env.packages[]",
            "sync[]",
            "cluster.hosts[]",
            "cluster.worker_size",
            "cluster.memory_limit",
        )
    ]
    + [
        ("openstack", field)
        for field in (
            "cloud",
            "image",
            "flavor",
            "network",
            "floating_ip_pool",
            "security_groups[]",
            "ssh_cidr",
        )
    ]
    + [
        ("aws", field)
        for field in (
            "region",
            "instance_type",
            "image",
            "subnet",
            "ssh_cidr",
            "tags{}",
            "user",
        )
    ]
    + [
        ("gce", field)
        for field in (
            "project",
            "zone",
            "machine_type",
            "image_family",
            "image_project",
            "ssh_cidr",
            "network",
            "subnetwork",
            "cluster.worker_size",
        )
    ]
)
NUMBER_FIELDS = [("ssh", field) for field in ("port", "notebook.port", "notebook.local_port", "autostop")]
LABVM_DIRECTIVES = [  # what labvm writes for a profile, in order; anything else is injected
    "HostName",
    "Port",
    "User",
    "IdentityFile",
    "IdentitiesOnly",
    "UserKnownHostsFile",
    "StrictHostKeyChecking",
    "ServerAliveInterval",
    "ServerAliveCountMax",
    "ProxyJump",
]
# ...and what OpenSSH derives from them: UpdateHostKeys is on by default only while UserKnownHostsFile
# is the default (OpenSSH 8.5 release notes; readconf.c fill_default_options).
LABVM_OPTIONS = {directive.lower() for directive in LABVM_DIRECTIVES} | {"updatehostkeys"}
HEADER = "# Written by labvm (inv keys); edits are replaced."


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


def write_laptop(directory: Path, where: tuple[str, str], value, how: str) -> None:
    provider, field = where
    profile = dict(BASES[provider])
    written = value if how == "direct" else "${FUZZ}"
    section, _, key = field.rpartition(".")
    if key.endswith("[]"):
        key, written = key[:-2], [written, "h2" if key == "hosts[]" else "numpy"]
    elif key.endswith("{}"):
        key, written = key[:-2], {"Project": written}
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


def machines(profile) -> list:
    """The profile and its cluster's ssh workers, as session.py makes them (alias labvm-vm+wN)."""
    workers = []
    for index, host in enumerate(profile.cluster.hosts if profile.cluster else (), 1):
        user, address, port = parse_jump(host)
        workers.append(
            dataclasses.replace(
                profile,
                name=f"{profile.name}+w{index}",
                address=address,
                port=port or profile.port,
                user=user or profile.user,
                cluster=None,
            )
        )
    return [profile, *workers]


def directives(user: str, identity, proxy: bool) -> list[str]:
    """What labvm writes for one block, in order."""
    written = [d for d in LABVM_DIRECTIVES if not (d == "User" and not user) and not (d == "ProxyJump" and not proxy)]
    if identity:
        written.insert(written.index("IdentityFile"), "IdentityFile")
    return written


def expected_blocks(profile) -> dict[str, list[str]]:
    """Alias -> the directives labvm writes for it: the profile's block and its jump host's."""
    blocks = {profile.alias: directives(profile.user, profile.identity, bool(profile.jump))}
    if profile.jump:
        blocks[profile.alias + "+jump"] = directives(parse_jump(profile.jump)[0], profile.identity, False)
    return blocks


def ssh_g(config: Path, alias: str) -> dict[str, str]:
    read = subprocess.run(
        ["ssh", "-G", "-F", str(config), alias], capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=10
    )
    assert read.returncode == 0, read.stderr
    return dict(line.split(" ", 1) for line in read.stdout.splitlines() if " " in line)


def opened_identities(config: Path, alias: str) -> list[str]:
    """The identity files OpenSSH opens for the alias, after every expansion: it names each in its debug
    log once the connection is up (here a ProxyCommand that ends at once), a backslash doubled and bytes
    outside printable ASCII as octal escapes (log.c: strnvis with VIS_SAFE|VIS_OCTAL). The proxy must say
    nothing: it shares ssh's stderr, and ssh runs it as `exec <command>`, so "exec true" made the shell
    complain in pieces that could land inside a debug line and hide it."""
    run = subprocess.run(
        ["ssh", "-v", "-F", str(config), "-o", "ProxyCommand=true", "-o", "BatchMode=yes", alias, "true"],
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=10,
        check=False,
    )
    log = run.stderr.decode("ascii", "replace")
    named = re.findall(r"^debug1: identity file (.*) type -?\d+\r?$", log, re.MULTILINE)
    files = [name for name in named if not (name.endswith("-cert") and name[: -len("-cert")] in named)]  # each's -cert
    assert files, log
    escape = re.compile(r"\\(\\|[0-3][0-7]{2})")
    return [
        os.fsdecode(escape.sub(lambda m: chr(int(m[1], 8)) if m[1] != "\\" else m[1], f).encode("latin-1"))
        for f in files
    ]


def check_ssh_config(directory: Path, written: list) -> None:
    """Every line of the file is labvm's, and OpenSSH reads nothing else from it."""
    config = directory / "ssh" / "labvm" / "config"
    expected = {alias: directives for profile in written for alias, directives in expected_blocks(profile).items()}
    found: dict[str, list[str]] = {}
    for line in config.read_text().split("\n"):
        if line.startswith("Host "):
            alias = line[len("Host ") :]
            assert alias in expected and alias not in found, config.read_text()
            found[alias] = []
        elif line.strip() and line != HEADER:
            assert line.startswith("    ") and not line[4:].startswith(" "), config.read_text()
            found[alias].append(line.split()[0])
    assert found == expected, config.read_text()
    for profile in written:
        options, default = ssh_g(config, profile.alias), ssh_g(Path("/dev/null"), profile.alias)
        changed = {key for key in options.keys() | default.keys() if options.get(key) != default.get(key)}
        assert changed <= LABVM_OPTIONS, (changed - LABVM_OPTIONS, config.read_text())
        assert same_host(options["hostname"], profile.address)
        assert (options["port"], options["user"]) == (str(profile.port), profile.user or default["user"])
        assert options.get("proxyjump") == (profile.alias + "+jump" if profile.jump else None)
        assert options["userknownhostsfile"] == str(directory / "ssh" / "labvm" / "known_hosts")
        if profile.identity:
            labvm_key = str(directory / "ssh" / "labvm" / "id_ed25519")
            assert opened_identities(config, profile.alias) == [labvm_key, str(profile.identity.absolute())]


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
        written = []
        try:
            for machine in machines(labvm_config.load(directory / "hosts.yml").profile("vm")):
                SshHome(directory / "ssh").write_host(machine, machine.address)
                written.append(machine)
        except LabvmError as e:
            assert str(e).strip() and "Traceback" not in str(e)
        if written:
            check_ssh_config(directory, written)
        assert not marker.exists()


# What OpenSSH reads as its own syntax in a path (tokens, variables, escapes, quotes, tilde, comments).
PATH_FRAGMENTS = [
    "%",
    "%d",
    "%h",
    "%u",
    "%%",
    "${HOME}",
    "${FUZZ_INNER}",
    "$",
    "{",
    "}",
    "\\",
    "\\\\",
    '"',
    "'",
    "~",
    "~/",
    "/",
    " ",
    "#",
    "=",
    "*",
    "é",
    "..",
    "k",
    "-cert",
]


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_the_identity_ssh_opens_is_the_file_labvm_checked(data):
    """identity: OpenSSH opens the path labvm checked (its mode, Fabric's login), or labvm refuses it in one line."""
    with scratch() as directory:
        pieces = st.one_of(
            st.sampled_from(PATH_FRAGMENTS), st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=3)
        )
        value = data.draw(st.lists(pieces, min_size=1, max_size=6).map("".join), label="identity")
        how = data.draw(st.sampled_from(["direct", "environment", ".env"]), label="how")
        write_laptop(directory, ("ssh", "identity"), value, how)
        try:
            profile = labvm_config.load(directory / "hosts.yml").profile("vm")
            SshHome(directory / "ssh").write_host(profile, profile.address)
        except LabvmError as e:
            assert len(str(e).splitlines()) == 1 and "Traceback" not in str(e)
            return
        check_ssh_config(directory, [profile])


@settings(max_examples=12, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_inv_answers_any_value_with_one_clean_failure(data):
    """As a user runs it: `inv keys` on a profile with a fuzzed value and nothing listening."""
    with scratch() as directory:
        marker = directory / MARKER
        field = data.draw(st.sampled_from([f for f in STRING_FIELDS if f[0] == "ssh"]), label="field")
        value = data.draw(hostile(marker), label="value").replace("\x00", "")
        how = data.draw(st.sampled_from(["direct", "environment"]), label="how")
        write_laptop(directory, field, value, how)
        hosts = yaml.safe_load((directory / "hosts.yml").read_text())
        hosts["profiles"]["vm"].setdefault("port", free_port())  # nothing listens there
        (directory / "hosts.yml").write_text(yaml.safe_dump(hosts))
        env = {k: v for k, v in os.environ.items() if not k.startswith("LABVM_")}
        env.update(LABVM_HOSTS=str(directory / "hosts.yml"), LABVM_SSH_DIR=str(directory / "ssh"), HOME=str(directory))
        result = subprocess.run(
            [*INV, "keys", "--host", "vm"],
            capture_output=True,
            text=True,
            env=env,
            stdin=subprocess.DEVNULL,
            timeout=120,
            cwd=directory,
        )
        assert "Traceback" not in result.stdout + result.stderr, result.stderr
        assert result.returncode == 1 and result.stderr.strip().splitlines()[-1].startswith("labvm: "), result.stderr
        assert not (directory / "ssh" / "labvm" / "config").exists()  # nothing reached, nothing written
        assert not marker.exists()
