"""`inv status`: one block per profile, every profile asked at once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

from .autostop import autostop_line, duration, last_autostop
from .config import Config
from .errors import LabvmError
from .prices import per_hour, price_per_hour
from .providers import Instance
from .session import Session
from .sshconfig import SshHome
from .text import clean
from .tunnel import Tunnel, Tunnels


def report(config: Config, names: list[str], context) -> list[str]:
    """One block per profile: reachable, its machine's size and price, notebook, URL, kernels, idle time,
    memory, disk; each cluster worker's state and price."""

    def one(name: str) -> list[str]:
        data: list[str] = []  # the data volume bills whether the VM answers or not
        try:
            profile = config.profile(name)
            with Session(profile, context) as session:
                data = session.data_volume.status_line()
                status = session.notebook_status()
                lines = [
                    f"{name} ({profile.provider}, {session.host.where}): reachable",
                    *_machine(session),
                    *_describe(session, status),
                ]
                return lines + data + _cluster_status(session)
        except LabvmError as e:
            return [f"{name}: {clean(str(e).splitlines()[0])}", *data, *_kept_tunnel(config, name)]

    # Every profile at once: an unreachable one costs one timeout, in parallel with the others.
    with ThreadPoolExecutor(max(1, min(len(names), 16))) as pool:
        return [line for block in pool.map(one, names) for line in block]


def _kept_tunnel(config: Config, name: str) -> list[str]:
    """What the tunnel's keeper says of a profile that did not answer (stopped by autostop, reconnecting)."""
    try:
        tunnel = Tunnels(SshHome.current()).find(config.profile(name))
    except LabvmError:
        return []
    if tunnel is None:
        return []
    return [f"  tunnel: {tunnel.state}{_tunnel_hint(tunnel, name)}"]


def _tunnel_hint(tunnel: Tunnel, name: str) -> str:
    """What the user does next about a tunnel that is not up; "" when nothing."""
    if tunnel.is_up:
        return ""
    if not tunnel.keeper_pid:
        return f"; `inv up --host {name}`"
    if tunnel.state.startswith("asleep"):
        return f"; or `inv up --host {name}`"
    if tunnel.state.startswith("gone"):
        return f"; `inv up --host {name}` makes a new VM"
    return "; the URL comes back by itself"


def _cluster_status(session: Session) -> list[str]:
    if not session.profile.cluster:
        return []
    from . import cluster

    machines = []
    if not session.profile.cluster.hosts:  # worker VMs: running or stopped, as the cloud says
        machines = [
            f"  cluster: {worker.name} ({worker.id}): VM {worker.state}{_priced(session, worker)}"
            for worker in session.provider.workers()
        ]
    try:
        return machines + [f"  {line}" for line in cluster.status(session.profile, session.host)]
    except LabvmError as e:
        return machines + [f"  cluster: {clean(str(e).splitlines()[0])}"]


def _machine(session: Session) -> list[str]:
    """The machine's size, region and price an hour, and how long it has run since its last start, as far
    as each is known (a machine labvm does not make has only hosts.yml's price_per_hour:, if it gives one)."""
    provider = session.provider
    try:
        instance = provider.find()
    except LabvmError:  # it answered a moment ago: this line is not worth the profile's block
        return []
    if instance is None:
        return []
    where = provider.where()
    shown = f"{instance.size}{f' in {where}' if where else ''}{_priced(session, instance, size=False)}"
    return [f"  machine: {shown.removeprefix(', ')}"] if shown else []


def _priced(session: Session, instance: Instance, size: bool = True) -> str:
    """The words ", c5.large, about $0.085/h, running 3h05m since its last start", as far as each is
    known; a stopped machine is billed no hourly price."""
    parts = [instance.size] if size and instance.size else []
    if instance.state == "running":
        price = price_per_hour(session.profile, session.provider, instance.size or None)
        if price is not None:
            parts.append(per_hour(price))
        try:
            started = session.provider.running_since(instance)
        except LabvmError:  # it answered a moment ago: the hours are not worth the line
            started = None
        if started:
            seconds = int((datetime.now(timezone.utc) - started).total_seconds())
            parts.append(f"running {duration(max(seconds, 0))} since its last start")
    return "".join(f", {part}" for part in parts)


def _describe(session: Session, status: dict) -> list[str]:
    gib = 1024**3
    machine = (
        f"  memory {(status['mem_total'] - status['mem_available']) / gib:.1f} of "
        f"{status['mem_total'] / gib:.1f} GiB used, disk {status['disk_free'] / gib:.1f} GiB free "
        f"of {status['disk_total'] / gib:.1f}, load {status['load']:.2f}"
    )
    server = status["server"]
    autostop = (
        [f"  autostop: {autostop_line(status['autostop'])}", *last_autostop(status["autostop"])]
        if status.get("autostop")
        else []
    )
    holder = status.get("port_holder")
    if holder:  # another login of the VM listens where the tunnel forwards: never the user's browser
        return [
            f"  notebook: port {status['port']} is held by user {holder['user']}, not you; the tunnel does not "
            f"forward there: set notebook.port, or wait for them to leave, "
            f"then `inv up --host {session.profile.name}`",
            *autostop,
            machine,
            *_gpu_lines(status["gpus"]),
        ]
    if not server:
        other = status.get("other")
        note = f" (a Jupyter labvm did not start holds port {status['port']}, pid {other['pid']})" if other else ""
        return [f"  notebook: not running{note}", *autostop, machine, *_gpu_lines(status["gpus"])]
    lines = [f"  notebook: running on host port {server['port']} (pid {server['pid']})"]
    if server["port"] != status["port"]:  # hosts.yml's notebook.port changed since Jupyter started
        lines.append(
            f"  notebook: notebook.port is now {session.profile.notebook.port}; it takes effect at the next "
            f"`inv up --host {session.profile.name}`"
        )
    if server.get("answering"):
        lines.append(
            f"  kernels {server['kernels']} ({server['busy_kernels']} busy), "
            f"connections {server['connections']}, idle {duration(server['idle_seconds'])}"
        )
    else:
        lines.append("  notebook: its API does not answer")
    port = session.reach.browser_port(server)
    tunnel = session.tunnels.find(session.profile)  # none on this machine: the browser reaches Jupyter itself
    if port is None:
        lines.append(f"  url: no tunnel open; `inv tunnel --host {session.profile.name}`")
    else:
        lines.append(f"  url: {session.url(port, server)}")
    if port is not None and tunnel and tunnel.remote_port == server["port"] and tunnel.keeper_pid:
        lines.append(
            f"  tunnel: {tunnel.state}{_tunnel_hint(tunnel, session.profile.name)} (keeper pid {tunnel.keeper_pid})"
        )
    lines += [*autostop, machine, *_gpu_lines(status["gpus"])]
    return lines


def _gpu_lines(gpus: list[dict]) -> list[str]:
    """Each NVIDIA GPU: "  GPU 0: Tesla T4, 87 % busy, 3.2 of 15.0 GiB" (what nvidia-smi does not report left out)."""
    lines = []
    for gpu in gpus:
        parts = [gpu["name"], "utilisation not reported" if gpu["util"] is None else f"{gpu['util']} % busy"]
        if gpu["used_mib"] is not None and gpu["total_mib"] is not None:
            parts.append(f"{gpu['used_mib'] / 1024:.1f} of {gpu['total_mib'] / 1024:.1f} GiB")
        lines.append(f"  GPU {gpu['index']}: {', '.join(parts)}")
    return lines
