"""`inv check` for AWS: read-only questions on moto, one broken account per kind, each one line
with the next step, and nothing made."""

import pytest
from botocore.stub import Stubber

from aws_world import REGION, delete_default_vpc, owned, provider_for, public_key, shared_image


@pytest.fixture
def sts(moto, ec2, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", moto)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SERVICE_QUOTAS", moto)
    return ec2


def by_name(checks) -> dict:
    return {c.name: c for c in checks}


def test_a_ready_account_passes_every_check_and_nothing_is_made(lab, sts):
    checks = provider_for(lab, image=shared_image(sts)).preflight(public_key())
    assert [c.name for c in checks] == [
        "credentials",
        "region",
        "network",
        "image",
        "size",
        "quota",
        "key pair",
        "ssh rule",
    ]
    assert all(c.ok for c in checks), checks
    found = by_name(checks)
    assert found["credentials"].detail.startswith("arn:aws:")
    # moto has no EC2 quotas in Service Quotas: said honestly, not passed off as checked.
    assert found["quota"].detail.startswith("not checked: Service Quotas could not be read")
    assert "is imported at create" in found["key pair"].detail
    assert found["ssh rule"].detail == "labvm-aws-hedy is made at create, admitting 127.0.0.1/32 to port 22"
    assert owned(sts, "hedy") == {"instances": [], "groups": [], "keys": [], "addresses": []}


def test_no_credentials_is_one_failing_check(lab, moto, monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", moto)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    import boto3

    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # it keeps the credentials it found earlier
    (check,) = provider_for(lab, image="ami-12345678").preflight(public_key())
    assert check.name == "credentials" and not check.ok and "aws configure" in check.detail


def test_each_broken_part_of_an_account_fails_its_own_check(lab, sts):
    key = public_key()
    image = shared_image(sts)
    assert (
        "AMI ids differ per region"
        in by_name(provider_for(lab, image="ami-00000000deadbeef0").preflight(key))["image"].detail
    )
    typo = by_name(provider_for(lab, image=image, instance_type="t3.smal").preflight(key))["size"]
    assert not typo.ok and "profiles.aws.instance_type: t3.smal is not offered in us-west-2" in typo.detail

    provider = provider_for(lab, image=image)
    name = by_name(provider.preflight(key))["key pair"].detail.split()[0]
    sts.import_key_pair(KeyName=name, PublicKeyMaterial=public_key().encode())  # the name, another key
    pair = by_name(provider_for(lab, image=image).preflight(key))["key pair"]
    assert not pair.ok and f"key pair {name} holds another key" in pair.detail

    delete_default_vpc(sts)
    network = by_name(provider_for(lab, image=image).preflight(key))["network"]
    assert not network.ok and "profiles.aws.subnet" in network.detail and "aws ec2 describe-subnets" in network.detail


def test_quota_headroom_from_service_quotas(lab, sts):
    provider = provider_for(lab, image=shared_image(sts), instance_type="t3.xlarge")
    made = provider_for(lab, image=shared_image(sts), instance_type="t3.large")
    made.create(public_key=public_key())  # 2 vCPUs running
    with Stubber(provider.parts.preflight.quotas) as quotas:
        # https://docs.aws.amazon.com/servicequotas/2019-06-24/apireference/API_GetServiceQuota.html; L-1216C47A is
        # "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances", in vCPUs
        # (https://docs.aws.amazon.com/ec2/latest/instancetypes/ec2-instance-quotas.html).
        quotas.add_response(
            "get_service_quota",
            {"Quota": {"ServiceCode": "ec2", "QuotaCode": "L-1216C47A", "Value": 5.0}},
            {"ServiceCode": "ec2", "QuotaCode": "L-1216C47A"},
        )
        quota = by_name(provider.preflight(public_key()))["quota"]
    assert not quota.ok and quota.detail.startswith("2 of 5 on-demand vCPUs in use and t3.xlarge needs 4")
    assert "Service Quotas" in quota.detail


def test_ssh_rule_check_says_what_up_will_change(lab, sts):
    image = shared_image(sts)
    provider_for(lab, image=image, ssh_cidr="203.0.113.5/32").create(public_key=public_key())
    rule = by_name(provider_for(lab, image=image, ssh_cidr="198.51.100.7/32").preflight(public_key()))["ssh rule"]
    assert rule.ok and rule.detail == "labvm-aws-hedy admits 203.0.113.5/32; `inv up` changes it to 198.51.100.7/32"


def region(status: str) -> dict:
    """DescribeRegions' answer (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_Region.html)."""
    return {"Regions": [{"RegionName": REGION, "Endpoint": f"ec2.{REGION}.amazonaws.com", "OptInStatus": status}]}


@pytest.mark.parametrize(
    "status,said",
    [
        ("not-opted-in", f"region {REGION} is not enabled for this account; enable it in the AWS console"),
        ("opt-in-not-required", "AWS rejected the credentials; check AWS_PROFILE"),
    ],
)
def test_auth_failure_names_a_region_not_opted_in(lab, status, said):
    """A region the account has not enabled answers every call AuthFailure, as bad credentials do
    (https://docs.aws.amazon.com/accounts/latest/reference/manage-acct-regions.html): labvm asks an enabled
    region (DescribeRegions, AllRegions) which of the two it is."""
    from labvm.errors import LabvmError

    provider = provider_for(lab, image="ami-12345678")
    with Stubber(provider.api.ec2) as stub, Stubber(provider.api.enabled_region_ec2) as enabled:
        stub.add_client_error(
            "describe_instances", "AuthFailure", "AWS was not able to validate the provided access credentials"
        )
        enabled.add_response(
            "describe_regions",
            region(status),
            {"AllRegions": True, "Filters": [{"Name": "region-name", "Values": [REGION]}]},
        )
        with pytest.raises(LabvmError) as raised:
            provider.find()
    assert str(raised.value).startswith("AWS AuthFailure: AWS was not able to validate") and said in str(raised.value)
    assert provider.api.enabled_region_ec2.meta.region_name == "us-east-1" and "\n" not in str(raised.value)


def test_region_check_asks_an_enabled_region(lab, sts):
    provider = provider_for(lab, image=shared_image(sts))
    with Stubber(provider.api.enabled_region_ec2) as enabled:
        enabled.add_response("describe_regions", region("not-opted-in"))
        found = by_name(provider.preflight(public_key()))["region"]
    assert not found.ok and f"profiles.aws.region: {REGION} is not enabled for this account" in found.detail
