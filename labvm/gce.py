"""Google Compute Engine profiles on google-cloud-compute (imported only here: it takes 1.5 s).

Credentials are Google Application Default Credentials only.  The instance carries the
labels labvm-profile and labvm-owner and is found by them.  Long operations are waited
through our own operation clients, built with the same options (ExtendedOperation.result()
would poll through a client that ignores a custom endpoint).
"""

from __future__ import annotations

import difflib
import getpass
import os
import re
import time
from datetime import datetime, timezone

from .config import Profile
from .errors import LabvmError
from .providers import Image, Instance, Resource, caller_cidr, parse_time

STATES = {"RUNNING": "running", "TERMINATED": "stopped", "STOPPING": "stopping", "SUSPENDED": "stopped"}


def _label(value: str) -> str:
    """GCE labels and names: lowercase letters, digits and dashes."""
    return re.sub(r"[^a-z0-9-]", "-", value.lower()).strip("-")[:62] or "x"


class GceProvider:
    owns_machine = True
    image_ready = "READY"

    def __init__(self, profile: Profile):
        import google.auth
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials
        from google.auth.exceptions import DefaultCredentialsError
        from google.cloud import compute_v1

        self.compute = compute_v1
        self.profile = profile
        self.settings = profile.cloud_settings
        self.project = str(self.settings.get("project") or "")
        self.zone = str(self.settings.get("zone") or "")
        if not self.project or not self.zone:
            raise LabvmError(f"{self._where('project')} and zone: both are required (gcloud projects list; gcloud compute zones list)")
        self.region = self.zone.rsplit("-", 1)[0]
        self.owner = _label(os.environ.get("LABVM_OWNER") or getpass.getuser())
        self.labels = {"labvm-profile": _label(profile.name), "labvm-owner": self.owner}
        self.name = f"labvm-{_label(profile.name)}"
        self.plan = False
        # A Compute endpoint other than Google's (an emulator): ADC if there are any, else none.
        endpoint = os.environ.get("LABVM_GCE_ENDPOINT")
        try:
            credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/compute"])
        except DefaultCredentialsError:
            if not endpoint:
                raise LabvmError(
                    "no Google Application Default Credentials; run `gcloud auth application-default login` "
                    "or set GOOGLE_APPLICATION_CREDENTIALS to a service account key file"
                ) from None
            credentials = AnonymousCredentials()
        options = dict(credentials=credentials, transport="rest",
                       client_options=ClientOptions(api_endpoint=endpoint) if endpoint else None)
        self.instances = compute_v1.InstancesClient(**options)
        self.zone_operations = compute_v1.ZoneOperationsClient(**options)
        self.region_operations = compute_v1.RegionOperationsClient(**options)
        self.global_operations = compute_v1.GlobalOperationsClient(**options)
        self.addresses = compute_v1.AddressesClient(**options)
        self.firewalls = compute_v1.FirewallsClient(**options)
        self.images_client = compute_v1.ImagesClient(**options)
        self.machine_types = compute_v1.MachineTypesClient(**options)

    def _where(self, key: str) -> str:
        return f"{self.profile.source}: profiles.{self.profile.name}.{key}"

    def _call(self, action, *args, **kwargs):
        from google.api_core import exceptions

        try:
            return action(*args, **kwargs)
        except exceptions.GoogleAPICallError as e:
            reasons = {error.get("reason") for error in (e.errors or []) if isinstance(error, dict)}
            message = str(e.message).split(": ", 1)[-1] if ": " in str(e.message) else str(e.message)
            if "accessNotConfigured" in reasons or "has not been used in project" in message:
                raise LabvmError(
                    f"the Compute Engine API is not enabled in project {self.project}; "
                    f"gcloud services enable compute.googleapis.com --project {self.project}"
                ) from None
            if "quotaExceeded" in reasons or "Quota" in message:
                raise LabvmError(f"GCE quota: {message}; ask for more in IAM & Admin > Quotas, or use a smaller machine_type") from None
            raise LabvmError(f"GCE: {message}") from None

    def _wait(self, operation, scope: str, what: str) -> None:
        print(f"gce: waiting until {what} ...", flush=True)
        start = time.monotonic()
        while True:
            if scope == "zone":
                operation = self._call(self.zone_operations.wait, project=self.project, zone=self.zone, operation=operation.name)
            elif scope == "region":
                operation = self._call(self.region_operations.wait, project=self.project, region=self.region, operation=operation.name)
            else:
                operation = self._call(self.global_operations.wait, project=self.project, operation=operation.name)
            if operation.status == self.compute.Operation.Status.DONE:
                break
        errors = list(operation.error.errors) if operation.error else []
        if errors:
            codes = {e.code for e in errors}
            if "ZONE_RESOURCE_POOL_EXHAUSTED" in codes or "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS" in codes:
                raise LabvmError(
                    f"zone {self.zone} has no capacity for this machine type now; try later or set "
                    f"{self._where('zone')} to another zone of {self.region}"
                )
            raise LabvmError(f"GCE: {what} failed: {'; '.join(e.message for e in errors)}")
        print(f"gce: {what} ({time.monotonic() - start:.0f}s)", flush=True)

    def _filter(self) -> str:
        return " AND ".join(f'labels.{k} = "{v}"' for k, v in self.labels.items())

    def _instance(self, data) -> Instance:
        interface = data.network_interfaces[0] if data.network_interfaces else None
        address = ""
        if interface:
            configs = list(interface.access_configs)
            address = (configs[0].nat_i_p if configs else "") or interface.network_i_p
        return Instance(data.name, data.name, STATES.get(data.status, data.status.lower()), address,
                        data.machine_type.rsplit("/", 1)[-1])

    def _get(self, name: str):
        return self._call(self.instances.get, project=self.project, zone=self.zone, instance=name)

    # -- the provider interface --------------------------------------------------------

    def find(self) -> Instance | None:
        request = self.compute.ListInstancesRequest(project=self.project, zone=self.zone, filter=self._filter())
        found = list(self._call(self.instances.list, request=request))
        if not found:
            return None
        return self._instance(max(found, key=lambda i: i.creation_timestamp))

    def create(self, image: str | None = None, public_key: str = "") -> Instance:
        compute = self.compute
        machine_type = self._check_type(str(self.settings.get("machine_type") or "e2-small"))
        source_image = self._source_image(image)
        tag = self._firewall()
        access = compute.AccessConfig(name="External NAT", type_="ONE_TO_ONE_NAT")
        if self.settings.get("static_ip"):
            access.nat_i_p = self._static_ip()
        user = self.profile.user or getpass.getuser()
        instance = compute.Instance(
            name=self.name,
            machine_type=f"zones/{self.zone}/machineTypes/{machine_type}",
            labels=self.labels,
            tags=compute.Tags(items=[tag]),
            disks=[compute.AttachedDisk(boot=True, auto_delete=True, initialize_params=compute.AttachedDiskInitializeParams(
                source_image=source_image, disk_size_gb=int(self.settings.get("disk_size") or 10)))],
            network_interfaces=[compute.NetworkInterface(network="global/networks/default", access_configs=[access])],
            metadata=compute.Metadata(items=[compute.Items(key="ssh-keys", value=f"{user}:{public_key}")]),
        )
        if self.settings.get("spot"):
            instance.scheduling = compute.Scheduling(provisioning_model="SPOT", instance_termination_action="STOP")
        print(f"gce: creating {machine_type} in {self.zone}", flush=True)
        operation = self._call(self.instances.insert, project=self.project, zone=self.zone, instance_resource=instance)
        self._wait(operation, "zone", f"{self.name} is created")
        return self._instance(self._get(self.name))

    def start(self, inst: Instance) -> Instance:
        if inst.state != "running":
            operation = self._call(self.instances.start, project=self.project, zone=self.zone, instance=inst.id)
            self._wait(operation, "zone", f"{inst.id} is RUNNING")
        return self._instance(self._get(inst.id))

    def stop(self, inst: Instance) -> Instance:
        if inst.state == "running":
            operation = self._call(self.instances.stop, project=self.project, zone=self.zone, instance=inst.id)
            self._wait(operation, "zone", f"{inst.id} is stopped")
        return self._instance(self._get(inst.id))

    def terminate(self, inst: Instance, keep_ip: bool = False) -> None:
        operation = self._call(self.instances.delete, project=self.project, zone=self.zone, instance=inst.id)
        self._wait(operation, "zone", f"{inst.id} is deleted")
        if not keep_ip and self.settings.get("static_ip"):
            operation = self._call(self.addresses.delete, project=self.project, region=self.region, address=self.name)
            self._wait(operation, "region", f"static IP {self.name} is released")
            print(f"gce: released static IP {self.name}")
        operation = self._call(self.firewalls.delete, project=self.project, firewall=f"{self.name}-ssh")
        self._wait(operation, "global", f"firewall rule {self.name}-ssh is deleted")

    def snapshot(self, inst: Instance, name: str, *options) -> Image:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        image_name = _label(f"{name}-{self.profile.name}-{stamp}")
        boot = next(d for d in self._get(inst.id).disks if d.boot)
        request = self.compute.InsertImageRequest(
            project=self.project, force_create=True,
            image_resource=self.compute.Image(name=image_name, source_disk=boot.source, labels=self.labels,
                                              family=f"labvm-{_label(self.profile.name)}"),
        )
        self._wait(self._call(self.images_client.insert, request=request), "global", f"image {image_name} is ready")
        image = self._call(self.images_client.get, project=self.project, image=image_name)
        return Image(image.name, image.name, image.creation_timestamp, image.status)

    def images(self) -> list[Image]:
        request = self.compute.ListImagesRequest(project=self.project, filter=self._filter())
        found = self._call(self.images_client.list, request=request)
        return sorted((Image(i.name, i.name, i.creation_timestamp, i.status) for i in found), key=lambda i: i.created)

    def delete_image(self, image: Image) -> None:
        operation = self._call(self.images_client.delete, project=self.project, image=image.id)
        self._wait(operation, "global", f"image {image.id} is deleted")

    def resize(self, inst: Instance, size: str) -> Instance:
        self._check_type(size, key="--size")
        if inst.size == size:
            print(f"gce: {inst.id} is already {size}")
            return inst
        stopped = self.stop(inst)  # in place: same disk, same address, no cloning
        request = self.compute.InstancesSetMachineTypeRequest(machine_type=f"zones/{self.zone}/machineTypes/{size}")
        operation = self._call(self.instances.set_machine_type, project=self.project, zone=self.zone, instance=inst.id,
                               instances_set_machine_type_request_resource=request)
        self._wait(operation, "zone", f"{inst.id} is {size}")
        return self.start(stopped)

    def last_start(self, inst: Instance) -> datetime:
        data = self._get(inst.id)
        return datetime.fromisoformat(data.last_start_timestamp or data.creation_timestamp)

    # -- inv audit -----------------------------------------------------------------------

    @property
    def scope(self) -> str:
        return self.project

    def inventory(self) -> list[Resource]:
        """Every instance, static address and image labvm labelled in the project, in every zone and
        region, whatever its profile or owner.  Compute Engine publishes no price to read here."""
        labelled = "labels.labvm-profile:*"
        where = f"--project {self.project}"

        def resource(kind: str, data, state: str, since: str, delete: str, **extra) -> Resource:
            return Resource("gce", self.project, kind, data.name, data.labels.get("labvm-profile", ""),
                            data.labels.get("labvm-owner", ""), state, parse_time(since), f"{delete} {where}", **extra)

        found = []
        request = self.compute.AggregatedListInstancesRequest(project=self.project, filter=labelled)
        for _, scoped in self._call(lambda: list(self.instances.aggregated_list(request=request))):
            for data in scoped.instances:
                found.append(resource(
                    "instance", data, STATES.get(data.status, data.status.lower()),
                    data.last_start_timestamp or data.creation_timestamp,
                    f"gcloud compute instances delete {data.name} --zone {data.zone.rsplit('/', 1)[-1]}",
                    type=data.machine_type.rsplit("/", 1)[-1]))
        request = self.compute.AggregatedListAddressesRequest(project=self.project, filter=labelled)
        for _, scoped in self._call(lambda: list(self.addresses.aggregated_list(request=request))):
            for data in scoped.addresses:
                found.append(resource(
                    "address", data, {"RESERVED": "unattached", "IN_USE": "attached"}.get(data.status, data.status.lower()),
                    data.creation_timestamp,
                    f"gcloud compute addresses delete {data.name} --region {data.region.rsplit('/', 1)[-1]}",
                    address=data.address))
        request = self.compute.ListImagesRequest(project=self.project, filter=labelled)
        for data in self._call(lambda: list(self.images_client.list(request=request))):
            found.append(resource("image", data, data.status, data.creation_timestamp,
                                  f"gcloud compute images delete {data.name}",
                                  size_gb=data.archive_size_bytes / 1024**3 if data.archive_size_bytes else None))
        return found

    # -- what create needs ------------------------------------------------------------

    def _check_type(self, machine_type: str, key: str = "") -> str:
        from google.api_core import exceptions

        try:
            self.machine_types.get(project=self.project, zone=self.zone, machine_type=machine_type)
        except exceptions.NotFound:
            names = [t.name for t in self._call(self.machine_types.list, project=self.project, zone=self.zone)]
            close = difflib.get_close_matches(machine_type, names, n=3, cutoff=0.5)
            hint = f"; closest: {', '.join(close)}" if close else ""
            raise LabvmError(
                f"{key or self._where('machine_type')}: {machine_type!r} is not a machine type in {self.zone}{hint}"
            ) from None
        except exceptions.GoogleAPICallError:
            self._call(self.machine_types.get, project=self.project, zone=self.zone, machine_type=machine_type)
        return machine_type

    def _source_image(self, image: str | None) -> str:
        if image:
            return f"projects/{self.project}/global/images/{image}"
        family = str(self.settings.get("image_family") or "debian-12")
        project = str(self.settings.get("image_project") or "debian-cloud")
        return self._call(self.images_client.get_from_family, project=project, family=family).self_link

    def _firewall(self) -> str:
        from google.api_core import exceptions

        name = f"{self.name}-ssh"
        try:
            self.firewalls.get(project=self.project, firewall=name)
        except exceptions.NotFound:
            cidr = str(self.settings.get("ssh_cidr") or caller_cidr(self._where("ssh_cidr")))
            rule = self.compute.Firewall(
                name=name, network="global/networks/default", direction="INGRESS", target_tags=[name],
                source_ranges=[cidr], allowed=[self.compute.Allowed(I_p_protocol="tcp", ports=["22"])],
            )
            self._wait(self._call(self.firewalls.insert, project=self.project, firewall_resource=rule), "global",
                       f"firewall rule {name} opens port 22 to {cidr}")
        return name

    def _static_ip(self) -> str:
        from google.api_core import exceptions

        try:
            return self.addresses.get(project=self.project, region=self.region, address=self.name).address
        except exceptions.NotFound:
            resource = self.compute.Address(name=self.name, labels=self.labels)
            self._wait(self._call(self.addresses.insert, project=self.project, region=self.region, address_resource=resource),
                       "region", f"static IP {self.name} is reserved")
            return self._call(self.addresses.get, project=self.project, region=self.region, address=self.name).address
