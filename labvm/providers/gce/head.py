"""The head VM: find, create, start (or resume), stop, resize, terminate."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from ...config import Profile
from ..base import Instance
from ..cloud import Head, planned_instance, unknown
from .api import GceApi, instance_of
from .gpus import DRIVER_METADATA, Gpus
from .images import Images
from .names import GceNames
from .network import Network
from .oslogin import OsLogin
from .settings import GceSettings


class GceHead(Head):
    """The profile's own VM (never a worker: they carry the profile's labels too, and labvm-role)."""

    def __init__(
        self,
        api: GceApi,
        settings: GceSettings,
        names: GceNames,
        network: Network,
        images: Images,
        login: OsLogin,
        gpus: Gpus,
        profile: Profile,
    ):
        super().__init__(api)
        self.api: GceApi = api
        self.settings, self.names, self.network, self.images, self.login = settings, names, network, images, login
        self.gpus = gpus
        self.profile = profile
        self.project, self.zone = api.project, api.zone

    def find(self) -> Instance | None:
        """The newest instance of this profile and owner that is no worker."""
        request = self.api.compute.ListInstancesRequest(
            project=self.project, zone=self.zone, filter=self.names.filter()
        )
        found = [
            i for i in self.api.call(self.api.instances.list, request=request) if i.labels.get("labvm-role") != "worker"
        ]  # workers carry the profile's labels too
        if not found:
            return None
        return instance_of(max(found, key=lambda i: i.creation_timestamp))

    def create(self, image: str | None, public_key: str) -> Instance:
        """Checked first (type, GPUs, image, network), logged in to as OS Login allows, behind the SSH rule, at the
        static IP where asked; a GPU machine stops for host maintenance (a GPU VM cannot live-migrate) and boots the
        Deep Learning VM image, which installs the driver, where the profile names no image."""
        compute = self.api.compute
        machine_type = self.check_type(self.settings.machine_type)
        self.gpus.check(machine_type)
        source_image = self.images.source_image(image)
        network, subnetwork = self.network.interface()
        metadata = self.login.metadata(public_key)
        if not image and self.gpus.driver_image(machine_type):
            metadata.update(DRIVER_METADATA)
        self.network.admit_caller()
        access = compute.AccessConfig(name="External NAT", type_="ONE_TO_ONE_NAT")
        if self.settings.static_ip:
            access.nat_i_p = self.network.static_ip()
        name = self.names.name
        instance = compute.Instance(
            name=name,
            machine_type=f"zones/{self.zone}/machineTypes/{machine_type}",
            labels=self.names.labels,
            tags=compute.Tags(items=[self.names.rule]),
            disks=[self.boot_disk(source_image)],
            network_interfaces=[
                compute.NetworkInterface(
                    access_configs=[access],
                    **{k: v for k, v in (("network", network), ("subnetwork", subnetwork)) if v},
                )
            ],
            metadata=compute.Metadata(items=[compute.Items(key=k, value=v) for k, v in metadata.items()]),
        )
        instance.guest_accelerators = self.gpus.guest_accelerators()
        scheduling: dict[str, str] = {}
        if self.settings.spot:
            scheduling.update(provisioning_model="SPOT", instance_termination_action="STOP")
        if self.gpus.carried(machine_type):  # https://cloud.google.com/compute/docs/gpus/create-vm-with-gpus
            scheduling.update(on_host_maintenance="TERMINATE")
        if scheduling:
            instance.scheduling = compute.Scheduling(**scheduling)
        if not self.api.plan:
            print(f"gce: creating {machine_type} in {self.zone}", flush=True)
        self.api.change(
            f"create instance {name} ({machine_type}) in {self.zone}",
            self.api.instances.insert,
            "zone",
            f"{name} is created",
            zone=self.zone,
            instance_resource=instance,
        )
        if self.api.plan:
            return planned_instance(name, machine_type, self.api.zone)
        return instance_of(self.api.get(name))

    def boot_disk(self, source_image: str) -> Any:
        """A VM's boot disk of the profile's size, made from `source_image`, deleted with the VM."""
        compute = self.api.compute
        return compute.AttachedDisk(
            boot=True,
            auto_delete=True,
            initialize_params=compute.AttachedDiskInitializeParams(
                source_image=source_image, disk_size_gb=self.settings.disk_size
            ),
        )

    def check_type(self, machine_type: str, key: str = "") -> str:
        """The zone has this machine type, else the closest names it has."""
        if (
            self.api.get_or_none(
                self.api.machine_types.get, project=self.project, zone=self.zone, machine_type=machine_type
            )
            is None
        ):
            names = [t.name for t in self.api.call(self.api.machine_types.list, project=self.project, zone=self.zone)]
            raise unknown(
                key or self.profile.key("machine_type"),
                "machine type",
                machine_type,
                names,
                f"gcloud compute machine-types list --zones {self.zone}",
            )
        return machine_type

    def start(self, instance: Instance) -> Instance:
        """A stopped (TERMINATED) instance is started; a SUSPENDED one is resumed, as GCE only allows
        (https://cloud.google.com/compute/docs/reference/rest/v1/instances/resume)."""
        if instance.state == "running":
            return instance
        status = self.api.get(instance.id).status
        if status == "SUSPENDED":
            self.api.change(
                f"resume instance {instance.id}",
                self.api.instances.resume,
                "zone",
                f"{instance.id} is RUNNING",
                zone=self.zone,
                instance=instance.id,
            )
        elif status != "RUNNING":
            self.api.change(
                f"start instance {instance.id}",
                self.api.instances.start,
                "zone",
                f"{instance.id} is RUNNING",
                zone=self.zone,
                instance=instance.id,
            )
        if self.api.plan:
            return dataclasses.replace(instance, state="running")
        return instance_of(self.api.get(instance.id))

    def stop(self, instance: Instance) -> Instance:
        """Stopped (GCE: TERMINATED) and waited for."""
        if instance.state == "running":
            self.api.change(
                f"stop instance {instance.id}",
                self.api.instances.stop,
                "zone",
                f"{instance.id} is stopped",
                zone=self.zone,
                instance=instance.id,
            )
        if self.api.plan:
            return dataclasses.replace(instance, state="stopped")
        return instance_of(self.api.get(instance.id))

    def resize_target(self, instance: Instance, size: str) -> str:
        """The machine type checked."""
        return self.check_type(size, key="--size")

    def set_size(self, instance: Instance, size: str) -> None:
        """setMachineType of the stopped instance."""
        request = self.api.compute.InstancesSetMachineTypeRequest(machine_type=f"zones/{self.zone}/machineTypes/{size}")
        self.api.change(
            f"set the machine type of {instance.id} to {size}",
            self.api.instances.set_machine_type,
            "zone",
            f"{instance.id} is {size}",
            zone=self.zone,
            instance=instance.id,
            instances_set_machine_type_request_resource=request,
        )

    def last_start(self, instance: Instance) -> datetime:
        """GCE's lastStartTimestamp, else when it was made."""
        data = self.api.get(instance.id)
        return datetime.fromisoformat(data.last_start_timestamp or data.creation_timestamp)

    def terminate(self, instance: Instance, keep_ip: bool) -> None:
        """Deleted with its boot disk; for the head the static IP (unless keep_ip) and the rules too."""
        worker = self.api.get(instance.id).labels.get("labvm-role") == "worker"
        self.api.change(
            f"delete instance {instance.id} and its boot disk",
            self.api.instances.delete,
            "zone",
            f"{instance.id} is deleted",
            zone=self.zone,
            instance=instance.id,
        )
        if worker:  # the static IP and the rules are the head's
            return
        if not keep_ip and self.settings.static_ip:
            self.network.release_static_ip()
        self.network.delete_rules()
