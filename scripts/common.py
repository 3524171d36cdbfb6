"""What labvm's Python scripts on the host share (nbctl.py, autostop.py): their messages, their
files, labvm's Jupyter servers and its API.  Standard library only, Python 3.8+."""

import glob
import json
import os
import sys
import urllib.request
from datetime import datetime

import layout

HOME = os.path.expanduser("~")


def home_path(relative):
    """A path of layout.py (relative to the home folder) as this host names it."""
    return os.path.join(HOME, relative)


STATE = home_path(layout.STATE_DIR)
RUNTIME = home_path(layout.RUNTIME_DIR)


def say(message):
    """A message for the user, on stderr (stdout carries the data labvm reads)."""
    print(message, file=sys.stderr, flush=True)


def write_private(path, text):
    """The file whole (a reader sees the old one or the new one), 0600 from its first byte."""
    fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


def read_json(path, default):
    """The file's JSON; `default` when it is missing or unreadable."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return default


def alive(pid):
    """The process runs (one of another user's too).  A zombie does not: it exited, holds no port and serves
    nothing, though its pid stays until its parent waits (never, under a container's pid 1 that reaps
    nothing), and a Jupyter ended by a signal leaves its runtime file naming it."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # the state follows the name in parentheses
    except (OSError, IndexError):
        return True  # no /proc (not Linux): kill's answer stands


def servers(directory):
    """The Jupyter servers whose runtime files are in `directory` and whose process lives."""
    found = []
    for path in glob.glob(os.path.join(directory, "jpserver-*.json")):
        try:
            with open(path) as f:
                info = json.load(f)
        except (OSError, ValueError):
            continue
        if alive(int(info.get("pid", 0))):
            info["runtime_file"] = path
            found.append(info)
    return found


# Lab networks set http_proxy without no_proxy for 127.0.0.1; a proxy cannot reach this host's
# loopback, so labvm's own requests to Jupyter never go through one.
LOOPBACK = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def api(info, path):
    """One call to a server's REST API with its token."""
    # no_track_activity: labvm looking must not count as someone working (idle time, autostop).
    url = "http://127.0.0.1:%d%sapi/%s?no_track_activity=1" % (info["port"], info.get("base_url", "/"), path)
    request = urllib.request.Request(url)
    if info.get("token"):
        request.add_header("Authorization", "token " + info["token"])
    with LOOPBACK.open(request, timeout=5) as response:
        return json.load(response)


def parse_time(text):
    """An ISO 8601 time as Jupyter writes it ('Z' for UTC, which Python 3.8 does not read)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
