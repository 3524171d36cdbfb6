"""Fixtures: a throwaway user and real sshd servers per test session, a fresh "laptop" per test."""

import os
import shutil

import pytest

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
def lab() -> Lab:
    created = Lab.create()
    yield created
    shutil.rmtree(created.directory, ignore_errors=True)
