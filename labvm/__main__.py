"""`python -m labvm <task> ...`: labvm's tasks without a shell script (bin\\inv.cmd on Windows runs
this), as bin/inv does: invoke's own Program over the repository's tasks.py."""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path

from invoke import Program

ROOT = Path(__file__).resolve().parent.parent  # where tasks.py and hosts.yml live


def main() -> None:
    """Runs invoke's Program over tasks.py with this command line's arguments, as bin/inv does."""
    try:
        version = metadata.version("labvm")
    except metadata.PackageNotFoundError:  # run from a checkout that was not installed
        version = "unknown"
    program = Program(name="labvm", binary="python -m labvm", binary_names=["labvm"], version=version)
    program.run(["labvm", "--search-root", str(ROOT), *sys.argv[1:]])


if __name__ == "__main__":
    main()
