"""The profile's data volume (hosts.yml data:): attached once the machine runs, mounted before Jupyter
starts, kept when the machine goes (or, terminate --delete-data, deleted after a last backup), shown with what
it costs, grown, backed up and restored (`inv data`).

The volume is the cloud's (found by its tags, never by a file here: providers' attach_data); the folder on
the machine is labvm.data_host's (formatted only when blank, mounted by UUID).  A profile without data:
asks the cloud nothing here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .config import Profile
from .errors import LabvmError
from .plan import PlannedSteps, Steps
from .providers.base import BACKUP_READY, VOLUME_ATTACHED, VOLUME_AVAILABLE, Backup, Instance, Provider, Volume


class DataVolume:
    """One profile's data volume, for the session's verbs (`up`, `terminate`, `data`)."""

    def __init__(self, profile: Profile, provider: Provider, host: Callable[[], Any], steps: Steps | PlannedSteps):
        """steps: the session's (under --plan each cloud call is printed by the provider's gate, and what
        would follow is said, not done)."""
        self.profile, self.provider, self._host, self.steps = profile, provider, host, steps
        self.attached: Volume | None = None  # attached to the running machine by this session

    def attach(self, instance: Instance) -> None:
        """The volume attached to the machine (made the first time), where hosts.yml gives data:."""
        if self.profile.data is None:
            return
        self.attached = volume = self.provider.attach_data(instance)
        print(f"data: {volume.name} ({volume.id}, {volume.size_gb} GB) attached to {instance.id}", flush=True)

    def mount(self) -> None:
        """On the machine: the attached volume is the data folder (labvm.data_host), before Jupyter starts."""
        if self.attached is None:
            return
        from .data_host import mount_data

        mounted = mount_data(self._host(), self.profile, self.attached)
        print(f"data: {mounted.summary()}", flush=True)

    def kept(self) -> None:
        """After the machine went: the volume is still there, and what keeping it costs."""
        volume = self.provider.data_volume() if self.profile.data else None
        if volume is not None:
            print(
                f"data: {volume.name} ({volume.id}, {volume.size_gb} GB) kept{self._monthly(volume)}; "
                f"the next `inv up --host {self.profile.name}` attaches it again"
            )

    def show(self) -> None:
        """`inv data`: the volume, its size, where it is attached and mounted, and its price a month."""
        volume = self.provider.data_volume()  # refused in one line without data:
        if volume is None:
            size = self.profile.data.size if self.profile.data else 0
            print(f"data: none yet; `inv up --host {self.profile.name}` makes it ({size} GB)")
            backups = self.provider.data_backups()
            if backups:  # kept after terminate --delete-data: one can come back
                print(f"  or `inv data --host {self.profile.name} --restore BACKUP` makes it from one of its backups:")
                self._list_backups(backups)
            return
        where = f"attached to {volume.attached_to}" if volume.attached_to else "attached to no VM"
        if volume.state not in (VOLUME_ATTACHED, VOLUME_AVAILABLE):  # creating, or changing: say so
            where = f"{volume.state}, {where}"
        print(f"data: {volume.name} ({volume.id}): {volume.size_gb} GB {volume.type or ''}".rstrip())
        print(f"  {where}, in {volume.zone}; mounted at {self.profile.data_mount} when the VM runs")
        used = self._usage(volume)
        if used:
            print(f"  {used}")
        monthly = self._monthly(volume)
        if monthly:
            print(f"  {monthly.removeprefix(', ')}, whether or not the VM runs")
        self._list_backups(self.provider.data_backups())

    def _list_backups(self, backups: list[Backup]) -> None:
        """The profile's backups, newest first: of its volume, or kept after the volume went."""
        taking = f"; `inv data --host {self.profile.name} --backup` takes one"
        print(f"  backups: {len(backups) or 'none'}{'' if backups else taking}")
        for backup in backups:
            print(f"    {backup.id}  {_when(backup)}  {backup.state:<8} {backup.size_gb} GB  {backup.name}")

    def act(
        self, backup: bool = False, grow: int | None = None, restore: str = "", zone: str = "", keep: int | None = None
    ) -> None:
        """`inv data`: what was asked, in this order (--grow, --backup, --restore, --prune --keep: a backup holds
        the grown size, a restore may follow the backup just taken, a prune never deletes it), then the volume
        and its backups as they are."""
        if grow is not None:
            self.grow(grow)
        if backup:
            self.back_up()
        if restore:
            self.restore(restore, zone)
        if keep is not None:
            self.prune(keep)
        self.show()

    def grow(self, size_gb: int) -> None:
        """The volume enlarged by the cloud, then, on a running VM it is attached to, its filesystem grown to
        it (data.sh, online); otherwise the next `up` grows the filesystem as it mounts it."""
        volume = self._existing("--grow")
        grown = self.provider.grow_data(volume, size_gb)
        self._say(f"data: {grown.name} ({grown.id}) is {grown.size_gb} GB{self._monthly(grown)}")
        machine = self.provider.find() if grown.attached_to else None
        if machine is None or machine.id != grown.attached_to or machine.state != "running":
            self._say(f"data: its filesystem grows at the next `inv up --host {self.profile.name}`")
            return
        self.attached = grown
        self.steps.then("then grow its filesystem on the VM (data.sh)", self.mount)

    def back_up(self) -> Backup:
        """A backup of the volume (a snapshot, tagged as the profile's), waited for until ready."""
        backup = self.provider.back_up_data(self._existing("--backup"))
        self._say(f"data: backed up as {backup.id} ({backup.name}, {backup.size_gb} GB){self._monthly_backup(backup)}")
        return backup

    def restore(self, wanted: str, zone: str = "") -> None:
        """A new volume from the backup named by id or name, for the next `up` to attach; the one it replaces
        detached and kept, said with how to delete it (the user decides, once sure)."""
        backups = self.provider.data_backups()
        backup = next((b for b in backups if wanted in (b.id, b.name)), None)
        if backup is None:
            raise LabvmError(
                f"data --restore {wanted}: no backup of {self.profile.name} by that id or name; "
                f"`inv data --host {self.profile.name}` lists them"
            )
        replaced = self.provider.data_volume()
        made = self.provider.restore_data(backup, zone)
        if replaced is not None and replaced.id != made.id:
            self._say(
                f"data: {replaced.name} ({replaced.id}) is kept, detached, no longer the profile's data volume; "
                f"delete it once you are sure (`inv audit` gives the command){self._monthly(replaced)}"
            )
        self._say(
            f"data: restored {backup.id} as {made.name} ({made.id}, {made.size_gb} GB) in {made.zone}; "
            f"the next `inv up --host {self.profile.name}` attaches and mounts it"
        )

    def prune(self, keep: int) -> None:
        """All but the newest `keep` ready backups deleted; one still being made, or failed, is left alone."""
        ready = [backup for backup in self.provider.data_backups() if backup.state == BACKUP_READY]
        for backup in ready[keep:]:
            self.provider.delete_data_backup(backup)
            self._say(f"data: deleted the backup {backup.id} ({backup.name}, taken {_when(backup)})")

    # -- terminate --delete-data ----------------------------------------------------------------

    def deletion(self, force: bool) -> str:
        """For terminate's question: what --delete-data will do to the volume ("" without one).  A last backup
        is taken first where backups outlive their volume; where they go with it (OpenStack), nothing would be
        kept: refused before anything changes, unless forced."""
        volume = self.provider.data_volume() if self.profile.data else None
        if volume is None:
            return ""
        if self.provider.data_backups_outlive_volume():
            return f", and the data volume {volume.id} ({volume.size_gb} GB) after a last backup of it"
        if not force:
            raise LabvmError(
                f"terminate --delete-data: on {self.profile.provider} a backup is deleted with its volume, so none "
                f"of {volume.id} would be kept; nothing was deleted: terminate without --delete-data keeps the volume, "
                f"or pass --force to delete it and its backups"
            )
        return f", and the data volume {volume.id} ({volume.size_gb} GB) with its backups"

    def delete(self) -> None:
        """After the machine went (nothing writes to the volume any more): a last backup, so newer than any
        write, where backups outlive the volume; else (deletion() was forced) its backups first, as the cloud
        deletes no volume that has any.  Then the volume."""
        volume = self.provider.data_volume() if self.profile.data else None
        if volume is None:
            return
        volume = self.provider.detach_data(volume)  # the machine went: detached already, as a rule
        outlive = self.provider.data_backups_outlive_volume()
        if outlive:
            self.back_up()
        else:
            for backup in self.provider.data_backups():
                if backup.volume_id == volume.id:
                    self.provider.delete_data_backup(backup)
        self.provider.delete_data(volume)
        kept = f"; its backups are kept (`inv data --host {self.profile.name}` lists them)" if outlive else ""
        self._say(f"data: deleted {volume.name} ({volume.id}, {volume.size_gb} GB){kept}")

    def billed_while_stopped(self) -> str:
        """For `down`'s last line: " and its data volume (100 GB, about $8.00 a month)", priced now so the asleep
        page can say it too (it asks no cloud); "" without data: or when the cloud does not answer."""
        try:
            volume = self.provider.data_volume() if self.profile.data else None
        except LabvmError:
            return ""
        return f" and its data volume ({volume.size_gb} GB{self._monthly(volume)})" if volume else ""

    def status_line(self) -> list[str]:
        """`inv status`'s line: the volume and its price a month, the VM running or not (a stopped VM's data
        still bills); none without data:, or when the cloud does not answer."""
        if self.profile.data is None:
            return []
        try:
            volume = self.provider.data_volume()
        except LabvmError:
            return []
        if volume is None:
            return [f"  data: none yet (`inv up` makes {self.profile.data.size} GB)"]
        where = "attached" if volume.attached_to else "kept, attached to no VM"
        return [f"  data: {volume.name}, {volume.size_gb} GB, {where}{self._monthly(volume)}"]

    def _usage(self, volume: Volume) -> str:
        """What the VM says of the mounted volume (used, free), where it runs with the volume attached; else ""."""
        machine = self.provider.find() if volume.attached_to else None
        if machine is None or machine.id != volume.attached_to or machine.state != "running":
            return ""
        from .data_host import data_usage

        try:
            usage = data_usage(self._host(), self.profile)
        except LabvmError as e:  # the VM's answer is extra: its failure is said, the rest shown
            return f"used and free space unknown: {e}"
        return usage.summary() + " (on the VM now)" if usage else "not mounted on the VM now; `inv up` mounts it"

    def _say(self, line: str) -> None:
        """What was done, where it was (under --plan the gate's lines said what would be)."""
        self.steps.then("", lambda: print(line, flush=True))

    def _existing(self, option: str) -> Volume:
        """The profile's volume, for an option that needs one; none yet is one line with the way to make it."""
        volume = self.provider.data_volume()  # refused in one line without data:
        if volume is None:
            raise LabvmError(
                f"data {option}: {self.profile.name} has no data volume yet; `inv up --host {self.profile.name}` makes it"
            )
        return volume

    def _monthly_backup(self, backup: Backup) -> str:
        from .prices import per_month

        usd = per_month(self.provider, "snapshot", backup.size_gb)
        return f", at most about ${usd:.2f} a month (a snapshot bills the blocks it stores)" if usd is not None else ""

    def _monthly(self, volume: Volume) -> str:
        from .prices import per_month, remember_data_month  # only where a price is shown: not on every start

        usd = per_month(self.provider, "volume", volume.size_gb, volume_type=volume.type)
        if usd is None:
            return ""
        if volume.size_gb == (self.profile.data.size if self.profile.data else None):
            remember_data_month(self.profile, usd)  # the asleep page's line (labvm.keeper asks no cloud)
        return f", about ${usd:.2f} a month"


def _when(backup: Backup) -> str:
    """When a backup was taken, to the minute, in UTC (as the cloud keeps it)."""
    return f"{backup.created:%Y-%m-%d %H:%M} UTC"
