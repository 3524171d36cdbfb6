"""Help where a newcomer looks for it, through the real entry points (bin/inv and its bin/bootstrap,
`python -m labvm`, invoke's own `inv`): `bin/inv` alone lists the tasks, `TASK -h` and `TASK --help`
describe the task's options, and `-H` is --host's short flag (`-h` is everyone's help)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from realhost import INV, ROOT

LOCAL = "default: local\nprofiles:\n  local: {provider: local, env: {manager: uv}}\n"


@pytest.fixture
def checkout(tmp_path) -> Path:
    """A clone whose .venv is already made: the real bin/inv, bin/bootstrap and tasks.py (linked, so
    each runs from the clone's folder as it does after `git clone`), this test run's `inv` as .venv's.
    bin/bootstrap sees its stamp newer than pyproject.toml and hosts.yml and installs nothing."""
    for name in ("bin/inv", "bin/bootstrap", "bin/bootstrap.py", "tasks.py", "pyproject.toml"):
        if (ROOT / name).exists():
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name).symlink_to(ROOT / name)
    venv_bin = tmp_path / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "inv").symlink_to(Path(sys.executable).parent / "inv")
    (tmp_path / "hosts.yml").write_text(LOCAL)
    stamp = tmp_path / ".venv" / ".labvm-installed"
    stamp.touch()
    later = time.time() + 60  # newer to the second, as test(1)'s -nt may compare
    os.utime(stamp, (later, later))
    return tmp_path


def run(command: list[str], folder: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABVM_")}
    env.update(LABVM_HOSTS=str(folder / "hosts.yml"), LABVM_SSH_DIR=str(folder / "ssh"), HOME=str(folder))
    result = subprocess.run(
        command, capture_output=True, text=True, env=env, cwd=folder, stdin=subprocess.DEVNULL, timeout=120
    )
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    return result


def tasks_listed(result: subprocess.CompletedProcess) -> set[str]:
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Available tasks:"), result.stdout
    return {line.split()[0] for line in result.stdout.splitlines() if line.startswith("  ")}


def task_names(result: subprocess.CompletedProcess) -> set[str]:
    """Each task `inv --list` names, and its aliases (`env (conda)`): not the words of a wrapped docstring."""
    tasks_listed(result)
    found = (re.match(r"  (\S+)(?: \(([^)]*)\))?", line) for line in result.stdout.splitlines()[1:])
    return {name for match in found if match for name in (match[1], *(match[2] or "").split(", ")) if name}


def test_bin_inv_alone_lists_the_tasks(checkout):
    listed = tasks_listed(run([str(checkout / "bin" / "inv")], checkout))
    assert {"up", "down", "status", "check", "hosts"} <= listed


def test_python_dash_m_labvm_alone_lists_the_tasks(checkout):
    # bin\inv.cmd on Windows runs `python -m labvm`.
    listed = tasks_listed(run([sys.executable, "-m", "labvm"], checkout))
    assert {"up", "down", "status", "check", "hosts"} <= listed


@pytest.mark.parametrize("flag", ["-h", "--help"])
@pytest.mark.parametrize("task", ["up", "status", "sync", "hosts"])
def test_a_tasks_help_flag_describes_its_options(checkout, task, flag):
    result = run([str(checkout / "bin" / "inv"), task, flag], checkout)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: "), result.stdout
    assert f" {task} [--options]" in result.stdout.splitlines()[0] or task == "hosts"
    if task != "hosts":
        assert "-H PROFILE, --host=PROFILE" in result.stdout, result.stdout


def test_dash_capital_h_names_the_profile_and_dash_h_runs_nothing(checkout):
    named = run([str(checkout / "bin" / "inv"), "status", "-H", "local"], checkout)
    assert named.returncode == 0, named.stderr
    assert named.stdout.splitlines()[0] == "local (local, this machine): reachable"
    # Someone used to `-h NAME`: invoke takes NAME for a task, and nothing is run.
    old = run([*INV, "status", "-h", "local"], checkout)
    assert old.returncode == 1 and "reachable" not in old.stdout


def test_every_option_names_what_its_value_is(checkout):
    """Issue 28, C12: `--interval=STRING` said nothing; each value names what it is (SECONDS, PROFILE...)."""
    inv = str(checkout / "bin" / "inv")
    shown = {task: run([inv, task, "-h"], checkout).stdout for task in task_names(run([inv], checkout))}
    typed_only = {task: re.findall(r"\S+=(?:STRING|INT)\b", text) for task, text in shown.items()}
    assert {task: flags for task, flags in typed_only.items() if flags} == {}
    assert "-i SECONDS, --interval=SECONDS" in shown["sync"]
    assert "-s ACCOUNT, --share=ACCOUNT" in shown["snapshot"]  # repeatable: invoke showed no value at all
    assert "--extend=DURATION" in shown["autostop"] and "--workers=COUNT" in shown["cluster"]


def readme_tasks() -> set[str]:
    """The task names in README's task table: the first word of each `code` span of a row's first cell."""
    table = ROOT.joinpath("README.md").read_text().split("| task | what it does |", 1)[1].split("\n\n", 1)[0]
    rows = [line.split(" | ")[0] for line in table.splitlines() if line.startswith("| `")]
    return {span.split()[0] for row in rows for span in re.findall(r"`([^`]+)`", row)}


def test_every_task_is_in_the_readmes_task_table(checkout):
    """Issue 28, C12: a newcomer reads the README's table; `check` and `cluster` were missing from it."""
    listed = task_names(run([str(checkout / "bin" / "inv")], checkout))
    assert {"up", "env", "conda", "start-notebook"} <= listed
    assert listed - readme_tasks() == set()
