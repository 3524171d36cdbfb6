"""`inv check` for the laptop itself, one line each, like the cloud's: the platform, OpenSSH and
the features labvm uses, rsync (or the built-in fallback), notifications, WSL's localhost
forwarding, and whether the keeper can detach from the terminal.
"""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import sys
from pathlib import Path

from . import platforms
from .providers import Check
from .text import clean

# What labvm writes into ~/.ssh/labvm/config and passes to ssh, with the OpenSSH release that
# brought it (OpenSSH release notes, https://www.openssh.com/releasenotes.html): Include and
# ProxyJump 7.3, StrictHostKeyChecking accept-new 7.6; ExitOnForwardFailure, ServerAliveInterval,
# ControlMaster/ControlPath=none and BatchMode are older.
OPENSSH_NEEDED = (7, 6)
OPENSSH_FEATURES = "Include, ProxyJump, StrictHostKeyChecking accept-new"
INSTALL_OPENSSH = {
    platforms.WINDOWS: "Settings > System > Optional features > add OpenSSH Client",
    platforms.MACOS: "it comes with macOS; `brew install openssh` for a newer one",
}
PLATFORM_NAMES = {
    platforms.LINUX: "Linux",
    platforms.MACOS: "macOS",
    platforms.WINDOWS: "Windows",
    platforms.WSL: "WSL (Linux inside Windows): the browser opens on the Windows side",
}


def checks() -> list[Check]:
    """Every laptop check of `inv check`, in the order shown."""
    results = [Check("laptop", True, PLATFORM_NAMES[platforms.current()]), openssh(), rsync(), notifications()]
    if platforms.current() == platforms.WSL:
        results.append(wsl_localhost(_wslconfig()))
    return results + [keeper_detach()]


def openssh() -> Check:
    """The system's ssh: there, new enough for what labvm writes, and its sharing and forwarding."""
    advice = INSTALL_OPENSSH.get(platforms.current(), "install it (sudo apt-get install openssh-client)")
    ssh = shutil.which("ssh")
    if ssh is None:
        return Check("openssh", False, f"no ssh on PATH; {advice}")
    try:
        shown = subprocess.run([ssh, "-V"], capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=10)
    except (OSError, subprocess.SubprocessError) as e:
        return Check("openssh", False, f"{ssh} -V failed ({e}); {advice}")
    line = openssh_line(ssh, (shown.stderr or shown.stdout).strip(), advice)
    return Check(line.name, True, f"{line.detail}; {sharing()}; {forwarding()}") if line.ok else line


def sharing() -> str:
    """Whether a sync can ride the tunnel keeper's login here (labvm.keeper.shared_connection)."""
    from .keeper import shared_connection
    from .sshconfig import SshHome

    if not platforms.ssh_shares_connections():
        return "no ControlMaster in Windows' OpenSSH: each sync logs in"
    run = SshHome.current().run
    if shared_connection(run, "profile") is None:
        return (
            f"no ControlMaster: {run} cannot hold a socket ssh reads (a space, quote or %, or too long): "
            f"each sync logs in"
        )
    return "ControlMaster: while the tunnel is up, a sync rides its login"


def forwarding() -> str:
    """How the keeper reaches its ssh's forward here (labvm.keeper.forward_socket)."""
    from .keeper import forward_socket
    from .sshconfig import SshHome

    run = SshHome.current().run
    if forward_socket(run, "profile") is not None:
        return f"the tunnel's ssh forwards to a unix socket in {run} (0700): no other user of this machine can reach it"
    why = (
        "Windows' OpenSSH forwards no unix socket"
        if platforms.is_windows()
        else f"{run} cannot hold a socket ssh reads (a space, quote, % or $, or too long)"
    )
    return f"{why}: the tunnel's ssh listens on a loopback port, and each connection is checked to reach that ssh"


def openssh_line(ssh: str, version_text: str, advice: str) -> Check:
    """`ssh -V` prints e.g. "OpenSSH_9.2p1 Debian-2, OpenSSL 3.0" or "OpenSSH_for_Windows_8.1p1, LibreSSL 3.0.2"."""
    found = re.search(r"OpenSSH_(?:for_Windows_)?(\d+)\.(\d+)", version_text)
    shown = clean(version_text.splitlines()[0] if version_text else "", 80)
    if not found:
        return Check(
            "openssh",
            False,
            f"{ssh} is not OpenSSH ({shown}); labvm needs OpenSSH {_dotted(OPENSSH_NEEDED)}+; {advice}",
        )
    version = (int(found[1]), int(found[2]))
    if version < OPENSSH_NEEDED:
        return Check(
            "openssh", False, f"{shown}: labvm needs {_dotted(OPENSSH_NEEDED)}+ ({OPENSSH_FEATURES}); {advice}"
        )
    return Check("openssh", True, f"{shown} ({OPENSSH_FEATURES}: {_dotted(OPENSSH_NEEDED)}+ needed)")


def rsync() -> Check:
    """The laptop's rsync, or why `inv sync` uses the built-in fallback: never a failure."""
    from .sync import local_rsync

    return Check("rsync", True, local_rsync().summary())


def notifications() -> Check:
    """How the keeper's warnings reach the user's desktop here; none is no failure."""
    found = platforms.notification_command("labvm", "check")
    if found is None:
        return Check("notifications", True, "none here: the keeper's warnings go to `inv status` and its log")
    return Check("notifications", True, f"through {Path(found[0][0]).name}")


def _wslconfig() -> str | None:
    """The Windows user's %USERPROFILE%\\.wslconfig as text (None when there is none or it cannot be read)."""
    try:
        profile = subprocess.run(
            ["cmd.exe", "/c", "echo %USERPROFILE%"],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=10,
            cwd="/",
        ).stdout.strip()
        linux = subprocess.run(["wslpath", "-u", profile], capture_output=True, text=True, timeout=10).stdout.strip()
        return (Path(linux) / ".wslconfig").read_text(errors="replace")
    except (OSError, subprocess.SubprocessError):
        return None


def wsl_localhost(wslconfig: str | None) -> Check:
    """Windows' browser reaches a port this side listens on through WSL's localhost forwarding
    (on unless [wsl2] localhostForwarding=false) or mirrored networking
    (learn.microsoft.com/windows/wsl/wsl-config, "Configuration settings for .wslconfig")."""
    settings = configparser.ConfigParser(strict=False, interpolation=None)
    try:
        settings.read_string(wslconfig or "")
    except configparser.Error:
        return Check(
            "wsl localhost", True, "%USERPROFILE%\\.wslconfig could not be read; WSL forwards localhost by default"
        )
    if settings.get("wsl2", "networkingMode", fallback="").strip().lower() == "mirrored":
        return Check("wsl localhost", True, "mirrored networking: Windows' browser reaches labvm's local ports")
    if settings.get("wsl2", "localhostForwarding", fallback="true").strip().lower() == "false":
        return Check(
            "wsl localhost",
            False,
            "localhostForwarding=false in %USERPROFILE%\\.wslconfig: Windows' browser "
            "cannot reach the tunnel; set it to true under [wsl2], then `wsl --shutdown`",
        )
    return Check("wsl localhost", True, "localhost forwarding is on: Windows' browser reaches labvm's local ports")


def keeper_detach() -> Check:
    """Starts a process that does nothing the way the keeper is started, and says how it went."""
    used: dict = {}

    def launch(argv, **options):
        used.update(options)
        return subprocess.Popen(argv, **options)

    try:
        process = platforms.spawn_detached(
            [sys.executable, "-c", ""],
            launch=launch,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        process.wait(30)
    except (OSError, ValueError, subprocess.SubprocessError) as e:
        return Check(
            "keeper",
            False,
            f"cannot start a detached process ({clean(str(e), 120)}); the tunnel's keeper would end with this terminal",
        )
    if platforms.is_windows() and not used.get("creationflags", 0) & platforms.CREATE_BREAKAWAY_FROM_JOB:
        return Check(
            "keeper",
            True,
            "detached, but this terminal's job forbids breaking away: the keeper ends when "
            "the terminal closes; start `inv up` from a plain PowerShell window to keep it",
        )
    return Check("keeper", True, f"detaches from this terminal: {platforms.can_detach()}")


def _dotted(version: tuple[int, ...]) -> str:
    return ".".join(str(part) for part in version)
