"""What the asleep page's Start button runs; the keeper starts it as its child and shows its output.

    python -m labvm.asleep_start HOSTS PROFILE

`inv up --host PROFILE --no-browser`, with two differences the page needs:
- a failure leaves the keeper (this process's parent) asleep, or puts it to sleep again, so the
  page shows why; up() would close the tunnel;
- a deleted VM is not made again from a page: exit status 3 (labvm.keeper.GONE_STATUS).
The last line is `url: <URL>` once JupyterLab answers through the tunnel: the page moves there.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .config import load
from .errors import LabvmError
from .keeper import GONE_STATUS
from .session import Session


class StartFromPage(Session):
    def close_tunnel(self) -> None:
        """The keeper stays: main() puts it back to sleep, and its page says why the start failed."""


def main(argv: list[str]) -> int:
    from invoke import Context

    hosts, name = argv
    try:
        profile = load(Path(hosts)).profile(name)
        with StartFromPage(profile, Context()) as session:
            if session.provider.find() is None:
                print(f"error: the VM of profile {name} was deleted; `inv up --host {name}` in a terminal makes a new one")
                return GONE_STATUS
            try:
                url = session.up(browser=False)
            except LabvmError as e:
                session.tunnels.sleep(profile, f"the start failed: {str(e).splitlines()[0]}")
                raise
    except LabvmError as e:
        for line in str(e).splitlines():
            print(f"error: {line}")
        return 1
    print(f"url: {url}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
