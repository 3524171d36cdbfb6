"""`python -m labvm <task> ...`: labvm's tasks without a shell script (bin\\inv.cmd on Windows runs
this), as bin/inv does: invoke's own Program over the repository's tasks.py."""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path

from invoke import Program
from invoke.exceptions import Exit

ROOT = Path(__file__).resolve().parent.parent  # where tasks.py and hosts.yml live


class Labvm(Program):
    """invoke's Program, except that no task at all lists the tasks (as bin/inv alone does)."""

    def no_tasks_given(self) -> None:
        """The tasks, where invoke would print its own options: what a newcomer is looking for."""
        self.list_tasks()
        raise Exit


def main() -> None:
    """Runs invoke's Program over tasks.py with this command line's arguments, as bin/inv does."""
    try:
        version = metadata.version("labvm")
    except metadata.PackageNotFoundError:  # run from a checkout that was not installed
        version = "unknown"
    program = Labvm(name="labvm", binary="python -m labvm", binary_names=["labvm"], version=version)
    program.run(["labvm", "--search-root", str(ROOT), *sys.argv[1:]])


if __name__ == "__main__":
    main()
