"""Provider-level GCE tests on the fake: Google's face with a user's ADC, or a loopback emulator."""

import json

import pytest

from fake_gce import FakeGce


@pytest.fixture
def fake(monkeypatch, tmp_path):
    """The fake as Google itself (https://*.googleapis.com through it), with the ADC of a user as
    `gcloud auth application-default login` writes them: labvm sends their access token, the fake checks it."""
    # google.auth must never probe a metadata server off this machine.
    monkeypatch.setenv("NO_GCE_CHECK", "true")
    monkeypatch.setenv("GCE_METADATA_HOST", "127.0.0.1:9")
    monkeypatch.setenv("GCE_METADATA_IP", "127.0.0.1:9")
    monkeypatch.setenv("LABVM_OWNER", "hedy")
    monkeypatch.delenv("LABVM_GCE_ENDPOINT", raising=False)
    with FakeGce() as server:
        for name, value in server.google_environment().items():
            monkeypatch.setenv(name, value)
        # A valid access token already in: google-auth would refresh a user's token at Google otherwise.
        adc = tmp_path / "adc.json"
        adc.write_text(
            json.dumps(
                {
                    "type": "authorized_user",
                    "client_id": "id.apps.googleusercontent.com",
                    "client_secret": "secret",
                    "refresh_token": "1//refresh",
                    "token": "ya29.hedy",
                    "expiry": "2999-01-01T00:00:00Z",
                }
            )
        )
        server.tokens["ya29.hedy"] = "hedy@example.org"
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(adc))
        yield server


@pytest.fixture
def emulator(fake, monkeypatch):
    """The same fake as a loopback emulator named by LABVM_GCE_ENDPOINT (the user's ADC still present)."""
    for name in fake.google_environment():
        monkeypatch.delenv(name)
    monkeypatch.setenv("LABVM_GCE_ENDPOINT", fake.endpoint)
    return fake
