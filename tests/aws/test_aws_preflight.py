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


def standard_quota(quotas, value: float, code: str = "L-1216C47A") -> None:
    """Service Quotas' answer for one vCPU quota
    (https://docs.aws.amazon.com/servicequotas/2019-06-24/apireference/API_GetServiceQuota.html)."""
    quotas.add_response(
        "get_service_quota",
        {"Quota": {"ServiceCode": "ec2", "QuotaCode": code, "Value": value}},
        {"ServiceCode": "ec2", "QuotaCode": code},
    )


def test_quota_headroom_from_service_quotas(lab, sts, monkeypatch):
    monkeypatch.setenv("LABVM_OWNER", "grace")  # a lab member's instance: the account's quota is shared
    provider_for(lab, image=shared_image(sts), instance_type="t3.large").create(public_key=public_key())
    monkeypatch.setenv("LABVM_OWNER", "hedy")  # 2 vCPUs running, not hedy's
    provider = provider_for(lab, image=shared_image(sts), instance_type="t3.xlarge")
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
    assert not quota.ok and quota.detail.startswith(
        "2 of 5 on-demand Standard (A, C, D, H, I, M, R, T, Z) vCPUs in use and to start: head (new, t3.xlarge) needs 4"
    )
    assert "Service Quotas" in quota.detail and "L-1216C47A" in quota.detail


def test_quota_counts_what_up_would_start_once(lab, sts):
    """A running head adds nothing (it was counted twice: in use, and again as wanted), a stopped one its
    own size, each missing worker its size (issue 28, A5)."""
    image = shared_image(sts)
    head = provider_for(lab, image=image, instance_type="t3.large")
    made = head.create(public_key=public_key())  # 2 vCPUs, hedy's own head

    def quota_line(value: float, **settings):
        provider = provider_for(lab, image=image, instance_type="t3.large", **settings)
        with Stubber(provider.parts.preflight.quotas) as quotas:
            standard_quota(quotas, value)
            return by_name(provider.preflight(public_key()))["quota"]

    running = provider_for(lab, image=image, instance_type="t3.large").preflight(public_key())
    assert by_name(running)["quota"].ok and by_name(running)["quota"].detail == "nothing to start"
    workers = quota_line(3.0, cluster={"workers": 1})
    assert not workers.ok and "2 of 3 on-demand" in workers.detail and "w1 (new, t3.large) needs 2" in workers.detail
    assert quota_line(4.0, cluster={"workers": 1}).ok

    head.stop(made)
    stopped = quota_line(2.0)
    assert stopped.ok and stopped.detail == (
        "to start: head (stopped, t3.large): 0 of 2 on-demand Standard (A, C, D, H, I, M, R, T, Z) vCPUs in use, "
        "2 more fit"
    )
    assert not quota_line(1.0).ok


@pytest.mark.parametrize(
    "instance_type,market,family,code",
    [  # https://docs.aws.amazon.com/ec2/latest/instancetypes/ec2-instance-quotas.html
        ("t3.small", "on-demand", "Standard (A, C, D, H, I, M, R, T, Z)", "L-1216C47A"),
        ("im4gn.large", "on-demand", "Standard (A, C, D, H, I, M, R, T, Z)", "L-1216C47A"),
        ("m7i-flex.large", "spot", "Standard (A, C, D, H, I, M, R, T, Z)", "L-34B43A08"),
        ("inf2.xlarge", "on-demand", "Inf", "L-1945791B"),
        ("inf2.xlarge", "spot", "Inf", "L-B5D1601B"),
        ("dl1.24xlarge", "on-demand", "DL", "L-6E869C2A"),
        ("hpc7g.4xlarge", "on-demand", "HPC", "L-F7808C92"),
        ("hpc7g.4xlarge", "spot", "", ""),  # HPC instances have no Spot quota: run on demand only
        ("trn1.2xlarge", "on-demand", "Trn", "L-2C3B7624"),
        ("trn1.2xlarge", "spot", "Trn", "L-6B0D517C"),
        ("u-6tb1.metal", "on-demand", "High Memory", "L-43DA4232"),
        ("vt1.3xlarge", "on-demand", "G and VT", "L-DB2E81BA"),
        ("g5.xlarge", "spot", "G and VT", "L-3819A6DF"),
        ("gr6.4xlarge", "on-demand", "G and VT", "L-DB2E81BA"),
        ("f1.2xlarge", "on-demand", "F", "L-74FC7D96"),
        ("p4d.24xlarge", "on-demand", "P", "L-417A185B"),
        ("p4d.24xlarge", "spot", "P", "L-7212CCBC"),
        ("p5.48xlarge", "spot", "P5", "L-C4BD4855"),
        ("x2idn.16xlarge", "on-demand", "X", "L-7295265B"),
        ("mac2.metal", "on-demand", "", ""),  # Dedicated Hosts: counted in hosts, not vCPUs
    ],
)
def test_each_family_counts_against_its_own_vcpu_quota(instance_type, market, family, code):
    from labvm.providers.aws.preflight import vcpu_quota

    assert vcpu_quota(instance_type, market) == (family, code)


def test_a_type_whose_quota_labvm_does_not_know_is_said_not_counted_as_standard(lab, sts):
    image = shared_image(sts)
    inferentia = provider_for(lab, image=image, instance_type="inf2.xlarge")
    with Stubber(inferentia.parts.preflight.quotas) as quotas:
        standard_quota(quotas, 0.0, code="L-1945791B")  # Inf's own quota, 0 by default; asked, not Standard's
        quota = by_name(inferentia.preflight(public_key()))["quota"]
    assert not quota.ok and "on-demand Inf vCPUs" in quota.detail and "L-1945791B" in quota.detail

    quota = by_name(provider_for(lab, image=image, instance_type="mac2.metal").preflight(public_key()))["quota"]
    assert quota.ok and quota.detail == (
        "not checked: labvm knows no on-demand vCPU quota of mac2.metal; to start: head (new, mac2.metal)"
    )


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
