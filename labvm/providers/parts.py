"""The seams a cloud's collaborators answer for, besides its head and workers (cloud.Head, cloud.Workers):
what `cloud.Parts` holds and `cloud.CloudProvider` calls.  Each is a Protocol, so a part is any class with
these methods (no base to inherit), and mypy checks each cloud's part against it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from .base import Backup, Check, Image, Instance, Resource, Starting, Volume


class ImagesPart(Protocol):
    """A cloud's images of the profile: make (Provider.snapshot), listed (images), delete (delete_image)."""

    def make(self, instance: Instance, name: str, share: tuple[str, ...], no_reboot: bool) -> Image:
        """An image of the instance's disk called name, waited for (Provider.snapshot)."""
        ...

    def listed(self) -> list[Image]:
        """The profile's images, newest first (Provider.images)."""
        ...

    def delete(self, image: Image) -> None:
        """The image gone, with what it alone kept (Provider.delete_image)."""
        ...


class NetworkPart(Protocol):
    """Who reaches a cloud's machines: admit_caller (Provider.admit_caller)."""

    def admit_caller(self) -> None:
        """labvm's SSH rule admits this machine's address (Provider.admit_caller)."""
        ...


class PreflightPart(Protocol):
    """checks (Provider.preflight)."""

    def checks(self, public_key: str, to_start: Callable[[], list[Starting]]) -> list[Check]:
        """`inv check`'s read-only questions, one Check each (Provider.preflight); the quota question counts
        what to_start() answers (Provider.to_start, the one rule), only the numbers are the cloud's.  An empty
        public_key: labvm has no key on this machine yet (`inv check` makes none)."""
        ...


class InventoryPart(Protocol):
    """resources (Provider.inventory)."""

    def resources(self) -> list[Resource]:
        """Everything labvm labelled where the credentials reach, whoever's (Provider.inventory)."""
        ...


class PricePart(Protocol):
    """per_hour and per_month (Provider.price_per_hour, price_per_month), where the cloud publishes prices."""

    def per_hour(self, size: str, spot: bool) -> float | None:
        """USD an hour of a machine of this size, on spot capacity if asked (Provider.price_per_hour); None
        when unknown."""
        ...

    def per_month(self, kind: str, state: str, volume_type: str) -> float | None:
        """USD a month of what bills while no machine runs: per GB of a volume, image or snapshot, per
        address (Provider.price_per_month); None when unknown."""
        ...


class VolumesPart(Protocol):
    """The profile's data volume (hosts.yml data:): found, made, attached, detached, deleted, grown, backed up,
    restored (Provider.data_volume, attach_data, ...; CloudProvider keeps the rules)."""

    # Whether a backup outlives its volume: a snapshot of EBS or Persistent Disk does; a Cinder snapshot
    # lives inside its volume, which Cinder deletes only once its snapshots are gone.
    backups_outlive_volume: bool

    def find(self) -> Volume | None:
        """The volume tagged with the profile, its owner and the data role; None if there is none."""
        ...

    def create(self, zone: str) -> Volume:
        """Made in `zone` (data.size GB, data.type or the cloud's default), tagged and named as the profile's
        machine is, through the mutation gate (--plan: a planned volume), waited for until available."""
        ...

    def attach(self, volume: Volume, instance: Instance) -> Volume:
        """Attached to the instance through the gate, waited for until the cloud says so; its devices as the
        guest sees them."""
        ...

    def detach(self, volume: Volume) -> Volume:
        """Detached through the gate, waited for until available."""
        ...

    def delete(self, volume: Volume) -> None:
        """Deleted through the gate, waited for until gone."""
        ...

    def grow(self, volume: Volume, size_gb: int) -> Volume:
        """Enlarged to size_gb through the gate (CloudProvider checked it is larger), waited for until the cloud
        reports the new size as the guest's; a cloud that cannot grow it attached to a running machine refuses
        in one line before anything changes."""
        ...

    def backups(self) -> list[Backup]:
        """The snapshots tagged with the profile, its owner and the data-backup role, any state."""
        ...

    def back_up(self, volume: Volume) -> Backup:
        """A snapshot of the volume through the gate, tagged with the profile, owner and data-backup role and
        named after the volume and the time, waited for until ready (--plan: a planned backup)."""
        ...

    def delete_backup(self, backup: Backup) -> None:
        """The snapshot deleted through the gate, waited for until gone."""
        ...

    def restore(self, backup: Backup, zone: str) -> Volume:
        """A new volume made from the backup in `zone` (the backup's size, data.type), tagged as the profile's
        data volume and with the backup's id (labvm:restored-from), through the gate, waited for until available."""
        ...

    def restored_from(self, backup: Backup) -> Volume | None:
        """The profile's data volume made from this backup, if one is (a restore stopped halfway is finished, the
        volume never made twice)."""
        ...

    def storage_check(self, need_gb: int) -> str:
        """`inv check`'s line on the storage quota of data.type (and the volume count where the cloud has one):
        what is in use of what is allowed, read-only; over it with need_gb more, LabvmError naming the quota and
        where to ask for more; a quota the cloud does not say is "not checked: " and why."""
        ...

    def retire(self, volume: Volume) -> None:
        """Its role tag set to data-replaced through the gate: no longer found as the profile's data volume, kept
        (inv audit lists it, with the command that deletes it)."""
        ...
