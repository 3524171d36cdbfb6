"""`inv check`: read-only questions to the cloud and the SSH path, one line each, before anything is billed.

The provider answers for its cloud (credentials, region, network, image, size, quota, key pair,
SSH rule, OS Login); this module adds what every profile shares: labvm's key and the identity,
the laptop itself (laptop.py: OpenSSH, rsync, notifications, WSL, the keeper), the jump host,
and an SSH login to the VM when one runs.  `up` asks the provider's questions
before it creates a VM, so a misconfigured account fails in seconds with nothing made.
"""

from __future__ import annotations

import json
import socket

from . import laptop
from .errors import LabvmError
from .providers import Check
from .text import clean, decode

BANNER_BYTES = 255  # an SSH identification line is at most 255 characters (RFC 4253, 4.2)


def checks(session) -> list[Check]:
    """`inv check` of a machine over SSH (Session.checks; this machine is asked nothing): labvm's key and
    identity, the laptop, the provider's questions, the jump host, an SSH login."""
    profile = session.profile
    public_key = _existing_key(session)
    results = [_identity(session)]
    results += session.provider.preflight(public_key)
    if profile.jump:
        results.append(_jump(profile))
    if all(check.ok for check in results):
        results.append(_login(session))
    # The laptop's own lines (OpenSSH, rsync, notifications, WSL, the keeper) after labvm's key.
    return results[:1] + laptop.checks() + results[1:]


def before_create(session) -> None:
    """The provider's checks, run by `up` before a VM is made: a failure stops it with nothing made."""
    failed = [c for c in session.provider.preflight(_public_key(session)) if not c.ok]
    if failed:
        raise LabvmError(
            "\n".join(
                [f"check {c.name}: {clean(c.detail)}" for c in failed]
                + [f"nothing was created; `inv check --host {session.profile.name}` asks again"]
            )
        )


def report(results: list[Check], as_json: bool) -> str:
    """The checks as aligned lines (cleaned), or as JSON."""
    if as_json:  # json.dumps escapes every control character itself
        return json.dumps([{"check": c.name, "ok": c.ok, "detail": c.detail} for c in results], indent=2)
    width = max(len(c.name) for c in results)
    # A detail may quote a banner, a cloud's message or a tag: cleaned, one line each.
    return "\n".join(f"{'ok  ' if c.ok else 'FAIL'}  {c.name:<{width}}  {clean(c.detail)}" for c in results)


def _public_key(session) -> str:
    """labvm's public key, made here if need be (`up`): a local file, nothing the cloud bills."""
    return session.ssh.ensure_key()


def _existing_key(session) -> str:
    """labvm's public key where this machine has it, else "": `inv check` reads, it makes nothing."""
    public = session.ssh.key.with_suffix(".pub")
    return public.read_text().strip() if session.ssh.key.exists() and public.is_file() else ""


def _identity(session) -> Check:
    """labvm's key and the profile's identity: ok where something can log in.  A missing identity with
    labvm's key at hand is said and passes, as `up` goes on with that key (reach._without_missing_identity)."""
    written = session.provider.profile.identity  # as hosts.yml names it: the reach's profile drops a missing one
    key = session.ssh.key
    if written is not None and not written.is_file() and key.is_file():
        return Check(
            "identity", True, f"{session.profile.key('identity')}: {written} not found; labvm's key {key} is used"
        )
    try:
        session.ssh.check_identity(session.profile)
    except LabvmError as e:
        return Check("identity", False, str(e))
    mine = f"labvm's key {key}" if key.exists() else f"would make labvm's key at first `up` ({key})"
    return Check("identity", True, mine + (f" and {session.profile.identity}" if session.profile.identity else ""))


def _jump(profile) -> Check:
    from .sshconfig import parse_jump

    user, host, port = parse_jump(profile.jump)
    try:
        with socket.create_connection((host, port), timeout=10) as s:
            s.settimeout(10)
            banner = s.recv(BANNER_BYTES)
    except OSError as e:
        return Check(
            "jump host",
            False,
            f"{host}:{port} does not answer ({clean(e.strerror or str(e))}); "
            f"check profiles.{profile.name}.jump and your VPN",
        )
    if not banner.startswith(b"SSH-"):
        return Check("jump host", False, f"{host}:{port} answers but is not an SSH server")
    # The jump host wrote it: shown cleaned, its first line only.
    shown = clean(decode(banner).split("\n")[0].strip(), 100)
    return Check("jump host", True, f"{host}:{port} answers ({shown})")


def _login(session) -> Check:
    instance = session.provider.find()
    if instance is None:
        return Check("ssh login", True, "no VM yet; `inv up` makes one")
    if instance.state != "running":
        return Check("ssh login", True, f"the VM ({instance.id}) is {instance.state}; `inv up` starts it")
    try:
        session.host.login()
    except LabvmError as e:
        return Check("ssh login", False, str(e))
    return Check("ssh login", True, f"{session.host.label}: logged in")
