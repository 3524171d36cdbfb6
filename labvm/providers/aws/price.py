"""What an EC2 instance costs an hour: on demand from the AWS Price List Query API, spot from EC2's spot
price history; what EBS volumes and snapshots (so AMIs) and public IPv4 addresses cost a month, from the
same Price List.  labvm.prices caches the answers and turns any failure into "no price"."""

from __future__ import annotations

import functools
import json
from datetime import datetime, timezone
from typing import Any

from .api import Ec2Api
from .network import Network
from .settings import AwsSettings

# Why `inv audit` may show no price (Provider.NO_PRICE, NO_MONTHLY_PRICE).
NO_PRICE = "the AWS Pricing API (or its spot price history) did not answer"
NO_MONTHLY_PRICE = "the AWS Pricing API did not answer"

# The China partition (cn-north-1, cn-northwest-1) bills in yuan: its Price List is its own endpoint
# (botocore's endpoints.json lists `pricing` in aws-cn at cn-northwest-1 only,
# api.pricing.cn-northwest-1.amazonaws.com.cn) and its prices are CNY (https://www.amazonaws.cn/en/ec2/pricing/),
# spot ones too; us-east-1's Price List refuses a China account's credentials.  labvm shows US dollars, so a
# China region has no price rather than yuan shown as dollars (hosts.yml's price_per_hour: gives one).
UNPRICED_PARTITION = "cn-"
# One product per type, region and these attributes: on-demand Linux on shared hardware, no pre-installed
# software, an instance that runs (capacitystatus Used, not a capacity reservation's unused hours).
# Attribute names as `aws pricing describe-services --service-code AmazonEC2` lists them.
ON_DEMAND_LINUX = {
    "operatingSystem": "Linux",
    "tenancy": "Shared",
    "preInstalledSw": "NA",
    "capacitystatus": "Used",
    "licenseModel": "No License required",
}
# The type of the volumes labvm makes (head.py's BlockDeviceMappings): a volume the inventory lists
# without its type is one of these.
VOLUME_TYPE = "gp3"
# AWS bills an hourly rate for a month of 730 hours (https://aws.amazon.com/ec2/pricing/on-demand/: "730 hours
# in a month"): an address priced by the hour is shown by the month at that many hours.
HOURS_PER_MONTH = 730
# What bills while no instance runs, as GetProducts lists it (a product's attributes and the OnDemand
# priceDimensions' unit), each product narrowed to the region's own (locationType "AWS Region", not an Outpost
# or a Local Zone) and told apart by the end of its usagetype ("USW2-EBS:VolumeUsage.gp3"; us-east-1's have no
# prefix):
# - EBS volumes: AmazonEC2, productFamily "Storage", volumeApiName gp3/gp2/io1/st1/sc1/standard, USD per
#   "GB-Mo" (the awscli example of `aws pricing get-products`, awscli/examples/pricing/get-products.rst, shows
#   such a product: "unit":"GB-Mo", "$0.138 per GB-month of Provisioned IOPS SSD (io1) provisioned storage");
# - EBS snapshots: AmazonEC2, productFamily "Storage Snapshot", usagetype ...EBS:SnapshotUsage, "GB-Mo" (the
#   family also holds the archive tier, EBS:SnapshotArchiveStorage, and other charges: not these);
# - public IPv4 addresses: since the public IPv4 charge of 2024-02-01
#   (https://aws.amazon.com/blogs/aws/new-aws-public-ipv4-address-charge-public-ip-insights/) the Elastic IP
#   rates are AmazonVPC's, group "VPCPublicIPv4Address", usagetype ...PublicIPv4:InUseAddress (attached) or
#   ...PublicIPv4:IdleAddress (attached to nothing), USD per "Hrs" (AmazonEC2's old "IP Address" family no
#   longer holds them).
MONTHLY = {
    "volume": ("AmazonEC2", {"productFamily": "Storage"}, "GB-Mo", "EBS:VolumeUsage"),
    "snapshot": ("AmazonEC2", {"productFamily": "Storage Snapshot"}, "GB-Mo", "EBS:SnapshotUsage"),
    "attached": ("AmazonVPC", {"group": "VPCPublicIPv4Address"}, "Hrs", "PublicIPv4:InUseAddress"),
    "unattached": ("AmazonVPC", {"group": "VPCPublicIPv4Address"}, "Hrs", "PublicIPv4:IdleAddress"),
}


class AwsPrice:
    """What an instance costs an hour and what bills a month, in the profile's region."""

    def __init__(self, api: Ec2Api, settings: AwsSettings, network: Network):
        self.api, self.settings, self.network = api, settings, network

    @functools.cached_property
    def pricing(self) -> Any:
        """The Price List Query API: it answers in us-east-1 whatever region is priced
        (https://docs.aws.amazon.com/aws-cost-management/latest/APIReference/API_pricing_GetProducts.html);
        short timeouts and one retry, as a price is never worth waiting for."""
        from botocore.config import Config

        return self.api.boto3.client(
            "pricing",
            region_name="us-east-1",
            config=Config(connect_timeout=5, read_timeout=10, retries={"total_max_attempts": 2}),
        )

    def per_hour(self, size: str, spot: bool) -> float | None:
        """Provider.price_per_hour: spot from the spot price history, on demand from the Price List."""
        if self.api.scope.startswith(UNPRICED_PARTITION):
            return None
        return self._spot_price(size) if spot else self._on_demand_price(size)

    def per_month(self, kind: str, state: str, volume_type: str) -> float | None:
        """USD per GB-month of a volume or a snapshot, of an AMI as the snapshots it keeps (an AMI is billed
        for nothing else); USD a month of an Elastic IP (its hourly rate x HOURS_PER_MONTH)."""
        if self.api.scope.startswith(UNPRICED_PARTITION):
            return None
        if kind == "image":
            kind = "snapshot"
        if kind == "address":
            kind = "attached" if state == "attached" else "unattached"
        if kind not in MONTHLY:
            return None
        service, attributes, unit, usage = MONTHLY[kind]
        if kind == "volume":
            attributes = {**attributes, "volumeApiName": volume_type or VOLUME_TYPE}
        rate = self._rate(service, attributes, unit, usage)
        return rate * HOURS_PER_MONTH if rate is not None and unit == "Hrs" else rate

    def _rate(self, service: str, attributes: dict, unit: str, usage: str) -> float | None:
        """The region's on-demand rate in `unit` of the products with these attributes whose usagetype names
        `usage` (the highest where several do: an estimate should not promise less than the bill)."""
        wanted = {"regionCode": self.api.scope, "locationType": "AWS Region", **attributes}
        products = self.pricing.get_products(
            ServiceCode=service,
            MaxResults=100,
            Filters=[{"Type": "TERM_MATCH", "Field": field, "Value": value} for field, value in wanted.items()],
        )["PriceList"]
        rates = []
        for text in products:
            product = json.loads(text)
            usagetype = product["product"]["attributes"].get("usagetype", "")
            region_code, dash, rest = usagetype.partition("-")
            named = rest if dash and ":" not in region_code else usagetype  # "USW2-EBS:VolumeUsage.gp3" -> "EBS:..."
            if named != usage and not named.startswith(usage + "."):  # "EBS:VolumeUsage.gp3": its type after a dot
                continue
            rates += [
                float(dimension["pricePerUnit"]["USD"])
                for term in product["terms"].get("OnDemand", {}).values()
                for dimension in term["priceDimensions"].values()
                if dimension.get("unit") == unit
            ]
        paid = [usd for usd in rates if usd > 0]
        return max(paid) if paid else None

    def _on_demand_price(self, instance_type: str) -> float | None:
        """GetProducts' PriceList is a list of JSON strings, one product each; the hourly rate is
        terms.OnDemand.<offer>.priceDimensions.<rate>.pricePerUnit.USD with unit "Hrs"."""
        wanted = {"instanceType": instance_type, "regionCode": self.api.scope, **ON_DEMAND_LINUX}
        products = self.pricing.get_products(
            ServiceCode="AmazonEC2",
            MaxResults=10,
            Filters=[{"Type": "TERM_MATCH", "Field": field, "Value": value} for field, value in wanted.items()],
        )["PriceList"]
        hourly = [
            float(dimension["pricePerUnit"]["USD"])
            for product in products
            for term in json.loads(product)["terms"].get("OnDemand", {}).values()
            for dimension in term["priceDimensions"].values()
            if dimension.get("unit") == "Hrs"
        ]
        paid = [usd for usd in hourly if usd > 0]
        return min(paid) if paid else None

    def _spot_price(self, instance_type: str) -> float | None:
        """The latest spot price of each zone (DescribeSpotPriceHistory with StartTime now answers the price in
        effect per zone, https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DescribeSpotPriceHistory.html):
        the profile's subnet's zone where it names one, else the highest of the region's zones, since EC2
        picks the zone and an estimate should not promise less than the bill."""
        zone = self.network.subnet.zone if self.settings.subnet else ""
        history = self.api.ec2.describe_spot_price_history(
            InstanceTypes=[instance_type],
            ProductDescriptions=["Linux/UNIX"],
            StartTime=datetime.now(timezone.utc),
            **({"AvailabilityZone": zone} if zone else {}),
        )["SpotPriceHistory"]
        latest: dict[str, tuple[datetime, float]] = {}
        for entry in history:
            seen = latest.get(entry["AvailabilityZone"])
            if seen is None or entry["Timestamp"] > seen[0]:
                latest[entry["AvailabilityZone"]] = (entry["Timestamp"], float(entry["SpotPrice"]))
        prices = [price for where, (_, price) in latest.items() if not zone or where == zone]
        return max(prices) if prices else None
