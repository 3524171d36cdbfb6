"""The provider contract: what every source of machines does, documented once, and the values it returns.

A provider answers for one profile.  `Provider` lists every verb and every question callers ask (scope,
tags, describe, the capabilities in FEATURES, prices) with its promise; `existing` (local, ssh) is the
null provider, `cloud.CloudProvider` the template the clouds share.  Nothing outside `providers/` asks
which cloud a provider is: what differs is answered here.

The values a provider returns (Instance, Image, Resource, Check) are where a cloud's text enters
labvm: names, tags, ids, states and messages that co-members of the account (or the cloud) wrote.
Each cleans its own text as it is made (`Shown`), so whatever prints one, now or in a later
feature, prints no escape sequence and no bidi override.  A cloud's error text is cleaned where each
cloud turns an SDK error into a LabvmError (`from_cloud`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Any, ClassVar, NoReturn, TypeVar

from ..config import Profile
from ..errors import LabvmError, Unsupported
from ..text import clean

# An image's state in labvm's words, whatever the cloud calls it.
IMAGE_AVAILABLE, IMAGE_PENDING, IMAGE_FAILED = "available", "pending", "failed"

# What `Provider.require` names: a verb, or the option of a verb that asks a provider for more than the
# verb.  A provider declares those it does (Provider.FEATURES); any other is refused in one line before
# anything happens, never ignored.
FEATURES = {
    "create": "make the profile's machine (create, up)",
    "start": "start its stopped machine",
    "stop": "stop its machine",
    "resize": "change its machine's size",
    "snapshot": "make an image of its machine's disk",
    "images": "list and delete its images (images, --prune)",
    "terminate": "delete its machine",
    "cluster": "make worker machines beside it",
    "autostop": "stop its machine after idle time",
    "--replace": "up --replace: delete a machine the cloud put in ERROR and make a new one",
    "--from-image": "up/create --from-image: make the machine from an image",
    "--share": "snapshot --share: let another account launch the image",
    "data": "keep a data volume of its own that outlives the machine (data:)",
}
CLOUD_FEATURES = frozenset(FEATURES) - {"--share"}  # what every cloud does: all but a cloud's own options


def from_cloud(text: Any) -> str:
    """Text a cloud said (an SDK error, a fault, a state reason) as labvm shows it: every control,
    escape and bidi character written visibly (labvm.text.clean), nothing cut."""
    shown = str(text)
    return clean(shown, len(shown))


class Shown:
    """A frozen record of text from a cloud: each of its str fields (and each str in a tuple field) is cleaned
    (`from_cloud`) as the record is made.  Cleaning twice changes nothing, so a record `replace`d from another stays as it was."""

    __dataclass_fields__: ClassVar[dict[str, Any]]  # each subclass is a dataclass

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, str):
                object.__setattr__(self, field.name, from_cloud(value))
            elif isinstance(value, tuple):  # Volume.devices: paths a cloud's ids are part of
                object.__setattr__(self, field.name, tuple(from_cloud(v) if isinstance(v, str) else v for v in value))


@dataclass(frozen=True)
class Instance(Shown):
    """A machine as the cloud reports it, in labvm's words (state: running, stopped, ...)."""

    id: str
    name: str
    state: str
    address: str
    size: str = ""
    user: str = ""  # the login the cloud decided (GCE OS Login's POSIX user); empty: the profile's user
    private_address: str = ""  # inside the cloud network: where its cluster's machines reach it
    started: datetime | None = None  # its last start where its record says (AWS LaunchTime, GCE lastStartTimestamp)
    zone: str = ""  # where it runs, as its cloud names the place a volume must share (an availability zone)


@dataclass(frozen=True)
class Image(Shown):
    """A disk image labvm made of a profile's machine."""

    id: str
    name: str
    created: str
    state: str  # IMAGE_AVAILABLE, IMAGE_PENDING or IMAGE_FAILED


# A data volume's state in labvm's words, whatever the cloud calls it.
VOLUME_CREATING, VOLUME_AVAILABLE, VOLUME_ATTACHED, VOLUME_BUSY = "creating", "available", "attached", "busy"


@dataclass(frozen=True)
class Volume(Shown):
    """The profile's data volume (hosts.yml data:) as the cloud reports it."""

    id: str
    name: str
    size_gb: int
    state: str  # VOLUME_CREATING, VOLUME_AVAILABLE (attached to nothing), VOLUME_ATTACHED, VOLUME_BUSY (anything else)
    zone: str  # the place it lives; only a machine there can attach it
    type: str = ""  # the cloud's volume type (gp3, pd-balanced, a Cinder type)
    attached_to: str = ""  # the instance id it is attached to
    # Where the guest finds it once attached, the likeliest first: the API's device name is not what the
    # guest sees (EC2 Nitro's NVMe serial, GCE's google-NAME, Cinder's virtio serial): /dev/disk/by-id paths.
    devices: tuple[str, ...] = ()


# A backup's state in labvm's words: ready once the cloud says a volume can be made from it.
BACKUP_CREATING, BACKUP_READY, BACKUP_FAILED = "creating", "ready", "failed"


@dataclass(frozen=True)
class Backup(Shown):
    """A backup of the profile's data volume (`inv data --backup`: a snapshot tagged as the volume is)."""

    id: str
    name: str
    size_gb: int  # the volume's size when it was taken: what a restore makes
    state: str  # BACKUP_CREATING, BACKUP_READY or BACKUP_FAILED
    created: datetime  # when the cloud took it (UTC): newest first, and --prune keeps the newest
    volume_id: str = ""  # the volume it was taken of


@dataclass(frozen=True)
class Resource(Shown):
    """Something labvm made that a cloud keeps (and bills), as `inv audit` lists it."""

    cloud: str  # the profile's provider: aws, openstack, gce, ...
    scope: str  # what one set of credentials sees (Provider.scope)
    kind: str  # instance, image, snapshot, volume, address
    id: str  # what the cloud's own CLI takes
    profile: str  # its profile tag (Tags.profile), for a worker <profile>+w<index>
    owner: str  # its owner tag (Tags.owner)
    state: str  # instances: running, stopped, ...; addresses and volumes: attached or unattached
    since: datetime | None  # when it was made; for an instance its last start where the cloud says
    delete: str  # the cloud's own command that deletes it
    size_gb: float | None = None
    type: str = ""  # the instance's size as the cloud names it
    hourly_usd: float | None = None  # where the cloud publishes a price
    address: str = ""  # an address's IP
    spot: bool = False  # an instance on spot (preemptible) capacity: priced as such
    region: str = ""  # where an instance runs when the scope spans regions (a GCE project); "": the scope's


@dataclass(frozen=True)
class Check(Shown):
    """One line of `inv check`: a read-only question to the cloud, answered before anything is billed."""

    name: str  # credentials, region, network, image, size, quota, key pair, ssh rule, os login, ...
    ok: bool
    detail: str  # ok: what was found; otherwise the problem and its next step, one line


@dataclass(frozen=True)
class Starting:
    """A machine `up` (and `cluster`, for the profile's workers) would start: what a quota check counts."""

    role: str  # "head", or a worker's name on its cluster ("w2")
    size: str  # the size it runs at: a stopped machine's own, a new one's from hosts.yml
    new: bool  # made (True) or a stopped one started (False)
    worker_size: bool = False  # its size is cluster.worker_size (a new worker of a cluster that sets one)

    def __str__(self) -> str:
        return f"{self.role} ({'new' if self.new else 'stopped'}, {self.size})"


# States (labvm's words, or the cloud's lowercased) in which a machine already counts against its cloud's
# quota: EC2 pending, GCE PROVISIONING and STAGING, Nova BUILD; `up` starts it no further.
COUNTED_STATES = ("running", "pending", "provisioning", "staging", "build")


def starting_words(machines: list[Starting]) -> str:
    """What a quota line says would start, the same words on every cloud."""
    return "to start: " + ", ".join(map(str, machines)) if machines else "nothing to start"


@dataclass(frozen=True)
class Tags:
    """How what labvm makes for a profile is marked, as the cloud keeps the marks: the values of its profile
    tag and its owner tag (labvm:profile / labvm:owner, or whatever a cloud's rules make of them).  `inv
    audit` reads a Resource's profile and owner in these words."""

    profile: str
    owner: str


@dataclass(frozen=True)
class Description:
    """What the keeper's asleep page and `status` say of a profile's machine, from hosts.yml alone (no SDK,
    no network): its size and where it runs as the cloud names them, or the host of a machine labvm does
    not power."""

    size: str  # instance type, machine type, flavor; "" where labvm makes no machine
    place: str  # region, zone, clouds.yaml entry; the host (`address:`) where labvm makes no machine
    vm: bool  # a machine labvm makes and powers; False: one it only uses (ssh, local)
    spot: bool = False  # on spot (preemptible) capacity: priced as such


S = TypeVar("S", bound="Settings")


@dataclass(frozen=True)
class Settings:
    """A cloud's own hosts.yml keys (Profile.cloud_settings) as typed values: each cloud's settings is a frozen
    dataclass of these, the one place each key is declared: its type, the default labvm uses, and its Kind
    (`field(default=..., metadata=config.schema.key(KIND))`), from which config takes the valid keys, in field
    order, and their checks.  A key hosts.yml leaves out, or empty, takes the default (config has checked each
    value)."""

    @classmethod
    def of(cls: type[S], profile: Profile) -> S:
        """The profile's settings of this cloud."""
        given = profile.cloud_settings
        defaults = cls()
        return cls(
            **{f.name: _typed(getattr(defaults, f.name), given[f.name]) for f in fields(cls) if given.get(f.name)}
        )

    @classmethod
    def login(cls, written: Mapping[str, Any]) -> str | None:
        """The login a profile of this cloud uses when hosts.yml gives no user: (written: its keys as checked),
        "" where the cloud decides it once the machine exists; None where only hosts.yml can say (the login its
        image was built with), so config asks for user:."""
        return None

    def describe(self) -> Description:
        """The size and place words of this cloud's settings (each cloud says which keys those are)."""
        raise NotImplementedError


def _typed(default: object, value: Any) -> Any:
    """A hosts.yml value as the type of its default: labvm's settings are frozen, so lists are tuples."""
    if isinstance(default, bool):
        return bool(value)
    if isinstance(default, int):
        return int(value)
    if isinstance(default, str):
        return str(value)
    if isinstance(default, tuple):
        return tuple(str(item) for item in value)
    if isinstance(default, Mapping):
        return MappingProxyType({str(k): str(v) for k, v in dict(value).items()})
    return value


def parse_time(text: str | None) -> datetime | None:
    """An API time stamp ("...Z", "+00:00", or Nova's UTC without a zone) as an aware datetime."""
    if not text:
        return None
    stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)


class Provider:
    """Where one profile's machine comes from: the whole contract, each verb's promise said here once.

    Every verb is safe to repeat: `find` first, act only on what is missing or different.  Verbs that
    change something go through the mutation gate (cloud.CloudApi.mutate: --plan).  A provider does the
    verbs and options it declares in FEATURES; any other raises Unsupported naming the profile, before
    anything happens (`require`, and each verb's default below).
    """

    FEATURES: ClassVar[frozenset[str]] = frozenset()  # what it does, of base.FEATURES
    NO_PRICE: ClassVar[str] = "labvm knows no price list for it"  # why `inv audit` may show no $/h
    NO_MONTHLY_PRICE: ClassVar[str] = "labvm knows no price list for it"  # why it may show no $/mo
    # Seconds SSH may take to answer once the machine reports running: a VM boots for a while after its
    # cloud says so.  0: the machine is up or it is not, and connecting says which (at once, not in 5 minutes).
    boot_timeout = 0

    def __init__(self, profile: Profile):
        self.profile = profile

    @property
    def plan(self) -> bool:
        """--plan: each change is printed, not made."""
        return False

    def start_planning(self) -> None:
        """--plan: from now on each change is printed, not made; refused where labvm changes nothing."""
        raise LabvmError(f"--plan shows cloud API calls; profile {self.profile.name!r} makes none")

    def require(self, feature: str) -> None:
        """Raises Unsupported naming the profile where this provider does not do `feature` (a verb or an
        option of base.FEATURES) for its machine.  A session verb asks before its first side effect: `stop`
        refuses before it syncs, `--replace` before it asks a question."""
        if feature not in self.FEATURES:
            self._unsupported(feature)

    def why_not(self, feature: str) -> str:
        """Why this provider lacks `feature`, and the way there is: the end of Unsupported's one line."""
        return "labvm uses the machine, it does not manage it"

    def _unsupported(self, feature: str) -> NoReturn:
        raise Unsupported(
            f"{feature} is not supported for profile {self.profile.name!r} "
            f"(provider {self.profile.provider}: {self.why_not(feature)})"
        )

    # -- what callers ask of any provider -----------------------------------------------------------
    @property
    def scope(self) -> str:
        """What one set of credentials sees (an AWS region, a clouds.yaml entry, a GCE project): profiles of
        one cloud and scope share one `inv audit` listing.  "" where labvm makes nothing."""
        return ""

    @property
    def tags(self) -> Tags:
        """The profile and owner tags of what labvm makes for this profile, as the cloud keeps them."""
        return Tags(self.profile.name, "")

    def describe(self) -> Description:
        """The machine's size and place as hosts.yml gives them (the keeper asks `providers.describe`, which
        answers the same without making a provider)."""
        return Description("", str(self.profile.address or ""), vm=False)

    def power_off(self, instance: Instance) -> Instance | None:
        """`down`: the machine stopped as `stop` stops it; None where labvm does not power it (it stays on,
        only Jupyter and the tunnel end)."""
        return None

    def autostop_seconds(self) -> int | None:
        """Idle seconds after which the machine stops itself (hosts.yml's autostop:, 0: off); None where labvm
        does not power it: nothing is armed, labvm never shuts down a machine it did not make."""
        return None

    # -- the head: the profile's own machine -------------------------------------------------
    def find(self) -> Instance | None:
        """The profile's machine of this owner (never a cluster worker), found by its tags; None if there is none."""
        raise NotImplementedError

    def create(self, image: str | None = None, public_key: str = "") -> Instance:
        """A new running machine from `image` (None: the profile's), reachable with `public_key`."""
        self._unsupported("create")

    def start(self, instance: Instance) -> Instance:
        """Running again (waits), the caller admitted to port 22, the profile's fixed address attached."""
        self._unsupported("start")

    def stop(self, instance: Instance) -> Instance:
        """Stopped, nothing billed but disks and addresses (waits); stopping a stopped machine is no error."""
        self._unsupported("stop")

    def terminate(self, instance: Instance, keep_ip: bool = False) -> None:
        """Deleted with its disk, and labvm's group, key pair and (unless keep_ip) address once unused."""
        self._unsupported("terminate")

    def resize(self, instance: Instance, size: str) -> Instance:
        """The machine of this size (stopped, changed, started); an unknown size gets did-you-mean."""
        self._unsupported("resize")

    def last_start(self, instance: Instance) -> datetime:
        """When the machine last started: terminate refuses without an image newer than this."""
        self._unsupported("terminate")

    def running_since(self, instance: Instance) -> datetime | None:
        """When the running machine last started, where it is known (status's hours)."""
        return instance.started

    def admit_caller(self) -> None:
        """The SSH rule admits this laptop's current address (and nothing wider)."""

    # -- images ----------------------------------------------------------------------------------
    def snapshot(self, instance: Instance, name: str, share: tuple[str, ...] = (), no_reboot: bool = False) -> Image:
        """An image of the machine's disk, tagged as labvm's, waited for until available; `share`: accounts
        that may launch it (FEATURES "--share"), `no_reboot`: the machine is not rebooted for it."""
        self._unsupported("snapshot")

    def images(self) -> list[Image]:
        """labvm's images of this profile and owner, oldest first."""
        self._unsupported("images")

    def delete_image(self, image: Image) -> None:
        """The image and what it keeps billed (snapshots, volumes)."""
        self._unsupported("images --prune")

    # -- the data volume (hosts.yml data:) ------------------------------------------------------------
    def data_volume(self) -> Volume | None:
        """The profile's data volume of this owner, found by its tags (never by a file here); None if none."""
        self._unsupported("data")

    def attach_data(self, instance: Instance) -> Volume:
        """The data volume attached to the machine, made first (data: size and type, in the machine's zone)
        where there is none, waited for until the cloud says attached; one in another zone or on another
        machine is refused in one line, nothing changed."""
        self._unsupported("data")

    def detach_data(self, volume: Volume) -> Volume:
        """The data volume detached from its machine, waited for until available."""
        self._unsupported("data")

    def delete_data(self, volume: Volume) -> None:
        """The data volume deleted (it must be detached); what it held is gone."""
        self._unsupported("data")

    def grow_data(self, volume: Volume, size_gb: int) -> Volume:
        """The data volume enlarged to size_gb (never shrunk), waited for until the cloud says the new size is
        the guest's; where the cloud cannot while attached to a running machine, refused in one line."""
        self._unsupported("data")

    def data_backups(self) -> list[Backup]:
        """The backups of the profile's data volume of this owner, found by their tags, newest first."""
        self._unsupported("data")

    def back_up_data(self, volume: Volume) -> Backup:
        """A backup of the data volume, tagged as the profile's, waited for until ready (progress shown)."""
        self._unsupported("data")

    def delete_data_backup(self, backup: Backup) -> None:
        """The backup deleted; the volume it was taken of is untouched."""
        self._unsupported("data")

    def restore_data(self, backup: Backup, zone: str = "") -> Volume:
        """A new data volume made from the backup (in `zone`; "": the VM's, else the current volume's), which the
        next `up` attaches; the volume it replaces detached and kept.  Refused while a VM runs with it."""
        self._unsupported("data")

    def data_backups_outlive_volume(self) -> bool:
        """Whether a backup stays when its volume is deleted (not on OpenStack: Cinder's live inside it)."""
        self._unsupported("data")

    # -- a Dask cluster's workers (cloud profiles) -------------------------------------------------
    def workers(self) -> list[Instance]:
        """This profile's worker machines of this owner, by index (names end -w<index>)."""
        return []

    def create_workers(self, indexes: list[int], image: str, size: str, public_key: str) -> list[Instance]:
        """Workers of these indexes beside the head (its network, group, key); one failure keeps the others."""
        self._unsupported("cluster")

    def cluster_image(self) -> str:
        """The image new workers are made from (the head's); "" without a head."""
        return ""

    def allow_cluster(self) -> None:
        """Every TCP port open between the cluster's machines, and only between them."""
        self._unsupported("cluster")

    def terminate_workers(self) -> None:
        """Every worker deleted (with the head's terminate)."""
        self._unsupported("terminate")

    # -- questions that change nothing ------------------------------------------------------
    def to_start(self) -> list[Starting]:
        """What `up` (and `cluster`, with the profile's cluster.workers) would start, each machine once: the
        one rule every cloud's quota check counts.  A running head adds nothing, a stopped head its own size,
        no head a new one of the profile's size; each worker 1..cluster.workers not running adds its size (a
        stopped one its own, a missing one cluster.worker_size, else the profile's size)."""
        head = self.find()
        wanted = []
        if head is None:
            wanted.append(Starting("head", self.size(), new=True))
        elif head.state not in COUNTED_STATES:
            wanted.append(Starting("head", head.size or self.size(), new=False))
        spec = self.profile.cluster
        if not spec or spec.hosts or not spec.workers:
            return wanted
        found = {w.name.rsplit("-", 1)[-1]: w for w in self.workers()}
        for index in range(1, spec.workers + 1):
            worker = found.get(f"w{index}")
            if worker is None:
                wanted.append(Starting(f"w{index}", spec.worker_size or self.size(), True, bool(spec.worker_size)))
            elif worker.state not in COUNTED_STATES:
                wanted.append(Starting(f"w{index}", worker.size or self.size(), new=False))
        return wanted

    def first_up(self) -> list[str]:
        """What a first `up` makes, one item each (key pair, firewall or group, the machine with its size and
        image, a kept address), from hosts.yml alone: no cloud call, so `--plan` says it even without
        credentials.  Nothing where labvm makes no machine."""
        return []

    def permissions(self) -> tuple[str, ...]:
        """The rights labvm's calls to the cloud need (IAM actions, IAM permissions, policy rules), read from
        labvm's code: what a user without them asks an admin for.  None where labvm calls no cloud."""
        return ()

    def preflight(self, public_key: str) -> list[Check]:
        """`inv check`: read-only questions, one line each, asked before anything is billed."""
        return []

    def inventory(self) -> list[Resource]:
        """`inv audit`: everything labvm made in this credential scope, every owner's."""
        return []

    # -- prices (labvm.prices caches them on the laptop and never lets a failure reach a verb) --------
    def size(self) -> str:
        """The size a machine of this profile gets (instance type, machine type, flavor); "" where labvm makes none."""
        return self.describe().size

    def where(self) -> str:
        """Where the profile's machines run, as far as a price depends on it: an AWS or GCE region, a
        clouds.yaml entry; "" where labvm makes none."""
        return ""

    def priced_as(self, size: str) -> str:
        """What an hourly price of `size` is known by (labvm.prices' cache): the size, and whatever else of this
        profile bills with such a machine (GCE's gpu: on its own machine type)."""
        return size

    def price_per_hour(self, size: str, spot: bool) -> float | None:
        """USD an hour for one running machine of this size in `where()`, on spot capacity or on demand, as
        the cloud publishes it; None when the cloud publishes none or the size is not in its price list.
        It may raise anything (no rights to the price API, no network, an answer not understood):
        labvm.prices turns every failure into "no price", so callers never see one."""
        return None

    def price_per_month(self, kind: str, state: str = "", volume_type: str = "") -> float | None:
        """USD a month in `where()` for what bills while no machine runs, as the cloud publishes it: per GB
        of a volume (of `volume_type`; "": the type labvm makes), an image or a snapshot; per address for
        an address (its `state`, attached or unattached, may change the rate).  None when the cloud
        publishes none; it may raise anything, as price_per_hour may."""
        return None
