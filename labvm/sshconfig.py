"""labvm's local SSH state: its key, its known_hosts, and `Host labvm-<profile>` blocks.

Everything lives in ~/.ssh/labvm/ (LABVM_SSH_DIR moves ~/.ssh, for tests); the user's
~/.ssh/config gets one `Include` line at the top, so `ssh labvm-cades`, VS Code
Remote-SSH, rsync and the tunnel all read the same blocks.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePath

from . import platforms
from .config import CONTROL, JUMP, USER, Profile, host_problem, jump_problem
from .config.member import PATTERN as MEMBER
from .errors import LabvmError
from .files import write_private

JUMP_SUFFIX = "+jump"  # '+' is not allowed in profile names, so no profile's alias can collide
# labvm-<profile name> (config's rule: [A-Za-z0-9][A-Za-z0-9_.-]*, at most 32), +w<n> for a cluster's
# worker (config.Member); nothing OpenSSH reads as a pattern ('*', '?', '!', ',') or a separator.
ALIAS = re.compile(rf"labvm-[A-Za-z0-9][A-Za-z0-9_.-]{{0,31}}(?:{MEMBER})?")
# What OpenSSH does to a value of its config, on every version labvm supports (7.6+), so that ssh reads
# back exactly the path or name labvm checked.  Values are written double-quoted.
# - Quotes and escapes: from 8.7 argv_split (misc.c) ends a quoted value at the next '"' and reads \\, \"
#   and \' as escapes; before 8.7 strdelim ends it at the next '"' and reads no escape.  No '"' and no
#   '\\' can be written the same way for both: both are refused (Windows paths are written with '/').
# - %TOKENS (percent_expand, misc.c): IdentityFile and HostName read %% as % in every version: '%' is
#   written doubled.  UserKnownHostsFile reads tokens only from 8.4 and Include from 9.9 (before, '%%'
#   stays two characters): labvm's own folder, which both name, must hold no '%'.
# - ${NAME} (dollar_expand, misc.c; IdentityFile, CertificateFile, ControlPath, IdentityAgent and
#   UserKnownHostsFile from 8.4, Include from 9.9, User from 10.0) is the environment's NAME, and no
#   escape writes a literal '${' (ssh_config(5), ENVIRONMENT VARIABLES): refused.
# - Include globs its path (readconf.c, glob(3)): labvm's own folder holds no '*', '?' or '['.
UNWRITABLE = {'"': "a double quote", "\\": "a backslash", "${": "'${' (OpenSSH reads ${NAME} as a variable)"}
UNWRITABLE_HOME = {
    "%": "'%' (an OpenSSH token)",
    "*": "a '*' (Include globs)",
    "?": "a '?' (Include globs)",
    "[": "a '[' (Include globs)",
}


@dataclass(frozen=True)
class SshHome:
    """Where labvm's SSH files live: `root` is ~/.ssh, or LABVM_SSH_DIR."""

    root: Path

    @classmethod
    def current(cls) -> "SshHome":
        """The SSH home of this process, refused in one line when OpenSSH would not read it back as
        written or when another user could write it."""
        origin = "LABVM_SSH_DIR" if os.environ.get("LABVM_SSH_DIR") else "~/.ssh"
        # Absolute: OpenSSH reads a relative Include in ~/.ssh, a relative IdentityFile in its working folder.
        root = Path(os.environ.get("LABVM_SSH_DIR") or "~/.ssh").expanduser().absolute()
        if root.exists() and not root.is_dir():
            raise LabvmError(f"{root}: not a folder; {origin} must name the folder for labvm's SSH files")
        problem = value_problem(config_path(root), {**UNWRITABLE, **UNWRITABLE_HOME})
        if problem:
            raise LabvmError(
                f"{origin}: {str(root)!r} holds {problem}, which OpenSSH would not read back as "
                f"written; set LABVM_SSH_DIR to a folder whose path holds none"
            )
        for folder in (root, root / "labvm"):
            _check_owner(folder, origin)
        return cls(root)

    @property
    def labvm(self) -> Path:
        """~/.ssh/labvm: labvm's key, known_hosts, config and run folder."""
        return self.root / "labvm"

    @property
    def key(self) -> Path:
        """labvm's private key (its public half beside it, .pub)."""
        return self.labvm / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        """labvm's own known_hosts: the host keys of the VMs it made or reached."""
        return self.labvm / "known_hosts"

    @property
    def config(self) -> Path:
        """labvm's ssh config, with its `Host labvm-<profile>` blocks."""
        return self.labvm / "config"

    @property
    def user_config(self) -> Path:
        """The user's ~/.ssh/config, which gets the one `Include` line."""
        return self.root / "config"

    @property
    def run(self) -> Path:
        """~/.ssh/labvm/run, the keepers' records, logs and sockets: made (0700, in 0700 folders) once per
        process, and again only if it went; a task reads it dozens of times."""
        path = self.labvm / "run"
        if path not in _RUN_FOLDERS_MADE or not path.is_dir():
            self.ensure_folders()
            _private_folder(path)
            _RUN_FOLDERS_MADE.add(path)
        return path

    def ensure_folders(self) -> None:
        """~/.ssh (made 0700 if missing; never group- or world-writable) and ~/.ssh/labvm (0700)."""
        _private_folder(self.root)
        os.chmod(self.root, os.stat(self.root).st_mode & 0o755 | 0o700)
        _private_folder(self.labvm)
        os.chmod(self.labvm, 0o700)

    def ensure_key(self) -> str:
        """labvm's ed25519 key pair (0600/0644), made once; returns the public key line."""
        self.ensure_folders()
        if not self.key.exists():
            result = subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "labvm", "-f", str(self.key)],
                capture_output=True,
                text=True,
            )
            if result.returncode != 0:
                raise LabvmError(f"ssh-keygen could not make {self.key}: {result.stderr.strip()}")
            print(f"keys: made labvm's key pair {self.key}")
        platforms.make_private(self.key)  # an ACL on Windows, as its OpenSSH demands
        os.chmod(self.key.with_suffix(".pub"), 0o644)
        self.ensure_known_hosts()
        return self.key.with_suffix(".pub").read_text().strip()

    def ensure_known_hosts(self) -> None:
        """labvm's known_hosts, made empty (0600) when missing, in its folders."""
        self.ensure_folders()
        self.known_hosts.touch(mode=0o600, exist_ok=True)

    def forget_host(self, hostname: str, port: int) -> None:
        """Drops a host key from labvm's known_hosts (the VM at that address is new)."""
        name = hostname if port == 22 else f"[{hostname}]:{port}"
        if self.known_hosts.exists():
            result = subprocess.run(
                ["ssh-keygen", "-R", name, "-f", str(self.known_hosts)], capture_output=True, text=True
            )
            if "updated" in result.stdout + result.stderr:
                print(f"keys: forgot the old host key of {name} (a new VM answers there)")

    def check_identity(self, profile: Profile) -> None:
        """The profile's own key exists and only its owner may read it (else OpenSSH refuses it), at a
        path the ssh config can name so that OpenSSH opens that same file."""
        path = profile.identity
        if path is None:
            return
        where = profile.key("identity")
        _check_identity_path(profile, path)
        if not path.is_file():
            raise LabvmError(f"{where}: {path} not found")
        ownership = platforms.owned_mode(path)  # None on Windows: its OpenSSH reads the ACL itself
        if ownership and ownership[0] and ownership[1] & 0o077:
            raise LabvmError(
                f"{where}: {path} is readable by others (mode {ownership[1]:o}) and OpenSSH refuses it; "
                f"run: chmod 600 '{path}'"
            )

    def write_host(self, profile: Profile, hostname: str) -> None:
        """Adds or replaces the profile's blocks in ~/.ssh/labvm/config; other blocks stay.

        Call it once the host was reached with these values: a failed task keeps the last good block.
        Every value is checked here, whatever its origin (hosts.yml, a cloud's metadata such as
        GCE's OS Login user): no value can end its line and start a directive of its own.
        """
        _check_values(profile, hostname)
        with _WRITING:  # a cluster's machines are set up in parallel: each keeps the others' blocks
            blocks = _read_blocks(self.config)
            jump_alias = profile.alias + JUMP_SUFFIX
            for alias in (profile.alias, jump_alias):
                blocks.pop(alias, None)
            identities = [self.key] + ([profile.identity.absolute()] if profile.identity else [])
            if profile.jump:
                user, host, port = parse_jump(profile.jump)
                blocks[jump_alias] = _block(jump_alias, host, port, user, identities, self.known_hosts, None)
            blocks[profile.alias] = _block(
                profile.alias,
                hostname,
                profile.port,
                profile.user,
                identities,
                self.known_hosts,
                jump_alias if profile.jump else None,
            )
            text = "# Written by labvm (inv keys); edits are replaced.\n\n" + "\n".join(blocks.values())
            _write_if_changed(self.config, text)
            self.ensure_include()

    def ensure_include(self) -> None:
        """One `Include` line at the top of ~/.ssh/config: never twice, nothing else touched.

        A symlinked config (a dotfiles repository) is edited where it points; CRLF stays CRLF.
        """
        line = f'Include "{config_path(self.config)}"'  # current() refused what OpenSSH reads as syntax there
        target = self.user_config.resolve() if self.user_config.is_symlink() else self.user_config
        current = target.read_bytes().decode("utf-8", "surrogateescape") if target.exists() else ""
        if line in (existing.strip() for existing in current.splitlines()):
            return
        newline = "\r\n" if "\r\n" in current else "\n"
        _write_if_changed(target, f"{line}{newline}{current}", keep_mode=True)
        print(f"keys: added an Include of {self.config} to {self.user_config}")

    def ssh_command(self, profile: Profile, *options: str) -> list[str]:
        """OpenSSH to the profile through the user's config (which includes labvm's)."""
        return ["ssh", "-F", str(self.user_config), *options, profile.alias]


def _check_values(profile: Profile, hostname: str) -> None:
    nothing = "nothing was written to the ssh config"
    if not ALIAS.fullmatch(profile.alias):
        raise LabvmError(
            f"{profile.source}: profiles.{profile.name}: {profile.alias!r} cannot be an ssh alias; "
            f"rename it (letters, digits, '.', '_', '-'; at most 32); {nothing}"
        )
    if host_problem(hostname) is not None:
        raise LabvmError(f"{profile.name}: {hostname!r} is not a host name or IP address; {nothing}")
    if profile.user and not (isinstance(profile.user, str) and USER.fullmatch(profile.user)):
        raise LabvmError(
            f"{profile.key('user')}: the login {profile.user!r} (from hosts.yml or the cloud's "
            f"metadata) is not a login name (letters, digits, '.', '_', '-'); {nothing}"
        )
    if isinstance(profile.port, bool) or not isinstance(profile.port, int) or not 0 < profile.port < 65536:
        raise LabvmError(f"{profile.key('port')}: {profile.port!r} is not a port from 1 to 65535; {nothing}")
    if profile.jump and jump_problem(profile.jump) is not None:
        raise LabvmError(f"{profile.key('jump')}: {profile.jump!r} is not [user@]host[:port]; {nothing}")
    if profile.identity is not None:
        _check_identity_path(profile, profile.identity)


def _check_identity_path(profile: Profile, path: Path) -> None:
    """labvm checks the identity's file (its mode, Fabric's login): OpenSSH must open that same file."""
    written = config_path(path)
    problem = value_problem(written)
    if problem:
        raise LabvmError(
            f"{profile.key('identity')}: {written!r} holds {problem}, so OpenSSH would open another "
            f"file than labvm checks; move or link the key to a path without it"
        )


def _private_folder(path: Path) -> None:
    """A folder made 0700 (mkdir's parents=True makes folders with the umask's mode: 0755)."""
    if not path.is_dir():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.mkdir(mode=0o700, exist_ok=True)


def _check_owner(folder: Path, origin: str) -> None:
    """labvm's key, its known_hosts and its ssh config live there: only the user may write it
    (another user's folder could hold a `Match exec` of theirs, or read the key)."""
    ownership = platforms.owned_mode(folder) if folder.is_dir() else None  # None on Windows (ACLs)
    if ownership is None:
        return
    mine, mode = ownership
    if not mine:
        raise LabvmError(
            f"{origin}: {folder} belongs to another user (uid {folder.stat().st_uid}); name a folder of your own"
        )
    if mode & 0o022:
        raise LabvmError(
            f"{origin}: {folder} can be written by other users (mode {mode:o}); run: chmod go-w '{folder}'"
        )


def parse_jump(jump: str) -> tuple[str, str, int]:
    """A profile's jump as (user or "", host, port); one line naming the key when it is no [user@]host[:port]."""
    match = JUMP.fullmatch(jump)
    if not match or jump_problem(jump) is not None:
        raise LabvmError(f"jump: {jump!r} is not [user@]host[:port]")
    user, host, port = match.groups()
    return user or "", host.strip("[]"), int(port or 22)


def _block(alias, hostname, port, user, identities, known_hosts, proxy) -> str:
    # Each value was validated (no whitespace, quotes or control characters can reach here); _literal
    # says how each is written (UNWRITABLE).
    lines = [f"Host {alias}", f"    HostName {_literal(hostname)}", f"    Port {int(port)}"]
    if user:
        lines.append(f"    User {_literal(user)}")
    lines += [f'    IdentityFile "{_literal(path)}"' for path in identities]
    lines += [
        "    IdentitiesOnly yes",
        f'    UserKnownHostsFile "{_literal(known_hosts)}"',
        "    StrictHostKeyChecking accept-new",
        "    ServerAliveInterval 30",
        "    ServerAliveCountMax 4",
    ]
    if proxy:
        lines.append(f"    ProxyJump {proxy}")
    return "\n".join(lines) + "\n"


def config_path(path: PurePath) -> str:
    """A local path as an ssh config names it: with '/' on Windows, whose paths take it and whose
    OpenSSH (8.7+) reads a backslash as an escape."""
    return path.as_posix() if platforms.is_windows() else str(path)


def value_problem(text: str, unwritable: Mapping[str, str] = UNWRITABLE) -> str | None:
    """What in `text` no ssh config can hold so that OpenSSH reads back exactly it; None when nothing."""
    if CONTROL.search(text):
        return "a control character"
    return next((what for piece, what in unwritable.items() if piece in text), None)


def _literal(value) -> str:
    """A value as the ssh config writes it (inside double quotes, or bare where it holds no space)."""
    text = config_path(value) if isinstance(value, PurePath) else str(value)
    problem = value_problem(text)
    if problem:
        raise LabvmError(f"{text!r} cannot go into an ssh config ({problem})")
    return text.replace("%", "%%")


def _read_blocks(path: Path) -> dict[str, str]:
    blocks: dict[str, str] = {}
    if not path.exists():
        return blocks
    current = None
    for line in path.read_text().split("\n"):
        line += "\n"
        if line.startswith("Host "):
            current = line.split()[1]
            blocks[current] = ""
        if current and line.strip():
            blocks[current] += line
    return blocks


_WRITING = threading.Lock()
_RUN_FOLDERS_MADE: set[Path] = set()  # SshHome.run's folders this process made private


def _write_if_changed(path: Path, text: str, keep_mode: bool = False) -> None:
    data = text.encode("utf-8", "surrogateescape")
    if path.exists() and path.read_bytes() == data:
        return
    _private_folder(path.parent)
    mode = path.stat().st_mode & 0o777 if keep_mode and path.exists() else 0o600
    write_private(path, data, mode)
