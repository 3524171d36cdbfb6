"""What the three clouds share: owner naming, the mutation gate (--plan), waits with progress, did-you-mean,
the create-workers outline and the resize flow.

A cloud module implements the primitives; a rule every cloud keeps lives here once.  A cloud that
needs an exception says so in its own module, next to the cited reason.
"""

from __future__ import annotations

import difflib
import getpass
import hashlib
import os
import re
import time
from dataclasses import dataclass, field

from ..config import Profile
from ..errors import LabvmError
from .base import Instance, Provider, from_cloud, in_parallel, partial_cluster


@dataclass(frozen=True)
class NameRules:
    """What one cloud accepts in one kind of name, from the cloud's own reference (cited where used)."""

    allowed: str  # a regular-expression character class: the characters a name may hold
    limit: int  # the longest name accepted
    lower: bool = False  # the cloud accepts lowercase only
    first_letter: bool = False  # the name must start with a letter (RFC 1035)


# EC2: security group names and descriptions in a VPC, rule descriptions (botocore's ec2 service model,
# CreateSecurityGroup GroupName/GroupDescription, IpRange/UserIdGroupPair Description; "a-z, A-Z, 0-9,
# spaces, and ._-:/()#,@[]+=&;{}!$*", 255 characters).  Key pair names accept any ASCII; labvm uses the
# same safe set for them.
EC2_NAME = NameRules(r"a-zA-Z0-9 ._\-:/()#,@\[\]+=&;{}!$*", 255)
# Nova key pairs at the microversion openstacksdk sends (2.10): ^[_\- a-zA-Z0-9]+$, 255 characters
# (nova/api/openstack/compute/schemas/keypairs.py, create_v210; "." and "@" only from 2.92).
NOVA_KEYPAIR = NameRules(r"_\- a-zA-Z0-9", 255)
# Server, security group and floating IP description: Nova and Neutron take any printable text of 255;
# labvm keeps to letters, digits, "._-:+" so the names stay plain on every command line.
OPENSTACK_NAME = NameRules(r"a-zA-Z0-9._\-:+", 255)
# GCE resource names: RFC 1035, [a-z]([-a-z0-9]{0,61}[a-z0-9])?
# (https://cloud.google.com/compute/docs/naming-resources).
GCE_NAME = NameRules(r"a-z0-9\-", 63, lower=True, first_letter=True)
# GCE label values: lowercase letters, digits, "_" and "-", 63 characters
# (https://cloud.google.com/compute/docs/labeling-resources#requirements).
GCE_LABEL = NameRules(r"a-z0-9_\-", 63, lower=True)


def cloud_name(rules: NameRules, *parts: str) -> str:
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
    return f"{name[:rules.limit - 7].rstrip('- ')}-{digest}"


@dataclass(frozen=True)
class WorkerRecipe:
    """What every new worker of one create_workers call is made of: the head's unless given."""

    size: str  # the cloud's name of the size
    image: str  # the image, as the cloud's lines name it
    beside: dict = field(default_factory=dict)  # what else the cloud takes from the head (network, group, key)


def tag_number(value: object) -> int:
    """The number a labvm tag holds (labvm:index); 0 for anything else a co-member of the account may
    have written there: no traceback, and no index of labvm's (workers count from 1)."""
    text = str(value)
    return int(text) if text.isascii() and text.isdigit() and len(text) < 7 else 0


def owner() -> str:
    """Who the resources belong to among the lab members sharing an account: LABVM_OWNER, else the login."""
    return os.environ.get("LABVM_OWNER") or getpass.getuser()


class CloudProvider(Provider):
    """The template of the clouds: a cloud sets `cloud` and implements the contract's verbs from its primitives."""

    cloud = ""  # aws, openstack, gce: the prefix of its lines
    boot_timeout = 300  # a new or restarted VM's sshd answers minutes after the cloud says running

    def __init__(self, profile: Profile):
        super().__init__(profile)
        self.settings = profile.cloud_settings
        self.owner = owner()
        self.plan = False

    def start_planning(self) -> None:
        self.plan = True

    def require(self, verb: str) -> None:
        """A cloud does every verb to the machines labvm makes there."""

    def power_off(self, instance: Instance) -> Instance:
        return self.stop(instance)

    def autostop_seconds(self) -> int:
        return self.profile.autostop

    def _where(self, key: str) -> str:
        return f"{self.profile.source}: profiles.{self.profile.name}.{key}"

    # -- THE mutation gate -------------------------------------------------------------------------
    def mutate(self, what: str, action, *args, planned=None, **kwargs):
        """Every call that changes the cloud passes here.  Under --plan it is printed, not made, and
        `planned` stands in for its answer, so the verb goes on to print the rest of its plan."""
        if self.plan:
            print(f"plan: {self.cloud}: {what}", flush=True)
            return planned
        return self.call(action, *args, **kwargs)

    def call(self, action, *args, **kwargs):
        """One SDK call, its errors turned into one line with the next step (each cloud says how)."""
        return action(*args, **kwargs)

    # -- waits ---------------------------------------------------------------------------------------
    def wait_until(self, what: str, done, timeout: float, poll: float = 2.0, progress: float = 30.0,
                   late: str = ""):
        """Polls done() until it returns something true (returned), printing progress while it takes long.
        Under --plan nothing was made to wait for: the wait is printed.  late: the next step on timeout."""
        if self.plan:
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
                raise LabvmError(f"{self.cloud}: {what} did not happen in {waited / 60:.0f}m" + (f"; {late}" if late else ""))
            if time.monotonic() - said >= progress:
                print(f"{self.cloud}: still waiting until {what} ({waited / 60:.0f}m)", flush=True)
                said = time.monotonic()
            time.sleep(poll)

    # -- did-you-mean ------------------------------------------------------------------------------
    @staticmethod
    def unknown(key: str, kind: str, wanted: str, known: list[str], listing: str) -> LabvmError:
        """The one line for a size, image or network the cloud does not have: the closest it has (names
        the cloud lists, an admin's or a co-member's text)."""
        close = difflib.get_close_matches(wanted, known, n=3, cutoff=0.5)
        hint = f"; closest: {', '.join(map(from_cloud, close))}" if close else ""
        return LabvmError(f"{key}: no {kind} {wanted!r}{hint} ({listing})")

    # -- planned stand-ins ------------------------------------------------------------------------
    def planned_instance(self, name: str, size: str = "") -> Instance:
        """What a planned create answers: enough for the verb to print the rest of its plan."""
        return Instance("(planned)", name, "running", "(planned)", size)

    # -- the create-workers outline ----------------------------------------------------------------
    def create_workers(self, indexes: list[int], image: str, size: str, public_key: str) -> list[Instance]:
        """Workers of these indexes, made in parallel beside the head (its network, rules and key; its
        image and size unless given), waited for, then found again by their tags.  One that fails leaves
        the others made, and the error names each."""
        head = self.find()
        if head is None and not self.plan:
            raise self.no_head()
        recipe = self._worker_recipe(head, indexes, image, size, public_key)
        if not self.plan:
            print(f"{self.cloud}: creating {len(indexes)} worker(s) {recipe.size} from {recipe.image}", flush=True)
        made, failed = in_parallel(lambda index: self._make_worker(recipe, index), indexes)
        if made:
            self._workers_made(list(made.values()))
        if failed:
            raise LabvmError(partial_cluster(self.profile.name, made, failed))
        if self.plan:
            return [self.planned_instance(self._worker_name(index), recipe.size) for index in sorted(made)]
        ids = set(made.values())
        return [worker for worker in self.workers() if worker.id in ids]

    def no_head(self) -> LabvmError:
        return LabvmError(f"profile {self.profile.name!r} has no VM to make workers beside; "
                          f"`inv up --host {self.profile.name}`")

    def _worker_recipe(self, head: Instance | None, indexes: list[int], image: str, size: str,
                       public_key: str) -> WorkerRecipe:
        """The cloud's part: size and image checked (did-you-mean) or taken from the head, and what else
        a worker needs from it.  head is None only under --plan, before the head exists."""
        raise NotImplementedError

    def _make_worker(self, recipe: WorkerRecipe, index: int) -> str:
        """The cloud's part: one worker made through the mutation gate; its id (as Instance.id says it)."""
        raise NotImplementedError

    def _workers_made(self, ids: list[str]) -> None:
        """Waits until the made workers run, for a cloud whose make returns before that."""

    def _worker_name(self, index: int) -> str:
        raise NotImplementedError

    # -- the resize flow ---------------------------------------------------------------------------
    def resize(self, inst: Instance, size: str) -> Instance:
        """The size checked first (did-you-mean, and what the cloud refuses for this machine); nothing
        done when the machine has it already; else the cloud's change of size."""
        size = self._resize_target(inst, size)
        if inst.size == size:
            print(f"{self.cloud}: {inst.id} is already {size}")
            return inst
        return self._change_size(inst, size)

    def _resize_target(self, inst: Instance, size: str) -> str:
        """The cloud's part: the size checked; its name as Instance.size says it."""
        raise NotImplementedError

    def _change_size(self, inst: Instance, size: str) -> Instance:
        """Stopped, given the new size, started again (same disk, same address); a cloud that resizes
        in place says so in its own module."""
        stopped = self.stop(inst)
        self._set_size(stopped, size)
        return self.start(stopped)

    def _set_size(self, inst: Instance, size: str) -> None:
        raise NotImplementedError
