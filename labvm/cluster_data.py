"""The head's data folder (hosts.yml data:) seen by each cluster worker at the same path, read-only:
sshfs from the worker to the head's sshd, the one port the cluster's rule already opens.

Not NFS: it needs more ports (portmapper, mountd) and a kernel server on the head.  The way in is a
key of the cluster's own, made here beside its CA (~/.ssh/labvm/cluster/<profile>/, 0600), never the
user's: its private half on each worker, its public half in the head's authorized_keys as one line of
labvm's that sshd lets run nothing but `sftp-server -R` (read-only), only from the workers' addresses.
Each worker trusts the head's host key as labvm's own connection to the head verified it.

scripts/cluster_data.sh does each host's part and answers in one JSON line, read as anything a VM
sends (labvm.answers).  A worker that cannot mount says why in its line; its Dask worker runs on.
"""

from __future__ import annotations

import re
import subprocess
from concurrent.futures import ThreadPoolExecutor

from . import answers, platforms, steps, vm
from .answers import BadAnswer
from .config import Member, Profile
from .errors import LabvmError
from .remote import SshHost
from .sshconfig import SshHome
from .text import clean

KEY_NAME = "data_key"  # beside the cluster's CA; KEY_NAME.pub is its public half
REMOTE_FILES = f"{vm.layout.STATE_DIR}/cluster-data"  # on a worker: <host>.key and <host>.known_hosts
MOUNT_ACTIONS = ("mounted", "already mounted", "remounted")
UNMOUNT_ACTIONS = ("unmounted", "not mounted")
MAX_PATH = 4096  # PATH_MAX: a longer "folder" is not a real one
_ADDRESS = re.compile(r"[A-Za-z0-9.:-]{1,253}")  # what may stand in sshd's from= list and sshfs's source
_PUBLIC_KEY = re.compile(r"ssh-ed25519 [A-Za-z0-9+/=]{60,80}")


def ensure(profile: Profile, ssh: SshHome, head: SshHost, workers: list[SshHost]) -> list[str]:
    """The head's data folder mounted read-only at the same path on each worker; one line per worker
    (what it sees, or why not).  Nothing for a profile without data: or a cluster without workers.
    Run again, it changes nothing."""
    if profile.data is None or not workers:
        return []
    public_key, private_key = data_key(ssh, profile)
    try:
        served = _serve(profile, head, public_key, workers)
    except LabvmError as e:  # the workers run on without it, and the user is told what they see
        return [f"cluster: data: the workers do not see the head's data: {clean(str(e).splitlines()[0])}"]
    known_host = _known_host_line(head)
    head_user = head.profile.user or head.connection.user  # the login labvm's connection uses

    def mount(worker: SshHost) -> str:
        files = _remote_files(worker)
        for path, content in ((f"{files}.key", private_key), (f"{files}.known_hosts", known_host)):
            if worker.read(path) != content:  # a second run rewrites nothing
                worker.write(path, content)
        env = {
            "LABVM_DATA_MOUNT": profile.data_mount,
            "LABVM_DATA_FILES": files,
            "LABVM_DATA_SOURCE": served,
            "LABVM_DATA_HEAD": head.cluster_address,
            "LABVM_DATA_HEAD_PORT": str(head.profile.port),
            "LABVM_DATA_HEAD_USER": head_user,
        }
        answer = _script(worker, "mount", env, MOUNT_ACTIONS)
        return f"{answer['path']} read-only from the head ({answer['action']})"

    said = _each(workers, mount, "not mounted (the worker sees its own folder there)")
    return [f"cluster: worker {w.hostname}: data: {line}" for w, line in zip(workers, said)]


def unmount(profile: Profile, workers: list[SshHost]) -> list[str]:
    """The head's data unmounted on each worker given (removed from the cluster, or the cluster going)
    and the data key's files removed there; one that does not answer is said, the others go on."""
    if profile.data is None or not workers:
        return []

    def release(worker: SshHost) -> str:
        env = {"LABVM_DATA_MOUNT": profile.data_mount, "LABVM_DATA_FILES": _remote_files(worker)}
        answer = _script(worker, "unmount", env, UNMOUNT_ACTIONS)
        return f"{answer['path']} {answer['action']}"

    said = _each(workers, release, "could not unmount")
    return [f"cluster: worker {w.hostname}: data: {line}" for w, line in zip(workers, said)]


def forget(profile: Profile, head: SshHost) -> str:
    """The workers' line removed from the head's authorized_keys (the cluster, or its data:, is gone)."""
    answer = steps.run_json(head, head.profile, "cluster_data.sh", "unserve", env={"LABVM_DATA_MARK": _mark(profile)})
    removed = answers.checked(
        lambda a: answers.flag(answers.required(answers.mapping(a, "answer"), "", "removed")["removed"], "removed"),
        answer,
        head.label,
        "the cluster data step",
        _fix(profile),
    )
    return f"cluster: the workers' data key {'removed from' if removed else 'was not in'} the head's authorized_keys"


def data_key(ssh: SshHome, profile: Profile) -> tuple[str, str]:
    """(public line, private key) of the cluster's data key, made once beside its CA (0600, 0700 folder)."""
    folder = ssh.labvm / "cluster" / profile.name
    private = folder / KEY_NAME
    public = folder / f"{KEY_NAME}.pub"
    if not (private.exists() and public.exists()):
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        for stale in (private, public):
            stale.unlink(missing_ok=True)
        made = subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(private)],
            capture_output=True,
            text=True,
        )
        if made.returncode != 0:
            raise LabvmError(f"cluster: ssh-keygen could not make the data key in {folder}: {clean(made.stderr)}")
    platforms.make_private(private)  # ssh-keygen made it 0600; on Windows an ACL, as its OpenSSH demands
    line = " ".join(public.read_text().split()[:2])
    if not _PUBLIC_KEY.fullmatch(line):
        raise LabvmError(f"cluster: {public} is not an ed25519 public key; delete it and run inv cluster again")
    return line, private.read_text()


# -- the head -------------------------------------------------------------------------------


def _serve(profile: Profile, head: SshHost, public_key: str, workers: list[SshHost]) -> str:
    """The key's line in the head's authorized_keys for these workers; the data folder's path on the head."""
    addresses = [w.cluster_address for w in workers]
    bad = [a for a in [head.cluster_address, *addresses] if not _ADDRESS.fullmatch(a)]
    if bad:
        raise LabvmError(f"cluster: data: {clean(bad[0], 80)} is not a host name or address sshd's from= can hold")
    env = {
        "LABVM_DATA_MOUNT": profile.data_mount,
        "LABVM_DATA_KEY": public_key,
        "LABVM_DATA_MARK": _mark(profile),
        "LABVM_DATA_FROM": "\n".join(addresses),
    }
    answer = steps.run_json(head, head.profile, "cluster_data.sh", "serve", env=env)
    return answers.checked(_served_path, answer, head.label, "the cluster data step", _fix(profile))


def _served_path(answer) -> str:
    data = answers.required(answers.mapping(answer, "answer"), "", "path", "sftp_server", "changed")
    answers.flag(data["changed"], "changed")
    return _path(data["path"], "path")


def _known_host_line(head: SshHost) -> str:
    """The head's host key as labvm's connection to it verified it (labvm's known_hosts), for the
    address and port the workers reach it at."""
    key = head.connection.transport.get_remote_server_key()
    name = head.cluster_address if head.profile.port == 22 else f"[{head.cluster_address}]:{head.profile.port}"
    return f"{name} {key.get_name()} {key.get_base64()}\n"


# -- a worker -------------------------------------------------------------------------------


def _remote_files(worker: SshHost) -> str:
    """This worker's own names: homes may be shared (NFS in a lab), as dask.sh names its files."""
    safe = "".join(c if c.isalnum() or c in ".-" else "_" for c in worker.hostname)
    return f"{REMOTE_FILES}/{safe}"


def _script(worker: SshHost, action: str, env: dict[str, str], actions: tuple[str, ...]) -> dict:
    profile = worker.profile
    answer = steps.run_json(worker, profile, "cluster_data.sh", action, env=env)

    def fields(value) -> dict:
        data = answers.required(answers.mapping(value, "answer"), "", "action", "path")
        if data["action"] not in actions:
            raise BadAnswer(f"action: {answers.shown(data['action'])} is not one of {', '.join(actions)}")
        return {"action": data["action"], "path": clean(_path(data["path"], "path"))}

    return answers.checked(fields, answer, worker.label, "the cluster data step", _fix(profile))


def _path(value, name: str) -> str:
    """An absolute path without control characters (it is passed on to sshfs, and shown)."""
    if (
        not isinstance(value, str)
        or not value.startswith("/")
        or len(value) > MAX_PATH
        or clean(value, MAX_PATH) != value
    ):
        raise BadAnswer(f"{name}: {answers.shown(value)} is not an absolute path")
    return value


def _mark(profile: Profile) -> str:
    """The comment that names labvm's line for this cluster in the head's authorized_keys."""
    return f"labvm-cluster-data:{Member.head_of(profile.name)}"


def _fix(profile: Profile) -> str:
    return f"`inv cluster --host {Member.head_of(profile.name)}` tries again"


def _each(workers: list[SshHost], action, failed: str) -> list[str]:
    """action on every worker at once; a worker that fails says so (failed) and why in its own line,
    the others go on."""
    with ThreadPoolExecutor(max_workers=min(16, len(workers))) as pool:
        futures = [pool.submit(action, worker) for worker in workers]
    said = []
    for future in futures:
        error = future.exception()
        if error is None:
            said.append(future.result())
        elif isinstance(error, LabvmError):
            said.append(f"{failed}: {clean(str(error).splitlines()[0])}")
        else:
            raise error
    return said
