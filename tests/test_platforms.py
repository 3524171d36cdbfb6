"""labvm on every laptop, tested on Linux: the Linux branches for real; the Windows, macOS and WSL
branches by simulation (platforms.simulating switches labvm's one platform seam), with the
POSIX-only modules Windows lacks made unimportable, and stand-ins only for programs Linux does not
have (icacls, powershell.exe, explorer.exe, wslpath, osascript), each recording what it was given."""

import os
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from unittest import mock
from xml.etree import ElementTree

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labvm import laptop, platforms
from labvm.errors import LabvmError
from realhost import free_port

ROOT = Path(__file__).resolve().parent.parent
POSIX_ONLY = ("fcntl", "pwd", "grp", "termios", "pty", "resource")

# Run first in a child Python: from then on nothing can import what Windows lacks.  invoke and
# psutil pick their platform's module by sys.platform (msvcrt and _pswindows on Windows; fcntl,
# termios and resource here), so they are imported before the blocker goes in; the blocked
# modules are then dropped from sys.modules, so every later import of them meets the blocker.
BLOCKER = textwrap.dedent(f"""
    import sys
    import invoke, invoke.terminals, psutil
    BLOCKED = {POSIX_ONLY!r}
    class Blocker:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"{{name}}: not on Windows")
            return None
    for name in BLOCKED:
        sys.modules.pop(name, None)
    sys.meta_path.insert(0, Blocker())
""")


def run_blocked(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", BLOCKER + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def test_labvm_imports_with_the_posix_only_modules_blocked():
    control = run_blocked("import fcntl")  # the blocker really blocks
    assert control.returncode != 0 and "fcntl: not on Windows" in control.stderr
    result = run_blocked("""
        import labvm.cli, labvm.sync, labvm.keeper, labvm.tunnel
        import labvm.sync_fallback, labvm.laptop, labvm.preflight, labvm.sshconfig, labvm.platforms, labvm.__main__
        print("imported")
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "imported"


def test_windows_finds_and_ends_processes_through_psutil_without_proc_or_a_uid():
    result = run_blocked("""
        import os, subprocess, sys
        del os.getuid  # Windows has none: the Windows branch must not need it
        from labvm import platforms
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "labvm-test-marker"])
        with platforms.simulating("linux"):  # positive control: the POSIX branch needs the uid
            try:
                platforms.own_processes()
            except AttributeError:
                print("linux branch needs getuid")
        with platforms.simulating("windows"):
            found = platforms.own_processes()
            print("found child" if found.get(child.pid, [])[-1:] == ["labvm-test-marker"] else f"missed: {found.get(child.pid)}")
            print("argv", platforms.process_argv(child.pid)[-1])
            print("parent is us" if platforms.parent_pid(child.pid) == os.getpid() else "wrong parent")
            platforms.end_processes([child.pid], timeout=10)
            print("ended" if child.wait(10) is not None else "still running")
            print("gone:", platforms.process_argv(child.pid))
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "linux branch needs getuid",
        "found child",
        "argv labvm-test-marker",
        "parent is us",
        "ended",
        "gone: []",
    ]


def test_windows_detaches_with_its_creation_flags_and_retries_without_breakaway():
    calls = []

    def job_forbids_breakaway(argv, **options):  # what CreateProcess answers inside such a job
        calls.append(options)
        if options["creationflags"] & platforms.CREATE_BREAKAWAY_FROM_JOB:
            raise PermissionError(13, "Access is denied")
        return "started"

    with platforms.simulating("windows"):
        started = platforms.spawn_detached(["keeper"], launch=job_forbids_breakaway, stdin=subprocess.DEVNULL)
    assert started == "started"
    assert [c["creationflags"] for c in calls] == [0x00000008 | 0x00000200 | 0x01000000, 0x00000008 | 0x00000200]
    assert all(c["stdin"] == subprocess.DEVNULL and "start_new_session" not in c for c in calls)
    assert (platforms.DETACHED_PROCESS, platforms.CREATE_NEW_PROCESS_GROUP) == (0x8, 0x200)  # Windows' values


def test_the_keepers_console_children_get_no_window_of_their_own_on_windows():
    """The keeper has no console (DETACHED_PROCESS): on Windows each ssh it starts, every minute,
    would open a console window unless made with CREATE_NO_WINDOW; every Popen in the keeper asks."""
    import ast

    from labvm import keeper

    with platforms.simulating("windows"):
        assert platforms.windowless() == {"creationflags": 0x08000000}  # Windows' CREATE_NO_WINDOW
    assert platforms.windowless() == {}  # Linux's Popen refuses creationflags
    trees = [ast.parse(module.read_text()) for module in Path(keeper.__file__).parent.glob("*.py")]
    popens = [
        node
        for tree in trees
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and ast.unparse(node.func) == "subprocess.Popen"
    ]
    assert len(popens) == 3  # the forward's ssh, the questions to the VM (each kind), the page's Start
    for call in popens:
        assert any(k.arg is None and ast.unparse(k.value) == "platforms.windowless()" for k in call.keywords), (
            ast.unparse(call)
        )


def test_the_tunnels_login_is_shared_where_ssh_can_and_never_on_windows(tmp_path):
    """A sync rides the keeper's ssh through its ControlMaster socket (tests/test_sync.py runs it for
    real); Windows' OpenSSH has none, and a path ssh would misread or that no socket can hold means
    no sharing rather than a tunnel that does not start."""
    from labvm.keeper import shared_connection, ssh_command

    for platform, shares in (("linux", True), ("macos", True), ("wsl", True), ("windows", False)):
        with platforms.simulating(platform):
            shared = shared_connection(tmp_path, "vm")
        command = ssh_command("config", "labvm-vm", 8888, 8888, shared)
        if shares:
            assert shared == tmp_path / "vm.mux"
            assert ["-o", "ControlMaster=yes", "-o", f"ControlPath={shared}"] == command[4:8]
        else:
            assert shared is None
            assert ["-o", "ControlMaster=no", "-o", "ControlPath=none"] == command[4:8]
    for odd in (tmp_path / "John Smith", tmp_path / "100%", tmp_path / "it's", tmp_path / ("x" * 70)):
        assert shared_connection(odd, "vm") is None


def test_the_way_to_the_lab_is_a_private_socket_and_on_windows_a_port_checked_to_be_ssh(tmp_path, neighbour):
    """The gate reaches ssh's forward through a unix socket in the 0700 run folder where the laptop
    has one; Windows' OpenSSH forwards no unix socket, so there ssh listens on a loopback port, which
    anyone may take while ssh is gone: the keeper relays there only over a connection whose other end
    is its own ssh (psutil, as on Windows), never to another user's listener on that port."""
    from labvm.keeper import forward_socket, ssh_command
    from labvm.keeper.forward import Forward
    from realhost import Squatter

    for platform in ("linux", "macos", "wsl"):
        with platforms.simulating(platform):
            assert forward_socket(tmp_path, "vm") == tmp_path / "vm.fwd"
    for odd in (tmp_path / "John Smith", tmp_path / "a:b", tmp_path / "${HOME}", tmp_path / ("x" * 90)):
        assert forward_socket(odd, "vm") is None
    with platforms.simulating("windows"):
        assert forward_socket(tmp_path, "vm") is None
        forward = Forward(tmp_path, "vm", "config", "labvm-vm", 8888, print, lambda: None)
    assert "-L" in (command := ssh_command("config", "labvm-vm", "127.0.0.1:5000", 8888))
    assert command[command.index("-L") + 1] == "127.0.0.1:5000:127.0.0.1:8888"

    listener = (
        "import socket, sys; s = socket.create_server(('127.0.0.1', int(sys.argv[1]))); print(flush=True); "
        "held = [s.accept() for _ in range(10)]"
    )  # accepts, as ssh does at once
    forward.inner_port = free_port()
    forward.child = subprocess.Popen([sys.executable, "-c", listener, str(forward.inner_port)], stdout=subprocess.PIPE)
    try:
        forward.child.stdout.readline()  # it listens
        connection = forward.connect()
        assert connection is not None  # control: its own ssh's listener is reached
        connection.close()
    finally:
        forward.child.kill()
        forward.child.wait()
    with Squatter(neighbour, free_port()) as squatter:
        while "127.0.0.1" not in squatter.bound():
            pass
        forward.inner_port = squatter.port
        forward.child = subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(60)"]
        )  # the keeper's ssh, gone from the port
        try:
            assert forward.connect() is None
            assert forward.child.wait(10) is not None  # that ssh is ended: a new one listens elsewhere
        finally:
            forward.child.kill()
        assert squatter.requests() in ([], [""])  # it got a connection, never a byte


def test_linux_detaches_into_a_session_of_its_own():
    child = platforms.spawn_detached([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert os.getsid(child.pid) == child.pid != os.getsid(0)
    finally:
        child.kill()
        child.wait()


def test_macos_finds_processes_with_ps():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "labvm-ps-marker"])
    try:
        with platforms.simulating("macos"):  # BSD ps's options, which procps's ps accepts too
            assert platforms.process_argv(child.pid)[-1] == "labvm-ps-marker"
            assert platforms.own_processes()[child.pid][-1] == "labvm-ps-marker"
            assert platforms.parent_pid(child.pid) == os.getpid()
    finally:
        child.kill()
        child.wait()


def stand_in(folder: Path, name: str, script: str) -> Path:
    """A program Linux lacks: a shell script that records how it was called."""
    path = folder / name
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)
    return path


@pytest.fixture
def bin_dir(tmp_path, monkeypatch):
    folder = tmp_path / "bin"
    folder.mkdir()
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}/usr/bin:/bin")
    return folder


def test_wsl_opens_the_page_in_windows_browser(bin_dir, tmp_path):
    record = tmp_path / "called"
    stand_in(bin_dir, "explorer.exe", f'printf "%s\\n" "$@" > {record}\nexit 1\n')  # it answers 1 when it worked
    asked = tmp_path / "wslpath-asked"
    stand_in(
        bin_dir,
        "wslpath",
        f'printf "%s\\n" "$@" > {asked}\ncat <<"EOF"\n\\\\wsl.localhost\\Debian\\open-vm.html\nEOF\n',
    )
    page = tmp_path / "open-vm.html"
    with platforms.simulating("wsl"):
        assert platforms.has_browser()
        platforms.open_browser(page.as_uri())
        assert asked.read_text().splitlines() == ["-w", str(page)]
        assert record.read_text().strip() == "\\\\wsl.localhost\\Debian\\open-vm.html"
        platforms.open_browser("http://127.0.0.1:8888/lab")
        assert record.read_text().strip() == "http://127.0.0.1:8888/lab"
        stand_in(bin_dir, "wslview", f'printf "wslview %s\\n" "$@" > {record}\n')
        platforms.open_browser("http://127.0.0.1:8888/lab")
        assert record.read_text().strip() == "wslview http://127.0.0.1:8888/lab"
    assert platforms.browser_command("http://127.0.0.1:8888/lab") is None  # Linux: webbrowser decides


def test_wsl_is_detected_from_its_kernel_or_its_variable(monkeypatch):
    detect = platforms._detected.__wrapped__
    monkeypatch.delenv("WSL_DISTRO_NAME", raising=False)
    assert detect() == ("wsl" if "microsoft" in platforms._proc_version().lower() else "linux")
    monkeypatch.setenv("WSL_DISTRO_NAME", "Ubuntu")
    assert detect() == "wsl"


def test_windows_notifies_through_powershell_with_the_texts_out_of_its_script(bin_dir, tmp_path, monkeypatch):
    record = tmp_path / "toast"
    stand_in(
        bin_dir,
        "powershell.exe",
        f'printf "%s|%s|%s\\n" "$LABVM_NOTIFY_TITLE" "$LABVM_NOTIFY_MESSAGE" "$*" > {record}\n',
    )
    hostile = "'); Remove-Item -Recurse C:\\ #"
    flags, run = [], subprocess.run

    def run_as_windows_would(*args, creationflags=0, **kwargs):  # Linux's Popen refuses the flag itself
        flags.append(creationflags)
        return run(*args, **kwargs)

    monkeypatch.setattr(subprocess, "run", run_as_windows_would)
    with platforms.simulating("windows"):
        platforms.notify("labvm: vm", hostile)
    assert flags == [0x08000000]  # CREATE_NO_WINDOW: the detached keeper's toast flashes no console up
    title, message, command = record.read_text().rstrip("\n").split("|", 2)
    assert (title, message) == ("labvm: vm", hostile)
    assert hostile not in command and "-NoProfile" in command
    (bin_dir / "powershell.exe").unlink()
    with platforms.simulating("windows"):
        platforms.notify("labvm: vm", "no PowerShell: nothing, and no failure")


def test_macos_notifies_through_osascript_with_the_texts_as_arguments(bin_dir, tmp_path):
    record = tmp_path / "said"
    stand_in(bin_dir, "osascript", f'printf "%s\\n" "$@" > {record}\n')
    with platforms.simulating("macos"):
        platforms.notify("labvm: vm", 'quote " and \\ stay text')
    assert record.read_text().splitlines()[-2:] == ["labvm: vm", 'quote " and \\ stay text']


# What a VM may put in an autostop reason, as markup: a link, bold, an image, entities, a comment.
MARKUP = [
    '<a href="https://evil.example/login">sign in again</a>',
    "<b>1</b> & 2 &amp; 3 &#60;",
    "]]>",
    "<img src='file:///etc/passwd' alt='x'/>",
    "<!-- hidden -->",
    "</i>",
    "<u",
]


def as_markup(body: str) -> str:
    """The text a notification server that reads the body as markup shows (the markup is XML-based,
    https://specifications.freedesktop.org/notification/latest/markup.html): no element may be in it."""
    root = ElementTree.fromstring(f"<markup>{body}</markup>")
    assert [element.tag for element in root.iter()] == ["markup"], body  # nothing bold, linked or shown
    return "".join(root.itertext())


def recorded_argv(record: Path) -> list[str]:
    return record.read_text().split("\0")[:-1]


@pytest.mark.parametrize("where", ["linux", "macos", "windows"])
def test_a_vm_s_words_in_a_notification_are_shown_as_text(bin_dir, tmp_path, monkeypatch, where):
    """notify-send's body is markup: escaped there; osascript's argv and the toast's XML text nodes take text."""
    record = tmp_path / "argv"
    tool = {"linux": "notify-send", "macos": "osascript", "windows": "powershell.exe"}[where]
    stand_in(bin_dir, tool, f'printf "%s\\0" "$@" "$LABVM_NOTIFY_TITLE" "$LABVM_NOTIFY_MESSAGE" > {record}\n')
    run = subprocess.run
    monkeypatch.setattr(subprocess, "run", lambda *args, creationflags=0, **kwargs: run(*args, **kwargs))
    for said in MARKUP:
        message = f"stopped by its autostop (idle 30m of 30m: last in use for {said}); http://127.0.0.1:8888/"
        with platforms.simulating(where):
            platforms.notify("labvm: vm", message)
        *argv, title, text = recorded_argv(record)  # the last two: the toast's environment
        if where == "linux":
            assert argv == ["labvm: vm", argv[1]] and as_markup(argv[1]) == message
        elif where == "macos":  # the run handler's argv: text as it is
            assert argv[-2:] == ["labvm: vm", message]
        else:  # the environment, which the toast puts in XML text nodes
            assert (title, text) == ("labvm: vm", message)


@settings(max_examples=200, deadline=None)
@given(said=st.text(st.characters(blacklist_categories=("Cc", "Cs", "Cn"))))
def test_any_text_a_vm_says_is_one_text_node_for_notify_send(said):
    with (
        mock.patch.object(shutil, "which", lambda name: f"/usr/bin/{name}" if name == "notify-send" else None),
        platforms.simulating("linux"),
    ):
        (command, title, body), _ = platforms.notification_command("labvm: vm", said)
    assert (command, title, as_markup(body)) == ("notify-send", "labvm: vm", said)


def test_private_key_permissions_windows_acl_and_posix_mode(bin_dir, tmp_path, monkeypatch):
    key = tmp_path / "id_ed25519"
    key.write_text("secret")
    key.chmod(0o644)
    platforms.make_private(key)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600

    record = tmp_path / "icacls"
    stand_in(bin_dir, "icacls", f'printf "%s\\n" "$@" > {record}\n')
    monkeypatch.setenv("USERNAME", "ada")
    with platforms.simulating("windows"):
        platforms.make_private(key)
        assert platforms.owned_mode(key) is None  # Windows: the ACL decides, not a mode
    assert record.read_text().splitlines() == [str(key), "/inheritance:r", "/grant:r", "ada:F"]
    stand_in(bin_dir, "icacls", 'echo "Access is denied." >&2\nexit 5\n')
    with platforms.simulating("windows"), pytest.raises(LabvmError) as refused:
        platforms.make_private(key)
    assert str(refused.value).startswith(f"{key}: icacls refused (Access is denied.)")
    assert "\n" not in str(refused.value)


# -- inv check's laptop lines ---------------------------------------------------------------


def test_openssh_line_reads_each_platforms_version():
    line = laptop.openssh_line("ssh", "OpenSSH_for_Windows_8.1p1, LibreSSL 3.0.2", "add OpenSSH Client")
    assert line.ok and line.detail.startswith("OpenSSH_for_Windows_8.1p1")
    old = laptop.openssh_line("ssh", "OpenSSH_7.4p1, OpenSSL 1.0.2k-fips", "install it")
    assert not old.ok and "labvm needs 7.6+" in old.detail and old.detail.endswith("install it")
    here = laptop.openssh()
    assert here.ok and here.detail.startswith("OpenSSH_"), here.detail
    assert "; ControlMaster: while the tunnel is up, a sync rides its login; " in here.detail
    assert here.detail.endswith("(0700): no other user of this machine can reach it")
    with platforms.simulating("windows"):
        assert laptop.sharing() == "no ControlMaster in Windows' OpenSSH: each sync logs in"
        assert laptop.forwarding().startswith(
            "Windows' OpenSSH forwards no unix socket: the tunnel's ssh listens "
            "on a loopback port, and each connection is checked"
        )


def test_rsync_line_names_the_rsync_or_the_fallback(tmp_path, monkeypatch):
    from labvm import sync

    sync.local_rsync.cache_clear()
    assert laptop.rsync().detail.startswith(f"{sync.shutil.which('rsync')}, rsync 3.")
    monkeypatch.setenv("PATH", str(tmp_path))
    sync.local_rsync.cache_clear()
    try:
        assert laptop.rsync().detail.startswith("none: the built-in fallback")
        stand_in(tmp_path, "rsync", 'echo "openrsync: protocol version 29"\necho "rsync version 2.6.9 compatible"\n')
        sync.local_rsync.cache_clear()
        assert "openrsync: the built-in fallback is used (`brew install rsync`" in laptop.rsync().detail
        stand_in(tmp_path, "rsync", 'echo "rsync  version 2.6.9  protocol version 29"\n')
        sync.local_rsync.cache_clear()
        assert "rsync 2.6.9: the built-in fallback is used" in laptop.rsync().detail
    finally:
        sync.local_rsync.cache_clear()


def test_wsl_localhost_line_says_when_windows_cannot_reach_the_tunnel():
    off = laptop.wsl_localhost("[wsl2]\nlocalhostForwarding=false\n")
    assert not off.ok and "set it to true under [wsl2], then `wsl --shutdown`" in off.detail
    assert laptop.wsl_localhost("[wsl2]\nnetworkingMode=mirrored\nlocalhostForwarding=false\n").ok
    assert laptop.wsl_localhost(None).ok and "is on" in laptop.wsl_localhost(None).detail


def test_notification_and_keeper_lines(bin_dir):
    assert laptop.notifications().detail.startswith("none here")
    stand_in(bin_dir, "notify-send", "exit 0\n")
    assert laptop.notifications().detail == "through notify-send"
    keeper = laptop.keeper_detach()
    assert keeper.ok and "a new session (setsid)" in keeper.detail


def test_inv_check_shows_the_laptop_lines(lab, user, sshd):
    from realhost import ssh_profile

    lab.write_hosts({"vm": ssh_profile(user, sshd)})
    result = lab.inv("check", "--host", "vm")
    names = [line.split()[1] for line in result.stdout.splitlines() if line.startswith(("ok", "FAIL"))]
    assert names[:6] == ["identity", "laptop", "openssh", "rsync", "notifications", "keeper"]
    assert names[-1] == "ssh"  # "ssh login" stays last


def test_python_dash_m_labvm_runs_the_tasks_without_a_shell_script(tmp_path):
    listed = subprocess.run(
        [sys.executable, "-m", "labvm", "--list"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert listed.returncode == 0, listed.stderr
    tasks = {line.split()[0] for line in listed.stdout.splitlines() if line.startswith("  ")}
    assert {"up", "sync", "check", "down"} <= tasks
    assert (
        "python -m labvm"
        in subprocess.run(
            [sys.executable, "-m", "labvm", "--help"], capture_output=True, text=True, cwd=tmp_path, timeout=120
        ).stdout
    )
