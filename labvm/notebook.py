"""JupyterLab on the profile's host, one subject end to end: the step (scripts/notebook.sh, which runs
scripts/nbctl.py), its answers read strictly (nbctl.py's status, plan and stop; the values that
build the browser's URL), and what labvm says of them.

The token and base_url build the URL the browser opens, so they are restricted to characters that
cannot move it to another host (answers.py says how every answer is read).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from . import answers, steps, vm
from .answers import MAX_BYTES, MAX_COUNT, MAX_PID, MAX_SECONDS, BadAnswer
from .autostop import autostop_fields
from .config import Member, Profile
from .config.schema import UnwrittenPort
from .errors import LabvmError

# The URL's path prefix: one leading '/', segments of URL-safe characters, a trailing '/'.
# Nothing that ends the authority ('@') or makes a network-path reference ('//').
BASE_URL = re.compile(r"/(?:[A-Za-z0-9._~-]+/)*")
TOKEN = re.compile(r"[A-Za-z0-9._~-]{1,256}")  # nbctl.py makes 48 hex digits
MAX_GPUS = 64  # a VM's GPUs: the largest clouds' machines carry 8 or 16
MAX_GPU_MIB = 10**7  # 10 TiB of one GPU's memory: more is not a GPU's (scripts/gpu.py says the same)


class Notebook:
    """Configured, started, stopped and asked on the host `host()` gives (connected when first asked)."""

    def __init__(self, profile: Profile, host: Callable[[], Any]):
        self.profile, self.host = profile, host
        self.port: int | None = None  # Jupyter's port on the host, once the host said it

    @property
    def may_move(self) -> bool:
        """hosts.yml writes no notebook.port: a busy default gives way to the next free port on the host."""
        return isinstance(self.profile.notebook.port, UnwrittenPort)

    def configure(self) -> None:
        """labvm's Jupyter config on the host: 127.0.0.1 only, a token, or the password's hash; the
        port it chose (another login may hold the default one)."""
        password = self.profile.notebook.password
        if password:
            store_password_hash(self.host(), password)
        out = self._run("config", auth="password" if password else "token")
        where = self.host().label
        fix = _setup_again(self.profile.name)
        self.port = answers.checked(
            lambda data: answers.whole_number(answers.mapping(data, "the answer").get("port"), "port", 1, 65535),
            answers.json_line(out, where, "notebook config", fix),
            where,
            "notebook config",
            fix,
        )

    def host_port(self) -> int:
        """Jupyter's port on the host: notebook.port, or (moved off a busy default) the one the host chose."""
        if self.port is None:
            self.port = self.status()["port"] if self.may_move else self.profile.notebook.port
        return self.port

    def start(self) -> dict:
        """JupyterLab running (started, restarted after a settings change, or left as it runs): its status."""
        status = notebook_status(self._run("start"), self.host().label, self.profile.name)
        server = status["server"]
        self.port = server["port"]
        print(f"notebook: JupyterLab on the host at 127.0.0.1:{server['port']} (pid {server['pid']})")
        return status

    def stop(self, force: bool = False) -> None:
        """labvm's Jupyter ended (force: also one labvm did not start on the notebook's port)."""
        profile = self.profile
        result = notebook_stopped(self._run("stop", force=force), self.host().label, profile.name)
        if result["stopped"]:
            print(f"notebook: stopped Jupyter (pid {', '.join(map(str, result['stopped']))})")
        else:
            print("notebook: no labvm Jupyter was running")
        if result["other"]:
            print(
                f"notebook: a Jupyter labvm did not start still runs on port "
                f"{self.port or profile.notebook.port} (pid {result['other']['pid']}); "
                f"`inv stop-notebook --host {profile.name} --force` ends it"
            )

    def status(self) -> dict:
        """The notebook's and the host's state (nbctl.py status), checked field by field."""
        status = notebook_status(self._run("status"), self.host().label, self.profile.name)
        self.port = status["port"]
        return status

    def running(self) -> bool:
        """A labvm Jupyter runs there; False also when the host does not answer (nothing known to bring back)."""
        try:
            return bool(self.status()["server"])
        except LabvmError:
            return False

    def _run(self, action: str, auth: str = "", force: bool = False) -> str:
        spec = self.profile.notebook
        return steps.run(
            self.host(),
            self.profile,
            "notebook.sh",
            action,
            env={
                "LABVM_PORT": str(spec.port),
                "LABVM_WORKSPACE": spec.workspace,
                "LABVM_MUX": spec.multiplexer,
                "LABVM_AUTH": auth,
                "LABVM_TIMEOUT": str(spec.start_timeout),
                "LABVM_FORCE": "1" if force else "0",
                "LABVM_PICK": "1" if self.may_move else "0",
            },
        )


def store_password_hash(host, password: str) -> None:
    """An argon2 hash (jupyter_server's format) on the host, rewritten only if the password changed."""
    from argon2 import PasswordHasher
    from argon2.exceptions import Argon2Error

    hasher = PasswordHasher(memory_cost=10240, time_cost=10, parallelism=8)
    current = host.read(vm.layout.PASSWORD_HASH).strip()
    if current.startswith("argon2:"):
        try:
            hasher.verify(current.split(":", 1)[1], password)
            return
        except Argon2Error:
            pass
    host.write(vm.layout.PASSWORD_HASH, "argon2:" + hasher.hash(password) + "\n")


# -- nbctl.py's answers ------------------------------------------------------------------------


def _setup_again(profile: str) -> str:
    """The next step; a cluster's worker (head+wN) is set up with its head profile."""
    return f"`inv setup --host {Member.head_of(profile)}` installs labvm's scripts on the VM again"


def notebook_status(out: str, where: str, profile: str) -> dict:
    """nbctl.py's status (plan and wait add `action`): the plain values labvm uses."""
    fix = _setup_again(profile)
    return answers.checked(
        _notebook_status, answers.json_line(out, where, "notebook status", fix), where, "notebook status", fix
    )


def _notebook_status(data) -> dict:
    data = answers.required(
        answers.mapping(data, "the answer"),
        "",
        "port",
        "server",
        "other",
        "port_busy",
        "autostop",
        "mem_total",
        "mem_available",
        "disk_total",
        "disk_free",
        "load",
    )
    status: dict[str, Any] = {
        "port": answers.whole_number(data["port"], "port", 1, 65535),
        "server": _server(data["server"]),
        "other": _other(data["other"]),
        "port_busy": answers.flag(data["port_busy"], "port_busy"),
        "autostop": autostop_fields(data["autostop"]),
        "action": answers.text(data.get("action", ""), "action"),
        "port_holder": _holder(data.get("port_holder")),
        "gpus": _gpus(data.get("gpus") or []),
    }
    for key in ("mem_total", "mem_available", "disk_total", "disk_free"):
        status[key] = answers.whole_number(data[key], key, 0, MAX_BYTES)
    status["load"] = answers.number(data["load"], "load", 0, 1e6)
    return status


def _server(data) -> dict | None:
    if data is None:
        return None
    data = answers.required(answers.mapping(data, "server"), "server.", "pid", "port", "token", "answering")
    server = {
        "pid": answers.whole_number(data["pid"], "server.pid", 1, MAX_PID),
        "port": answers.whole_number(data["port"], "server.port", 1, 65535),
        "token": token(data["token"]),
        "base_url": base_url(data.get("base_url")),
        "root_dir": answers.text(data.get("root_dir") or "", "server.root_dir"),
        "runtime_file": answers.text(data.get("runtime_file") or "", "server.runtime_file"),
        "answering": answers.flag(data["answering"], "server.answering"),
    }
    if server["answering"]:
        for key in ("kernels", "busy_kernels", "connections"):
            server[key] = answers.whole_number(data.get(key, 0), f"server.{key}", 0, MAX_COUNT)
        server["idle_seconds"] = answers.whole_number(
            data.get("idle_seconds", 0), "server.idle_seconds", -86400, MAX_SECONDS
        )
    return server


def _gpus(data) -> list[dict]:
    """The host's NVIDIA GPUs (scripts/gpu.py): index, name, util %, memory used and total MiB (None: not reported)."""
    if not isinstance(data, list) or len(data) > MAX_GPUS:
        raise BadAnswer(f"gpus: {answers.shown(data)} is not a short list")
    found = []
    for gpu in data:
        gpu = answers.required(
            answers.mapping(gpu, "gpus[]"), "gpus[].", "index", "name", "util", "used_mib", "total_mib"
        )
        optional = answers.optional_whole_number
        found.append(
            {
                "index": answers.whole_number(gpu["index"], "gpus[].index", 0, 1023),
                "name": answers.text(gpu["name"], "gpus[].name"),
                "util": optional(gpu["util"], "gpus[].util", 0, 100),
                "used_mib": optional(gpu["used_mib"], "gpus[].used_mib", 0, MAX_GPU_MIB),
                "total_mib": optional(gpu["total_mib"], "gpus[].total_mib", 0, MAX_GPU_MIB),
            }
        )
    return found


def _other(data) -> dict | None:
    if data is None:
        return None
    data = answers.required(answers.mapping(data, "other"), "other.", "pid")
    return {
        "pid": answers.whole_number(data["pid"], "other.pid", 1, MAX_PID),
        "runtime_file": answers.text(data.get("runtime_file", ""), "other.runtime_file"),
    }


def _holder(data) -> dict | None:
    """Another login of the VM listening on the notebook's port (nbctl.py port_owner)."""
    if data is None:
        return None
    data = answers.required(answers.mapping(data, "port_holder"), "port_holder.", "uid", "user")
    return {
        "uid": answers.whole_number(data["uid"], "port_holder.uid", 0, MAX_PID),
        "user": answers.text(data["user"], "port_holder.user"),
    }


def notebook_stopped(out: str, where: str, profile: str) -> dict:
    """nbctl.py's stop: {"stopped": [pid, ...], "other": None or {"pid", "runtime_file"}}."""
    fix = _setup_again(profile)

    def parse(data) -> dict:
        data = answers.mapping(data, "the answer")
        stopped = data.get("stopped")
        if not isinstance(stopped, list) or len(stopped) > 100:
            raise BadAnswer(f"stopped: {answers.shown(stopped)} is not a list of process ids")
        return {
            "stopped": [answers.whole_number(pid, "stopped[]", 1, MAX_PID) for pid in stopped],
            "other": _other(data.get("other")),
        }

    return answers.checked(parse, answers.json_line(out, where, "notebook stop", fix), where, "notebook stop", fix)


# -- the browser's URL ---------------------------------------------------------------------


def base_url(value) -> str:
    """Jupyter's base_url as a path that can only follow the laptop's 127.0.0.1:PORT: one leading
    '/', URL-safe segments, a trailing '/' (added when missing, as Jupyter does)."""
    if value in (None, ""):
        return "/"
    if not isinstance(value, str) or len(value) > 200:
        raise BadAnswer(f"server.base_url: {answers.shown(value)} is not a URL path")
    path = value if value.endswith("/") else value + "/"
    if not BASE_URL.fullmatch(path):
        raise BadAnswer(
            f"server.base_url: {answers.shown(value)} is not a plain path like /user/lab/ "
            f"(one leading '/', letters, digits and . _ ~ -)"
        )
    return path


def token(value) -> str:
    """The server's token, as only URL-safe characters: nothing in it can end the URL's query."""
    if not isinstance(value, str) or not TOKEN.fullmatch(value):
        raise BadAnswer(f"server.token: {answers.shown(value)} is not a token (letters, digits and . _ ~ -)")
    return value


def lab_url(local_port: int, server: dict, with_token: bool = True) -> str:
    """http://127.0.0.1:PORT/BASE/lab[?token=...] from a checked server (notebook_status)."""
    url = f"http://127.0.0.1:{int(local_port)}{base_url(server.get('base_url'))}lab"
    return f"{url}?token={token(server.get('token'))}" if with_token else url
