"""The asleep page as a user meets it, end to end: an aws profile on moto whose "VM" is a network
namespace with its own sshd (tests/netns.py).  The VM goes dark while EC2 says it is stopped (its
link drops every packet from moto's stop until moto's start), so nothing reaches it but a real
start.  Debian's chromium holds JupyterLab open on the URL `inv up` printed; `inv down`; the same
tab, loaded again, shows the asleep page; a background fetch of /api/kernels gets 503 and the VM
stays stopped; Start is a real StartInstances in moto, then `up`'s steps shown on the page; the tab
moves into JupyterLab at the same local address and a cell runs.
"""

import re
import urllib.request

import pytest

from aws_world import REGION, aws_env, labvm_instances
from chromium import chromium_tab, kernel_status, open_new_notebook, playwright_or_skip, run_cell
from netns import namespaced_lab
from realhost import ssh_profile, url_of

STARTED_WITHIN = 300_000  # ms: moto's start, then `up` over SSH (keys, env checked, Jupyter)
IDLE_KERNEL = re.compile(r"\(ipykernel\) \| Idle$")


@pytest.fixture
def powered(monkeypatch):
    """moto's instances power their namespace: stop drops its link, start brings it back.
    (EC2 "stop" shuts the instance down: nothing answers on its address until it starts,
    https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/Stop_Start.html; moto changes only the state.)"""
    from moto.ec2.models.instances import Instance

    machines = []
    stop, start = Instance.stop, Instance.start

    def stopping(instance):
        for host in machines:
            host.drop_all()
        return stop(instance)

    def starting(instance):
        for host in machines:
            host.restore()
        return start(instance)

    monkeypatch.setattr(Instance, "stop", stopping)
    monkeypatch.setattr(Instance, "start", starting)
    return machines


@pytest.fixture
def cloud_lab(moto, ec2, user, sshd, tmp_path_factory, powered):
    """(lab, url): profile aws after `inv up`, its VM a namespace reached at its own address."""
    sync_api = playwright_or_skip()
    with namespaced_lab(user, sshd, tmp_path_factory, ["asleep"]) as (lab, [host]):
        powered.append(host)
        lab.extra_env.update(aws_env(moto), LABVM_OWNER="asleep")
        ami = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        # nohup: a tmux server of another test would run Jupyter outside the namespace.
        lab.write_hosts(
            {
                "aws": ssh_profile(
                    user,
                    host,
                    address=host.address,
                    provider="aws",
                    region=REGION,
                    instance_type="t3.small",
                    image=ami,
                    ssh_cidr="127.0.0.1/32",
                    autostop="off",
                    notebook={"multiplexer": "nohup"},
                )
            }
        )
        user.forget_jupyterlab_layout()
        try:
            yield sync_api, lab, url_of(lab.inv("up", "--host", "aws", "--no-browser").output)
        finally:
            lab.inv("tunnel", "--host", "aws", "--stop", check=False)
            lab.inv("terminate", "--host", "aws", "--yes", "--force", "--no-sync", check=False)
            urllib.request.urlopen(urllib.request.Request(f"{moto}/moto-api/reset", method="POST"), timeout=10)


def test_down_then_start_on_the_same_url_brings_a_lab_that_runs_a_cell(cloud_lab, ec2):
    sync_api, lab, url = cloud_lab
    expect = sync_api.expect
    base = url.split("/lab?token=")[0]
    with chromium_tab(sync_api) as tab:
        tab.goto(url)
        expect(tab.locator('.jp-LauncherCard[data-category="Notebook"]').first).to_be_visible(timeout=60_000)

        down = lab.inv("down", "--host", "aws").output
        assert f"tunnel: asleep; {base}/ says why and has a Start button" in down
        [stopped] = labvm_instances(ec2, "stopped")

        tab.reload()  # the open tab, loaded again (or the bookmark)
        expect(tab.get_by_role("heading")).to_have_text("The VM of profile aws is asleep", timeout=10_000)
        expect(tab.locator("body")).to_contain_text("stopped by inv down")
        expect(tab.locator("body")).to_contain_text("t3.small")
        # A background tab's request starts nothing.
        assert tab.evaluate("async () => (await fetch('/api/kernels')).status") == 503
        assert [i["InstanceId"] for i in labvm_instances(ec2, "stopped")] == [stopped["InstanceId"]]

        tab.get_by_role("button", name="Start").click()
        expect(tab.locator("#log li").first).to_be_visible(timeout=30_000)  # `up`'s steps, live
        tab.wait_for_url(re.compile(re.escape(f"{base}/lab?token=") + r"\w+"), timeout=STARTED_WITHIN)
        assert [i["InstanceId"] for i in labvm_instances(ec2, "running")] == [stopped["InstanceId"]]
        assert tab.url != url  # Jupyter's new token (docs/security.md); the same local address

        notebook = open_new_notebook(tab)
        expect(kernel_status(tab)).to_have_text(IDLE_KERNEL, timeout=60_000)
        run_cell(tab, notebook, "6 * 7")
        expect(notebook.locator(".jp-CodeCell").nth(0).locator(".jp-OutputArea-output")).to_have_text(
            "42", timeout=30_000
        )
    assert lab.tunnel_record("aws")["state"] == "up"
