"""What the asleep page's Start button runs; the keeper starts it as its child and shows its output.

    python -m labvm.asleep_start HOSTS PROFILE LOCAL_PORT

`inv up --host PROFILE --no-browser`, with four differences the page needs:
- Jupyter is launched, and its URL said (`url: <URL>`, its new token), before Jupyter answers:
  the page must give the tab the URL while it still holds the port;
- only then is the keeper woken (up()'s tunnel, beside Jupyter's start as in `inv up`): the page
  hands the port to ssh while Jupyter boots, and moves into the lab once it answers there;
- a failure leaves the keeper (this process's parent) asleep, or puts it to sleep again, so the
  page shows it; up() would close the tunnel;
- a deleted VM is not made again from a page: exit status 3 (labvm.keeper.GONE_STATUS).
The last line is `url: <URL>` once JupyterLab answers through the tunnel.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from .config import Profile, load
from .errors import LabvmError
from .keeper import GONE_STATUS
from .session import Session


class StartFromPage(Session):
    def __init__(self, profile: Profile, context, local_port: int):
        super().__init__(profile, context)
        self.local_port = local_port
        self.url_said = threading.Event()  # set once start_notebook said the URL, or could not
        self.said_url = self.woken = False

    def tunnel(self, remote_port: int | None = None) -> int:
        """up() opens the tunnel beside Jupyter's start; here once the page has the URL to give."""
        self.url_said.wait()
        if not self.said_url:
            return self.local_port
        self.woken = True
        return super().tunnel(remote_port)

    def start_notebook(self) -> dict:
        try:
            launched = self._notebook("launch")
            print(f"url: {self.url(self.local_port, launched)}", flush=True)
            self.said_url = True
        finally:
            self.url_said.set()
        try:
            status = self._notebook("wait")
        except LabvmError as e:
            if self.woken:  # the page gave its port to ssh: it comes back to say why
                self.tunnels.sleep(self.profile, f"the start failed: {str(e).splitlines()[0]}")
            raise
        server = status["server"]
        print(f"notebook: JupyterLab on the host at 127.0.0.1:{server['port']} (pid {server['pid']})")
        return status

    def close_tunnel(self) -> None:
        """The keeper stays: asleep, its page says why the start failed."""


def main(argv: list[str]) -> int:
    from invoke import Context

    hosts, name, local_port = argv
    try:
        profile = load(Path(hosts)).profile(name)
        with StartFromPage(profile, Context(), int(local_port)) as session:
            if session.provider.find() is None:
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
