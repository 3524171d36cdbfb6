"""The registry (labvm/providers/registry.py, for_profile in labvm/providers/__init__.py): what it answers about a profile without a cloud's SDK, as the
keeper asks while a VM sleeps, and what every registered cloud declares of the contract."""

import json
import subprocess
import sys

import pytest
import yaml

from labvm import providers
from labvm.providers import base, registry
from labvm.providers.cloud import CloudProvider
from realhost import ROOT

PROFILES = {
    "aws": {"provider": "aws", "region": "us-west-2", "instance_type": "c5.large", "spot": True, "user": "ubuntu"},
    "cades": {"provider": "openstack", "cloud": "cades", "flavor": "m1.large", "user": "cades"},
    "gce": {"provider": "gce", "project": "p", "zone": "us-west1-b", "user": "debian"},
    "ws": {"provider": "ssh", "address": "ws1.example.org"},
}
SAID = {
    "aws": ["c5.large", "us-west-2", True, True],
    "cades": ["m1.large", "cades", True, False],
    "gce": ["e2-small", "us-west1-b", True, False],
    "ws": ["", "ws1.example.org", False, False],
}


def test_describe_answers_from_hosts_yml_without_any_cloud_sdk(tmp_path):
    hosts = tmp_path / "hosts.yml"
    hosts.write_text(yaml.safe_dump({"profiles": PROFILES}))
    probe = (
        "import dataclasses, json, sys; sys.path.insert(0, %r)\n"
        "from labvm import config, providers\n"
        "loaded = config.load(__import__('pathlib').Path(%r))\n"
        "said = {name: list(dataclasses.astuple(providers.describe(loaded.profile(name)))) for name in %r}\n"
        "sdks = sorted({m.split('.')[0] for m in sys.modules} & {'boto3', 'botocore', 'openstack', 'keystoneauth1', 'google'})\n"
        "print(json.dumps([said, sdks]))" % (str(ROOT), str(hosts), list(PROFILES))
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    said, sdks = json.loads(out.stdout)
    assert said == SAID and sdks == []


@pytest.mark.parametrize("cloud", sorted(providers.CLOUDS))
def test_every_cloud_declares_the_contract(cloud):
    entry = providers.CLOUDS[cloud]
    package = registry.package(cloud)
    provider, settings = getattr(package, entry.provider), getattr(package, entry.settings)
    assert issubclass(provider, CloudProvider) and issubclass(settings, base.Settings)
    assert base.CLOUD_FEATURES <= provider.FEATURES <= set(base.FEATURES)
    assert provider.NO_PRICE and provider.NO_MONTHLY_PRICE  # what `inv audit` says where it shows no price
    assert set(provider.INSTEAD) <= set(base.FEATURES) - provider.FEATURES
