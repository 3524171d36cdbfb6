"""What the asleep page's Start button runs; the keeper starts it as its child and shows its output.

    python -m labvm.asleep_start HOSTS PROFILE

`inv up --host PROFILE --no-browser` on a Session, with two differences the page needs:
- a failure leaves the keeper (this process's parent) asleep, or puts it to sleep again, so the
  page shows why: up(keep_tunnel=True), then the keeper told why;
- a deleted VM is not made again from a page: exit status GONE_STATUS (labvm.keeper's protocol).
The last line is URL_LINE and the URL once JupyterLab answers through the tunnel: the page moves there.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .config import load
from .errors import LabvmError
from .keeper import GONE_STATUS, URL_LINE
from .session import Session


def main(argv: list[str]) -> int:
    """Starts the profile's lab as `inv up` would; the exit status and last line say how it went."""
    from invoke import Context

    hosts, name = argv
    try:
        profile = load(Path(hosts)).profile(name)
        with Session(profile, Context()) as session:
            if session.provider.find() is None:
                print(
                    f"error: the VM of profile {name} was deleted; `inv up --host {name}` in a terminal makes a new one"
                )
                return GONE_STATUS
            try:
                url = session.up(browser=False, keep_tunnel=True)
            except LabvmError as e:
                session.tunnels.sleep(profile, f"the start failed: {str(e).splitlines()[0]}")
                raise
    except LabvmError as e:
        for line in str(e).splitlines():
            print(f"error: {line}")
        return 1
    print(f"{URL_LINE}{url}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
