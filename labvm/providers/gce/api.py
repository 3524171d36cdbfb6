"""The GCE provider's core: clients, credentials, the error-translating call, operation waits, names and labels.

Every other module of the package is a part of GceProvider that builds on this one.
"""

from __future__ import annotations

import dataclasses
import os
import time

from ...config import Profile, sdk_files_problem
from ...errors import LabvmError
from ..base import IMAGE_AVAILABLE, IMAGE_FAILED, IMAGE_PENDING, Image, Instance, from_cloud, parse_time
from ..cloud import GCE_LABEL, GCE_NAME, CloudProvider, cloud_name

# A SUSPENDED instance bills only its disks and saved memory, as a stopped one; start() resumes it.
STATES = {"RUNNING": "running", "TERMINATED": "stopped", "STOPPING": "stopping", "SUSPENDING": "stopping",
          "SUSPENDED": "stopped"}
# https://cloud.google.com/compute/docs/reference/rest/v1/images (status): PENDING, READY, FAILED, DELETING.
IMAGE_STATES = {"READY": IMAGE_AVAILABLE, "PENDING": IMAGE_PENDING, "FAILED": IMAGE_FAILED, "DELETING": IMAGE_FAILED}

# Rate quotas refill each minute; the answer is 403 rateLimitExceeded, or 429 RESOURCE_EXHAUSTED
# (https://cloud.google.com/compute/api-quota: "wait a minute then try your request again").  The waits
# add up to a little over that minute.  google-cloud-compute retries no mutation by itself.
RATE_LIMIT_WAITS = (1, 2, 4, 8, 16, 32)
OPERATION_TIMEOUT = 30 * 60

SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]  # Compute, OS Login, Resource Manager
LOGIN_METADATA = "labvm-login"  # the POSIX user OS Login gave, kept on the instance so find() knows it
# The instance's name leaves room for its firewall rule's NAME-ssh within GCE's 63 characters.
INSTANCE_NAME = dataclasses.replace(GCE_NAME, limit=GCE_NAME.limit - len("-ssh"))
# labvm's label values keep to the name characters (no "_"): the labels of VMs made before stay the same,
# so they are still found.
LABEL_VALUE = dataclasses.replace(GCE_LABEL, allowed=GCE_NAME.allowed)


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
        raise LabvmError(f"LABVM_GCE_ENDPOINT={endpoint!r} is not a loopback address (127.0.0.0/8, ::1, localhost): "
                         "labvm talks to a Compute emulator on this machine only; unset it to use Google's API")
    return endpoint


class GceApi(CloudProvider):
    cloud = "gce"

    def __init__(self, profile: Profile):
        import google.auth
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials
        from google.auth.exceptions import DefaultCredentialsError
        from google.cloud import compute_v1

        self.compute = compute_v1
        super().__init__(profile)
        self.project = str(self.settings.get("project") or "")
        self.zone = str(self.settings.get("zone") or "")
        if not self.project or not self.zone:
            raise LabvmError(f"{self._where('project')} and zone: both are required (gcloud projects list; gcloud compute zones list)")
        self.region = self.zone.rsplit("-", 1)[0]
        self.owner = cloud_name(LABEL_VALUE, self.owner)
        self.labels = {"labvm-profile": cloud_name(LABEL_VALUE, profile.name), "labvm-owner": self.owner}
        self.name = cloud_name(INSTANCE_NAME, "labvm", profile.name, self.owner)
        self.rule = f"{self.name}-ssh"  # also the network tag of the head and its workers
        self.cluster_rule = cloud_name(GCE_NAME, self.name, "dask")
        problem = sdk_files_problem(self.cloud)  # google-auth reads no other file from the current folder
        if problem:
            raise LabvmError(problem)
        self.endpoint = loopback_endpoint(os.environ.get("LABVM_GCE_ENDPOINT", ""))
        if self.endpoint:  # an emulator on this machine: the user's Google token never goes to it
            credentials = AnonymousCredentials()
        else:
            try:
                credentials, _ = google.auth.default(scopes=SCOPES)
            except DefaultCredentialsError:
                raise LabvmError(
                    "no Google Application Default Credentials; run `gcloud auth application-default login` "
                    "or set GOOGLE_APPLICATION_CREDENTIALS to a service account key file"
                ) from None
        self.credentials = credentials
        options = dict(credentials=credentials, transport="rest",
                       client_options=ClientOptions(api_endpoint=self.endpoint) if self.endpoint else None)
        self.instances = compute_v1.InstancesClient(**options)
        self.zone_operations = compute_v1.ZoneOperationsClient(**options)
        self.region_operations = compute_v1.RegionOperationsClient(**options)
        self.global_operations = compute_v1.GlobalOperationsClient(**options)
        self.addresses = compute_v1.AddressesClient(**options)
        self.firewalls = compute_v1.FirewallsClient(**options)
        self.images_client = compute_v1.ImagesClient(**options)
        self.machine_types = compute_v1.MachineTypesClient(**options)
        self.projects = compute_v1.ProjectsClient(**options)
        self.zones = compute_v1.ZonesClient(**options)
        self.regions = compute_v1.RegionsClient(**options)
        self.networks = compute_v1.NetworksClient(**options)
        self.subnetworks = compute_v1.SubnetworksClient(**options)
        self.disks = compute_v1.DisksClient(**options)

    def call(self, action, *args, **kwargs):
        """One API call; a rate limit is waited out (bounded), any other error is one line with the next step."""
        from google.api_core import exceptions
        from google.auth.exceptions import RefreshError, TransportError

        for wait in (*RATE_LIMIT_WAITS, None):
            try:
                return action(*args, **kwargs)
            except RefreshError:
                raise LabvmError("Google refused to renew your credentials; run `gcloud auth application-default login` "
                                 "(or check GOOGLE_APPLICATION_CREDENTIALS)") from None
            except (OSError, TransportError):  # requests' ConnectionError and timeouts are OSErrors
                raise LabvmError(f"GCE did not answer at {self.endpoint or 'compute.googleapis.com'}; check the network "
                                 "(a VPN or proxy?) and try again") from None
            except exceptions.GoogleAPICallError as e:
                if not self._rate_limited(e):
                    raise LabvmError(self._explain(e)) from None
                if wait is None:
                    raise LabvmError(f"GCE rate limit: project {self.project} sent too many requests for "
                                     f"{sum(RATE_LIMIT_WAITS)}s; wait a minute and run it again") from None
                print(f"gce: rate limit reached, trying again in {wait}s", flush=True)
                time.sleep(wait)

    @staticmethod
    def _rate_limited(error) -> bool:
        from google.api_core import exceptions

        reasons = {e.get("reason") for e in (error.errors or []) if isinstance(e, dict)}
        return isinstance(error, exceptions.TooManyRequests) or "rateLimitExceeded" in reasons

    def _explain(self, error) -> str:
        reasons = {e.get("reason") for e in (error.errors or []) if isinstance(e, dict)}
        message = from_cloud(str(error.message).split(": ", 1)[-1])
        if "accessNotConfigured" in reasons or "has not been used in project" in message:
            return (f"the Compute Engine API is not enabled in project {self.project}; "
                    f"gcloud services enable compute.googleapis.com --project {self.project}")
        if "quotaExceeded" in reasons or "Quota" in message:
            return f"GCE quota: {message}; ask for more in IAM & Admin > Quotas, or use a smaller machine_type"
        return f"GCE: {message}"

    def _wait(self, operation, scope: str, what: str) -> None:
        """Until the operation is DONE (the API's wait call blocks up to two minutes each); its errors in one line.
        A planned operation (None) is printed by wait_until, never asked for."""
        waiters = {"zone": (self.zone_operations.wait, {"zone": self.zone}),
                   "region": (self.region_operations.wait, {"region": self.region}),
                   "global": (self.global_operations.wait, {})}
        waiter, where = waiters[scope]

        def done() -> bool:
            nonlocal operation
            operation = self.call(waiter, project=self.project, operation=operation.name, **where)
            if operation.status != self.compute.Operation.Status.DONE:
                return False
            self._raise_errors(operation, what)
            return True

        self.wait_until(what, done, OPERATION_TIMEOUT, poll=0,
                        late=f"GCE may still finish it: gcloud compute operations list --project {self.project}")

    def _raise_errors(self, operation, what: str) -> None:
        errors = list(operation.error.errors) if operation.error else []
        codes = {e.code for e in errors}
        if codes & {"ZONE_RESOURCE_POOL_EXHAUSTED", "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS"}:
            raise LabvmError(
                f"zone {self.zone} has no capacity for this machine type now; try later or set "
                f"{self._where('zone')} to another zone of {self.region}"
            )
        if errors:
            raise LabvmError(f"GCE: {what} failed: {from_cloud('; '.join(e.message for e in errors))}")

    def _change(self, what: str, action, scope: str, waited: str, **kwargs) -> None:
        """One change through the --plan gate, then waited for until `waited` holds."""
        self._wait(self.mutate(what, action, project=self.project, **kwargs), scope, waited)

    def _get_or_none(self, action, **kwargs):
        """A read of one resource: None where it does not exist (other errors as call() says)."""
        from google.api_core import exceptions

        def get():
            try:
                return action(**kwargs)
            except exceptions.NotFound:
                return None

        return self.call(get)

    def _filter(self) -> str:
        """Several terms must each be in parentheses: the bare `a = "x" AND b = "y"` is a 400
        (https://cloud.google.com/compute/docs/reference/rest/v1/instances/list, `filter`)."""
        return " AND ".join(f'(labels.{k} = "{v}")' for k, v in self.labels.items())

    def _instance(self, data) -> Instance:
        interface = data.network_interfaces[0] if data.network_interfaces else None
        address = ""
        if interface:
            configs = list(interface.access_configs)
            address = (configs[0].nat_i_p if configs else "") or interface.network_i_p
        login = next((item.value for item in data.metadata.items if item.key == LOGIN_METADATA), "")
        return Instance(data.name, data.name, STATES.get(data.status, data.status.lower()), address,
                        data.machine_type.rsplit("/", 1)[-1], login, interface.network_i_p if interface else "",
                        parse_time(data.last_start_timestamp or None))

    def _get(self, name: str):
        return self.call(self.instances.get, project=self.project, zone=self.zone, instance=name)

    def _image(self, data) -> Image:
        return Image(data.name, data.name, data.creation_timestamp, IMAGE_STATES.get(data.status, IMAGE_FAILED))
