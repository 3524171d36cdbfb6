"""What a first `up` of a gce profile makes (from hosts.yml alone), and the IAM permissions labvm's GCE code
needs, read from that code (not a list kept by hand): what a user without the rights asks an admin for.

How a permission is derived: api.py makes each Compute client (`self.firewalls = compute_v1.FirewallsClient(...)`),
whose class names the REST collection (FirewallsClient -> firewalls, ZoneOperationsClient -> zoneOperations);
every `<client>.<method>` named in labvm/providers/gce/*.py is one REST method, whose reference page
(https://cloud.google.com/compute/docs/reference/rest/v1/<collection>/<method>, "Authorization requires the
following IAM permission") names `compute.<collection>.<method>`: the method in camelCase, except those VERBS
says.  A method that also needs more (an instance made uses a disk, a subnetwork, metadata) adds what
IMPLIED says, from the page cited there.  Google's list of them all:
https://cloud.google.com/compute/docs/access/iam-permissions."""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

from ...config import Profile
from ..cloud import owner
from .names import GceNames
from .settings import GceSettings

# REST methods whose permission is not their own name (each method's reference page): insert creates, an
# aggregated list lists, waiting on an operation reads it (zoneOperations/wait: compute.zoneOperations.get).
VERBS = {"insert": "create", "aggregated_list": "list", "wait": "get"}
# What a method needs besides its own permission.  instances.insert: "Required permissions" of
# https://cloud.google.com/compute/docs/instances/create-start-instance; firewalls.insert:
# https://cloud.google.com/firewall/docs/using-firewalls ("IAM roles", compute.networks.updatePolicy);
# images.insert from a disk: https://cloud.google.com/compute/docs/images/create-custom (compute.disks.useReadOnly).
IMPLIED = {
    "compute.instances.create": (
        "compute.disks.create",
        "compute.images.useReadOnly",
        "compute.instances.setLabels",
        "compute.instances.setMetadata",
        "compute.instances.setTags",
        "compute.networks.use",
        "compute.subnetworks.use",
        "compute.subnetworks.useExternalIp",
        "compute.addresses.use",
    ),
    "compute.firewalls.create": ("compute.networks.updatePolicy",),
    "compute.firewalls.patch": ("compute.networks.updatePolicy",),
    "compute.images.create": ("compute.disks.useReadOnly",),
    # The data disk (volumes.py): attaching uses the disk
    # (https://cloud.google.com/compute/docs/disks/add-persistent-disk "Required roles": compute.disks.use),
    # and a disk made with labels sets them (compute.disks.setLabels, as instances.insert's labels); a disk restored
    # from a snapshot reads it ("Required roles" of https://cloud.google.com/compute/docs/disks/restore-snapshot:
    # compute.disks.create and compute.snapshots.useReadOnly).  A retired disk's setLabels is its own method's.
    "compute.instances.attachDisk": ("compute.disks.use",),
    "compute.disks.create": ("compute.disks.setLabels", "compute.snapshots.useReadOnly"),
    # A backup (volumes.py, snapshots.insert with sourceDisk): "To create snapshots, the following IAM permissions
    # are necessary: compute.disks.createSnapshot, compute.snapshots.create, and compute.snapshots.get"
    # (https://cloud.google.com/sdk/gcloud/reference/compute/disks/snapshot); its labels, as a disk's at
    # creation, compute.snapshots.setLabels.
    "compute.snapshots.create": ("compute.disks.createSnapshot", "compute.snapshots.setLabels"),
}
# What no Compute client call names: where OS Login is on, logging in to the VM over SSH
# (roles/compute.osLogin, https://cloud.google.com/compute/docs/oslogin/set-up-oslogin "Grant OS Login IAM
# roles"; the role holds compute.instances.osLogin, https://cloud.google.com/compute/docs/access/iam).
# importSshPublicKey writes the caller's own login profile and asks for no project permission; reading the
# organisation's policy may be refused, and labvm then says how to tell it (oslogin.py).
LOGIN = ("compute.instances.osLogin",)


def collections() -> dict[str, str]:
    """api.py's client attributes -> the REST collection each serves (`images_client` -> `images`)."""
    found = {}
    for node in ast.walk(ast.parse((Path(__file__).parent / "api.py").read_text(encoding="utf-8"))):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            made = node.value.func
            target = node.targets[0]
            if isinstance(made, ast.Attribute) and made.attr.endswith("Client") and isinstance(target, ast.Attribute):
                name = made.attr.removesuffix("Client")
                found[target.attr] = name[0].lower() + name[1:]
    return found


def camel(method: str) -> str:
    """A client method's REST name: set_machine_type -> setMachineType."""
    return re.sub(r"_([a-z])", lambda m: m.group(1).upper(), method)


@functools.cache
def permissions() -> tuple[str, ...]:
    """Each IAM permission ("compute.instances.create") labvm's GCE code may need, sorted."""
    clients = collections()
    found: set[str] = set(LOGIN)
    for source in sorted(Path(__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute):
                if node.value.attr in clients and not node.attr.startswith("_"):
                    permission = f"compute.{clients[node.value.attr]}.{camel(VERBS.get(node.attr, node.attr))}"
                    found.update((permission, *IMPLIED.get(permission, ())))
    return tuple(sorted(found))


def first_up(profile: Profile) -> list[str]:
    """What a first `up` makes (network.py, head.py): the SSH firewall rule, the VM (labvm's key in its
    metadata, or OS Login's), and a static address where hosts.yml keeps one; no cloud call."""
    settings = GceSettings.of(profile)
    names = GceNames(profile.name, owner())
    spot = " (Spot)" if settings.spot else ""
    image = f"{settings.image_project}/{settings.image_family}"
    made = [
        f"firewall rule {names.rule} (port 22 from {settings.ssh_cidr or 'this laptop'})",
        f"VM {names.name}: {settings.machine_type}{spot}, {image}, {settings.disk_size} GB, in {settings.zone}",
    ]
    return made + ([f"static address {names.name}"] if settings.static_ip else [])
