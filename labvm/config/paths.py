"""The local paths hosts.yml names: only what the checkout could have shipped.

environment_file goes to the VM and sync_dir is where labvm writes and sends from: each must be
inside hosts.yml's folder, with no dot part and none of labvm's own state (_checkout_path_problem);
sync_dir also never meets the code labvm runs.  Paths on the VM are the kinds' to check (workspace).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

PACKAGE_DIR = Path(__file__).resolve().parent.parent  # labvm/
DEFAULT_SYNC_DIR = "notebooks/{profile}"


def environment_file_problem(folder: Path, env_file: str) -> str | None:
    """The environment file goes to the VM: only a file the checkout could ship (a shared hosts.yml
    must not upload .env, .git/config or a key)."""
    target, problem = _checkout_path_problem(folder, env_file)
    if not problem and not target.is_file():
        problem = "not found"
    if problem:
        return f"{problem}; put the environment file in hosts.yml's folder under a plain name, e.g. environment.yml"
    return None


def sync_dir_problem(folder: Path, profile: str, sync_dir: Any) -> str | None:
    """sync writes what the VM holds into sync_dir and sends from it: a folder of its own that the
    checkout could ship, never hosts.yml's folder itself, never meeting the code labvm runs (its package,
    bin/, scripts/) nor holding tasks.py's folder."""
    written = str(sync_dir or DEFAULT_SYNC_DIR)
    target, problem = _checkout_path_problem(folder, written.replace("{profile}", profile))
    checkout = PACKAGE_DIR.parent
    code = [PACKAGE_DIR, checkout / "bin", checkout / "scripts"]
    if target == folder.resolve():
        problem = "is hosts.yml's folder itself"
    elif checkout.is_relative_to(target) or any(_meet(target, c) for c in code):
        problem = "holds code labvm runs"
    return (
        f"{written} {problem}; sync into a folder of its own beside hosts.yml, e.g. notebooks/{{profile}}"
        if problem
        else None
    )


def _checkout_path_problem(folder: Path, written: str) -> tuple[Path, str | None]:
    """A local path hosts.yml names, resolved (symlinks followed), and why it may not leave the laptop
    or be written by labvm (None: it may): the rule sync already keeps, for every such path.  It must
    be inside hosts.yml's folder, with no dot-file or dot-folder in it (.env, .git/config, .ssh, .venv),
    and meet none of labvm's own state: its ssh folder (keys, known_hosts, the run folder) and the
    Python environment it runs from."""
    base = folder.resolve()
    given = base / Path(written).expanduser()
    try:
        target = given.resolve()
    except RuntimeError:  # Python before 3.13 raises for a symlink loop
        return given, "is a symlink loop"
    if not target.is_relative_to(base):
        return target, f"is outside {base} (a symlink out counts)"
    hidden = next((part for part in target.relative_to(base).parts if part.startswith(".")), None)
    if hidden:
        return target, f"is hidden ({hidden}): labvm neither sends a dot-file off the laptop nor writes into one"
    state = next((s for s in _labvm_state(base) if _meet(target, s)), None)
    if state:
        return target, f"is or holds labvm's own state ({state}): its keys and environment never leave the laptop"
    return target, None


def _labvm_state(base: Path) -> list[Path]:
    """What labvm keeps on this machine: the ssh folder it writes (LABVM_SSH_DIR, else ~/.ssh, as
    sshconfig.SshHome reads it), and the Python environment it runs from where that is in the checkout
    (a .venv beside hosts.yml; a checkout under a system-wide prefix such as /usr/src is not in it)."""
    ssh_home = Path(os.environ.get("LABVM_SSH_DIR") or "~/.ssh").expanduser().resolve()
    prefix = Path(sys.prefix).resolve()
    return [ssh_home, *([prefix] if prefix.is_relative_to(base) else [])]


def _meet(one: Path, other: Path) -> bool:
    """Whether one path holds the other (or is it)."""
    return one.is_relative_to(other) or other.is_relative_to(one)
