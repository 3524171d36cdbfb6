"""A cloud labvm could not look at: its SDK found no credentials (credentials.NoCredentials).  `--plan` still
says what a first `up` would make and which rights to ask an admin for, from hosts.yml alone: each cloud's
`permissions` module says both (`first_up(profile)`, `permissions()`), as no cloud call can."""

from __future__ import annotations

import importlib
from types import ModuleType

from ..config import Profile
from .base import CLOUD_FEATURES, Description, Instance, Provider
from .credentials import NoCredentials
from .registry import package


def _cloud(profile: Profile) -> ModuleType:
    return importlib.import_module(f"{package(profile.provider).__name__}.permissions")


def first_up(profile: Profile) -> list[str]:
    """What a first `up` of the cloud profile makes (Provider.first_up), from hosts.yml alone."""
    words: list[str] = _cloud(profile).first_up(profile)
    if profile.data:  # every cloud's the same way: the volume beside the VM, in its zone
        kind = f" {profile.data.type}" if profile.data.type else ""
        words.append(f"data volume: {profile.data.size} GB{kind}, in the VM's zone, mounted at {profile.data_mount}")
    return words


def permissions(profile: Profile) -> tuple[str, ...]:
    """The rights labvm's calls to the profile's cloud need (Provider.permissions), read from labvm's code."""
    rights: tuple[str, ...] = _cloud(profile).permissions()
    return rights


def provider_for(profile: Profile, plan: bool) -> Provider:
    """The profile's provider; under --plan, one whose cloud could not be looked at when its SDK finds no
    credentials as the provider is made (GCE's Application Default Credentials)."""
    from . import for_profile

    try:
        return for_profile(profile)
    except NoCredentials as e:
        if not plan:
            raise
        return Unlooked(profile, e)


class Unlooked(Provider):
    """A cloud profile's provider under --plan without credentials: every question raises the NoCredentials
    its SDK raised, so the verb says it could not look; it changes nothing, as --plan."""

    FEATURES = CLOUD_FEATURES

    def __init__(self, profile: Profile, problem: NoCredentials):
        super().__init__(profile)
        self.problem = problem

    @property
    def plan(self) -> bool:
        """Made under --plan only."""
        return True

    def start_planning(self) -> None:
        """Already planning."""

    def describe(self) -> Description:
        """hosts.yml's size and place."""
        from . import describe

        return describe(self.profile)

    def find(self) -> Instance | None:
        """Could not look."""
        raise self.problem

    def first_up(self) -> list[str]:
        """The cloud's words, from hosts.yml alone."""
        return first_up(self.profile)

    def permissions(self) -> tuple[str, ...]:
        """The cloud's rights, from labvm's code."""
        return permissions(self.profile)
