"""env: conda (with a stand-in Miniforge installer), hostile values, password mode."""

import hashlib
import http.cookiejar
import re
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path


from realhost import http_status, ssh_profile

STANDIN = Path(__file__).parent / "standin" / "miniforge.sh"


def conda_profile(user, sshd, root, **env):
    settings = {
        "manager": "conda",
        "packages": ["jupyterlab", "numpy"],
        "conda_installer_url": f"file://{STANDIN}",
        "conda_installer_sha256": hashlib.sha256(STANDIN.read_bytes()).hexdigest(),
        "conda_root": str(root),
        "prefix": f"{root}/envs/labvm",
        **env,
    }
    return ssh_profile(user, sshd, env=settings)


def test_conda_installs_once_then_only_what_was_added(lab, user, sshd):
    root = user.home / "miniforge-standin"
    calls = root / "calls.log"
    lab.write_hosts({"vm": conda_profile(user, sshd, root)})

    first = lab.inv("env", "--host", "vm").output
    assert "installing Miniforge" in first
    assert calls.read_text().splitlines() == [
        f"create -y -q -p {root}/envs/labvm python",
        f"install -y -q -p {root}/envs/labvm jupyterlab numpy",
    ]

    before = calls.read_text()
    again = lab.inv("conda", "--host", "vm").output  # the alias
    assert "env: nothing to do" in again
    assert [c for c in calls.read_text()[len(before) :].splitlines() if not c.startswith("list")] == []

    lab.write_hosts({"vm": conda_profile(user, sshd, root, packages=["jupyterlab", "numpy", "pandas"])})
    before = calls.read_text()
    lab.inv("env", "--host", "vm")
    installs = [c for c in calls.read_text()[len(before) :].splitlines() if c.startswith("install")]
    assert installs == [f"install -y -q -p {root}/envs/labvm pandas"]


def test_conda_environment_file_applied_when_changed(lab, user, sshd):
    root = user.home / "miniforge-envfile"
    calls = root / "calls.log"
    environment = lab.directory / "environment.yml"
    environment.write_text("dependencies: [xarray]\n")
    lab.write_hosts({"vm": conda_profile(user, sshd, root, environment_file="environment.yml")})

    lab.inv("env", "--host", "vm")
    lab.inv("env", "--host", "vm")
    assert sum(c.startswith("env update") for c in calls.read_text().splitlines()) == 1
    environment.write_text("dependencies: [xarray, netcdf4]\n")
    lab.inv("env", "--host", "vm")
    assert sum(c.startswith("env update") for c in calls.read_text().splitlines()) == 2


def test_conda_installer_checksum_is_checked(lab, user, sshd):
    root = user.home / "miniforge-badsum"
    lab.write_hosts({"vm": conda_profile(user, sshd, root, conda_installer_sha256="0" * 64)})
    result = lab.inv("env", "--host", "vm", check=False)
    assert result.returncode == 1
    assert "Miniforge installer sha256 is" in result.stderr.splitlines()[-1]
    assert not (root / "bin" / "conda").exists()


def test_hostile_values_are_data_not_commands(lab, user, sshd):
    hostile_workspace = "~/ws; touch PWNED1 $(touch PWNED2) `touch PWNED3` 'q\" x"
    lab.write_hosts({"vm": ssh_profile(user, sshd, notebook={"workspace": hostile_workspace})})
    refused = lab.inv("up", "--host", "vm", "--no-browser", check=False)
    assert refused.returncode == 1
    assert "profiles.vm.notebook.workspace: must be a plain folder path on the host" in refused.stderr.splitlines()[-1]
    plain = "~/ws+1,a=b@c_d-e.f"  # every character the check lets through reaches the VM as data
    lab.write_hosts({"vm": ssh_profile(user, sshd, notebook={"workspace": plain})})
    lab.inv("up", "--host", "vm", "--no-browser")
    assert (user.home / plain[2:]).is_dir()
    lab.inv("down", "--host", "vm")

    lab.write_hosts(
        {"vm": ssh_profile(user, sshd, env={"packages": ["jupyterlab", "numpy; touch PWNED4", "$(touch PWNED5)"]})}
    )
    result = lab.inv("env", "--host", "vm", check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("labvm: vm (")
    assert "env failed: installing" in result.stderr

    pwned = [p for p in user.home.rglob("PWNED*") if re.fullmatch(r"PWNED\d", p.name)]
    pwned += [p for p in lab.directory.rglob("PWNED*")]
    assert pwned == []


def test_password_instead_of_token(lab, user, sshd):
    (lab.directory / ".env").write_text("NB_PASSWORD=correct horse\n")
    lab.write_hosts({"vm": ssh_profile(user, sshd, notebook={"password": "${NB_PASSWORD}"})})
    out = lab.inv("up", "--host", "vm", "--no-browser").output
    url = re.search(r"JupyterLab is ready: (\S+)", out).group(1)
    assert "token=" not in url
    base = url.rsplit("/lab", 1)[0]
    assert http_status(f"{base}/api/status") == 403
    stored = (user.home / ".labvm" / "password_hash").read_text()
    assert stored.startswith("argon2:$argon2id$")
    assert (user.home / ".labvm" / "password_hash").stat().st_mode & 0o777 == 0o600

    def login(password):
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        opener.open(f"{base}/login").read()
        xsrf = next(c.value for c in jar if c.name == "_xsrf")
        body = urllib.parse.urlencode({"password": password, "_xsrf": xsrf}).encode()
        try:
            opener.open(f"{base}/login", data=body).read()
        except urllib.error.HTTPError as e:
            return e.code  # a wrong password is 401 on the login page itself
        try:
            return opener.open(f"{base}/api/status").status
        except urllib.error.HTTPError as e:
            return e.code

    assert login("correct horse") == 200
    assert login("wrong") == 401

    again = lab.inv("up", "--host", "vm", "--no-browser").output
    assert "nothing started" in again, again
    assert (user.home / ".labvm" / "password_hash").read_text() == stored
    lab.inv("down", "--host", "vm")


def test_venv_installs_from_pypi_then_only_what_was_added(lab, user, sshd):
    prefix = "~/.labvm/venv-env"
    lab.write_hosts({"vm": ssh_profile(user, sshd, env={"manager": "venv", "prefix": prefix})})
    first = lab.inv("env", "--host", "vm").output
    assert "creating venv environment" in first and "installing jupyterlab" in first
    assert (user.home / ".labvm" / "venv-env" / "bin" / "jupyter").exists()
    assert "env: nothing to do" in lab.inv("env", "--host", "vm").output

    lab.write_hosts(
        {"vm": ssh_profile(user, sshd, env={"manager": "venv", "prefix": prefix, "packages": ["jupyterlab", "toolz"]})}
    )
    added = lab.inv("env", "--host", "vm").output
    assert "env: installing toolz\n" in added
