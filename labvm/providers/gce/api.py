"""The GCE client of one profile: credentials, the Compute clients, the error-translating call (rate limits
waited out), operation waits, and an instance in labvm's words.

Long operations are waited through our own operation clients, built with the same options
(ExtendedOperation.result() would poll through a client that ignores a custom endpoint).  LABVM_GCE_ENDPOINT
(an emulator on this machine, anonymous) serves Compute and the other Google APIs labvm calls (OAuth
tokeninfo, OS Login, Resource Manager, Cloud Billing) at one address.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from typing import Any, TypeVar

from ...config import Profile
from ...errors import LabvmError
from ..base import IMAGE_AVAILABLE, IMAGE_FAILED, IMAGE_PENDING, Image, Instance, from_cloud, parse_time
from ..cloud import CloudApi
from ..credentials import NoCredentials
from ..registry import sdk_files_problem
from ..web_page import is_web_page, web_page
from .settings import GceSettings

T = TypeVar("T")
# A SUSPENDED instance bills only its disks and saved memory, as a stopped one; start() resumes it.
STATES = {
    "RUNNING": "running",
    "TERMINATED": "stopped",
    "STOPPING": "stopping",
    "SUSPENDING": "stopping",
    "SUSPENDED": "stopped",
}
# https://cloud.google.com/compute/docs/reference/rest/v1/images (status): PENDING, READY, FAILED, DELETING.
IMAGE_STATES = {"READY": IMAGE_AVAILABLE, "PENDING": IMAGE_PENDING, "FAILED": IMAGE_FAILED, "DELETING": IMAGE_FAILED}

# Rate quotas refill each minute; the answer is 403 rateLimitExceeded, or 429 RESOURCE_EXHAUSTED
# (https://cloud.google.com/compute/api-quota: "wait a minute then try your request again").  The waits
# add up to a little over that minute.  google-cloud-compute retries no mutation by itself.
RATE_LIMIT_WAITS = (1, 2, 4, 8, 16, 32)
OPERATION_TIMEOUT = 30 * 60

SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]  # Compute, OS Login, Resource Manager
LOGIN_METADATA = "labvm-login"  # the POSIX user OS Login gave, kept on the instance so find() knows it


def loopback_endpoint(endpoint: str) -> str:
    """LABVM_GCE_ENDPOINT as given when it names this machine (127.0.0.0/8, ::1, localhost), "" when unset;
    any other address is refused: a shared .env must not send labvm's calls elsewhere."""
    import ipaddress
    from urllib.parse import urlsplit

    if not endpoint:
        return ""
    host = urlsplit(endpoint).hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise LabvmError(
            f"LABVM_GCE_ENDPOINT={endpoint!r} is not a loopback address (127.0.0.0/8, ::1, localhost): "
            "labvm talks to a Compute emulator on this machine only; unset it to use Google's API"
        )
    return endpoint


def no_credentials() -> str:
    """The one line for no Google credentials, for every verb (`check`, `up`, `--plan`): where google-auth looks."""
    return (
        "no Google Application Default Credentials; run `gcloud auth application-default login` "
        "or set GOOGLE_APPLICATION_CREDENTIALS to a service account key file"
    )


def instance_of(data: Any) -> Instance:
    """Compute's instance in labvm's words."""
    interface = data.network_interfaces[0] if data.network_interfaces else None
    address = ""
    if interface:
        configs = list(interface.access_configs)
        address = (configs[0].nat_i_p if configs else "") or interface.network_i_p
    login = next((item.value for item in data.metadata.items if item.key == LOGIN_METADATA), "")
    return Instance(
        data.name,
        data.name,
        STATES.get(data.status, data.status.lower()),
        address,
        data.machine_type.rsplit("/", 1)[-1],
        login,
        interface.network_i_p if interface else "",
        parse_time(data.last_start_timestamp or None),
        zone=data.zone.rsplit("/", 1)[-1],
    )


def image_of(data: Any) -> Image:
    """Compute's image in labvm's words."""
    return Image(data.name, data.name, data.creation_timestamp, IMAGE_STATES.get(data.status, IMAGE_FAILED))


class GceApi(CloudApi):
    """google-cloud-compute's clients for the profile's project (imported only here, when a gce profile is
    used: it takes 1.5 s), with Application Default Credentials only."""

    def __init__(self, profile: Profile, settings: GceSettings):
        import google.auth
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials
        from google.auth.exceptions import DefaultCredentialsError
        from google.cloud import compute_v1

        super().__init__("gce")
        self.compute = compute_v1
        self.profile = profile
        self.project, self.zone, self.region = settings.project, settings.zone, settings.region
        if not self.project or not self.zone:
            raise LabvmError(
                f"{profile.key('project')} and zone: both are required (gcloud projects list; "
                f"gcloud compute zones list)"
            )
        problem = sdk_files_problem(self.cloud)  # google-auth reads no other file from the current folder
        if problem:
            raise LabvmError(problem)
        self.endpoint = loopback_endpoint(os.environ.get("LABVM_GCE_ENDPOINT", ""))
        credentials: Any
        if self.endpoint:  # an emulator on this machine: the user's Google token never goes to it
            credentials = AnonymousCredentials()
        else:
            try:
                credentials, _ = google.auth.default(scopes=SCOPES)
            except DefaultCredentialsError:
                raise NoCredentials(no_credentials(), "gce") from None
        self.credentials = credentials
        options: dict[str, Any] = dict(
            credentials=credentials,
            transport="rest",
            client_options=ClientOptions(api_endpoint=self.endpoint) if self.endpoint else None,
        )
        self.instances = compute_v1.InstancesClient(**options)
        self.zone_operations = compute_v1.ZoneOperationsClient(**options)
        self.region_operations = compute_v1.RegionOperationsClient(**options)
        self.global_operations = compute_v1.GlobalOperationsClient(**options)
        self.addresses = compute_v1.AddressesClient(**options)
        self.firewalls = compute_v1.FirewallsClient(**options)
        self.images_client = compute_v1.ImagesClient(**options)
        self.machine_types = compute_v1.MachineTypesClient(**options)
        self.accelerator_types = compute_v1.AcceleratorTypesClient(**options)
        self.projects = compute_v1.ProjectsClient(**options)
        self.zones = compute_v1.ZonesClient(**options)
        self.regions = compute_v1.RegionsClient(**options)
        self.networks = compute_v1.NetworksClient(**options)
        self.subnetworks = compute_v1.SubnetworksClient(**options)
        self.disks = compute_v1.DisksClient(**options)
        self.disk_types = compute_v1.DiskTypesClient(**options)
        self.snapshots = compute_v1.SnapshotsClient(**options)  # the data disk's backups (volumes.py)
        # What a full zone's error adds as the next step (gpus.py: the zones that offer the machine's GPU)
        self.capacity_hint: Callable[[], str] = lambda: ""

    @property
    def scope(self) -> str:
        """The project: what one set of Google credentials sees here."""
        return self.project

    def call(self, action: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """One API call; a rate limit is waited out (bounded), any other error is one line with the next step, a web
        page instead of Google's answer too."""
        from google.api_core import exceptions
        from google.auth.exceptions import RefreshError, TransportError
        from google.protobuf.json_format import ParseError

        not_google = LabvmError(web_page("GCE", f"from {self.endpoint or 'compute.googleapis.com'}"))
        waits = iter(RATE_LIMIT_WAITS)
        while True:
            try:
                return action(*args, **kwargs)
            except ParseError:  # the REST transport parses every answer as JSON: a web page is none
                raise not_google from None
            except ValueError as e:  # the client would not build the request (api_core path_template.transcode)
                if not str(e).startswith("Invalid request."):
                    raise
                raise LabvmError(
                    "GCE: a name in hosts.yml holds a character no Compute resource name has (such as '/'); check "
                    "the profile's zone, machine_type, image_family, network and data.type"
                ) from None
            except RefreshError:
                raise LabvmError(
                    "Google refused to renew your credentials; run `gcloud auth application-default login` "
                    "(or check GOOGLE_APPLICATION_CREDENTIALS)"
                ) from None
            except (OSError, TransportError):  # requests' ConnectionError and timeouts are OSErrors
                raise LabvmError(
                    f"GCE did not answer at {self.endpoint or 'compute.googleapis.com'}; check the network "
                    "(a VPN or proxy?) and try again"
                ) from None
            except exceptions.GoogleAPICallError as e:
                if is_web_page(getattr(e.response, "headers", None)):  # a proxy's error page, not Google's JSON error
                    raise not_google from None
                if not self._rate_limited(e):
                    raise LabvmError(self._explain(e)) from None
                wait = next(waits, None)
                if wait is None:
                    raise LabvmError(
                        f"GCE rate limit: project {self.project} sent too many requests for "
                        f"{sum(RATE_LIMIT_WAITS)}s; wait a minute and run it again"
                    ) from None
                print(f"gce: rate limit reached, trying again in {wait}s", flush=True)
                time.sleep(wait)

    @staticmethod
    def _rate_limited(error: Any) -> bool:
        from google.api_core import exceptions

        reasons = {e.get("reason") for e in (error.errors or []) if isinstance(e, dict)}
        return isinstance(error, exceptions.TooManyRequests) or "rateLimitExceeded" in reasons

    def _explain(self, error: Any) -> str:
        reasons = {e.get("reason") for e in (error.errors or []) if isinstance(e, dict)}
        message = from_cloud(str(error.message).split(": ", 1)[-1])
        if "accessNotConfigured" in reasons or "has not been used in project" in message:
            return (
                f"the Compute Engine API is not enabled in project {self.project}; "
                f"gcloud services enable compute.googleapis.com --project {self.project}"
            )
        if "quotaExceeded" in reasons or "Quota" in message:
            return f"GCE quota: {message}; ask for more in IAM & Admin > Quotas, or use a smaller machine_type"
        return f"GCE: {message}"

    def wait(self, operation: Any, scope: str, what: str) -> None:
        """Until the operation is DONE (the API's wait call blocks up to two minutes each); its errors in one line.
        A planned operation (None) is printed by wait_until, never asked for."""
        # A zone operation is asked of its own zone: a data disk may live in another zone of the region.
        zone = operation.zone.rsplit("/", 1)[-1] if operation is not None and operation.zone else self.zone
        waiters = {
            "zone": (self.zone_operations.wait, {"zone": zone}),
            "region": (self.region_operations.wait, {"region": self.region}),
            "global": (self.global_operations.wait, {}),
        }
        waiter, where = waiters[scope]

        def done() -> bool:
            nonlocal operation
            operation = self.call(waiter, project=self.project, operation=operation.name, **where)
            if operation.status != self.compute.Operation.Status.DONE:
                return False
            self._raise_errors(operation, what)
            return True

        self.wait_until(
            what,
            done,
            OPERATION_TIMEOUT,
            poll=0,
            late=f"GCE may still finish it: gcloud compute operations list --project {self.project}",
        )

    def _raise_errors(self, operation: Any, what: str) -> None:
        errors = list(operation.error.errors) if operation.error else []
        codes = {e.code for e in errors}
        if codes & {"ZONE_RESOURCE_POOL_EXHAUSTED", "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS"}:
            try:
                hint = self.capacity_hint()
            except LabvmError:  # the error stays the one GCE gave, without the zones
                hint = ""
            raise LabvmError(
                f"zone {self.zone} has no capacity for this machine type now; try later or set "
                f"{self.profile.key('zone')} to another zone of {self.region}{hint}"
            )
        if errors:
            raise LabvmError(f"GCE: {what} failed: {from_cloud('; '.join(e.message for e in errors))}")

    def change(self, what: str, action: Callable[..., Any], scope: str, waited: str, **kwargs: Any) -> None:
        """One change through the --plan gate, then waited for until `waited` holds."""
        self.wait(self.mutate(what, action, project=self.project, **kwargs), scope, waited)

    def get_or_none(self, action: Callable[..., Any], **kwargs: Any) -> Any:
        """A read of one resource: None where it does not exist (other errors as call() says)."""
        from google.api_core import exceptions

        def get() -> Any:
            try:
                return action(**kwargs)
            except exceptions.NotFound:
                return None

        return self.call(get)

    def get(self, name: str) -> Any:
        """The instance of this name in the profile's zone."""
        return self.call(self.instances.get, project=self.project, zone=self.zone, instance=name)

    def google(self, url: str) -> str:
        """A Google API URL, or the emulator's when LABVM_GCE_ENDPOINT is set."""
        return re.sub(r"^https://[a-z0-9.]+\.googleapis\.com", self.endpoint, url) if self.endpoint else url

    def session(self) -> Any:
        """An HTTP session with the credentials, for Google's APIs without a client here (OS Login, billing)."""
        from google.auth.transport.requests import AuthorizedSession

        return AuthorizedSession(self.credentials)
