"""The profile's images: the image a VM boots from, images of the boot disk, the list, their deletion."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from ..base import IMAGE_PENDING, Image, Instance
from .api import GceApi, image_of
from .gpus import Gpus
from .names import GceNames
from .settings import GceSettings


class Images:
    """labvm's images of this profile and owner, in the project (an image family of their own)."""

    def __init__(self, api: GceApi, settings: GceSettings, names: GceNames, gpus: Gpus):
        self.api, self.settings, self.names, self.gpus = api, settings, names, gpus
        self.project = api.project

    def source_image(self, image: str | None) -> str:
        """What a new VM's boot disk is made from: the project's image `image`, else the newest of the
        profile's image family; for a GPU machine whose profile names no image, the Deep Learning VM's (the driver)."""
        if image:
            return f"projects/{self.project}/global/images/{image}"
        project, family = self.family()
        return self.api.call(self.api.images_client.get_from_family, project=project, family=family).self_link

    def family(self) -> tuple[str, str]:
        """(image project, family) a new head boots when no image of labvm's is asked for."""
        driver = self.gpus.driver_image(self.settings.machine_type)
        return driver or (self.settings.image_project, self.settings.image_family)

    def booted_from(self, head: Any) -> str:
        """The image a VM's boot disk was made from (its sourceImage)."""
        boot = next(d for d in head.disks if d.boot)
        disk = self.api.call(
            self.api.disks.get, project=self.project, zone=self.api.zone, disk=boot.source.rsplit("/", 1)[-1]
        )
        return disk.source_image

    def make(self, instance: Instance, name: str, share: tuple[str, ...], no_reboot: bool) -> Image:
        """An image of the boot disk, made while the VM runs (force_create: GCE makes images of a running
        VM's disk without a reboot, so no_reboot holds whatever it says)."""
        compute = self.api.compute
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        image_name = self.names.image(name, stamp)
        boot = next(d for d in self.api.get(instance.id).disks if d.boot)
        request = compute.InsertImageRequest(
            project=self.project,
            force_create=True,
            image_resource=compute.Image(
                name=image_name, source_disk=boot.source, labels=self.names.labels, family=self.names.family
            ),
        )
        operation = self.api.mutate(
            f"create image {image_name} of {instance.id}'s boot disk", self.api.images_client.insert, request=request
        )
        self.api.wait(operation, "global", f"image {image_name} is ready")
        if self.api.plan:
            return Image(image_name, image_name, "", IMAGE_PENDING)
        return image_of(self.api.call(self.api.images_client.get, project=self.project, image=image_name))

    def listed(self) -> list[Image]:
        """labvm's images of this profile and owner, oldest first."""
        request = self.api.compute.ListImagesRequest(project=self.project, filter=self.names.filter())
        found = self.api.call(self.api.images_client.list, request=request)
        return sorted((image_of(i) for i in found), key=lambda i: i.created)

    def delete(self, image: Image) -> None:
        """The image deleted."""
        self.api.change(
            f"delete image {image.id}",
            self.api.images_client.delete,
            "global",
            f"image {image.id} is deleted",
            image=image.id,
        )
