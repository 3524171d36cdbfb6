"""`inv audit`: everything labvm labelled in the project, every zone and region, every profile and owner."""

from __future__ import annotations

import math
from typing import Any

from ...config.member import shown
from ..base import BACKUP_FAILED, IMAGE_FAILED, Resource, parse_time
from .api import IMAGE_STATES, STATES, GceApi
from .names import REPLACED
from .volumes import BACKUP_STATES


class GceInventory:
    """`inv audit`'s listing."""

    def __init__(self, api: GceApi):
        self.api, self.project = api, api.project

    def resources(self) -> list[Resource]:
        """Every instance, static address, data disk (and replaced one), backup and image labvm labelled in the
        project, in every zone and region, whatever its profile or owner (labvm.prices adds what each instance costs)."""
        labelled = "labels.labvm-profile:*"
        where = f"--project {self.project}"

        def resource(kind: str, data: Any, state: str, since: str, delete: str, **extra: Any) -> Resource:
            profile = data.labels.get("labvm-profile", "")
            if data.labels.get("labvm-role") == "worker":  # named as the session names a worker: gce+w2
                profile = shown(data.labels.get("labvm-cluster", profile), data.labels.get("labvm-index", "?"))
            return Resource(
                "gce",
                self.project,
                kind,
                data.name,
                profile,
                data.labels.get("labvm-owner", ""),
                state,
                parse_time(since),
                f"{delete} {where}",
                **extra,
            )

        found: list[Resource] = []
        request = self.api.compute.AggregatedListInstancesRequest(project=self.project, filter=labelled)
        for _, scoped in self.api.call(lambda: list(self.api.instances.aggregated_list(request=request))):
            for data in scoped.instances:
                found.append(
                    resource(
                        "instance",
                        data,
                        STATES.get(data.status, data.status.lower()),
                        data.last_start_timestamp or data.creation_timestamp,
                        f"gcloud compute instances delete {data.name} --zone {data.zone.rsplit('/', 1)[-1]}",
                        type=data.machine_type.rsplit("/", 1)[-1],
                        region=data.zone.rsplit("/", 1)[-1].rsplit("-", 1)[0],
                        spot=data.scheduling.provisioning_model == "SPOT" or data.scheduling.preemptible,
                    )
                )
        request = self.api.compute.AggregatedListAddressesRequest(project=self.project, filter=labelled)
        for _, scoped in self.api.call(lambda: list(self.api.addresses.aggregated_list(request=request))):
            for data in scoped.addresses:
                found.append(
                    resource(
                        "address",
                        data,
                        {"RESERVED": "unattached", "IN_USE": "attached"}.get(data.status, data.status.lower()),
                        data.creation_timestamp,
                        f"gcloud compute addresses delete {data.name} --region {data.region.rsplit('/', 1)[-1]}",
                        address=data.address,
                        region=data.region.rsplit("/", 1)[-1],
                    )
                )
        # Data disks (labvm-role=data), and those a restore replaced (data-replaced): a loose "volume", billed until
        # the user deletes it.  A boot disk goes with its instance and is billed as part of it.
        data_disks = f'({labelled}) AND (labels.labvm-role = "data") OR (labels.labvm-role = "{REPLACED}")'
        request = self.api.compute.AggregatedListDisksRequest(project=self.project, filter=data_disks)
        for _, scoped in self.api.call(lambda: list(self.api.disks.aggregated_list(request=request))):
            for data in scoped.disks:
                zone = data.zone.rsplit("/", 1)[-1]
                found.append(
                    resource(
                        "data" if data.labels.get("labvm-role") == "data" else "volume",
                        data,
                        "attached" if data.users else "unattached",
                        data.creation_timestamp,
                        f"gcloud compute disks delete {data.name} --zone {zone}",
                        size_gb=data.size_gb,
                        type=data.type_.rsplit("/", 1)[-1],
                        region=zone.rsplit("-", 1)[0],
                    )
                )
        # Backups (labvm-role=data-backup): a snapshot bills its storageBytes (what it holds beyond the snapshots
        # before it), not its disk's size (https://cloud.google.com/compute/docs/reference/rest/v1/snapshots).
        backups = f'({labelled}) AND (labels.labvm-role = "data-backup")'
        request = self.api.compute.ListSnapshotsRequest(project=self.project, filter=backups)
        for data in self.api.call(lambda: list(self.api.snapshots.list(request=request))):
            found.append(
                resource(
                    "backup",
                    data,
                    BACKUP_STATES.get(data.status, BACKUP_FAILED),
                    data.creation_timestamp,
                    f"gcloud compute snapshots delete {data.name}",
                    size_gb=math.ceil(data.storage_bytes / 1024**3),
                )
            )
        request = self.api.compute.ListImagesRequest(project=self.project, filter=labelled)
        for data in self.api.call(lambda: list(self.api.images_client.list(request=request))):
            found.append(
                resource(
                    "image",
                    data,
                    IMAGE_STATES.get(data.status, IMAGE_FAILED),
                    data.creation_timestamp,
                    f"gcloud compute images delete {data.name}",
                    size_gb=data.archive_size_bytes / 1024**3 if data.archive_size_bytes else None,
                )
            )
        return found
