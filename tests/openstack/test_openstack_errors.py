"""What OpenStack's SDKs meet instead of the cloud's answer, as a user sees it from `inv`: one line with the
next step, never a traceback."""

import pytest

from fake_openstack import FakeOpenStack
from openstack_world import KEY, SETTINGS, provider
from web_page_server import web_page

pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # openstacksdk's own notices


@pytest.fixture
def cloud(lab):
    with FakeOpenStack() as server:
        lab.extra_env.update(LABVM_OWNER="hedy")
        lab.extra_env.pop("OS_CLOUD", None)
        lab.write_hosts({"cades": SETTINGS})
        yield server


def clouds_yaml(lab, text: str) -> None:
    clouds = lab.directory / "clouds.yaml"
    clouds.write_text(text)
    lab.extra_env["OS_CLIENT_CONFIG_FILE"] = str(clouds)


@pytest.mark.parametrize("status", [200, 500])
def test_a_web_page_instead_of_keystone_is_one_line(lab, cloud, status):
    """A captive portal (200) or a proxy's error page (500) where Keystone should answer: keystoneauth calls
    the first "Invalid response from server" (keystoneauth1/session.py, a body that is no JSON) and raises the
    second as InternalServerError, neither of which openstacksdk turns into its own exceptions."""
    with web_page(status) as page:
        clouds_yaml(lab, cloud.clouds_yaml("cades").replace(cloud.auth_url, f"{page}/identity/v3"))
        result = lab.inv("stop", "--host", "cades", check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"labvm: OpenStack's answer from {page}/identity/v3 was not OpenStack's: a web page (a proxy or a Wi-Fi "
        f"login page between this laptop and OpenStack?); open any web page to log in, check HTTPS_PROXY, and "
        f"try again"
    )


@pytest.mark.parametrize("status", [200, 500])
def test_a_web_page_instead_of_nova_is_one_line(lab, cloud, status):
    """Keystone answers and Nova's address is behind a proxy that answers a web page.  openstacksdk fails on a
    200 page in a list with requests' JSONDecodeError (openstack/resource.py Resource.list: response.json()),
    and reads one as an empty resource elsewhere (get_limits: no limits at all); a 500 page is an HttpException
    whose message is the page.  compute_endpoint_override is openstacksdk's per-service endpoint setting
    (openstack/config/cloud_region.py get_endpoint: `<service>_endpoint_override`)."""
    with web_page(status) as page:
        clouds_yaml(lab, cloud.clouds_yaml("cades", extra=f"    compute_endpoint_override: {page}/compute/v2.1\n"))
        result = lab.inv("stop", "--host", "cades", check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(
        f"labvm: OpenStack's answer from {page}/compute/v2.1"
    ) and result.stderr.strip().splitlines()[-1].endswith(
        "was not OpenStack's: a web page (a proxy or a Wi-Fi login page between this laptop and OpenStack?); "
        "open any web page to log in, check HTTPS_PROXY, and try again"
    )


def test_a_worker_in_error_names_the_worker_s_remedy_not_the_head_s(fake, place):
    """Nova put a worker in ERROR (fake_openstack's fail_next_boot: "No valid host", as the scheduler says it):
    `up --replace` replaces the head; `inv cluster` is what deletes a worker in ERROR and makes it again."""
    from labvm.errors import LabvmError

    cades = provider(place)
    cades.create(public_key=KEY)
    fake.fail_next_boot = "No valid host was found. There are not enough hosts available."
    with pytest.raises(LabvmError) as raised:
        cades.create_workers([1], "", "", KEY)
    message = str(raised.value)
    assert "went ERROR: No valid host was found" in message and "--replace" not in message
    assert "`inv cluster --host cades` deletes it and makes it again" in message
