"""hosts.yml (+ .env) -> Config, and a profile of it -> a checked, frozen Profile.

load() reads the whole file and reports every problem at once, one line each; `${VAR}` is resolved
(and what it gave checked) only for the profiles a task uses, so a missing GCE_PROJECT never blocks
`inv up --host local`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import LabvmError
from .kinds import did_you_mean
from .paths import environment_file_problem, sync_dir_problem
from .reading import parse_yaml, read_text
from .schema import Profile, check_profile, coerce, image_user, profile_keys, read_profile, unknown_keys
from .variables import dotenv_to_environ, expand, read_dotenv, readable_from_environ, refusal

TOP_KEYS = ("default", "defaults", "profiles")
MAX_PROFILE_NAME = 32  # it names labvm's files, ssh aliases and cloud resources


@dataclass(frozen=True)
class Config:
    """hosts.yml as load() read it: every profile's keys checked, ${VAR} not yet resolved."""

    path: Path
    default: str
    names: tuple[str, ...]
    raw: dict[str, dict[str, Any]]  # merged, unvalidated-for-variables profile mappings
    variables: dict[str, str]

    def profile(self, name: str, origin: str = "--host") -> Profile:
        """The profile `name` (named by origin, for the message), ${VAR} resolved and every value checked."""
        if name not in self.raw:
            hint = did_you_mean(name, self.names)
            raise LabvmError(
                f"{self.path}: no profile {name!r} (from {origin}){hint}; profiles: {', '.join(self.names)}"
            )
        problems: list[str] = []
        refused: dict[str, str] = {}
        where = f"profiles.{name}"
        data = expand(self.raw[name], where, self.variables, problems, refused)
        if not problems:
            coerce(self.raw[name], data, profile_keys(data.get("provider")))
            check_profile(data, where, problems, expanded=True, refused=refused)
        problems += [
            f"{key}: {refusal(variable)}"
            for key, variable in refused.items()
            if not any(p.startswith(f"{key}: ") for p in problems)
        ]
        if not problems:
            problem = sync_dir_problem(self.path.parent, name, data.get("sync_dir"))
            if problem:
                problems.append(f"{where}.sync_dir: {problem}")
        env_file = (data.get("env") or {}).get("environment_file") if not problems else None
        if env_file:
            problem = environment_file_problem(self.path.parent, str(env_file))
            if problem:
                problems.append(f"{where}.env.environment_file: {env_file} {problem}")
        if not problems and not data.get("user"):
            data["user"] = image_user(data, where, problems)
        if problems:
            raise LabvmError(_report(self.path, problems))
        return read_profile(name, data, self.path)

    def resolve(self, host: str | None) -> Profile:
        """--host, then LABVM_HOST, then `default:` in hosts.yml."""
        if host:
            return self.profile(host, "--host")
        if self.variables.get("LABVM_HOST"):
            return self.profile(self.variables["LABVM_HOST"], "LABVM_HOST")
        return self.profile(self.default, "default:")


def load(path: Path) -> Config:
    """hosts.yml at path (LABVM_HOSTS names another) and the .env beside it, every profile's keys
    checked; a LabvmError listing every problem, one line each."""
    origin = "LABVM_HOSTS" if os.environ.get("LABVM_HOSTS") else "hosts.yml"
    path = Path(os.environ.get("LABVM_HOSTS") or path)
    if not path.exists():
        raise LabvmError(f"{path}: not found; copy hosts.yml from the labvm repository")
    if not path.is_file():
        raise LabvmError(f"{path}: not a file; {origin} must name a hosts.yml file")
    doc = parse_yaml(path, read_text(path, "hosts.yml"))
    dotenv = read_dotenv(path.parent / ".env")
    for name in dotenv_to_environ() & dotenv.keys():
        os.environ.setdefault(name, dotenv[name])  # the real environment wins
    variables = {**dotenv, **{k: v for k, v in os.environ.items() if readable_from_environ(k)}}

    problems: list[str] = []
    if not isinstance(doc, dict):
        raise LabvmError(f"{path}: must be a mapping with keys {', '.join(TOP_KEYS)}")
    unknown_keys(doc, TOP_KEYS, "", problems)
    defaults = doc.get("defaults") or {}
    profiles = doc.get("profiles") or {}
    if not isinstance(defaults, dict):
        problems.append("defaults: must be a mapping of profile keys")
        defaults = {}
    if not isinstance(profiles, dict) or not profiles:
        problems.append("profiles: must map profile names to settings, e.g. local: {provider: local}")
        profiles = {}
    raw: dict[str, dict[str, Any]] = {}
    for name, settings in profiles.items():
        where = f"profiles.{name}"
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", str(name)):
            problems.append(f"{where}: a profile name may hold letters, digits, '.', '_' and '-'")
            continue
        if len(str(name)) > MAX_PROFILE_NAME:
            problems.append(
                f"{where}: a profile name is at most {MAX_PROFILE_NAME} characters (it names labvm's "
                f"files, ssh aliases and cloud resources); this one has {len(str(name))}"
            )
            continue
        if not isinstance(settings, dict):
            problems.append(f"{where}: must be a mapping, e.g. {{provider: ssh, address: host}}")
            continue
        merged = _merge(defaults, settings)
        check_profile(merged, where, problems)
        raw[str(name)] = merged
    default = doc.get("default") or (next(iter(raw)) if raw else "")
    if raw and default not in raw:
        problems.append(f"default: no profile {default!r}{did_you_mean(str(default), raw)}; profiles: {', '.join(raw)}")
    if problems:
        raise LabvmError(_report(path, problems))
    return Config(path, str(default), tuple(raw), raw, variables)


def _merge(defaults: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    """A profile's settings over `defaults:`; a mapping (env, notebook, ...) merged one level down."""
    merged = dict(defaults)
    for key, value in settings.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def _report(path: Path, problems: list[str]) -> str:
    return "\n".join(f"{path}: {p}" for p in problems)
