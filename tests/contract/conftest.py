"""The contract suite's worlds: one `world` per cloud (tests/contract/worlds.py), each behaviour test runs
on every one of them.  The live worlds run only when their marker is asked for (pytest -m live_aws ...)."""

import contextlib
import sys

import pytest

from aws_world import moto_server
from worlds import AwsWorld, GceWorld, MemoryWorld, OpenStackWorld, ec2_as_aws


@pytest.fixture(scope="session")
def moto_endpoint():
    """moto's EC2 server, one for the session (each test resets its state)."""
    server, endpoint = moto_server()
    yield endpoint
    server.stop()


def make_world(kind: str, request, monkeypatch, directory):
    if kind == "memory":
        return MemoryWorld(monkeypatch, directory)
    if kind == "aws":
        return AwsWorld(monkeypatch, directory, request.getfixturevalue("moto_endpoint"))
    if kind == "openstack":
        return OpenStackWorld(monkeypatch, directory)
    if kind == "gce":
        return GceWorld(monkeypatch, directory)
    return {
        "live_aws": lambda: AwsWorld(monkeypatch, directory),
        "live_openstack": lambda: OpenStackWorld(monkeypatch, directory, live=True),
        "live_gce": lambda: GceWorld(monkeypatch, directory, live=True),
    }[kind]()


WORLDS = [
    "memory",
    "aws",
    "openstack",
    "gce",
    pytest.param("live_aws", marks=pytest.mark.live_aws),
    pytest.param("live_openstack", marks=pytest.mark.live_openstack),
    pytest.param("live_gce", marks=pytest.mark.live_gce),
]


@contextlib.contextmanager
def opened(kind: str, request, monkeypatch, directory):
    """A world of this kind for one test; a live one's cleanup runs whatever the test did."""
    # moto answers as EC2 where it differs (worlds.ec2_as_aws).
    undo = ec2_as_aws() if kind == "aws" else None
    made = None
    try:
        made = make_world(kind, request, monkeypatch, directory)
        yield made
    finally:
        left = made.cleanup() if made is not None and made.live else []
        if made is not None:
            made.close()
        if undo:
            undo()
        if left:
            capture = request.config.pluginmanager.getplugin("capturemanager")
            with capture.global_and_fixture_disabled():
                print("\n".join(["", f"{kind}: the run could not delete (delete by hand):", *left]), file=sys.stderr)
            pytest.fail(f"{kind}: {len(left)} thing(s) left in the account; listed above")


@pytest.fixture(params=WORLDS)
def world(request, monkeypatch, tmp_path):
    with opened(request.param, request, monkeypatch, tmp_path) as made:
        yield made


@pytest.fixture
def aws_world(request, monkeypatch, tmp_path):
    with opened("aws", request, monkeypatch, tmp_path) as made:
        yield made


@pytest.fixture(params=["aws", "openstack", "gce"])
def cloud_world(request, monkeypatch, tmp_path):
    """Each cloud's fake world, for what is proven on the clouds and not on the memory cloud (the clean-up)."""
    with opened(request.param, request, monkeypatch, tmp_path) as made:
        yield made
