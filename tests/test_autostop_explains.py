"""Autostop that explains itself and can be told to wait, on test_autostop's VM (a real
JupyterLab on the sshd fixture, an aws profile on moto, the stop command appending to a file).

`inv autostop --extend` runs `autostop.sh extend` on the VM; the checks run as cron runs them.
Time the test cannot wait for passes by rewriting the moments the VM recorded (when it became
idle, until when it is extended, which boot wrote the state): no test sleeps for time to pass.
"""

import json
import subprocess
import time

import websocket

from test_autostop import Vm, vm, wait_until  # noqa: F401  (vm is a fixture)
from test_aws import moto  # noqa: F401  (a fixture vm needs)


def report(vm: Vm) -> dict:
    """The VM's autostop report, what `inv status` receives as status["autostop"]."""
    result = vm.user.shell("python3 ~/.labvm/scripts/autostop.py status")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def rewrite_state(vm: Vm, **changes) -> None:
    state_file = vm.user.home / ".labvm" / "autostop-state.json"
    state = json.loads(state_file.read_text())
    state.update(changes)
    state_file.write_text(json.dumps(state))  # in place: the file stays the VM user's


def test_extend_keeps_an_idle_vm_up_until_its_time_then_the_check_stops_it(vm):
    vm.lab.inv("autostop", "--host", "aws", "--idle", "10m")
    calls = vm.stop_calls()
    assert "idle 0s of 10m" in vm.check()

    before = time.time()
    extended = vm.lab.inv("autostop", "--host", "aws", "--extend", "3h")
    assert "kept up until" in extended.output
    until = report(vm)["extended_until"]
    assert before + 3 * 3600 - 5 <= until <= time.time() + 3 * 3600

    vm.idle_for(11 * 60)  # nobody uses it for longer than the period: the extension holds
    assert "active: extended until " in vm.check()
    assert vm.stop_calls() == calls
    now = report(vm)
    [reason] = now["reasons"]  # the date too when the extension ends on another day
    assert reason.startswith("extended until ") and reason.endswith(time.strftime("%H:%M UTC", time.gmtime(until)))
    assert now["idle_for"] is None
    assert "in use: extended until" in vm.lab.inv("status", "--host", "aws").output

    rewrite_state(vm, extended_until=int(time.time()) - 1)  # three hours later
    decision = vm.check()
    assert "the extension until" in decision and "is over: idle time counts from now" in decision
    assert "idle 0s of 10m" in decision  # a whole period again from the extension's end
    assert report(vm)["extended_until"] is None
    assert vm.stop_calls() == calls

    vm.idle_for(10 * 60)
    assert "stopping: idle 10m >= 10m" in vm.check()
    assert vm.stop_calls() == calls + 1


def test_extend_off_ends_the_extension_at_once(vm):
    vm.lab.inv("autostop", "--host", "aws", "--idle", "10m")
    vm.lab.inv("autostop", "--host", "aws", "--extend", "2h")
    assert "active: extended until" in vm.check()
    vm.lab.inv("autostop", "--host", "aws", "--extend", "off")
    assert report(vm)["extended_until"] is None
    assert "idle 0s of 10m" in vm.check()
    assert report(vm)["reasons"] == []


def test_the_reasons_name_a_busy_kernel_and_an_ssh_login(vm):
    vm.lab.inv("autostop", "--host", "aws", "--idle", "10m")
    vm.check()
    assert report(vm)["reasons"] == []
    kernel = vm.api("POST", "kernels")
    login = subprocess.Popen(
        ["ssh", "-F", str(vm.lab.ssh_dir / "config"), "-tt", "-o", "BatchMode=yes", "labvm-aws", "sleep 600"],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        run_in_a_closed_tab(vm, kernel["id"], "import time; time.sleep(600)")
        wait_until(lambda: vm.user.processes(f"sshd(-session)?: {vm.user.name}@pts"), "the SSH login")
        vm.check()
        reasons = report(vm)["reasons"]
        assert "1 kernel(s) busy" in reasons
        assert any(reason.startswith(f"interactive SSH: {vm.user.name} on pts/") for reason in reasons)
        status = vm.lab.inv("status", "--host", "aws").output
        assert "in use: " in status and "1 kernel(s) busy" in status and f"{vm.user.name} on pts/" in status
    finally:
        login.kill()
        login.wait()
        vm.api("DELETE", f"kernels/{kernel['id']}")


def test_after_an_autostop_status_says_when_and_after_how_long_idle_even_after_a_restart(vm):
    vm.lab.inv("autostop", "--host", "aws", "--idle", "10m")
    vm.check()
    vm.idle_for(12 * 60)
    assert "stopping: idle 12m >= 10m" in vm.check()
    stopped = report(vm)
    assert abs(stopped["stopped_at"] - time.time()) < 60 and stopped["stopped_after"] == 12 * 60

    rewrite_state(vm, boot_id="the boot before the stop")  # the VM was started again
    vm.lab.inv("up", "--host", "aws")
    restarted = report(vm)
    assert not restarted["stop_requested"]
    assert (restarted["stopped_at"], restarted["stopped_after"]) == (stopped["stopped_at"], 12 * 60)
    assert "idle 0s of 10m" in vm.check()  # a new boot counts again from its start
    at = time.strftime("%Y-%m-%d %H:%M", time.localtime(stopped["stopped_at"]))
    assert f"last stopped this VM {at} after 12m idle" in vm.lab.inv("status", "--host", "aws").output


def run_in_a_closed_tab(vm: Vm, kernel_id: str, code: str) -> None:
    """What a browser does to run a cell, then the tab closes while the cell still runs."""
    ws = websocket.create_connection(
        f"ws://127.0.0.1:{vm.port}/api/kernels/{kernel_id}/channels?token={vm.token()}", timeout=30)
    ws.send(json.dumps({
        "header": {"msg_id": "run-1", "msg_type": "execute_request", "username": "t", "session": "s1",
                   "version": "5.3"},
        "parent_header": {}, "metadata": {}, "channel": "shell",
        "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                    "allow_stdin": False},
    }))
    while True:
        message = json.loads(ws.recv())
        if message.get("msg_type") == "status" and message["content"]["execution_state"] == "busy" \
                and message["parent_header"].get("msg_id") == "run-1":
            break
    ws.close()
    wait_until(lambda: vm.connections_to_jupyter() == 0, "the closed tab's connection to end")
