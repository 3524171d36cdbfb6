"""What tasks.py needs to stay thin: the profile for --host, and errors as one clean exit."""

from __future__ import annotations

import functools
from pathlib import Path

from invoke.exceptions import Exit

from . import config
from .errors import LabvmError
from .session import Session

HOSTS_FILE = Path(__file__).resolve().parent.parent / "hosts.yml"
HOST_HELP = "profile in hosts.yml (default: $LABVM_HOST, then `default:`)"


def load() -> config.Config:
    return config.load(HOSTS_FILE)


def session(context, host: str | None) -> Session:
    return Session(load().resolve(host), context)


def guarded(body):
    """A LabvmError becomes its message and exit status 1: never a traceback."""

    @functools.wraps(body)
    def run(*args, **kwargs):
        try:
            return body(*args, **kwargs)
        except LabvmError as e:
            raise Exit("\n".join(f"labvm: {line}" for line in str(e).splitlines()), code=1) from None
        except KeyboardInterrupt:
            raise Exit("labvm: interrupted; run the same task again to resume", code=130) from None

    return run
