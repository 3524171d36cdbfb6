"""Prices: each cloud's price list as its API answers it, hosts.yml's override, the laptop's cache (used
offline), a failed lookup that shows nothing and fails nothing, and `status` / `audit` showing them.

AWS answers come from botocore's Stubber in the shapes of botocore's service models (pricing
2017-10-15 GetProducts: PriceList is a list of JSON strings, one product each,
https://docs.aws.amazon.com/aws-cost-management/latest/APIReference/API_pricing_GetProducts.html;
ec2 2016-11-15 DescribeSpotPriceHistory,
https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DescribeSpotPriceHistory.html), or from a
loopback Price List server where `inv` runs in a subprocess.  GCE's come from tests/fake_gce.py's Cloud
Billing Catalog (https://cloud.google.com/billing/docs/reference/rest/v1/services.skus/list).
"""

import json
import time
import urllib.request
from datetime import datetime, timedelta, timezone

import boto3
import pytest
from botocore.stub import ANY, Stubber

from aws_world import CLOSED, REGION, BlackHole, STORAGE_PRICES, PriceList, aws_env, line_of, tagged
from fake_gce import FakeGce
from gce_catalog import CATALOG, catalog_sku
from gce_world import PROJECT, ZONE
from realhost import ssh_profile

from labvm import config, prices
from labvm.providers import for_profile

E2_CORE, E2_RAM = 0.021811, 0.002923  # fake_gce.CATALOG: E2 on demand in the Americas, per vCPU-hour and GiB-hour
E2_SPOT_CORE, E2_SPOT_RAM = 0.006543, 0.000877


def product(usd: str, instance_type: str = "c5.large") -> str:
    """One GetProducts product, a JSON string as PriceList holds it (on-demand Linux, shared tenancy)."""
    return json.dumps(
        {
            "product": {
                "productFamily": "Compute Instance",
                "sku": "SKU1",
                "attributes": {
                    "instanceType": instance_type,
                    "regionCode": REGION,
                    "operatingSystem": "Linux",
                    "tenancy": "Shared",
                    "preInstalledSw": "NA",
                    "capacitystatus": "Used",
                    "licenseModel": "No License required",
                },
            },
            "serviceCode": "AmazonEC2",
            "terms": {
                "OnDemand": {
                    "SKU1.JRTCKXETXF": {
                        "offerTermCode": "JRTCKXETXF",
                        "sku": "SKU1",
                        "effectiveDate": "2026-11-01T00:00:00Z",
                        "termAttributes": {},
                        "priceDimensions": {
                            "SKU1.JRTCKXETXF.6YS6EN2CT7": {
                                "unit": "Hrs",
                                "beginRange": "0",
                                "endRange": "Inf",
                                "appliesTo": [],
                                "rateCode": "SKU1.JRTCKXETXF.6YS6EN2CT7",
                                "pricePerUnit": {"USD": usd},
                                "description": f"${usd} per On Demand Linux {instance_type} Instance Hour",
                            }
                        },
                    }
                }
            },
            "version": "20261101000000",
            "publicationDate": "2026-11-01T00:00:00Z",
        }
    )


def profile_of(lab, name: str, settings: dict):
    lab.write_hosts({name: settings})
    return config.load(lab.hosts).profile(name)


@pytest.fixture
def moto_ec2(moto, lab):
    """moto's EC2 for `inv` in a subprocess; moto's state is one per process, so it is reset around the test."""

    def reset():
        urllib.request.urlopen(urllib.request.Request(f"{moto}/moto-api/reset", method="POST"))

    reset()
    lab.extra_env.update(aws_env(moto), LABVM_OWNER="hedy")
    yield boto3.client(
        "ec2", endpoint_url=moto, region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    reset()


@pytest.fixture
def aws_offline(lab, monkeypatch):
    """AWS credentials for the SDK, every AWS endpoint closed: only a stub answers."""
    monkeypatch.setenv("LABVM_SSH_DIR", str(lab.ssh_dir))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_ENDPOINT_URL", CLOSED)
    monkeypatch.setattr(prices, "_unreachable", set())
    return lab


def test_aws_on_demand_price_is_the_price_list_s_hourly_rate(aws_offline):
    provider = for_profile(
        profile_of(aws_offline, "aws", {"provider": "aws", "region": REGION, "instance_type": "c5.large"})
    )
    with Stubber(provider.parts.price.pricing) as stub:
        stub.add_response(
            "get_products",
            {"FormatVersion": "aws_v1", "PriceList": [product("0.0850000000")]},
            {
                "ServiceCode": "AmazonEC2",
                "MaxResults": 10,
                "Filters": [
                    {"Type": "TERM_MATCH", "Field": field, "Value": value}
                    for field, value in {
                        "instanceType": "c5.large",
                        "regionCode": REGION,
                        "operatingSystem": "Linux",
                        "tenancy": "Shared",
                        "preInstalledSw": "NA",
                        "capacitystatus": "Used",
                        "licenseModel": "No License required",
                    }.items()
                ],
            },
        )
        assert provider.price_per_hour("c5.large", spot=False) == pytest.approx(0.085)
        stub.add_response("get_products", {"FormatVersion": "aws_v1", "PriceList": []}, None)
        assert provider.price_per_hour("c5.nosuch", spot=False) is None  # not in the price list: no price


def test_aws_spot_price_is_the_latest_of_each_zone_and_the_highest_zone(aws_offline):
    provider = for_profile(profile_of(aws_offline, "aws", {"provider": "aws", "region": REGION, "spot": True}))
    now = datetime.now(timezone.utc)

    def entry(zone, usd, minutes_ago):
        return {
            "AvailabilityZone": zone,
            "InstanceType": "t3.small",
            "ProductDescription": "Linux/UNIX",
            "SpotPrice": usd,
            "Timestamp": now - timedelta(minutes=minutes_ago),
        }

    history = [
        entry(f"{REGION}a", "0.0070", 5),
        entry(f"{REGION}a", "0.0300", 90),  # a's latest is 0.0070
        entry(f"{REGION}b", "0.0081", 1),
        entry(f"{REGION}c", "0.0064", 30),
    ]
    with Stubber(provider.api.ec2) as stub:
        stub.add_response(
            "describe_spot_price_history",
            {"SpotPriceHistory": history},
            {"InstanceTypes": ["t3.small"], "ProductDescriptions": ["Linux/UNIX"], "StartTime": ANY},
        )
        assert provider.price_per_hour("t3.small", spot=True) == pytest.approx(0.0081)


def test_aws_spot_price_of_a_profile_with_a_subnet_is_its_zone_s(aws_offline):
    provider = for_profile(
        profile_of(aws_offline, "aws", {"provider": "aws", "region": REGION, "spot": True, "subnet": "subnet-0b"})
    )
    zone = f"{REGION}b"
    with Stubber(provider.api.ec2) as stub:  # DescribeSubnets: API_DescribeSubnets.html
        stub.add_response(
            "describe_subnets",
            {
                "Subnets": [
                    {"SubnetId": "subnet-0b", "VpcId": "vpc-1", "AvailabilityZone": zone, "MapPublicIpOnLaunch": True}
                ]
            },
            {"SubnetIds": ["subnet-0b"]},
        )
        stub.add_response(
            "describe_spot_price_history",
            {
                "SpotPriceHistory": [
                    {
                        "AvailabilityZone": zone,
                        "InstanceType": "t3.small",
                        "ProductDescription": "Linux/UNIX",
                        "SpotPrice": "0.0066",
                        "Timestamp": datetime.now(timezone.utc),
                    }
                ]
            },
            {
                "InstanceTypes": ["t3.small"],
                "ProductDescriptions": ["Linux/UNIX"],
                "StartTime": ANY,
                "AvailabilityZone": zone,
            },
        )
        assert provider.price_per_hour("t3.small", spot=True) == pytest.approx(0.0066)


@pytest.mark.parametrize("region", ["cn-north-1", "cn-northwest-1"])
def test_aws_china_regions_bill_in_yuan_and_are_not_priced_in_dollars(aws_offline, region):
    """The China partition's Price List (api.pricing.cn-northwest-1.amazonaws.com.cn) and spot prices are in CNY;
    us-east-1's Price List refuses a China account.  No price, and no call made to learn it."""
    provider = for_profile(profile_of(aws_offline, "aws", {"provider": "aws", "region": region}))
    with Stubber(provider.parts.price.pricing) as pricing, Stubber(provider.api.ec2) as ec2:
        assert provider.price_per_hour("c5.large", spot=False) is None
        assert provider.price_per_hour("c5.large", spot=True) is None
        assert provider.price_per_month("volume") is None
        pricing.assert_no_pending_responses(), ec2.assert_no_pending_responses()


@pytest.fixture
def google(lab, monkeypatch, tmp_path):
    """The GCE fake as Google itself, with a user's ADC: the catalog is read with their token."""
    monkeypatch.setenv("LABVM_SSH_DIR", str(lab.ssh_dir))
    for name, value in {
        "NO_GCE_CHECK": "true",
        "GCE_METADATA_HOST": "127.0.0.1:9",
        "GCE_METADATA_IP": "127.0.0.1:9",
        "LABVM_OWNER": "hedy",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("LABVM_GCE_ENDPOINT", raising=False)
    monkeypatch.setattr(prices, "_unreachable", set())
    with FakeGce() as fake:
        for name, value in fake.google_environment().items():
            monkeypatch.setenv(name, value)
        adc = tmp_path / "adc.json"
        adc.write_text(
            json.dumps(
                {
                    "type": "authorized_user",
                    "client_id": "id.apps.googleusercontent.com",
                    "client_secret": "secret",
                    "refresh_token": "1//refresh",
                    "token": "ya29.hedy",
                    "expiry": "2999-01-01T00:00:00Z",
                }
            )
        )
        fake.tokens["ya29.hedy"] = "hedy@example.org"
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(adc))
        yield fake


def test_gce_price_is_the_family_s_vcpu_and_gib_skus_of_the_region(lab, google):
    provider = for_profile(profile_of(lab, "gce", {"provider": "gce", "project": PROJECT, "zone": ZONE}))
    assert provider.price_per_hour("e2-standard-2", spot=False) == pytest.approx(2 * E2_CORE + 8 * E2_RAM)
    assert provider.price_per_hour("e2-highmem-2", spot=True) == pytest.approx(2 * E2_SPOT_CORE + 16 * E2_SPOT_RAM)
    # e2-small has 2 vCPUs that it shares: billed as half of one.
    assert provider.price_per_hour("e2-small", spot=False) == pytest.approx(0.5 * E2_CORE + 2 * E2_RAM)
    assert provider.price_per_hour("n1-standard-1", spot=False) == pytest.approx(0.031611 + 3.75 * 0.004237)
    assert provider.price_per_hour("c2-standard-4", spot=False) is None  # no C2 SKU in this catalog: no price
    skus = [path for method, path in google.requests if path.endswith("/skus")]
    assert skus == ["/v1/services/6F81-5844-456A/skus"]  # read once by a provider, for every size it prices


def test_gce_price_of_an_accelerator_optimized_type_adds_its_gpus(lab, google):
    """The GPUs come from machineTypes.get's accelerators[] (tests/fake_gce.py ACCELERATORS)."""
    profile = profile_of(
        lab, "gce", {"provider": "gce", "project": PROJECT, "zone": ZONE, "machine_type": "a2-highgpu-1g"}
    )
    provider = for_profile(profile)
    a2 = 12 * 0.031611 + 85 * 0.004237  # about $0.74/h: the vCPUs and memory alone, what labvm showed before
    assert prices.size_words(profile, provider) == "a2-highgpu-1g in us-west1, about $3.67/h"  # and the A100: the bill
    assert provider.price_per_hour("a2-highgpu-1g", spot=False) == pytest.approx(a2 + 2.933908)
    assert provider.price_per_hour("a2-highgpu-2g", spot=False) == pytest.approx(2 * a2 + 2 * 2.933908)
    # Spot: the Spot A2 SKUs and the A100's "attached to Spot Preemptible VMs" one.
    assert provider.price_per_hour("a2-highgpu-1g", spot=True) == pytest.approx(12 * 0.01265 + 85 * 0.001695 + 1.17356)
    # The 80GB A100 is its own SKU (not the 40GB one, whose name begins alike).
    assert provider.price_per_hour("a2-ultragpu-1g", spot=False) == pytest.approx(2 * a2 - 12 * 0.031611 + 3.92808)
    assert provider.price_per_hour("g2-standard-4", spot=False) == pytest.approx(
        4 * 0.024988 + 16 * 0.002928 + 0.560040
    )
    # A GPU the catalog does not price: no price, rather than the machine's without its GPU.
    google.billing_skus = [sku for sku in CATALOG if "L4" not in sku["description"]]
    assert for_profile(profile).price_per_hour("g2-standard-4", spot=False) is None


def test_the_catalog_is_read_page_by_page(lab, google, monkeypatch):
    import labvm.providers.gce.price as gce_price

    monkeypatch.setattr(gce_price, "PAGE_SIZE", 2)  # the fake's SKUs two by two
    provider = for_profile(profile_of(lab, "gce", {"provider": "gce", "project": PROJECT, "zone": ZONE}))
    assert provider.price_per_hour("n2-standard-2", spot=False) == pytest.approx(2 * 0.031611 + 8 * 0.004237)
    assert sum(path.endswith("/skus") for _, path in google.requests) == (len(CATALOG) + 1) // 2 > 1


def test_hosts_yml_price_wins_and_a_bad_one_is_one_line(lab, google):
    cades = profile_of(lab, "cades", {"provider": "ssh", "address": "ws1.example.org", "price_per_hour": 0.5})
    provider = for_profile(cades)
    assert prices.price_per_hour(cades, provider) == 0.5 and prices.size_words(cades, provider) == "about $0.50/h"
    gce = {
        "provider": "gce",
        "project": PROJECT,
        "zone": ZONE,
        "machine_type": "e2-standard-2",
        "price_per_hour": 0.07,
        "cluster": {"workers": 2, "worker_size": "n2-standard-2", "price_per_hour": 0.09},
    }
    profile = profile_of(lab, "gce", gce)
    provider = for_profile(profile)
    assert prices.size_words(profile, provider) == "e2-standard-2 in us-west1, about $0.07/h"
    assert prices.price_per_hour(profile, provider, "n2-standard-2") == 0.09
    assert not [path for _, path in google.requests if path.endswith("/skus")]  # hosts.yml answered: no lookup
    # A worker size hosts.yml gives no price for is looked up.
    assert prices.price_per_hour(profile, provider, "e2-small") == pytest.approx(0.5 * E2_CORE + 2 * E2_RAM)

    lab.write_hosts({"gce": {**gce, "price_pre_hour": "cheap"}})
    with pytest.raises(config.LabvmError) as refused:
        config.load(lab.hosts)
    assert str(refused.value) == (
        f"{lab.hosts}: profiles.gce.price_pre_hour: unknown key (did you mean 'price_per_hour'?); "
        f"valid keys: {', '.join([*config.COMMON_KEYS, *config.cloud_keys('gce')])}"
    )
    lab.write_hosts({"gce": {**gce, "price_per_hour": "cheap"}})
    with pytest.raises(config.LabvmError) as refused:
        config.load(lab.hosts)
    assert (
        str(refused.value)
        == f"{lab.hosts}: profiles.gce.price_per_hour: must be US dollars an hour, a number like 0.085, not 'cheap'"
    )
    lab.write_hosts(
        {"gce": {**gce, "price_per_hour": 0}}
    )  # a machine the lab does not pay by the hour: a positive control
    assert config.load(lab.hosts).profile("gce").price_per_hour == 0


def test_the_cache_answers_for_days_and_offline_for_longer(lab, google):
    profile = profile_of(
        lab, "gce", {"provider": "gce", "project": PROJECT, "zone": ZONE, "machine_type": "e2-standard-2"}
    )
    expected = 2 * E2_CORE + 8 * E2_RAM
    assert prices.size_words(profile, for_profile(profile)) == "e2-standard-2 in us-west1, about $0.067/h"
    cache = lab.ssh_dir / "labvm" / "run" / "prices.json"
    assert cache.stat().st_mode & 0o777 == 0o600
    assert prices.known_price("gce", str(lab.hosts)) == pytest.approx(expected)  # the keeper's question: no network

    google.billing_skus = []  # the catalog changes; a price younger than 7 days is not asked again
    assert prices.price_per_hour(profile, for_profile(profile)) == pytest.approx(expected)
    assert sum(path.endswith("/skus") for _, path in google.requests) == 1

    stored = json.loads(cache.read_text())
    for entry in stored["prices"].values():
        entry["at"] = time.time() - 8 * 86400
    cache.write_text(json.dumps(stored))
    google.billing_disabled = True  # 8 days old and the catalog refuses: the old price still stands
    assert prices.price_per_hour(profile, for_profile(profile)) == pytest.approx(expected)

    google.billing_disabled = False  # the catalog answers again: asked, and its answer (none) is kept
    prices._unreachable.clear()  # a new run (this process remembered the failure) ...
    stored = json.loads(cache.read_text())
    assert set(stored["unanswered"]) == {"gce/us-west1/on-demand"}  # ... and so did the cache, for every run ...
    stored["unanswered"]["gce/us-west1/on-demand"]["at"] -= prices.UNANSWERED_MINUTES * 60  # ... for a while
    cache.write_text(json.dumps(stored))
    assert prices.price_per_hour(profile, for_profile(profile)) is None
    assert prices.size_words(profile, for_profile(profile)) == "e2-standard-2 in us-west1"

    # known_price trusts a cached price only for the settings it was asked for.
    lab.write_hosts({"gce": {"provider": "gce", "project": PROJECT, "zone": ZONE, "machine_type": "n2-standard-2"}})
    assert prices.known_price("gce", str(lab.hosts)) is None
    assert prices.known_price("nosuch", str(lab.hosts)) is None and prices.known_price("gce", "/nonexistent") is None


def test_a_spot_price_is_kept_an_hour_and_an_on_demand_one_for_days(lab, google):
    """Spot prices follow supply and demand (a new spot price history entry whenever a zone's price changes,
    https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/using-spot-instances-history.html); list prices change
    with a new price list."""
    profile = profile_of(lab, "gce", {"provider": "gce", "project": PROJECT, "zone": ZONE})
    assert prices.lookup(for_profile(profile), "e2-standard-2", True) == pytest.approx(
        2 * E2_SPOT_CORE + 8 * E2_SPOT_RAM
    )
    assert prices.lookup(for_profile(profile), "e2-standard-2", False) == pytest.approx(2 * E2_CORE + 8 * E2_RAM)
    cache = lab.ssh_dir / "labvm" / "run" / "prices.json"
    stored = json.loads(cache.read_text())
    for entry in stored["prices"].values():
        entry["at"] = time.time() - 2 * 3600
    cache.write_text(json.dumps(stored))
    moved = catalog_sku("Spot Preemptible E2 Instance Core running in Americas", "CPU", "Preemptible", 0.007)
    google.billing_skus = [sku for sku in CATALOG if sku["description"] != moved["description"]] + [moved]
    asked = sum(path.endswith("/skus") for _, path in google.requests)
    assert prices.lookup(for_profile(profile), "e2-standard-2", False) == pytest.approx(2 * E2_CORE + 8 * E2_RAM)
    assert sum(path.endswith("/skus") for _, path in google.requests) == asked  # 2 hours old: still the price
    assert prices.lookup(for_profile(profile), "e2-standard-2", True) == pytest.approx(2 * 0.007 + 8 * E2_SPOT_RAM)


def test_a_failed_lookup_is_no_price(aws_offline):
    profile = profile_of(aws_offline, "aws", {"provider": "aws", "region": REGION, "instance_type": "c5.large"})
    provider = for_profile(profile)
    assert prices.price_per_hour(profile, provider) is None  # nothing listens at the Pricing API
    assert prices.size_words(profile, provider) == "c5.large in us-west-2"
    assert prices.lookup(provider, "c5.xlarge", False) is None
    assert not (aws_offline.ssh_dir / "labvm" / "run" / "prices.json").exists() or not json.loads(
        (aws_offline.ssh_dir / "labvm" / "run" / "prices.json").read_text()
    ).get("prices")


@pytest.mark.parametrize(
    "usd, words",
    [
        (0.0042, "about $0.0042/h"),
        (0.085, "about $0.085/h"),
        (0.0167515, "about $0.017/h"),
        (0.5, "about $0.50/h"),
        (1.5, "about $1.50/h"),
        (32.7712, "about $32.77/h"),
        (0.00001, "about $0.00001/h"),
        (0, "about $0/h"),
    ],
)
def test_per_hour_rounds_to_what_a_reader_needs(usd, words):
    assert prices.per_hour(usd) == words


def test_audit_prices_every_instance_and_sums_each_owner(lab, moto_ec2):
    ec2, price_list = moto_ec2, PriceList("0.0208000000")
    lab.extra_env["AWS_ENDPOINT_URL_PRICING"] = price_list.endpoint
    ami = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]

    def run(profile, owner, count=1):
        return [
            i["InstanceId"]
            for i in ec2.run_instances(
                ImageId=ami,
                MinCount=count,
                MaxCount=count,
                InstanceType="t3.small",
                TagSpecifications=tagged(profile, owner),
            )["Instances"]
        ]

    hedy = run("aws", "hedy", 2)
    ada = run("aws", "ada")
    cheap = run("fixed", "ada")
    lab.write_hosts(
        {
            "aws": {"provider": "aws", "region": REGION},
            "fixed": {"provider": "aws", "region": REGION, "price_per_hour": 0.01},
        }
    )
    try:
        table = lab.inv("audit").stdout
        data = json.loads(lab.inv("audit", "--json").stdout)
    finally:
        price_list.server.shutdown()
    assert all(" 0.0208 " in line_of(table, instance) for instance in hedy + ada)
    assert " 0.01 " in line_of(table, cheap[0])  # hosts.yml's price for its profile
    assert "  hedy: 2 running VMs, ≈ $0.0416/h" in table.splitlines()
    assert "  ada: 2 running VMs, ≈ $0.0308/h" in table.splitlines()
    assert data["running_usd_per_hour_by_owner"] == {"hedy": pytest.approx(0.0416), "ada": pytest.approx(0.0308)}
    assert len(price_list.requests) == 1  # asked once, then the cache answered (the second audit too)


def test_up_of_a_machine_labvm_does_not_make_says_the_price_hosts_yml_gives(lab, user, sshd):
    lab.write_hosts({"ws": ssh_profile(user, sshd, price_per_hour=0.25), "plain": ssh_profile(user, sshd)})
    try:
        assert "ws: about $0.25/h" in lab.inv("up", "--host", "ws", "--no-browser").stdout.splitlines()
        assert "$" not in lab.inv("up", "--host", "plain", "--no-browser").stdout  # none given: none shown
    finally:
        lab.inv("down", "--host", "ws", check=False)
        lab.inv("down", "--host", "plain", check=False)


def test_status_shows_the_machine_s_price_and_its_hours_since_the_last_start(lab, user, sshd, moto_ec2):
    ec2, price_list = moto_ec2, PriceList("0.0208000000")
    lab.extra_env["AWS_ENDPOINT_URL_PRICING"] = price_list.endpoint
    ami = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    ec2.run_instances(
        ImageId=ami, MinCount=1, MaxCount=1, InstanceType="t3.small", TagSpecifications=tagged("aws", "hedy")
    )
    worker_tags = {"labvm:cluster": "aws", "labvm:role": "worker", "labvm:index": "1", "Name": "labvm-aws-w1"}
    (worker,) = ec2.run_instances(
        ImageId=ami,
        MinCount=1,
        MaxCount=1,
        InstanceType="t3.medium",
        TagSpecifications=[
            {
                "ResourceType": "instance",
                "Tags": tagged("aws", "hedy")[0]["Tags"] + [{"Key": k, "Value": v} for k, v in worker_tags.items()],
            }
        ],
    )["Instances"]
    cluster = {"workers": 1, "worker_size": "t3.medium", "price_per_hour": 0.05}
    lab.write_hosts(
        {
            "aws": ssh_profile(
                user, sshd, provider="aws", region=REGION, instance_type="t3.small", image=ami, cluster=cluster
            ),
            "ws": ssh_profile(user, sshd, price_per_hour=0.25),
            "plain": ssh_profile(user, sshd),
        }
    )
    try:
        shown = lab.inv("status").stdout.splitlines()
    finally:
        price_list.server.shutdown()
    assert shown[shown.index("aws (aws, 127.0.0.1:%d): reachable" % sshd.port) + 1].startswith(
        "  machine: t3.small in us-west-2, about $0.021/h, running "
    )
    assert shown[shown.index("aws (aws, 127.0.0.1:%d): reachable" % sshd.port) + 1].endswith(" since its last start")
    (line,) = [
        line for line in shown if line.startswith(f"  cluster: labvm-aws-w1 ({worker['InstanceId']}): VM running, ")
    ]
    assert line.startswith(
        f"  cluster: labvm-aws-w1 ({worker['InstanceId']}): VM running, t3.medium, about $0.05/h, running "
    )
    assert shown[shown.index("ws (ssh, 127.0.0.1:%d): reachable" % sshd.port) + 1] == "  machine: about $0.25/h"
    assert not shown[shown.index("plain (ssh, 127.0.0.1:%d): reachable" % sshd.port) + 1].startswith("  machine:")


def test_status_of_a_failed_lookup_shows_no_price_and_succeeds(lab, user, sshd, moto_ec2):
    ec2 = moto_ec2
    lab.extra_env["AWS_ENDPOINT_URL_PRICING"] = CLOSED
    ami = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    (instance,) = ec2.run_instances(
        ImageId=ami, MinCount=1, MaxCount=1, InstanceType="t3.small", TagSpecifications=tagged("aws", "hedy")
    )["Instances"]
    lab.write_hosts(
        {"aws": ssh_profile(user, sshd, provider="aws", region=REGION, instance_type="t3.small", image=ami)}
    )
    result = lab.inv("status", "--host", "aws")
    machine = next(line for line in result.stdout.splitlines() if line.startswith("  machine: "))
    assert machine.startswith("  machine: t3.small in us-west-2, running ") and "$" not in result.stdout


def test_a_price_endpoint_that_never_answers_delays_one_run_only(lab, user, sshd, moto_ec2):
    """A Price List that accepts and never answers: the first `status` gives up after LOOKUP_SECONDS and
    remembers it on disk; the next `status` (another process) does not ask, and so does not wait."""
    ec2, black_hole = moto_ec2, BlackHole()
    lab.extra_env["AWS_ENDPOINT_URL_PRICING"] = black_hole.endpoint
    ami = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    ec2.run_instances(
        ImageId=ami, MinCount=1, MaxCount=1, InstanceType="t3.small", TagSpecifications=tagged("aws", "hedy")
    )
    lab.write_hosts(
        {"aws": ssh_profile(user, sshd, provider="aws", region=REGION, instance_type="t3.small", image=ami)}
    )
    try:
        took = []
        for _ in range(2):
            start = time.monotonic()
            result = lab.inv("status", "--host", "aws")
            took.append(time.monotonic() - start)
            machine = next(line for line in result.stdout.splitlines() if line.startswith("  machine: "))
            assert machine.startswith("  machine: t3.small in us-west-2, running ") and "$" not in result.stdout
            if not black_hole.connections:
                raise AssertionError("the first status never asked the price endpoint")
        asked_first = black_hole.connections
    finally:
        black_hole.close()
    assert took[0] >= prices.LOOKUP_SECONDS  # the first run waited for the price, once
    # The second did not ask, so it did not wait (its time is bench/bench_prices.py's: on a loaded machine
    # two runs of `status` differ by more than LOOKUP_SECONDS).
    assert black_hole.connections == asked_first, took


def test_aws_monthly_prices_are_the_price_list_s_storage_and_address_rates(aws_offline):
    provider = for_profile(profile_of(aws_offline, "aws", {"provider": "aws", "region": REGION}))

    def filters(**wanted):
        return [
            {"Type": "TERM_MATCH", "Field": field, "Value": value}
            for field, value in {"regionCode": REGION, "locationType": "AWS Region", **wanted}.items()
        ]

    def answer(key):
        return {"FormatVersion": "aws_v1", "PriceList": [json.dumps(p) for p in STORAGE_PRICES[key]]}

    with Stubber(provider.parts.price.pricing) as stub:
        stub.add_response(
            "get_products",
            answer(("AmazonEC2", "Storage", "gp3")),
            {
                "ServiceCode": "AmazonEC2",
                "MaxResults": 100,
                "Filters": filters(productFamily="Storage", volumeApiName="gp3"),
            },
        )
        assert provider.price_per_month("volume") == pytest.approx(0.08)  # labvm's volumes are gp3: per GB-month
        snapshots = {
            "ServiceCode": "AmazonEC2",
            "MaxResults": 100,
            "Filters": filters(productFamily="Storage Snapshot"),
        }
        stub.add_response("get_products", answer(("AmazonEC2", "Storage Snapshot", "")), snapshots)
        assert provider.price_per_month("snapshot") == pytest.approx(0.05)  # not the archive tier beside it
        stub.add_response("get_products", answer(("AmazonEC2", "Storage Snapshot", "")), snapshots)
        assert provider.price_per_month("image") == pytest.approx(0.05)  # an AMI is billed for its snapshots
        addresses = {"ServiceCode": "AmazonVPC", "MaxResults": 100, "Filters": filters(group="VPCPublicIPv4Address")}
        for state in ("unattached", "attached"):
            stub.add_response("get_products", answer(("AmazonVPC", "", "")), addresses)
            assert provider.price_per_month("address", state) == pytest.approx(0.005 * 730)  # $/h x 730 hours
        stub.add_response("get_products", {"FormatVersion": "aws_v1", "PriceList": []}, None)
        assert provider.price_per_month("volume", volume_type="io9") is None  # not in the price list: no price
        stub.assert_no_pending_responses()


def test_gce_monthly_prices_are_the_catalog_s_storage_and_address_skus(lab, google):
    provider = for_profile(profile_of(lab, "gce", {"provider": "gce", "project": PROJECT, "zone": ZONE}))
    assert provider.price_per_month("volume") == pytest.approx(0.04)  # pd-standard, not the regional disk's 0.08
    assert provider.price_per_month("volume", volume_type="pd-balanced") == pytest.approx(0.1)
    assert provider.price_per_month("volume", volume_type="pd-extreme") is None  # no such SKU here: no price
    assert provider.price_per_month("image") == pytest.approx(0.05)  # a global SKU
    assert provider.price_per_month("snapshot") == pytest.approx(0.05)  # not the early-deletion charge
    assert provider.price_per_month("address", "unattached") == pytest.approx(0.01 * 730)  # not Belgium's
    assert provider.price_per_month("address", "attached") == pytest.approx(0.005 * 730)
    assert sum(path.endswith("/skus") for _, path in google.requests) == 1


def test_monthly_prices_are_cached_used_offline_and_a_failure_is_silent(lab, google):
    profile = profile_of(lab, "gce", {"provider": "gce", "project": PROJECT, "zone": ZONE})
    assert prices.per_month(for_profile(profile), "image", 10.0) == pytest.approx(0.5)
    assert prices.per_month(for_profile(profile), "address", None, "unattached") == pytest.approx(7.3)
    assert prices.per_month(for_profile(profile), "image", None) is None  # a size nobody knows: no price
    google.billing_skus = []  # a cached price is not asked again for 7 days
    assert prices.per_month(for_profile(profile), "image", 20.0) == pytest.approx(1.0)
    assert sum(path.endswith("/skus") for _, path in google.requests) == 2  # once per provider: image, address

    cache = lab.ssh_dir / "labvm" / "run" / "prices.json"
    stored = json.loads(cache.read_text())
    assert stored["prices"]["gce/us-west1/month/image/-"]["usd"] == pytest.approx(0.05)
    for entry in stored["prices"].values():
        entry["at"] = time.time() - 8 * 86400
    cache.write_text(json.dumps(stored))
    google.billing_disabled = True  # too old, and the catalog refuses: the old price stands
    assert prices.per_month(for_profile(profile), "image", 10.0) == pytest.approx(0.5)
    assert prices.per_month(for_profile(profile), "snapshot", 10.0) is None  # never cached: no price, no error
    assert "gce/us-west1/month/snapshot/-" not in json.loads(cache.read_text())["prices"]


def test_a_failed_monthly_lookup_is_no_price(aws_offline):
    provider = for_profile(profile_of(aws_offline, "aws", {"provider": "aws", "region": REGION}))
    assert prices.per_month(provider, "volume", 30.0) is None  # nothing listens at the Pricing API
    assert prices.per_month(provider, "address", None, "unattached") is None
    cache = aws_offline.ssh_dir / "labvm" / "run" / "prices.json"
    assert not cache.exists() or not json.loads(cache.read_text()).get("prices")


def test_audit_prices_disks_addresses_images_and_snapshots_by_the_month(lab, moto_ec2):
    ec2, price_list = moto_ec2, PriceList("0.0208000000", STORAGE_PRICES)
    lab.extra_env["AWS_ENDPOINT_URL_PRICING"] = price_list.endpoint
    ami = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    (running,) = [
        i["InstanceId"]
        for i in ec2.run_instances(
            ImageId=ami, MinCount=1, MaxCount=1, InstanceType="t3.small", TagSpecifications=tagged("aws", "hedy")
        )["Instances"]
    ]
    volume = ec2.create_volume(
        AvailabilityZone=f"{REGION}a", Size=5, VolumeType="gp3", TagSpecifications=tagged("aws", "hedy", kind="volume")
    )["VolumeId"]
    snapshot = ec2.create_snapshot(VolumeId=volume, TagSpecifications=tagged("aws", "hedy", kind="snapshot"))[
        "SnapshotId"
    ]
    image = ec2.create_image(
        InstanceId=running, Name="labvm-aws-1", TagSpecifications=tagged("aws", "hedy", kind="image")
    )["ImageId"]
    image_gb = sum(
        m["Ebs"]["VolumeSize"] for m in ec2.describe_images(ImageIds=[image])["Images"][0]["BlockDeviceMappings"]
    )
    attached = ec2.allocate_address(Domain="vpc", TagSpecifications=tagged("aws", "hedy", kind="elastic-ip"))[
        "AllocationId"
    ]
    ec2.associate_address(InstanceId=running, AllocationId=attached)
    loose = ec2.allocate_address(Domain="vpc", TagSpecifications=tagged("aws", "ada", kind="elastic-ip"))[
        "AllocationId"
    ]
    lab.write_hosts({"aws": {"provider": "aws", "region": REGION}})
    try:
        table = lab.inv("audit").stdout
        asked = len(price_list.requests)
        data = json.loads(lab.inv("audit", "--json").stdout)
    finally:
        price_list.server.shutdown()

    assert table.splitlines()[0].split()[8:10] == ["$/H", "$/MO"]
    assert " 0.40 " in line_of(table, volume)  # 5 GB x $0.08
    assert " 0.25 " in line_of(table, snapshot)  # 5 GB x $0.05
    assert f" {image_gb * 0.05:.2f} " in line_of(table, image)
    assert " 3.65 " in line_of(table, attached) and " 3.65 " in line_of(table, loose)  # $0.005/h x 730 hours
    hedy = 0.4 + 0.25 + image_gb * 0.05 + 3.65
    assert (
        f"  hedy: 1 running VM, ≈ $0.0208/h; ≈ ${hedy:.2f}/month for disks, addresses, images and snapshots"
        in table.splitlines()
    )
    assert "  ada: no running VM; ≈ $3.65/month for disks, addresses, images and snapshots" in table.splitlines()
    assert "$/mo —" not in table
    rows = {row["id"]: row for row in data["resources"]}
    assert rows[volume]["monthly_usd"] == pytest.approx(0.4) and rows[running]["monthly_usd"] is None
    assert data["kept_usd_per_month_by_owner"] == {"hedy": pytest.approx(hedy), "ada": pytest.approx(3.65)}
    assert data["kept_usd_per_month"] == pytest.approx(hedy + 3.65)
    # the instance type, the volume, snapshot and image rates, both address rates; then the cache answered
    assert asked == 6 and len(price_list.requests) == 6


def test_the_data_volumes_price_is_known_to_the_keeper_only_for_the_data_settings_it_was_priced_for(lab):
    """The asleep page's Data line asks no cloud: the price labvm last gave the volume (status, down), for the
    same cloud and data: settings; a profile whose data: changed shows its size alone."""
    settings = {"provider": "gce", "project": PROJECT, "zone": ZONE}
    lab.write_hosts({"gce": {**settings, "data": {"size": 100}}, "plain": settings})
    profile = config.load(lab.hosts).profile("gce")
    assert prices.known_data_month("gce", str(lab.hosts)) == (100, None)
    prices.remember_data_month(profile, 8.0)
    assert prices.known_data_month("gce", str(lab.hosts)) == (100, 8.0)
    assert prices.known_data_month("plain", str(lab.hosts)) is None  # no data:
    lab.write_hosts({"gce": {**settings, "data": {"size": 200}}})
    assert prices.known_data_month("gce", str(lab.hosts)) == (200, None)
    assert prices.known_data_month("gce", "/nonexistent") is None
