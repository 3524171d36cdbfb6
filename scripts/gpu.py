"""The host's NVIDIA GPUs as nvidia-smi reports them: each GPU's utilisation and memory, and the
processes holding GPU memory.  Read by autostop.py (a busy GPU is activity) and nbctl.py (`inv status`).

nvidia-smi's CSV queries (nvidia-smi --help-query-gpu, --help-query-compute-apps): with
--format=csv,noheader,nounits each GPU or process is one line of values separated by ", ", without
units (utilization.gpu in %, memory in MiB); a value the GPU does not report reads "[N/A]" or
"[Not Supported]".  The processes carry no GPU index, only the GPU's uuid: both queries ask for it.
No nvidia-smi, or one that fails (exit 9: the driver is not loaded, nvidia-smi(1) RETURN VALUE),
means no GPU to watch.  Its output is read bounded and parsed strictly: a line that does not parse
is left out and said, never a traceback.

Standard library only, Python 3.6+.
"""

import os
import re
import select
import shutil
import subprocess
import time

GPU_QUERY = "index,uuid,name,utilization.gpu,memory.used,memory.total"
APP_QUERY = "gpu_uuid,pid,used_memory"
FORMAT = "--format=csv,noheader,nounits"
TIMEOUT = 10  # seconds; nvidia-smi takes a second or two without persistence mode
OUTPUT_LIMIT = 64 * 1024  # bytes; a line is under 200, a host has at most a few dozen GPUs and processes
MAX_MIB = 10**7  # 10 TiB of GPU memory: more is not a GPU's
CMDLINE_LIMIT = 4096
NOT_AVAILABLE = ("[N/A]", "[Not Supported]", "N/A", "Not Supported")
UUID = re.compile(r"(?:GPU|MIG)-[0-9A-Za-z/-]{1,80}")
NAME = re.compile(r"[ -~]{1,100}")  # printable ASCII: NVIDIA's product names
KERNEL_FILE = re.compile(r"kernel-[0-9A-Za-z-]{1,64}\.json")


class Gpu:
    """One GPU: util (%) and memory (MiB) are None where nvidia-smi reports none."""

    def __init__(self, index, uuid, name, util, used, total):
        self.index, self.uuid, self.name, self.util, self.used, self.total = index, uuid, name, util, used, total

    def as_dict(self):
        """The fields nbctl.py's status answers."""
        return {
            "index": self.index,
            "name": self.name,
            "util": self.util,
            "used_mib": self.used,
            "total_mib": self.total,
        }


class App:
    """A process holding memory on a GPU (MiB; None where not reported)."""

    def __init__(self, gpu_uuid, pid, used):
        self.gpu_uuid, self.pid, self.used = gpu_uuid, pid, used


def run_bounded(argv):
    """(exit status, stdout) of argv: at most OUTPUT_LIMIT bytes and TIMEOUT seconds, then it is ended.
    None when it cannot start."""
    try:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    except OSError:
        return None
    out, deadline = b"", time.monotonic() + TIMEOUT
    try:
        while len(out) <= OUTPUT_LIMIT:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([process.stdout], [], [], left)[0]:
                raise subprocess.TimeoutExpired(argv, TIMEOUT)
            chunk = os.read(process.stdout.fileno(), 65536)
            if not chunk:
                break
            out += chunk
        else:
            raise subprocess.TimeoutExpired(argv, TIMEOUT)  # too much: as good as no answer
        return process.wait(max(deadline - time.monotonic(), 0.1)), out.decode("utf-8", "replace")
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return -1, ""
    finally:
        process.stdout.close()


def mib(text, field):
    """A whole number of MiB (or %), or None where not reported; raises ValueError."""
    if text in NOT_AVAILABLE:
        return None
    if not text.isdigit() or int(text) > MAX_MIB:
        raise ValueError("%s %r is not a whole number" % (field, text[:40]))
    return int(text)


def parse_gpu(line):
    """One --query-gpu line; raises ValueError."""
    fields = line.split(", ")
    if len(fields) < 6:
        raise ValueError("%d values, not 6" % len(fields))
    index, uuid, util, used, total = fields[0], fields[1], fields[-3], fields[-2], fields[-1]
    name = ", ".join(fields[2:-3])  # a name with ", " in it keeps its pieces
    if not index.isdigit() or int(index) > 1023:
        raise ValueError("index %r is not a GPU's" % index[:40])
    if not UUID.fullmatch(uuid) or not NAME.fullmatch(name):
        raise ValueError("uuid or name is not plain text")
    util = mib(util, "utilization.gpu")
    if util is not None and util > 100:
        raise ValueError("utilization.gpu %d is over 100" % util)
    return Gpu(int(index), uuid, name, util, mib(used, "memory.used"), mib(total, "memory.total"))


def parse_app(line):
    """One --query-compute-apps line; raises ValueError."""
    fields = line.split(", ")
    if len(fields) != 3:
        raise ValueError("%d values, not 3" % len(fields))
    uuid, pid, used = fields
    if not UUID.fullmatch(uuid) or not pid.isdigit() or not 0 < int(pid) < 1 << 32:
        raise ValueError("uuid or pid is not one")
    return App(uuid, int(pid), mib(used, "used_memory"))


def parse(text, parse_line, what):
    """(rows, problems): each line parsed; a line that does not parse is a problem, said once."""
    rows, problems = [], []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(parse_line(line.strip()))
        except ValueError as e:
            problems.append("nvidia-smi %s line %d left out: %s" % (what, number, e))
    return rows, problems


def query(kind, fields, parse_line):
    """(rows, problems) of one nvidia-smi query; no rows when there is no nvidia-smi or it fails."""
    program = shutil.which("nvidia-smi")
    if program is None:
        return [], []
    answer = run_bounded([program, "--query-%s=%s" % (kind, fields), FORMAT])
    if answer is None or answer[0] != 0:
        why = answer[1].strip().splitlines()[0][:200] if answer and answer[1].strip() else "no answer"
        code = answer[0] if answer else "not run"
        return [], ["nvidia-smi --query-%s failed (exit %s): %s" % (kind, code, why)]
    return parse(answer[1], parse_line, kind)


def gpus():
    """(GPUs, problems): every GPU nvidia-smi reports."""
    return query("gpu", GPU_QUERY, parse_gpu)


def apps():
    """(processes, problems): every process holding GPU memory."""
    return query("compute-apps", APP_QUERY, parse_app)


def what_process(pid):
    """ "a Jupyter kernel" when the process's command line names a kernel connection file
    (ipykernel's `-f .../kernel-<id>.json`), else ""."""
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            words = f.read(CMDLINE_LIMIT).decode("utf-8", "replace").split("\0")
    except OSError:
        return ""
    if any("ipykernel" in word for word in words) or any(
        KERNEL_FILE.fullmatch(os.path.basename(word)) for word in words
    ):
        return "a Jupyter kernel"
    return ""


def gib(mebibytes):
    """MiB as the words say it: "14 GiB" (one decimal under 10)."""
    value = mebibytes / 1024.0
    return ("%.1f GiB" if value < 10 else "%.0f GiB") % value


class Look:
    """What one look at the GPUs found: busy (reasons the host is in use), held (memory held on a GPU
    that is not busy: said, not activity), problems (what nvidia-smi said that did not parse)."""

    def __init__(self, busy, held, problems):
        self.busy, self.held, self.problems = busy, held, problems


def look(threshold):
    """Each GPU at or above threshold % is a reason; memory held on the others is a note."""
    found, problems = gpus()
    busy, held = [], []
    quiet = {}
    for gpu in found:
        if gpu.util is not None and gpu.util >= threshold:
            busy.append("GPU %d busy: %d %%" % (gpu.index, gpu.util))
        else:
            quiet[gpu.uuid] = gpu
    if quiet:
        holders, more = apps()
        problems += more
        for app in holders:
            gpu = quiet.get(app.gpu_uuid)
            if gpu is None or not app.used:
                continue
            who = what_process(app.pid)
            held.append(
                "GPU %d: %s held by pid %d%s at %s"
                % (
                    gpu.index,
                    gib(app.used),
                    app.pid,
                    " (%s)" % who if who else "",
                    "%d %%" % gpu.util if gpu.util is not None else "an unreported utilisation",
                )
            )
    return Look(busy, held, problems)
