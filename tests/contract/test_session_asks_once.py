"""`down` asks the cloud for the VM once (issue 27, item 7): the sync, stopping Jupyter and putting
the tunnel to sleep all use the machine as `down` found it, on every world.  The VM's SSH answers
nothing here (a closed port on 127.0.0.1): each step over SSH fails at once, and down goes on."""

import dataclasses
import socket

import pytest
from invoke import Context

from labvm.errors import LabvmError
from labvm.session import Session
from worlds import public_key


@pytest.fixture
def laptop(tmp_path, monkeypatch):
    """A laptop of the test's own: labvm's key and ssh files land under it."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("LABVM_SSH_DIR", raising=False)
    return home


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_down_asks_the_cloud_for_its_vm_once(world, laptop, capsys):
    provider = world.provider(**world.keep_address)
    provider.create(public_key=public_key())
    provider.profile = dataclasses.replace(provider.profile, address="127.0.0.1", port=closed_port())
    asked = []
    find = provider.find
    provider.find = lambda: asked.append("find") or find()

    with pytest.raises(LabvmError) as went_on:
        Session(provider.profile, Context(), provider=provider).down()
    assert "down: the sync and stopping Jupyter failed (said above)" in str(went_on.value)
    assert asked == ["find"], capsys.readouterr().out
    assert find().state == "stopped"  # the control: down went on to the end
