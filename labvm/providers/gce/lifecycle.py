"""The head VM's lifecycle: find, create, start (or resume), stop, resize, terminate, and its images."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone

from ...errors import LabvmError
from ..base import IMAGE_PENDING, Image, Instance
from ..cloud import GCE_NAME, cloud_name
from .api import GceApi


class Lifecycle(GceApi):
    def find(self) -> Instance | None:
        request = self.compute.ListInstancesRequest(project=self.project, zone=self.zone, filter=self._filter())
        found = [i for i in self.call(self.instances.list, request=request)
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
            disks=[self._boot_disk(source_image)],
            network_interfaces=[compute.NetworkInterface(access_configs=[access], **{
                k: v for k, v in (("network", network), ("subnetwork", subnetwork)) if v})],
            metadata=compute.Metadata(items=[compute.Items(key=k, value=v) for k, v in metadata.items()]),
        )
        if self.settings.get("spot"):
            instance.scheduling = compute.Scheduling(provisioning_model="SPOT", instance_termination_action="STOP")
        if not self.plan:
            print(f"gce: creating {machine_type} in {self.zone}", flush=True)
        self._change(f"create instance {self.name} ({machine_type}) in {self.zone}", self.instances.insert, "zone",
                     f"{self.name} is created", zone=self.zone, instance_resource=instance)
        if self.plan:
            return self.planned_instance(self.name, machine_type)
        return self._instance(self._get(self.name))

    def _boot_disk(self, source_image: str):
        compute = self.compute
        return compute.AttachedDisk(boot=True, auto_delete=True, initialize_params=compute.AttachedDiskInitializeParams(
            source_image=source_image, disk_size_gb=int(self.settings.get("disk_size") or 10)))

    def _check_type(self, machine_type: str, key: str = "") -> str:
        if self._get_or_none(self.machine_types.get, project=self.project, zone=self.zone,
                             machine_type=machine_type) is None:
            names = [t.name for t in self.call(self.machine_types.list, project=self.project, zone=self.zone)]
            raise self.unknown(key or self._where("machine_type"), "machine type", machine_type, names,
                               f"gcloud compute machine-types list --zones {self.zone}")
        return machine_type

    def _source_image(self, image: str | None) -> str:
        if image:
            return f"projects/{self.project}/global/images/{image}"
        family = str(self.settings.get("image_family") or "debian-12")
        project = str(self.settings.get("image_project") or "debian-cloud")
        return self.call(self.images_client.get_from_family, project=project, family=family).self_link

    def start(self, inst: Instance) -> Instance:
        """A stopped (TERMINATED) instance is started; a SUSPENDED one is resumed, as GCE only allows
        (https://cloud.google.com/compute/docs/reference/rest/v1/instances/resume)."""
        if inst.state == "running":
            return inst
        status = self._get(inst.id).status
        if status == "SUSPENDED":
            self._change(f"resume instance {inst.id}", self.instances.resume, "zone", f"{inst.id} is RUNNING",
                         zone=self.zone, instance=inst.id)
        elif status != "RUNNING":
            self._change(f"start instance {inst.id}", self.instances.start, "zone", f"{inst.id} is RUNNING",
                         zone=self.zone, instance=inst.id)
        if self.plan:
            return dataclasses.replace(inst, state="running")
        return self._instance(self._get(inst.id))

    def stop(self, inst: Instance) -> Instance:
        if inst.state == "running":
            self._change(f"stop instance {inst.id}", self.instances.stop, "zone", f"{inst.id} is stopped",
                         zone=self.zone, instance=inst.id)
        if self.plan:
            return dataclasses.replace(inst, state="stopped")
        return self._instance(self._get(inst.id))

    def _resize_target(self, inst: Instance, size: str) -> str:
        return self._check_type(size, key="--size")

    def _set_size(self, inst: Instance, size: str) -> None:
        request = self.compute.InstancesSetMachineTypeRequest(machine_type=f"zones/{self.zone}/machineTypes/{size}")
        self._change(f"set the machine type of {inst.id} to {size}", self.instances.set_machine_type, "zone",
                     f"{inst.id} is {size}", zone=self.zone, instance=inst.id,
                     instances_set_machine_type_request_resource=request)

    def last_start(self, inst: Instance) -> datetime:
        data = self._get(inst.id)
        return datetime.fromisoformat(data.last_start_timestamp or data.creation_timestamp)

    def terminate(self, inst: Instance, keep_ip: bool = False) -> None:
        worker = self._get(inst.id).labels.get("labvm-role") == "worker"
        self._change(f"delete instance {inst.id} and its boot disk", self.instances.delete, "zone",
                     f"{inst.id} is deleted", zone=self.zone, instance=inst.id)
        if worker:  # the static IP and the rules are the head's
            return
        if not keep_ip and self.settings.get("static_ip"):
            self._change(f"release static IP {self.name}", self.addresses.delete, "region",
                         f"static IP {self.name} is released", region=self.region, address=self.name)
            if not self.plan:
                print(f"gce: released static IP {self.name}")
        self._delete_rules()

    def snapshot(self, inst: Instance, name: str, share: tuple[str, ...] = (), no_reboot: bool = False) -> Image:
        """An image of the boot disk, made while the VM runs (force_create: GCE makes images of a running
        VM's disk without a reboot, so no_reboot changes nothing).  Sharing is not offered here."""
        if share:
            raise LabvmError("--share is for AWS images; on GCE grant roles/compute.imageUser on the project instead")
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        image_name = cloud_name(GCE_NAME, name, self.profile.name, self.owner, stamp)
        boot = next(d for d in self._get(inst.id).disks if d.boot)
        request = self.compute.InsertImageRequest(
            project=self.project, force_create=True,
            image_resource=self.compute.Image(name=image_name, source_disk=boot.source, labels=self.labels,
                                              family=cloud_name(GCE_NAME, "labvm", self.profile.name, self.owner)),
        )
        operation = self.mutate(f"create image {image_name} of {inst.id}'s boot disk", self.images_client.insert,
                                request=request)
        self._wait(operation, "global", f"image {image_name} is ready")
        if self.plan:
            return Image(image_name, image_name, "", IMAGE_PENDING)
        return self._image(self.call(self.images_client.get, project=self.project, image=image_name))

    def images(self) -> list[Image]:
        request = self.compute.ListImagesRequest(project=self.project, filter=self._filter())
        found = self.call(self.images_client.list, request=request)
        return sorted((self._image(i) for i in found), key=lambda i: i.created)

    def delete_image(self, image: Image) -> None:
        self._change(f"delete image {image.id}", self.images_client.delete, "global", f"image {image.id} is deleted",
                     image=image.id)
