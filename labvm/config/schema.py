"""The hosts.yml schema: each key declared once, on the field of the frozen dataclass that holds it.

A field is a hosts.yml key when its metadata says so (`key(KIND)`, or `section(Spec)` for a nested
mapping): the key's name, its Kind (the check and the reading) and, where the field's default is not
what a key left out means, what is.  Fields without it (a profile's name, its file) are labvm's own.
From that one declaration come the valid keys (COMMON_KEYS, with did-you-mean), the checks
(check_mapping) and the Profile (read_profile).  A cloud's own keys are declared the same way, on its
settings dataclass in its own package (labvm/providers/<cloud>/settings.py): config asks the providers'
registry for them by the profile's provider (cloud_keys), so no cloud is named here.  Config reaches
providers only through that registry (here and in variables), inside functions, since providers import
config: the registry imports a cloud's light settings module only when a profile of it is read, no SDK.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, NamedTuple, TypeVar, Union

from .kinds import (
    DATA_MOUNT,
    DURATION_SECONDS,
    HOST,
    HOST_PATH,
    JUMP_HOST,
    LOCAL_PATH,
    MACHINES,
    PERCENT,
    PORT,
    POSITIVE_INT,
    POSITIVE_NUMBER,
    PRICE,
    SIZE_BYTES,
    SSH_HOSTS,
    SYNC_PATTERNS,
    TEXT,
    TEXT_LIST,
    USER_NAME,
    VOLUME_GB,
    WORKSPACE_PATH,
    Kind,
    did_you_mean,
    one_of,
)
from .member import Member
from .paths import DEFAULT_SYNC_DIR
from .variables import VAR, holds_variable, refusal

if TYPE_CHECKING:
    from ..providers.base import Settings

EXISTING = ("local", "ssh")  # the providers of machines labvm uses and never makes; the others are clouds
ENV_MANAGERS = ("conda", "uv", "venv")
MULTIPLEXERS = ("tmux", "screen", "nohup")
MINIFORGE_URL = "https://github.com/conda-forge/miniforge/releases/latest/download/Miniforge3-Linux-x86_64.sh"
DEFAULT_AUTOSTOP = 3600  # cloud profiles stop themselves after an idle hour unless told otherwise
CLUSTER_PACKAGES = ("distributed", "dask-labextension")
DEFAULT_SYNC = ("*.ipynb", "*.py", "*.md")
# A VM decides what sync brings home: a file over this is skipped, a sync over the total stops.
DEFAULT_SYNC_MAX_FILE = 100 * 2**20
DEFAULT_SYNC_MAX_TOTAL = 2 * 2**30

KEY = "labvm.config"  # the metadata entry that makes a dataclass field a hosts.yml key
Spec = TypeVar("Spec")
Schema = Mapping[str, Union[Kind, "Schema"]]  # a mapping's keys, in hosts.yml's order: each a Kind or a mapping


class Place(NamedTuple):
    """Where a profile is written (its name, hosts.yml's folder): what a local path is read against."""

    profile: str
    folder: Path


class Key(NamedTuple):
    """One hosts.yml key.  kind: what its value may be; section: instead, the dataclass of the mapping
    it holds (env, notebook, cluster).  name: hosts.yml's, where it is not the field's.  read: how a
    value naming a local path is read beside hosts.yml (else the kind's read).  unset: what the key
    left out means, given its mapping as written (else the field's default)."""

    kind: Kind | None = None
    section: type | None = None
    name: str = ""
    read: Callable[[Any, Place], Any] | None = None
    unset: Callable[[Mapping[str, Any]], Any] | None = None


def key(
    kind: Kind,
    *,
    name: str = "",
    read: Callable[[Any, Place], Any] | None = None,
    unset: Callable[[Mapping[str, Any]], Any] | None = None,
) -> dict[str, Key]:
    """The metadata of a field that is a hosts.yml key (`field(default=..., metadata=key(PORT))`)."""
    return {KEY: Key(kind=kind, name=name, read=read, unset=unset)}


def section(spec: type) -> dict[str, Key]:
    """The metadata of a field that holds a nested hosts.yml mapping, declared by its own dataclass."""
    return {KEY: Key(section=spec)}


def provider_names() -> tuple[str, ...]:
    """What a profile's provider: may be: local, ssh, then the clouds of the providers' registry in its order."""
    from ..providers.registry import CLOUDS

    return (*EXISTING, *CLOUDS)


def _provider(value: Any) -> str:
    return one_of(*provider_names()).check(value)


def _cloud_settings(provider: str) -> type[Settings] | None:
    """The settings dataclass of the cloud `provider` (its own keys); None for local, ssh or no provider."""
    from ..providers.registry import settings_class

    return settings_class(provider)


def _beside_hosts(value: Any, place: Place) -> Path:
    return place.folder / Path(str(value)).expanduser()


def _sync_folder(value: Any, place: Place) -> Path:
    return _beside_hosts(str(value).replace("{profile}", place.profile), place)


@dataclass(frozen=True)
class EnvSpec:
    """env: the Python environment on the host, with the packages the notebook needs."""

    manager: str = field(default="conda", metadata=key(one_of(*ENV_MANAGERS)))
    packages: tuple[str, ...] = field(default=("jupyterlab",), metadata=key(TEXT_LIST))
    environment_file: Path | None = field(default=None, metadata=key(LOCAL_PATH, read=_beside_hosts))
    prefix: str = field(default="~/.labvm/env", metadata=key(HOST_PATH))
    python: str = field(default="python3", metadata=key(HOST_PATH))
    conda_installer_url: str = field(default=MINIFORGE_URL, metadata=key(TEXT))
    conda_installer_sha256: str = field(default="", metadata=key(TEXT))
    conda_root: str = field(default="~/miniforge3", metadata=key(HOST_PATH))


class UnwrittenPort(int):
    """notebook.port where hosts.yml writes none: labvm's default, which a port busy on the host moves to
    the next free one (Notebook.may_move).  A port hosts.yml writes, 8888 too, is used or refused, never
    moved; as a number it is the same port (equal, printed alike)."""


@dataclass(frozen=True)
class NotebookSpec:
    """notebook: where Jupyter listens on the host and on this machine, and how it is kept running."""

    port: int = field(default=UnwrittenPort(8888), metadata=key(PORT))
    local_port: int = field(default=8888, metadata=key(PORT, unset=lambda notebook: notebook.get("port")))
    workspace: str = field(default="~/work", metadata=key(WORKSPACE_PATH))
    multiplexer: str = field(default="tmux", metadata=key(one_of(*MULTIPLEXERS)))
    password: str = field(default="", metadata=key(TEXT))
    start_timeout: int = field(default=120, metadata=key(POSITIVE_INT))


@dataclass(frozen=True)
class ClusterSpec:
    """Dask workers beside the profile's machine (the head): cloud VMs made from its image, or ssh hosts."""

    # cloud profiles: how many worker VMs
    workers: int = field(default=0, metadata=key(MACHINES))
    # default: the head's size
    worker_size: str = field(default="", metadata=key(TEXT))
    # per worker; 0: what the machine has
    threads: int = field(default=0, metadata=key(POSITIVE_INT))
    # per worker, e.g. 8GiB; empty: what the machine has
    memory_limit: str = field(default="", metadata=key(TEXT))
    # ssh profiles: [user@]host[:port] of each worker
    hosts: tuple[str, ...] = field(default=(), metadata=key(SSH_HOSTS))
    # USD an hour of one worker whose worker_size differs from the profile's; None: the cloud's price
    price_per_hour: float | None = field(default=None, metadata=key(PRICE))

    @property
    def size(self) -> int:
        """How many workers: its hosts, else its worker VMs."""
        return len(self.hosts) or self.workers


@dataclass(frozen=True)
class DataSpec:
    """data: a volume of the profile's own, kept when its VM goes, mounted inside Jupyter's workspace."""

    # GB
    size: int = field(default=0, metadata=key(VOLUME_GB))
    # where the VM mounts it; empty: a data folder inside notebook.workspace (Jupyter's file browser shows it)
    mount: str = field(default="", metadata=key(DATA_MOUNT))
    # the cloud's volume type (gp3, pd-balanced, a Cinder type); empty: the cloud's default
    type: str = field(default="", metadata=key(TEXT))


@dataclass(frozen=True)
class Profile:
    """One profile of hosts.yml, checked, ${VAR} resolved, every default filled in."""

    name: str
    provider: str = field(metadata=key(Kind(_provider)))
    source: Path = field()  # the hosts.yml it is written in
    address: str = field(default="", metadata=key(HOST))
    port: int = field(default=22, metadata=key(PORT))
    user: str = field(default="", metadata=key(USER_NAME))
    identity: Path | None = field(default=None, metadata=key(LOCAL_PATH))
    jump: str = field(default="", metadata=key(JUMP_HOST))
    env: EnvSpec = field(default_factory=EnvSpec, metadata=section(EnvSpec))
    notebook: NotebookSpec = field(default_factory=NotebookSpec, metadata=section(NotebookSpec))
    # idle seconds before a cloud VM stops itself; 0 = off
    autostop: int = field(default=DEFAULT_AUTOSTOP, metadata=key(DURATION_SECONDS))
    # a 1-minute load average at or above this is activity
    autostop_load: float = field(default=0.5, metadata=key(POSITIVE_NUMBER))
    # an NVIDIA GPU's utilisation (%) at or above this is activity; memory held on an idle GPU is not
    autostop_gpu: float = field(default=10.0, metadata=key(PERCENT))
    sync_patterns: tuple[str, ...] = field(default=DEFAULT_SYNC, metadata=key(SYNC_PATTERNS, name="sync"))
    sync_dir: Path = field(
        default=Path("notebooks"), metadata=key(LOCAL_PATH, read=_sync_folder, unset=lambda _: DEFAULT_SYNC_DIR)
    )
    # bytes; a larger file stays on the host
    sync_max_file: int = field(default=DEFAULT_SYNC_MAX_FILE, metadata=key(SIZE_BYTES))
    # bytes one sync may bring; past it the sync stops
    sync_max_total: int = field(default=DEFAULT_SYNC_MAX_TOTAL, metadata=key(SIZE_BYTES))
    # USD an hour of the machine, instead of the cloud's price list; None: the cloud's price
    price_per_hour: float | None = field(default=None, metadata=key(PRICE))
    cluster: ClusterSpec | None = field(default=None, metadata=section(ClusterSpec))
    data: DataSpec | None = field(default=None, metadata=section(DataSpec))
    cloud_settings: Mapping[str, Any] = field(default_factory=dict)  # the provider's own keys (cloud_keys)
    # A cluster worker's own hosts.yml key ("cluster.hosts[0]"); its other values are the head profile's.
    worker_key: str = ""

    def key(self, name: str) -> str:
        """Where `name` is set in hosts.yml, for messages: a worker's address/port/user is its
        cluster entry, everything else is its head profile's."""
        head = Member.head_of(self.name)
        if self.worker_key and name in ("address", "port", "user", "address/port"):
            return f"{self.source}: profiles.{head}.{self.worker_key}"
        return f"{self.source}: profiles.{head}.{name}"

    @property
    def alias(self) -> str:
        """The name `ssh` knows this profile by (~/.ssh/labvm/config)."""
        return f"labvm-{self.name}"

    @property
    def data_mount(self) -> str:
        """Where the VM mounts the data volume: data.mount, else a data folder inside the workspace."""
        written = self.data.mount if self.data else ""
        return written.rstrip("/") or f"{self.notebook.workspace.rstrip('/')}/data"


def _keys(spec: type) -> Iterator[tuple[str, str, Key]]:
    """(field name, hosts.yml name, Key) of each field of spec that is a hosts.yml key, in order."""
    for each in fields(spec):
        declared = each.metadata.get(KEY)
        if declared is not None:
            yield each.name, declared.name or each.name, declared


def schema(spec: type) -> dict[str, Kind | Schema]:
    """spec's hosts.yml keys, each with its Kind, or its own keys for a nested mapping."""
    return {name: schema(k.section) if k.section else _kind(k) for _, name, k in _keys(spec)}


def _kind(declared: Key) -> Kind:
    assert declared.kind is not None, "a key declares its kind or its section"
    return declared.kind


COMMON_KEYS = schema(Profile)


def cloud_keys(provider: str) -> dict[str, Kind | Schema]:
    """The keys of the cloud `provider`'s own (its settings dataclass), in its order; none for local or ssh."""
    settings = _cloud_settings(provider)
    return schema(settings) if settings else {}


def profile_keys(provider: str) -> dict[str, Kind | Schema]:
    """Every key a profile of this provider may hold: the common ones, then the cloud's own."""
    return {**COMMON_KEYS, **cloud_keys(provider)}


def read_profile(name: str, data: Mapping[str, Any], source: Path) -> Profile:
    """The Profile of a checked profile mapping (${VAR} resolved): each key read as its field holds it,
    env.packages completed with what labvm needs."""
    cloud = {k: data[k] for k in cloud_keys(data["provider"]) if data.get(k) is not None}
    profile = _read(
        Profile, data, Place(name, source.parent), name=name, source=source, cloud_settings=MappingProxyType(cloud)
    )
    return replace(profile, env=replace(profile.env, packages=_needed_packages(profile)))


def _read(spec: type[Spec], written: Mapping[str, Any], place: Place, **given: Any) -> Spec:
    """spec from its mapping as written: a key left out, null, [] or {} keeps the field's default
    (or what its `unset` says)."""
    values = dict(given)
    for field_name, name, declared in _keys(spec):
        value: Any = written.get(name)
        if _left_out(value) and declared.unset:
            value = declared.unset(written)
        if _left_out(value):
            continue
        if declared.section:
            values[field_name] = _read(declared.section, value, place)
        else:
            values[field_name] = declared.read(value, place) if declared.read else _kind(declared).read(value)
    return spec(**values)


def _left_out(value: Any) -> bool:
    return value is None or (isinstance(value, (list, dict)) and not value)


def _needed_packages(profile: Profile) -> tuple[str, ...]:
    """env.packages with jupyterlab (the notebook step needs it) and, for a cluster, the same engine on
    every machine and its dashboard inside JupyterLab."""
    packages = list(profile.env.packages)
    if not any(re.match(r"jupyterlab\b", p) for p in packages):
        packages.insert(0, "jupyterlab")
    if profile.cluster:
        packages += [p for p in CLUSTER_PACKAGES if not any(re.match(rf"{p}\b", q) for q in packages)]
    return tuple(packages)


def check_profile(
    data: Mapping[str, Any],
    where: str,
    problems: list[str],
    expanded: bool = False,
    refused: Mapping[str, str] = MappingProxyType({}),
) -> None:
    """Every problem of one profile's mapping, appended to problems (see check_mapping), and the
    rules between keys: the provider, an ssh profile's address, a cluster's workers or hosts."""
    provider, providers = data.get("provider"), provider_names()
    if provider not in providers:
        hint = did_you_mean(str(provider), providers) if provider else ""
        problems.append(f"{where}.provider: must be one of {', '.join(providers)}{hint}")
        return
    check_mapping(data, profile_keys(provider), where, problems, expanded, refused)
    if provider == "ssh" and not data.get("address"):
        problems.append(f"{where}.address: required for provider ssh (a host name or IP)")
    cluster = data.get("cluster")
    if isinstance(cluster, dict):
        if provider == "local":
            problems.append(
                f"{where}.cluster: the local profile is one machine; put cluster: on an ssh or cloud profile"
            )
        elif provider == "ssh" and "workers" in cluster:
            problems.append(f"{where}.cluster.workers: an ssh profile's workers are its hosts: [ws2.example.org, ...]")
        elif provider != "ssh" and "hosts" in cluster:
            problems.append(f"{where}.cluster.hosts: a {provider} profile makes its workers; set cluster.workers: N")
    volume = data.get("data")
    if volume is not None and provider in EXISTING:
        problems.append(
            f"{where}.data: labvm makes data volumes on cloud profiles only; the disks of a {provider} machine are "
            "its own (remove data:)"
        )
    elif isinstance(volume, dict) and "size" not in volume:
        problems.append(f"{where}.data.size: required: the volume's size in GB (data: {{size: 20}})")


def check_mapping(
    data: Mapping[str, Any],
    keys: Schema,
    where: str,
    problems: list[str],
    expanded: bool = False,
    refused: Mapping[str, str] = MappingProxyType({}),
) -> None:
    """Each unknown key and each bad value of data, one line each, appended to problems.
    expanded: ${VAR}s are resolved, so every value is checked, whatever it now holds.
    refused: keys whose value came from an environment variable hosts.yml may not read: a problem
    with such a value names the variable instead of printing what it holds."""
    unknown_keys(data, keys, where + ".", problems)
    for name, kind in keys.items():
        if name not in data or data[name] is None:
            continue
        value, path = data[name], f"{where}.{name}"
        if not expanded and holds_variable(value):
            continue  # checked once the variable is resolved, for the profile in use
        if isinstance(kind, Kind):
            message = kind.check(value)
        elif isinstance(value, dict):
            check_mapping(value, kind, path, problems, expanded, refused)
            continue
        else:
            message = f"must be a mapping with keys {', '.join(kind)}"
        if message and path in refused:  # the requirement, never the value (it may be a token)
            requirement = _without(message.split(", not ")[0], os.environ.get(refused[path]))
            message = f"{requirement}; and {refusal(refused[path])}"
        if message:
            problems.append(f"{path}: {message}")


def _without(text: str, secret: str | None) -> str:
    return text.replace(secret, "...") if secret else text


def unknown_keys(
    data: Mapping[Any, Any], valid: Mapping[str, Any] | tuple[str, ...], prefix: str, problems: list[str]
) -> None:
    """A line for each key of data that is not valid, with the closest valid one and all of them."""
    for name in data:
        if name not in valid:
            problems.append(
                f"{prefix}{name}: unknown key{did_you_mean(str(name), valid)}; valid keys: {', '.join(valid)}"
            )


def coerce(written: Mapping[str, Any], data: dict[str, Any], keys: Schema) -> None:
    """A number or true/false that came from ${VAR} is one, as if written in hosts.yml."""
    for name, kind in keys.items():
        value, raw = data.get(name), written.get(name)
        if not isinstance(kind, Kind):
            if isinstance(value, dict) and isinstance(raw, dict):
                coerce(raw, value, kind)
        elif kind.typed and isinstance(value, str) and isinstance(raw, str) and VAR.search(raw):
            text = value.strip()
            if re.fullmatch(r"[+-]?[0-9]+", text):
                data[name] = int(text)
            elif re.fullmatch(r"[+-]?[0-9]*\.[0-9]+", text):
                data[name] = float(text)
            elif text.lower() in ("true", "false"):
                data[name] = text.lower() == "true"


def image_user(data: Mapping[str, Any], where: str, problems: list[str]) -> str:
    """The login of a cloud profile without `user:`: what its cloud's settings say (Settings.login: implied
    by an image alias, or decided by the cloud), else required, since the laptop's login means nothing to an
    image built with one of its own."""
    settings = _cloud_settings(data["provider"])
    implied = settings.login(data) if settings else ""
    if implied is None:
        problems.append(
            f"{where}.user: required with image {str(data.get('image') or '')!r}: the login the image was built "
            f"with (ubuntu on Ubuntu images, cades on CADES images, debian on Debian, ec2-user on Amazon Linux)"
        )
    return implied or ""
