"""The VM's NVIDIA GPUs: the idle check sees a busy GPU, says who holds memory on an idle one (and
still stops the VM), and `inv status` shows each GPU.

No GPU here: tests/standin/nvidia-smi answers labvm's two queries as NVIDIA documents them
(nvidia-smi --help-query-gpu, --help-query-compute-apps; its docstring says what it models) for the
GPUs a test writes in a JSON file (NVIDIA_SMI_STANDIN).  The idle check runs as cron runs it
(scripts/autostop.py check, the system's python3) in a home folder of the test's own, with the stand-in
first on its PATH; the stop command appends to a file, so the test sees each call.  `inv status` asks
a real sshd whose sessions get the stand-in on their PATH (SetEnv), as a GPU VM's would.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from realhost import Sshd, free_port, ssh_profile

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"
STANDIN = Path(__file__).parent / "standin"
T4 = "GPU-5a1a5b6c-0d3e-4f5a-8b9c-0d1e2f3a4b5c"
PERIOD = 600

sys.path.insert(0, str(SCRIPTS))
import gpu  # noqa: E402  (scripts/gpu.py: the VM's reader, stdlib only)


def world(path: Path, **what) -> Path:
    """The GPUs the stand-in reports."""
    path.write_text(json.dumps(what))
    path.chmod(0o644)
    return path


def t4(util: int | None, used: int = 3276) -> dict:
    return {"index": 0, "uuid": T4, "name": "Tesla T4", "util": util, "used": used, "total": 15360}


class Host:
    """A home folder with labvm's autostop settings, and the idle check run in it as cron would."""

    def __init__(self, home: Path, smi_world: Path | None, on_path: bool = True):
        self.home, self.labvm = home, home / ".labvm"
        self.labvm.mkdir(parents=True)
        self.stops = self.labvm / "stop-called"
        settings = {
            "idle_seconds": PERIOD,
            "load_max": 1e6,  # this shared machine's load is not the test's subject
            "gpu_percent": 10.0,
            "port": free_port(),
            "stop_command": f'echo stop >> "{self.stops}"',
            "set_by": "hosts.yml",
        }
        (self.labvm / "autostop.json").write_text(json.dumps(settings))
        path = f"{STANDIN}:/usr/bin:/bin" if on_path else "/usr/bin:/bin"
        self.env = {"HOME": str(home), "PATH": path}
        if smi_world:
            self.env["NVIDIA_SMI_STANDIN"] = str(smi_world)

    def check(self) -> subprocess.CompletedProcess:
        log = self.labvm / "autostop.log"
        before = log.read_text().count("\n") if log.exists() else 0
        result = subprocess.run(
            ["python3", str(SCRIPTS / "autostop.py"), "check"], env=self.env, capture_output=True, text=True
        )
        assert "Traceback" not in result.stderr, result.stderr
        assert result.returncode == 0, result.stderr
        result.decision = "\n".join(log.read_text().splitlines()[before:])
        return result

    def state(self) -> dict:
        return json.loads((self.labvm / "autostop-state.json").read_text())

    def idle_for(self, seconds: int) -> None:
        state = self.state()
        state["idle_since"] = (datetime.now(timezone.utc) - timedelta(seconds=seconds)).isoformat()
        (self.labvm / "autostop-state.json").write_text(json.dumps(state))

    def stop_calls(self) -> int:
        return len(self.stops.read_text().splitlines()) if self.stops.exists() else 0


def test_a_busy_gpu_keeps_the_vm_up_and_the_reason_says_so(tmp_path):
    host = Host(tmp_path / "home", world(tmp_path / "gpus.json", gpus=[t4(87)]))
    assert "GPU 0 busy: 87 %" in host.check().decision
    host.idle_for(PERIOD + 60)
    assert "active: GPU 0 busy: 87 %" in host.check().decision
    assert host.state()["reasons"] == ["GPU 0 busy: 87 %"]
    assert host.stop_calls() == 0


def test_an_idle_gpu_with_a_kernel_holding_memory_still_stops_and_the_words_name_the_kernel(tmp_path):
    # A process whose command line is a Jupyter kernel's (ipykernel's launcher and its connection file).
    connection = tmp_path / "kernel-4f2a9c1e-77aa-4b0e-9d1c-2b3e4f5a6b7c.json"
    kernel = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)", "-m", "ipykernel_launcher", "-f", str(connection)]
    )
    try:
        apps = [{"gpu_uuid": T4, "pid": kernel.pid, "used": 14336}]
        host = Host(tmp_path / "home", world(tmp_path / "gpus.json", gpus=[t4(0, 14500)], apps=apps))
        held = f"GPU 0: 14 GiB held by pid {kernel.pid} (a Jupyter kernel) at 0 %"
        first = host.check()
        assert "idle 0s of 10m" in first.decision and held in first.decision
        assert host.state()["notes"] == [held] and host.state()["reasons"] == []
        report = json.loads(
            subprocess.run(
                ["python3", str(SCRIPTS / "autostop.py"), "status"], env=host.env, capture_output=True, text=True
            ).stdout
        )
        assert report["notes"] == [held]
        host.idle_for(PERIOD + 60)
        stopping = host.check().decision
        assert "stopping: idle" in stopping and held in stopping
        assert host.stop_calls() == 1
    finally:
        kernel.kill()
        kernel.wait()


def test_the_laptop_says_who_holds_an_idle_gpu(tmp_path):
    from labvm.autostop import autostop_fields, autostop_line

    held = "GPU 0: 14 GiB held by pid 4242 (a Jupyter kernel) at 0 %"
    report = autostop_fields(
        {
            "idle_seconds": 3600,
            "set_by": "hosts.yml",
            "scheduler": "cron",
            "idle_for": 1500,
            "last_check_ago": 20,
            "notes": [held + "\x1b[2J"],
        }
    )
    line = autostop_line(report)
    assert f"; idle 25m; {held}" in line and "\x1b" not in line  # cleaned: the escape never reaches the terminal


@pytest.mark.parametrize("on_path", [False, True], ids=["no nvidia-smi", "no driver (exit 9)"])
def test_no_driver_changes_nothing(tmp_path, on_path):
    host = Host(tmp_path / "home", world(tmp_path / "gpus.json", driver=False), on_path=on_path)
    decision = host.check().decision
    assert decision.startswith("20") and "idle 0s of 10m" in decision
    assert host.state()["reasons"] == [] and host.state()["notes"] == []
    if on_path:  # nvidia-smi there but failing is said in the log, once a minute, never as activity
        assert "nvidia-smi --query-gpu failed (exit 9): NVIDIA-SMI has failed" in decision
    else:
        assert "nvidia-smi" not in decision


def test_malformed_output_is_left_out_and_said_never_a_traceback(tmp_path):
    raw = f"0, {T4}, Tesla T4, 87, 3276\nnot, a, gpu, line, at, all\n0, {T4}, Tesla T4, 250, 1, 2\n\xff\x00\n"
    host = Host(tmp_path / "home", world(tmp_path / "gpus.json", raw=raw))
    result = host.check()
    assert host.state()["reasons"] == []
    assert "nvidia-smi gpu line 1 left out: 5 values, not 6" in result.decision
    assert "line 3 left out: utilization.gpu 250 is over 100" in result.decision


def test_the_reader_follows_nvidias_documented_format(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", f"{STANDIN}:/usr/bin:/bin")
    gpus = [
        t4(87),
        {
            "index": 1,
            "uuid": T4 + "1",
            "name": "NVIDIA A100-SXM4-40GB",
            "util": None,
            "used": None,
            "total": "not supported",
        },
    ]
    monkeypatch.setenv("NVIDIA_SMI_STANDIN", str(world(tmp_path / "gpus.json", gpus=gpus)))
    found, problems = gpu.gpus()
    assert problems == []
    assert [g.as_dict() for g in found] == [
        {"index": 0, "name": "Tesla T4", "util": 87, "used_mib": 3276, "total_mib": 15360},
        {"index": 1, "name": "NVIDIA A100-SXM4-40GB", "util": None, "used_mib": None, "total_mib": None},
    ]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_the_parser_never_raises_on_any_bytes(data):
    text = data.decode("utf-8", "replace")
    for parse_line, what in ((gpu.parse_gpu, "gpu"), (gpu.parse_app, "compute-apps")):
        rows, problems = gpu.parse(text, parse_line, what)
        assert len(rows) + len(problems) <= len(text.splitlines())


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.integers(-5, 10**8), st.text(max_size=30), st.none(), st.floats()), max_size=8))
def test_the_parser_never_raises_on_near_lines(values):
    line = ", ".join("[N/A]" if v is None else str(v) for v in values)
    for parse_line, what in ((gpu.parse_gpu, "gpu"), (gpu.parse_app, "compute-apps")):
        gpu.parse(line, parse_line, what)


def test_status_shows_each_gpu(lab, user, tmp_path_factory):
    # In the lab's folder, which the VM's user can read (pytest's own folder is root's alone).
    smi_world = world(lab.directory / "gpus.json", gpus=[t4(87)])
    lab.directory.chmod(0o755)
    # sshd keeps the first SetEnv line only: PATH names a folder whose nvidia-smi names its world.
    on_path = lab.directory / "bin"
    on_path.mkdir(mode=0o755)
    (on_path / "nvidia-smi").write_text(
        f'#!/bin/sh\nNVIDIA_SMI_STANDIN="{smi_world}" exec "{STANDIN}/nvidia-smi" "$@"\n'
    )
    (on_path / "nvidia-smi").chmod(0o755)
    vm = Sshd(tmp_path_factory.mktemp("gpu-sshd"), environment={"PATH": f"{on_path}:/usr/bin:/bin"})
    try:
        lab.write_hosts({"vm": ssh_profile(user, vm)})
        output = lab.inv("status", "--host", "vm").output
        assert "  GPU 0: Tesla T4, 87 % busy, 3.2 of 15.0 GiB" in output
        world(smi_world, raw="0, GPU-x, \x1b[31mEvil, 87, 1, 2\n")  # left out on the VM, never shown
        output = lab.inv("status", "--host", "vm").output
        assert "GPU" not in output and "\x1b" not in output
    finally:
        vm.stop()


def test_autostop_gpu_is_a_percent_carried_into_the_vms_settings(tmp_path):
    from labvm import config
    from labvm.errors import LabvmError

    hosts = tmp_path / "hosts.yml"
    hosts.write_text(
        "profiles:\n  lab: {provider: ssh, address: h}\n  busy: {provider: ssh, address: h, autostop_gpu: 25}\n"
    )
    loaded = config.load(hosts)
    assert (loaded.profile("lab").autostop_gpu, loaded.profile("busy").autostop_gpu) == (10.0, 25.0)
    hosts.write_text("profiles:\n  lab: {provider: ssh, address: h, autostop_gpu: 150}\n")
    with pytest.raises(LabvmError, match=r"autostop_gpu.*must be a percent above 0, at most 100, e.g. 10, not 150"):
        config.load(hosts).profile("lab")
    # What labvm.autostop.apply_setting sends, as autostop.sh passes it on to `autostop.py configure`.
    home = tmp_path / "home"
    env = {
        "HOME": str(home),
        "PATH": "/usr/bin:/bin",
        "LABVM_AUTOSTOP_IDLE": "600",
        "LABVM_AUTOSTOP_LOAD": "0.5",
        "LABVM_AUTOSTOP_GPU": "25.0",
        "LABVM_PORT": "8888",
        "LABVM_AUTOSTOP_SET_BY": "hosts.yml",
    }
    subprocess.run(["python3", str(SCRIPTS / "autostop.py"), "configure"], env=env, check=True, capture_output=True)
    assert json.loads((home / ".labvm" / "autostop.json").read_text())["gpu_percent"] == 25.0


NO_SERVER = {
    "port": 8888,
    "server": None,
    "other": None,
    "port_busy": False,
    "autostop": None,
    "mem_total": 4 << 30,
    "mem_available": 1 << 30,
    "disk_total": 10 << 30,
    "disk_free": 5 << 30,
    "load": 0.1,
}


@pytest.mark.parametrize(
    "gpus, words",
    [
        ("all of them", "gpus: 'all of them' is not a short list"),
        ([{"index": 0}], "gpus[].name, gpus[].util, gpus[].used_mib, gpus[].total_mib missing"),
        ([{"index": 0, "name": "T4", "util": 150, "used_mib": 1, "total_mib": 2}], "gpus[].util: 150"),
        ([{"index": -1, "name": "T4", "util": 1, "used_mib": 1, "total_mib": 2}], "gpus[].index: -1"),
        ([{"index": 0, "name": 7, "util": 1, "used_mib": 1, "total_mib": 2}], "gpus[].name: 7 is not a text"),
        ([{"index": 0, "name": "T4", "util": 1, "used_mib": True, "total_mib": 2}], "gpus[].used_mib: true"),
    ],
)
def test_a_bad_gpus_field_is_one_line(gpus, words):
    from labvm import notebook
    from labvm.errors import LabvmError

    with pytest.raises(LabvmError) as raised:
        notebook.notebook_status(json.dumps({**NO_SERVER, "gpus": gpus}), "vm (lab@10.0.0.1:22)", "vm")
    assert words in str(raised.value) and len(str(raised.value).splitlines()) == 1


def test_a_gpus_field_left_out_reads_as_no_gpu():
    from labvm import notebook

    assert notebook.notebook_status(json.dumps(NO_SERVER), "vm", "vm")["gpus"] == []
