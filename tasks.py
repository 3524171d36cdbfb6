"""labvm: a Jupyter server on a VM, reached through an SSH tunnel.  `inv --list` shows the tasks.

Each task reads a profile from hosts.yml (--host, else $LABVM_HOST, else `default:`) and
calls one function of the labvm package.  Every task is safe to run again.
"""

import os

from invoke import task

from labvm import cli

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
    with cli.session(c, host) as session:
        session.keys()


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


@task(help={"host": "one profile only (default: every profile in hosts.yml)"})
@cli.guarded
def status(c, host=None):
    """Every profile: reachable, notebook, URL, kernels, idle time, memory and disk."""
    print(cli.status(c, host))


@task(help={**HOST, "browser": "open the URL in a browser (--no-browser to skip)"})
@cli.guarded
def up(c, host=None, browser=True):
    """Everything: keys, env, Jupyter in tmux, tunnel; prints (and opens) the URL."""
    with cli.session(c, host) as session:
        session.up(browser)


@task(help={**HOST, "force": "also end a Jupyter labvm did not start on that port"})
@cli.guarded
def down(c, host=None, force=False):
    """Stop the notebook and close the tunnel."""
    with cli.session(c, host) as session:
        session.down(force)


@task(help=HOST)
@cli.guarded
def ssh(c, host=None):
    """Log in to the host with labvm's key (the same as `ssh labvm-<profile>`)."""
    with cli.session(c, host) as session:
        command = session.ssh_login()
    os.execvp(command[0], command)


@task(help=HOST)
@cli.guarded
def start(c, host=None):
    """Start the profile's VM (cloud profiles)."""
    with cli.session(c, host) as session:
        session.machine("start")


@task(help=HOST)
@cli.guarded
def stop(c, host=None):
    """Stop the profile's VM (cloud profiles)."""
    with cli.session(c, host) as session:
        session.machine("stop")


@task(help={**HOST, "name": "name of the image"})
@cli.guarded
def snapshot(c, host=None, name="labvm"):
    """Make an image of the profile's VM (cloud profiles)."""
    with cli.session(c, host) as session:
        session.machine("snapshot", name)


@task(help={**HOST, "size": "the new instance type, flavor or machine type"})
@cli.guarded
def resize(c, host=None, size=""):
    """Change the VM's size (cloud profiles)."""
    with cli.session(c, host) as session:
        session.machine("resize", size)
