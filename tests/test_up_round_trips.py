"""Issue 28 D: a prepared host's `up` asks less (the env answered from its stamp without starting the
env's Python; the scripts' digest compared inside the first step), and what was changed by hand on
the host is still put right by the next task."""

import json
import shutil

from realhost import ROOT, ssh_profile

PREFIX = ".labvm/env-round-trips"  # an env of this file's own: the session's user serves every test


def profile(user, sshd, packages=("jupyterlab", "toolz>=1.0")):
    return ssh_profile(user, sshd, env={"manager": "uv", "prefix": f"~/{PREFIX}", "packages": list(packages)})


def uv(user, arguments: str):
    """uv as the host's user runs it by hand, on this file's env."""
    done = user.shell(
        "UV_SYSTEM_CERTS=1; export UV_SYSTEM_CERTS; uv=$(command -v uv || echo ~/.labvm/uv/bin/uv); "
        f'"$uv" pip {arguments} --python ~/{PREFIX}/bin/python'
    )
    assert done.returncode == 0, done.stderr


def test_a_prepared_env_answers_without_its_python_and_a_package_changed_by_hand_is_put_right(lab, user, sshd):
    lab.write_hosts({"vm": profile(user, sshd)})
    shutil.rmtree(user.home / PREFIX, ignore_errors=True)
    first = lab.inv("env", "--host", "vm").output  # a fresh env: the whole work
    assert "creating uv environment" in first and "env: installing jupyterlab toolz>=1.0" in first, first
    assert "env: ready in" in first, first

    # The env's Python, watched: a prepared env is answered without starting it.
    python = user.home / PREFIX / "bin" / "python"
    started = user.home / PREFIX / "started.log"
    python.rename(python.with_name("python-real"))
    python.write_text(f'#!/bin/sh\necho "$@" >> {started}\nexec "$(dirname "$0")/python-real" "$@"\n')
    python.chmod(0o755)
    shutil.chown(python, user.name, user.name)
    try:
        again = lab.inv("env", "--host", "vm").output
        assert "env: nothing to do" in again, again
        assert not started.exists(), started.read_text()
    finally:
        python.unlink()
        python.with_name("python-real").rename(python)

    uv(user, "uninstall toolz")  # by hand
    put_back = lab.inv("env", "--host", "vm").output
    assert "env: installing toolz>=1.0\n" in put_back, put_back

    uv(user, "install toolz==0.12.1")  # a version hosts.yml does not accept, by hand
    put_back = lab.inv("env", "--host", "vm").output
    assert "env: installing toolz>=1.0\n" in put_back, put_back
    assert "env: nothing to do" in lab.inv("env", "--host", "vm").output

    lab.write_hosts({"vm": profile(user, sshd, packages=("jupyterlab", "toolz>=1.0", "humanize"))})
    added = lab.inv("env", "--host", "vm").output  # hosts.yml changed: checked, the new one installed
    assert "env: installing humanize\n" in added, added


def test_a_host_without_labvms_scripts_gets_them_in_the_first_step(lab, user, sshd):
    """The digest is compared inside the first step's own command: a host whose copy differs (or has
    none) runs nothing from it, gets the scripts, then runs the step."""
    scripts = user.home / ".labvm" / "scripts"
    shutil.rmtree(scripts, ignore_errors=True)
    lab.write_hosts({"vm": ssh_profile(user, sshd)})
    keys = lab.inv("keys", "--host", "vm").output
    assert "keys: `ssh labvm-vm` works" in keys, keys
    assert (scripts / "env.sh").read_bytes() == (ROOT / "scripts" / "env.sh").read_bytes()

    (scripts / "authorize-key.sh").write_text("#!/bin/sh\necho 'error: an old copy ran' >&2; exit 1\n")
    (scripts / ".digest").write_text("0" * 64)  # an older labvm's scripts
    keys = lab.inv("keys", "--host", "vm").output
    assert "an old copy ran" not in keys and "keys: `ssh labvm-vm` works" in keys, keys
    assert (scripts / "authorize-key.sh").read_bytes() == (ROOT / "scripts" / "authorize-key.sh").read_bytes()


def test_a_jupyter_config_edited_by_hand_is_written_again(lab, user, sshd):
    lab.write_hosts({"vm": ssh_profile(user, sshd)})
    lab.inv("setup", "--host", "vm")
    config = user.home / ".labvm" / "jupyter_config.json"
    edited = json.loads(config.read_text())
    edited["ServerApp"]["ip"] = "0.0.0.0"
    config.write_text(json.dumps(edited))
    setup = lab.inv("setup", "--host", "vm").output
    assert "notebook: Jupyter config written" in setup, setup
    assert json.loads(config.read_text())["ServerApp"]["ip"] == "127.0.0.1"
