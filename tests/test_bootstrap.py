"""bin/bootstrap.py: what a fresh clone installs.  The SDK of each cloud hosts.yml's profiles use (a commented-out
profile asks for nothing), and pip's own configuration (a lab's mirror, wheel folder, constraints, certificate)
passed to uv, which reads no pip.conf.  The whole install runs for real in CI: `.ci/run` starts from a clone
without .venv, and bin/test's `bin/bootstrap test` makes it with uv."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

from realhost import ROOT


@pytest.fixture
def bootstrap():
    spec = importlib.util.spec_from_file_location("bootstrap", ROOT / "bin" / "bootstrap.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


HOSTS = """\
default: local
profiles:
  local: {provider: local}
  cades:
    provider: "openstack"       # CADES
  gpu: {provider: gce, machine_type: g2-standard-4}
  # aws:
  #   provider: aws
  note: {provider: ssh, address: ws1, tags: {about: "provider: aws in a comment's value"}}
"""


def test_the_sdks_installed_are_those_of_hosts_yml_profiles(bootstrap, tmp_path, monkeypatch):
    (tmp_path / "hosts.yml").write_text(HOSTS)
    monkeypatch.setenv("LABVM_HOSTS", str(tmp_path / "hosts.yml"))
    assert bootstrap.wanted([]) == {"openstack", "gce"}
    assert bootstrap.wanted(["aws"]) == {"aws", "openstack", "gce"}
    assert bootstrap.wanted(["test"]) == {"test", "aws", "openstack", "gce"}
    (tmp_path / "hosts.yml").write_text("default: local\nprofiles:\n  local: {provider: local}\n")
    assert bootstrap.wanted([]) == set()


def test_an_unknown_extra_is_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "bin" / "bootstrap.py"), "azure"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 2
    assert result.stderr == "bin/bootstrap: unknown extra 'azure': give any of aws, openstack, gce, test\n"


def test_pips_mirror_wheels_constraints_and_certificate_reach_uv(bootstrap, tmp_path, monkeypatch):
    """pip reads pip.conf (PIP_CONFIG_FILE here) and PIP_* variables; `pip config list` shows both, and uv
    gets each as its own flag (uv pip install --help: --index-url, --extra-index-url, --find-links,
    --constraint, --allow-insecure-host) or, for the certificate, SSL_CERT_FILE."""
    conf = tmp_path / "pip.conf"
    conf.write_text(
        "[global]\n"
        "index-url = https://pypi.lab.example/simple\n"
        "extra-index-url = file:///srv/pypi/simple https://more.lab.example/simple\n"
        "constraint = /etc/lab/constraints.txt\n"
        "cert = /etc/lab/ca.pem\n"
        "trusted-host = more.lab.example\n"
    )
    for name in [n for n in os.environ if n.startswith("PIP_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("PIP_CONFIG_FILE", str(conf))
    monkeypatch.setenv("PIP_FIND_LINKS", "/opt/lab-wheels")
    flags, variables = bootstrap.pip_settings()
    pairs = list(zip(flags[::2], flags[1::2]))
    assert ("--index-url", "https://pypi.lab.example/simple") in pairs
    assert ("--extra-index-url", "file:///srv/pypi/simple") in pairs
    assert ("--extra-index-url", "https://more.lab.example/simple") in pairs
    assert ("--constraint", "/etc/lab/constraints.txt") in pairs
    assert ("--allow-insecure-host", "more.lab.example") in pairs
    assert ("--find-links", "/opt/lab-wheels") in pairs
    assert ("--index-strategy", "unsafe-best-match") in pairs  # pip's rule: the best version of every index
    assert variables == {"SSL_CERT_FILE": "/etc/lab/ca.pem"}
