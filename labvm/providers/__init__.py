"""Providers: where a profile's machine comes from.  `for_profile` is the registry.

The contract is `base.Provider`; `existing` serves local and ssh profiles, `cloud.CloudProvider` is the
template of aws, openstack and gce.  A cloud module is imported only when its profile is used, so its
SDK is too (`inv --list` never imports boto3).
"""

from __future__ import annotations

from ..config import Profile
from ..errors import LabvmError
from .base import IMAGE_AVAILABLE, Check, Image, Instance, Provider, Resource, parse_time

__all__ = ["IMAGE_AVAILABLE", "Check", "Image", "Instance", "Provider", "Resource", "for_profile", "parse_time"]

# provider -> (module, class, what installs its SDK)
CLOUDS = {
    "aws": ("aws", "AwsProvider", "AWS profiles need boto3: .venv/bin/pip install -e '.[aws]' (bin/bootstrap does)"),
    "openstack": ("openstack", "OpenStackProvider",
                  "OpenStack profiles need openstacksdk: .venv/bin/pip install -e '.[openstack]' (bin/bootstrap does)"),
    "gce": ("gce", "GceProvider", "GCE profiles need google-cloud-compute: .venv/bin/pip install -e '.[gce]'"),
}


def for_profile(profile: Profile) -> Provider:
    if profile.provider in ("local", "ssh"):
        from .existing import ExistingMachine

        return ExistingMachine(profile)
    if profile.provider not in CLOUDS:
        raise AssertionError(f"config.PROVIDERS lists {profile.provider} but no provider makes it")
    module, name, install = CLOUDS[profile.provider]
    import importlib

    try:
        provider_class = getattr(importlib.import_module(f".{module}", __name__), name)
    except ImportError as e:
        if e.name and e.name.startswith(f"{__name__}."):
            raise
        raise LabvmError(install) from None
    return provider_class(profile)
