"""The steps on a host (the VM, a worker, this machine): scripts/*.sh with their settings as environment.

Each step's script ends by printing one JSON line; `run_json` is the one place that reads it.
"""

from __future__ import annotations

import os

from . import answers
from .config import Profile
from .sshconfig import SshHome

def _run(host, profile: Profile, script: str, *args: str, env: dict[str, str] | None = None) -> str:
    """The host's environment prefix goes with every step: a host without python3 uses the env's."""
    return host.run(script, *args, env={"LABVM_ENV_PREFIX": profile.env.prefix, **(env or {})})


def run_json(host, profile: Profile, script: str, *args: str, env: dict[str, str] | None = None):
    """The script's last line as JSON, bounded and strict (labvm.answers); anything else is one line."""
    step = f"the {script.split('.')[0]} step"
    fix = f"`inv setup --host {profile.name.split('+')[0]}` installs labvm's scripts on the host again"
    return answers.json_line(_run(host, profile, script, *args, env=env), host.label, step, fix)


def keys(ssh: SshHome, host) -> None:
    """labvm's key authorised on the host; only a host reached with these values goes into the ssh config."""
    ssh.check_identity(host.profile)
    host.run("authorize-key.sh", env={"LABVM_PUBKEY": ssh.ensure_key()})
    ssh.write_host(host.profile, host.hostname)
    print(f"keys: `ssh {host.profile.alias}` works")


def environment(profile: Profile, host) -> None:
    spec = profile.env
    env_file = ""
    if spec.environment_file:
        env_file = str(spec.environment_file)
        if not host.is_local:
            env_file = f".labvm/environment{spec.environment_file.suffix}"
            host.upload(spec.environment_file, env_file)
    host.run("env.sh", env={
        "LABVM_ENV_MANAGER": spec.manager,
        "LABVM_ENV_PREFIX": spec.prefix,
        "LABVM_PACKAGES": "\n".join(spec.packages),
        "LABVM_ENV_FILE": env_file,
        "LABVM_PYTHON": spec.python,
        "LABVM_CONDA_URL": spec.conda_installer_url,
        "LABVM_CONDA_SHA256": spec.conda_installer_sha256,
        "LABVM_CONDA_ROOT": spec.conda_root,
    })


def store_password_hash(host, password: str) -> None:
    """An argon2 hash (jupyter_server's format) on the host, rewritten only if the password changed."""
    from argon2 import PasswordHasher
    from argon2.exceptions import Argon2Error

    hasher = PasswordHasher(memory_cost=10240, time_cost=10, parallelism=8)
    current = host.read(".labvm/password_hash").strip()
    if current.startswith("argon2:"):
        try:
            hasher.verify(current.split(":", 1)[1], password)
            return
        except Argon2Error:
            pass
    host.write(".labvm/password_hash", "argon2:" + hasher.hash(password) + "\n")


def notebook(profile: Profile, host, action: str, auth: str = "", force: bool = False) -> dict:
    spec = profile.notebook
    out = _run(host, profile, "notebook.sh", action, env={
        "LABVM_PORT": str(spec.port),
        "LABVM_WORKSPACE": spec.workspace,
        "LABVM_MUX": spec.multiplexer,
        "LABVM_AUTH": auth,
        "LABVM_TIMEOUT": str(spec.start_timeout),
        "LABVM_FORCE": "1" if force else "0",
    })
    if action == "config":
        return {}
    if action == "stop":
        return answers.notebook_stopped(out, host.label, profile.name)
    if action == "launch":
        return answers.notebook_launched(out, host.label, profile.name)
    return answers.notebook_status(out, host.label, profile.name)


def apply_autostop(profile: Profile, host, seconds: int, set_by: str, keep: bool = False, scheduler: str = "") -> dict | None:
    """keep: leave a setting made with `inv autostop` as it is (what setup does).
    scheduler: a cluster worker's; it stops once that scheduler has been gone a while."""
    return answers.autostop_report(_run(host, profile, "autostop.sh", "apply", env={
        "LABVM_AUTOSTOP_IDLE": str(seconds),
        "LABVM_AUTOSTOP_LOAD": str(profile.autostop_load),
        # Tests and labs with their own power-off action set this; empty means shutdown -h.
        "LABVM_AUTOSTOP_COMMAND": os.environ.get("LABVM_AUTOSTOP_COMMAND", ""),
        "LABVM_AUTOSTOP_SET_BY": set_by,
        "LABVM_AUTOSTOP_KEEP": "1" if keep else "0",
        "LABVM_PORT": str(profile.notebook.port),
        "LABVM_AUTOSTOP_SCHEDULER": scheduler,
    }), host.label, profile.name)


def extend_autostop(profile: Profile, host, until: int) -> dict | None:
    """The VM counts as in use until this epoch second (0: the extension ends); None: no autostop there yet."""
    return answers.autostop_report(_run(host, profile, "autostop.sh", "extend", env={"LABVM_AUTOSTOP_UNTIL": str(until)}),
                                   host.label, profile.name)
