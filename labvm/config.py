"""hosts.yml (+ .env) -> validated, frozen Profile objects.

Every problem in the file is reported at once, one line each, naming the file, the
profile and the key, with the closest valid key for a typo. `${VAR}` is resolved from
the environment, then `.env` beside hosts.yml, and only for the profiles a task uses,
so a missing GCE_PROJECT never blocks `inv up --host local`.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

import yaml
from dotenv import load_dotenv

from .errors import LabvmError

PROVIDERS = ("local", "ssh", "openstack", "aws", "gce")
ENV_MANAGERS = ("conda", "uv", "venv")
MULTIPLEXERS = ("tmux", "screen", "nohup")
MINIFORGE_URL = (
    "https://github.com/conda-forge/miniforge/releases/latest/download/"
    "Miniforge3-Linux-x86_64.sh"
)

# Types are checked by name: "str", "int", "port", "bool", "list", "map".
ENV_KEYS = {
    "manager": ENV_MANAGERS,
    "packages": "list",
    "environment_file": "str",
    "prefix": "str",
    "python": "str",
    "conda_installer_url": "str",
    "conda_installer_sha256": "str",
    "conda_root": "str",
}
NOTEBOOK_KEYS = {
    "port": "port",
    "local_port": "port",
    "workspace": "str",
    "multiplexer": MULTIPLEXERS,
    "password": "str",
    "start_timeout": "int",
}
COMMON_KEYS = {
    "provider": PROVIDERS,
    "address": "host",
    "port": "port",
    "user": "user",
    "identity": "str",
    "jump": "jump",
    "env": ENV_KEYS,
    "notebook": NOTEBOOK_KEYS,
    "autostop": "duration",
    "autostop_load": "number",
    "sync": "list",
    "sync_dir": "str",
}
# Each cloud provider's own keys (Profile.cloud_settings).
CLOUD_KEYS = {
    "openstack": {
        "cloud": "str", "image": "str", "flavor": "str", "volume_size": "int",
        "network": "str", "floating_ip_pool": "str", "security_groups": "list",
        "stop_action": ("stop", "shelve"),
    },
    "aws": {
        "region": "str", "instance_type": "str", "image": "str", "volume_size": "int",
        "spot": "bool", "elastic_ip": "bool", "tags": "map", "ssh_cidr": "str",
    },
    "gce": {
        "project": "str", "zone": "str", "machine_type": "str", "image_family": "str",
        "image_project": "str", "disk_size": "int", "static_ip": "bool", "spot": "bool", "ssh_cidr": "str",
    },
}
TOP_KEYS = ("default", "defaults", "profiles")
# address, user and jump go into ~/.ssh/labvm/config and onto ssh command lines.
PATTERNS = {
    "host": (r"[A-Za-z0-9][A-Za-z0-9._:%-]*", "a host name or IP address"),
    "user": (r"[A-Za-z_][A-Za-z0-9._-]*\$?", "a login name (letters, digits, '.', '_', '-')"),
    "jump": (r"(?:[A-Za-z_][A-Za-z0-9._-]*@)?[A-Za-z0-9][A-Za-z0-9._%-]*(?::[0-9]{1,5})?",
             "[user@]host[:port]"),
}
VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
DURATION = re.compile(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
DEFAULT_AUTOSTOP = 3600  # cloud profiles stop themselves after an idle hour unless told otherwise
DEFAULT_SYNC = ("*.ipynb", "*.py", "*.md")


def parse_duration(value: Any) -> int | None:
    """Seconds in `90m`, `2h`, `1h30m`, `45s`; 0 for `off` (YAML reads a bare off as false); None if neither."""
    if value is False or (isinstance(value, str) and value.strip().lower() in ("off", "false", "no")):
        return 0
    match = DURATION.fullmatch(value.strip()) if isinstance(value, str) and value.strip() else None
    if not match:
        return None
    hours, minutes, seconds = (int(part or 0) for part in match.groups())
    return hours * 3600 + minutes * 60 + seconds or None


@dataclass(frozen=True)
class EnvSpec:
    manager: str = "conda"
    packages: tuple[str, ...] = ("jupyterlab",)
    environment_file: Path | None = None
    prefix: str = "~/.labvm/env"
    python: str = "python3"
    conda_installer_url: str = MINIFORGE_URL
    conda_installer_sha256: str = ""
    conda_root: str = "~/miniforge3"


@dataclass(frozen=True)
class NotebookSpec:
    port: int = 8888
    local_port: int = 8888
    workspace: str = "~/work"
    multiplexer: str = "tmux"
    password: str = ""
    start_timeout: int = 120


@dataclass(frozen=True)
class Profile:
    name: str
    provider: str
    source: Path
    address: str = ""
    port: int = 22
    user: str = ""
    identity: Path | None = None
    jump: str = ""
    env: EnvSpec = field(default_factory=EnvSpec)
    notebook: NotebookSpec = field(default_factory=NotebookSpec)
    cloud_settings: Mapping[str, Any] = field(default_factory=dict)  # the provider's own keys
    autostop: int = DEFAULT_AUTOSTOP  # idle seconds before a cloud VM stops itself; 0 = off
    autostop_load: float = 0.5  # a 1-minute load average at or above this is activity
    sync_patterns: tuple[str, ...] = DEFAULT_SYNC
    sync_dir: Path = Path("notebooks")

    @property
    def alias(self) -> str:
        """The name `ssh` knows this profile by (~/.ssh/labvm/config)."""
        return f"labvm-{self.name}"


@dataclass(frozen=True)
class Config:
    path: Path
    default: str
    names: tuple[str, ...]
    raw: dict[str, dict]  # merged, unvalidated-for-variables profile mappings
    variables: dict[str, str]

    def profile(self, name: str, origin: str = "--host") -> Profile:
        if name not in self.raw:
            hint = _did_you_mean(name, self.names)
            raise LabvmError(
                f"{self.path}: no profile {name!r} (from {origin}){hint}; "
                f"profiles: {', '.join(self.names)}"
            )
        problems: list[str] = []
        data = _expand(self.raw[name], f"profiles.{name}", self.variables, problems)
        if not problems:
            _check_profile(data, f"profiles.{name}", problems)
        env_file = (data.get("env") or {}).get("environment_file")
        if env_file and not (self.path.parent / Path(env_file).expanduser()).is_file():
            problems.append(f"profiles.{name}.env.environment_file: {env_file} not found")
        if problems:
            raise LabvmError(_report(self.path, problems))
        return _build(name, data, self.path)

    def resolve(self, host: str | None) -> Profile:
        """--host, then LABVM_HOST, then `default:` in hosts.yml."""
        if host:
            return self.profile(host, "--host")
        if self.variables.get("LABVM_HOST"):
            return self.profile(self.variables["LABVM_HOST"], "LABVM_HOST")
        return self.profile(self.default, "default:")


def load(path: Path) -> Config:
    path = Path(os.environ.get("LABVM_HOSTS") or path)
    if not path.exists():
        raise LabvmError(f"{path}: not found; copy hosts.yml from the labvm repository")
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise LabvmError(f"{path}:{where}: not valid YAML ({getattr(e, 'problem', e)})") from None
    # .env fills the environment (the real environment wins), so what labvm and the cloud
    # SDKs read there (LABVM_OWNER, OS_CLOUD, AWS_PROFILE, ...) may live in .env too.
    load_dotenv(path.parent / ".env", override=False)
    variables = dict(os.environ)

    problems: list[str] = []
    if not isinstance(doc, dict):
        raise LabvmError(f"{path}: must be a mapping with keys {', '.join(TOP_KEYS)}")
    _unknown_keys(doc, TOP_KEYS, "", problems)
    defaults = doc.get("defaults") or {}
    profiles = doc.get("profiles") or {}
    if not isinstance(defaults, dict):
        problems.append("defaults: must be a mapping of profile keys")
        defaults = {}
    if not isinstance(profiles, dict) or not profiles:
        problems.append("profiles: must map profile names to settings, e.g. local: {provider: local}")
        profiles = {}
    raw: dict[str, dict] = {}
    for name, settings in profiles.items():
        where = f"profiles.{name}"
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", str(name)):
            problems.append(f"{where}: a profile name may hold letters, digits, '.', '_' and '-'")
            continue
        if not isinstance(settings, dict):
            problems.append(f"{where}: must be a mapping, e.g. {{provider: ssh, address: host}}")
            continue
        merged = _merge(defaults, settings)
        _check_profile(merged, where, problems)
        raw[str(name)] = merged
    default = doc.get("default") or (next(iter(raw)) if raw else "")
    if raw and default not in raw:
        problems.append(
            f"default: no profile {default!r}{_did_you_mean(str(default), raw)}; "
            f"profiles: {', '.join(raw)}"
        )
    if problems:
        raise LabvmError(_report(path, problems))
    return Config(path, str(default), tuple(raw), raw, variables)


def _merge(defaults: dict, settings: dict) -> dict:
    merged = dict(defaults)
    for key, value in settings.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def _check_profile(data: dict, where: str, problems: list[str]) -> None:
    provider = data.get("provider")
    if provider not in PROVIDERS:
        hint = _did_you_mean(str(provider), PROVIDERS) if provider else ""
        problems.append(f"{where}.provider: must be one of {', '.join(PROVIDERS)}{hint}")
        return
    schema = {**COMMON_KEYS, **CLOUD_KEYS.get(provider, {})}
    _check_mapping(data, schema, where, problems)
    if provider == "ssh" and not data.get("address"):
        problems.append(f"{where}.address: required for provider ssh (a host name or IP)")


def _check_mapping(data: dict, schema: dict, where: str, problems: list[str]) -> None:
    _unknown_keys(data, schema, where + ".", problems)
    for key, kind in schema.items():
        if key not in data or data[key] is None:
            continue
        value, path = data[key], f"{where}.{key}"
        if isinstance(value, str) and VAR.search(value):
            continue  # checked again once the variable is resolved
        if isinstance(kind, dict):
            if isinstance(value, dict):
                _check_mapping(value, kind, path, problems)
            else:
                problems.append(f"{path}: must be a mapping with keys {', '.join(kind)}")
        elif isinstance(kind, tuple):
            if value not in kind:
                problems.append(
                    f"{path}: must be one of {', '.join(kind)}, not {value!r}"
                    f"{_did_you_mean(str(value), kind)}"
                )
        else:
            message = _type_problem(kind, value)
            if message:
                problems.append(f"{path}: {message}")


def _type_problem(kind: str, value: Any) -> str:
    if kind == "str":
        ok = isinstance(value, (str, int, float)) and not isinstance(value, bool)
        return "" if ok else f"must be a string, not {value!r}"
    if kind in PATTERNS:
        pattern, what = PATTERNS[kind]
        ok = isinstance(value, str) and re.fullmatch(pattern, value)
        return "" if ok else f"must be {what}, not {value!r}"
    if kind == "int":
        ok = isinstance(value, int) and not isinstance(value, bool) and value > 0
        return "" if ok else f"must be a positive whole number, not {value!r}"
    if kind == "port":
        ok = isinstance(value, int) and not isinstance(value, bool) and 0 < value < 65536
        return "" if ok else f"must be a port number from 1 to 65535, not {value!r}"
    if kind == "duration":
        ok = parse_duration(value) is not None
        return "" if ok else f"must be a duration like 60m, 2h, 1h30m or off, not {value!r}"
    if kind == "number":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
        return "" if ok else f"must be a positive number, e.g. 0.5, not {value!r}"
    if kind == "bool":
        return "" if isinstance(value, bool) else f"must be true or false, not {value!r}"
    if kind == "list":
        ok = isinstance(value, list) and all(isinstance(v, str) and v for v in value)
        return "" if ok else f"must be a list of strings, e.g. [numpy, pandas], not {value!r}"
    if kind == "map":
        return "" if isinstance(value, dict) else f"must be a mapping, not {value!r}"
    raise AssertionError(kind)


def _unknown_keys(data: dict, valid, prefix: str, problems: list[str]) -> None:
    for key in data:
        if key not in valid:
            problems.append(
                f"{prefix}{key}: unknown key{_did_you_mean(str(key), valid)}; "
                f"valid keys: {', '.join(valid)}"
            )


def _did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(word, [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _expand(value: Any, where: str, variables: dict, problems: list[str]) -> Any:
    if isinstance(value, dict):
        return {k: _expand(v, f"{where}.{k}", variables, problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, where, variables, problems) for v in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match) -> str:
        name = match.group(1)
        if name not in variables:
            problems.append(
                f"{where}: ${{{name}}} is not set; set {name} in the environment or in "
                f".env beside hosts.yml (see .env.example)"
            )
            return ""
        return variables[name]

    return VAR.sub(substitute, value)


def _report(path: Path, problems: list[str]) -> str:
    return "\n".join(f"{path}: {p}" for p in problems)


def _build(name: str, data: dict, source: Path) -> Profile:
    env = dict(data.get("env") or {})
    packages = list(env.get("packages") or [])
    if not any(re.match(r"jupyterlab\b", p) for p in packages):
        packages.insert(0, "jupyterlab")  # the notebook step needs it
    env_file = env.get("environment_file")
    notebook = dict(data.get("notebook") or {})
    notebook.setdefault("local_port", notebook.get("port", NotebookSpec.port))
    identity = data.get("identity")
    autostop = parse_duration(data["autostop"]) if data.get("autostop") is not None else DEFAULT_AUTOSTOP
    sync_dir = Path(str(data.get("sync_dir") or "notebooks/{profile}").replace("{profile}", name)).expanduser()
    return Profile(
        name=name,
        provider=data["provider"],
        source=source,
        address=str(data.get("address") or ""),
        port=int(data.get("port") or 22),
        user=str(data.get("user") or ""),
        identity=Path(str(identity)).expanduser() if identity else None,
        jump=str(data.get("jump") or ""),
        env=EnvSpec(
            **{k: str(v) for k, v in env.items() if k not in ("packages", "environment_file")},
            packages=tuple(packages),
            environment_file=(source.parent / Path(str(env_file)).expanduser()) if env_file else None,
        ),
        notebook=NotebookSpec(**{k: v for k, v in notebook.items() if v is not None}),
        cloud_settings=MappingProxyType(
            {k: data[k] for k in CLOUD_KEYS.get(data["provider"], {}) if data.get(k) is not None}
        ),
        autostop=autostop,
        autostop_load=float(data.get("autostop_load") or Profile.autostop_load),
        sync_patterns=tuple(data.get("sync") or DEFAULT_SYNC),
        sync_dir=sync_dir if sync_dir.is_absolute() else source.parent / sync_dir,
    )
