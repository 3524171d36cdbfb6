"""What a hosts.yml value may be: one Kind per sort of value, each its own check and its own reading.

A kind's check answers "" for a good value, else the requirement and the value, e.g. "must be a port
number from 1 to 65535, not 70000"; the caller puts the file and the key in front.  address, user, jump
and identity go into ~/.ssh/labvm/config and onto ssh command lines: they are checked after ${VAR}
expansion, so no value can start a directive or an option.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from pathlib import Path
from typing import Any, Callable, Collection, NamedTuple

from ..text import unsafe

USER = re.compile(r"[A-Za-z_][A-Za-z0-9._-]*\$?")
DNS_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
JUMP = re.compile(r"(?:([^@]*)@)?(\[[^\]]*\]|[^:\[\]]*)(?::([0-9]{1,5}))?")
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")  # and what Python's splitlines() breaks at
DURATION = re.compile(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
SIZE = re.compile(r"([0-9]{1,15})\s*([KMG]?)i?B?", re.IGNORECASE)
# notebook.workspace on the VM reaches rsync's remote side and the VM's scripts: plain characters
# only, so even an rsync that hands the path to a remote shell (2.6.9, RSYNC_OLD_ARGS) splits nothing.
WORKSPACE = re.compile(r"~|(?:~/|/)?[A-Za-z0-9._+@,=/-]+")
PLAIN = "plain text (no control, escape or bidi-override character)"


def _same(value: Any) -> Any:
    return value


class Kind(NamedTuple):
    """A sort of hosts.yml value.  check: "" for a good value, else what it must be and what it is;
    read: a checked value as a Profile holds it; typed: a number or true/false, so a ${VAR} that
    gives the text "8" gives 8, as if written in hosts.yml."""

    check: Callable[[Any], str]
    read: Callable[[Any], Any] = _same
    typed: bool = False


def parse_duration(value: Any) -> int | None:
    """Seconds in `90m`, `2h`, `1h30m`, `45s`; 0 for `off` (YAML reads a bare off as false); None if neither."""
    if value is False or (isinstance(value, str) and value.strip().lower() in ("off", "false", "no")):
        return 0
    match = DURATION.fullmatch(value.strip()) if isinstance(value, str) and value.strip() else None
    if not match:
        return None
    hours, minutes, seconds = (int(part or 0) for part in match.groups())
    return hours * 3600 + minutes * 60 + seconds or None


def parse_size(value: Any) -> int | None:
    """Bytes in `500K`, `100M`, `2G` (powers of 1024, as rsync's --max-size reads them); None if not a size."""
    match = SIZE.fullmatch(value.strip()) if isinstance(value, str) else None
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if not match or not int(match.group(1)):
        return None
    return int(match.group(1)) * 1024 ** " KMG".index(match.group(2).upper() or " ")


def host_problem(value: Any) -> str | None:
    """None for an IP address or a DNS name (labels of 1-63 characters, 253 in all); else why not."""
    if not isinstance(value, str) or not value:
        return "not a string"
    address, _, zone = value.partition("%")
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        parsed = None
    if parsed is not None:
        ok = not zone or (parsed.version == 6 and re.fullmatch(r"[A-Za-z0-9_.-]{1,15}", zone))
        return None if ok else "bad zone"
    name = value[:-1] if value.endswith(".") else value
    if len(name) > 253 or not all(DNS_LABEL.fullmatch(label) for label in name.split(".")):
        return "not a DNS name"
    return None


def jump_problem(value: Any) -> str | None:
    """None for [user@]host[:port] (what ProxyJump and a cluster's ssh hosts take); else why not."""
    if not isinstance(value, str):
        return "not a string"
    match = JUMP.fullmatch(value)
    if not match:
        return "not [user@]host[:port]"
    user, host, port = match.groups()
    if user is not None and not USER.fullmatch(user):
        return "bad user"
    if port is not None and not 0 < int(port) < 65536:
        return "bad port"
    return host_problem(host[1:-1] if host.startswith("[") else host)


def did_you_mean(word: str, choices: Collection[Any]) -> str:
    """The words " (did you mean 'x'?)" for the closest of choices, or "" when none is close."""
    close = difflib.get_close_matches(word, [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def one_of(*choices: str) -> Kind:
    """A value from a fixed list (a provider, a multiplexer), with the closest one for a typo."""

    def check(value: Any) -> str:
        if value in choices:
            return ""
        return f"must be one of {', '.join(choices)}, not {value!r}{did_you_mean(str(value), choices)}"

    return Kind(check)


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _text(value: Any) -> str:
    ok = isinstance(value, (str, int, float)) and not isinstance(value, bool)
    if ok and isinstance(value, str) and unsafe(value):  # it is printed: a size, a zone, a project
        return f"must be {PLAIN}, not {value!r}"
    return "" if ok else f"must be a string, not {value!r}"


def _host(value: Any) -> str:
    return "" if host_problem(value) is None else f"must be a host name or IP address, not {value!r}"


def _user(value: Any) -> str:
    ok = isinstance(value, str) and USER.fullmatch(value)
    return "" if ok else f"must be a login name (letters, digits, '.', '_', '-'), not {value!r}"


def _jump(value: Any) -> str:
    return "" if jump_problem(value) is None else f"must be [user@]host[:port], not {value!r}"


def _path_text(value: Any) -> bool:
    return isinstance(value, str) and bool(value) and not CONTROL.search(value) and len(value) < 4096


def _host_path(value: Any) -> str:
    return "" if _path_text(value) else f"must be a file path without control characters, not {value!r}"


def _local_path(value: Any) -> str:
    # A double quote would end the quoted IdentityFile value in the ssh config.
    if not _path_text(value) or '"' in value:
        return f"must be a file path without control characters or double quotes, not {value!r}"
    if value.startswith("~") and not value.startswith("~/") and value != "~":
        try:
            Path(value).expanduser()
        except RuntimeError:
            return f"names no user of this machine ({value.split('/')[0]}); write ~/... or a full path"
    return ""


def _workspace(value: Any) -> str:
    parts = value.split("/") if isinstance(value, str) else []
    ok = (
        isinstance(value, str)
        and WORKSPACE.fullmatch(value)
        and len(value) < 4096
        and not any(part == ".." or part.startswith("-") for part in parts)
    )
    return (
        ""
        if ok
        else (
            f"must be a plain folder path on the host (~/work, work, /data/work: letters, "
            f"digits and . _ - + @ , = /), not {value!r}"
        )
    )


# Where a data volume may not be mounted: it would hide what the system or the login needs there.
SYSTEM_FOLDERS = (
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/home",
    "/lib",
    "/lib64",
    "/opt",
    "/proc",
    "/root",
    "/run",
    "/sbin",
    "/srv",
    "/sys",
    "/tmp",
    "/usr",
    "/var",
)


def _data_mount(value: Any) -> str:
    if value == "":
        return ""  # the default: a data folder inside Jupyter's workspace
    problem = _workspace(value)
    if problem:
        return problem
    parts = [part for part in value.split("/") if part not in ("", "~")]
    if not parts or value.startswith("~") and not value.startswith("~/"):
        return f"must be a folder inside the home or a new top-level folder (~/data, /data), not {value!r}"
    if any(part.startswith(".") for part in parts):
        return f"must not be a hidden folder (it would cover ~/.ssh and the like), not {value!r}"
    if value.startswith("/") and ("/" + parts[0] in SYSTEM_FOLDERS or value.rstrip("/") in ("/mnt", "/media")):
        return f"must not cover a system folder ({'/' + parts[0]}); use /data or ~/data, not {value!r}"
    return ""


MAX_VOLUME_GB = 16384  # EBS gp3's and a Cinder default's ceiling; GCE allows more, no lab here needs it


def _volume_gb(value: Any) -> str:
    ok = _whole(value) and 1 <= value <= MAX_VOLUME_GB
    return "" if ok else f"must be the volume's size in GB, a whole number from 1 to {MAX_VOLUME_GB}, not {value!r}"


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) and v for v in value)


def _list(value: Any) -> str:
    if not _strings(value):
        return f"must be a list of strings, e.g. [numpy, pandas], not {value!r}"
    bad = next((v for v in value if unsafe(v)), None)
    return "" if bad is None else f"each must be {PLAIN}, not {bad!r}"


def pattern_problem(pattern: str) -> bool:
    """True for a sync pattern that could reach outside the workspace or into a dot-folder (.ssh, .aws)."""
    parts = pattern.split("/")
    return bool(
        CONTROL.search(pattern)
        or pattern.startswith(("/", "~"))
        or "\\" in pattern
        or any(part == ".." or part.startswith(".") for part in parts)
    )


def _patterns(value: Any) -> str:  # control characters too are the pattern rule's to refuse
    if not _strings(value):
        return f"must be a list of strings, e.g. [numpy, pandas], not {value!r}"
    bad = next((p for p in value if pattern_problem(p)), None)
    return (
        ""
        if bad is None
        else (
            f"each pattern names files under the workspace: relative, no '..' and no dot-folder or dot-file "
            f"(e.g. *.ipynb, results/*.csv), not {bad!r}"
        )
    )


def _map(value: Any) -> str:
    ok = isinstance(value, dict) and not any(unsafe(str(item)) for pair in value.items() for item in pair)
    return "" if ok else f"must be a mapping of plain text, not {value!r}"


def _hosts(value: Any) -> str:  # each reaches an ssh config and ssh command lines, as `jump` does
    ok = isinstance(value, list) and all(jump_problem(v) is None for v in value)
    return "" if ok else f"must be a list of [user@]host[:port], e.g. [ws2.example.org], not {value!r}"


def _size(value: Any) -> str:
    return "" if parse_size(value) is not None else f"must be a size like 500K, 100M or 2G, not {value!r}"


def _duration(value: Any) -> str:
    ok = parse_duration(value) is not None
    return "" if ok else f"must be a duration like 60m, 2h, 1h30m or off, not {value!r}"


def _count(value: Any) -> str:
    ok = _whole(value) and 0 <= value <= 100
    return "" if ok else f"must be a whole number of machines from 0 to 100, not {value!r}"


def _positive_int(value: Any) -> str:
    return "" if _whole(value) and value > 0 else f"must be a positive whole number, not {value!r}"


def _port(value: Any) -> str:
    return "" if _whole(value) and 0 < value < 65536 else f"must be a port number from 1 to 65535, not {value!r}"


def _positive_number(value: Any) -> str:
    return "" if _number(value) and value > 0 else f"must be a positive number, e.g. 0.5, not {value!r}"


def _percent(value: Any) -> str:  # 0 would make any GPU busy, so the VM would never stop
    return (
        "" if _number(value) and 0 < value <= 100 else f"must be a percent above 0, at most 100, e.g. 10, not {value!r}"
    )


def _price(value: Any) -> str:  # 0 is a price too: a machine the lab does not pay for by the hour
    ok = _number(value) and 0 <= value < 10_000
    return "" if ok else f"must be US dollars an hour, a number like 0.085, not {value!r}"


def _flag(value: Any) -> str:
    return "" if isinstance(value, bool) else f"must be true or false, not {value!r}"


TEXT = Kind(_text, str)  # printed (a size, a zone, a project): plain text; a number is its text
HOST = Kind(_host, str)
USER_NAME = Kind(_user, str)
JUMP_HOST = Kind(_jump, str)
HOST_PATH = Kind(_host_path, str)  # a path on the host
LOCAL_PATH = Kind(_local_path, lambda value: Path(value).expanduser())  # a path on this machine
WORKSPACE_PATH = Kind(_workspace)
DATA_MOUNT = Kind(_data_mount)
VOLUME_GB = Kind(_volume_gb, int, typed=True)
TEXT_LIST = Kind(_list, tuple)
SYNC_PATTERNS = Kind(_patterns, tuple)
TEXT_MAP = Kind(_map)
SSH_HOSTS = Kind(_hosts, tuple)
SIZE_BYTES = Kind(_size, parse_size)
DURATION_SECONDS = Kind(_duration, parse_duration)
MACHINES = Kind(_count, int)
POSITIVE_INT = Kind(_positive_int, int, typed=True)
PORT = Kind(_port, int, typed=True)
POSITIVE_NUMBER = Kind(_positive_number, float, typed=True)
PRICE = Kind(_price, float, typed=True)
PERCENT = Kind(_percent, float, typed=True)
FLAG = Kind(_flag, typed=True)
