"""Files labvm writes on this machine: whole (a reader sees the old file or the new one, never
half of one) and private (0600 from their first byte; on Windows the folder's ACL decides)."""

from __future__ import annotations

import os
import threading
from pathlib import Path


def write_private(path: Path, data: str | bytes, mode: int = 0o600) -> None:
    """`data` into `path`, atomically: written under a name of its own beside it, then renamed."""
    tmp = path.with_name(f"{path.name}.labvm-tmp-{os.getpid()}-{threading.get_ident()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
