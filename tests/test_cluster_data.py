"""The head's data folder on a cluster worker, read-only, at the same path (labvm.cluster_data,
scripts/cluster_data.sh): real sshd on a head and a worker, each a network namespace with its own
address, real sshfs (FUSE) on the worker.

The two "machines" share one home, so the head's data folder is a tmpfs mounted in the head's sshd
only (its mount namespace): what the worker reads there can only have come through the head's sshd,
and the worker's own folder at that path is the shared home's empty one.  The hook in `inv cluster`
calls labvm.cluster_data the way these tests do.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from dataclasses import dataclass

import pytest

import netns
from realhost import Lab, User, ssh_profile

from labvm import cluster_data
from labvm.config import load
from labvm.config.schema import DataSpec
from labvm.remote import SshHost
from labvm.sshconfig import SshHome

MOUNT = "~/cluster-data-test"
MARK = "labvm-cluster-data:head"


@dataclass
class Cluster:
    lab: Lab
    user: User
    head: netns.NetnsHost
    worker: netns.NetnsHost

    @property
    def folder(self) -> str:
        return f"{self.user.home}/{MOUNT[2:]}"

    def connect(self, data: bool = True):
        """(head profile, SshHome, head SshHost, worker SshHosts), as `inv cluster` hands them over."""
        config = load(self.lab.hosts)
        head_profile = config.profile("head")
        if data:  # hosts.yml refuses data: on an ssh profile; the head stands in for a cloud VM here
            head_profile = dataclasses.replace(head_profile, data=DataSpec(size=1, mount=MOUNT))
        ssh = SshHome(self.lab.ssh_dir)
        head = SshHost(head_profile, self.head.address, ssh)
        worker = SshHost(config.profile("w1"), self.worker.address, ssh)
        return head_profile, ssh, head, [worker]

    def on(self, host: netns.NetnsHost, command: str, key: str = "") -> subprocess.CompletedProcess:
        """`command` over plain ssh as the user, from this machine's namespace (the laptop's)."""
        return subprocess.run(
            ["ssh", *_options(key or str(self.user.key)), f"{self.user.name}@{host.address}", command],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=60,
        )

    def worker_mounts(self) -> str:
        return self.on(self.worker, f"findmnt -n -o FSTYPE,OPTIONS --mountpoint {self.folder} || true").stdout

    def authorized(self) -> list[str]:
        return [
            line
            for line in (self.user.home / ".ssh" / "authorized_keys").read_text().splitlines()
            if line.endswith(MARK)
        ]


def _options(key: str) -> list[str]:
    return [
        "-i",
        key,
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
    ]


@pytest.fixture(scope="module")
def machines(user, tmp_path_factory):
    """A head and a worker that reach each other through this machine, and a laptop (this one)."""
    missing = netns.available() or (None if shutil.which("sshfs") else "sshfs is missing (apt-get install sshfs)")
    if missing:
        pytest.skip(missing)
    lab = Lab.create()
    forwarding = open("/proc/sys/net/ipv4/ip_forward").read().strip()
    try:
        head, worker = netns.NetnsHost.create("dhead"), netns.NetnsHost.create("dw1")
        for host in (head, worker):
            host.start_sshd(tmp_path_factory.mktemp(f"sshd-{host.name}"))
        subprocess.run(["sysctl", "-qw", "net.ipv4.ip_forward=1"], check=True)
        for host in (head, worker):
            host.exec("ip", "route", "add", f"{netns.SUBNET}.0.0/16", "via", host.gateway)
        lab.write_hosts(
            {
                "head": ssh_profile(user, head, address=head.address, cluster={"hosts": [worker.address]}),
                "w1": ssh_profile(user, worker, address=worker.address),
            }
        )
        made = Cluster(lab, user, head, worker)
        # The head's data: a tmpfs only the head's sshd (and its sessions) sees.
        subprocess.run(["mkdir", "-p", made.folder], check=True)
        subprocess.run(["chown", f"{user.name}:{user.name}", made.folder], check=True)
        subprocess.run(
            ["nsenter", "-t", str(head.sshd.pid), "-m", "mount", "-t", "tmpfs", "-o", f"uid={user.uid},mode=0755"]
            + ["tmpfs", made.folder],
            check=True,
        )
        yield made
    finally:
        netns.remove_all()
        subprocess.run(["sysctl", "-qw", f"net.ipv4.ip_forward={forwarding}"], check=True)
        shutil.rmtree(lab.directory, ignore_errors=True)
        subprocess.run(["rm", "-rf", f"{user.home}/{MOUNT[2:]}"], check=False)


def test_the_worker_reads_the_heads_data_at_the_same_path_read_only_and_a_second_run_changes_nothing(machines):
    profile, ssh, head, workers = machines.connect()
    assert machines.on(machines.head, f"echo from the head > {machines.folder}/results.csv").returncode == 0
    assert not (machines.user.home / MOUNT[2:] / "results.csv").exists()  # only the head's sshd sees its data

    said = cluster_data.ensure(profile, ssh, head, workers)

    assert said == [
        f"cluster: worker {machines.worker.address}: data: {machines.folder} read-only from the head (mounted)"
    ]
    assert machines.on(machines.worker, f"cat {machines.folder}/results.csv").stdout == "from the head\n"
    assert machines.worker_mounts().startswith("fuse.sshfs ro,")
    written = machines.on(machines.worker, f"echo x > {machines.folder}/new.txt")
    assert written.returncode != 0 and "Read-only file system" in written.stderr, written
    assert machines.on(machines.head, f"ls {machines.folder}").stdout == "results.csv\n"
    # One line, the head's, allowed only sftp-server -R, only from the worker.
    [line] = machines.authorized()
    assert line.startswith(f'restrict,from="{machines.worker.address}",command="/usr/lib/openssh/sftp-server -R" ')
    # The key and known_hosts of the mount are the worker's own, 0600.
    files = machines.on(machines.worker, f"stat -c '%a %n' ~/.labvm/cluster-data/{machines.worker.address}.*").stdout
    assert files.split() == [
        "600",
        f"{machines.user.home}/.labvm/cluster-data/{machines.worker.address}.key",
        "600",
        f"{machines.user.home}/.labvm/cluster-data/{machines.worker.address}.known_hosts",
    ]
    keys_before = (machines.user.home / ".ssh" / "authorized_keys").read_bytes()
    worker_files = f"stat -c '%Y.%y %i' ~/.labvm/cluster-data/{machines.worker.address}.*"
    files_before = machines.on(machines.worker, worker_files).stdout

    again = cluster_data.ensure(*machines.connect())

    assert again == [
        f"cluster: worker {machines.worker.address}: data: {machines.folder} read-only from the head (already mounted)"
    ]
    assert (machines.user.home / ".ssh" / "authorized_keys").read_bytes() == keys_before
    assert machines.on(machines.worker, worker_files).stdout == files_before  # not even rewritten alike
    assert len(machines.worker_mounts().splitlines()) == 1


def test_the_data_key_opens_no_shell_and_only_from_the_workers(machines):
    profile, ssh, head, workers = machines.connect()
    cluster_data.ensure(profile, ssh, head, workers)
    key = ssh.labvm / "cluster" / "head" / cluster_data.KEY_NAME
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    # From the worker (its address is in from=): sshd runs sftp-server, never `id`.
    worker_key = f"~/.labvm/cluster-data/{machines.worker.address}.key"
    from_worker = machines.on(
        machines.worker,
        f"ssh {' '.join(_options(worker_key))} {machines.user.name}@{machines.head.address} id </dev/null; echo exit=$?",
    )
    assert "uid=" not in from_worker.stdout and "exit=" in from_worker.stdout, from_worker
    # Read-only on the head's side too (sftp-server -R), whatever a worker's own sshfs options say.
    sftp = machines.on(
        machines.worker,
        f"printf 'mkdir {machines.folder}/made\\n' | sftp -b - {' '.join(_options(worker_key))} "
        f"{machines.user.name}@{machines.head.address}",
    )
    assert sftp.returncode != 0 and "Permission denied" in sftp.stderr, sftp
    assert "made" not in machines.on(machines.head, f"ls {machines.folder}").stdout
    # From anywhere else (this machine), the key is refused outright.
    from_laptop = machines.on(machines.head, "id", key=str(key))
    assert from_laptop.returncode == 255 and "uid=" not in from_laptop.stdout, from_laptop


def test_unmount_and_forget_leave_nothing_behind(machines):
    profile, ssh, head, workers = machines.connect()
    cluster_data.ensure(profile, ssh, head, workers)

    assert cluster_data.unmount(profile, workers) == [
        f"cluster: worker {machines.worker.address}: data: {machines.folder} unmounted"
    ]
    assert (
        cluster_data.forget(profile, head) == "cluster: the workers' data key removed from the head's authorized_keys"
    )

    assert machines.worker_mounts() == ""
    assert machines.authorized() == []
    listed = machines.on(machines.worker, "ls ~/.labvm/cluster-data/").stdout
    assert machines.worker.address not in listed
    assert cluster_data.unmount(profile, workers) == [
        f"cluster: worker {machines.worker.address}: data: {machines.folder} not mounted"
    ]
    assert cluster_data.forget(profile, head) == "cluster: the workers' data key was not in the head's authorized_keys"


def test_a_worker_whose_folder_holds_files_says_so_and_a_profile_without_data_gets_nothing(machines):
    profile, ssh, head, workers = machines.connect(data=False)
    assert cluster_data.ensure(profile, ssh, head, workers) == []
    assert machines.authorized() == []

    profile, ssh, head, workers = machines.connect()
    cluster_data.unmount(profile, workers)
    assert machines.on(machines.worker, f"echo mine > {machines.folder}/local.txt").returncode == 0
    try:
        [said] = cluster_data.ensure(profile, ssh, head, workers)
        assert said.startswith(f"cluster: worker {machines.worker.address}: data: not mounted"), said
        assert "holds files the mount would hide; move them and run inv cluster again" in said
        assert machines.worker_mounts() == ""
    finally:
        machines.on(machines.worker, f"rm -f {machines.folder}/local.txt")


class LyingHead:
    """A head whose cluster_data.sh answers what anyone on it could make it answer."""

    def __init__(self, answer: str, profile):
        self.answer, self.profile = answer, profile
        self.label, self.cluster_address = "head (10.0.0.1:22)", "10.0.0.1"

    def run(self, script: str, *args: str, env: dict[str, str] | None = None) -> str:
        return self.answer


class NoWorker:
    """A worker that must not be reached: the head's answer was refused first."""

    cluster_address = "10.0.0.2"
    hostname = "10.0.0.2"

    def __getattr__(self, name):
        raise AssertionError(f"the worker was used ({name}) after the head's bad answer")


@pytest.mark.parametrize(
    "answer, said",
    [
        ('{"path": "data", "sftp_server": "/x", "changed": false}', "path: 'data' is not an absolute path"),
        ('{"path": "/d\\u001b[2J", "sftp_server": "/x", "changed": false}', "is not an absolute path"),
        ('{"path": "/d", "sftp_server": "/x", "changed": "no"}', "changed: 'no' is not true or false"),
        ('{"path": "/d"}', "sftp_server, changed missing"),
        ("not json \x1b[2J", "not JSON: not json \\x1b[2J"),
    ],
)
def test_a_bad_answer_from_the_head_is_one_clean_line_and_no_worker_is_touched(tmp_path, answer, said):
    profile = dataclasses.replace(load_profile(tmp_path), data=DataSpec(size=1, mount=MOUNT), cluster=None, name="head")
    head = LyingHead(answer, profile)
    [line] = cluster_data.ensure(profile, SshHome(tmp_path / "ssh"), head, [NoWorker()])
    assert line.startswith("cluster: data: the workers do not see the head's data: head (10.0.0.1:22): "), line
    assert said in line and "\x1b" not in line, line
    assert line.endswith(("`inv cluster --host head` tries again", "installs labvm's scripts on the host again")), line


def load_profile(folder):
    hosts = folder / "hosts.yml"
    hosts.write_text("profiles:\n  head: {provider: ssh, address: 10.0.0.1, user: u}\n")
    return load(hosts).profile("head")
