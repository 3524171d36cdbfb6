"""What a Compute Engine VM costs an hour, from the Cloud Billing Catalog API: the per-vCPU and per-GiB
SKUs of the machine's series in the profile's region, times the machine type's vCPUs and memory, plus the
SKU of each GPU it carries (machineTypes.get); what disks, images, snapshots and static addresses cost a month, from the same
catalog.  google-cloud-compute has no billing client: the catalog is read over REST with the provider's
credentials, at LABVM_GCE_ENDPOINT when an emulator serves it.  labvm.prices caches the
answers and turns any failure into "no price"."""

from __future__ import annotations

import functools
import re

from .api import GceApi
from .gpus import Gpus

# Why `inv audit` may show no price (Provider.NO_PRICE, NO_MONTHLY_PRICE).
NO_PRICE = "the Cloud Billing Catalog did not answer or does not price that machine type"
NO_MONTHLY_PRICE = "the Cloud Billing Catalog did not answer, or the size is not known"

# https://cloud.google.com/skus: Compute Engine's service id in the catalog.
COMPUTE_SERVICE = "services/6F81-5844-456A"
# How a series' vCPU and memory SKUs begin ("E2 Instance Core running in Americas", "Spot Preemptible E2
# Instance Ram running in Americas", "N1 Predefined Instance Core ..."), as the catalog names them
# (the same table as SkyPilot's catalog fetcher, sky/catalog/data_fetchers/fetch_gcp.py).  f1/g1 (one SKU
# for the whole machine) and custom machine types are not priced here.
SERIES = {
    "a2": "A2 Instance",
    "a3": "A3 Instance",
    "c2": "Compute optimized",
    "c2d": "C2D AMD Instance",
    "c3": "C3 Instance",
    "e2": "E2 Instance",
    "g2": "G2 Instance",
    "m1": "Memory-optimized Instance",
    "m3": "M3 Memory-optimized Instance",
    "n1": "N1 Predefined Instance",
    "n2": "N2 Instance",
    "n2d": "N2D AMD Instance",
    "t2a": "T2A Arm Instance",
    "t2d": "T2D AMD Instance",
}
# The GPUs of an accelerator-optimized type (A2, A3, G2: machineTypes.get answers them as accelerators[]
# {guestAcceleratorType, guestAcceleratorCount}, https://cloud.google.com/compute/docs/reference/rest/v1/machineTypes)
# bill apart from its vCPUs and memory, each by its GPU's SKU (resourceGroup "GPU",
# https://cloud.google.com/compute/gpus-pricing).  The catalog names them "Nvidia Tesla A100 GPU running in
# Americas", Spot "Nvidia Tesla A100 GPU attached to Spot Preemptible VMs running in Americas" (infracost,
# internal/resources/google/compute_cost_component_helpers.go, guestAcceleratorCostComponent); the model as SkyPilot's
# catalog fetcher finds it for the newer GPUs (sky/catalog/data_fetchers/fetch_gcp.py, get_gpu_df: "A100 80GB GPU",
# "H100 80GB GPU", the A3 Mega's "H100 80GB Mega GPU" or "H100 80GB Plus GPU", "H200 141GB GPU").
GPU_MODELS = {
    "nvidia-tesla-a100": ("A100",),
    "nvidia-a100-80gb": ("A100 80GB",),
    "nvidia-h100-80gb": ("H100 80GB",),
    "nvidia-h100-mega-80gb": ("H100 80GB Mega", "H100 Mega 80GB", "H100 80GB Plus"),
    "nvidia-h200-141gb": ("H200 141GB",),
    "nvidia-l4": ("L4",),
    "nvidia-tesla-t4": ("T4",),
    "nvidia-tesla-v100": ("V100",),
    "nvidia-tesla-p100": ("P100",),
    "nvidia-tesla-p4": ("P4",),
}
# Shared-core E2 types are billed for a fraction of their 2 vCPUs
# (https://cloud.google.com/compute/vm-instance-pricing#e2_sharedcore_machine_types).
SHARED_CORE_VCPUS = {"e2-micro": 0.25, "e2-small": 0.5, "e2-medium": 1.0}
# What bills while no VM runs, as the catalog names its SKUs (the descriptions infracost matches for
# google_compute_image/_snapshot/_address, infracost internal/resources/google/compute_*.go; prices on
# https://cloud.google.com/compute/disks-image-pricing and https://cloud.google.com/vpc/network-pricing#ipaddress):
# USD per GiB-month ("GiBy.mo") for storage, per hour ("h") for an address.  A description may go on with
# where (" in Oregon"); other SKUs that begin alike (Regional ..., ... Early Deletion) are not these.
STORAGE_SKUS = {
    # labvm's boot disks take instances.insert's default type, pd-standard (AttachedDiskInitializeParams.diskType:
    # "If not specified, the default is pd-standard"), so a disk of no known type is one.
    ("volume", ""): "Storage PD Capacity",
    ("volume", "pd-standard"): "Storage PD Capacity",
    ("volume", "pd-balanced"): "Balanced PD Capacity",
    ("volume", "pd-ssd"): "SSD backed PD Capacity",
    ("image", ""): "Storage Image",
    ("snapshot", ""): "Storage PD Snapshot",
}
ADDRESS_SKUS = {"unattached": "Static Ip Charge", "attached": "External IP Charge on a Standard VM"}
HOURS_PER_MONTH = 730  # Google's month of an hourly price (https://cloud.google.com/compute/vm-instance-pricing)
PAGE_SIZE, MAX_PAGES = 5000, 20  # the catalog's largest page; Compute Engine has a few pages of SKUs


class GcePrice:
    """What a machine type costs an hour and what bills a month, in the profile's region."""

    def __init__(self, api: GceApi, gpus: Gpus):
        self.api, self.region, self.gpus = api, api.region, gpus

    def per_hour(self, size: str, spot: bool) -> float | None:
        """Provider.price_per_hour: the series' vCPU and GiB prices times the machine type's, plus its GPUs' (the
        type's own, and gpu:'s on the profile's machine type).  No price when any part has none: a GPU machine
        priced without its GPUs would show a fraction of the bill."""
        series = SERIES.get(size.split("-")[0])
        if series is None or "custom" in size:
            return None
        machine = self.api.call(
            self.api.machine_types.get, project=self.api.project, zone=self.api.zone, machine_type=size
        )
        vcpus = SHARED_CORE_VCPUS.get(size, float(machine.guest_cpus))
        core, ram = (self._unit_price(series, part, spot) for part in ("Core", "Ram"))
        if core is None or ram is None:
            return None
        price = core * vcpus + ram * machine.memory_mb / 1024
        gpus = [(a.guest_accelerator_type, a.guest_accelerator_count) for a in machine.accelerators]
        attached = self.gpus.settings.accelerator
        if attached and size == self.gpus.settings.machine_type:
            gpus.append((attached.type, attached.count))
        for accelerator_type, count in gpus:
            each = self._gpu_price(accelerator_type, spot)
            if each is None:
                return None
            price += each * count
        return price

    def per_month(self, kind: str, state: str, volume_type: str) -> float | None:
        """USD per GiB-month of a disk, an image or a snapshot; USD a month of a static external address,
        reserved and unused ("Static Ip Charge") or in use by a standard VM (its "External IP Charge")."""
        if kind == "address":
            hourly = self._sku_price(ADDRESS_SKUS.get(state, ADDRESS_SKUS["unattached"]), "h")
            return None if hourly is None else hourly * HOURS_PER_MONTH
        description = STORAGE_SKUS.get((kind, volume_type if kind == "volume" else ""))
        return None if description is None else self._sku_price(description, "GiBy.mo")

    def _sku_price(self, description: str, unit: str) -> float | None:
        """The on-demand price of the SKU so named (or so named " in <place>") in this region, or in every
        region ("global"), the region's own first."""
        named = re.compile(rf"{re.escape(description.lower())}(?: in .*)?")
        found = [
            sku
            for sku in self._compute_skus
            if sku.get("category", {}).get("usageType") == "OnDemand"
            and named.fullmatch(sku.get("description", "").lower())
            and sku["pricingInfo"][0]["pricingExpression"].get("usageUnit") == unit
            and {self.region, "global"} & set(sku.get("serviceRegions", []))
        ]
        found.sort(key=lambda sku: self.region not in sku["serviceRegions"])
        return self._money(found[0]) if found else None

    @staticmethod
    def _money(sku: dict) -> float:
        """The SKU's price past any free tier (its last tiered rate), Money {units, nanos} as a float."""
        price = sku["pricingInfo"][0]["pricingExpression"]["tieredRates"][-1]["unitPrice"]
        return int(price.get("units") or 0) + price.get("nanos", 0) / 1e9

    def _unit_price(self, series: str, part: str, spot: bool) -> float | None:
        """USD per vCPU-hour (Core) or per GiB-hour (Ram) of the series in this region."""
        named = re.compile(rf"(?:spot preemptible |preemptible )?{re.escape(series.lower())} {part.lower()}\b.*")
        return self._compute_price(named, spot, "h" if part == "Core" else "GiBy.h")

    def _gpu_price(self, accelerator_type: str, spot: bool) -> float | None:
        """USD per hour of one GPU of this accelerator type in this region (GPU_MODELS); None for a type not
        known there."""
        models = GPU_MODELS.get(accelerator_type)
        if models is None:
            return None
        names = "|".join(re.escape(model.lower()) for model in models)
        sku = re.compile(rf"nvidia (?:tesla )?(?:{names}) gpu (?:attached to spot preemptible vms )?running in .*")
        return self._compute_price(sku, spot, "h")

    def _compute_price(self, named: re.Pattern, spot: bool, unit: str) -> float | None:
        """The price in `unit` of the first Compute SKU of this region, Spot or on demand, whose description (in
        lower case) is `named`."""
        usage = "Preemptible" if spot else "OnDemand"
        for sku in self._compute_skus:
            category, description = sku.get("category", {}), sku.get("description", "").lower()
            if (
                category.get("resourceFamily") == "Compute"
                and category.get("usageType") == usage
                and self.region in sku.get("serviceRegions", [])
                and named.fullmatch(description)
            ):
                expression = sku["pricingInfo"][0]["pricingExpression"]
                if expression.get("usageUnit") != unit:
                    continue
                return self._money(sku)
        return None

    @functools.cached_property
    def _compute_skus(self) -> list[dict]:
        """Every Compute Engine SKU, in USD (services.skus.list,
        https://cloud.google.com/billing/docs/reference/rest/v1/services.skus/list): {"skus": [...],
        "nextPageToken": ""}.  Read once per provider, for however many sizes it prices."""
        session, skus, token = self.api.session(), [], ""
        url = self.api.google(f"https://cloudbilling.googleapis.com/v1/{COMPUTE_SERVICE}/skus")
        for _ in range(MAX_PAGES):
            answer = session.get(
                url, params={"currencyCode": "USD", "pageSize": PAGE_SIZE, "pageToken": token}, timeout=10
            )
            answer.raise_for_status()
            page = answer.json()
            skus += page.get("skus", [])
            token = page.get("nextPageToken", "")
            if not token:
                break
        return skus
