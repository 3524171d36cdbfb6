"""What google-cloud-compute meets instead of Compute Engine's answer, as a user sees it from `inv`: one line
with the next step, never a traceback."""

import pytest

from web_page_server import web_page

GCE = {"provider": "gce", "project": "proj", "zone": "us-west1-b", "machine_type": "e2-small"}


@pytest.mark.parametrize("status", [200, 500])
def test_a_web_page_instead_of_compute_engine_is_one_line(lab, status):
    """A captive portal (200) or a proxy's error page (500) where Compute Engine should answer.  The REST
    transport parses a 200 answer as JSON (google/cloud/compute_v1/services/*/transports/rest.py:
    json_format.Parse) and raises protobuf's ParseError, no GoogleAPICallError; a 500 page is an
    InternalServerError whose message is the whole page (google/api_core/exceptions.py from_http_response)."""
    with web_page(status) as page:
        lab.extra_env.update(
            LABVM_GCE_ENDPOINT=page,  # anonymous credentials: no token of the user's goes to the page
            LABVM_OWNER="hedy",
            NO_GCE_CHECK="true",  # google.auth never probes a metadata server off this machine
            GCE_METADATA_HOST="127.0.0.1:9",
            GCE_METADATA_IP="127.0.0.1:9",
            CLOUDSDK_CONFIG=str(lab.directory / "gcloud"),
        )
        lab.write_hosts({"gce": GCE})
        result = lab.inv("stop", "--host", "gce", check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"labvm: GCE's answer from {page} was not GCE's: a web page (a proxy or a Wi-Fi login page between this "
        f"laptop and GCE?); open any web page to log in, check HTTPS_PROXY, and try again"
    )


def test_no_google_credentials_is_its_own_kind_with_the_one_line(tmp_path, monkeypatch):
    """Without Application Default Credentials (google.auth.default raises DefaultCredentialsError,
    google/auth/_default.py) the API client raises NoCredentials: `--plan` and `check` can tell "could not
    look" from a refusal, and every verb says the same line (gce/api.py no_credentials)."""
    from gce_world import provider

    from labvm.providers.credentials import NoCredentials
    from labvm.providers.gce.api import no_credentials

    monkeypatch.delenv("LABVM_GCE_ENDPOINT", raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "absent.json"))
    monkeypatch.setenv("NO_GCE_CHECK", "true")
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    with pytest.raises(NoCredentials) as raised:
        provider(tmp_path).find()
    assert str(raised.value) == no_credentials() and raised.value.cloud == "gce"
