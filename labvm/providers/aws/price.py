"""What an EC2 instance costs an hour: on demand from the AWS Price List Query API, spot from EC2's spot
price history.  labvm.prices caches the answers and turns any failure into "no price"."""

from __future__ import annotations

import functools
import json
from datetime import datetime, timezone

from .core import AwsBase

# One product per type, region and these attributes: on-demand Linux on shared hardware, no pre-installed
# software, an instance that runs (capacitystatus Used, not a capacity reservation's unused hours).
# Attribute names as `aws pricing describe-services --service-code AmazonEC2` lists them.
ON_DEMAND_LINUX = {"operatingSystem": "Linux", "tenancy": "Shared", "preInstalledSw": "NA",
                   "capacitystatus": "Used", "licenseModel": "No License required"}


class Price(AwsBase):
    def size(self) -> str:
        return self._instance_type

    def where(self) -> str:
        return self.scope

    @functools.cached_property
    def pricing(self):
        """The Price List Query API: it answers in us-east-1 whatever region is priced
        (https://docs.aws.amazon.com/aws-cost-management/latest/APIReference/API_pricing_GetProducts.html);
        short timeouts and one retry, as a price is never worth waiting for."""
        from botocore.config import Config

        return self._boto3.client("pricing", region_name="us-east-1", config=Config(
            connect_timeout=5, read_timeout=10, retries={"total_max_attempts": 2}))

    def price_per_hour(self, size: str, spot: bool) -> float | None:
        return self._spot_price(size) if spot else self._on_demand_price(size)

    def _on_demand_price(self, instance_type: str) -> float | None:
        """GetProducts' PriceList is a list of JSON strings, one product each; the hourly rate is
        terms.OnDemand.<offer>.priceDimensions.<rate>.pricePerUnit.USD with unit "Hrs"."""
        wanted = {"instanceType": instance_type, "regionCode": self.scope, **ON_DEMAND_LINUX}
        products = self.pricing.get_products(ServiceCode="AmazonEC2", MaxResults=10, Filters=[
            {"Type": "TERM_MATCH", "Field": field, "Value": value} for field, value in wanted.items()])["PriceList"]
        hourly = [float(dimension["pricePerUnit"]["USD"]) for product in products
                  for term in json.loads(product)["terms"].get("OnDemand", {}).values()
                  for dimension in term["priceDimensions"].values() if dimension.get("unit") == "Hrs"]
        paid = [usd for usd in hourly if usd > 0]
        return min(paid) if paid else None

    def _spot_price(self, instance_type: str) -> float | None:
        """The latest spot price of each zone (DescribeSpotPriceHistory with StartTime now answers the price in
        effect per zone, https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DescribeSpotPriceHistory.html):
        the profile's subnet's zone where it names one, else the highest of the region's zones, since EC2
        picks the zone and an estimate should not promise less than the bill."""
        zone = self._network.zone if self.settings.get("subnet") else ""
        history = self.ec2.describe_spot_price_history(
            InstanceTypes=[instance_type], ProductDescriptions=["Linux/UNIX"], StartTime=datetime.now(timezone.utc),
            **({"AvailabilityZone": zone} if zone else {}))["SpotPriceHistory"]
        latest: dict[str, tuple[datetime, float]] = {}
        for entry in history:
            seen = latest.get(entry["AvailabilityZone"])
            if seen is None or entry["Timestamp"] > seen[0]:
                latest[entry["AvailabilityZone"]] = (entry["Timestamp"], float(entry["SpotPrice"]))
        prices = [price for where, (_, price) in latest.items() if not zone or where == zone]
        return max(prices) if prices else None
