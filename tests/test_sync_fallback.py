"""`inv sync` on a laptop without rsync (as on every Windows PC): the built-in fallback, run for
real against the test sshd with rsync hidden from the laptop's PATH, keeps rsync's promises."""

import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from realhost import HOSTILE_NAMES, RAW_CONTROL, Sshd, names_in, path_without, put, put_raw, ssh_profile


@pytest.fixture
def laptop(lab, tmp_path):
    """The lab's laptop with no rsync on its PATH (ssh and the rest still there)."""
    lab.extra_env["PATH"] = path_without("rsync", tmp_path)
    return lab


def connections(sshd) -> int:
    return sshd.log.read_text().count("Accepted publickey")


def test_without_rsync_notebooks_come_home_over_one_connection_and_nothing_is_deleted(laptop, user, sshd, workspace):
    lab = laptop
    lab.write_hosts({"vm": ssh_profile(user, sshd)})
    put(user, "analysis.ipynb", '{"cells": []}')
    put(user, "lib/helpers.py", "def f(): pass\n")
    put(user, "data/big.csv", "1,2,3\n")  # not a sync pattern
    put(user, ".ipynb_checkpoints/analysis-checkpoint.ipynb", "{}")
    put(user, ".secret.ipynb", "{}")  # dot-files never travel
    put(user, "node_modules/pkg/index.py", "")
    put(user, "tasks.py", "raise SystemExit('a VM wrote this')\n")  # invoke would run it here
    home = lab.directory / "notebooks" / "vm"
    lab.inv("keys", "--host", "vm")

    before = connections(sshd)
    first = lab.inv("sync", "--host", "vm")
    assert connections(sshd) - before == 1
    assert "2 file(s) brought home, 0 unchanged" in first.output
    assert "left on the host, as invoke would run them from this folder: tasks.py" in first.output
    assert (home / "analysis.ipynb").read_text() == '{"cells": []}'
    assert (home / "lib" / "helpers.py").read_text() == "def f(): pass\n"
    assert sorted(p.name for p in home.rglob("*") if not p.name.startswith(".labvm-sync")) == [
        "analysis.ipynb",
        "helpers.py",
        "lib",
    ]
    # Times come with the files, so the next sync finds them unchanged.
    assert (home / "analysis.ipynb").stat().st_mtime_ns == (workspace / "analysis.ipynb").stat().st_mtime_ns

    (workspace / "analysis.ipynb").unlink()  # deleted on the VM
    put(user, "second.ipynb", "{}")
    before = connections(sshd)
    again = lab.inv("sync", "--host", "vm")
    assert connections(sshd) - before == 1
    assert "1 file(s) brought home, 1 unchanged" in again.output
    assert (home / "analysis.ipynb").read_text() == '{"cells": []}'  # still here
    assert (home / "second.ipynb").read_text() == "{}"

    (home / "second.ipynb").unlink()  # deleted here: --push deletes nothing there
    lab.inv("sync", "--host", "vm", "--push")
    assert (workspace / "second.ipynb").read_text() == "{}"


def test_without_rsync_edits_on_both_sides_keep_the_local_one_aside(laptop, user, sshd, workspace):
    lab = laptop
    lab.write_hosts({"vm": ssh_profile(user, sshd)})
    put(user, "model.ipynb", "version 1")
    put(user, "plot.ipynb", "plot 1")
    lab.inv("sync", "--host", "vm")
    home = lab.directory / "notebooks" / "vm"

    (home / "model.ipynb").write_text("my local edit")
    (home / "plot.ipynb").write_text("plot edited here")
    put(user, "model.ipynb", "version 2 from the VM")
    later = (home / "model.ipynb").stat().st_mtime + 60
    os.utime(workspace / "model.ipynb", (later, later))
    result = lab.inv("sync", "--host", "vm")

    assert (home / "model.ipynb").read_text() == "version 2 from the VM"
    backups = list(home.glob("model.local-*.ipynb"))
    assert [b.read_text() for b in backups] == ["my local edit"]
    assert f"your local edit of model.ipynb was kept as {backups[0].name}" in result.output
    assert (home / "plot.ipynb").read_text() == "plot edited here"
    assert "changed here only (kept; --push sends them): plot.ipynb" in result.output

    quiet = lab.inv("sync", "--host", "vm")
    assert "0 file(s) brought home" in quiet.output and "kept as" not in quiet.output

    pushed = lab.inv("sync", "--host", "vm", "--push")
    assert "1 file(s) sent to the host" in pushed.output
    assert (workspace / "plot.ipynb").read_text() == "plot edited here"
    assert not list(workspace.glob("*.local-*"))  # backups stay home
    assert "changed here only" not in lab.inv("sync", "--host", "vm").output

    # A file newer on the host is left alone there by --push (as rsync --update does).
    (home / "model.ipynb").write_text("older edit here")
    os.utime(home / "model.ipynb", (later - 3600, later - 3600))
    lab.inv("sync", "--host", "vm", "--push")
    assert (workspace / "model.ipynb").read_text() == "version 2 from the VM"


def test_without_rsync_a_local_file_the_vm_never_had_is_kept(laptop, user, sshd, workspace):
    lab = laptop
    lab.write_hosts({"vm": ssh_profile(user, sshd)})
    home = lab.directory / "notebooks" / "vm"
    home.mkdir(parents=True)
    (home / "draft.ipynb").write_text("written here first")
    lab.inv("sync", "--host", "vm")
    put(user, "draft.ipynb", "a different draft on the VM")
    result = lab.inv("sync", "--host", "vm")
    assert [b.read_text() for b in home.glob("draft.local-*.ipynb")] == ["written here first"]
    assert "your local edit of draft.ipynb was kept" in result.output
    assert (home / "draft.ipynb").read_text() == "a different draft on the VM"


def test_without_rsync_hostile_names_come_home_intact_and_go_back(laptop, user, sshd, workspace):
    lab = laptop
    lab.write_hosts({"vm": ssh_profile(user, sshd)})
    for name, _ in HOSTILE_NAMES:
        put_raw(user, name, name.hex())
    home = lab.directory / "notebooks" / "vm"

    first = lab.inv("sync", "--host", "vm")
    assert f"{len(HOSTILE_NAMES)} file(s) brought home, 0 unchanged" in first.output
    assert names_in(home) == {name for name, _ in HOSTILE_NAMES}
    for name, _ in HOSTILE_NAMES:
        assert open(os.path.join(bytes(home), name)).read() == name.hex()

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

    for name, _ in HOSTILE_NAMES:  # newer than the VM's copies (--push leaves a newer one there alone)
        with open(os.path.join(bytes(home), name), "w") as file:
            file.write("pushed from here")
        os.utime(os.path.join(bytes(home), name), (later + 60, later + 60))
    pushed = lab.inv("sync", "--host", "vm", "--push")
    assert f"{len(HOSTILE_NAMES)} file(s) sent to the host" in pushed.output
    assert names_in(workspace) == {name for name, _ in HOSTILE_NAMES}  # no backup went, none invented
    for name, _ in HOSTILE_NAMES:
        assert open(os.path.join(bytes(workspace), name)).read() == "pushed from here"
    for output in (first.output, conflict.output, pushed.output):
        assert not RAW_CONTROL.search(output), output


def test_without_rsync_push_makes_the_workspace_on_a_new_vm(laptop, user, sshd, workspace):
    lab = laptop
    lab.write_hosts({"vm": ssh_profile(user, sshd)})
    home = lab.directory / "notebooks" / "vm"
    nothing = lab.inv("sync", "--host", "vm")
    assert "is not on the host yet; nothing to bring home" in nothing.output
    (home / "sub").mkdir(parents=True)
    (home / "sub" / "first.ipynb").write_text("from the laptop")
    pushed = lab.inv("sync", "--host", "vm", "--push")
    assert "1 file(s) sent to the host" in pushed.output
    assert (workspace / "sub" / "first.ipynb").read_text() == "from the laptop"
    assert (workspace / "sub" / "first.ipynb").stat().st_uid == user.uid


def test_without_rsync_the_size_limits_hold(laptop, user, sshd, workspace):
    lab = laptop
    lab.write_hosts({"vm": ssh_profile(user, sshd, sync=["*"], sync_max_file="1K", sync_max_total="3K")})
    put(user, "small.txt", "small")
    put(user, "huge.bin", "x" * 4096)
    home = lab.directory / "notebooks" / "vm"
    result = lab.inv("sync", "--host", "vm")
    assert "1 file(s) brought home" in result.output
    assert "over sync_max_file, left where they are: huge.bin" in result.output
    assert not (home / "huge.bin").exists()

    for index in range(4):  # 4 x 1,000 bytes: over sync_max_total, nothing comes
        put(user, f"part{index}.txt", "y" * 1000)
    refused = lab.inv("sync", "--host", "vm", check=False)
    assert refused.returncode == 1
    assert "more than sync_max_total" in refused.output and "nothing was copied" in refused.output
    assert not list(home.glob("part*"))


def test_without_rsync_an_unreachable_vm_is_one_line_and_local_copies_stay(laptop, user, workspace, tmp_path):
    lab = laptop
    vm = Sshd(tmp_path / "vm")
    lab.write_hosts({"vm": ssh_profile(user, vm)})
    put(user, "kept.ipynb", "1")
    try:
        lab.inv("sync", "--host", "vm")
    finally:
        vm.stop()
    failed = lab.inv("sync", "--host", "vm", check=False)
    assert failed.returncode == 1
    assert "cannot reach labvm-vm" in failed.output and "your local copies" in failed.output
    assert (lab.directory / "notebooks" / "vm" / "kept.ipynb").read_text() == "1"


def test_without_rsync_on_the_laptop_or_the_vm(laptop, user, workspace, tmp_path):
    lab = laptop
    hidden = Path(tempfile.mkdtemp(prefix="lv-norsync-"))  # under /tmp: the VM's user must read it
    try:
        vm_path = path_without("rsync", hidden, "/usr/local/bin:/usr/bin:/bin")
        for folder in [hidden, *hidden.iterdir()]:
            folder.chmod(0o755)
        vm = Sshd(tmp_path / "vm")
        vm.stop()  # sshd's SetEnv (OpenSSH 8.7+) gives the VM's sessions that PATH
        vm.config.write_text(vm.config.read_text() + f"SetEnv PATH={vm_path}\n")
        vm.start()
        try:
            lab.write_hosts({"vm": ssh_profile(user, vm)})
            lab.inv("keys", "--host", "vm")
            control = lab.ssh("labvm-vm", "command -v rsync; command -v python3")
            found = control.stdout.split()  # the VM has no rsync either, and its python3 is reached
            assert len(found) == 1 and found[0].startswith(str(hidden)) and found[0].endswith("/python3"), control
            put(user, "only-python.ipynb", "{}")
            result = lab.inv("sync", "--host", "vm")
            assert "1 file(s) brought home" in result.output
            assert (lab.directory / "notebooks" / "vm" / "only-python.ipynb").read_text() == "{}"
        finally:
            vm.stop()
    finally:
        shutil.rmtree(hidden)


def test_the_host_program_skips_the_data_folder_by_its_path_and_other_folders_by_name(tmp_path):
    """The data volume's folder inside the workspace is skipped by its path from the top ("data/": a folder of
    that name deeper down is a notebook folder like any), lost+found and dot-folders by name."""
    import json
    import subprocess
    import sys

    from labvm.sync_rules import SKIPPED_DIRS

    for rel in ("data/big.csv", "data/lost+found/x", "lab/data/notes.ipynb", "lost+found/y", "a.ipynb"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    program = Path(__file__).resolve().parents[1] / "scripts" / "sync_host.py"
    skipped = json.dumps([*SKIPPED_DIRS, "data/"])
    listed = subprocess.run(
        [sys.executable, str(program), str(tmp_path), skipped, "mark"], input=b"", capture_output=True, check=True
    )
    lines = [json.loads(line) for line in listed.stdout.splitlines()[1:]]
    names = sorted(bytes.fromhex(line["f"]).decode() for line in lines if "f" in line)
    assert names == ["a.ipynb", "lab/data/notes.ipynb"]
