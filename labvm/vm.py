"""The host's side of labvm as the laptop sees it: the scripts/ folder, what of it a host runs, and
the two files both sides read, loaded from there (no copy kept equal by hand).

- `layout` (scripts/layout.py): where labvm's files are on a host, its names, routes and ports;
  the host's scripts import it (Python) or source it (sh).
- `duration` (scripts/words.py): how a duration is written, on the host and here.

Both load with the standard library alone (no Fabric): the keeper and `inv --list` may import this.
"""

from __future__ import annotations

import hashlib
import shlex
import types
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


def _load(name: str) -> types.ModuleType:
    """scripts/NAME.py as a module of its own (labvm.vm.NAME); no bytecode is written into scripts/."""
    path = SCRIPTS / f"{name}.py"
    module = types.ModuleType(f"{__name__}.{name}")
    module.__file__ = str(path)
    exec(compile(path.read_text(), str(path), "exec"), module.__dict__)
    return module


layout = _load("layout")
duration = _load("words").duration


def files() -> list[Path]:
    """What a host gets: every file of scripts/ (uploaded together, labvm.remote)."""
    return sorted(path for path in SCRIPTS.iterdir() if path.is_file())


def digest() -> str:
    """The scripts' digest as the host keeps it beside them (layout.SCRIPTS_DIR/.digest): equal, they are current."""
    return hashlib.sha256(b"".join(path.name.encode() + path.read_bytes() for path in files())).hexdigest()


DIGEST_FILE = f"{layout.SCRIPTS_DIR}/.digest"


def python_command(script: str, *args: str) -> str:
    """A Python script of labvm's as an ssh command runs it: the system's python3, from the login folder."""
    return shlex.join(["python3", f"{layout.SCRIPTS_DIR}/{script}", *args])
