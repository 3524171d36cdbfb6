"""`inv audit`: everything labvm made in the region, every owner's (labvm.prices adds what each costs)."""

from __future__ import annotations

from ...config.member import shown
from ..base import Resource, parse_time
from .api import LIVE, Ec2Api
from .names import tags_of


class AwsInventory:
    """Instances, images, orphan snapshots, loose volumes and Elastic IPs tagged as labvm's."""

    def __init__(self, api: Ec2Api):
        self.api = api

    def resources(self) -> list[Resource]:
        """Every labvm-tagged instance, image, orphan snapshot, loose volume and Elastic IP of the
        region, whatever its profile or owner."""
        region = self.api.scope
        labvm = [{"Name": "tag-key", "Values": ["labvm:profile"]}]

        def aws(action: str) -> str:
            return f"aws ec2 {action} --region {region}"

        def resource(kind: str, resource_id: str, data: dict, state: str, since, delete: str, **extra) -> Resource:
            tags = tags_of(data)
            profile = tags.get("labvm:profile", "")
            if tags.get("labvm:role") == "worker":  # named as the session names a worker: aws+w2
                profile = shown(tags.get("labvm:cluster", profile), tags.get("labvm:index", "?"))
            return Resource(
                "aws", region, kind, resource_id, profile, tags.get("labvm:owner", ""), state, since, delete, **extra
            )

        live = labvm + [{"Name": "instance-state-name", "Values": list(LIVE)}]
        instances = [
            i for r in self.api.read("describe_instances", Filters=live)["Reservations"] for i in r["Instances"]
        ]
        found = [
            resource(
                "instance",
                i["InstanceId"],
                i,
                i["State"]["Name"],
                i["LaunchTime"],
                aws(f"terminate-instances --instance-ids {i['InstanceId']}"),
                type=i["InstanceType"],
                spot=i.get("InstanceLifecycle") == "spot",
            )
            for i in instances
        ]
        # All of this account's AMIs, labvm's or not: a snapshot one of them uses is no orphan.
        images = self.api.read("describe_images", Owners=["self"])["Images"]
        in_use: set[str] = set()
        for image in images:
            snapshots = [m["Ebs"] for m in image.get("BlockDeviceMappings", []) if "SnapshotId" in m.get("Ebs", {})]
            in_use.update(s["SnapshotId"] for s in snapshots)
            if any(t["Key"] == "labvm:profile" for t in image.get("Tags", [])):
                # Its snapshots in the same call: a delete-snapshot right after can meet InvalidSnapshot.InUse.
                delete = aws(f"deregister-image --image-id {image['ImageId']} --delete-associated-snapshots")
                found.append(
                    resource(
                        "image",
                        image["ImageId"],
                        image,
                        image.get("State", ""),
                        parse_time(image.get("CreationDate")),
                        delete,
                        size_gb=sum(s.get("VolumeSize", 0) for s in snapshots),
                    )
                )
        for snapshot in self.api.read("describe_snapshots", OwnerIds=["self"], Filters=labvm)["Snapshots"]:
            if snapshot["SnapshotId"] not in in_use:
                found.append(
                    resource(
                        "snapshot",
                        snapshot["SnapshotId"],
                        snapshot,
                        snapshot.get("State", ""),
                        snapshot.get("StartTime"),
                        aws(f"delete-snapshot --snapshot-id {snapshot['SnapshotId']}"),
                        size_gb=snapshot.get("VolumeSize"),
                    )
                )
        loose = labvm + [{"Name": "status", "Values": ["available"]}]
        for volume in self.api.read("describe_volumes", Filters=loose)["Volumes"]:
            found.append(
                resource(
                    "volume",
                    volume["VolumeId"],
                    volume,
                    "unattached",
                    volume.get("CreateTime"),
                    aws(f"delete-volume --volume-id {volume['VolumeId']}"),
                    size_gb=volume.get("Size"),
                    type=volume.get("VolumeType", ""),
                )
            )
        for address in self.api.read("describe_addresses", Filters=labvm)["Addresses"]:
            found.append(
                resource(
                    "address",
                    address["AllocationId"],
                    address,
                    "attached" if address.get("AssociationId") or address.get("InstanceId") else "unattached",
                    None,
                    aws(f"release-address --allocation-id {address['AllocationId']}"),
                    address=address.get("PublicIp", ""),
                )
            )
        return found
