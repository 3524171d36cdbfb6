"""The scheduler's dashboard on a unix socket only its user can open: a preload module of
`dask scheduler` (dask.sh passes `--preload` with this file's path and the socket's path in
LABVM_DASK_DASHBOARD_SOCKET).

On a shared VM any login can connect to a TCP port on 127.0.0.1, and the dashboard has no
authentication of its own; a socket file 0600 in a 0700 folder opens only for its user (and
root). JupyterLab reaches it through jupyter-server-proxy's named server, behind Jupyter's token
(layout.py DASHBOARD_ROUTE).

distributed (2026.8) has no option for this: Scheduler.__init__ builds its HTTP server and binds
it on TCP at once (distributed/node.py start_http_server; dask/distributed#9363 proposes a unix
socket). dask.sh binds that one to 127.0.0.1:0, a port nobody can take ahead and nothing forwards
to; dask_setup runs at the end of Scheduler.start (preloading.py), serves the same tornado
application (bokeh pages, /json/counts.json, /health, ...) on the socket, then closes the TCP one.
"""

import asyncio
import logging
import os
import stat

from tornado.httpserver import HTTPServer
from tornado.netutil import bind_unix_socket

# The scheduler's own logger: its lines land in the log dask.sh waits on.
logger = logging.getLogger("distributed.scheduler")
SERVED = "labvm: dashboard on unix socket"  # dask.sh's ready marker
FAILED = "labvm: error: the dashboard cannot be served on"


def private_folder(path):
    """The socket's folder: ours, a real folder, closed to others (bind leaves the socket open to
    the umask until the chmod that follows it)."""
    folder = os.path.dirname(path)
    info = os.lstat(folder)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o077:
        raise PermissionError("%s must be a folder of yours that only you can open (chmod 700)" % folder)


async def dask_setup(scheduler):
    """The preload's hook at the end of Scheduler.start: the dashboard served on the socket, TCP closed."""
    path = os.environ["LABVM_DASK_DASHBOARD_SOCKET"]
    try:
        private_folder(path)
        server = HTTPServer(scheduler.http_application)
        server.add_socket(bind_unix_socket(path, mode=0o600))
    except (OSError, ValueError) as e:  # ValueError: tornado's answer to a file that is not a socket
        logger.error("%s %s: %s; free that path, then run inv up again", FAILED, path, e)
        # A scheduler whose dashboard stays on TCP must not run: it closes once its start is over,
        # and dask.sh reports the line above.
        scheduler.labvm_closing = asyncio.ensure_future(scheduler.close(reason="labvm: no dashboard socket"))
        return
    tcp = scheduler.http_server
    tcp.stop()
    await tcp.close_all_connections()
    scheduler.labvm_dashboard = (server, os.stat(path).st_ino)
    logger.info("%s %s", SERVED, path)


async def dask_teardown(scheduler):
    """The preload's hook when the scheduler closes: its socket removed, unless a newer scheduler's."""
    served = getattr(scheduler, "labvm_dashboard", None)
    if served is None:
        return
    server, inode = served
    server.stop()
    path = os.environ["LABVM_DASK_DASHBOARD_SOCKET"]
    try:
        if os.stat(path).st_ino == inode:  # not the socket of a scheduler started since
            os.remove(path)
    except OSError:
        pass
