"""What the asleep page's Start button runs; the keeper starts it as its child and shows its output.

    python -m labvm.asleep_start HOSTS PROFILE LOCAL_PORT

`inv up --host PROFILE --no-browser`, with three differences the page needs:
- the URL is said (`url: <URL>`) as soon as Jupyter has its token, before the keeper is woken:
  the page must tell the browser the URL while it still holds the port, and up() wakes the
  keeper through Tunnels.ensure only after that (the keeper already holds the local port);
- a failure leaves the keeper (this process's parent) asleep, so the page shows it; up() would
  close the tunnel;
- a deleted VM is not made again from a page: exit status 3 (labvm.keeper.GONE_STATUS).
The last line is `url: <URL>` once JupyterLab answers through the tunnel.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .config import Profile, load
from .errors import LabvmError
from .keeper import GONE_STATUS
from .session import Session


class StartFromPage(Session):
    def __init__(self, profile: Profile, context, local_port: int):
        super().__init__(profile, context)
        self.local_port = local_port

    def tunnel(self, remote_port: int | None = None) -> int:
        """up() opens the tunnel beside Jupyter's start; here the keeper holds the port already."""
        return self.local_port

    def start_notebook(self) -> dict:
        status = super().start_notebook()
        print(f"url: {self.url(self.local_port, status['server'])}", flush=True)
        return status

    def close_tunnel(self) -> None:
        """The keeper stays: asleep, its page says why the start failed."""


def main(argv: list[str]) -> int:
    from invoke import Context

    hosts, name, local_port = argv
    try:
        profile = load(Path(hosts)).profile(name)
        with StartFromPage(profile, Context(), int(local_port)) as session:
            if session.provider.owns_machine and session.provider.find() is None:
                print(f"error: the VM of profile {name} was deleted; `inv up --host {name}` in a terminal makes a new one")
                return GONE_STATUS
            url = session.up(browser=False)
    except LabvmError as e:
        for line in str(e).splitlines():
            print(f"error: {line}")
        return 1
    print(f"url: {url}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
