"""`inv audit`: everything labvm made in the region, every owner's, with its price where AWS says."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from ..base import Resource, parse_time
from .core import AwsBase, LIVE, tags_of


class Inventory(AwsBase):
    """Instances, images, orphan snapshots, loose volumes and Elastic IPs tagged as labvm's."""

    def inventory(self) -> list[Resource]:
        """Every labvm-tagged instance, image, orphan snapshot, loose volume and Elastic IP of the
        region, whatever its profile or owner."""
        region = self.scope
        labvm = [{"Name": "tag-key", "Values": ["labvm:profile"]}]

        def aws(action: str) -> str:
            return f"aws ec2 {action} --region {region}"

        def resource(kind: str, resource_id: str, data: dict, state: str, since, delete: str, **extra) -> Resource:
            tags = tags_of(data)
            profile = tags.get("labvm:profile", "")
            if tags.get("labvm:role") == "worker":  # named as the session names a worker: aws+w2
                profile = f"{tags.get('labvm:cluster', profile)}+w{tags.get('labvm:index', '?')}"
            return Resource("aws", region, kind, resource_id, profile, tags.get("labvm:owner", ""),
                            state, since, delete, **extra)

        live = labvm + [{"Name": "instance-state-name", "Values": list(LIVE)}]
        instances = [i for r in self._read("describe_instances", Filters=live)["Reservations"] for i in r["Instances"]]
        prices = self._on_demand_prices({i["InstanceType"] for i in instances if i.get("InstanceLifecycle") != "spot"})
        found = [
            resource("instance", i["InstanceId"], i, i["State"]["Name"], i["LaunchTime"],
                     aws(f"terminate-instances --instance-ids {i['InstanceId']}"), type=i["InstanceType"],
                     hourly_usd=self._spot_price(i) if i.get("InstanceLifecycle") == "spot" else prices.get(i["InstanceType"]))
            for i in instances
        ]
        # All of this account's AMIs, labvm's or not: a snapshot one of them uses is no orphan.
        images = self._read("describe_images", Owners=["self"])["Images"]
        in_use = set()
        for image in images:
            snapshots = [m["Ebs"] for m in image.get("BlockDeviceMappings", []) if "SnapshotId" in m.get("Ebs", {})]
            in_use.update(s["SnapshotId"] for s in snapshots)
            if any(t["Key"] == "labvm:profile" for t in image.get("Tags", [])):
                # Its snapshots in the same call: a delete-snapshot right after can meet InvalidSnapshot.InUse.
                delete = aws(f"deregister-image --image-id {image['ImageId']} --delete-associated-snapshots")
                found.append(resource("image", image["ImageId"], image, image.get("State", ""),
                                      parse_time(image.get("CreationDate")), delete,
                                      size_gb=sum(s.get("VolumeSize", 0) for s in snapshots)))
        for snapshot in self._read("describe_snapshots", OwnerIds=["self"], Filters=labvm)["Snapshots"]:
            if snapshot["SnapshotId"] not in in_use:
                found.append(resource("snapshot", snapshot["SnapshotId"], snapshot, snapshot.get("State", ""),
                                      snapshot.get("StartTime"), aws(f"delete-snapshot --snapshot-id {snapshot['SnapshotId']}"),
                                      size_gb=snapshot.get("VolumeSize")))
        loose = labvm + [{"Name": "status", "Values": ["available"]}]
        for volume in self._read("describe_volumes", Filters=loose)["Volumes"]:
            found.append(resource("volume", volume["VolumeId"], volume, "unattached", volume.get("CreateTime"),
                                  aws(f"delete-volume --volume-id {volume['VolumeId']}"), size_gb=volume.get("Size")))
        for address in self._read("describe_addresses", Filters=labvm)["Addresses"]:
            found.append(resource("address", address["AllocationId"], address,
                                  "attached" if address.get("AssociationId") or address.get("InstanceId") else "unattached",
                                  None, aws(f"release-address --allocation-id {address['AllocationId']}"),
                                  address=address.get("PublicIp", "")))
        return found

    def _spot_price(self, instance: dict) -> float | None:
        """The spot price in the instance's zone now; None when AWS does not say."""
        from botocore.exceptions import BotoCoreError, ClientError

        zone = instance["Placement"]["AvailabilityZone"]
        try:
            history = self.ec2.describe_spot_price_history(
                InstanceTypes=[instance["InstanceType"]], AvailabilityZone=zone, ProductDescriptions=["Linux/UNIX"],
                StartTime=datetime.now(timezone.utc))["SpotPriceHistory"]
        except (BotoCoreError, ClientError):
            return None
        return next((float(h["SpotPrice"]) for h in history if h["AvailabilityZone"] == zone), None)

    def _on_demand_prices(self, instance_types: set[str]) -> dict[str, float]:
        """USD an hour for on-demand Linux from the Pricing API, as far as it answers: a price is an
        estimate, so no rights for it, no way to it or an answer not understood means no price."""
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError, ClientError

        if not instance_types:
            return {}
        # The Pricing API lives in us-east-1 whatever the region priced.
        pricing = self._boto3.client("pricing", region_name="us-east-1", config=Config(
            connect_timeout=5, read_timeout=10, retries={"total_max_attempts": 2}))
        prices = {}
        for instance_type in sorted(instance_types):
            wanted = {"instanceType": instance_type, "regionCode": self.scope, "operatingSystem": "Linux",
                      "tenancy": "Shared", "preInstalledSw": "NA", "capacitystatus": "Used",
                      "licenseModel": "No License required"}
            try:
                products = pricing.get_products(ServiceCode="AmazonEC2", Filters=[
                    {"Type": "TERM_MATCH", "Field": k, "Value": v} for k, v in wanted.items()])["PriceList"]
                hourly = [float(d["pricePerUnit"]["USD"]) for p in products
                          for term in json.loads(p)["terms"].get("OnDemand", {}).values()
                          for d in term["priceDimensions"].values() if d.get("unit") == "Hrs"]
            except (BotoCoreError, ClientError, ValueError, KeyError, TypeError):
                return prices  # the next type would fail the same way, only slower
            if any(hourly):
                prices[instance_type] = min(h for h in hourly if h > 0)
        return prices
