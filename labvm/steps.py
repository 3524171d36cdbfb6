"""The steps on a host (the VM, a worker, this machine): scripts/*.sh with their settings as environment.

Here: running a step (the host's environment prefix goes with each, and a step that ends by
printing one JSON line has it read by labvm.answers), and the two steps that answer nothing:
keys (authorize-key.sh) and the environment (env.sh).  The steps with answers of their own live
with them: labvm.notebook, labvm.autostop, labvm.cluster.
"""

from __future__ import annotations

from . import answers, vm
from .config import Member, Profile
from .sshconfig import SshHome


def run(host, profile: Profile, script: str, *args: str, env: dict[str, str] | None = None) -> str:
    """The script's output; the host's environment prefix goes with every step: a host without
    python3 uses the env's."""
    return host.run(script, *args, env={"LABVM_ENV_PREFIX": profile.env.prefix, **(env or {})})


def run_json(host, profile: Profile, script: str, *args: str, env: dict[str, str] | None = None):
    """The script's last line as JSON, bounded and strict (labvm.answers); anything else is one line."""
    step = f"the {script.split('.')[0]} step"
    fix = f"`inv setup --host {Member.head_of(profile.name)}` installs labvm's scripts on the host again"
    return answers.json_line(run(host, profile, script, *args, env=env), host.label, step, fix)


def keys(ssh: SshHome, host) -> None:
    """labvm's key authorised on the host; only a host reached with these values goes into the ssh config."""
    ssh.check_identity(host.profile)
    host.run("authorize-key.sh", env={"LABVM_PUBKEY": ssh.ensure_key()})
    ssh.write_host(host.profile, host.hostname)
    print(f"keys: `ssh {host.profile.alias}` works")


def environment(profile: Profile, host) -> None:
    """The Python environment Jupyter runs in (conda, uv or venv), with hosts.yml's packages and file."""
    spec = profile.env
    env_file = ""
    if spec.environment_file:
        env_file = host.upload(spec.environment_file, f"{vm.layout.ENVIRONMENT_FILE}{spec.environment_file.suffix}")
    host.run(
        "env.sh",
        env={
            "LABVM_ENV_MANAGER": spec.manager,
            "LABVM_ENV_PREFIX": spec.prefix,
            "LABVM_PACKAGES": "\n".join(spec.packages),
            "LABVM_ENV_FILE": env_file,
            "LABVM_PYTHON": spec.python,
            "LABVM_CONDA_URL": spec.conda_installer_url,
            "LABVM_CONDA_SHA256": spec.conda_installer_sha256,
            "LABVM_CONDA_ROOT": spec.conda_root,
        },
    )
