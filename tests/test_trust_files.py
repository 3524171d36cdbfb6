"""Issue 26, items 3 and 4, and LABVM_OWNER: files in a checkout or in the current folder are never read
as a cloud SDK's configuration; hosts.yml sends off the laptop only what it could have shipped; a shared
.env cannot make labvm act for another owner.

Each case runs as a user meets it: `inv` in a subprocess, in the lab folder (the checkout, the current
folder), with the user's own configuration in the lab's home; a colleague's file in the checkout.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import yaml
from aws_world import REGION, aws_env
from fake_openstack import PASSWORD, FakeOpenStack
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from openstack_world import SETTINGS as CADES
from realhost import one_line
from test_environment import conda_profile
from test_trust_config import laptop, unreachable_vm

from labvm import config as labvm_config
from labvm.errors import LabvmError

# -- 3: a clouds.yaml, secure.yaml or clouds-public.yaml in the current folder is never read ----------

SECURE = f"clouds:\n  cades:\n    auth:\n      password: {PASSWORD}\n"


def hostile_clouds(own: FakeOpenStack, hostile: FakeOpenStack) -> tuple[dict[str, str], dict[str, str]]:
    """The user's own files (~/.config/openstack) and a colleague's clouds.yaml in the checkout, which
    redefines `cades` at the colleague's keystone: openstacksdk would merge the user's secure.yaml in."""
    own_files = {"clouds.yaml": own.clouds_yaml("cades", password=None), "secure.yaml": SECURE}
    return own_files, {"clouds.yaml": hostile.clouds_yaml("cades", password=None)}


def hostile_secure(own: FakeOpenStack, hostile: FakeOpenStack) -> tuple[dict[str, str], dict[str, str]]:
    """A secure.yaml is merged over the clouds.yaml: one in the checkout moves the user's auth_url."""
    own_files = {"clouds.yaml": own.clouds_yaml("cades")}
    return own_files, {"secure.yaml": f"clouds:\n  cades:\n    auth:\n      auth_url: {hostile.auth_url}\n"}


def hostile_vendor(own: FakeOpenStack, hostile: FakeOpenStack) -> tuple[dict[str, str], dict[str, str]]:
    """An entry that names a `profile:` takes its auth_url from the first clouds-public.yaml found."""
    entry = (
        own.clouds_yaml("cades")
        .replace(f"      auth_url: {own.auth_url}\n", "")
        .replace("    auth_type: password\n", "    auth_type: password\n    profile: lab-site\n")
    )
    vendor = "public-clouds:\n  lab-site:\n    auth:\n      auth_url: {}\n"
    return (
        {"clouds.yaml": entry, "clouds-public.yaml": vendor.format(own.auth_url)},
        {"clouds-public.yaml": vendor.format(hostile.auth_url)},
    )


def refused_at_connection(result, *fragments: str) -> str:
    """`inv check` failed before asking the cloud anything: its one line is the connection's refusal."""
    assert result.returncode == 1, result.output
    (line,) = [line for line in result.stdout.splitlines() if not line.startswith("ok ")]
    assert line.startswith("FAIL  credentials  "), line
    for fragment in fragments:
        assert fragment in line, line
    return line


@pytest.fixture
def openstack_lab(lab):
    """A laptop whose OpenStack configuration is only in its own ~/.config/openstack (no variable names a file)."""
    lab.extra_env.update(
        OS_CLIENT_CONFIG_FILE="", OS_CLIENT_SECURE_FILE="", OS_CLOUD="", XDG_CONFIG_HOME="", LABVM_OWNER="hedy"
    )
    lab.write_hosts({"cades": CADES})
    return lab


@pytest.mark.parametrize(
    "colleague",
    [hostile_clouds, hostile_secure, hostile_vendor],
    ids=["clouds.yaml", "secure.yaml", "clouds-public.yaml"],
)
def test_a_cloud_file_in_the_current_folder_never_receives_the_password(openstack_lab, colleague):
    lab = openstack_lab
    with FakeOpenStack() as own, FakeOpenStack() as hostile:
        own_files, planted = colleague(own, hostile)
        folder = lab.home / ".config" / "openstack"
        folder.mkdir(parents=True)
        for name, text in own_files.items():
            (folder / name).write_text(text)
        for name, text in planted.items():
            (lab.directory / name).write_text(text)
        result = lab.inv("status", "--host", "cades")
        assert hostile.requests == [] and not any(PASSWORD.encode() in body for body in hostile.bodies)
        logins = [body for (_, path), body in zip(own.requests, own.bodies) if path.endswith("/auth/tokens")]
        assert logins and all(PASSWORD.encode() in body for body in logins)  # labvm worked with the user's own entry
        (note,) = [line for line in result.stderr.splitlines() if "not read" in line]
        assert note.startswith(f"openstack: {lab.directory / next(iter(planted))} is not read")


def test_an_entry_found_nowhere_names_where_labvm_looked(openstack_lab):
    lab = openstack_lab
    with FakeOpenStack() as hostile:
        folder = lab.home / ".config" / "openstack"
        folder.mkdir(parents=True)
        (folder / "clouds.yaml").write_text(hostile.clouds_yaml("other"))
        (lab.directory / "clouds.yaml").write_text(hostile.clouds_yaml("cades"))
        line = refused_at_connection(
            lab.inv("check", "--host", "cades", check=False),
            f"{lab.hosts}: profiles.cades.cloud: no entry 'cades' in {folder / 'clouds.yaml'}",
            str(folder),
            "never from the current folder",
            f"{lab.directory / 'clouds.yaml'} is not read",
            "add 'cades' to clouds.yaml (~/.config/openstack/clouds.yaml, or OS_CLIENT_CONFIG_FILE)",
        )
        assert hostile.requests == [], line


# -- the SDKs' file variables: a relative path would be read from the current folder ------------------


@pytest.mark.parametrize("variable", ["OS_CLIENT_CONFIG_FILE", "OS_CLIENT_SECURE_FILE"])
def test_an_openstack_file_variable_with_a_relative_path_is_refused(openstack_lab, variable):
    lab = openstack_lab
    with FakeOpenStack() as hostile:
        (lab.directory / "cloud-settings.yaml").write_text(hostile.clouds_yaml("cades"))
        lab.extra_env[variable] = "cloud-settings.yaml"
        refused_at_connection(
            lab.inv("check", "--host", "cades", check=False),
            f"{variable}=cloud-settings.yaml is a relative path",
            "the current folder",
            f"give the full path: {variable}=/",
        )
        assert hostile.requests == []


@pytest.mark.parametrize("variable", ["AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"])
def test_an_aws_file_variable_with_a_relative_path_is_refused(lab, moto, variable):
    lab.extra_env.update(aws_env(moto), LABVM_OWNER="hedy")
    (lab.directory / "aws-settings").write_text("[default]\nregion = us-west-2\n")
    lab.extra_env[variable] = "aws-settings"
    lab.write_hosts({"aws": {"provider": "aws", "region": REGION, "user": "ubuntu"}})
    refused_at_connection(
        lab.inv("check", "--host", "aws", check=False),
        f"{variable}=aws-settings is a relative path",
        f"give the full path: {variable}=/",
    )


def test_a_google_credentials_variable_with_a_relative_path_is_refused(lab):
    lab.extra_env.update(GOOGLE_APPLICATION_CREDENTIALS="key.json", LABVM_OWNER="hedy")
    (lab.directory / "key.json").write_text("{}")
    lab.write_hosts({"gce": {"provider": "gce", "project": "proj", "zone": "us-west1-b"}})
    refused_at_connection(
        lab.inv("check", "--host", "gce", check=False),
        "GOOGLE_APPLICATION_CREDENTIALS=key.json is a relative path",
        "give the full path: GOOGLE_APPLICATION_CREDENTIALS=/",
    )


# -- 4: environment_file sends off the laptop only what the checkout could have shipped ---------------


def plant(lab) -> dict[str, str]:
    """What a checkout holds besides what it ships: the user's .env, git's config, keys, a virtualenv,
    a hidden folder, and labvm's own ssh folder (LABVM_SSH_DIR inside the checkout, as in every lab)."""
    assert lab.ssh_dir.parent == lab.directory
    for relative in (".env", ".git/config", ".ssh/id_rsa", ".venv/pyvenv.cfg", "sub/.hidden/x", "ssh/labvm/id_ed25519"):
        path = lab.directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"SECRET=of-{relative}\n")  # a .env line too: the .env must load for the case to go on
    (lab.directory / "env.yml").symlink_to(lab.directory / ".env")
    (lab.directory / "keys").symlink_to(lab.ssh_dir / "labvm")
    return {
        ".env": ".env",
        ".git/config": ".git",
        ".ssh/id_rsa": ".ssh",
        ".venv/pyvenv.cfg": ".venv",
        "sub/.hidden/x": ".hidden",
        "env.yml": ".env",
        "./sub/../.env": ".env",
        "ssh/labvm/id_ed25519": "labvm's own",
        "keys/id_ed25519": "labvm's own",
    }


REFUSED_FILES = [
    ".env",
    ".git/config",
    ".ssh/id_rsa",
    ".venv/pyvenv.cfg",
    "sub/.hidden/x",
    "env.yml",
    "./sub/../.env",
    "ssh/labvm/id_ed25519",
    "keys/id_ed25519",
]


@pytest.fixture
def set_up_vm(user):
    """A VM labvm has set up before (`inv env` alone does not make ~/.labvm; `inv up` and `inv setup` do)."""
    user.shell("mkdir -p ~/.labvm && chmod 700 ~/.labvm")
    return user


@pytest.mark.parametrize("written", REFUSED_FILES)
def test_an_environment_file_the_checkout_would_not_ship_is_refused_and_nothing_is_uploaded(
    lab, set_up_vm, sshd, written
):
    user = set_up_vm
    why = plant(lab)[written]
    lab.write_hosts({"vm": conda_profile(user, sshd, user.home / "miniforge-trust", environment_file=written)})
    line = one_line(
        lab.inv("env", "--host", "vm", check=False),
        f"{lab.hosts}: profiles.vm.env.environment_file: {written} ",
        why,
        "put the environment file in hosts.yml's folder under a plain name, e.g. environment.yml",
    )
    assert "SECRET" not in line
    assert not [p for p in (user.home / ".labvm").glob("environment*") if "SECRET" in p.read_text()]


def test_an_environment_file_the_checkout_ships_is_uploaded(lab, set_up_vm, sshd):
    """The positive control of the table: the same VM, a plain file beside hosts.yml."""
    user = set_up_vm
    (lab.directory / "envs").mkdir()
    (lab.directory / "envs" / "environment.yml").write_text("dependencies: [xarray]  # shipped\n")
    lab.write_hosts(
        {"vm": conda_profile(user, sshd, user.home / "miniforge-trust", environment_file="envs/environment.yml")}
    )
    lab.inv("env", "--host", "vm")
    assert (user.home / ".labvm" / "environment.yml").read_text() == "dependencies: [xarray]  # shipped\n"


def test_a_sync_dir_never_holds_labvms_ssh_folder(lab):
    lab.extra_env["LABVM_SSH_DIR"] = str(lab.directory / "notebooks" / "ssh")
    lab.write_hosts({"vm": unreachable_vm(sync_dir="notebooks")})
    one_line(
        lab.inv("sync", "--host", "vm", check=False),
        f"{lab.hosts}: profiles.vm.sync_dir: notebooks ",
        "labvm's own",
        "e.g. notebooks/{profile}",
    )


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    """A checkout with what it ships and what it must not: dot-files, labvm's ssh folder and Python
    environment (as if labvm ran from venv/ in it), symlinks to each, a way out and a symlink loop."""
    top = tmp_path_factory.mktemp("checkout").resolve()
    lab = top / "lab"
    for relative in (
        "environment.yml",
        "a/b.txt",
        ".env",
        ".git/config",
        "a/.x/y",
        "ssh/labvm/id_ed25519",
        "venv/bin/python",
        "../outside.yml",
    ):
        (lab / relative).parent.mkdir(parents=True, exist_ok=True)
        (lab / relative).write_text("x\n")
    for link, target in (
        ("link-env", lab / ".env"),
        ("link-a", lab / "a"),
        (".hidden-link", lab / "a"),
        ("link-git", lab / ".git"),
        ("link-key", lab / "ssh" / "labvm"),
        ("out", top),
        ("loop", lab / "loop"),
    ):
        (lab / link).symlink_to(target)
    return lab


PARTS = [
    "environment.yml",
    "a",
    "b.txt",
    ".env",
    ".git",
    "config",
    ".x",
    "y",
    "ssh",
    "labvm",
    "id_ed25519",
    "venv",
    "bin",
    "python",
    "..",
    ".",
    "outside.yml",
    "link-env",
    "link-a",
    ".hidden-link",
    "link-git",
    "link-key",
    "out",
    "loop",
    "lab",
    "~",
]


# Whole paths too, so that accepted ones come up as often as refused ones.
PATHS = [
    "environment.yml",
    "a/b.txt",
    "link-a/b.txt",
    "./environment.yml",
    "a/../environment.yml",
    "out/lab/a/b.txt",
    "link-git/config",
    "link-key/id_ed25519",
    "venv/bin/python",
    "a/.x/y",
    ".hidden-link/b.txt",
    "loop/x",
]


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(
    parts=st.one_of(
        st.lists(st.sampled_from(PARTS), min_size=1, max_size=5),
        st.sampled_from(PATHS).map(lambda path: path.split("/")),
    ),
    absolute=st.booleans(),
)
def test_an_accepted_environment_file_is_a_plain_file_of_the_checkout(checkout, parts, absolute):
    """Whatever hosts.yml writes, an accepted environment_file is a file in the checkout (symlinks
    resolved) with no dot part on its way and nothing of labvm's state (its ssh folder, its venv)."""
    written = str(checkout.joinpath(*parts)) if absolute else "/".join(parts)
    hosts = checkout / "hosts.yml"
    hosts.write_text(yaml.safe_dump({"profiles": {"vm": unreachable_vm(env={"environment_file": written})}}))
    state = [checkout / "ssh", checkout / "venv"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LABVM_SSH_DIR", str(state[0]))
        patch.delenv("LABVM_HOSTS", raising=False)
        patch.setattr(sys, "prefix", str(state[1]))  # labvm as if installed in the checkout's venv/
        try:
            profile = labvm_config.load(hosts).profile("vm")
        except LabvmError as e:
            assert str(e).startswith(f"{hosts}: profiles.vm.env.environment_file: ") and "\n" not in str(e), str(e)
            event("refused")
            return
    event("accepted")
    target = profile.env.environment_file.resolve()
    inside = target.relative_to(checkout)  # raises if outside
    assert target.is_file() and not any(part.startswith(".") for part in inside.parts), written
    assert not any(target.is_relative_to(folder) for folder in state), written


# -- LABVM_OWNER: whose machines labvm acts on comes from your shell, never from a shared .env ---------


@pytest.fixture
def alices_vm(lab, moto, ec2):
    """Alice's VM, with labvm's tags, in the account bob's credentials also reach; bob's laptop sets no owner."""
    ami = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    (instance,) = ec2.run_instances(
        ImageId=ami,
        MinCount=1,
        MaxCount=1,
        InstanceType="t3.small",
        TagSpecifications=[
            {
                "ResourceType": "instance",
                "Tags": [{"Key": "labvm:profile", "Value": "aws"}, {"Key": "labvm:owner", "Value": "alice"}],
            }
        ],
    )["Instances"]
    lab.extra_env.update(aws_env(moto))
    lab.write_hosts(
        {"aws": {"provider": "aws", "region": REGION, "instance_type": "t3.small", "image": ami, "user": "ubuntu"}}
    )
    yield instance["InstanceId"]
    ec2.terminate_instances(InstanceIds=[instance["InstanceId"]])


def state_of(ec2, instance_id: str) -> str:
    return ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]["State"]["Name"]


def test_labvm_owner_from_a_shared_dotenv_is_refused_and_touches_nothing(lab, ec2, alices_vm):
    (lab.directory / ".env").write_text("AWS_DEFAULT_REGION=us-west-2\nLABVM_OWNER=alice\n")
    for verb in (["stop", "--no-sync"], ["terminate", "--no-sync", "--yes", "--force"]):
        one_line(
            lab.inv(*verb, "--host", "aws", check=False),
            f"{lab.directory / '.env'}: line 2: LABVM_OWNER is refused from .env",
            "whose cloud machines",
            "export LABVM_OWNER=",
        )
    assert state_of(ec2, alices_vm) == "running"


def test_labvm_owner_from_your_own_shell_still_chooses_the_owner(lab, ec2, alices_vm):
    """The positive control: the same stop, asked for in the user's own shell (as `inv audit` prints it)."""
    lab.extra_env["LABVM_OWNER"] = "alice"
    lab.inv("stop", "--host", "aws", "--no-sync")
    assert state_of(ec2, alices_vm) in ("stopping", "stopped")


def test_labvm_owner_never_enters_the_environment_from_dotenv():
    with laptop({"vm": unreachable_vm()}, "LABVM_OWNER=alice\n") as directory:
        os.environ.pop("LABVM_OWNER", None)
        with pytest.raises(LabvmError) as refused:
            labvm_config.load(directory / "hosts.yml")
        assert "LABVM_OWNER" not in os.environ
    assert str(refused.value).startswith(f"{directory / '.env'}: line 1: LABVM_OWNER is refused from .env")
