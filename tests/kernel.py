"""A notebook cell run as JupyterLab runs it: a kernel started through Jupyter's REST API, the
code sent over the kernel's websocket (/api/kernels/<id>/channels, Jupyter messaging protocol
5.3), its output collected until the kernel is idle again.

    output = run_cell("http://127.0.0.1:8888", token, "print(1 + 1)", timeout=60)   # "2\\n"

A cell that raises fails the test with the kernel's error.
"""

from __future__ import annotations

import json
import time
import urllib.request
import uuid

import websocket


def run_cell(base_url: str, token: str, code: str, timeout: float = 60) -> str:
    """What `code` printed (stdout and stderr), run in a new kernel that is shut down afterwards."""
    kernel = _api(base_url, token, "POST", "kernels")["id"]
    try:
        channels = f"{base_url.replace('http', 'ws', 1)}/api/kernels/{kernel}/channels?token={token}"
        connection = websocket.create_connection(channels, timeout=timeout)
        try:
            return _execute(connection, code, time.monotonic() + timeout)
        finally:
            connection.close()
    finally:
        _api(base_url, token, "DELETE", f"kernels/{kernel}")


def _execute(connection, code: str, deadline: float) -> str:
    request = str(uuid.uuid4())
    connection.send(
        json.dumps(
            {
                "header": {
                    "msg_id": request,
                    "msg_type": "execute_request",
                    "username": "labvm-test",
                    "session": str(uuid.uuid4()),
                    "version": "5.3",
                },
                "parent_header": {},
                "metadata": {},
                "channel": "shell",
                "content": {
                    "code": code,
                    "silent": False,
                    "store_history": False,
                    "user_expressions": {},
                    "allow_stdin": False,
                },
            }
        )
    )
    output, replied, idle = [], False, False
    # The reply comes on the shell channel and the output on iopub, in no fixed order between
    # them; the kernel's "idle" on iopub follows the cell's last output.
    while not (replied and idle):
        connection.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            message = json.loads(connection.recv())
        except websocket.WebSocketTimeoutException:
            raise AssertionError(f"the cell did not finish in time; output so far: {''.join(output)[-2000:]}") from None
        if message.get("parent_header", {}).get("msg_id") != request:
            continue
        kind, content = message["msg_type"], message["content"]
        if kind == "stream":
            output.append(content["text"])
        elif kind == "error":
            raise AssertionError(f"the cell raised {content['ename']}: {content['evalue']}\n{''.join(output)[-2000:]}")
        elif kind == "execute_reply":
            replied = True
        elif kind == "status" and content["execution_state"] == "idle":
            idle = True
    return "".join(output)


def _api(base_url: str, token: str, method: str, path: str) -> dict:
    request = urllib.request.Request(
        f"{base_url}/api/{path}",
        method=method,
        data=b"{}" if method == "POST" else None,
        headers={"Authorization": f"token {token}"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        body = response.read()
    return json.loads(body) if body else {}
