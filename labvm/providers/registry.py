"""The clouds labvm knows, and what the rest of labvm may know of each before importing any of it.

This is the one place outside a cloud's package that names it: its package, its provider and settings
classes, what installs its SDK, and the environment variables its SDK reads (which `.env` may set, which
it may never).  `config` asks it for a profile's valid keys (each cloud's `settings.py`, a dataclass that
declares every key once) and for those variables; `for_profile` for the provider.  It imports nothing of
labvm at the top, and a cloud's package only when asked: its `__init__` and `settings` modules are light,
so reading hosts.yml imports no SDK and no provider part (`inv --list` reads no hosts.yml at all).
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .base import Settings


@dataclass(frozen=True)
class Cloud:
    """A cloud's entry: its package (labvm/providers/<package>/), the provider class it exports (made when a
    profile is used), its settings class (its hosts.yml keys), what installs its SDK, and the environment
    variables that name its SDK's own configuration or credential files."""

    package: str
    provider: str
    settings: str
    install: str
    # The variables that name the SDK's configuration or credential files: such a file can move the endpoint
    # your password goes to, or name a program to run.  Your own shell may set them, with a full path
    # (sdk_files_problem); a shared .env never.
    sdk_files: tuple[str, ...] = ()
    sdk_path_lists: tuple[str, ...] = ()  # those of sdk_files that hold folders separated by os.pathsep
    # Other variables a shared .env may not set (regular expressions): they change where the SDK connects
    # or what it trusts.
    refused: tuple[str, ...] = ()
    # labvm's own variables for this cloud that .env may put into the environment.
    switches: tuple[str, ...] = ()


# In the order hosts.yml's messages list the providers.
CLOUDS = {
    "openstack": Cloud(
        "openstack",
        "OpenStackProvider",
        "OpenStackSettings",
        "OpenStack profiles need openstacksdk: bin/bootstrap openstack installs it (bin/inv does for hosts.yml)",
        sdk_files=("OS_CLIENT_CONFIG_FILE", "OS_CLIENT_SECURE_FILE"),  # openstack/config/loader.py
        refused=("OS_AUTH_URL", "OS_CACERT"),
    ),
    "aws": Cloud(
        "aws",
        "AwsProvider",
        "AwsSettings",
        "AWS profiles need boto3: bin/bootstrap aws installs it (bin/inv does for hosts.yml)",
        # botocore/configprovider.py, credentials.py and loaders.py
        sdk_files=("AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_DATA_PATH", "BOTO_CONFIG"),
        sdk_path_lists=("AWS_DATA_PATH",),
    ),
    "gce": Cloud(
        "gce",
        "GceProvider",
        "GceSettings",
        "GCE profiles need google-cloud-compute: bin/bootstrap gce installs it (bin/inv does for hosts.yml)",
        sdk_files=("GOOGLE_APPLICATION_CREDENTIALS", "CLOUDSDK_CONFIG"),  # google/auth/_default.py, _cloud_sdk.py
        refused=("CLOUDSDK_.*",),
        switches=("LABVM_GCE_OSLOGIN",),
    ),
}
# What the clouds' SDKs read to choose an account's profile, region or project, nothing that says where to
# connect: .env may put them into the environment, and hosts.yml's ${VAR} may read them from it (in this order).
ACCOUNT_VARIABLES = ("AWS_PROFILE", "AWS_DEFAULT_REGION", "OS_CLOUD", "GOOGLE_CLOUD_PROJECT")


def package(name: str) -> ModuleType:
    """The cloud's package: its `__init__` imports only its settings, so the provider's parts and the SDK
    come only when its provider is asked for."""
    return importlib.import_module(f"{__package__}.{CLOUDS[name].package}")


def settings_class(name: str) -> type[Settings] | None:
    """The settings dataclass of the cloud `name` (its hosts.yml keys); None for a provider that is no cloud."""
    if name not in CLOUDS:
        return None
    settings: type[Settings] = getattr(package(name), CLOUDS[name].settings)
    return settings


def sdk_files_problem(name: str) -> str | None:
    """The cloud's SDK reads the file each of its sdk_files names (only your own shell sets them): a relative
    path would be read from the current folder, maybe a checkout's file.  None when each is unset or a full
    path (~ allowed; a path list is a list of them)."""
    cloud = CLOUDS[name]
    for variable in cloud.sdk_files:
        setting = os.environ.get(variable, "")
        for value in setting.split(os.pathsep) if variable in cloud.sdk_path_lists else [setting]:
            if value and not Path(value).expanduser().is_absolute():
                return (
                    f"{variable}={value} is a relative path: the cloud SDK would read it from the current "
                    f"folder ({Path.cwd()}); give the full path: {variable}={Path(value).absolute()}"
                )
    return None
