"""Fixtures: a throwaway user and real sshd servers per test session, a fresh "laptop" per test."""

import os
import shutil
import subprocess

import pytest

from aws_world import REGION, aws_env, moto_server
from realhost import Lab, Sshd, User


@pytest.fixture(scope="session")
def user(tmp_path_factory) -> User:
    """A real login on "the VM", created for this test run and removed after it."""
    if os.geteuid() != 0:
        pytest.skip("the SSH tests create a throwaway Unix user and start sshd: run bin/test as root")
    created = User.create(tmp_path_factory.mktemp("userkey"))
    yield created
    created.remove()


@pytest.fixture(scope="session")
def neighbour(user, tmp_path_factory) -> User:
    """Another user of the laptop (a lab's shared workstation): a login of its own, no root; it can
    bind any free loopback port and connect to any bound one, as every local user can."""
    created = User.create(tmp_path_factory.mktemp("neighbourkey"))
    yield created
    created.remove()


@pytest.fixture(scope="session")
def sshd(user, tmp_path_factory) -> Sshd:
    server = Sshd(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def jump_sshd(user, tmp_path_factory) -> Sshd:
    """A second sshd, the "login node"; DEBUG logging records each forwarded channel."""
    server = Sshd(tmp_path_factory.mktemp("jump"), log_level="DEBUG1")
    yield server
    server.stop()


@pytest.fixture
def workspace(user):
    """An empty ~/work on the VM for each test."""
    subprocess.run(["rm", "-rf", str(user.home / "work")], check=True)
    yield user.home / "work"
    subprocess.run(["rm", "-rf", str(user.home / "work")], check=True)


@pytest.fixture
def lab() -> Lab:
    created = Lab.create()
    yield created
    shutil.rmtree(created.directory, ignore_errors=True)


@pytest.fixture(scope="module")
def moto():
    """moto's EC2 server, one per test module (its state is shared by the module's tests): the endpoint URL."""
    from moto_ec2_rules import ec2_rules

    server, endpoint = moto_server()
    with ec2_rules():  # names and descriptions as EC2 checks them, DeleteAssociatedSnapshots honoured
        yield endpoint
    server.stop()


@pytest.fixture
def ec2(moto, monkeypatch):
    """An EC2 client of moto, with the environment labvm's own calls in this process find it through."""
    import boto3

    for name, value in aws_env(moto).items():
        monkeypatch.setenv(name, value)
    return boto3.client("ec2", region_name=REGION)
