"""The profile's data volume (hosts.yml data:): attached once the machine runs, mounted before Jupyter
starts, kept when the machine goes, and shown with what it costs (`inv data`).

The volume is the cloud's (found by its tags, never by a file here: providers' attach_data); the folder on
the machine is labvm.data_host's (formatted only when blank, mounted by UUID).  A profile without data:
asks the cloud nothing here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .config import Profile
from .errors import LabvmError
from .providers.base import VOLUME_ATTACHED, VOLUME_AVAILABLE, Instance, Provider, Volume


class DataVolume:
    """One profile's data volume, for the session's verbs (`up`, `terminate`, `data`)."""

    def __init__(self, profile: Profile, provider: Provider, host: Callable[[], Any]):
        self.profile, self.provider, self._host = profile, provider, host
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
            return
        where = f"attached to {volume.attached_to}" if volume.attached_to else "attached to no VM"
        if volume.state not in (VOLUME_ATTACHED, VOLUME_AVAILABLE):  # creating, or changing: say so
            where = f"{volume.state}, {where}"
        print(f"data: {volume.name} ({volume.id}): {volume.size_gb} GB {volume.type or ''}".rstrip())
        print(f"  {where}, in {volume.zone}; mounted at {self.profile.data_mount} when the VM runs")
        monthly = self._monthly(volume)
        if monthly:
            print(f"  {monthly.removeprefix(', ')}, whether or not the VM runs")

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

    def _monthly(self, volume: Volume) -> str:
        from .prices import per_month  # only where a price is shown: not on every task's start

        usd = per_month(self.provider, "volume", volume.size_gb, volume_type=volume.type)
        return f", about ${usd:.2f} a month" if usd is not None else ""
