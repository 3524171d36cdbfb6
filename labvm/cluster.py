"""A Dask cluster on machines labvm already reaches: the scheduler on the head, a worker on each
worker host, mutual TLS with a per-cluster CA made here on the laptop.

labvm writes no scheduler of its own: scripts/dask.sh starts `dask scheduler` / `dask worker`
(distributed's own CLIs) under tmux like Jupyter, so they outlive the SSH session and the
notebook.  Every step is idempotent: a second `ensure` with everything running changes nothing.
"""

from __future__ import annotations

import datetime
import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from . import autostop, steps, vm
from .config import Profile
from .errors import LabvmError
from .remote import SshHost
from .sshconfig import SshHome
from .text import clean

SCHEDULER_PORT = int(vm.layout.SCHEDULER_PORT)
# The dashboard is no TCP port: a unix socket on the head only its user can open
# (layout DASHBOARD_SOCKET, scripts/dask_dashboard.py), shown in JupyterLab at this route
# (jupyter-server-proxy, behind Jupyter's token).
DASHBOARD_ROUTE = vm.layout.DASHBOARD_ROUTE
REMOTE_DIR = vm.layout.DASK_DIR  # relative to the login directory, as SFTP sees it
ROLES = ("scheduler", "worker", "client")
HEAD_ROLES = ("scheduler", "client")
CERT_DAYS = 3650  # the CA lives with the profile on the laptop; a lab cluster outlives a year
START_TIMEOUT = 120  # a first import of distributed on a cold disk; a worker waits for the scheduler too


def ensure(profile: Profile, ssh: SshHome, head: SshHost, workers: list[SshHost]) -> list[str]:
    """Scheduler on the head, a worker on each worker host, all on the same versions and CA.

    Each binds its host's cluster_address (a cloud VM's private address), where the others reach
    it; Client() on the head and `status` use the scheduler's.
    """
    hosts = [head, *workers]
    _check_versions(profile, hosts)
    files = certificates(ssh, profile)
    _each(hosts, lambda host: _push_certificates(host, files, HEAD_ROLES if host is head else ("worker",)))
    scheduler = _scheduler_address(head.cluster_address)
    spec = profile.cluster

    def start(host: SshHost, restart: bool = False) -> dict:
        if host is head:
            return _script(head, "start-scheduler", **_start_env(head), LABVM_DASK_PORT=SCHEDULER_PORT)
        return _script(
            host,
            "start-worker",
            **_start_env(host),
            LABVM_DASK_SCHEDULER=scheduler,
            LABVM_DASK_RESTART=int(restart),
            LABVM_DASK_THREADS=spec.threads if spec and spec.threads else "",
            LABVM_DASK_MEMORY=spec.memory_limit if spec else "",
        )

    # All at once: a new worker retries until the scheduler listens, and waits until it is registered.
    started, *actions = _each(hosts, start)
    if started["action"] != "running":  # workers still running were registered with the old scheduler
        stale = [i for i, action in enumerate(actions) if action["action"] == "running"]
        for i, action in zip(stale, _each([workers[i] for i in stale], lambda w: start(w, restart=True))):
            actions[i] = action
    lines = [
        f"cluster: scheduler {scheduler} on {head.hostname}: {_said(started)}; "
        f"dashboard in JupyterLab at {DASHBOARD_ROUTE}/status (a socket on the head only you can open)"
    ]
    for worker, action in zip(workers, actions):
        memory = action["memory"] or "no memory limit"
        lines.append(f"cluster: worker {worker.hostname}: {_said(action)}, {action['threads']} threads, {memory}")
    return lines


def stop(profile: Profile, head: SshHost | None, workers: list[SshHost]) -> list[str]:
    """Stops labvm's dask processes (its own, found by their pid files) on each host given."""
    roles = [(worker, "worker") for worker in workers] + ([(head, "scheduler")] if head else [])

    def stop_one(pair):
        host, role = pair
        result = _script(
            host, "stop", LABVM_ENV_PREFIX=host.profile.env.prefix, LABVM_DASK_HOST=host.hostname, LABVM_DASK_ROLE=role
        )
        where = f"worker {host.hostname}" if role == "worker" else f"scheduler on {host.hostname}"
        return f"cluster: {where}: {'stopped' if result['stopped'] else 'was not running'}"

    return _each(roles, stop_one)


def arm_worker_autostop(profile: Profile, head: SshHost, workers: list[SshHost]) -> list[str]:
    """Cloud worker VMs stop themselves once their head's scheduler has been gone a few minutes:
    the head's own autostop ends it before the head stops.

    Only for VMs labvm made: a lab workstation (cluster.hosts) is never powered off.  Each worker
    decides alone (scripts/autostop.py); no cloud credential and no SSH from the head to workers.
    """
    address = f"{_bracketed(head.cluster_address)}:{SCHEDULER_PORT}"

    def arm(host: SshHost) -> str:
        report = autostop.apply_setting(host.profile, host, profile.autostop, "hosts.yml", scheduler=address)
        if report is None:
            raise LabvmError(
                f"{host.label}: autostop: the VM kept no setting; `inv cluster --host {profile.name}` tries again"
            )
        if not report["idle_seconds"]:
            return f"cluster: worker {host.hostname}: autostop off, as on the head"
        return (
            f"cluster: worker {host.hostname}: stops itself {report['worker_grace'] // 60}m after the "
            f"scheduler {address} is gone"
        )

    return _each(workers, arm)


def status(profile: Profile, head: SshHost) -> list[str]:
    """One line per worker, as the scheduler sees it (asked on the head with the client's certificate,
    at the address Client() there is configured for)."""
    try:
        seen = _workers(head)
    except LabvmError as e:
        return [
            f"cluster: no scheduler answers on {head.hostname} ({clean(str(e).splitlines()[0])}); `inv up` starts it"
        ]
    if not seen["workers"]:
        return [f"cluster: scheduler {seen['scheduler']} has no workers"]
    return [
        f"cluster: worker {clean(str(w['name']))} ({clean(str(w['address']))}): {w['threads']} threads, "
        f"{_gib(w['memory'])}, {w['processing']} tasks processing"
        for w in seen["workers"]
    ]


# -- versions ------------------------------------------------------------------------------


def _check_versions(profile: Profile, hosts: list[SshHost]) -> None:
    packages = "\n".join(profile.env.packages)
    found = _each(
        hosts, lambda host: _script(host, "versions", LABVM_ENV_PREFIX=host.profile.env.prefix, LABVM_PACKAGES=packages)
    )
    where = f"{profile.source}: profiles.{profile.name}.env.packages"
    for host, versions in zip(hosts, found):
        missing = [name for name in ("dask", "distributed") if not versions.get(name)]
        if missing:
            raise LabvmError(
                f"cluster: {' and '.join(missing)} not installed in {host.profile.env.prefix} on "
                f"{host.hostname}; add dask and distributed to {where} and run inv setup"
            )
    reference, ours = hosts[0], found[0]
    for host, versions in zip(hosts[1:], found[1:]):
        for name, version in versions.items():
            theirs = ours.get(name)
            if name == "python":  # pickles cross patch releases, not minor ones
                version, theirs = _minor(version), _minor(theirs)
            if theirs and version and version != theirs:
                raise LabvmError(
                    f"cluster: {name} {version} on {host.hostname} but {theirs} on {reference.hostname}; "
                    f"the same environment must run everywhere: pin {name} in {where} and run inv setup"
                )


def _minor(version: str | None) -> str | None:
    return ".".join(version.split(".")[:2]) if version else None


# -- certificates --------------------------------------------------------------------------


def certificates(ssh: SshHome, profile: Profile) -> dict[str, bytes]:
    """The cluster's CA and one certificate + key per role, made once under ~/.ssh/labvm/cluster/<profile>."""
    folder = ssh.labvm / "cluster" / profile.name
    names = ["ca.pem", *(f"{role}.{kind}" for role in ROLES for kind in ("pem", "key"))]
    if not all((folder / name).exists() for name in [*names, "ca.key"]):
        _make_certificates(folder, profile.name)
    return {name: (folder / name).read_bytes() for name in names}


def _make_certificates(folder: Path, cluster: str) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)

    def name(common: str) -> x509.Name:
        return x509.Name(
            [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "labvm"), x509.NameAttribute(NameOID.COMMON_NAME, common)]
        )

    def certificate(subject, key, issuer, issuer_key, ca: bool):
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=CERT_DAYS))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if ca:
            builder = builder.add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
        else:  # every dask node both serves and connects
            builder = builder.add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
        return builder.sign(issuer_key, hashes.SHA256())

    def save(filename: str, data: bytes) -> None:
        fd = os.open(folder / filename, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)

    def key_bytes(key) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = name(f"labvm {cluster} dask CA")
    ca = certificate(ca_name, ca_key, ca_name, ca_key, ca=True)
    for role in ROLES:
        key = ec.generate_private_key(ec.SECP256R1())
        save(f"{role}.key", key_bytes(key))
        save(
            f"{role}.pem",
            certificate(name(f"labvm {cluster} dask {role}"), key, ca_name, ca_key, ca=False).public_bytes(
                serialization.Encoding.PEM
            ),
        )
    save("ca.pem", ca.public_bytes(serialization.Encoding.PEM))
    save("ca.key", key_bytes(ca_key))  # written last: its presence means the set is complete


def _push_certificates(host: SshHost, files: dict[str, bytes], roles: tuple[str, ...]) -> None:
    """The CA certificate and the roles' files, 0600, put only when they changed (one digest per role set).

    Staged per host and renamed into place on the host: machines sharing a home (NFS in a lab,
    or the tests' namespaces) may put the same files at the same time.
    """
    wanted = {name: data for name, data in files.items() if name == "ca.pem" or name.split(".")[0] in roles}
    digest = hashlib.sha256(b"".join(name.encode() + wanted[name] for name in sorted(wanted))).hexdigest()
    marker = f"{'+'.join(roles)}.sha256"
    if host.read(f"{REMOTE_DIR}/{marker}").strip() == digest:
        return
    staging = f"{REMOTE_DIR}/incoming-{_safe(host.hostname)}"
    for name, data in [*wanted.items(), (marker, digest.encode())]:  # the marker last: all or nothing
        host.write(f"{staging}/{name}", data.decode())
    _script(
        host,
        "install-certificates",
        LABVM_ENV_PREFIX=host.profile.env.prefix,
        LABVM_DASK_HOST=host.hostname,
        LABVM_DASK_FILES="\n".join([*wanted, marker]),
    )


def _safe(name: str) -> str:
    """As dask.sh names a host's files."""
    return "".join(c if c.isalnum() or c in ".-" else "_" for c in name)


# -- running dask.sh -----------------------------------------------------------------------


def _scheduler_address(host: str) -> str:
    return f"tls://{_bracketed(host)}:{SCHEDULER_PORT}"


def _bracketed(host: str) -> str:  # an IPv6 address beside a port
    return f"[{host}]" if ":" in host else host


def _start_env(host: SshHost) -> dict:
    return {
        "LABVM_ENV_PREFIX": host.profile.env.prefix,
        "LABVM_DASK_HOST": host.hostname,
        "LABVM_DASK_LISTEN": host.cluster_address,
        "LABVM_MUX": host.profile.notebook.multiplexer,
        "LABVM_TIMEOUT": START_TIMEOUT,
    }


def _workers(head: SshHost) -> dict:
    return _script(head, "status", LABVM_ENV_PREFIX=head.profile.env.prefix)


def _script(host: SshHost, action: str, **env) -> dict:
    return steps.run_json(host, host.profile, "dask.sh", action, env={name: str(value) for name, value in env.items()})


def _said(result: dict) -> str:
    return {"running": "already running", "started": "started", "restarted": "restarted"}[result["action"]]


def _gib(size: int) -> str:  # as dask.utils.format_bytes says it
    return f"{size / 1024**3:.2f} GiB" if size else "no memory limit"


def _each(items: list, action) -> list:
    """action on every item at once; all run to the end, then every failure is reported in one line."""
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=min(16, len(items))) as pool:
        futures = [pool.submit(action, item) for item in items]
    failures = [str(f.exception()) for f in futures if isinstance(f.exception(), LabvmError)]
    if failures:
        raise LabvmError("; ".join(failures))
    return [f.result() for f in futures]
