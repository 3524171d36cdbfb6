"""The keeper's short questions to the VM: one `ssh -T` each, riding the forward's login while it
runs (no new login on the VM every few seconds, and an answer even while the VM takes no new
login), bounded in time and in size; and the one it asks before each forward and every few
seconds while it runs: who holds the VM's port (scripts/nbctl.py owner, read from /proc, which
connects to nobody).  A port held by another login of a shared VM gets no forward: the browser's
token and cookies would go to that user.
"""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path
from typing import Callable, NamedTuple

from .. import platforms, ssh_options
from ..text import clean, communicate_bounded, decode
from ..vm import python_command
from .protocol import CONNECT_TIMEOUT, OWNER_ASK_TIMEOUT

OWNER_QUESTION = python_command("nbctl.py", "owner")
OWNER_ASK_EVERY = 10  # seconds between questions while ssh forwards
OWNER_ANSWER_LIMIT = 4096  # bytes: one short JSON line per port
OWNER_FIELDS = {"port", "uid", "mine", "user"}
ROOT_UID = 0
REFUSED_RETRY = 60  # seconds between questions while another login holds a port


def question_command(ssh_config: str, alias: str, question: str, shared: Path | None = None) -> list[str]:
    """One question to the VM: -T, as a pty login would count as activity and keep the VM up.
    shared: the forward's ssh's socket; while that ssh runs the question rides its login;
    otherwise, the socket absent, ssh logs in itself."""
    return [
        "ssh",
        "-F",
        ssh_config,
        "-T",
        "-o",
        "ControlMaster=no",
        "-o",
        f"ControlPath={shared or 'none'}",
        *ssh_options.for_commands(),  # no forward: the tunnel's ports are the keeper's ssh's
        "-o",
        "BatchMode=yes",
        "-o",
        f"ConnectTimeout={CONNECT_TIMEOUT}",
        alias,
        question,
    ]


def owner_command(ssh_config: str, alias: str, port: int, shared: Path | None = None) -> list[str]:
    """The question who holds the VM's PORT (scripts/nbctl.py owner), as one ssh command."""
    return question_command(ssh_config, alias, f"{OWNER_QUESTION} --port {port}", shared)


class Answer(NamedTuple):
    """One question's answer: ssh's exit status and what came back, cut at the question's limit."""

    code: int  # ssh's exit status; 255 when the VM could not be asked
    out: str
    err: str
    too_much: bool  # the VM said more than asked: nothing it said is read


class Questions:
    """One question at a time, each bounded; a question under way can be cut short, and none is
    asked once the keeper ends (nothing of labvm's outlives it)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.current: subprocess.Popen | None = None
        self.ended = False

    def ask(self, command: list[str], timeout: float, limit: int) -> Answer | None:
        """The answer, or None once ended."""
        with self.lock:
            if self.ended:
                return None
            question = self.current = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                **platforms.windowless(),
            )
        try:
            out, err, too_much = communicate_bounded(question, timeout, limit)
        except subprocess.TimeoutExpired:
            question.kill()
            question.wait()
            return Answer(255, "", f"no answer within {timeout:.0f}s", False)
        return Answer(question.returncode, decode(out), decode(err), too_much)

    def cut_short(self) -> None:
        """The question under way ends now (the keeper sleeps or ends)."""
        question = self.current
        if question and question.poll() is None:
            question.terminate()

    def end(self) -> None:
        """No more questions: the one under way ends, later ones are not asked."""
        with self.lock:
            self.ended = True
            question = self.current
        self.cut_short()
        if question:
            try:
                question.wait(5)
            except subprocess.TimeoutExpired:
                pass


def port_holders(out: str, ports: list[int]) -> dict[int, dict]:
    """nbctl.py owner's answer, checked line by line: {port: its line} for exactly the ports
    asked; ValueError for anything else (the answer comes from the VM)."""
    held: dict[int, dict] = {}
    for line in out.splitlines():
        entry = json.loads(line)
        if not isinstance(entry, dict) or set(entry) != OWNER_FIELDS:
            raise ValueError(f"a line that is not {{{', '.join(sorted(OWNER_FIELDS))}}}")
        port, uid, mine, user = entry["port"], entry["uid"], entry["mine"], entry["user"]
        if type(port) is not int or port not in ports or port in held:
            raise ValueError(f"port {port!r} was not asked")
        nobody = uid is None and mine is False and user is None
        somebody = type(uid) is int and uid >= 0 and type(mine) is bool and isinstance(user, str) and user
        if not (nobody or somebody):
            raise ValueError(f"port {port}: uid {uid!r}, mine {mine!r}, user {user!r}")
        held[port] = entry
    if set(held) != set(ports):
        raise ValueError(f"no word on port {min(set(ports) - set(held))}")
    return held


def refusal(held: dict[int, dict]) -> str:
    """Why the browser must not be forwarded: "" when each port is the user's own, root's or free.
    Root reads the token file and the user's sessions anyway: refusing it protects nothing (and a
    system service, a test's stand-in, may serve a port as root)."""
    for port, entry in held.items():
        if entry["uid"] not in (None, ROOT_UID) and not entry["mine"]:
            return (
                f"port {port} on the VM is held by user {entry['user']}, not you; not forwarding there "
                f"(asking again every {REFUSED_RETRY}s, or at `inv up`)"
            )
    return ""


class PortCheck:
    """Who holds the VM's port, asked of the VM for the forward."""

    def __init__(
        self,
        profile: str,
        ssh_config: str,
        alias: str,
        remote_port: int,
        shared: Path | None,
        log: Callable[[str], None],
    ):
        self.profile, self.ssh_config, self.alias, self.remote_port = profile, ssh_config, alias, remote_port
        self.shared, self.log = shared, log
        self.questions = Questions()
        self.unreachable = ""  # why the VM could not be asked, the last time it could not
        self.unchecked_said = False

    def refusal(self, cancelled: Callable[[], bool]) -> str | None:
        """Why the forward must not run ("" when the remote port is the user's or free); None when
        the VM could not be asked (why: `unreachable`); a VM that answers what labvm cannot read
        gets no forward.  cancelled(): the question was cut short (the keeper sleeps or ends)."""
        asked = self.questions.ask(
            owner_command(self.ssh_config, self.alias, self.remote_port, self.shared),
            OWNER_ASK_TIMEOUT,
            OWNER_ANSWER_LIMIT,
        )
        if asked is None or cancelled():  # no word on the ports
            return ""
        code, out, err, too_much = asked
        why = clean(err.strip().splitlines()[-1]) if err.strip() else ""
        if code == 255:
            self.unreachable = why or "ssh could not reach the VM"
            return None
        if too_much:  # a VM that says more than asked: its answer is not read at all
            return (
                f"could not tell who holds port {self.remote_port} on the VM (its answer was larger than "
                f"{OWNER_ANSWER_LIMIT} bytes); not forwarding there"
            )
        if code != 0:  # the VM lacks labvm's scripts (an older labvm set it up): `inv up` puts them there
            if not self.unchecked_said:
                self.unchecked_said = True
                self.log(
                    f"ports: cannot ask {self.alias} who holds port {self.remote_port} "
                    f"({why or f'status {code}'}); "
                    f"`inv up --host {self.profile}` installs the check"
                )
            return ""
        try:
            if not out and err:
                raise ValueError(why)
            return refusal(port_holders(out, [self.remote_port]))
        except (ValueError, RecursionError) as e:  # an answer labvm cannot trust: no forward
            return (
                f"could not tell who holds port {self.remote_port} on the VM ({clean(str(e), 200)}); "
                "not forwarding there"
            )
