"""GPU instance types on moto: the Deep Learning AMI when hosts.yml names no image, `check`'s image and GPU quota
lines, and EC2's capacity refusal with the zones that offer the type.  moto's instance types carry EC2's GpuInfo
(moto/ec2/resources/instance_types.json: g4dn.xlarge, 1 NVIDIA T4 of 16384 MiB; g5g.xlarge, arm64)."""

import pytest
from botocore.stub import Stubber

from aws_world import REGION, driver_images, labvm_instances, provider_for, public_key, shared_image
from moto_ec2_rules import NoCapacity


@pytest.fixture
def sts(moto, ec2, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", moto)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SERVICE_QUOTAS", moto)
    return ec2


def by_name(checks) -> dict:
    return {c.name: c for c in checks}


def test_a_gpu_size_without_an_image_starts_from_the_deep_learning_ami(lab, ec2):
    dlami = driver_images()
    made = provider_for(lab, instance_type="g4dn.xlarge").create(public_key=public_key())
    (instance,) = labvm_instances(ec2, "running")
    assert made.size == "g4dn.xlarge" and instance["ImageId"] == dlami["x86_64"]
    # G5g is Graviton: the arm64 DLAMI, by the type's SupportedArchitectures.
    assert provider_for(lab, instance_type="g5g.xlarge").parts.images.launched(None) == dlami["arm64"]


def test_an_image_in_hosts_yml_wins_over_the_deep_learning_ami(lab, ec2):
    driver_images()
    image = shared_image(ec2)
    provider_for(lab, instance_type="g4dn.xlarge", image=image).create(public_key=public_key())
    assert [i["ImageId"] for i in labvm_instances(ec2, "running")] == [image]
    # The default alias written out is a choice too: Canonical's Ubuntu, asked of SSM (moto has no such parameter).
    from labvm.errors import LabvmError

    with pytest.raises(LabvmError, match="ParameterNotFound"):
        provider_for(lab, instance_type="g4dn.xlarge", image="ubuntu-24.04").parts.images.launched(None)


def test_check_says_which_image_a_gpu_size_gets_and_warns_of_one_without_a_driver(lab, sts):
    dlami = driver_images()
    key = public_key()
    default = by_name(provider_for(lab, instance_type="g4dn.xlarge").preflight(key))["image"]
    assert default.ok and default.detail == (
        f"{dlami['x86_64']} (Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 24.04) 20261006): AWS's Deep "
        "Learning AMI, NVIDIA's driver for g4dn.xlarge's 1 NVIDIA T4 (16 GiB)"
    )
    named = by_name(provider_for(lab, instance_type="g4dn.xlarge", image=dlami["x86_64"]).preflight(key))["image"]
    assert named.ok and "warning" not in named.detail and "for g4dn.xlarge's 1 NVIDIA T4" in named.detail
    plain = by_name(provider_for(lab, instance_type="g4dn.xlarge", image=shared_image(sts)).preflight(key))["image"]
    assert plain.ok and "warning: by its name and description (a guess) it carries no NVIDIA driver" in plain.detail
    assert plain.detail.endswith("profiles.aws.image labvm launches AWS's Deep Learning AMI")
    # A type without GPUs: the line as it always was.
    cpu = by_name(provider_for(lab, image=shared_image(sts)).preflight(key))["image"]
    assert cpu.ok and "NVIDIA" not in cpu.detail and "warning" not in cpu.detail


@pytest.mark.parametrize(
    "spot,code,market",
    [  # https://docs.aws.amazon.com/ec2/latest/instancetypes/ec2-instance-quotas.html: "Running On-Demand G and VT
        # instances" L-DB2E81BA, "All G and VT Spot Instance Requests" L-3819A6DF, in vCPUs
        (False, "L-DB2E81BA", "on-demand"),
        (True, "L-3819A6DF", "spot"),
    ],
)
def test_check_counts_a_gpu_size_against_the_g_and_vt_quota(lab, sts, spot, code, market):
    image = shared_image(sts)

    def quota_line(value: float):
        provider = provider_for(lab, image=image, instance_type="g4dn.xlarge", spot=spot)
        with Stubber(provider.parts.preflight.quotas) as quotas:
            # https://docs.aws.amazon.com/servicequotas/2019-06-24/apireference/API_GetServiceQuota.html
            quotas.add_response(
                "get_service_quota",
                {"Quota": {"ServiceCode": "ec2", "QuotaCode": code, "Value": value}},
                {"ServiceCode": "ec2", "QuotaCode": code},
            )
            return by_name(provider.preflight(public_key()))["quota"]

    fits = quota_line(8.0)
    assert fits.ok and fits.detail == (
        f"to start: head (new, g4dn.xlarge): 0 of 8 {market} G and VT vCPUs in use, 4 more fit"
    )
    # A new account's G and VT quota is often 0: the line names the quota to request.
    none = quota_line(0.0)
    assert not none.ok and none.detail.startswith(f"0 of 0 {market} G and VT vCPUs in use and to start")
    assert f"request more in Service Quotas (EC2, {code})" in none.detail


def test_no_capacity_names_the_zones_that_offer_the_type(lab, ec2):
    """EC2 asked which zones offer the type (DescribeInstanceTypeOfferings, availability-zone), not guessed."""
    from labvm.errors import LabvmError

    driver_images()
    provider = provider_for(lab, instance_type="g4dn.xlarge")
    with NoCapacity("g4dn.xlarge", f"{REGION}a"), pytest.raises(LabvmError) as raised:
        provider.create(public_key=public_key())
    said = str(raised.value)
    assert said.startswith("AWS InsufficientInstanceCapacity: We currently do not have sufficient g4dn.xlarge")
    # The default VPC: EC2 chose the zone, so every zone that offers the type is named (moto's us-west-2 a-c).
    assert f"g4dn.xlarge is offered in {REGION}a, {REGION}b, {REGION}c" in said and "\n" not in said
    assert said.endswith("profiles.aws.subnet to a subnet of one of them")
    assert labvm_instances(ec2, "pending", "running") == []


def test_no_capacity_to_start_a_stopped_instance_names_the_way_to_another_zone(lab, ec2):
    from labvm.errors import LabvmError

    driver_images()
    provider = provider_for(lab, instance_type="g4dn.xlarge")
    made = provider.create(public_key=public_key())
    stopped = provider.stop(made)
    with NoCapacity("g4dn.xlarge", made.zone), pytest.raises(LabvmError) as raised:
        provider.start(stopped)
    said = str(raised.value)
    assert said.startswith("AWS InsufficientInstanceCapacity:") and made.zone not in said.split("offered in")[1]
    assert "`inv snapshot --host aws`, `inv terminate --host aws`, set " in said and "profiles.aws.subnet to" in said
    assert said.endswith("`inv up --host aws --from-image latest`")
