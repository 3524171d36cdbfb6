"""A real browser on the kept tunnel: Debian's chromium, headless, driven by Playwright, with a
JupyterLab notebook open while the network is lost for a minute.

"The VM" is a network namespace with its own sshd (tests/netns.py), as in test_keeper; the
browser runs on this side and opens the URL `inv up` printed.  A cell sets x = 41, every packet
is dropped for 60 s, and after the network's return a new cell `x + 1` answers 42 in the same
kernel, in the same page: no reload, no command.  Skipped (with the reason) where chromium or
Playwright cannot be had; Playwright's own browser download is never used.
"""

import json
import re
import time
import urllib.request

import pytest

import netns
from netns import KeptVm, kept_vm
from realhost import Squatter
from chromium import (
    chromium_tab,
    dismiss_connection_dialogs,
    kernel_status,
    open_new_notebook,
    playwright_or_skip,
    run_cell,
)

FREEZE = 60  # seconds of total loss, the fault
# JupyterLab retries a lost kernel websocket after random waits of up to 1, 3, 7, ... 63 s
# (@jupyterlab/services KernelConnection._reconnect): the kernel may take that long to come back.
KERNEL_BACK_WITHIN = 150_000  # ms
IDLE_KERNEL = re.compile(r"\(ipykernel\) \| Idle$")
RECONNECTED_KERNEL = re.compile(r"\(ipykernel\) \| (Unknown|Idle)$")


@pytest.fixture(scope="module")
def sync_api():
    api = playwright_or_skip()
    missing = netns.available()
    if missing:
        pytest.skip(missing)
    return api


@pytest.fixture(scope="module")
def vm(sync_api, user, sshd, tmp_path_factory):
    with kept_vm(user, sshd, tmp_path_factory, "browser") as kept:
        yield kept


@pytest.fixture
def page(sync_api):
    with chromium_tab(sync_api) as tab:
        yield tab


def test_a_notebook_survives_a_minute_without_network_in_the_same_kernel_and_page(vm, page, sync_api, neighbour):
    expect = sync_api.expect
    page.goto(f"{vm.base}/lab?token={vm.token}")
    notebook = open_new_notebook(page)
    expect(kernel_status(page)).to_have_text(IDLE_KERNEL, timeout=60_000)
    run_cell(page, notebook, "x = 41")
    expect(notebook.locator(".jp-CodeCell").nth(0).locator(".jp-InputPrompt")).to_have_text("[1]:", timeout=30_000)
    kernel = the_only_kernel(vm)
    page.evaluate("window.labvmLoadedOnce = true")  # gone if the page were loaded again

    # Another user of the laptop binds the URL's port in a loop meanwhile: were it ever free, the
    # tab's next request (and its token and cookie) would go there, and a service worker the
    # squatter registered would take every later token too.
    with Squatter(neighbour, vm.local_port) as squatter:
        vm.host.drop_all()
        try:
            time.sleep(FREEZE)  # the fault itself: nothing to wait on
        finally:
            vm.host.restore()
        vm.seconds_until_answering(30)  # the keeper's work (test_keeper measures it)
    assert squatter.bound() == [] and squatter.requests() == [], squatter.noted()

    # Reconnected: "Unknown" until a cell runs.  On reconnecting JupyterLab sends only a
    # kernel_info_request, and ignores the status messages of a request type the server lists as
    # untracked (jupyter_server's default list holds kernel_info_request, so that a kernel_info on
    # the control channel never marks a busy kernel idle: autostop relies on that).
    expect(kernel_status(page)).to_have_text(RECONNECTED_KERNEL, timeout=KERNEL_BACK_WITHIN)
    dismiss_connection_dialogs(page)
    run_cell(page, notebook, "x + 1")
    expect(notebook.locator(".jp-CodeCell").nth(1).locator(".jp-OutputArea-output")).to_have_text(
        "42", timeout=KERNEL_BACK_WITHIN
    )
    expect(kernel_status(page)).to_have_text(IDLE_KERNEL, timeout=30_000)
    assert page.evaluate("window.labvmLoadedOnce") is True
    assert the_only_kernel(vm) == kernel
    assert page.evaluate("navigator.serviceWorker.getRegistrations().then((found) => found.length)") == 0


def the_only_kernel(vm: KeptVm) -> str:
    request = urllib.request.Request(f"{vm.base}/api/kernels", headers={"Authorization": f"token {vm.token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        kernels = json.load(response)
    assert len(kernels) == 1, kernels
    return kernels[0]["id"]
