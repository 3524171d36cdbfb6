"""labvm: a Jupyter server on a VM, reached through an SSH tunnel.  `bin/inv` alone lists the tasks.

Each task reads a profile from hosts.yml (--host or -H, else $LABVM_HOST, else `default:`) and
calls one function of the labvm package.  Every task is safe to run again.
"""

import os

from labvm import cli
from labvm.errors import LabvmError
from labvm.cli import task  # invoke's @task, with -h for each task's help and -H for --host

HOST = {"host": cli.HOST_HELP}


@task
@cli.guarded
def hosts(c):
    """List the profiles in hosts.yml."""
    config = cli.load()
    for name in config.names:
        mark = "*" if name == config.default else " "
        print(f"{mark} {name:<20} {config.raw[name]['provider']}")


@task(help=HOST)
@cli.guarded
def keys(c, host=None):
    """Make labvm's SSH key, authorize it on the host once, and make `ssh labvm-<profile>` work."""
    cli.keys(c, host)


@task(aliases=["conda"], help=HOST)
@cli.guarded
def env(c, host=None):
    """Install the Python environment (conda, uv or venv) with the packages in hosts.yml."""
    with cli.session(c, host) as session:
        session.env()


@task(help=HOST)
@cli.guarded
def setup(c, host=None):
    """keys + env + Jupyter config (127.0.0.1 only, token or password)."""
    with cli.session(c, host) as session:
        session.setup()


@task(name="start-notebook", help=HOST)
@cli.guarded
def start_notebook(c, host=None):
    """Start JupyterLab in tmux/screen/nohup on the host (reports it if already running)."""
    with cli.session(c, host) as session:
        session.start_notebook()


@task(name="stop-notebook", help={**HOST, "force": "also end a Jupyter labvm did not start on that port"})
@cli.guarded
def stop_notebook(c, host=None, force=False):
    """Stop labvm's Jupyter on the host."""
    with cli.session(c, host) as session:
        session.stop_notebook(force)


@task(help={**HOST, "stop": "close the tunnel instead of opening it"})
@cli.guarded
def tunnel(c, host=None, stop=False):
    """Open (or --stop) the OpenSSH tunnel from 127.0.0.1 here to Jupyter on the host."""
    with cli.session(c, host) as session:
        if stop:
            session.close_tunnel()
        else:
            session.tunnel()


@task(
    help={
        **HOST,
        "idle": "stop after this long idle, e.g. 90m or 2h (kept until `inv autostop` alone)",
        "off": "turn autostop off on this VM",
        "extend": "keep the VM up for this long even when idle, e.g. 3h (a long job outside Jupyter); off ends it",
    }
)
@cli.guarded
def autostop(c, host=None, idle="", off=False, extend=""):
    """Let a cloud VM stop itself when Jupyter, SSH and the CPU have been idle (hosts.yml: autostop)."""
    with cli.session(c, host) as session:
        session.autostop(idle, off, extend)


@task(
    help={
        **HOST,
        "watch": "keep syncing until Ctrl-C (survives the VM going away)",
        "interval": "seconds between syncs with --watch (default 30, at least 1)",
        "push": "send local notebooks to the VM instead (never overwrites a newer file there)",
    }
)
@cli.guarded
def sync(c, host=None, watch=False, interval=None, push=False):
    """Bring notebooks (hosts.yml: sync patterns) home from the VM; never deletes or silently overwrites."""
    seconds = cli.whole_number(interval, "--interval", default=30, minimum=1)
    with cli.session(c, host) as session:
        session.sync(watch, seconds, push)


@task(
    help={
        **HOST,
        "workers": "how many workers run (default: cluster.workers, or all of cluster.hosts); the others end",
        "plan": cli.PLAN_HELP,
    }
)
@cli.guarded
def cluster(c, host=None, workers=None, plan=False):
    """The profile's Dask cluster: keys and env on each worker, the scheduler, the workers, Client() config."""
    count = None if workers is None else cli.whole_number(workers, "--workers", default=0, minimum=0)
    with cli.session(c, host, plan) as session:
        session.cluster(count)


@task(help={"host": "one profile only (default: every profile in hosts.yml)"})
@cli.guarded
def status(c, host=None):
    """Every profile: reachable, notebook, URL, kernels, idle time, memory and disk."""
    print(cli.status(c, host))


@task(help={**HOST, "json": "print JSON instead of lines"})
@cli.guarded
def check(c, host=None, json=False):
    """Read-only: is the account (and the SSH path) ready? One line per check, before anything is billed."""
    cli.check(c, host, json)


@task(help={"json": "print JSON instead of a table"})
@cli.guarded
def audit(c, json=False):
    """Every labvm VM, image, snapshot and address your clouds hold: state, age, cost, next step for zombies."""
    print(cli.audit(json))


@task(
    help={
        **HOST,
        "browser": "open the URL in a browser (--no-browser to skip)",
        "from_image": "cloud profiles: make the VM from this image id, or `latest`",
        "plan": cli.PLAN_HELP,
        "replace": "cloud profiles: delete a VM the cloud put in ERROR and make a new one (asks first)",
        "yes": "with --replace: do not ask",
    }
)
@cli.guarded
def up(c, host=None, browser=True, from_image=None, plan=False, replace=False, yes=False):
    """Everything: the VM (resumed or made), keys, env, Jupyter in tmux, tunnel; prints (and opens) the URL."""
    with cli.session(c, host, plan) as session:
        session.up(browser, from_image, replace, yes)


@task(
    help={
        **HOST,
        "force": "also end a Jupyter labvm did not start on that port",
        "sync": cli.SYNC_HELP,
        "plan": cli.PLAN_HELP,
    }
)
@cli.guarded
def down(c, host=None, force=False, sync=True, plan=False):
    """Sync notebooks home, stop the notebook, close the tunnel, and stop the VM of a cloud profile."""
    with cli.session(c, host, plan) as session:
        session.down(force, sync)


@task(help=HOST)
@cli.guarded
def ssh(c, host=None):
    """Log in to the host with labvm's key (the same as `ssh labvm-<profile>`)."""
    with cli.session(c, host) as session:
        command = session.ssh_login()
    os.execvp(command[0], command)


@task(
    help={
        **HOST,
        "from_image": "an image id, or `latest` (the newest labvm image of this profile)",
        "plan": cli.PLAN_HELP,
    }
)
@cli.guarded
def create(c, host=None, from_image=None, plan=False):
    """Create the profile's VM (cloud profiles); an existing one is resumed, never doubled."""
    with cli.session(c, host, plan) as session:
        session.create(from_image)


@task(help={**HOST, "plan": cli.PLAN_HELP})
@cli.guarded
def start(c, host=None, plan=False):
    """Start the profile's VM and wait until SSH answers (cloud profiles)."""
    with cli.session(c, host, plan) as session:
        session.start()


@task(help={**HOST, "sync": cli.SYNC_HELP, "plan": cli.PLAN_HELP})
@cli.guarded
def stop(c, host=None, sync=True, plan=False):
    """Sync notebooks home, then stop the profile's VM: its disk stays, its compute is no longer billed."""
    with cli.session(c, host, plan) as session:
        session.stop(sync)


@task(
    help={
        **HOST,
        "yes": "do not ask for confirmation",
        "force": "terminate even without an image newer than the VM's last start",
        "keep_ip": "keep the Elastic IP for the next VM",
        "sync": cli.SYNC_HELP,
        "delete_data": "delete the data volume too, after a last backup of it (asks first)",
        "plan": cli.PLAN_HELP,
    }
)
@cli.guarded
def terminate(c, host=None, yes=False, force=False, keep_ip=False, sync=True, delete_data=False, plan=False):
    """Sync notebooks home, then delete the profile's VM and what labvm made for it (asks first)."""
    with cli.session(c, host, plan) as session:
        session.terminate(yes, force, keep_ip, sync, delete_data)


@task(
    iterable=["share"],
    help={
        **HOST,
        "name": "image name prefix (a profile and time stamp follow)",
        "share": "an AWS account id that may launch the image (repeatable)",
        "no_reboot": "do not reboot the VM for a consistent disk",
        "plan": cli.PLAN_HELP,
    },
)
@cli.guarded
def snapshot(c, host=None, name="labvm", share=None, no_reboot=False, plan=False):
    """Make a tagged image of the profile's VM and wait until it is available (cloud profiles)."""
    with cli.session(c, host, plan) as session:
        session.snapshot(name, tuple(share or ()), no_reboot)


@task(
    help={
        **HOST,
        "prune": "delete older images and their snapshots",
        "keep": "how many --prune keeps (default 3)",
        "plan": cli.PLAN_HELP,
    }
)
@cli.guarded
def images(c, host=None, prune=False, keep=None, plan=False):
    """List the profile's labvm images, oldest first (cloud profiles)."""
    count = cli.whole_number(keep, "--keep", default=3, minimum=1)
    with cli.session(c, host, plan) as session:
        session.images(prune, count)


@task(
    help={
        **HOST,
        "backup": "take a backup (a snapshot) of the data volume, waited for until ready",
        "grow": "enlarge the data volume to SIZE GB, then its filesystem (online where the VM runs)",
        "restore": "make a new data volume from this backup (id or name); the current one is kept, detached",
        "zone": "where --restore makes the volume (default: the VM's zone)",
        "prune": "delete all but the newest --keep backups",
        "keep": "how many backups --prune keeps (default 3, at least 1)",
        "plan": cli.PLAN_HELP,
    }
)
@cli.guarded
def data(c, host=None, backup=False, grow=None, restore="", zone="", prune=False, keep=None, plan=False):
    """The profile's data volume (hosts.yml data:): size, backups, price; --grow, --backup, --restore, --prune."""
    size = None if grow is None else cli.whole_number(grow, "--grow", default=100, minimum=1)
    if keep is not None and not prune:
        raise LabvmError("--keep: says how many backups --prune keeps; add --prune")
    count = cli.whole_number(keep, "--keep", default=3, minimum=1) if prune else None
    with cli.session(c, host, plan) as session:
        session.data_volume.act(backup, size, restore, zone, count)


@task(
    help={**HOST, "local": "a file or folder on this machine", "remote": "where on the VM (default: the data folder)"}
)
@cli.guarded
def put(c, local, remote="", host=None):
    """Send a dataset to the VM with progress; resumes where a broken one stopped; never overwrites silently."""
    with cli.session(c, host) as session:
        session.reach.put(local, remote)


@task(help={**HOST, "remote": "a file or folder on the VM", "local": "where here (default: the profile's sync folder)"})
@cli.guarded
def get(c, remote, local="", host=None):
    """Bring a file or folder home from the VM with progress; resumes; never overwrites silently."""
    with cli.session(c, host) as session:
        session.reach.get(remote, local)


@task(
    help={**HOST, "size": "the new instance type, flavor or machine type", "sync": cli.SYNC_HELP, "plan": cli.PLAN_HELP}
)
@cli.guarded
def resize(c, host=None, size="", sync=True, plan=False):
    """Sync notebooks home, stop, change the VM's size, start; the notebook and tunnel come back."""
    with cli.session(c, host, plan) as session:
        session.resize(size, sync)
