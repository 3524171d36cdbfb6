"""`inv sync` where the laptop has no usable rsync: this program lists the workspace, then answers
the laptop's requests, all through the one ssh that started it (labvm.sync_fallback sends the
requests and checks every line that comes back; its docstring has the messages).

    python3 sync_host.py WORKSPACE SKIPPED_FOLDERS_JSON MARK

Python 3.6+ standard library only.  Symbolic links and other non-regular files are not listed
(rsync -r without -l skips them too); a file is opened without following a link that replaced it
after the listing.  It sends a file only at the size labvm asks for (the listed one), and says after
its bytes whether it changed while read.  Nothing is deleted; a file sent from the laptop is
written beside its place and renamed over it only once whole.
"""

import json
import os
import stat
import sys
from fnmatch import fnmatch

CHUNK = 1 << 20  # bytes read or written at a time: a file never sits whole in memory
out, inp = sys.stdout.buffer, sys.stdin.buffer


def say(**message):
    """One JSON line to the laptop."""
    out.write(json.dumps(message).encode() + b"\n")


def send(root, ask):
    """The asked-for file's bytes, exactly as many as asked for, framed by its time and a verdict."""
    try:
        fd = os.open(os.path.join(root, bytes.fromhex(ask["get"])), os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as e:
        return say(error=e.strerror or str(e))
    with os.fdopen(fd, "rb") as file:
        info, left, changed = os.fstat(fd), ask["size"], False
        if info.st_size != left:
            return say(error="changed on the host since it was listed; sync again")
        say(size=left, m=info.st_mtime_ns)
        while left:
            data = file.read(min(left, CHUNK))
            if not data:  # it shrank: the promised count all the same, then why it is no good
                changed, data = True, bytes(min(left, CHUNK))
            out.write(data)
            left -= len(data)
        if changed or file.read(1) or os.fstat(fd).st_mtime_ns != info.st_mtime_ns:
            say(error="changed on the host while it was read; sync again")
        else:
            say(ok=True)


def receive(root, ask):
    """A file from the laptop into its place; False when the laptop went away in its middle."""
    path = os.path.join(root, bytes.fromhex(ask["put"]))
    temporary = os.path.join(os.path.dirname(path), b".labvm-sync-incoming-%d" % os.getpid())
    left, problem, file = ask["size"], None, None
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        file = open(temporary, "wb")
    except OSError as e:
        problem = e.strerror or str(e)
    try:
        while left:
            data = inp.read(min(left, CHUNK))
            if not data:
                return False  # the laptop went away: nothing half-written stays
            left -= len(data)
            if file and not problem:
                try:
                    file.write(data)
                except OSError as e:
                    problem = e.strerror or str(e)
        if file and not problem:
            try:
                file.close()
                os.utime(temporary, ns=(ask["m"], ask["m"]))
                os.replace(temporary, path)
            except OSError as e:
                problem = e.strerror or str(e)
        say(error=problem) if problem else say(ok=True)
        return True
    finally:
        if file:
            file.close()
            try:
                os.unlink(temporary)
            except OSError:
                pass  # renamed into place


def is_skipped(root, folder, name, skipped):
    """A folder `skipped` names: by its name (a pattern), or by its path from root (one ending with "/")."""
    rel = os.fsdecode(os.path.relpath(os.path.join(folder, name), root)) + "/"
    return any(rel == p if p.endswith("/") else fnmatch(os.fsdecode(name), p) for p in skipped)


def listing(root, skipped):
    """One message per regular file under root, the folders `skipped` names left out."""
    if not os.path.isdir(root):
        say(missing=True)  # a push makes it
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if not is_skipped(root, folder, d, skipped)]
        for name in names:
            path = os.path.join(folder, name)
            try:
                info = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode):
                say(f=path[len(root) + 1 :].hex(), s=info.st_size, m=info.st_mtime_ns)
    say(end=True)


def main():
    """The listing, then the laptop's requests one at a time, until it says done or goes away."""
    root, skipped, mark = os.fsencode(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
    out.write(mark.encode() + b"\n")  # what a chatty login script printed before it is skipped
    listing(root, skipped)
    out.flush()
    while True:
        ask = json.loads(inp.readline() or b'{"done": true}')
        if "get" in ask:
            send(root, ask)
        elif "put" not in ask or not receive(root, ask):
            break
        out.flush()


if __name__ == "__main__":
    main()
