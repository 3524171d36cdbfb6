"""Providers: where a profile's machine comes from.  `for_profile` is the registry.

The contract is `base.Provider`; `existing` serves local and ssh profiles, `cloud.CloudProvider` is the
template of the clouds, each a package of its own (CLOUDS).  A cloud's package is imported only when
its profile is used, and its SDK only when its provider is made (`inv --list` never imports boto3).
"""

from __future__ import annotations

from ..config import Profile
from ..errors import LabvmError
from .base import IMAGE_AVAILABLE, Check, Description, Image, Instance, Provider, Resource, Tags, parse_time
from .registry import CLOUDS, Cloud, package, settings_class

__all__ = [
    "IMAGE_AVAILABLE",
    "Check",
    "Description",
    "Image",
    "Instance",
    "Provider",
    "Resource",
    "Tags",
    "describe",
    "for_profile",
    "parse_time",
]


def for_profile(profile: Profile) -> Provider:
    """The provider of the profile's machines (a cloud's connects to its API here)."""
    if profile.provider in ("local", "ssh"):
        from .existing import ExistingMachine

        return ExistingMachine(profile)
    cloud = _cloud(profile)
    try:
        provider_class = getattr(package(profile.provider), cloud.provider)
        return provider_class(profile)
    except ImportError as e:  # the cloud's SDK, imported as its provider is made
        if e.name and e.name.startswith(f"{__name__}."):
            raise
        raise LabvmError(cloud.install) from None


def describe(profile: Profile) -> Description:
    """What `Provider.describe` answers, from hosts.yml alone: no SDK, no credentials, no network (the
    keeper asks it while the machine sleeps)."""
    if profile.provider in ("local", "ssh"):
        from .existing import ExistingMachine

        return ExistingMachine(profile).describe()
    _cloud(profile)
    settings = settings_class(profile.provider)
    assert settings is not None, "every cloud of the registry declares its settings"
    return settings.of(profile).describe()


def _cloud(profile: Profile) -> Cloud:
    if profile.provider not in CLOUDS:
        raise AssertionError(f"config accepted the provider {profile.provider} but no provider makes it")
    return CLOUDS[profile.provider]
