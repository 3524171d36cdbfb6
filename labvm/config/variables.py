""".env, the environment and hosts.yml's ${VAR}: what each may feed, and what it may never.

- `.env` feeds `${VAR}`; only dotenv_to_environ() names also enter the process environment,
  and a name that changes where labvm talks or what it (or a shell it starts) runs is refused.
- `${VAR}` reads `.env` and, from the environment, only environ_to_hosts() names: a shared
  hosts.yml cannot carry GITHUB_TOKEN or AWS_SECRET_ACCESS_KEY out in a host name.
- the cloud SDKs' own files are named by the user alone: their variables never come from .env, and
  from the shell only as full paths (providers.registry.sdk_files_problem), never read from the
  current folder.

The rules are here; the names each cloud's SDK reads are the providers' registry's, asked for on first
use (providers import config, so not at the top) and kept.
"""

from __future__ import annotations

import fnmatch
import functools
import io
import os
import re
from pathlib import Path
from typing import Any

from ..errors import LabvmError
from .reading import read_text

VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# What .env may put into os.environ besides the clouds' account names (dotenv_to_environ): the profile a
# task uses (Config.resolve).  Nothing that says where to connect.
DOTENV_LABVM = ("LABVM_HOST",)
# Names that change where labvm talks (endpoints, proxies, certificates), what it or a shell it starts runs
# (BASH_ENV, PYTHON*, LD_*, RSYNC_*, SSH_*, GIT_*), or where its keys live: a shared .env must not set them,
# nor the clouds' own (their SDK files and endpoints: dotenv_refused); your own shell may.
REFUSED_FROM_DOTENV = (
    r"LABVM_(SSH_DIR|HOSTS|AUTOSTOP_COMMAND)|.*ENDPOINT.*|.*_PROXY|.*CA_BUNDLE|SSL_CERT_.*|"
    r"BASH_ENV|ENV|PATH|HOME|SHELL|IFS|PS4|PROMPT_COMMAND|CDPATH|TMPDIR|BROWSER|EDITOR|VISUAL|PAGER|"
    r"PYTHON.*|LD_.*|DYLD_.*|RSYNC_.*|SSH_.*|GIT_.*|INVOKE_.*|XDG_.*"
)
# Whose cloud machines labvm finds, starts, stops and deletes (labvm:owner): a colleague's .env saying
# LABVM_OWNER=alice would point bob's `inv terminate` at alice's VM.  Only your own shell says so.
DOTENV_OWNER = "LABVM_OWNER"
# What hosts.yml's ${VAR} may read from the environment (besides .env), before the clouds' account names:
# labvm's own names and the login name.  Anything else (tokens, keys) stays unread.
ENVIRON_LABVM = ("LABVM_*", "USER")


@functools.cache
def dotenv_to_environ() -> frozenset[str]:
    """What .env may put into os.environ: what labvm (Config.resolve) and the clouds' SDKs read to pick a
    profile, an account's profile or a region (the registry's ACCOUNT_VARIABLES and each cloud's switches)."""
    from ..providers.registry import ACCOUNT_VARIABLES, CLOUDS

    switches = (name for cloud in CLOUDS.values() for name in cloud.switches)
    return frozenset({*DOTENV_LABVM, *ACCOUNT_VARIABLES, *switches})


@functools.cache
def dotenv_refused() -> re.Pattern[str]:
    """The names a shared .env may not set: REFUSED_FROM_DOTENV, and each cloud's SDK files and endpoints."""
    from ..providers.registry import CLOUDS

    clouds = [name for cloud in CLOUDS.values() for name in (*cloud.refused, *cloud.sdk_files)]
    return re.compile("|".join([REFUSED_FROM_DOTENV, *clouds]), re.IGNORECASE)


@functools.cache
def environ_to_hosts() -> tuple[str, ...]:
    """What hosts.yml's ${VAR} may read from the environment: ENVIRON_LABVM, then the clouds' account names."""
    from ..providers.registry import ACCOUNT_VARIABLES

    return (*ENVIRON_LABVM, *ACCOUNT_VARIABLES)


def read_dotenv(path: Path) -> dict[str, str]:
    """The variables of .env beside hosts.yml, taken literally (no ${...} inside is expanded:
    that would read the environment); a line python-dotenv cannot parse is an error."""
    if not path.exists():
        return {}
    if not path.is_file():
        raise LabvmError(f"{path}: not a file; .env beside hosts.yml holds NAME=value lines")
    from dotenv.parser import parse_stream

    variables = {}
    for binding in parse_stream(io.StringIO(read_text(path, ".env"))):
        line = f"{path}: line {binding.original.line}"
        if binding.error:
            raise LabvmError(
                f"{line}: not a NAME=value line (quote a value with spaces or '#', e.g. NAME=\"a b\"); see .env.example"
            )
        if binding.key is None or binding.value is None:
            continue
        if binding.key.upper() == DOTENV_OWNER:
            raise LabvmError(
                f"{line}: {DOTENV_OWNER} is refused from .env (it decides whose cloud machines labvm "
                f"starts, stops and deletes); remove the line, and if you mean it set it in your own "
                f"shell: export {DOTENV_OWNER}=..."
            )
        if dotenv_refused().fullmatch(binding.key):
            raise LabvmError(
                f"{line}: {binding.key} is refused from .env (it changes where labvm connects "
                f"or what it runs); remove the line, or set it in your own shell if you mean it"
            )
        if "\x00" in binding.value:
            raise LabvmError(f"{line}: {binding.key} holds a NUL character; no program can receive it, fix that line")
        variables[binding.key] = binding.value
    return variables


def readable_from_environ(name: str) -> bool:
    """Whether hosts.yml's ${name} may read the environment (environ_to_hosts)."""
    return any(fnmatch.fnmatchcase(name, allowed) for allowed in environ_to_hosts())


def expand(value: Any, where: str, variables: dict[str, str], problems: list[str], refused: dict[str, str]) -> Any:
    """value with each ${NAME} replaced. A NAME only the environment holds, outside
    environ_to_hosts(), is still substituted so the value can be checked, and recorded in
    refused (key -> NAME): the profile is then refused, its value never printed."""
    if isinstance(value, dict):
        return {k: expand(v, f"{where}.{k}", variables, problems, refused) for k, v in value.items()}
    if isinstance(value, list):
        return [expand(v, where, variables, problems, refused) for v in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in variables:
            return variables[name]
        if name in os.environ:
            refused.setdefault(where, name)
            return os.environ[name]
        problems.append(f"{where}: ${{{name}}} is not set; {next_step(name)}")
        return ""

    return VAR.sub(substitute, value)


def holds_variable(value: Any) -> bool:
    """A string, or a list of them, with a ${VAR} in it."""
    return any(isinstance(v, str) and VAR.search(v) for v in (value if isinstance(value, list) else [value]))


def refusal(name: str) -> str:
    """Why hosts.yml's ${name} may not read the environment, and what to do instead."""
    return (
        f"${{{name}}} is not one hosts.yml may read from the environment (only "
        f"{', '.join(environ_to_hosts())}); {next_step(name)}"
    )


def next_step(name: str) -> str:
    """Where to set ${name} so hosts.yml may read it (or that it must be written out instead)."""
    if dotenv_refused().fullmatch(name):
        return f"{name} cannot come from .env either: write the value itself in hosts.yml"
    where = "in the environment or in .env" if readable_from_environ(name) else "in .env"
    return f"set {name} {where} beside hosts.yml (see .env.example)"
