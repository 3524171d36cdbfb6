"""Providers: where a profile's machine comes from (the interface of DESIGN.md).

`local` and `ssh` machines already exist and labvm does not own their power: find()
returns them, and every lifecycle verb raises Unsupported naming the profile.  Cloud
providers live in their own modules so their SDKs are imported only when used.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone

from .config import Profile
from .errors import LabvmError, Unsupported


@dataclass(frozen=True)
class Instance:
    id: str
    name: str
    state: str
    address: str
    size: str = ""
    user: str = ""  # the login the cloud decided (GCE OS Login's POSIX user); empty: the profile's user
    private_address: str = ""  # inside the cloud network: where its cluster's machines reach it


@dataclass(frozen=True)
class Image:
    id: str
    name: str
    created: str
    state: str


@dataclass(frozen=True)
class Resource:
    """Something labvm made that a cloud keeps (and bills), as `inv audit` lists it."""

    cloud: str  # aws, openstack, gce
    scope: str  # what one set of credentials sees: AWS region, clouds.yaml entry, GCE project
    kind: str  # instance, image, snapshot, volume, address
    id: str  # what the cloud's own CLI takes
    profile: str  # its labvm:profile tag (label, floating IP description)
    owner: str
    state: str  # instances: running, stopped, ...; addresses and volumes: attached or unattached
    since: datetime | None  # when it was made; for an instance its last start where the cloud says
    delete: str  # the cloud's own command that deletes it
    size_gb: float | None = None
    type: str = ""  # instance type, flavor, machine type
    hourly_usd: float | None = None  # where the cloud publishes a price
    address: str = ""  # an address's IP


@dataclass(frozen=True)
class Check:
    """One line of `inv check`: a read-only question to the cloud, answered before anything is billed."""

    name: str  # credentials, region, network, image, size, quota, key pair, ssh rule, os login, ...
    ok: bool
    detail: str  # ok: what was found; otherwise the problem and its next step, one line


def ask(name: str, question) -> Check:
    """A preflight question's answer: its line, or the one-line problem it raised."""
    try:
        return Check(name, True, question())
    except LabvmError as e:
        return Check(name, False, str(e).splitlines()[0])


def in_parallel(make, indexes: list[int]) -> tuple[dict[int, str], dict[int, str]]:
    """make(index) for each index at once (cluster workers): what each made, and each failure's one line."""

    made, failed = {}, {}
    with ThreadPoolExecutor(max(1, len(indexes))) as pool:
        for index, future in [(i, pool.submit(make, i)) for i in indexes]:
            try:
                made[index] = future.result()
            except LabvmError as e:
                failed[index] = str(e).splitlines()[0]
    return made, failed


def partial_cluster(profile: str, made: dict, failed: dict[int, str]) -> str:
    problems = "; ".join(f"w{index}: {error}" for index, error in sorted(failed.items()))
    kept = f"w{', w'.join(map(str, sorted(made)))} made and kept" if made else "none made"
    return f"{len(failed)} worker(s) not made ({problems}); {kept}; `inv up --host {profile}` makes the missing ones"


def parse_time(text: str | None) -> datetime | None:
    """An API time stamp ("...Z", "+00:00", or Nova's UTC without a zone) as an aware datetime."""
    if not text:
        return None
    stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)


class ExistingMachine:
    """A machine labvm reaches but does not create, stop or resize."""

    owns_machine = False

    def __init__(self, profile: Profile):
        self.profile = profile

    def find(self) -> Instance:
        address = self.profile.address or "127.0.0.1"
        return Instance(self.profile.name, self.profile.name, "running", address)

    def _unsupported(self, verb: str):
        raise Unsupported(
            f"{verb} is not supported for profile {self.profile.name!r} "
            f"(provider {self.profile.provider}: labvm uses the machine, it does not manage it)"
        )

    def create(self, *args, **kwargs) -> Instance:
        self._unsupported("create")

    def start(self, *args) -> Instance:
        self._unsupported("start")

    def stop(self, *args) -> Instance:
        self._unsupported("stop")

    def terminate(self, *args) -> None:
        self._unsupported("terminate")

    def snapshot(self, *args) -> Image:
        self._unsupported("snapshot")

    def resize(self, *args) -> Instance:
        self._unsupported("resize")

    def images(self) -> list[Image]:
        self._unsupported("images")

    def delete_image(self, image: Image) -> None:
        self._unsupported("images --prune")

    def last_start(self, *args):
        self._unsupported("terminate")


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


def for_profile(profile: Profile):
    if profile.provider in ("local", "ssh"):
        return ExistingMachine(profile)
    if profile.provider == "aws":
        try:
            from .aws import AwsProvider
        except ImportError:
            raise LabvmError("AWS profiles need boto3: .venv/bin/pip install -e '.[aws]' (bin/bootstrap does)") from None
        return AwsProvider(profile)
    if profile.provider == "openstack":
        try:
            from .openstack import OpenStackProvider
        except ImportError:
            raise LabvmError("OpenStack profiles need openstacksdk: .venv/bin/pip install -e '.[openstack]' (bin/bootstrap does)") from None
        return OpenStackProvider(profile)
    if profile.provider == "gce":
        try:
            from .gce import GceProvider
        except ImportError:
            raise LabvmError("GCE profiles need google-cloud-compute: .venv/bin/pip install -e '.[gce]'") from None
        return GceProvider(profile)
    raise AssertionError(f"config.PROVIDERS lists {profile.provider} but no provider makes it")
