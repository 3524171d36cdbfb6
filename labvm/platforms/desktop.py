"""The desktop on every laptop: notifications and the browser."""

from __future__ import annotations

import html
import os
import shutil
import subprocess
import webbrowser

from . import MACOS, WINDOWS, WSL, current, is_windows
from .processes import windowless

# A toast from Windows PowerShell 5.1 (WinRT types; pwsh 7 lacks them), in the name of
# PowerShell's own AppUserModelID, which every Windows 10/11 has registered.  The texts are
# read from the environment and become XML text nodes: never parsed by PowerShell.
WINDOWS_TOAST = r"""
$ErrorActionPreference = 'Stop'
[Windows.UI.Notifications.ToastNotificationManager, Windows.UI.Notifications, ContentType = WindowsRuntime] > $null
$xml = [Windows.UI.Notifications.ToastNotificationManager]::GetTemplateContent([Windows.UI.Notifications.ToastTemplateType]::ToastText02)
$texts = $xml.GetElementsByTagName('text')
$texts.Item(0).AppendChild($xml.CreateTextNode($env:LABVM_NOTIFY_TITLE)) > $null
$texts.Item(1).AppendChild($xml.CreateTextNode($env:LABVM_NOTIFY_MESSAGE)) > $null
$app = '{1AC14E77-02E7-4E5D-B744-2EB1AE5198B7}\WindowsPowerShell\v1.0\powershell.exe'
[Windows.UI.Notifications.ToastNotificationManager]::CreateToastNotifier($app).Show([Windows.UI.Notifications.ToastNotification]::new($xml))
"""


def notification_command(title: str, message: str) -> tuple[list[str], dict[str, str]] | None:
    """The command (and extra environment) that shows a desktop notification here; None where
    there is none.  The texts are arguments or environment values, never parsed by a shell,
    AppleScript or PowerShell; the message may hold the VM's words (its autostop reasons), so
    where it would be read as markup it is escaped."""
    if current() == MACOS and shutil.which("osascript"):
        # osascript(1): "Any arguments following the script will be passed as a list of strings
        # to the direct parameter of the run handler."
        return [
            "osascript",
            "-e",
            "on run argv",
            "-e",
            "display notification (item 2 of argv) with title (item 1 of argv)",
            "-e",
            "end run",
            title,
            message,
        ], {}
    if is_windows():
        powershell = shutil.which("powershell.exe") or shutil.which("powershell")
        if not powershell:
            return None
        return (
            [powershell, "-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass", "-Command", WINDOWS_TOAST],
            {"LABVM_NOTIFY_TITLE": title, "LABVM_NOTIFY_MESSAGE": message},
        )
    if shutil.which("notify-send"):
        # "Body text may contain markup": <b>, <i>, <u>, <a href>, <img src> and XML entities (Desktop
        # Notifications Specification, https://specifications.freedesktop.org/notification/latest/markup.html),
        # as GNOME Shell, KDE Plasma, dunst and mako read it; the summary is plain text.  Escaped, a VM's
        # "<a href=...>" or "&lt;" shows as the characters it is.
        return ["notify-send", title, html.escape(message, quote=False)], {}
    return None


def notify(title: str, message: str) -> None:
    """A desktop notification where the system has one (best effort: never a failure). The keeper
    calls it, detached: on Windows the toast's PowerShell must not flash a console window up."""
    found = notification_command(title, message)
    if found is None:
        return
    command, extra_env = found
    try:
        subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=10,
            check=False,
            env={**os.environ, **extra_env} if extra_env else None,
            **windowless(),
        )
    except (OSError, subprocess.SubprocessError):
        pass


def has_browser() -> bool:
    """A graphical browser can open a page here (without a display, webbrowser would start a console
    browser inside the terminal)."""
    return bool(
        current() in (MACOS, WINDOWS)
        or (current() == WSL and browser_command("http://127.0.0.1/"))
        or os.environ.get("BROWSER")
        or os.environ.get("DISPLAY")
        or os.environ.get("WAYLAND_DISPLAY")
    )


def browser_command(uri: str) -> list[str] | None:
    """WSL: Windows' browser, through wslu's wslview or explorer.exe (a file of the Linux side
    by its \\\\wsl.localhost path, from wslpath -w); None elsewhere (webbrowser knows: `open` on
    macOS, the default browser on Windows and Linux)."""
    if current() != WSL:
        return None
    if shutil.which("wslview"):
        return ["wslview", uri]
    if not shutil.which("explorer.exe"):
        return None
    if uri.startswith("file://"):
        from urllib.parse import unquote, urlparse

        local = unquote(urlparse(uri).path)
        try:
            windows = subprocess.run(["wslpath", "-w", local], capture_output=True, text=True, check=True)
        except (OSError, subprocess.CalledProcessError):
            return None
        uri = windows.stdout.strip()
    return ["explorer.exe", uri]


def open_browser(uri: str) -> None:
    """Opens the URI in the user's browser (WSL's through Windows), else through webbrowser."""
    command = browser_command(uri)
    if command is None:
        webbrowser.open(uri)
        return
    try:  # explorer.exe answers 1 even when it opened the page
        subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        webbrowser.open(uri)
