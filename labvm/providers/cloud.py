"""What the clouds share: owner naming, THE mutation gate (--plan), waits with progress, did-you-mean, the
create-workers outline, the resize flow, and the template of a cloud's provider.

A cloud's provider is thin: `CloudProvider` answers every verb of the contract from the parts a cloud gives
it (`Parts`: its head, images, workers, network, preflight, inventory and price), each a collaborator that
receives in its constructor what it uses (the cloud's API client, its settings, its names, other parts).
The API client is a `CloudApi`: every call that changes a cloud passes its `mutate`, the one gate where
--plan is honoured.  A rule every cloud keeps lives here once; a cloud that needs an exception says so in its
own module, next to the cited reason.
"""

from __future__ import annotations

import difflib
import getpass
import hashlib
import os
import re
import secrets
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, ClassVar, TypeVar

from ..config import Profile
from ..config.kinds import MAX_VOLUME_GB
from ..errors import LabvmError
from .base import (
    BACKUP_READY,
    CLOUD_FEATURES,
    VOLUME_ATTACHED,
    VOLUME_AVAILABLE,
    VOLUME_CREATING,
    Backup,
    Check,
    Description,
    Image,
    Instance,
    Provider,
    Resource,
    Settings,
    Tags,
    Volume,
    from_cloud,
)
from . import unlooked
from .parts import ImagesPart, InventoryPart, NetworkPart, PreflightPart, PricePart, VolumesPart

T = TypeVar("T")
PLANNED = "(planned)"  # the id and address of what --plan would make


@dataclass(frozen=True)
class NameRules:
    """What one cloud accepts in one kind of name, from the cloud's own reference (cited where each is made)."""

    allowed: str  # a regular-expression character class: the characters a name may hold
    limit: int  # the longest name accepted
    lower: bool = False  # the cloud accepts lowercase only
    first_letter: bool = False  # the name must start with a letter (RFC 1035)


def cloud_name(rules: NameRules, *parts: object) -> str:
    """A name of these parts joined by "-" that `rules` accept: other characters become "-" (runs of them
    one), uppercase lowercase where the cloud wants it.  A name that had to change, or be cut to the
    limit, ends with a hash of the parts as given: `hedy.lamarr` and `Hedy Lamarr` are two lab members,
    and a cloud that would fold both into `hedy-lamarr` must not give one the other's machine or key."""
    text = "-".join(str(part) for part in parts)
    name = re.sub(f"[^{rules.allowed}]+", "-", text.lower() if rules.lower else text).strip("- ") or "x"
    if rules.first_letter and not name[0].isalpha():
        name = f"x-{name}"
    if name == text and len(name) <= rules.limit:
        return name
    digest = hashlib.sha256(text.encode()).hexdigest()[:6]
    return f"{name[: rules.limit - 7].rstrip('- ')}-{digest}"


def backup_stamp() -> str:
    """What tells one backup's name from another's (the cloud name's last part): when it was taken, to the
    millisecond, and a random tail, as two backups within a millisecond need two names (GCE refuses a name in
    use).  Names sort as the backups were taken, where a cloud keeps whole seconds (Cinder on MySQL)."""
    now = datetime.now(timezone.utc)
    return f"{now:%Y%m%d-%H%M%S}{now.microsecond // 1000:03d}-{secrets.token_hex(2)}"


def owner() -> str:
    """Who the resources belong to among the lab members sharing an account: LABVM_OWNER, else the login."""
    return os.environ.get("LABVM_OWNER") or getpass.getuser()


def tag_number(value: object) -> int:
    """The number a labvm tag holds (labvm:index); 0 for anything else a co-member of the account may
    have written there: no traceback, and no index of labvm's (workers count from 1)."""
    text = str(value)
    return int(text) if text.isascii() and text.isdigit() and len(text) < 7 else 0


def unknown(key: str, kind: str, wanted: str, known: list[str], listing: str) -> LabvmError:
    """The one line for a size, image or network the cloud does not have: the closest it has (names
    the cloud lists, an admin's or a co-member's text)."""
    close = difflib.get_close_matches(wanted, known, n=3, cutoff=0.5)
    hint = f"; closest: {', '.join(map(from_cloud, close))}" if close else ""
    return LabvmError(f"{key}: no {kind} {wanted!r}{hint} ({listing})")


def planned_instance(name: str, size: str = "", zone: str = "") -> Instance:
    """What a planned create answers: enough for the verb to print the rest of its plan (zone: where the
    cloud would place it, where hosts.yml decides it)."""
    return Instance(PLANNED, name, "running", PLANNED, size, zone=zone)


def no_head(profile: Profile) -> LabvmError:
    """Workers are made beside the head: there is none yet."""
    return LabvmError(f"profile {profile.name!r} has no VM to make workers beside; `inv up --host {profile.name}`")


def ask(name: str, question: Callable[[], str]) -> Check:
    """A preflight question's answer: its line, or the one-line problem it raised."""
    try:
        return Check(name, True, question())
    except LabvmError as e:
        return Check(name, False, str(e).splitlines()[0])


def caller_cidr(where: str) -> str:
    """This machine's public address as a /32: by default only it may reach a new VM's port 22."""
    import urllib.request

    try:
        with urllib.request.urlopen("https://checkip.amazonaws.com", timeout=5) as response:
            return response.read().decode().strip() + "/32"
    except OSError:
        raise LabvmError(
            f"could not learn this machine's public address for the SSH rule; set {where} "
            f"(e.g. your lab's range, 203.0.113.0/24)"
        ) from None


# -- the API client: THE mutation gate and the waits ------------------------------------------------------


class CloudApi:
    """One cloud's calls for one profile: THE mutation gate (every call that changes the cloud passes
    `mutate`; under --plan it is printed, not made), the waits, and `call`, which a cloud's client overrides
    to turn its SDK's errors into one line with the next step (and to retry what its cloud asks to retry)."""

    def __init__(self, cloud: str):
        self.cloud = cloud  # the prefix of its lines: aws, openstack, gce
        self.plan = False  # --plan: each change printed, not made

    @property
    def scope(self) -> str:
        """What its credentials see (Provider.scope)."""
        raise NotImplementedError

    def call(self, action: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """One SDK call, its errors turned into one line with the next step (each cloud says how)."""
        return action(*args, **kwargs)

    def mutate(self, what: str, action: Callable[..., Any], *args: Any, planned: Any = None, **kwargs: Any) -> Any:
        """Every call that changes the cloud passes here.  Under --plan it is printed, not made, and
        `planned` stands in for its answer, so the verb goes on to print the rest of its plan."""
        if self.plan:
            print(f"plan: {self.cloud}: {what}", flush=True)
            return planned
        return self.call(action, *args, **kwargs)

    def said(self, line: str) -> None:
        """A line saying what was made or changed: under --plan the gate has said what would be."""
        if not self.plan:
            print(line, flush=True)

    def wait_until(
        self,
        what: str,
        done: Callable[[], Any] | None,
        timeout: float,
        poll: float = 2.0,
        progress: float = 30.0,
        late: str = "",
    ) -> Any:
        """Polls done() until it returns something true (returned), printing progress while it takes long.
        Under --plan nothing was made to wait for: the wait is printed.  late: the next step on timeout."""
        if self.plan or done is None:
            print(f"plan: {self.cloud}: then wait until {what}", flush=True)
            return None
        print(f"{self.cloud}: waiting until {what} ...", flush=True)
        start = said = time.monotonic()
        while True:
            answer = done()
            waited = time.monotonic() - start
            if answer:
                print(f"{self.cloud}: {what} ({waited:.0f}s)", flush=True)
                return answer
            if waited >= timeout:
                raise LabvmError(
                    f"{self.cloud}: {what} did not happen in {waited / 60:.0f}m" + (f"; {late}" if late else "")
                )
            if time.monotonic() - said >= progress:
                print(f"{self.cloud}: still waiting until {what} ({waited / 60:.0f}m)", flush=True)
                said = time.monotonic()
            time.sleep(poll)


# -- the parts a cloud gives its provider ------------------------------------------------------------------


class Head(ABC):
    """The profile's own machine on one cloud, and the resize flow every cloud shares."""

    def __init__(self, api: CloudApi):
        self.api = api

    @abstractmethod
    def find(self) -> Instance | None:
        """Provider.find."""

    @abstractmethod
    def create(self, image: str | None, public_key: str) -> Instance:
        """Provider.create."""

    @abstractmethod
    def start(self, instance: Instance) -> Instance:
        """Provider.start."""

    @abstractmethod
    def stop(self, instance: Instance) -> Instance:
        """Provider.stop."""

    @abstractmethod
    def terminate(self, instance: Instance, keep_ip: bool) -> None:
        """Provider.terminate."""

    @abstractmethod
    def last_start(self, instance: Instance) -> datetime:
        """Provider.last_start."""

    def resize(self, instance: Instance, size: str) -> Instance:
        """The size checked first (did-you-mean, and what the cloud refuses for this machine); nothing
        done when the machine has it already; else the cloud's change of size."""
        size = self.resize_target(instance, size)
        if instance.size == size:
            print(f"{self.api.cloud}: {instance.id} is already {size}")
            return instance
        return self.change_size(instance, size)

    @abstractmethod
    def resize_target(self, instance: Instance, size: str) -> str:
        """The size checked; its name as Instance.size says it."""

    def change_size(self, instance: Instance, size: str) -> Instance:
        """Stopped, given the new size, started again (same disk, same address); a cloud that resizes
        in place says so in its own module."""
        stopped = self.stop(instance)
        self.set_size(stopped, size)
        return self.start(stopped)

    def set_size(self, instance: Instance, size: str) -> None:
        """The stopped machine's size changed (the cloud's call, through the gate)."""
        raise NotImplementedError


@dataclass(frozen=True)
class WorkerRecipe:
    """What every new worker of one create_workers call is made of: the head's unless given."""

    size: str  # the cloud's name of the size
    image: str  # the image, as the cloud's lines name it
    beside: dict = field(default_factory=dict)  # what else the cloud takes from the head (network, group, key)


class Workers(ABC):
    """A Dask cluster's worker machines on one cloud, and the create-workers outline every cloud shares."""

    def __init__(self, api: CloudApi, head: Head, profile: Profile):
        self.api, self.head, self.profile = api, head, profile

    @abstractmethod
    def found(self) -> list[Instance]:
        """Provider.workers."""

    @abstractmethod
    def image(self) -> str:
        """Provider.cluster_image."""

    @abstractmethod
    def allow(self) -> None:
        """Provider.allow_cluster."""

    @abstractmethod
    def terminate(self) -> None:
        """Provider.terminate_workers."""

    def create(self, indexes: list[int], image: str, size: str, public_key: str) -> list[Instance]:
        """Workers of these indexes, made in parallel beside the head (its network, rules and key; its
        image and size unless given), waited for, then found again by their tags.  One that fails leaves
        the others made, and the error names each."""
        head = self.head.find()
        if head is None and not self.api.plan:
            raise no_head(self.profile)
        recipe = self.recipe(head, indexes, image, size, public_key)
        if not self.api.plan:
            print(f"{self.api.cloud}: creating {len(indexes)} worker(s) {recipe.size} from {recipe.image}", flush=True)
        made, failed = in_parallel(lambda index: self.make(recipe, index), indexes)
        if made:
            self.made(list(made.values()))
        if failed:
            raise LabvmError(partial_cluster(self.profile.name, made, failed))
        if self.api.plan:
            return [planned_instance(self.name(index), recipe.size) for index in sorted(made)]
        ids = set(made.values())
        return [worker for worker in self.found() if worker.id in ids]

    @abstractmethod
    def recipe(self, head: Instance | None, indexes: list[int], image: str, size: str, public_key: str) -> WorkerRecipe:
        """Size and image checked (did-you-mean) or taken from the head, and what else a worker needs from
        it.  head is None only under --plan, before the head exists."""

    @abstractmethod
    def make(self, recipe: WorkerRecipe, index: int) -> str:
        """One worker made through the mutation gate; its id (as Instance.id says it)."""

    def made(self, ids: list[str]) -> None:
        """Waits until the made workers run, for a cloud whose make returns before that (EC2's RunInstances
        does); by default `make` has waited for each."""
        return None

    @abstractmethod
    def name(self, index: int) -> str:
        """Worker `index`'s name (it ends -w<index>)."""


def in_parallel(make: Callable[[int], str], indexes: list[int]) -> tuple[dict[int, str], dict[int, str]]:
    """make(index) for each index at once (cluster workers): what each made, and each failure's one line."""
    made, failed = {}, {}
    with ThreadPoolExecutor(max(1, len(indexes))) as pool:
        for index, future in [(i, pool.submit(make, i)) for i in indexes]:
            try:
                made[index] = future.result()
            except LabvmError as e:
                failed[index] = str(e).splitlines()[0]
    return made, failed


def partial_cluster(profile: str, made: dict[int, str], failed: dict[int, str]) -> str:
    """The one line of a create_workers call some of whose workers failed: each failure, what was kept."""
    problems = "; ".join(f"w{index}: {error}" for index, error in sorted(failed.items()))
    kept = f"w{', w'.join(map(str, sorted(made)))} made and kept" if made else "none made"
    return f"{len(failed)} worker(s) not made ({problems}); {kept}; `inv up --host {profile}` makes the missing ones"


@dataclass(frozen=True)
class Parts:
    """A cloud's collaborators, each answering for its seam of the contract."""

    head: Head
    images: ImagesPart
    workers: Workers
    network: NetworkPart
    preflight: PreflightPart
    inventory: InventoryPart
    price: PricePart | None = None  # None: the cloud publishes no prices (hosts.yml's price_per_hour: gives one)
    volumes: VolumesPart | None = None  # None: the cloud keeps no data volume (FEATURES lacks "data")


# -- the template -------------------------------------------------------------------------------------------


class CloudProvider(Provider):
    """The template of the clouds: every verb of the contract from the parts a cloud gives.  A cloud's
    provider builds its API client, settings, tags and parts, declares FEATURES (and why it lacks the
    others), and says where its prices apply (`where`)."""

    FEATURES = CLOUD_FEATURES
    INSTEAD: ClassVar[dict[str, str]] = {}  # a feature the cloud lacks -> the way there is, for Unsupported's line
    boot_timeout = 300  # a new or restarted VM's sshd answers minutes after the cloud says running

    def __init__(self, profile: Profile, api: CloudApi, settings: Settings, tags: Tags, parts: Parts):
        super().__init__(profile)
        self.api, self.settings, self.parts = api, settings, parts
        self._tags = tags

    @property
    def plan(self) -> bool:
        """The API client's gate: --plan."""
        return self.api.plan

    @plan.setter
    def plan(self, value: bool) -> None:
        """--plan on or off, at the one gate."""
        self.api.plan = value

    def start_planning(self) -> None:
        """--plan: the API client's gate prints each change from now on."""
        self.api.plan = True

    def why_not(self, feature: str) -> str:
        """INSTEAD's way there is, for a feature the cloud lacks."""
        return self.INSTEAD.get(feature, "labvm does not do it on this cloud")

    @property
    def scope(self) -> str:
        """The API client's: what its credentials see."""
        return self.api.scope

    @property
    def tags(self) -> Tags:
        """As the cloud's names make them."""
        return self._tags

    def describe(self) -> Description:
        """The cloud's settings' words."""
        return self.settings.describe()

    def power_off(self, instance: Instance) -> Instance:
        """`down` stops the machine as `stop` does."""
        return self.stop(instance)

    def autostop_seconds(self) -> int:
        """hosts.yml's autostop: (the default hour unless told otherwise)."""
        return self.profile.autostop

    # -- the head and its images ---------------------------------------------------------------------
    def find(self) -> Instance | None:
        """The head part's."""
        return self.parts.head.find()

    def create(self, image: str | None = None, public_key: str = "") -> Instance:
        """The head part's."""
        return self.parts.head.create(image, public_key)

    def start(self, instance: Instance) -> Instance:
        """The head part's."""
        return self.parts.head.start(instance)

    def stop(self, instance: Instance) -> Instance:
        """The head part's."""
        return self.parts.head.stop(instance)

    def terminate(self, instance: Instance, keep_ip: bool = False) -> None:
        """The head part's."""
        self.parts.head.terminate(instance, keep_ip)

    def resize(self, instance: Instance, size: str) -> Instance:
        """The head part's resize flow."""
        return self.parts.head.resize(instance, size)

    def last_start(self, instance: Instance) -> datetime:
        """The head part's."""
        return self.parts.head.last_start(instance)

    def running_since(self, instance: Instance) -> datetime | None:
        """What the machine's record says, else the head part's last_start (Nova's record lacks it)."""
        return instance.started or self.parts.head.last_start(instance)

    def admit_caller(self) -> None:
        """The network part's."""
        self.parts.network.admit_caller()

    def snapshot(self, instance: Instance, name: str, share: tuple[str, ...] = (), no_reboot: bool = False) -> Image:
        """The images part's; --share refused where the cloud lacks it (FEATURES), before anything is made."""
        if share:
            self.require("--share")
        return self.parts.images.make(instance, name, share, no_reboot)

    def images(self) -> list[Image]:
        """The images part's."""
        return self.parts.images.listed()

    def delete_image(self, image: Image) -> None:
        """The images part's."""
        self.parts.images.delete(image)

    # -- the data volume ---------------------------------------------------------------------------------
    def data_volume(self) -> Volume | None:
        """The volumes part's."""
        self.require("data")
        return self._volumes().find()

    def attach_data(self, instance: Instance) -> Volume:
        """The one rule on every cloud: one volume per profile and owner, found before one is made, in the
        machine's zone, attached to it alone."""
        volumes = self._volumes()
        volume = volumes.find() or volumes.create(instance.zone)
        if volume.attached_to == instance.id:
            return volume
        data = self.profile.key("data")
        if volume.zone != instance.zone:
            raise LabvmError(
                f"{data}: the data volume {volume.id} is in {volume.zone}, the VM {instance.id} in {instance.zone}; "
                f"a volume attaches only in its own zone: set the VM's zone to {volume.zone}"
            )
        if volume.attached_to:
            raise LabvmError(
                f"{data}: the data volume {volume.id} is attached to {volume.attached_to}, not to this VM "
                f"{instance.id}; detach it there first"
            )
        return volumes.attach(volume, instance)

    def detach_data(self, volume: Volume) -> Volume:
        """The volumes part's; a detached one stays as it is."""
        return self._volumes().detach(volume) if volume.attached_to else volume

    def delete_data(self, volume: Volume) -> None:
        """The volumes part's."""
        self._volumes().delete(volume)

    def grow_data(self, volume: Volume, size_gb: int) -> Volume:
        """The one rule on every cloud: a volume only grows, up to what hosts.yml allows, and only once the
        cloud has finished with it."""
        grow = f"data --grow {size_gb}"
        if size_gb <= volume.size_gb:
            raise LabvmError(
                f"{grow}: the data volume {volume.id} has {volume.size_gb} GB already; a volume only grows "
                f"(no cloud shrinks one): give a size above {volume.size_gb}"
            )
        if size_gb > MAX_VOLUME_GB:
            raise LabvmError(f"{grow}: at most {MAX_VOLUME_GB} GB (16 TiB); give a smaller size")
        if volume.state not in (VOLUME_AVAILABLE, VOLUME_ATTACHED):
            raise LabvmError(f"{grow}: the data volume {volume.id} is {volume.state}; try again once it is not")
        return self._volumes().grow(volume, size_gb)

    def data_backups(self) -> list[Backup]:
        """The volumes part's, newest first."""
        # Two taken within a second: a cloud keeping whole seconds shows them alike; their names (backup_stamp) tell.
        return sorted(self._volumes().backups(), key=lambda backup: (backup.created, backup.name), reverse=True)

    def back_up_data(self, volume: Volume) -> Backup:
        """The volumes part's, of a volume the cloud has finished making."""
        if volume.state == VOLUME_CREATING:
            raise LabvmError(f"data --backup: the data volume {volume.id} is still being made; try again shortly")
        return self._volumes().back_up(volume)

    def delete_data_backup(self, backup: Backup) -> None:
        """The volumes part's."""
        self._volumes().delete_backup(backup)

    def restore_data(self, backup: Backup, zone: str = "") -> Volume:
        """The one rule on every cloud: from a ready backup, only while no VM is up with the current volume
        mounted; a new volume (made once: run again after a failure halfway, it finishes), the current one
        detached and retired, never deleted."""
        volumes = self._volumes()
        restore = f"data --restore {backup.id}"
        if backup.state != BACKUP_READY:
            raise LabvmError(f"{restore}: the backup is {backup.state}; restore a ready one (`inv data` lists them)")
        machine = self.find()
        if machine is not None and machine.state != "stopped":
            raise LabvmError(
                f"{restore}: the VM {machine.id} is {machine.state}; the restored volume replaces the data volume "
                f"while the VM is stopped: `inv down --host {self.profile.name}` first"
            )
        current = volumes.find()
        zone = zone or (machine.zone if machine else current.zone if current else "")
        if not zone:
            raise LabvmError(f"{restore}: no VM and no data volume to take the zone from; give --zone")
        made = volumes.restored_from(backup) or volumes.restore(backup, zone)
        if current is not None and current.id != made.id:
            volumes.retire(self.detach_data(current))
        return made

    def data_backups_outlive_volume(self) -> bool:
        """The volumes part's."""
        return self._volumes().backups_outlive_volume

    def _volumes(self) -> VolumesPart:
        """The volumes part, where hosts.yml gives the profile a data: volume (else refused in one line)."""
        self.require("data")
        if self.parts.volumes is None or self.profile.data is None:
            raise LabvmError(f"{self.profile.key('data')}: not set; add data: {{size: 20}} to give it a data volume")
        return self.parts.volumes

    # -- workers ----------------------------------------------------------------------------------------
    def workers(self) -> list[Instance]:
        """The workers part's."""
        return self.parts.workers.found()

    def create_workers(self, indexes: list[int], image: str, size: str, public_key: str) -> list[Instance]:
        """The workers part's create-workers outline."""
        return self.parts.workers.create(indexes, image, size, public_key)

    def cluster_image(self) -> str:
        """The workers part's."""
        return self.parts.workers.image()

    def allow_cluster(self) -> None:
        """The workers part's."""
        self.parts.workers.allow()

    def terminate_workers(self) -> None:
        """The workers part's."""
        self.parts.workers.terminate()

    # -- questions ----------------------------------------------------------------------------------------
    def first_up(self) -> list[str]:
        """The cloud's own words (its permissions module), from hosts.yml alone."""
        return unlooked.first_up(self.profile)

    def permissions(self) -> tuple[str, ...]:
        """The cloud's own list (its permissions module), read from labvm's code."""
        return unlooked.permissions(self.profile)

    def preflight(self, public_key: str) -> list[Check]:
        """The preflight part's, its quota counting what `to_start` says (asked only once it asks); with
        data:, the data volume's line (data_check)."""
        checks = self.parts.preflight.checks(public_key, self.to_start)
        if self.profile.data is None or self.parts.volumes is None or not all(check.ok for check in checks[:1]):
            return checks  # the first check is the credentials': without them nothing more can be asked
        return checks + [ask("data", self.data_check)]

    def data_check(self) -> str:
        """The one rule on every cloud: the volume and the VM share a zone (a volume attaches only in its own),
        and the storage quota holds what `up` would make (nothing where the volume exists)."""
        volumes = self._volumes()
        volume, machine = volumes.find(), self.find()
        if volume is not None and machine is not None and volume.zone != machine.zone:
            raise LabvmError(
                f"the data volume {volume.id} is in {volume.zone}, the VM {machine.id} in {machine.zone}: `up` cannot "
                f"attach it; `inv data --host {self.profile.name} --backup` then `--restore BACKUP --zone {machine.zone}` "
                f"makes a copy there"
            )
        quota = volumes.storage_check(0 if volume else self.profile.data.size if self.profile.data else 0)
        found = f"{volume.id} ({volume.size_gb} GB) in {volume.zone}" if volume else "none yet"
        return f"{found}; {quota}"

    def inventory(self) -> list[Resource]:
        """The inventory part's."""
        return self.parts.inventory.resources()

    def price_per_hour(self, size: str, spot: bool) -> float | None:
        """The price part's; None where the cloud publishes no prices."""
        return self.parts.price.per_hour(size, spot) if self.parts.price else None

    def price_per_month(self, kind: str, state: str = "", volume_type: str = "") -> float | None:
        """The price part's; None where the cloud publishes no prices."""
        return self.parts.price.per_month(kind, state, volume_type) if self.parts.price else None
