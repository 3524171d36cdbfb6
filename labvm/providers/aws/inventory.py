"""`inv audit`: everything labvm made in the region, every owner's (labvm.prices adds what each costs)."""

from __future__ import annotations

from ...config.member import shown
from ..base import Resource, parse_time
from .api import LIVE, Ec2Api
from .names import tags_of
from .volumes import FOUND


def stored_gb(snapshot: dict) -> float | None:
    """The GiB an EBS snapshot stores, as EBS bills it (by the GB-month of data stored,
    https://aws.amazon.com/ebs/pricing/): DescribeSnapshots' FullSnapshotSizeInBytes, "the size of all the blocks
    that were written to the source volume" (API_Snapshot.html); a snapshot EC2 gives none for: its volume's
    VolumeSize, the most it can store."""
    full = snapshot.get("FullSnapshotSizeInBytes")
    return full / 1024**3 if full is not None else snapshot.get("VolumeSize")


class AwsInventory:
    """Instances, images, orphan snapshots, data volumes and their backups, loose volumes and Elastic IPs tagged
    as labvm's."""

    def __init__(self, api: Ec2Api):
        self.api = api

    def resources(self) -> list[Resource]:
        """Every labvm-tagged instance, image, orphan snapshot, data volume (kind "data", attached or not), backup
        of one (kind "backup"), loose volume and Elastic IP of the region, whatever its profile or owner."""
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

        def data_volume(volume: dict) -> Resource:
            # A profile's data volume (hosts.yml data:), attached or not: what EBS bills per GB-month.
            volume_id, attached = volume["VolumeId"], bool(volume.get("Attachments"))
            delete = aws(f"delete-volume --volume-id {volume_id}")
            if attached:  # EC2 deletes no attached volume (VolumeInUse)
                delete = f"{aws(f'detach-volume --volume-id {volume_id}')}, then {delete}"
            return resource(
                "data",
                volume_id,
                volume,
                "attached" if attached else "unattached",
                volume.get("CreateTime"),
                delete,
                size_gb=volume.get("Size"),
                type=volume.get("VolumeType", ""),
            )

        data = labvm + [{"Name": "tag:labvm:role", "Values": ["data"]}, {"Name": "status", "Values": list(FOUND)}]
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
        # labvm's snapshots, its AMIs' among them (images.make tags those): what each stores.
        snapshots = self.api.read("describe_snapshots", OwnerIds=["self"], Filters=labvm)["Snapshots"]
        by_id = {s["SnapshotId"]: s for s in snapshots}
        # All of this account's AMIs, labvm's or not: a snapshot one of them uses is no orphan.
        images = self.api.read("describe_images", Owners=["self"])["Images"]
        in_use: set[str] = set()
        for image in images:
            mapped = [m["Ebs"] for m in image.get("BlockDeviceMappings", []) if "SnapshotId" in m.get("Ebs", {})]
            in_use.update(s["SnapshotId"] for s in mapped)
            if any(t["Key"] == "labvm:profile" for t in image.get("Tags", [])):
                # Its snapshots in the same call: a delete-snapshot right after can meet InvalidSnapshot.InUse.
                # AWS CLI v2 takes the flag from 2.27.24, v1 from 1.40.24 (aws-cli's CHANGELOG, the ec2 change of
                # botocore 1.38.25); an older one refuses it as an unknown option.
                deregister = aws(f"deregister-image --image-id {image['ImageId']} --delete-associated-snapshots")
                delete = f"with AWS CLI 2.27.24 or later (v1: 1.40.24), {deregister}"
                found.append(
                    resource(
                        "image",
                        image["ImageId"],
                        image,
                        image.get("State", ""),
                        parse_time(image.get("CreationDate")),
                        delete,
                        # An untagged snapshot's mapping: its VolumeSize.
                        size_gb=sum(stored_gb(by_id.get(s["SnapshotId"], s)) or 0 for s in mapped),
                    )
                )
        for snapshot in snapshots:
            if snapshot["SnapshotId"] not in in_use:
                # A backup of a data volume (inv data --backup) is kept on purpose, as the volume is.
                backup = tags_of(snapshot).get("labvm:role") == "data-backup"
                found.append(
                    resource(
                        "backup" if backup else "snapshot",
                        snapshot["SnapshotId"],
                        snapshot,
                        snapshot.get("State", ""),
                        snapshot.get("StartTime"),
                        aws(f"delete-snapshot --snapshot-id {snapshot['SnapshotId']}"),
                        size_gb=stored_gb(snapshot),
                    )
                )
        found += [data_volume(v) for v in self.api.read("describe_volumes", Filters=data)["Volumes"]]
        loose = labvm + [{"Name": "status", "Values": ["available"]}]
        for volume in self.api.read("describe_volumes", Filters=loose)["Volumes"]:
            if tags_of(volume).get("labvm:role") == "data":  # listed above, as kept on purpose
                continue
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
