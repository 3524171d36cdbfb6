"""Provider-level OpenStack tests on the fake: a fresh cloud per test, a laptop that points at it."""

import openstack
import pytest

from fake_openstack import FakeOpenStack


@pytest.fixture
def fake():
    with FakeOpenStack() as server:
        yield server


@pytest.fixture
def place(fake, tmp_path, monkeypatch):
    """A laptop: clouds.yaml for the fake, LABVM_OWNER=hedy, and a writer of hosts.yml."""
    clouds = tmp_path / "clouds.yaml"
    clouds.write_text(fake.clouds_yaml("cades"))
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(clouds))
    monkeypatch.delenv("OS_CLOUD", raising=False)
    monkeypatch.setenv("LABVM_OWNER", "hedy")
    return tmp_path


@pytest.fixture
def conn(fake, tmp_path, monkeypatch):
    clouds = tmp_path / "clouds.yaml"
    clouds.write_text(fake.clouds_yaml("cades"))
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(clouds))
    monkeypatch.delenv("OS_CLOUD", raising=False)
    connection = openstack.connect(cloud="cades")
    yield connection
    connection.close()
