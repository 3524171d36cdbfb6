"""A VM that lies to `inv sync` (issue 26, item 5).

Someone who controls the VM replaces its python3, which the built-in fallback (a laptop without a
usable rsync) runs there, and answers labvm whatever they like.  Each lie ends in one labvm line
naming the VM, the file and what to do, after labvm read no more than it asked for: no traceback,
no hang, no file written past what was listed, no half-written .labvm-sync-incoming-* left, local
work untouched, the laptop's memory bounded (measured).  `down` and `stop` against that VM still
stop it and say what failed; `terminate` deletes nothing.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aws_world import REGION, aws_env, labvm_instances
from labvm import answers, sync_messages
from labvm.errors import LabvmError
from realhost import INV, RAW_CONTROL, Sshd, one_line, path_without, ssh_profile

SYSTEM_PYTHON = "/usr/bin/python3"  # the VM's own python3, which the liar's stands in front of
GiB = 1 << 30
NOTEBOOK_TIME = 1_700_000_000 * 10**9

# What every lie starts with: the helpers a liar would write, and the mark labvm's program prints
# first (the liar sees it on its command line, as anyone on the VM can).
PRELUDE = r"""
import json, os, sys
mark = sys.argv[4]
out, inp = sys.stdout.buffer, sys.stdin.buffer
GiB = 1 << 30
def say(**message):
    out.write(json.dumps(message).encode() + b"\n")
def lists(name, size, m=NOTEBOOK_TIME):
    say(f=name.encode("utf-8", "surrogateescape").hex(), s=size, m=m)
def flood(count):  # `count` bytes of zeros
    while count > 0:
        out.write(b"\0" * min(count, 1 << 20))
        count -= 1 << 20
def asked():
    return json.loads(inp.readline())
out.write(mark.encode() + b"\n")
""".replace("NOTEBOOK_TIME", str(NOTEBOOK_TIME))
EPILOGUE = "\nout.flush()\ninp.read()  # as labvm's own program does: wait until the laptop is done\n"

# In front of the VM's python3: labvm's sync program (its mark is the fourth argument) meets the
# liar; everything else (labvm's scripts) the real python3, unless lie-to-all is there.
WRAPPER = """#!/bin/sh
case "$4" in labvm-sync-*) exec {python} {folder}/lie.py "$@" ;; esac
[ -e {folder}/lie-to-all ] && {{ echo '{{"stopped": "everything"}}'; exit 0; }}
exec {python} "$@"
"""


# The lying VM's profile: an env prefix no other test makes, so labvm's scripts run python3 (the liar) and not an
# env's python another test left in the shared test user's home (common.sh env_python prefers the env's).
LIAR_SETTINGS = {"sync_max_file": "1M", "sync_max_total": "10M", "env": {"prefix": "~/.labvm/env-of-the-liar"}}


class Liar:
    """A VM (a real sshd, the test user) whose python3 someone else replaced."""

    def __init__(self, sshd: Sshd, folder: Path):
        self.sshd, self.folder = sshd, folder

    def tells(self, lie: str, to_all: bool = False) -> None:
        program = self.folder / "lie.py"
        program.write_text(PRELUDE + textwrap.dedent(lie) + EPILOGUE)
        program.chmod(0o644)
        everything = self.folder / "lie-to-all"
        everything.unlink(missing_ok=True)
        if to_all:
            everything.touch()


@pytest.fixture(scope="module")
def liar(user, tmp_path_factory):
    folder = Path(tempfile.mkdtemp(prefix="lv-liar-"))  # under /tmp: the VM's user must read it
    folder.chmod(0o755)
    wrapper = folder / "python3"
    wrapper.write_text(WRAPPER.format(python=SYSTEM_PYTHON, folder=folder))
    wrapper.chmod(0o755)
    sshd = Sshd(tmp_path_factory.mktemp("liar"))
    sshd.stop()  # sshd's SetEnv (OpenSSH 8.7+) puts the liar first on the VM's PATH
    sshd.config.write_text(sshd.config.read_text() + f"SetEnv PATH={folder}:/usr/local/bin:/usr/bin:/bin\n")
    sshd.start()
    yield Liar(sshd, folder)
    sshd.stop()
    shutil.rmtree(folder)


@pytest.fixture
def laptop(lab, tmp_path, user, liar, workspace):
    """A laptop without rsync (the fallback runs), a profile for the lying VM, and local work in its folder."""
    lab.extra_env["PATH"] = path_without("rsync", tmp_path)
    lab.write_hosts({"vm": ssh_profile(user, liar.sshd, **LIAR_SETTINGS)})
    liar.tells("say(end=True)")
    lab.inv("keys", "--host", "vm")
    home = lab.directory / "notebooks" / "vm"
    home.mkdir(parents=True)
    (home / "mine.ipynb").write_text("my work")
    (home / "x.ipynb").write_text("my edit of x")  # the file each lie is about: edited here too
    return lab


def local_work_is_intact(lab) -> None:
    home = lab.directory / "notebooks" / "vm"
    assert (home / "mine.ipynb").read_text() == "my work"
    assert (home / "x.ipynb").read_text() == "my edit of x"
    assert not list(home.rglob(".labvm-sync-incoming-*"))
    assert not list(home.glob("x.local-*")), "a failed sync set the local edit aside"
    assert sorted(p.name for p in lab.directory.rglob("*.ipynb")) == ["mine.ipynb", "x.ipynb"]


def inv_measured(lab, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """`inv ARGS` as lab.inv runs it, and the largest resident memory it took (peak_mib); past `timeout`
    it is killed (a hang shows as a traceback of the measuring process)."""
    peak = lab.directory / "peak"
    measure = (
        "import resource, subprocess, sys; "
        "code = subprocess.run(sys.argv[3:], timeout=float(sys.argv[2])).returncode; "
        "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)); "
        "sys.exit(code)"
    )
    result = subprocess.run(
        [sys.executable, "-c", measure, str(peak), str(timeout), *INV, *args],
        check=False,
        capture_output=True,
        text=True,
        env=lab.env,
        timeout=timeout + 30,
        stdin=subprocess.DEVNULL,
        cwd=lab.directory,
    )
    result.output = result.stdout + result.stderr
    assert "Traceback" not in result.output, result.output
    result.peak_mib = int(peak.read_text()) / 1024
    return result


# A file the liar lists, then what it sends when asked; the fragment labvm's one line must hold.
LISTED = 'lists("x.ipynb", 5)\nsay(end=True)\nout.flush()\nasked()\n'
LIES = {
    "a name that is not hex": ('say(f="../x", s=1, m=0)', "f: '../x' is not a name in hex digits"),
    "a size that is a text": ('say(f=b"x.ipynb".hex(), s="5", m=0)', "s: '5' is not a whole number"),
    "a field missing": ('say(f=b"x.ipynb".hex(), s=5)', "m missing"),
    "a field of its own": ('say(f=b"x.ipynb".hex(), s=5, m=0, x=1)', "x: not a field labvm's program sends"),
    "a negative size": ('lists("x.ipynb", -1)', "s: -1 is not a whole number"),
    "a time past any calendar": ('lists("x.ipynb", 5, m=1e300)', "m: 1e+300 is not a file time"),
    "NaN": ('out.write(b\'{"f": "782e6970796e62", "s": NaN, "m": 0}\\n\')', "not JSON"),
    "not an object": ('out.write(b"[]\\n")', "[] is not a JSON object"),
    "an answer of another size": (LISTED + "say(size=50, m=0)\nflood(50)", "size: 50 bytes, not the 5 asked for"),
    "an answer of a text size": (LISTED + 'say(size="5", m=0)\nout.write(b"12345")', "size: '5'"),
    "an answer's time past any calendar": (
        LISTED + 'say(size=5, m=1e300)\nout.write(b"12345")',
        "m: 1e+300 is not a file time",
    ),
    "an answer that is not JSON": (LISTED + 'out.write(b"hello\\n")', "not JSON: hello"),
    "an answer that is a number": (LISTED + 'out.write(b"12345\\n")', "12345 is not a JSON object"),
    "fewer bytes, then the end": (
        LISTED + 'say(size=5, m=0)\nout.write(b"123")\nout.flush()\nos._exit(0)',
        "sent 3 of the 5 bytes it listed for x.ipynb",
    ),
    "more bytes than listed": (
        LISTED + 'say(size=5, m=0)\nout.write(b"1234567890\\n")',
        "sent something else than the 5 bytes it listed for x.ipynb",
    ),
    "a bad end of the bytes": (
        LISTED + 'say(size=5, m=0)\nout.write(b"12345")\nsay(ok="yes")',
        "sent something else than the 5 bytes it listed for x.ipynb",
    ),
}


@pytest.mark.parametrize("lie", LIES)
def test_a_lie_is_one_line_and_local_work_stays(laptop, liar, lie):
    told, fragment = LIES[lie]
    liar.tells(told)
    result = laptop.inv("sync", "--host", "vm", check=False, timeout=60)
    line = one_line(result, "labvm-vm", fragment, "your local copies in", "python3")
    assert not RAW_CONTROL.search(line)
    local_work_is_intact(laptop)


@pytest.mark.parametrize(
    "lie, fragment",
    [
        (
            "lists('x.ipynb', 5)\nsay(end=True)\nout.flush()\nasked()\nsay(size=-1, m=0)\nflood(3 * GiB // 2)",
            "size: -1",
        ),
        (
            "lists('x.ipynb', 5)\nsay(end=True)\nout.flush()\nasked()\nsay(size=5, m=0)\nflood(3 * GiB // 2)",
            "sent something else than the 5 bytes it listed for x.ipynb",
        ),
        ('out.write(b\'{"f": "\')\nflood(3 * GiB // 2)', "a line longer than 16 KiB"),
    ],
    ids=["size -1, then 1.5 GiB", "5 bytes listed, then 1.5 GiB", "a listing line of 1.5 GiB"],
)
def test_a_flood_is_not_read_and_memory_stays_bounded(laptop, liar, lie, fragment):
    """sync_max_total is 10M: labvm reads what it listed and asked for, in chunks, never a whole flood."""
    liar.tells(lie)
    result = inv_measured(laptop, "sync", "--host", "vm", timeout=60)
    one_line(result, "labvm-vm", fragment)
    assert result.peak_mib < 80, f"{result.peak_mib:.0f} MiB"  # inv alone: ~32 MiB here; the flood 1,536
    local_work_is_intact(laptop)


def test_names_the_laptop_cannot_hold_are_never_asked_for_and_reasons_are_cleaned(laptop, liar, user):
    asked_for = user.home / "asked"
    liar.tells(r"""
        for name in ("../escape.ipynb", "a/../../escape.ipynb", "/etc/escape.ipynb", "nul\0.ipynb", "a//b.ipynb",
                     "ok.ipynb"):
            lists(name, 5)
        say(end=True)
        out.flush()
        with open(os.path.expanduser("~/asked"), "w") as log:
            while "get" in (ask := asked()):
                log.write(bytes.fromhex(ask["get"]).decode() + "\n")
                say(error="\x1b]0;owned\x07\x1b[2J" + bytes.fromhex(ask["get"]).decode() + " is gone" + "!" * 5000)
                out.flush()
    """)
    try:
        result = laptop.inv("sync", "--host", "vm")
        assert asked_for.read_text() == "ok.ipynb\n"
    finally:
        asked_for.unlink(missing_ok=True)
    # A name with a dot part never travels (as rsync's filters leave it out); the others are named.
    for shown in ("/etc/escape.ipynb", "nul\\x00.ipynb", "a//b.ipynb"):
        assert f"sync: not transferred: {shown}: not a name this machine can hold" in result.output
    assert "sync: not transferred: ok.ipynb: \\x1b]0;owned\\x07\\x1b[2Jok.ipynb is gone!!!" in result.output
    assert max(len(line) for line in result.output.splitlines()) < 600
    assert not RAW_CONTROL.search(result.output)
    local_work_is_intact(laptop)


def test_a_file_that_changed_on_the_vm_while_read_is_not_kept_and_the_local_edit_stays_an_edit(laptop, liar):
    """The honest race, as labvm's program tells it: the bytes it promised, then why they are no good.
    The local edit it met stays where it is, and the next sync still treats it as an edit."""
    liar.tells(
        LISTED + 'say(size=5, m=0)\nout.write(b"12\\0\\0\\0")\nsay(error="changed on the host while it was read")'
    )
    result = laptop.inv("sync", "--host", "vm")
    assert "sync: not transferred: x.ipynb: changed on the host while it was read" in result.output
    local_work_is_intact(laptop)

    liar.tells(
        LISTED
        + 'say(size=5, m=NOTEBOOK_TIME)\nout.write(b"fresh")\nsay(ok=True)'.replace("NOTEBOOK_TIME", str(NOTEBOOK_TIME))
    )
    again = laptop.inv("sync", "--host", "vm")
    home = laptop.directory / "notebooks" / "vm"
    assert (home / "x.ipynb").read_text() == "fresh"
    (kept,) = home.glob("x.local-*.ipynb")
    assert kept.read_text() == "my edit of x" and f"your local edit of x.ipynb was kept as {kept.name}" in again.output


@pytest.mark.parametrize(
    "reply, fragment",
    [
        ("say(ok=1)", '{"ok": 1} is neither'),
        ("say(ok=True, extra=1)", "neither"),
        ("flood(3 * GiB // 2)", "a line longer than 16 KiB"),
    ],
    ids=["ok is 1", "a field of its own", "1.5 GiB"],
)
def test_a_lying_answer_to_push_is_one_line(laptop, liar, reply, fragment):
    liar.tells(f"""
        say(end=True)
        out.flush()
        ask = asked()
        inp.read(ask["size"])
        {reply}
    """)
    result = inv_measured(laptop, "sync", "--host", "vm", "--push")
    one_line(result, "labvm-vm", "mine.ipynb", fragment)
    assert result.peak_mib < 80, f"{result.peak_mib:.0f} MiB"  # inv alone: ~32 MiB here; the flood 1,536
    local_work_is_intact(laptop)


# -- the parser alone: anything the VM may send ------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(1 << 70), max_value=1 << 70)
    | st.floats(allow_nan=False)
    | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
field_names = st.sampled_from(["f", "s", "m", "size", "error", "ok", "end", "missing", "x"])
messages = st.dictionaries(field_names, json_values | st.just(True) | st.just("782e6970796e62"), max_size=4)
lines = (
    messages.map(lambda m: json.dumps(m).encode() + b"\n")
    | st.binary(max_size=200)
    | st.builds(lambda head, size: head + b"x" * size, st.binary(max_size=10), st.integers(16000, 17000))
)


@settings(max_examples=600, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(line=lines, asked=st.integers(0, 1 << 20))
def test_the_parser_answers_anything_with_checked_values_or_one_clean_line(line, asked):
    for parse in (
        sync_messages.sync_listed,
        lambda text: sync_messages.sync_sending(text, asked),
        sync_messages.sync_done,
    ):
        try:
            value = parse(line)
        except answers.BadAnswer as refused:
            text = str(refused)
            assert text and "\n" not in text and not RAW_CONTROL.search(text) and len(text) < 300, repr(text)
            continue
        if isinstance(value, sync_messages.ListedFile):
            assert 0 <= value.size < 1 << 63 and 0 <= value.mtime_ns <= sync_messages.MAX_FILE_TIME_NS
            assert value.name and isinstance(value.name, bytes)
        elif isinstance(value, int) and not isinstance(value, bool):  # an answer's time: its bytes follow
            assert 0 <= value <= sync_messages.MAX_FILE_TIME_NS
            assert json.loads(line)["size"] == asked
        elif isinstance(value, str):  # "end", "missing", or the host's reason, cleaned and bounded
            assert not RAW_CONTROL.search(value) and len(value) <= answers.MAX_TEXT + 1
        else:
            assert value is None and json.loads(line) == {"ok": True}


MARK = "labvm-sync-0123456789abcdef"
LINE = sync_messages.SYNC_LINE_LIMIT + 1  # the most one readline takes
pieces = st.one_of(
    lines,
    st.sampled_from(
        [
            b'{"end": true}\n',
            b'{"missing": true}\n',
            b'{"size": 3, "m": 0}\n',
            b'{"ok": true}\n',
            b'{"error": "gone"}\n',
            b'{"f": "782e6970796e62", "s": 3, "m": 0}\n',
            b"abc",
            b"\n",
            MARK.encode() + b"\n",
        ]
    ),
    st.integers(0, 3 * LINE).map(lambda n: b"\0" * n),  # a flood, a line without end
)


@settings(max_examples=500, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(said=st.lists(pieces, max_size=14).map(b"".join), sizes=st.lists(st.integers(0, 3 * LINE), max_size=4))
def test_the_reader_takes_what_it_asked_for_and_never_more(said, sizes):
    """Whatever the host's output holds: a listing line, an answer, a file's bytes are each read to a
    bound labvm set (a line, or the listed size); anything else is one clean line or the end of the talk."""
    from labvm.sync_fallback import Replies, _CutShort, _HostGone

    stream = io.BytesIO(MARK.encode() + b"\n" + said)
    replies = Replies(stream, "labvm-vm", Path("/notebooks"), MARK, "hosts.yml: profiles.vm.sync")
    try:
        for rel, (size, mtime_ns) in (replies.listing(lambda rel: True) or {}).items():
            assert 0 <= size < 1 << 63 and 0 <= mtime_ns <= sync_messages.MAX_FILE_TIME_NS and rel
        for size in sizes:
            before, into = stream.tell(), io.BytesIO()
            answer = replies.next_file("x.ipynb", size, into)
            assert stream.tell() - before <= LINE + size + LINE
            assert len(into.getvalue()) == size if isinstance(answer, int) else len(into.getvalue()) in (0, size)
        before = stream.tell()
        replies.written("x.ipynb")
        assert stream.tell() - before <= LINE
    except LabvmError as refused:
        text = str(refused)
        assert "\n" not in text and not RAW_CONTROL.search(text) and "labvm-vm" in text, repr(text)
    except (_HostGone, _CutShort):  # the talk ended: Host.failure says why, in one line
        assert stream.tell() == len(stream.getvalue())


# -- down, stop and terminate against the lying VM (a cloud profile: moto's EC2) -----------------------


@pytest.fixture
def cloud_liar(laptop, ec2, moto, user, liar):
    """The lying VM as profile aws's running instance: moto holds the instance, the liar answers its SSH."""
    laptop.extra_env.update(aws_env(moto), LABVM_OWNER="hedy")
    ami = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    profile = ssh_profile(user, liar.sshd, **LIAR_SETTINGS)
    profile.update(provider="aws", region=REGION, instance_type="t3.small", image=ami, ssh_cidr="127.0.0.1/32")
    laptop.write_hosts({"aws": profile})
    (laptop.directory / "notebooks" / "vm").rename(laptop.directory / "notebooks" / "aws")
    tags = [
        {"Key": "labvm:profile", "Value": "aws"},
        {"Key": "labvm:owner", "Value": "hedy"},
        {"Key": "Name", "Value": "labvm-aws"},
    ]
    (made,) = ec2.run_instances(
        ImageId=ami,
        MinCount=1,
        MaxCount=1,
        InstanceType="t3.small",
        TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
    )["Instances"]
    yield made["InstanceId"]
    ec2.terminate_instances(InstanceIds=[made["InstanceId"]])


def state_of(ec2, instance_id: str) -> str:
    (instance,) = [i for i in labvm_instances(ec2) if i["InstanceId"] == instance_id]
    return instance["State"]["Name"]


TYPE_ERROR_BEFORE = "say(f=5, s=1, m=0)"  # before issue 26: a TypeError in labvm, a traceback, the VM left running


@pytest.mark.parametrize("verb", ["down", "stop"])
def test_down_and_stop_stop_a_lying_vm_and_say_what_failed(laptop, liar, ec2, cloud_liar, verb):
    liar.tells(TYPE_ERROR_BEFORE)
    result = laptop.inv(verb, "--host", "aws", check=False, timeout=120)
    line = one_line(
        result, "the sync failed", f"{cloud_liar} is stopped", "`inv start --host aws` then `inv sync --host aws`"
    )
    assert "f: 5 is not a name in hex digits" in result.output
    assert state_of(ec2, cloud_liar) == "stopped", result.output
    assert not RAW_CONTROL.search(line)
    home = laptop.directory / "notebooks" / "aws"
    assert (home / "mine.ipynb").read_text() == "my work" and (home / "x.ipynb").read_text() == "my edit of x"


def test_down_goes_on_when_every_step_before_the_power_off_fails(laptop, liar, ec2, cloud_liar):
    liar.tells(TYPE_ERROR_BEFORE, to_all=True)  # labvm's scripts on the VM get lies too
    result = laptop.inv("down", "--host", "aws", check=False, timeout=120)
    one_line(result, "the sync and stopping Jupyter failed", f"{cloud_liar} is stopped")
    assert "notebook stop" in result.output
    assert state_of(ec2, cloud_liar) == "stopped", result.output


def test_terminate_deletes_nothing_when_the_sync_fails(laptop, liar, ec2, cloud_liar):
    liar.tells(TYPE_ERROR_BEFORE)
    result = laptop.inv("terminate", "--host", "aws", "--yes", "--force", check=False, timeout=120)
    one_line(result, "f: 5 is not a name in hex digits", "nothing was deleted", "--no-sync")
    assert state_of(ec2, cloud_liar) == "running", result.output


def test_a_sync_stopped_by_its_own_rules_still_lets_down_stop_the_vm(laptop, liar, ec2, cloud_liar):
    """Not a lie: more than sync_max_total on the VM.  The notebooks stay on the stopped VM's disk."""
    liar.tells("for n in range(20):\n    lists(f'big{n}.ipynb', 1 << 20)\nsay(end=True)")
    result = laptop.inv("down", "--host", "aws", check=False, timeout=120)
    one_line(result, "the sync failed", f"{cloud_liar} is stopped")
    assert "more than sync_max_total" in result.output
    assert state_of(ec2, cloud_liar) == "stopped", result.output
