"""Google Compute Engine profiles on google-cloud-compute (imported only here: it takes 1.5 s).

Credentials are Google Application Default Credentials only.  The instance carries the
labels labvm-profile and labvm-owner and is found by them; its name, its firewall rule and its
static address carry both too, so lab members sharing a project and a hosts.yml never meet.
Long operations are waited through our own operation clients, built with the same options
(ExtendedOperation.result() would poll through a client that ignores a custom endpoint).
LABVM_GCE_ENDPOINT (an emulator) serves Compute and the other Google APIs labvm calls
(OAuth tokeninfo, OS Login, Resource Manager) at one address.
"""

from __future__ import annotations

import difflib
import getpass
import hashlib
import os
import re
import time
from datetime import datetime, timezone

from ..config import Profile
from ..errors import LabvmError
from .cloud import CloudProvider
from .base import Check, Image, Instance, Resource, ask, caller_cidr, in_parallel, parse_time, partial_cluster

STATES = {"RUNNING": "running", "TERMINATED": "stopped", "STOPPING": "stopping", "SUSPENDED": "stopped"}


SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]  # Compute, OS Login, Resource Manager
LOGIN_METADATA = "labvm-login"  # the POSIX user OS Login gave, kept on the instance so find() knows it


def _label(value: str) -> str:
    """Lowercase letters, digits and dashes ("Hedy.Lamarr" -> "hedy-lamarr"), for names and labels."""
    return re.sub(r"[^a-z0-9]+", "-", value.lower()).strip("-") or "x"


def _name(*parts: str, limit: int = 63) -> str:
    """An RFC 1035 resource name, [a-z]([-a-z0-9]{0,61}[a-z0-9])?, of these parts; a longer one is cut
    and ends with a hash of the whole, so two long names stay apart."""
    full = "-".join(_label(part) for part in parts)
    if len(full) <= limit:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:6]
    return f"{full[:limit - 7].rstrip('-')}-{digest}"


class GceProvider(CloudProvider):
    cloud = "gce"
    image_ready = "READY"

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
        self.owner = _name(self.owner)  # a label value: 63 at most
        self.labels = {"labvm-profile": _name(profile.name), "labvm-owner": self.owner}
        self.name = _name("labvm", profile.name, self.owner, limit=63 - len("-ssh"))  # the rule is NAME-ssh
        self.rule = f"{self.name}-ssh"  # also the network tag of the head and its workers
        self.cluster_rule = _name(self.name, "dask")
        # A Compute endpoint other than Google's (an emulator): ADC if there are any, else none.
        endpoint = self.endpoint = os.environ.get("LABVM_GCE_ENDPOINT")
        try:
            credentials, _ = google.auth.default(scopes=SCOPES)
        except DefaultCredentialsError:
            if not endpoint:
                raise LabvmError(
                    "no Google Application Default Credentials; run `gcloud auth application-default login` "
                    "or set GOOGLE_APPLICATION_CREDENTIALS to a service account key file"
                ) from None
            credentials = AnonymousCredentials()
        self.credentials = credentials
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
        self.projects = compute_v1.ProjectsClient(**options)
        self.zones = compute_v1.ZonesClient(**options)
        self.regions = compute_v1.RegionsClient(**options)
        self.networks = compute_v1.NetworksClient(**options)
        self.subnetworks = compute_v1.SubnetworksClient(**options)
        self.disks = compute_v1.DisksClient(**options)

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
                        data.machine_type.rsplit("/", 1)[-1], login, interface.network_i_p if interface else "")

    def _get(self, name: str):
        return self._call(self.instances.get, project=self.project, zone=self.zone, instance=name)

    # -- the provider interface --------------------------------------------------------

    def find(self) -> Instance | None:
        request = self.compute.ListInstancesRequest(project=self.project, zone=self.zone, filter=self._filter())
        found = [i for i in self._call(self.instances.list, request=request)
                 if i.labels.get("labvm-role") != "worker"]  # workers carry the profile's labels too
        if not found:
            return None
        return self._instance(max(found, key=lambda i: i.creation_timestamp))

    def create(self, image: str | None = None, public_key: str = "") -> Instance:
        compute = self.compute
        machine_type = self._check_type(str(self.settings.get("machine_type") or "e2-small"))
        source_image = self._source_image(image)
        network, subnetwork = self._interface()
        metadata = self._login_metadata(public_key)
        self.admit_caller()
        access = compute.AccessConfig(name="External NAT", type_="ONE_TO_ONE_NAT")
        if self.settings.get("static_ip"):
            access.nat_i_p = self._static_ip()
        instance = compute.Instance(
            name=self.name,
            machine_type=f"zones/{self.zone}/machineTypes/{machine_type}",
            labels=self.labels,
            tags=compute.Tags(items=[self.rule]),
            disks=[compute.AttachedDisk(boot=True, auto_delete=True, initialize_params=compute.AttachedDiskInitializeParams(
                source_image=source_image, disk_size_gb=int(self.settings.get("disk_size") or 10)))],
            network_interfaces=[compute.NetworkInterface(access_configs=[access], **{
                k: v for k, v in (("network", network), ("subnetwork", subnetwork)) if v})],
            metadata=compute.Metadata(items=[compute.Items(key=k, value=v) for k, v in metadata.items()]),
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
        worker = self._get(inst.id).labels.get("labvm-role") == "worker"
        operation = self._call(self.instances.delete, project=self.project, zone=self.zone, instance=inst.id)
        self._wait(operation, "zone", f"{inst.id} is deleted")
        if worker:  # the static IP and the rules are the head's
            return
        if not keep_ip and self.settings.get("static_ip"):
            operation = self._call(self.addresses.delete, project=self.project, region=self.region, address=self.name)
            self._wait(operation, "region", f"static IP {self.name} is released")
            print(f"gce: released static IP {self.name}")
        self._delete_rules()

    def _delete_rules(self) -> None:
        """The SSH rule, and the cluster's rule where there is one."""
        from google.api_core import exceptions

        for rule in (self.rule, self.cluster_rule):
            try:
                operation = self.firewalls.delete(project=self.project, firewall=rule)
            except exceptions.NotFound:
                continue
            except exceptions.GoogleAPICallError:
                operation = self._call(self.firewalls.delete, project=self.project, firewall=rule)
            self._wait(operation, "global", f"firewall rule {rule} is deleted")

    def snapshot(self, inst: Instance, name: str, *options) -> Image:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        image_name = _name(name, self.profile.name, self.owner, stamp)
        boot = next(d for d in self._get(inst.id).disks if d.boot)
        request = self.compute.InsertImageRequest(
            project=self.project, force_create=True,
            image_resource=self.compute.Image(name=image_name, source_disk=boot.source, labels=self.labels,
                                              family=_name("labvm", self.profile.name, self.owner)),
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

    # -- a Dask cluster's workers ---------------------------------------------------------

    def _worker_labels(self, index: int) -> dict[str, str]:
        return {**self.labels, "labvm-cluster": _name(self.profile.name), "labvm-role": "worker", "labvm-index": str(index)}

    def _workers_data(self) -> list:
        wanted = {"labvm-cluster": _name(self.profile.name), "labvm-owner": self.owner, "labvm-role": "worker"}
        request = self.compute.ListInstancesRequest(project=self.project, zone=self.zone, filter=" AND ".join(
            f'(labels.{k} = "{v}")' for k, v in wanted.items()))
        return sorted(self._call(self.instances.list, request=request), key=lambda i: int(i.labels["labvm-index"]))

    def workers(self) -> list[Instance]:
        """This profile's worker instances of this owner, by index; each name ends with -w<index>."""
        return [self._instance(i) for i in self._workers_data()]

    def create_workers(self, indexes: list[int], image: str, size: str, public_key: str) -> list[Instance]:
        """Workers of these indexes, inserted in parallel beside the head: its network, tags (so its SSH
        rule), login metadata and scheduling.  image "" is the head's boot image (its boot disk's
        sourceImage), size "" its machine type.  One that fails leaves the others made."""

        found = self.find()
        if found is None:
            raise LabvmError(f"profile {self.profile.name!r} has no VM to make workers beside; `inv up --host {self.profile.name}`")
        head = self._get(found.id)
        machine_type = self._check_type(size, key=self._where("cluster.worker_size")) if size else found.size
        source_image = self._source_image(image) if image else self._head_image(head)
        compute = self.compute

        def insert(index: int) -> str:
            name = _name("labvm", self.profile.name, self.owner, f"w{index}")
            nic = head.network_interfaces[0]
            instance = compute.Instance(
                name=name, machine_type=f"zones/{self.zone}/machineTypes/{machine_type}",
                labels=self._worker_labels(index), tags=compute.Tags(items=list(head.tags.items)),
                disks=[compute.AttachedDisk(boot=True, auto_delete=True, initialize_params=compute.AttachedDiskInitializeParams(
                    source_image=source_image, disk_size_gb=int(self.settings.get("disk_size") or 10)))],
                network_interfaces=[compute.NetworkInterface(
                    network=nic.network, subnetwork=nic.subnetwork,
                    access_configs=[compute.AccessConfig(name="External NAT", type_="ONE_TO_ONE_NAT")])],
                metadata=compute.Metadata(items=[compute.Items(key=i.key, value=i.value) for i in head.metadata.items]),
                scheduling=head.scheduling,
            )
            operation = self._call(self.instances.insert, project=self.project, zone=self.zone, instance_resource=instance)
            self._wait(operation, "zone", f"{name} is created")
            return name

        print(f"gce: creating {len(indexes)} worker(s) {machine_type} in {self.zone}", flush=True)
        made, failed = in_parallel(insert, indexes)
        if failed:
            raise LabvmError(partial_cluster(self.profile.name, made, failed))
        names = set(made.values())
        return [self._instance(i) for i in self._workers_data() if i.name in names]

    def cluster_image(self) -> str:
        """The image new workers are made from (the head's boot image, by name as images() lists it)."""
        found = self.find()
        return self._head_image(self._get(found.id)).rsplit("/", 1)[-1] if found else ""

    def _head_image(self, head) -> str:
        boot = next(d for d in head.disks if d.boot)
        disk = self._call(self.disks.get, project=self.project, zone=self.zone, disk=boot.source.rsplit("/", 1)[-1])
        return disk.source_image

    def allow_cluster(self) -> None:
        """Every TCP port between the instances tagged as the head and its workers are, and only between
        them: source tags = target tags, no source range (an ingress rule with no source at all would
        admit 0.0.0.0/0)."""
        from google.api_core import exceptions

        try:
            self.firewalls.get(project=self.project, firewall=self.cluster_rule)
            return
        except exceptions.NotFound:
            pass
        rule = self.compute.Firewall(
            name=self.cluster_rule, network=self._network_link(), direction="INGRESS",
            source_tags=[self.rule], target_tags=[self.rule],
            allowed=[self.compute.Allowed(I_p_protocol="tcp")], description="labvm: Dask between the cluster's machines")
        self._wait(self._call(self.firewalls.insert, project=self.project, firewall_resource=rule), "global",
                   f"firewall rule {self.cluster_rule} lets the cluster's machines reach each other (Dask)")

    def terminate_workers(self) -> None:
        """Every worker of this profile and owner; with the head gone too, the rules go."""
        workers = self._workers_data()
        operations = [self._call(self.instances.delete, project=self.project, zone=self.zone, instance=w.name)
                      for w in workers]
        for worker, operation in zip(workers, operations):
            self._wait(operation, "zone", f"worker {worker.name} is deleted")
        if workers and self.find() is None:
            self._delete_rules()

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
            profile = data.labels.get("labvm-profile", "")
            if data.labels.get("labvm-role") == "worker":  # named as the session names a worker: gce+w2
                profile = f"{data.labels.get('labvm-cluster', profile)}+w{data.labels.get('labvm-index', '?')}"
            return Resource("gce", self.project, kind, data.name, profile,
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

    def _cidr(self) -> str:
        return str(self.settings.get("ssh_cidr") or caller_cidr(self._where("ssh_cidr")))

    def _rule(self):
        from google.api_core import exceptions

        try:
            return self.firewalls.get(project=self.project, firewall=self.rule)
        except exceptions.NotFound:
            return None
        except exceptions.GoogleAPICallError:
            return self._call(self.firewalls.get, project=self.project, firewall=self.rule)

    def admit_caller(self) -> None:
        """The rule NAME-ssh opens port 22 of this owner's VM (its target tag) to this machine only;
        from another network it is changed, and that is said."""
        cidr = self._cidr()
        rule = self._rule()
        if rule is None:
            network = self._network_link()
            made = self.compute.Firewall(
                name=self.rule, network=network, direction="INGRESS", target_tags=[self.rule],
                source_ranges=[cidr], allowed=[self.compute.Allowed(I_p_protocol="tcp", ports=["22"])],
            )
            self._wait(self._call(self.firewalls.insert, project=self.project, firewall_resource=made), "global",
                       f"firewall rule {self.rule} opens port 22 to {cidr}")
        elif list(rule.source_ranges) != [cidr]:
            was = ", ".join(rule.source_ranges) or "nothing"
            change = self.compute.Firewall(source_ranges=[cidr])
            self._wait(self._call(self.firewalls.patch, project=self.project, firewall=self.rule, firewall_resource=change),
                       "global", f"firewall rule {self.rule} admits {cidr}")
            print(f"ssh rule: now admits {cidr} (was {was})", flush=True)

    # -- network ------------------------------------------------------------------------

    def _interface(self) -> tuple[str, str]:
        """(network, subnetwork) for the VM's interface, checked to exist: many projects have no
        `default` network (organisation policy compute.skipDefaultNetworkCreation, or deleted)."""
        from google.api_core import exceptions

        subnetwork = str(self.settings.get("subnetwork") or "")
        if subnetwork:
            name = subnetwork.rsplit("/", 1)[-1]
            try:
                found = self.subnetworks.get(project=self.project, region=self.region, subnetwork=name)
            except exceptions.NotFound:
                raise LabvmError(
                    f"{self._where('subnetwork')}: no subnetwork {name!r} in {self.region} of project {self.project}; "
                    f"gcloud compute networks subnets list --project {self.project} --regions {self.region}"
                ) from None
            except exceptions.GoogleAPICallError:
                found = self._call(self.subnetworks.get, project=self.project, region=self.region, subnetwork=name)
            return "", found.self_link
        network = self._get_network()
        if not network.auto_create_subnetworks:
            raise LabvmError(
                f"{self._where('subnetwork')}: network {network.name!r} has custom subnets, so the VM needs one named; "
                f"gcloud compute networks subnets list --project {self.project} --network {network.name} --regions {self.region}"
            )
        return network.self_link, ""

    def _get_network(self):
        from google.api_core import exceptions

        name = str(self.settings.get("network") or "default").rsplit("/", 1)[-1]
        try:
            return self.networks.get(project=self.project, network=name)
        except exceptions.NotFound:
            how = "is not set, and the project has no `default` network" if not self.settings.get("network") \
                else f"{name!r} is not a network of project {self.project}"
            raise LabvmError(
                f"{self._where('network')} {how}; set it to one of gcloud compute networks list --project {self.project}"
            ) from None
        except exceptions.GoogleAPICallError:
            return self._call(self.networks.get, project=self.project, network=name)

    def _network_link(self) -> str:
        """The network of the VM's interface (a firewall rule applies to one network)."""
        network, subnetwork = self._interface()
        if network:
            return network
        name = subnetwork.rsplit("/", 1)[-1]
        return self._call(self.subnetworks.get, project=self.project, region=self.region, subnetwork=name).network

    # -- OS Login -----------------------------------------------------------------------

    def _google(self, url: str) -> str:
        """A Google API URL, or the emulator's when LABVM_GCE_ENDPOINT is set."""
        return re.sub(r"^https://[a-z0-9.]+\.googleapis\.com", self.endpoint, url) if self.endpoint else url

    def _session(self):
        from google.auth.transport.requests import AuthorizedSession

        return AuthorizedSession(self.credentials)

    def _project_oslogin(self) -> bool:
        """Project metadata enable-oslogin=TRUE: instances follow it unless their own metadata says otherwise."""
        project = self._call(self.projects.get, project=self.project)
        return any(item.key == "enable-oslogin" and item.value.upper() == "TRUE"
                   for item in project.common_instance_metadata.items)

    def _oslogin_enforced(self) -> bool | None:
        """Organisation policy constraints/compute.requireOsLogin (then an instance's enable-oslogin=FALSE
        is ignored), read with Resource Manager's getEffectiveOrgPolicy; None when it cannot be read
        (no orgpolicy.policy.get permission). LABVM_GCE_OSLOGIN=required says so for every profile."""
        if os.environ.get("LABVM_GCE_OSLOGIN", "").lower() == "required":
            return True
        url = self._google(f"https://cloudresourcemanager.googleapis.com/v1/projects/{self.project}:getEffectiveOrgPolicy")
        try:
            answer = self._session().post(url, json={"constraint": "constraints/compute.requireOsLogin"}, timeout=30)
        except OSError:
            return None
        if answer.status_code != 200:
            return None
        return bool(answer.json().get("booleanPolicy", {}).get("enforced"))

    def _login_mode(self) -> tuple[str, str]:
        """(mode, detail): "metadata" (ssh-keys work), "opt-out" (project OS Login, the VM opts out) or
        "oslogin" (enforced: labvm's key goes to the account's OS Login profile)."""
        enforced = self._oslogin_enforced()
        if enforced:
            return "oslogin", "enforced by organisation policy (constraints/compute.requireOsLogin)"
        unknown = "" if enforced is not None else \
            " (organisation policy not readable: if SSH is refused, set LABVM_GCE_OSLOGIN=required)"
        if self._project_oslogin():
            return "opt-out", f"on in project {self.project}: labvm's VMs opt out with enable-oslogin=FALSE{unknown}"
        return "metadata", f"off: labvm's key goes in the VM's ssh-keys metadata{unknown}"

    def _login_metadata(self, public_key: str) -> dict[str, str]:
        user = self.profile.user or getpass.getuser()
        metadata = {"ssh-keys": f"{user}:{public_key}"}
        mode, _ = self._login_mode()
        if mode == "opt-out":
            # An instance's own enable-oslogin overrides the project's
            # (https://cloud.google.com/compute/docs/oslogin/set-up-oslogin).
            metadata["enable-oslogin"] = "FALSE"
            print(f"gce: project {self.project} turns OS Login on; this VM opts out (enable-oslogin=FALSE) "
                  "so labvm's key works", flush=True)
        elif mode == "oslogin":
            account = self._account()
            metadata[LOGIN_METADATA] = login = self._import_key(account, public_key)
            print(f"gce: OS Login is enforced here; labvm's key is in {account}'s login profile, "
                  f"logging in as {login}", flush=True)
        return metadata

    def _account(self) -> str:
        """The Google account of the credentials: a service account names itself; a user's token
        tells through tokeninfo (ADC from gcloud carries the userinfo.email scope)."""
        from google.auth.transport.requests import Request

        email = getattr(self.credentials, "service_account_email", "")
        if email and "@" in email:
            return email
        try:
            if not self.credentials.valid:
                self.credentials.refresh(Request())
            answer = self._session().get(self._google("https://oauth2.googleapis.com/tokeninfo"),
                                         params={"access_token": self.credentials.token}, timeout=30)
            email = answer.json().get("email", "") if answer.status_code == 200 else ""
        except Exception:  # anonymous or unrefreshable credentials: no account to name
            email = ""
        if not email:
            raise LabvmError(
                "OS Login is enforced in project {self.project} and labvm cannot tell your Google account; "
                "run `gcloud auth application-default login` (or use a service account key)".format(self=self)
            )
        return email

    def _import_key(self, account: str, public_key: str) -> str:
        """POST users/{account}:importSshPublicKey; the login is the POSIX username it answers
        (https://cloud.google.com/compute/docs/oslogin/rest/v1/users/importSshPublicKey)."""
        url = self._google(f"https://oslogin.googleapis.com/v1/users/{account}:importSshPublicKey")
        answer = self._session().post(url, params={"projectId": self.project}, json={"key": public_key}, timeout=30)
        if answer.status_code != 200:
            message = answer.json().get("error", {}).get("message", answer.text) if answer.content else answer.reason
            raise LabvmError(f"OS Login would not take labvm's key for {account}: {message}; "
                             "ask for roles/compute.osLogin on the project")
        accounts = answer.json()["loginProfile"]["posixAccounts"]
        return next((a for a in accounts if a.get("primary")), accounts[0])["username"]

    def _static_ip(self) -> str:
        from google.api_core import exceptions

        try:
            return self.addresses.get(project=self.project, region=self.region, address=self.name).address
        except exceptions.NotFound:
            resource = self.compute.Address(name=self.name, labels=self.labels)
            self._wait(self._call(self.addresses.insert, project=self.project, region=self.region, address_resource=resource),
                       "region", f"static IP {self.name} is reserved")
            return self._call(self.addresses.get, project=self.project, region=self.region, address=self.name).address

    # -- inv check ------------------------------------------------------------------------

    def preflight(self, public_key: str) -> list[Check]:
        """Read-only: can this project take one more VM of this profile, and can labvm log in to it?"""
        checks = [Check("credentials", True, self._who())]
        project = ask("project", self._project_ready)
        checks.append(project)
        if not project.ok:
            return checks
        checks += [
            ask("zone", self._zone_ready),
            ask("network", self._network_ready),
            ask("image", lambda: self._source_image(None).rsplit("/", 1)[-1]),
            ask("size", self._size_offered),
            ask("quota", self._headroom),
            ask("ssh rule", self._rule_state),
            ask("os login", lambda: self._login_mode()[1]),
        ]
        return checks

    def _who(self) -> str:
        from google.auth.credentials import AnonymousCredentials

        if isinstance(self.credentials, AnonymousCredentials):
            return f"none: anonymous to the emulator at {self.endpoint}"
        try:
            return f"Application Default Credentials of {self._account()}"
        except LabvmError:
            return "Application Default Credentials (account not readable)"

    def _project_ready(self) -> str:
        from google.api_core import exceptions

        try:
            self.projects.get(project=self.project)
        except exceptions.NotFound:
            raise LabvmError(f"{self._where('project')}: no project {self.project!r} these credentials can see; "
                             "gcloud projects list") from None
        except exceptions.GoogleAPICallError:
            self._call(self.projects.get, project=self.project)
        return f"{self.project} answers, Compute Engine API enabled"

    def _zone_ready(self) -> str:
        from google.api_core import exceptions

        try:
            zone = self.zones.get(project=self.project, zone=self.zone)
        except exceptions.NotFound:
            raise LabvmError(f"{self._where('zone')}: {self.zone!r} is not a zone; "
                             f"gcloud compute zones list --project {self.project}") from None
        except exceptions.GoogleAPICallError:
            zone = self._call(self.zones.get, project=self.project, zone=self.zone)
        if zone.status != "UP":
            raise LabvmError(f"{self._where('zone')}: {self.zone} is {zone.status}; pick another zone of {self.region}")
        return f"{self.zone} is UP"

    def _network_ready(self) -> str:
        network, subnetwork = self._interface()
        return f"network {network.rsplit('/', 1)[-1]}" if network else f"subnetwork {subnetwork.rsplit('/', 1)[-1]}"

    def _size_offered(self) -> str:
        machine_type = self._check_type(str(self.settings.get("machine_type") or "e2-small"))
        return f"{machine_type} is offered in {self.zone}"

    def _headroom(self) -> str:
        machine_type = str(self.settings.get("machine_type") or "e2-small")
        cpus = self._call(self.machine_types.get, project=self.project, zone=self.zone, machine_type=machine_type).guest_cpus
        quotas = {q.metric: q for q in self._call(self.regions.get, project=self.project, region=self.region).quotas}
        needs = {"CPUS": cpus, "IN_USE_ADDRESSES": 1}
        if self.settings.get("static_ip") and not self._reserved():
            needs["STATIC_ADDRESSES"] = 1
        short = [f"{metric} {quotas[metric].usage:g}/{quotas[metric].limit:g} leaves no room for {need} more"
                 for metric, need in needs.items() if metric in quotas and quotas[metric].usage + need > quotas[metric].limit]
        if short:
            raise LabvmError(f"quota in {self.region}: {'; '.join(short)}; ask for more in IAM & Admin > Quotas, "
                             f"or use a smaller {self._where('machine_type')}")
        return ", ".join(f"{m} {quotas[m].usage:g}/{quotas[m].limit:g}" for m in needs if m in quotas)

    def _reserved(self) -> bool:
        from google.api_core import exceptions

        try:
            self.addresses.get(project=self.project, region=self.region, address=self.name)
            return True
        except exceptions.NotFound:
            return False

    def _rule_state(self) -> str:
        cidr = self._cidr()
        rule = self._rule()
        if rule is None:
            return f"{self.rule} would be made for {cidr}"
        if list(rule.source_ranges) == [cidr]:
            return f"{self.rule} admits {cidr}"
        return f"{self.rule} admits {', '.join(rule.source_ranges)}; `up` changes it to {cidr}"
