"""hosts.yml (+ .env) -> validated, frozen Profile objects.

Every problem in the file is reported at once, one line each, naming the file, the
profile and the key, with the closest valid key for a typo. `${VAR}` is resolved only for
the profiles a task uses, so a missing GCE_PROJECT never blocks `inv up --host local`.

Both files may come from a colleague or a repository, so each is a trust boundary:
- `.env` feeds `${VAR}`; only DOTENV_TO_ENVIRON names also enter the process environment,
  and a name that changes where labvm talks or what it (or a shell it starts) runs is refused.
- `${VAR}` reads `.env` and, from the environment, only ENVIRON_TO_HOSTS names: a shared
  hosts.yml cannot carry GITHUB_TOKEN or AWS_SECRET_ACCESS_KEY out in a host name.
- a local path hosts.yml names (environment_file, which goes to the VM; sync_dir, which labvm writes
  and sends from) is what the checkout could have shipped: inside hosts.yml's folder, no dot part, none
  of labvm's own state (_checkout_path_problem); on the VM paths are plain (workspace), and sync
  patterns never reach a dot-folder.
- the cloud SDKs' own files are named by the user alone: their variables never come from .env, and
  from the shell only as full paths (sdk_files_problem), never read from the current folder.
"""

from __future__ import annotations

import difflib
import fnmatch
import io
import ipaddress
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

import yaml

from .errors import LabvmError
from .text import unsafe

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
    "environment_file": "local_path",
    "prefix": "path",
    "python": "path",
    "conda_installer_url": "str",
    "conda_installer_sha256": "str",
    "conda_root": "path",
}
NOTEBOOK_KEYS = {
    "port": "port",
    "local_port": "port",
    "workspace": "workspace",
    "multiplexer": MULTIPLEXERS,
    "password": "str",
    "start_timeout": "int",
}
COMMON_KEYS = {
    "provider": PROVIDERS,
    "address": "host",
    "port": "port",
    "user": "user",
    "identity": "local_path",
    "jump": "jump",
    "env": ENV_KEYS,
    "notebook": NOTEBOOK_KEYS,
    "autostop": "duration",
    "autostop_load": "number",
    "sync": "patterns",
    "sync_dir": "local_path",
    "sync_max_file": "size",
    "sync_max_total": "size",
    "price_per_hour": "price",  # USD an hour of the profile's machine: instead of the cloud's price list
    "cluster": {
        "workers": "count", "worker_size": "str", "threads": "int", "memory_limit": "str", "hosts": "hosts",
        "price_per_hour": "price",  # USD an hour of one worker whose worker_size differs from the profile's
    },
}
# Each cloud provider's own keys (Profile.cloud_settings).
CLOUD_KEYS = {
    "openstack": {
        "cloud": "str", "image": "str", "flavor": "str", "volume_size": "int",
        "network": "str", "floating_ip_pool": "str", "security_groups": "list",
        "stop_action": ("stop", "shelve"), "ssh_cidr": "str",
    },
    "aws": {
        "region": "str", "instance_type": "str", "image": "str", "volume_size": "int",
        "spot": "bool", "elastic_ip": "bool", "tags": "map", "ssh_cidr": "str", "subnet": "str",
    },
    "gce": {
        "project": "str", "zone": "str", "machine_type": "str", "image_family": "str",
        "image_project": "str", "disk_size": "int", "static_ip": "bool", "spot": "bool", "ssh_cidr": "str",
        "network": "str", "subnetwork": "str",
    },
}
TOP_KEYS = ("default", "defaults", "profiles")
# address, user, jump and identity go into ~/.ssh/labvm/config and onto ssh command lines:
# they are checked after ${VAR} expansion, so no value can start a directive or an option.
USER = re.compile(r"[A-Za-z_][A-Za-z0-9._-]*\$?")
DNS_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
JUMP = re.compile(r"(?:([^@]*)@)?(\[[^\]]*\]|[^:\[\]]*)(?::([0-9]{1,5}))?")
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")  # and what Python's splitlines() breaks at
MAX_PROFILE_NAME = 32  # it names labvm's files, ssh aliases and cloud resources
MAX_FILE_BYTES = 1_000_000
MAX_VALUES = 10_000  # after YAML anchors and aliases are expanded: a bomb stops here
VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
DURATION = re.compile(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
DEFAULT_AUTOSTOP = 3600  # cloud profiles stop themselves after an idle hour unless told otherwise
CLUSTER_PACKAGES = ("distributed", "dask-labextension")
DEFAULT_SYNC = ("*.ipynb", "*.py", "*.md")
# A VM decides what sync brings home: a file over this is skipped, a sync over the total stops.
DEFAULT_SYNC_MAX_FILE = 100 * 2**20
DEFAULT_SYNC_MAX_TOTAL = 2 * 2**30
SIZE = re.compile(r"([0-9]{1,15})\s*([KMG]?)i?B?", re.IGNORECASE)

# What .env may put into os.environ: what labvm (cloud.py, openstack.py, gce.py, Config.resolve)
# and the SDKs read to pick an account's profile or region, nothing that says where to connect.
DOTENV_TO_ENVIRON = frozenset({
    "AWS_PROFILE", "AWS_DEFAULT_REGION", "OS_CLOUD", "GOOGLE_CLOUD_PROJECT", "LABVM_HOST", "LABVM_GCE_OSLOGIN",
})
# The variables that name a cloud SDK's configuration or credential files (openstack/config/loader.py,
# botocore/configprovider.py and credentials.py, google/auth/_default.py and _cloud_sdk.py): such a file
# can move the endpoint your password goes to, or name a program to run.  Your own shell may set them,
# with a full path (sdk_files_problem); a shared .env never.
SDK_FILE_VARIABLES = {
    "openstack": ("OS_CLIENT_CONFIG_FILE", "OS_CLIENT_SECURE_FILE"),
    "aws": ("AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_DATA_PATH", "BOTO_CONFIG"),
    "gce": ("GOOGLE_APPLICATION_CREDENTIALS", "CLOUDSDK_CONFIG"),
}
SDK_PATH_LISTS = ("AWS_DATA_PATH",)  # folders separated by os.pathsep (botocore/loaders.py)
# Names that change where labvm talks (endpoints, proxies, certificates, the SDKs' files), what it or
# a shell it starts runs (BASH_ENV, PYTHON*, LD_*, RSYNC_*, SSH_*, GIT_*), or where its keys live:
# a shared .env must not set them; your own shell may.
DOTENV_REFUSED = re.compile(
    r"LABVM_(SSH_DIR|HOSTS|AUTOSTOP_COMMAND)|.*ENDPOINT.*|.*_PROXY|.*CA_BUNDLE|SSL_CERT_.*|"
    r"BASH_ENV|ENV|PATH|HOME|SHELL|IFS|PS4|PROMPT_COMMAND|CDPATH|TMPDIR|BROWSER|EDITOR|VISUAL|PAGER|"
    r"PYTHON.*|LD_.*|DYLD_.*|RSYNC_.*|SSH_.*|GIT_.*|INVOKE_.*|XDG_.*|CLOUDSDK_.*|OS_AUTH_URL|OS_CACERT|"
    + "|".join(name for names in SDK_FILE_VARIABLES.values() for name in names),
    re.IGNORECASE,
)
# Whose cloud machines labvm finds, starts, stops and deletes (labvm:owner): a colleague's .env saying
# LABVM_OWNER=alice would point bob's `inv terminate` at alice's VM.  Only your own shell says so.
DOTENV_OWNER = "LABVM_OWNER"
# What hosts.yml's ${VAR} may read from the environment (besides .env): labvm's own names, the
# login name, and the account-choosing names above. Anything else (tokens, keys) stays unread.
ENVIRON_TO_HOSTS = ("LABVM_*", "USER", "AWS_PROFILE", "AWS_DEFAULT_REGION", "OS_CLOUD", "GOOGLE_CLOUD_PROJECT")
# notebook.workspace on the VM reaches rsync's remote side and the VM's scripts: plain characters
# only, so even an rsync that hands the path to a remote shell (2.6.9, RSYNC_OLD_ARGS) splits nothing.
WORKSPACE = re.compile(r"~|(?:~/|/)?[A-Za-z0-9._+@,=/-]+")
PACKAGE_DIR = Path(__file__).resolve().parent


def parse_duration(value: Any) -> int | None:
    """Seconds in `90m`, `2h`, `1h30m`, `45s`; 0 for `off` (YAML reads a bare off as false); None if neither."""
    if value is False or (isinstance(value, str) and value.strip().lower() in ("off", "false", "no")):
        return 0
    match = DURATION.fullmatch(value.strip()) if isinstance(value, str) and value.strip() else None
    if not match:
        return None
    hours, minutes, seconds = (int(part or 0) for part in match.groups())
    return hours * 3600 + minutes * 60 + seconds or None


def parse_size(value: Any) -> int | None:
    """Bytes in `500K`, `100M`, `2G` (powers of 1024, as rsync's --max-size reads them); None if not a size."""
    match = SIZE.fullmatch(value.strip()) if isinstance(value, str) else None
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if not match or not int(match.group(1)):
        return None
    return int(match.group(1)) * 1024 ** " KMG".index(match.group(2).upper() or " ")


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
class ClusterSpec:
    """Dask workers beside the profile's machine (the head): cloud VMs made from its image, or ssh hosts."""

    workers: int = 0  # cloud profiles: how many worker VMs
    hosts: tuple[str, ...] = ()  # ssh profiles: [user@]host[:port] of each worker
    worker_size: str = ""  # default: the head's size
    price_per_hour: float | None = None  # USD an hour of one worker of worker_size; None: the cloud's price
    threads: int = 0  # per worker; 0: what the machine has
    memory_limit: str = ""  # per worker, e.g. 8GiB; empty: what the machine has

    @property
    def size(self) -> int:
        return len(self.hosts) or self.workers


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
    sync_max_file: int = DEFAULT_SYNC_MAX_FILE  # bytes; a larger file stays on the host
    sync_max_total: int = DEFAULT_SYNC_MAX_TOTAL  # bytes one sync may bring; past it the sync stops
    cluster: ClusterSpec | None = None
    price_per_hour: float | None = None  # USD an hour of the machine, from hosts.yml; None: the cloud's price
    # A cluster worker's own hosts.yml key ("cluster.hosts[0]"); its other values are the head profile's.
    worker_key: str = ""

    def key(self, name: str) -> str:
        """Where `name` is set in hosts.yml, for messages: a worker's address/port/user is its
        cluster entry, everything else is its head profile's."""
        head = self.name.split("+")[0]
        if self.worker_key and name in ("address", "port", "user", "address/port"):
            return f"{self.source}: profiles.{head}.{self.worker_key}"
        return f"{self.source}: profiles.{head}.{name}"

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
        refused: dict[str, str] = {}
        where = f"profiles.{name}"
        data = _expand(self.raw[name], where, self.variables, problems, refused)
        if not problems:
            _coerce(self.raw[name], data, {**COMMON_KEYS, **CLOUD_KEYS.get(data.get("provider"), {})})
            _check_profile(data, where, problems, expanded=True, refused=refused)
        problems += [f"{key}: {_refusal(variable)}" for key, variable in refused.items()
                     if not any(p.startswith(f"{key}: ") for p in problems)]
        if not problems:
            problem = _sync_dir_problem(self.path.parent, name, data.get("sync_dir"))
            if problem:
                problems.append(f"{where}.sync_dir: {problem}")
        env_file = (data.get("env") or {}).get("environment_file") if not problems else None
        if env_file:
            problem = _environment_file_problem(self.path.parent, str(env_file))
            if problem:
                problems.append(f"{where}.env.environment_file: {env_file} {problem}")
        if not problems and not data.get("user"):
            data["user"] = _image_user(data, where, problems)
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
    origin = "LABVM_HOSTS" if os.environ.get("LABVM_HOSTS") else "hosts.yml"
    path = Path(os.environ.get("LABVM_HOSTS") or path)
    if not path.exists():
        raise LabvmError(f"{path}: not found; copy hosts.yml from the labvm repository")
    if not path.is_file():
        raise LabvmError(f"{path}: not a file; {origin} must name a hosts.yml file")
    doc = _parse_yaml(path, _read_text(path, "hosts.yml"))
    dotenv = _read_dotenv(path.parent / ".env")
    for name in DOTENV_TO_ENVIRON & dotenv.keys():
        os.environ.setdefault(name, dotenv[name])  # the real environment wins
    variables = {**dotenv, **{k: v for k, v in os.environ.items() if _readable_from_environ(k)}}

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


def _read_text(path: Path, what: str) -> str:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise LabvmError(f"{path}: cannot read {what} ({e.strerror})") from None
    if len(data) > MAX_FILE_BYTES:
        raise LabvmError(f"{path}: {len(data)} bytes is too large for {what} (at most {MAX_FILE_BYTES})")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise LabvmError(
            f"{path}: line {line}: byte 0x{data[e.start]:02x} is not UTF-8; save {what} as UTF-8 text"
        ) from None


class _StrictLoader(yaml.SafeLoader):
    """YAML that refuses a key given twice in one mapping (instead of keeping the last one)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                    continue
                line = key_node.start_mark.line + 1
                if key_node.value in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {key_node.value!r} is given twice (line {seen[key_node.value]} "
                        f"and line {line}); keep one", key_node.start_mark,
                    )
                seen[key_node.value] = line
        return super().construct_mapping(node, deep)


def _parse_yaml(path: Path, text: str) -> Any:
    try:
        doc = yaml.load(text, Loader=_StrictLoader) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}:" if mark else ""
        raise LabvmError(f"{path}:{where} not valid YAML ({getattr(e, 'problem', None) or e})") from None
    except RecursionError:
        raise LabvmError(f"{path}: nested too deeply to be a hosts.yml") from None
    # Anchors and aliases are shared, not copied, by the loader; everything after walks the
    # expanded tree, so a "billion laughs" document must stop here.
    stack, count = [doc], 0
    while stack:
        count += 1
        if count > MAX_VALUES:
            raise LabvmError(
                f"{path}: more than {MAX_VALUES} values once YAML anchors (&) and aliases (*) are "
                f"expanded; a hosts.yml needs far fewer"
            )
        value = stack.pop()
        if isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return doc


def _read_dotenv(path: Path) -> dict[str, str]:
    """The variables of .env beside hosts.yml, taken literally (no ${...} inside is expanded:
    that would read the environment); a line python-dotenv cannot parse is an error."""
    if not path.exists():
        return {}
    if not path.is_file():
        raise LabvmError(f"{path}: not a file; .env beside hosts.yml holds NAME=value lines")
    from dotenv.parser import parse_stream

    variables = {}
    for binding in parse_stream(io.StringIO(_read_text(path, ".env"))):
        line = f"{path}: line {binding.original.line}"
        if binding.error:
            raise LabvmError(f"{line}: not a NAME=value line (quote a value with spaces or '#', "
                             f"e.g. NAME=\"a b\"); see .env.example")
        if binding.key is None or binding.value is None:
            continue
        if binding.key.upper() == DOTENV_OWNER:
            raise LabvmError(f"{line}: {DOTENV_OWNER} is refused from .env (it decides whose cloud machines labvm "
                             f"starts, stops and deletes); remove the line, and if you mean it set it in your own "
                             f"shell: export {DOTENV_OWNER}=...")
        if DOTENV_REFUSED.fullmatch(binding.key):
            raise LabvmError(f"{line}: {binding.key} is refused from .env (it changes where labvm connects "
                             f"or what it runs); remove the line, or set it in your own shell if you mean it")
        if "\x00" in binding.value:
            raise LabvmError(f"{line}: {binding.key} holds a NUL character; no program can receive it, fix that line")
        variables[binding.key] = binding.value
    return variables


def _readable_from_environ(name: str) -> bool:
    """Whether hosts.yml's ${name} may read the environment (ENVIRON_TO_HOSTS)."""
    return any(fnmatch.fnmatchcase(name, allowed) for allowed in ENVIRON_TO_HOSTS)


def _merge(defaults: dict, settings: dict) -> dict:
    merged = dict(defaults)
    for key, value in settings.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def _check_profile(data: dict, where: str, problems: list[str], expanded: bool = False,
                   refused: Mapping[str, str] = MappingProxyType({})) -> None:
    provider = data.get("provider")
    if provider not in PROVIDERS:
        hint = _did_you_mean(str(provider), PROVIDERS) if provider else ""
        problems.append(f"{where}.provider: must be one of {', '.join(PROVIDERS)}{hint}")
        return
    schema = {**COMMON_KEYS, **CLOUD_KEYS.get(provider, {})}
    _check_mapping(data, schema, where, problems, expanded, refused)
    if provider == "ssh" and not data.get("address"):
        problems.append(f"{where}.address: required for provider ssh (a host name or IP)")
    cluster = data.get("cluster")
    if isinstance(cluster, dict):
        if provider == "local":
            problems.append(f"{where}.cluster: the local profile is one machine; put cluster: on an ssh or cloud profile")
        elif provider == "ssh" and "workers" in cluster:
            problems.append(f"{where}.cluster.workers: an ssh profile's workers are its hosts: [ws2.example.org, ...]")
        elif provider != "ssh" and "hosts" in cluster:
            problems.append(f"{where}.cluster.hosts: a {provider} profile makes its workers; set cluster.workers: N")


def _check_mapping(data: dict, schema: dict, where: str, problems: list[str], expanded: bool = False,
                   refused: Mapping[str, str] = MappingProxyType({})) -> None:
    """expanded: ${VAR}s are resolved, so every value is checked, whatever it now holds.
    refused: keys whose value came from an environment variable hosts.yml may not read: a problem
    with such a value names the variable instead of printing what it holds."""
    _unknown_keys(data, schema, where + ".", problems)
    for key, kind in schema.items():
        if key not in data or data[key] is None:
            continue
        value, path = data[key], f"{where}.{key}"
        if not expanded and _holds_variable(value):
            continue  # checked once the variable is resolved, for the profile in use
        if isinstance(kind, dict):
            if isinstance(value, dict):
                _check_mapping(value, kind, path, problems, expanded, refused)
                continue
            message = f"must be a mapping with keys {', '.join(kind)}"
        elif isinstance(kind, tuple):
            ok = value in kind
            message = "" if ok else f"must be one of {', '.join(kind)}, not {value!r}{_did_you_mean(str(value), kind)}"
        else:
            message = _type_problem(kind, value)
        if message and path in refused:  # the requirement, never the value (it may be a token)
            message = f"{_without(message.split(', not ')[0], os.environ.get(refused[path]))}; and {_refusal(refused[path])}"
        if message:
            problems.append(f"{path}: {message}")


def _without(text: str, secret: str | None) -> str:
    return text.replace(secret, "...") if secret else text


def _holds_variable(value: Any) -> bool:
    """A string, or a list of them, with a ${VAR} in it."""
    return any(isinstance(v, str) and VAR.search(v) for v in (value if isinstance(value, list) else [value]))


def _type_problem(kind: str, value: Any) -> str:
    if kind == "str":
        ok = isinstance(value, (str, int, float)) and not isinstance(value, bool)
        if ok and isinstance(value, str) and unsafe(value):  # it is printed: a size, a zone, a project
            return f"must be plain text (no control, escape or bidi-override character), not {value!r}"
        return "" if ok else f"must be a string, not {value!r}"
    if kind == "host":
        return "" if host_problem(value) is None else f"must be a host name or IP address, not {value!r}"
    if kind == "user":
        ok = isinstance(value, str) and USER.fullmatch(value)
        return "" if ok else f"must be a login name (letters, digits, '.', '_', '-'), not {value!r}"
    if kind == "jump":
        return "" if jump_problem(value) is None else f"must be [user@]host[:port], not {value!r}"
    if kind in ("path", "local_path"):  # path: on the host; local_path: on this machine
        ok = isinstance(value, str) and value and not CONTROL.search(value) and len(value) < 4096
        # A double quote would end the quoted IdentityFile value in the ssh config.
        ok = ok and not (kind == "local_path" and '"' in value)
        what = "a file path without control characters" + (" or double quotes" if kind == "local_path" else "")
        if not ok:
            return f"must be {what}, not {value!r}"
        if kind == "local_path" and value.startswith("~") and not value.startswith("~/") and value != "~":
            try:
                Path(value).expanduser()
            except RuntimeError:
                return f"names no user of this machine ({value.split('/')[0]}); write ~/... or a full path"
        return ""
    if kind == "workspace":
        parts = value.split("/") if isinstance(value, str) else []
        ok = isinstance(value, str) and WORKSPACE.fullmatch(value) and len(value) < 4096 \
            and not any(part == ".." or part.startswith("-") for part in parts)
        return "" if ok else (f"must be a plain folder path on the host (~/work, work, /data/work: letters, "
                              f"digits and . _ - + @ , = /), not {value!r}")
    if kind == "patterns":  # control characters too are the pattern rule's to refuse
        problem = "" if isinstance(value, list) and all(isinstance(v, str) and v for v in value) else \
            f"must be a list of strings, e.g. [numpy, pandas], not {value!r}"
        bad = next((p for p in value if _pattern_problem(p)), None) if not problem else None
        return problem or ("" if bad is None else (
            f"each pattern names files under the workspace: relative, no '..' and no dot-folder or dot-file "
            f"(e.g. *.ipynb, results/*.csv), not {bad!r}"))
    if kind == "size":
        ok = parse_size(value) is not None
        return "" if ok else f"must be a size like 500K, 100M or 2G, not {value!r}"
    if kind == "count":
        ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 100
        return "" if ok else f"must be a whole number of machines from 0 to 100, not {value!r}"
    if kind == "hosts":  # each reaches an ssh config and ssh command lines, as `jump` does
        ok = isinstance(value, list) and all(jump_problem(v) is None for v in value)
        return "" if ok else f"must be a list of [user@]host[:port], e.g. [ws2.example.org], not {value!r}"
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
    if kind == "price":  # 0 is a price too: a machine the lab does not pay for by the hour
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < 10_000
        return "" if ok else f"must be US dollars an hour, a number like 0.085, not {value!r}"
    if kind == "bool":
        return "" if isinstance(value, bool) else f"must be true or false, not {value!r}"
    if kind == "list":
        if not (isinstance(value, list) and all(isinstance(v, str) and v for v in value)):
            return f"must be a list of strings, e.g. [numpy, pandas], not {value!r}"
        bad = next((v for v in value if unsafe(v)), None)
        return "" if bad is None else f"each must be plain text (no control, escape or bidi-override character), not {bad!r}"
    if kind == "map":
        ok = isinstance(value, dict) and not any(unsafe(str(item)) for pair in value.items() for item in pair)
        return "" if ok else f"must be a mapping of plain text, not {value!r}"
    raise AssertionError(kind)


def _pattern_problem(pattern: str) -> bool:
    """True for a sync pattern that could reach outside the workspace or into a dot-folder (.ssh, .aws)."""
    parts = pattern.split("/")
    return bool(CONTROL.search(pattern) or pattern.startswith(("/", "~")) or "\\" in pattern
                or any(part == ".." or part.startswith(".") for part in parts))


def host_problem(value: Any) -> str | None:
    """None for an IP address or a DNS name (labels of 1-63 characters, 253 in all); else why not."""
    if not isinstance(value, str) or not value:
        return "not a string"
    address, _, zone = value.partition("%")
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        parsed = None
    if parsed is not None:
        ok = not zone or (parsed.version == 6 and re.fullmatch(r"[A-Za-z0-9_.-]{1,15}", zone))
        return None if ok else "bad zone"
    name = value[:-1] if value.endswith(".") else value
    if len(name) > 253 or not all(DNS_LABEL.fullmatch(label) for label in name.split(".")):
        return "not a DNS name"
    return None


def jump_problem(value: Any) -> str | None:
    if not isinstance(value, str):
        return "not a string"
    match = JUMP.fullmatch(value)
    if not match:
        return "not [user@]host[:port]"
    user, host, port = match.groups()
    if user is not None and not USER.fullmatch(user):
        return "bad user"
    if port is not None and not 0 < int(port) < 65536:
        return "bad port"
    return host_problem(host[1:-1] if host.startswith("[") else host)


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


def _expand(value: Any, where: str, variables: dict, problems: list[str], refused: dict[str, str]) -> Any:
    """value with each ${NAME} replaced. A NAME only the environment holds, outside
    ENVIRON_TO_HOSTS, is still substituted so the value can be checked, and recorded in
    refused (key -> NAME): the profile is then refused, its value never printed."""
    if isinstance(value, dict):
        return {k: _expand(v, f"{where}.{k}", variables, problems, refused) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, where, variables, problems, refused) for v in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match) -> str:
        name = match.group(1)
        if name in variables:
            return variables[name]
        if name in os.environ:
            refused.setdefault(where, name)
            return os.environ[name]
        problems.append(f"{where}: ${{{name}}} is not set; {_next_step(name)}")
        return ""

    return VAR.sub(substitute, value)


def _refusal(name: str) -> str:
    return (f"${{{name}}} is not one hosts.yml may read from the environment (only "
            f"{', '.join(ENVIRON_TO_HOSTS)}); {_next_step(name)}")


def _next_step(name: str) -> str:
    if DOTENV_REFUSED.fullmatch(name):
        return f"{name} cannot come from .env either: write the value itself in hosts.yml"
    where = "in the environment or in .env" if _readable_from_environ(name) else "in .env"
    return f"set {name} {where} beside hosts.yml (see .env.example)"


# Cloud images are built with one login; the laptop's login name means nothing to them.
IMAGE_USERS = {"ubuntu-": "ubuntu"}  # labvm's AWS image aliases (ubuntu-24.04, ...)
DEFAULT_IMAGE = {"aws": "ubuntu-24.04"}


def _image_user(data: dict, where: str, problems: list[str]) -> str:
    """The login of an aws/openstack profile without `user:`: implied by an image alias, else required."""
    provider = data["provider"]
    if provider not in ("aws", "openstack"):
        return ""
    image = str(data.get("image") or DEFAULT_IMAGE.get(provider, ""))
    implied = next((user for prefix, user in IMAGE_USERS.items() if provider == "aws" and image.startswith(prefix)), "")
    if not implied:
        problems.append(
            f"{where}.user: required with image {image!r}: the login the image was built with "
            f"(ubuntu on Ubuntu images, cades on CADES images, debian on Debian, ec2-user on Amazon Linux)"
        )
    return implied


def _coerce(raw: dict, data: dict, schema: dict) -> None:
    """A number or true/false that came from ${VAR} is one, as if written in hosts.yml."""
    for key, kind in schema.items():
        value, written = data.get(key), raw.get(key)
        if isinstance(kind, dict):
            if isinstance(value, dict) and isinstance(written, dict):
                _coerce(written, value, kind)
        elif kind in ("int", "port", "number", "price", "bool") and isinstance(value, str) \
                and isinstance(written, str) and VAR.search(written):
            text = value.strip()
            if re.fullmatch(r"[+-]?[0-9]+", text):
                data[key] = int(text)
            elif re.fullmatch(r"[+-]?[0-9]*\.[0-9]+", text):
                data[key] = float(text)
            elif text.lower() in ("true", "false"):
                data[key] = text.lower() == "true"


def _environment_file_problem(folder: Path, env_file: str) -> str | None:
    """The environment file goes to the VM: only a file the checkout could ship (a shared hosts.yml
    must not upload .env, .git/config or a key)."""
    target, problem = _checkout_path_problem(folder, env_file)
    if not problem and not target.is_file():
        problem = "not found"
    if problem:
        return f"{problem}; put the environment file in hosts.yml's folder under a plain name, e.g. environment.yml"
    return None


def _sync_dir_problem(folder: Path, profile: str, sync_dir: Any) -> str | None:
    """sync writes what the VM holds into sync_dir and sends from it: a folder of its own that the
    checkout could ship, never hosts.yml's folder itself, never meeting the code labvm runs (its package,
    bin/, scripts/) nor holding tasks.py's folder."""
    written = str(sync_dir or "notebooks/{profile}")
    target, problem = _checkout_path_problem(folder, written.replace("{profile}", profile))
    checkout = PACKAGE_DIR.parent
    code = [PACKAGE_DIR, checkout / "bin", checkout / "scripts"]
    if target == folder.resolve():
        problem = "is hosts.yml's folder itself"
    elif checkout.is_relative_to(target) or any(_meet(target, c) for c in code):
        problem = "holds code labvm runs"
    return f"{written} {problem}; sync into a folder of its own beside hosts.yml, e.g. notebooks/{{profile}}" \
        if problem else None


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


def sdk_files_problem(cloud: str) -> str | None:
    """The cloud's SDK reads the file each of its SDK_FILE_VARIABLES names (only your own shell sets
    them): a relative path would be read from the current folder, maybe a checkout's file.  None when
    each is unset or a full path (~ allowed; AWS_DATA_PATH is a list of them)."""
    for name in SDK_FILE_VARIABLES[cloud]:
        setting = os.environ.get(name, "")
        for value in setting.split(os.pathsep) if name in SDK_PATH_LISTS else [setting]:
            if value and not Path(value).expanduser().is_absolute():
                return (f"{name}={value} is a relative path: the cloud SDK would read it from the current "
                        f"folder ({Path.cwd()}); give the full path: {name}={Path(value).absolute()}")
    return None


def _report(path: Path, problems: list[str]) -> str:
    return "\n".join(f"{path}: {p}" for p in problems)


def _build(name: str, data: dict, source: Path) -> Profile:
    env = dict(data.get("env") or {})
    packages = list(env.get("packages") or [])
    if not any(re.match(r"jupyterlab\b", p) for p in packages):
        packages.insert(0, "jupyterlab")  # the notebook step needs it
    if data.get("cluster"):  # the same engine on every machine, and its dashboard inside JupyterLab
        packages += [p for p in CLUSTER_PACKAGES if not any(re.match(rf"{p}\b", q) for q in packages)]
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
        sync_max_file=parse_size(data.get("sync_max_file") or DEFAULT_SYNC_MAX_FILE),
        sync_max_total=parse_size(data.get("sync_max_total") or DEFAULT_SYNC_MAX_TOTAL),
        cluster=_cluster(data.get("cluster")),
        price_per_hour=_price(data.get("price_per_hour")),
    )


def _cluster(data: dict | None) -> ClusterSpec | None:
    if not data:
        return None
    return ClusterSpec(
        workers=int(data.get("workers") or 0), hosts=tuple(data.get("hosts") or ()),
        worker_size=str(data.get("worker_size") or ""), threads=int(data.get("threads") or 0),
        memory_limit=str(data.get("memory_limit") or ""), price_per_hour=_price(data.get("price_per_hour")),
    )


def _price(value: Any) -> float | None:
    return None if value is None else float(value)
