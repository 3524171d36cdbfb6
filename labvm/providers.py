"""Providers: where a profile's machine comes from (the interface of DESIGN.md).

`local` and `ssh` machines already exist and labvm does not own their power: find()
returns them, and every lifecycle verb raises Unsupported naming the profile.  Cloud
providers live in their own modules so their SDKs are imported only when used.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import Profile
from .errors import LabvmError, Unsupported


@dataclass(frozen=True)
class Instance:
    id: str
    name: str
    state: str
    address: str
    size: str = ""


@dataclass(frozen=True)
class Image:
    id: str
    name: str
    created: str
    state: str


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

    def create(self, image: str | None = None) -> Instance:
        self._unsupported("create")

    def start(self, inst: Instance) -> Instance:
        self._unsupported("start")

    def stop(self, inst: Instance) -> Instance:
        self._unsupported("stop")

    def terminate(self, inst: Instance) -> None:
        self._unsupported("terminate")

    def snapshot(self, inst: Instance, name: str) -> Image:
        self._unsupported("snapshot")

    def resize(self, inst: Instance, size: str) -> Instance:
        self._unsupported("resize")

    def images(self) -> list[Image]:
        self._unsupported("images")


def for_profile(profile: Profile) -> ExistingMachine:
    if profile.provider in ("local", "ssh"):
        return ExistingMachine(profile)
    raise LabvmError(
        f"profile {profile.name!r}: provider {profile.provider} is not available in this "
        f"version of labvm yet; for a VM you made by hand use provider: ssh with its address:"
    )
