"""The whole lifecycle on a real cloud account, as a user runs it: opt in with `pytest -m live_aws`
(or live_openstack, live_gce); without credentials each skips.  The provider-level behaviours run
there too, from the contract suite (tests/contract, the same markers).

up to an answering URL (SSH, keys, env, Jupyter, tunnel) -> snapshot -> down -> up again (resumed)
-> terminate without --force (the image is newer than the last start) -> in `finally`, whatever
failed: terminate --force, and the run's images deleted through labvm's own provider; what could
not be deleted fails the test by name, so a run never leaves a bill behind unsaid.
"""

import os
import uuid

import pytest

from realhost import answers, url_of


def aws_profile():
    import boto3

    if boto3.Session().get_credentials() is None or not os.environ.get("LABVM_LIVE_AWS_AMI"):
        pytest.skip("no AWS credentials or LABVM_LIVE_AWS_AMI: nothing to run against")
    return {
        "provider": "aws",
        "region": boto3.Session().region_name or "us-west-2",
        "instance_type": "t3.small",
        "user": os.environ.get("LABVM_LIVE_AWS_USER", "ubuntu"),
        "image": os.environ["LABVM_LIVE_AWS_AMI"],
        "volume_size": 10,
    }


def openstack_profile():
    needed = ("OS_CLOUD", "LABVM_LIVE_OS_IMAGE", "LABVM_LIVE_OS_FLAVOR", "LABVM_LIVE_OS_NETWORK")
    if not all(os.environ.get(name) for name in needed):
        pytest.skip(f"set {', '.join(needed)} to run against a real OpenStack cloud")
    return {
        "provider": "openstack",
        "cloud": os.environ["OS_CLOUD"],
        "image": os.environ["LABVM_LIVE_OS_IMAGE"],
        "flavor": os.environ["LABVM_LIVE_OS_FLAVOR"],
        "network": os.environ["LABVM_LIVE_OS_NETWORK"],
        "floating_ip_pool": os.environ.get("LABVM_LIVE_OS_POOL") or None,
        "user": os.environ.get("LABVM_LIVE_OS_USER", "cades"),
    }


def gce_profile():
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    try:
        google.auth.default()
    except DefaultCredentialsError:
        pytest.skip("no Google Application Default Credentials")
    if not (os.environ.get("GCE_PROJECT") and os.environ.get("GCE_ZONE")):
        pytest.skip("set GCE_PROJECT and GCE_ZONE")
    return {
        "provider": "gce",
        "project": os.environ["GCE_PROJECT"],
        "zone": os.environ["GCE_ZONE"],
        "machine_type": "e2-small",
        "image_family": "debian-12",
        "disk_size": 10,
    }


@pytest.mark.parametrize(
    "profile_of",
    [
        pytest.param(aws_profile, marks=pytest.mark.live_aws, id="aws"),
        pytest.param(openstack_profile, marks=pytest.mark.live_openstack, id="openstack"),
        pytest.param(gce_profile, marks=pytest.mark.live_gce, id="gce"),
    ],
)
def test_the_whole_lifecycle_on_a_real_account(lab, profile_of, monkeypatch):
    settings = {k: v for k, v in profile_of().items() if v is not None}
    name = f"live-{uuid.uuid4().hex[:6]}"  # this run's own: the cleanup can only touch what it made
    settings.update(env={"manager": "uv", "packages": ["jupyterlab"]}, autostop="30m")
    lab.extra_env.update({k: v for k, v in os.environ.items() if k.startswith(("AWS_", "OS_", "GOOGLE_", "GCE_"))})
    lab.write_hosts({name: settings})
    try:
        first = lab.inv("up", "--host", name, "--no-browser", timeout=1800).output
        assert answers(url_of(first))
        lab.inv("snapshot", "--host", name, timeout=3600)
        lab.inv("down", "--host", name, timeout=900)
        again = lab.inv("up", "--host", name, "--no-browser", timeout=1800).output
        assert "resuming" in again and answers(url_of(again))
        gone = lab.inv("terminate", "--host", name, "--yes", timeout=900).output
        assert "terminated" in gone
    finally:
        lab.inv("terminate", "--host", name, "--yes", "--force", "--no-sync", check=False, timeout=900)
        for key, value in lab.extra_env.items():
            monkeypatch.setenv(key, value)
        left = delete_images(lab, name)
        assert left == [], f"left in the account, delete by hand: {left}"


def delete_images(lab, name: str) -> list[str]:
    """The run's images (and their snapshots) through labvm's own provider; what stays, named."""
    from labvm import config
    from labvm.errors import LabvmError
    from labvm.providers import for_profile

    provider = for_profile(config.load(lab.hosts).profile(name))
    left = []
    for image in provider.images():
        try:
            provider.delete_image(image)
        except LabvmError as e:
            left.append(f"{image.id} ({e})")
    return left
