"""Compute Engine's SKUs in the Cloud Billing Catalog as the fake serves them (services.skus.list): the shape
of one SKU and the list prices labvm's lookups must find among their neighbours."""

import zlib

COMPUTE_SERVICE = "6F81-5844-456A"  # Compute Engine in the Cloud Billing Catalog (https://cloud.google.com/skus)
AMERICAS = ["us-central1", "us-east1", "us-east4", "us-west1", "us-west2", "us-west3", "us-west4"]
UNIT_WORDS = {"h": "hour", "GiBy.h": "gibibyte hour", "GiBy.mo": "gibibyte month"}


def catalog_sku(
    description: str,
    resource_group: str,
    usage_type: str,
    usd: float,
    unit: str = "h",
    regions=tuple(AMERICAS),
    family: str = "Compute",
) -> dict:
    """One SKU as https://cloud.google.com/billing/docs/reference/rest/v1/services.skus/list answers it
    (the Sku resource: category, serviceRegions, pricingInfo[].pricingExpression.tieredRates[].unitPrice
    as Money {currencyCode, units, nanos}); usageUnit "h" for a vCPU-hour (or an address-hour), "GiBy.h" for
    a GiB-hour, "GiBy.mo" for a GiB-month of storage."""
    sku_id = f"{zlib.crc32(description.encode()):08X}"
    sku_id = f"{sku_id[:4]}-{sku_id[4:]}-{zlib.crc32(usage_type.encode()) % 10000:04d}"
    units = int(usd)
    return {
        "name": f"services/{COMPUTE_SERVICE}/skus/{sku_id}",
        "skuId": sku_id,
        "description": description,
        "category": {
            "serviceDisplayName": "Compute Engine",
            "resourceFamily": family,
            "resourceGroup": resource_group,
            "usageType": usage_type,
        },
        "serviceRegions": list(regions),
        "pricingInfo": [
            {
                "summary": "",
                "pricingExpression": {
                    "usageUnit": unit,
                    "displayQuantity": 1,
                    "tieredRates": [
                        {
                            "startUsageAmount": 0,
                            "unitPrice": {
                                "currencyCode": "USD",
                                "units": str(units),
                                "nanos": round((usd - units) * 1e9),
                            },
                        }
                    ],
                    "usageUnitDescription": UNIT_WORDS[unit],
                    "baseUnit": "s" if unit == "h" else "By.s",
                    "baseUnitDescription": "second" if unit == "h" else "byte second",
                    # a GiB-month is 2^30 bytes for 31 days of seconds, as the catalog converts it
                    "baseUnitConversionFactor": {"h": 3600, "GiBy.h": 3865470566400, "GiBy.mo": 2875910101401600}[unit],
                },
                "currencyConversionRate": 1,
                "effectiveTime": "2026-11-01T00:00:00.000Z",
            }
        ],
        "serviceProviderName": "Google",
        "geoTaxonomy": {"type": "MULTI_REGIONAL", "regions": list(regions)},
    }


# Compute Engine's list prices in the Americas regions (https://cloud.google.com/compute/vm-instance-pricing,
# 2026-11), the SKUs named as the catalog names them, with neighbours a price lookup must not take:
# commitments, custom machine types, sole tenancy, another region's, storage.
CATALOG = [
    catalog_sku("E2 Instance Core running in Americas", "CPU", "OnDemand", 0.021811),
    catalog_sku("E2 Instance Ram running in Americas", "RAM", "OnDemand", 0.002923, "GiBy.h"),
    catalog_sku("Spot Preemptible E2 Instance Core running in Americas", "CPU", "Preemptible", 0.006543),
    catalog_sku("Spot Preemptible E2 Instance Ram running in Americas", "RAM", "Preemptible", 0.000877, "GiBy.h"),
    catalog_sku("Commitment v1: E2 Cpu in Americas for 1 Year", "CPU", "Commit1Yr", 0.013741),
    catalog_sku("E2 Custom Instance Core running in Americas", "CPU", "OnDemand", 0.022902),
    catalog_sku("E2 Instance Core running in Belgium", "CPU", "OnDemand", 0.023992, regions=("europe-west1",)),
    catalog_sku("N2 Instance Core running in Americas", "CPU", "OnDemand", 0.031611),
    catalog_sku("N2 Instance Ram running in Americas", "RAM", "OnDemand", 0.004237, "GiBy.h"),
    catalog_sku("N2 Sole Tenancy Instance Core running in Americas", "CPU", "OnDemand", 0.034772),
    catalog_sku("N1 Predefined Instance Core running in Americas", "N1Standard", "OnDemand", 0.031611),
    catalog_sku("N1 Predefined Instance Ram running in Americas", "N1Standard", "OnDemand", 0.004237, "GiBy.h"),
    catalog_sku("Storage PD Capacity", "PDStandard", "OnDemand", 0.04, "GiBy.mo", family="Storage"),
    # Accelerator-optimized series: the machine's vCPUs and memory (A2, G2) plus each GPU it carries, billed by
    # the GPU's own SKU (resourceGroup "GPU"; https://cloud.google.com/compute/gpus-pricing: "a2-highgpu-1g"
    # $3.673385/h = 12 vCPUs and 85 GiB of A2 + one A100 40GB).  The GPU SKUs are named as infracost matches
    # them ("Nvidia Tesla A100 GPU running in ...", Spot: "... GPU attached to Spot Preemptible VMs running in
    # ...", internal/resources/google/compute_cost_component_helpers.go, guestAcceleratorCostComponent) and as
    # SkyPilot's catalog fetcher finds the newer ones ("A100 80GB GPU", "H100 80GB GPU", "L4 GPU",
    # sky/catalog/data_fetchers/fetch_gcp.py, get_gpu_df).  Neighbours a GPU's price must not take: the 80GB
    # A100 (its name begins alike), a commitment, another region's, the Spot SKU when on demand is asked.
    catalog_sku("A2 Instance Core running in Americas", "CPU", "OnDemand", 0.031611),
    catalog_sku("A2 Instance Ram running in Americas", "RAM", "OnDemand", 0.004237, "GiBy.h"),
    catalog_sku("Spot Preemptible A2 Instance Core running in Americas", "CPU", "Preemptible", 0.01265),
    catalog_sku("Spot Preemptible A2 Instance Ram running in Americas", "RAM", "Preemptible", 0.001695, "GiBy.h"),
    catalog_sku("G2 Instance Core running in Americas", "CPU", "OnDemand", 0.024988),
    catalog_sku("G2 Instance Ram running in Americas", "RAM", "OnDemand", 0.002928, "GiBy.h"),
    catalog_sku(
        "Nvidia Tesla A100 GPU attached to Spot Preemptible VMs running in Americas", "GPU", "Preemptible", 1.17356
    ),
    catalog_sku("Nvidia Tesla A100 GPU running in Americas", "GPU", "OnDemand", 2.933908),
    catalog_sku("Nvidia Tesla A100 80GB GPU running in Americas", "GPU", "OnDemand", 3.92808),
    catalog_sku("Commitment v1: Nvidia Tesla A100 GPU in Americas for 1 Year", "GPU", "Commit1Yr", 1.848362),
    catalog_sku("Nvidia Tesla A100 GPU running in Belgium", "GPU", "OnDemand", 3.22658, regions=("europe-west1",)),
    catalog_sku("Nvidia L4 GPU attached to Spot Preemptible VMs running in Americas", "GPU", "Preemptible", 0.2240),
    catalog_sku("Nvidia L4 GPU running in Americas", "GPU", "OnDemand", 0.560040),
    # What bills while no VM runs (https://cloud.google.com/compute/disks-image-pricing and
    # https://cloud.google.com/vpc/network-pricing#ipaddress, 2026-11), named as infracost's GCP resources
    # match them (internal/resources/google/compute_{disk,image,snapshot,address}.go), with neighbours a
    # monthly price must not take: the regional (replicated) disk, an early-deletion charge, another region's.
    catalog_sku("Balanced PD Capacity", "SSD", "OnDemand", 0.1, "GiBy.mo", family="Storage"),
    catalog_sku("Regional Storage PD Capacity", "PDStandard", "OnDemand", 0.08, "GiBy.mo", family="Storage"),
    catalog_sku("Storage Image", "StorageImage", "OnDemand", 0.05, "GiBy.mo", regions=("global",), family="Storage"),
    catalog_sku("Storage PD Snapshot", "PDSnapshot", "OnDemand", 0.05, "GiBy.mo", family="Storage"),
    catalog_sku("Storage PD Snapshot Early Deletion", "PDSnapshot", "OnDemand", 0.019, "GiBy.mo", family="Storage"),
    catalog_sku("Static Ip Charge", "IpAddress", "OnDemand", 0.01, family="Network"),
    catalog_sku(
        "Static Ip Charge in Belgium", "IpAddress", "OnDemand", 0.012, regions=("europe-west1",), family="Network"
    ),
    catalog_sku(
        "External IP Charge on a Standard VM", "IpAddress", "OnDemand", 0.005, regions=("global",), family="Network"
    ),
]
