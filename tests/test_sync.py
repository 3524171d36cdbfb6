"""`inv sync` against a real sshd and rsync: notebooks come home, nothing local is lost."""

import os
import queue
import shutil
import signal
import subprocess
import threading
import time

import pytest

from realhost import HOSTILE_NAMES, INV, RAW_CONTROL, Sshd, names_in, one_line, path_without, put, put_raw, ssh_profile


def test_pull_brings_notebooks_home_and_never_deletes(lab, user, sshd, workspace):
    lab.write_hosts({"vm": ssh_profile(user, sshd)})
    put(user, "analysis.ipynb", '{"cells": []}')
    put(user, "lib/helpers.py", "def f(): pass\n")
    put(user, "README.md", "# notes\n")
    put(user, "data/big.csv", "1,2,3\n")  # not a sync pattern
    put(user, ".ipynb_checkpoints/analysis-checkpoint.ipynb", "{}")
    home = lab.directory / "notebooks" / "vm"

    first = lab.inv("sync", "--host", "vm")
    assert "3 file(s) brought home" in first.output
    assert (home / "analysis.ipynb").read_text() == '{"cells": []}'
    assert (home / "lib" / "helpers.py").exists() and (home / "README.md").exists()
    assert not (home / "data").exists() and not (home / ".ipynb_checkpoints").exists()

    (workspace / "analysis.ipynb").unlink()  # deleted on the VM
    put(user, "second.ipynb", "{}")
    again = lab.inv("sync", "--host", "vm")
    assert "1 file(s) brought home, 2 unchanged" in again.output
    assert (home / "analysis.ipynb").read_text() == '{"cells": []}'  # still here
    assert (home / "second.ipynb").exists()


def test_while_the_tunnel_is_up_sync_rides_its_login(lab, user, sshd, workspace):
    """The keeper's ssh shares its login (ControlMaster): a sync makes no handshake of its own, so it
    works even while the VM refuses every new login; once the tunnel is closed it logs in itself."""
    lab.write_hosts({"vm": ssh_profile(user, sshd)})
    put(user, "analysis.ipynb", '{"cells": []}')
    home = lab.directory / "notebooks" / "vm"
    lab.inv("tunnel", "--host", "vm")
    keys = user.home / ".ssh" / "authorized_keys"
    allowed = keys.read_text()
    try:
        keys.write_text("")  # from now on the VM accepts no new login
        ridden = lab.inv("sync", "--host", "vm")
        assert "1 file(s) brought home" in ridden.output
        assert (home / "analysis.ipynb").read_text() == '{"cells": []}'
        lab.inv("tunnel", "--host", "vm", "--stop")
        alone = lab.inv("sync", "--host", "vm", check=False)  # the control: a login of its own is refused
        assert alone.returncode == 1 and "cannot reach labvm-vm" in alone.output
    finally:
        keys.write_text(allowed)
    put(user, "second.ipynb", "{}")
    assert "1 file(s) brought home, 1 unchanged" in lab.inv("sync", "--host", "vm").output


def test_a_refused_login_is_said_as_one_even_when_rsync_sees_the_pipe_close_first(lab, user, sshd, tmp_path):
    """rsync exits 12 ("protocol data stream"), not ssh's 255, when it reads the closed pipe before it
    reaps ssh (2 runs in 100 here): the user still reads that the host was not reached.  This ssh
    closes its pipe before it exits, so rsync always sees that order."""
    stand_in = tmp_path / "bin"
    stand_in.mkdir()
    (stand_in / "ssh").write_text(
        "#!/bin/sh\n"
        f'for arg; do case $arg in -V|-G) exec {shutil.which("ssh")} "$@";; esac; done\n'
        "exec >&- <&-\n"
        "echo 'user@127.0.0.1: Permission denied (publickey).' >&2\n"
        "sleep 0.3\n"
        "exit 255\n"
    )
    (stand_in / "ssh").chmod(0o755)
    lab.extra_env["PATH"] = f"{stand_in}:{os.environ['PATH']}"
    lab.write_hosts({"vm": ssh_profile(user, sshd)})
    refused = lab.inv("sync", "--host", "vm", check=False)
    assert refused.returncode == 1 and "cannot reach labvm-vm" in refused.output, refused.output
    assert "connection to the host broke" not in refused.output


def test_local_edit_is_never_overwritten_silently(lab, user, sshd, workspace):
    lab.write_hosts({"vm": ssh_profile(user, sshd)})
    put(user, "model.ipynb", "version 1")
    put(user, "plot.ipynb", "plot 1")
    lab.inv("sync", "--host", "vm")
    home = lab.directory / "notebooks" / "vm"

    # Both sides changed model.ipynb; only this machine changed plot.ipynb.
    (home / "model.ipynb").write_text("my local edit")
    (home / "plot.ipynb").write_text("plot edited here")
    put(user, "model.ipynb", "version 2 from the VM")
    later = (home / "model.ipynb").stat().st_mtime + 60  # rsync compares whole seconds: a later one
    os.utime(workspace / "model.ipynb", (later, later))
    result = lab.inv("sync", "--host", "vm")

    assert (home / "model.ipynb").read_text() == "version 2 from the VM"
    backups = list(home.glob("model.local-*.ipynb"))
    assert [b.read_text() for b in backups] == ["my local edit"]
    assert f"your local edit of model.ipynb was kept as {backups[0].name}" in result.output
    assert (home / "plot.ipynb").read_text() == "plot edited here"
    assert "changed here only (kept; --push sends them): plot.ipynb" in result.output

    # Syncing again changes nothing and reports nothing new.
    quiet = lab.inv("sync", "--host", "vm")
    assert "0 file(s) brought home" in quiet.output and "kept as" not in quiet.output
    assert (home / "plot.ipynb").read_text() == "plot edited here"

    pushed = lab.inv("sync", "--host", "vm", "--push")
    assert "file(s) sent to the host" in pushed.output
    assert (workspace / "plot.ipynb").read_text() == "plot edited here"
    assert not list(workspace.glob("*.local-*"))  # backups stay home
    assert "changed here only" not in lab.inv("sync", "--host", "vm").output


def test_a_local_file_the_vm_never_had_is_kept_when_one_appears_there(lab, user, sshd, workspace):
    lab.write_hosts({"vm": ssh_profile(user, sshd)})
    home = lab.directory / "notebooks" / "vm"
    home.mkdir(parents=True)
    (home / "draft.ipynb").write_text("written here first")
    lab.inv("sync", "--host", "vm")
    put(user, "draft.ipynb", "a different draft on the VM")
    result = lab.inv("sync", "--host", "vm")
    backups = list(home.glob("draft.local-*.ipynb"))
    assert [b.read_text() for b in backups] == ["written here first"]
    assert "your local edit of draft.ipynb was kept" in result.output


class Watch:
    """`inv sync --watch` in the background, its output read line by line."""

    def __init__(self, lab, *args):
        self.process = subprocess.Popen(
            [*INV, "sync", "--watch", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**lab.env, "PYTHONFAULTHANDLER": "1"},  # a hang shows where: see interrupt()
            cwd=lab.directory,
            stdin=subprocess.DEVNULL,
        )
        self.lines = queue.Queue()
        self.seen = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.process.stdout:
            self.lines.put(line)

    def wait_for(self, text: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                continue
            self.seen.append(line)
            if text in line:
                return line
        raise AssertionError(f"no {text!r} within {timeout}s; output so far:\n{''.join(self.seen)}")

    def interrupt(self) -> str:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:  # every thread's stack (faulthandler), its children, then fail
            children = subprocess.run(
                ["ps", "-o", "pid,stat,etime,args", "--ppid", str(self.process.pid)],
                capture_output=True,
                text=True,
                check=False,
            ).stdout
            self.process.send_signal(signal.SIGABRT)
            self.process.wait(10)
            raise AssertionError(f"still running 30s after Ctrl-C; children:\n{children}{self._rest()}") from None
        return self._rest()

    def _rest(self) -> str:
        self.reader.join(10)  # until it has read the pipe to its end
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        return "".join(self.seen)


def test_watch_keeps_going_while_the_vm_goes_away_and_comes_back(lab, user, workspace, tmp_path):
    vm = Sshd(tmp_path / "vm")
    lab.write_hosts({"vm": ssh_profile(user, vm)})
    home = lab.directory / "notebooks" / "vm"
    put(user, "one.ipynb", "1")
    watch = Watch(lab, "--host", "vm", "--interval", "1")
    try:
        watch.wait_for("1 file(s) brought home")
        put(user, "two.ipynb", "2")
        watch.wait_for("1 file(s) brought home")
        assert (home / "two.ipynb").read_text() == "2"

        vm.stop()  # the VM goes away
        gone = watch.wait_for("cannot reach labvm-vm")
        assert "your local copies" in gone and "trying again in 1s" in gone
        assert (home / "one.ipynb").read_text() == "1" and (home / "two.ipynb").read_text() == "2"

        vm.start()  # and comes back
        put(user, "three.ipynb", "3")
        watch.wait_for("1 file(s) brought home")
        output = watch.interrupt()
    finally:
        if watch.process.poll() is None:
            watch.process.kill()
        vm.stop()
    assert watch.process.returncode == 0, output
    assert "sync: stopped; your notebooks are in" in output and "Traceback" not in output
    assert sorted(p.name for p in home.glob("*.ipynb")) == ["one.ipynb", "three.ipynb", "two.ipynb"]


def test_down_syncs_first_and_still_does_the_rest_when_it_cannot(lab, user, workspace, tmp_path):
    vm = Sshd(tmp_path / "vm")
    lab.write_hosts({"vm": ssh_profile(user, vm)})
    put(user, "result.ipynb", "done")
    try:
        down = lab.inv("down", "--host", "vm")
        assert "1 file(s) brought home" in down.output
        assert down.output.index("brought home") < down.output.index("notebook:")
        assert (lab.directory / "notebooks" / "vm" / "result.ipynb").read_text() == "done"
        assert "brought home" not in lab.inv("down", "--host", "vm", "--no-sync").output
    finally:
        vm.stop()
    failed = lab.inv("down", "--host", "vm", check=False)
    one_line(
        failed,
        "down: the sync and stopping Jupyter failed (said above); the rest was done",
        "`inv sync --host vm` brings the notebooks home once the host answers",
    )
    assert "the sync failed: sync: cannot reach labvm-vm" in failed.output
    assert "tunnel: none was open" in failed.output  # the step after the failed ones ran
    assert (lab.directory / "notebooks" / "vm" / "result.ipynb").read_text() == "done"


def test_bad_sync_patterns_name_the_key(lab, user, sshd):
    lab.write_hosts({"vm": ssh_profile(user, sshd, sync="*.ipynb")})
    result = lab.inv("sync", "--host", "vm", check=False)
    assert result.returncode == 1
    assert "profiles.vm.sync: must be a list of strings" in result.output


def test_hostile_file_names_come_home_intact_and_are_shown_escaped(lab, user, sshd, workspace):
    lab.write_hosts({"vm": ssh_profile(user, sshd)})
    for name, _ in HOSTILE_NAMES:
        put_raw(user, name, name.hex())
    home = lab.directory / "notebooks" / "vm"

    first = lab.inv("sync", "--host", "vm")
    assert f"{len(HOSTILE_NAMES)} file(s) brought home, 0 unchanged" in first.output
    assert names_in(home) == {name for name, _ in HOSTILE_NAMES}  # no name split, none invented
    for name, _ in HOSTILE_NAMES:
        assert open(os.path.join(bytes(home), name)).read() == name.hex()
    again = lab.inv("sync", "--host", "vm")
    assert f"0 file(s) brought home, {len(HOSTILE_NAMES)} unchanged" in again.output

    # Every file edited on both sides: each local edit kept aside, each named as clean() shows it.
    later = time.time() + 60
    for name, _ in HOSTILE_NAMES:
        with open(os.path.join(bytes(home), name), "w") as file:
            file.write("edited here")
        os.utime(put_raw(user, name, "edited on the VM"), (later, later))
    conflict = lab.inv("sync", "--host", "vm")
    for name, shown in HOSTILE_NAMES:
        assert f"your local edit of {shown} was kept as " in conflict.output
        assert open(os.path.join(bytes(home), name)).read() == "edited on the VM"
    assert len(names_in(home)) == 2 * len(HOSTILE_NAMES)
    for output in (first.output, again.output, conflict.output):
        assert not RAW_CONTROL.search(output), output


def test_hostile_file_names_go_back_with_push_and_down_still_stops(lab, user, sshd, workspace):
    lab.write_hosts({"vm": ssh_profile(user, sshd)})
    for name, _ in HOSTILE_NAMES:
        put_raw(user, name, "from the VM")
    home = lab.directory / "notebooks" / "vm"
    lab.inv("sync", "--host", "vm")
    for name, _ in HOSTILE_NAMES:
        with open(os.path.join(bytes(home), name), "w") as file:
            file.write("edited here")

    edited = lab.inv("sync", "--host", "vm")
    assert "changed here only (kept; --push sends them): " in edited.output
    pushed = lab.inv("sync", "--host", "vm", "--push")
    assert f"{len(HOSTILE_NAMES)} file(s) sent to the host" in pushed.output
    assert names_in(workspace) == {name for name, _ in HOSTILE_NAMES}
    for name, _ in HOSTILE_NAMES:
        assert open(os.path.join(bytes(workspace), name)).read() == "edited here"
    assert "changed here only" not in lab.inv("sync", "--host", "vm").output

    # `down` meets a file edited on both sides: it keeps the local edit aside and still stops.
    name, shown = HOSTILE_NAMES[0]
    with open(os.path.join(bytes(home), name), "w") as file:
        file.write("edited here again")
    later = time.time() + 60
    os.utime(put_raw(user, name, "edited on the VM again"), (later, later))
    down = lab.inv("down", "--host", "vm")
    assert "1 file(s) brought home" in down.output and f"your local edit of {shown} was kept" in down.output
    assert down.output.index("brought home") < down.output.index("notebook:")
    for output in (edited.output, pushed.output, down.output):
        assert not RAW_CONTROL.search(output), output


def test_a_name_that_looks_like_rsyncs_skip_line_is_not_misread(lab, user, sshd, workspace):
    lab.write_hosts({"vm": ssh_profile(user, sshd, sync=["*"], sync_max_file="1K")})
    put_raw(user, b"notes is over max-size", "small")
    put_raw(user, b">f+++++++++|5|invented.ipynb", "x" * 4096)  # over max-size: rsync names it
    home = lab.directory / "notebooks" / "vm"
    result = lab.inv("sync", "--host", "vm")
    assert names_in(home) == {b"notes is over max-size"}
    assert "1 file(s) brought home" in result.output
    assert "over sync_max_file, left where they are: >f+++++++++|5|invented.ipynb" in result.output


# -- which rsync labvm trusts with a VM's data (sync.SAFE_RSYNC) --------------------------------------


def rsync_stand_in(folder, version_line: str):
    """An rsync that only says its version; any other call leaves a mark (labvm must not run it)."""
    folder.mkdir(exist_ok=True)
    script = folder / "rsync"
    script.write_text(
        f'#!/bin/sh\n[ "$1" = --version ] && {{ echo "{version_line}"; exit 0; }}\ntouch {folder}/ran; exit 99\n'
    )
    script.chmod(0o755)
    return folder


@pytest.mark.parametrize(
    "version_line, usable",
    [
        ("rsync  version 3.2.7  protocol version 31", False),  # Debian 12, Ubuntu 24.04 (2024 fixes backported)
        ("rsync  version 3.4.1  protocol version 32", False),
        ("rsync  version v3.4.4  protocol version 32", False),
        ("rsync  version 3.5.0  protocol version 32", True),
        ("rsync  version 3.10.2  protocol version 33", True),
    ],
)
def test_an_rsync_older_than_the_fixes_for_a_hostile_peer_is_left_alone(tmp_path, monkeypatch, version_line, usable):
    from labvm import sync

    monkeypatch.setenv("PATH", str(rsync_stand_in(tmp_path / "bin", version_line)))
    sync.local_rsync.cache_clear()
    try:
        found = sync.local_rsync()
    finally:
        sync.local_rsync.cache_clear()
    assert found.usable is usable
    if not usable:
        assert found.summary() == (
            f"{tmp_path}/bin/rsync is rsync {version_line.split()[2].lstrip('v')}: the built-in "
            f"fallback is used (rsync before 3.5.0 lacks fixes for what a VM's rsync can send "
            f"it: CVE-2024-12086, CVE-2024-12087, CVE-2026-43620, CVE-2026-70458, ...; "
            f"rsync 3.5.0+ is used)"
        )


def test_with_an_old_rsync_the_fallback_syncs_says_so_once_and_inv_check_says_why(lab, user, sshd, workspace, tmp_path):
    stand_in = rsync_stand_in(tmp_path / "old", "rsync  version 3.4.1  protocol version 32")
    lab.extra_env["PATH"] = f"{stand_in}:{path_without('rsync', tmp_path)}"
    lab.write_hosts({"vm": ssh_profile(user, sshd)})
    put(user, "analysis.ipynb", "{}")
    put(user, "notes.md", "# notes")
    result = lab.inv("sync", "--host", "vm")
    assert "2 file(s) brought home" in result.output
    assert result.output.count("rsync 3.4.1: the built-in fallback is used") == 1
    assert (lab.directory / "notebooks" / "vm" / "analysis.ipynb").read_text() == "{}"
    assert not (stand_in / "ran").exists()  # asked its version, never run on the VM's data
    check = lab.inv("check", "--host", "vm", check=False)
    assert f"{stand_in}/rsync is rsync 3.4.1: the built-in fallback is used (rsync before 3.5.0 lacks" in check.output


def test_on_windows_a_name_that_is_not_utf8_is_not_a_name_there(tmp_path):
    from labvm import platforms
    from labvm.sync_rules import safe_relative_path

    undecodable = b"bad\xff.ipynb".decode("utf-8", "surrogateescape")
    assert safe_relative_path(tmp_path, undecodable) == tmp_path / undecodable  # Linux keeps the bytes
    with platforms.simulating("windows"):
        assert safe_relative_path(tmp_path, undecodable) is None
        assert safe_relative_path(tmp_path, "caf\u00e9.ipynb") == tmp_path / "caf\u00e9.ipynb"


@pytest.mark.parametrize("rsync", [True, False], ids=["rsync", "fallback"])
def test_files_no_pattern_names_are_counted_with_the_patterns_that_would_take_them(
    lab, user, sshd, workspace, tmp_path, rsync
):
    """Issue 28, C12: a pull left data files on the host without a word; now one line says how many,
    which patterns would take them and where to add them (the largest, over sync_max_file, counted too),
    with rsync and with the fallback of a laptop without it."""
    if not rsync:
        lab.extra_env["PATH"] = path_without("rsync", tmp_path)
    lab.write_hosts({"vm": ssh_profile(user, sshd, sync_max_file="1K")})
    put(user, "analysis.ipynb", "{}")
    put(user, "data/a.csv", "1,2\n")
    put(user, "data/b.csv", "3,4\n")
    put(user, "data/big.parquet", "x" * 4096)
    put(user, "Makefile", "all:\n")
    put(user, ".hidden.csv", "never counted: dot-files never travel\n")
    result = lab.inv("sync", "--host", "vm")
    assert "1 file(s) brought home" in result.output
    assert (
        f"sync: 4 file(s) on the host not synced (*.csv, *.parquet, Makefile): add them to {lab.hosts}: "
        "profiles.vm.sync to bring them home" in result.output.splitlines()
    ), result.output
    assert "over sync_max_file" not in result.output  # not a notebook: left for its pattern, not its size
    home = lab.directory / "notebooks" / "vm"
    assert (home / "analysis.ipynb").exists() and not (home / "data").exists() and not (home / "Makefile").exists()
