"""What labvm's own ssh sets whatever the user's ~/.ssh/config says.

labvm runs the system's ssh with the user's config (which includes labvm's blocks), so that what
the user set up for reaching hosts (a proxy, an agent, algorithms) keeps working.  A `Host *`
block may also set what changes what a session does: a common one is `ControlMaster auto` with
`ControlPersist 10m`, which makes the keeper's master fork into the background and its ssh exit 0
at once.  OpenSSH takes the first value it obtains for an option and reads `-o` before any config
file (ssh_config(5)), so every option that would break labvm's use of ssh is given here
explicitly; forwards add up instead of being replaced, so an ssh that forwards nothing clears
them (ClearAllForwardings), and the keeper's forwarding ssh, which cannot, leaves out a config
that forwards for every host (forwards_in).  `inv ssh` (the user's own login) is left alone.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess

from . import platforms
from .text import decode

# OpenSSH 8.7 brought SessionType, StdinNull and ForkAfterAuthentication (release notes): an older
# ssh refuses to start on an option it does not know, and its user's config cannot set them either.
NEWER = (8, 7)


@functools.lru_cache(maxsize=None)
def ssh_version() -> tuple[int, int]:
    """The system ssh's (major, minor); (0, 0) when it cannot be told (then no 8.7 option is given)."""
    ssh = shutil.which("ssh")
    try:
        shown = subprocess.run(
            [ssh or "ssh", "-V"], capture_output=True, stdin=subprocess.DEVNULL, timeout=10, **platforms.windowless()
        )
    except (OSError, subprocess.SubprocessError):
        return (0, 0)
    found = re.search(r"OpenSSH_(?:for_Windows_)?(\d+)\.(\d+)", decode(shown.stderr + shown.stdout))
    return (int(found[1]), int(found[2])) if found else (0, 0)


def _options(pairs: list[tuple[str, str]]) -> list[str]:
    return [word for name, value in pairs for word in ("-o", f"{name}={value}")]


def common() -> list[tuple[str, str]]:
    """The options every ssh of labvm's takes, whatever the user's config says (see the module's docstring)."""
    pairs = [
        ("ForwardAgent", "no"),  # the user's agent never goes to a VM others may hold root on
        ("ForwardX11", "no"),
        ("Tunnel", "no"),
        ("PermitLocalCommand", "no"),  # a LocalCommand would run on the laptop at each login
        ("RemoteCommand", "none"),  # with a command of labvm's, ssh refuses to start
        ("RequestTTY", "no"),  # a pty login counts as activity on the VM: autostop would never stop it
        ("ControlPersist", "no"),  # a master that forks away: the keeper's ssh would exit 0 at once
    ]
    if ssh_version() >= NEWER:
        pairs += [("ForkAfterAuthentication", "no"), ("StdinNull", "no")]  # rsync speaks over stdin
    return pairs


def for_commands() -> list[str]:
    """For an ssh that runs a command (a question to the VM, rsync's transport): no forward at all."""
    pairs = [*common(), ("ClearAllForwardings", "yes")]
    if ssh_version() >= NEWER:
        pairs.append(("SessionType", "default"))  # `none` would run no command
    return _options(pairs)


def for_forward() -> list[str]:
    """For the keeper's ssh (-N, its one -L): the forwards of a config are left out another way."""
    return _options(common())


def forwards_in(ssh_config: str, alias: str) -> list[str]:
    """The forwards the user's config sets for this host (`ssh -G`): LocalForward, RemoteForward,
    DynamicForward lines a `Host *` block may carry; [] when it sets none (or ssh cannot tell)."""
    try:
        shown = subprocess.run(
            ["ssh", "-G", "-F", ssh_config, alias],
            capture_output=True,
            stdin=subprocess.DEVNULL,
            timeout=10,
            **platforms.windowless(),
        )
    except (OSError, subprocess.SubprocessError):
        return []
    return [
        line
        for line in decode(shown.stdout).splitlines()
        if line.split(" ", 1)[0] in ("localforward", "remoteforward", "dynamicforward")
    ]
