"""`inv put` and `inv get` against a real sshd and rsync: datasets in and out, resumed, never
overwritten silently, checked against the free space."""

import os
import shutil
import signal
import subprocess
import sys
import time

from realhost import INV, one_line, path_without, put, ssh_profile


def dataset(lab, files: dict) -> None:
    for relative, text in files.items():
        path = lab.directory / "dataset" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_put_sends_a_folder_says_unchanged_and_keeps_what_differs_on_the_vm(lab, user, sshd, workspace):
    lab.write_hosts({"vm": ssh_profile(user, sshd)})
    dataset(lab, {"a.csv": "1,2\n", "b.csv": "3,4\n", "sub/c.csv": "5,6\n", ".env": "SECRET=1\n"})

    first = lab.inv("put", "dataset", "--host", "vm")
    assert "put: 3 file(s) sent to labvm-vm:work" in first.output, first.output
    assert (workspace / "dataset" / "sub" / "c.csv").read_text() == "5,6\n"
    assert not (workspace / "dataset" / ".env").exists()  # no dot-file leaves the laptop

    again = lab.inv("put", "dataset", "--host", "vm")
    assert "put: 0 file(s) sent to labvm-vm:work (0 B), 3 unchanged" in again.output, again.output

    put(user, "dataset/a.csv", "edited on the VM\n")  # another size
    put(user, "dataset/b.csv", "9,9\n")  # the same size, other bytes
    later = time.time() + 60
    os.utime(workspace / "dataset" / "b.csv", (later, later))
    os.utime(lab.directory / "dataset" / "sub" / "c.csv", (later, later))  # same bytes, another time
    kept = lab.inv("put", "dataset", "--host", "vm", check=False)
    assert "put: 0 file(s) sent to labvm-vm:work (0 B), 1 unchanged" in kept.output, kept.output
    one_line(
        kept,
        "put: 2 file(s) not copied, they differ on the VM (kept as they are): dataset/a.csv, dataset/b.csv; "
        "to copy them, move or rename them on the VM (`inv ssh --host vm`), or put into another REMOTE",
    )
    assert (workspace / "dataset" / "a.csv").read_text() == "edited on the VM\n"
    assert (workspace / "dataset" / "b.csv").read_text() == "9,9\n"


def test_get_brings_a_folder_home_and_keeps_a_local_file_that_differs(lab, user, sshd, workspace):
    lab.write_hosts({"vm": ssh_profile(user, sshd)})
    put(user, "results/out.csv", "1,2\n")
    put(user, "results/deep/more.csv", "3\n")
    put(user, "results/tasks.py", "print('would run on inv')\n")
    home = lab.directory / "notebooks" / "vm"

    first = lab.inv("get", "~/work/results", "--host", "vm")
    assert f"get: 2 file(s) brought into {home}" in first.output, first.output
    assert (home / "results" / "out.csv").read_text() == "1,2\n"
    assert (home / "results" / "deep" / "more.csv").read_text() == "3\n"
    assert not (home / "results" / "tasks.py").exists()  # invoke's files never come home

    (home / "results" / "out.csv").write_text("my local edit\n")
    put(user, "results/new.csv", "7\n")
    kept = lab.inv("get", "~/work/results", "--host", "vm", check=False)
    assert f"get: 1 file(s) brought into {home} (2 B), 1 unchanged" in kept.output, kept.output
    one_line(kept, "get: 1 file(s) not copied, they differ here (kept as they are): results/out.csv")
    assert (home / "results" / "new.csv").read_text() == "7\n"
    assert (home / "results" / "out.csv").read_text() == "my local edit\n"


def slow_ssh(folder, log, bytes_per_second: int):
    """An ssh that carries what rsync sends at a bounded rate and notes how many bytes it carried:
    a transfer long enough to break on purpose, and a count of what each run sent."""
    folder.mkdir()
    real = subprocess.run(["which", "ssh"], capture_output=True, text=True, check=True).stdout.strip()
    script = folder / "ssh"
    script.write_text(
        f"#!{sys.executable}\n"
        "import os, signal, subprocess, sys, threading, time\n"
        f"real, log, rate = {real!r}, {str(log)!r}, {bytes_per_second}\n"
        "args = sys.argv[1:]\n"
        "if '-V' in args or '-G' in args:\n"
        "    os.execv(real, [real] + args)\n"
        "signal.signal(signal.SIGINT, signal.SIG_IGN)  # as ssh: it ends when its connection does\n"
        "child = subprocess.Popen([real] + args, stdin=subprocess.PIPE)\n"
        "sent = 0\n"
        "def carry():\n"
        "    global sent\n"
        "    started = time.monotonic()\n"
        "    try:\n"
        "        while chunk := os.read(0, 65536):\n"
        "            child.stdin.write(chunk)\n"
        "            child.stdin.flush()\n"
        "            sent += len(chunk)\n"
        "            time.sleep(max(0, sent / rate - (time.monotonic() - started)))\n"
        "        child.stdin.close()\n"
        "    except OSError:\n"
        "        pass\n"
        "threading.Thread(target=carry, daemon=True).start()\n"
        "code = child.wait()  # rsync waits for its ssh to end before it closes the pipe\n"
        "with open(log, 'a') as out:\n"
        "    out.write(f'{sent}\\n')\n"
        "os._exit(code)\n"
    )
    script.chmod(0o755)
    return folder


def test_a_broken_put_resumes_where_it_stopped(lab, user, sshd, workspace, tmp_path):
    size = 24 << 20
    log = tmp_path / "sent.log"
    lab.extra_env["PATH"] = f"{slow_ssh(tmp_path / 'bin', log, 8 << 20)}:{os.environ['PATH']}"
    lab.write_hosts({"vm": ssh_profile(user, sshd)})
    big = lab.directory / "big.bin"
    big.write_bytes(os.urandom(size))

    process = subprocess.Popen(
        [*INV, "put", "big.bin", "--host", "vm"],
        env=lab.env,
        cwd=lab.directory,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # Ctrl-C on a terminal reaches the whole group: inv, rsync, ssh
    )
    try:
        deadline = time.monotonic() + 60
        while not any(path.stat().st_size > size // 4 for path in workspace.glob(".big.bin.*")):
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the put did not get a quarter in: {process.communicate(timeout=60)[0].decode()}")
            time.sleep(0.05)
        os.killpg(process.pid, signal.SIGINT)
        output = process.communicate(timeout=60)[0].decode()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 130 and "run the same task again to resume" in output, output
    assert "Traceback" not in output
    assert not (workspace / "big.bin").exists()  # never a half file under the real name
    kept = (workspace / ".labvm-partial" / "big.bin").stat().st_size
    assert size // 4 < kept < size

    log.write_text("")
    resumed = lab.inv("put", "big.bin", "--host", "vm")
    assert "put: 1 file(s) sent to labvm-vm:work (24.0 MiB), 0 unchanged" in resumed.output, resumed.output
    assert (workspace / "big.bin").read_bytes() == big.read_bytes()
    sent = sum(int(line) for line in log.read_text().split())
    assert sent < size - kept + (2 << 20), f"the second run sent {sent} bytes of {size} ({kept} kept)"
    assert not (workspace / ".labvm-partial").exists()


def test_more_than_the_free_space_is_refused_before_sending(lab, user, sshd, workspace, tmp_path):
    lab.write_hosts({"vm": ssh_profile(user, sshd)})
    huge = lab.directory / "huge.bin"
    subprocess.run(["truncate", "-s", "15T", str(huge)], check=True)  # sparse: bigger than any disk here
    refused = lab.inv("put", "huge.bin", "--host", "vm", check=False)
    one_line(refused, "put: 15.0 TiB to send but the VM has ", " free in work; nothing was sent; ", "put a smaller set")
    assert not (workspace / "huge.bin").exists() and not (workspace / ".labvm-partial").exists()

    put(user, "huge.bin", "")
    subprocess.run(["truncate", "-s", "15T", str(workspace / "huge.bin")], check=True)
    home = lab.directory / "notebooks" / "vm"
    refused = lab.inv("get", "~/work/huge.bin", "--host", "vm", check=False)
    one_line(refused, "get: 15.0 TiB to bring but this machine has ", "nothing was copied")
    assert not (home / "huge.bin").exists()


def test_while_the_tunnel_is_up_put_rides_its_login(lab, user, sshd, workspace):
    lab.write_hosts({"vm": ssh_profile(user, sshd)})
    dataset(lab, {"a.csv": "1,2\n"})
    lab.inv("tunnel", "--host", "vm")
    keys = user.home / ".ssh" / "authorized_keys"
    allowed = keys.read_text()
    try:
        keys.write_text("")  # from now on the VM accepts no new login
        ridden = lab.inv("put", "dataset", "--host", "vm")
        assert "put: 1 file(s) sent to labvm-vm:work" in ridden.output, ridden.output
        assert (workspace / "dataset" / "a.csv").read_text() == "1,2\n"
        lab.inv("tunnel", "--host", "vm", "--stop")
        alone = lab.inv("put", "dataset", "--host", "vm", check=False)  # the control: its own login is refused
        one_line(alone, "cannot reach labvm-vm", "nothing was copied")
    finally:
        keys.write_text(allowed)


def test_remote_paths_nested_missing_climbing_or_with_control_bytes(lab, user, sshd, workspace):
    lab.write_hosts({"vm": ssh_profile(user, sshd), "here": {"provider": "local"}})
    dataset(lab, {"a.csv": "1\n"})
    climbing = lab.inv("put", "dataset", "--remote", "~/work/../../etc", "--host", "vm", check=False)
    one_line(climbing, "put: '~/work/../../etc' holds '..'")
    missing = lab.inv("get", "~/work/nothing-here", "--host", "vm", check=False)
    one_line(missing, "get: labvm-vm:work/nothing-here does not exist; nothing was copied")
    put(user, "there.csv", "1\n")
    missing = lab.inv("get", "~/work/nothing-here", "--host", "vm", check=False)  # its folder there, not it
    one_line(missing, "get: labvm-vm:work/nothing-here does not exist; nothing was copied")
    try:
        nested = lab.inv("put", "dataset", "--remote", "~/sets/2026/may", "--host", "vm")
        assert "put: 1 file(s) sent to labvm-vm:sets/2026/may" in nested.output, nested.output
        assert (user.home / "sets" / "2026" / "may" / "dataset" / "a.csv").read_text() == "1\n"
    finally:
        shutil.rmtree(user.home / "sets", ignore_errors=True)
    control = lab.inv("get", "work/a\x1b[2Jb", "--host", "vm", check=False)
    one_line(control, "get: ", "is not a path on the VM")
    assert "\x1b" not in control.output
    local = lab.inv("put", "dataset", "--host", "here", check=False)
    one_line(local, "put: the local profile is this machine; its files are here already")


def test_rsyncs_progress_is_read_strictly_and_nothing_malformed_raises():
    import io

    from labvm.transfer import progress_of

    stream = io.BufferedReader(
        io.BytesIO(
            b"\r         32,768   0%    0.00kB/s    0:00:00  "
            b"\r     30,000,000 100%  255.17MB/s    0:00:00 (xfr#1, to-chk=0/2)"
            b"\rrsync: a message\n"
            + b"9" * 5000  # no end: cut, never kept whole
            + b"\r 12 50% 1.00B/s 0:00:01 \x1b[2J"  # not rsync's line: skipped
            + b"\r     40,000,000 100%  255.17MB/s    0:00:00 (xfr#2, to-chk=0/3)\n"
        )
    )
    assert list(progress_of(stream)) == [32768, 30000000, 40000000]


def test_the_vms_free_space_is_read_strictly():
    from labvm.transfer import _free_kib

    header = "Filesystem     1024-blocks     Used Available Capacity Mounted on\n"
    assert _free_kib(header + "/dev/vda 264212084 28782420 77608492 28% /\n") == 77608492
    assert _free_kib(header + "my disk 100 50 50 50% /mnt/a b\n") == 50
    for answer in ("", header, header + "/dev/vda x 1 2 3% /\n", header + "a 1 2 3 4% /\n" * 2, "\x1b[2J" + header):
        assert _free_kib(answer) is None


def test_without_a_usable_rsync_put_says_what_to_install(lab, user, sshd, workspace, tmp_path):
    lab.extra_env["PATH"] = path_without("rsync", tmp_path)
    lab.write_hosts({"vm": ssh_profile(user, sshd)})
    dataset(lab, {"a.csv": "1\n"})
    refused = lab.inv("put", "dataset", "--host", "vm", check=False)
    one_line(refused, "put needs rsync 3.5.0+ on this machine (none is on PATH); install it (`brew install rsync`")
    assert not (workspace / "dataset").exists()


def test_the_progress_line_says_bytes_rate_and_time_left(capsys):
    from labvm.transfer import PROGRESS_EVERY, Progress

    progress = Progress("put", 100 << 20)
    progress.started -= 10
    progress.last_line -= PROGRESS_EVERY
    progress.show(50 << 20)
    progress.show(60 << 20)  # within PROGRESS_EVERY of the last line: not a line of its own
    assert capsys.readouterr().out == "put: 50.0 MiB of 100.0 MiB (50%), 5.0 MiB/s, 0:00:10 left\n"
