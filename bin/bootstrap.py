"""Installs labvm into .venv with what this checkout's profiles need, once; bin/bootstrap and bin\\inv.cmd run it
with .venv's python (standard library only: nothing else is installed yet).

    python bin/bootstrap.py [aws|openstack|gce|test ...]

labvm's own dependencies always; a cloud's SDK when hosts.yml has a profile on that cloud (`provider: aws`) or
when asked for by name; `test` adds the test dependencies (every SDK among them).  uv installs them (a dependency
of labvm anyway, for the local profile's environment): taken from PATH, or installed into .venv by pip first.
The stamp file (.venv/.labvm-installed[-test]) holds the extras installed: nothing is installed again until
pyproject.toml changes or a profile names a cloud whose SDK is missing."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLOUDS = ("aws", "openstack", "gce")  # pyproject.toml's extras, one per cloud SDK
# pip's settings that hold lists, and uv's flag for each (one flag per item).
PIP_LISTS = {
    "extra-index-url": "--extra-index-url",
    "find-links": "--find-links",
    "constraint": "--constraint",
    "trusted-host": "--allow-insecure-host",
}
# A profile's `provider:` line in hosts.yml, as YAML writes it (quoted or not, in a flow mapping or not):
# read with a pattern, as PyYAML is not installed yet.  A commented-out profile asks for nothing.
PROVIDER = re.compile(r"""^(?:\s*|[^#\n]*[{,]\s*)provider:\s*["']?(aws|openstack|gce)\b""", re.MULTILINE)


def say(line: str) -> None:
    print(f"bin/bootstrap: {line}", file=sys.stderr, flush=True)


def hosts_file() -> Path:
    """The hosts.yml labvm will read (LABVM_HOSTS, as labvm.config.paths reads it, or the checkout's)."""
    return Path(os.environ.get("LABVM_HOSTS") or ROOT / "hosts.yml").expanduser()


def wanted(asked: list[str]) -> set[str]:
    """The extras this checkout needs: the clouds its profiles use, and what was asked for by name."""
    unknown = [a for a in asked if a not in CLOUDS + ("test",)]
    if unknown:
        say(f"unknown extra {unknown[0]!r}: give any of {', '.join(CLOUDS)}, test")
        raise SystemExit(2)
    try:
        text = hosts_file().read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    clouds = set(CLOUDS) if "test" in asked else set(PROVIDER.findall(text))  # the tests use every SDK
    return set(asked) | clouds


def installed(stamp: Path) -> set[str] | None:
    """The extras the stamp says were installed; None when pyproject.toml changed since (or no stamp)."""
    try:
        if stamp.stat().st_mtime < (ROOT / "pyproject.toml").stat().st_mtime:
            return None
        return set(stamp.read_text().split())
    except OSError:
        return None


def uv() -> list[str]:
    """The uv to install with: on PATH, in .venv, or installed into .venv by pip (a single wheel)."""
    found = shutil.which("uv")
    if found:
        return [found]
    here = Path(sys.executable).parent / ("uv.exe" if os.name == "nt" else "uv")
    if not here.exists():
        say("installing uv (the installer) into .venv")
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "uv"], check=True)
    return [str(here)]


def pip_settings() -> tuple[list[str], dict[str, str]]:
    """pip's own configuration (pip.conf and PIP_* variables, as `pip config list` shows them) as uv's flags and
    variables: a lab's package mirror, wheel folder, constraints and certificate hold for uv as they do for pip
    (uv reads no pip.conf)."""
    shown = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=False
    ).stdout
    single, lists, variables = {}, [], {}
    for line in shown.splitlines():  # e.g. global.extra-index-url='file:///srv/pypi https://mirror/simple'
        found = re.match(r"^(?:[^.=]*)\.([a-z-]+)='(.*)'$", line)
        if not found:
            continue
        key, value = found.groups()
        if key == "cert":
            variables["SSL_CERT_FILE"] = value
        elif key == "index-url":
            single["--index-url"] = value
        elif key in PIP_LISTS:
            lists += [item for v in value.split() for item in (PIP_LISTS[key], v)]
    # pip takes the best version among all its indexes; uv only looks past the first index that has a package
    # when told (uv's docs, "Index strategy"): pip's rule, so a lab's mirror with an older release is no dead end.
    strategy = ["--index-strategy", "unsafe-best-match"] if lists or single else []
    return [*(item for pair in single.items() for item in pair), *lists, *strategy], variables


def install(extras: set[str]) -> None:
    """labvm, editable, with these extras, into the running python's environment; uv shows its progress."""
    named = ",".join(sorted(extras))
    say(f"installing labvm{f' with {named}' if named else ''} into .venv (a minute at most the first time)")
    started = time.monotonic()
    target = f"{ROOT}[{named}]" if named else str(ROOT)
    flags, variables = pip_settings()
    with_uv = [*uv(), "pip", "install", "--python", sys.executable, *flags, "-e", target]
    if subprocess.run(with_uv, env={**os.environ, **variables}, check=False).returncode != 0:
        # What uv cannot do where pip can (a setting of pip's uv has no word for): pip, slower, as before uv.
        say("uv could not install it (above); trying pip, which reads its own settings")
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", target], check=True)
    say(f"done in {time.monotonic() - started:.0f} s")


def main(asked: list[str]) -> int:
    stamp = Path(sys.prefix) / (".labvm-installed-test" if "test" in asked else ".labvm-installed")
    needed = wanted(asked)
    have = installed(stamp)
    if have is None or not needed <= have:
        try:
            install(needed | (have or set()))
        except subprocess.CalledProcessError as e:
            say(f"installing failed (exit {e.returncode}): the lines above say why; run bin/bootstrap again")
            return 1
        have = needed | (have or set())
    stamp.write_text(" ".join(sorted(have)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
