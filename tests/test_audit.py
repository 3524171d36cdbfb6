"""`inv audit` over moto's EC2 server, the OpenStack fake and the GCE fake at once, with a planted
zombie of each kind made through the clouds' own SDKs; `inv` runs in a subprocess, as a user runs it.

No SSH: audit reads cloud APIs only.  Where moto differs from AWS the test says so.
"""

import json
import time
import urllib.request
from datetime import datetime, timedelta, timezone

import boto3
import openstack
import pytest
from google.cloud import compute_v1

from fake_gce import FakeGce
from fake_openstack import FakeOpenStack
from aws_world import CLOSED, REGION, STORAGE_PRICES, PriceList, aws_env, line_of, tagged
from gce_world import PROJECT, ZONE, Clients, instance_resource
from gce_world import REGION as GCE_REGION
from openstack_world import FAST, boot

pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # openstacksdk's own notices


@pytest.fixture
def ec2(moto, lab):
    def reset():  # moto's state is one per process, shared with every other module's moto server
        urllib.request.urlopen(urllib.request.Request(f"{moto}/moto-api/reset", method="POST"))

    reset()
    lab.extra_env.update(aws_env(moto), AWS_ENDPOINT_URL_PRICING=CLOSED, LABVM_OWNER="hedy")
    yield boto3.client(
        "ec2", endpoint_url=moto, region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    reset()


@pytest.fixture
def cades(lab, monkeypatch):
    with FakeOpenStack() as fake:
        clouds = lab.directory / "clouds.yaml"
        clouds.write_text(fake.clouds_yaml("cades"))
        lab.extra_env.update(OS_CLIENT_CONFIG_FILE=str(clouds), OS_CLOUD="")
        monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(clouds))
        conn = openstack.connect(cloud="cades")
        yield fake, conn
        conn.close()


@pytest.fixture
def gce(lab, monkeypatch):
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)  # no ADC: labvm sends none to the fake
    with FakeGce() as fake:
        lab.extra_env.update(
            LABVM_GCE_ENDPOINT=fake.endpoint,
            # google.auth must never probe a metadata server (it reads NO_GCE_CHECK as "true" only).
            NO_GCE_CHECK="true",
            GCE_METADATA_HOST="127.0.0.1:9",
            GCE_METADATA_IP="127.0.0.1:9",
            CLOUDSDK_CONFIG=str(lab.directory / "gcloud"),
        )
        yield Clients(fake.endpoint)


AWS = {"provider": "aws", "region": REGION}
CADES = {"provider": "openstack", "cloud": "cades", "user": "cades"}
GCE = {"provider": "gce", "project": PROJECT, "zone": ZONE}


def plant_aws(ec2):
    ami = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]

    def run(profile, owner="hedy", **extra):
        return ec2.run_instances(
            ImageId=ami,
            MinCount=1,
            MaxCount=1,
            InstanceType="t3.small",
            TagSpecifications=tagged(profile, owner),
            **extra,
        )["Instances"][0]["InstanceId"]

    planted = {
        "running": run("aws"),
        "spot": run(
            "aws2",
            "ada",
            InstanceMarketOptions={
                "MarketType": "spot",
                "SpotOptions": {"SpotInstanceType": "persistent", "InstanceInterruptionBehavior": "stop"},
            },
        ),
        "stopped": run("aws2"),
        "gone": run("gone"),
        "untagged": ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"],
    }
    ec2.stop_instances(InstanceIds=[planted["stopped"]])
    images = []
    for n in range(4):
        images.append(
            ec2.create_image(
                InstanceId=planted["running"], Name=f"labvm-aws-{n}", TagSpecifications=tagged("aws", kind="image")
            )["ImageId"]
        )
        if n == 0:
            time.sleep(1.1)  # moto's CreationDate has whole seconds: the first image is the oldest
    for image in ec2.describe_images(ImageIds=images)["Images"]:  # tagged as `inv snapshot` tags them
        ec2.create_tags(
            Resources=[m["Ebs"]["SnapshotId"] for m in image["BlockDeviceMappings"]], Tags=tagged("aws")[0]["Tags"]
        )
    planted["old_image"], planted["images"] = images[0], images[1:]
    planted["volume"] = ec2.create_volume(
        AvailabilityZone=f"{REGION}a", Size=5, TagSpecifications=tagged("aws", kind="volume")
    )["VolumeId"]
    planted["snapshot"] = ec2.create_snapshot(
        VolumeId=planted["volume"], TagSpecifications=tagged("aws", kind="snapshot")
    )["SnapshotId"]
    attached = ec2.allocate_address(Domain="vpc", TagSpecifications=tagged("aws", kind="elastic-ip"))
    ec2.associate_address(InstanceId=planted["running"], AllocationId=attached["AllocationId"])
    planted["attached_ip"] = attached["AllocationId"]
    planted["loose_ip"] = ec2.allocate_address(Domain="vpc", TagSpecifications=tagged("aws2", kind="elastic-ip"))[
        "AllocationId"
    ]
    planted["gone_ip"] = ec2.allocate_address(Domain="vpc", TagSpecifications=tagged("gone", kind="elastic-ip"))[
        "AllocationId"
    ]
    return planted


def plant_openstack(fake, conn):
    labels = {"labvm:profile": "cades", "labvm:owner": "hedy"}
    server = conn.compute.wait_for_server(boot(conn, metadata=labels), status="ACTIVE", **FAST)
    image = conn.compute.create_server_image(server, "labvm-cades-1", metadata=labels, wait=True)
    conn.compute.get_server(server.id)  # the fake ends the image task at the next look, as Nova ends it soon
    conn.compute.stop_server(server)
    conn.compute.wait_for_server(server, status="SHUTOFF", **FAST)
    # A fake can do what a test cannot wait for: the server was last started 30 days ago.
    month_ago = datetime.now(timezone.utc) - timedelta(days=30)
    fake.servers[server.id]["OS-SRV-USG:launched_at"] = month_ago.strftime("%Y-%m-%dT%H:%M:%S.%f")
    public = conn.network.find_network("public")
    (port,) = conn.network.ports(device_id=server.id)
    attached = conn.network.create_ip(floating_network_id=public.id, description="labvm:cades:hedy", port_id=port.id)
    gone = conn.network.create_ip(floating_network_id=public.id, description="labvm:gone:hedy")
    other = conn.network.create_ip(floating_network_id=public.id, description="not labvm's")
    return {
        "server": server.id,
        "image": image.id,
        "attached_ip": attached.id,
        "gone_ip": gone.id,
        "other_ip": other.id,
    }


def plant_gce(gce):
    labels = {"labvm-profile": "gce", "labvm-owner": "hedy"}
    running = instance_resource(name="labvm-gce")
    running.labels = labels
    gce.wait_zone(gce.instances.insert(project=PROJECT, zone=ZONE, instance_resource=running))
    other = instance_resource(name="not-labvm")
    other.labels = {"team": "ocean"}
    gce.wait_zone(gce.instances.insert(project=PROJECT, zone=ZONE, instance_resource=other))
    for name, profile in [("labvm-gce", "gce"), ("labvm-gone", "gone")]:
        address = compute_v1.Address(name=name, labels={**labels, "labvm-profile": profile})
        gce.wait_region(gce.addresses.insert(project=PROJECT, region=GCE_REGION, address_resource=address))
    image = compute_v1.Image(name="labvm-gce-1", source_disk=gce.instance("labvm-gce").disks[0].source, labels=labels)
    gce.wait_global(
        gce.images.insert(
            request=compute_v1.InsertImageRequest(project=PROJECT, image_resource=image, force_create=True)
        )
    )


def test_every_cloud_with_a_zombie_of_each_kind(lab, ec2, cades, gce):
    aws = plant_aws(ec2)
    cloud = plant_openstack(*cades)
    plant_gce(gce)
    # aws and aws2 share credentials and a region: one inventory, each resource listed once.
    lab.write_hosts({"aws": AWS, "aws2": AWS, "cades": CADES, "gce": GCE, "local": {"provider": "local"}})
    table = lab.inv("audit").stdout
    header = table.splitlines()[0].split()
    assert header == [
        "CLOUD",
        "KIND",
        "PROFILE",
        "OWNER",
        "ID",
        "STATE",
        "AGE",
        "DETAIL",
        "$/H",
        "$/MO",
        "NEXT",
        "STEP",
    ]

    # AWS: a running VM bills now; another owner's is theirs to stop; a stopped one is fine for a week.
    assert line_of(table, aws["running"]).endswith("running: billed by the hour: inv down --host aws")
    spot = line_of(table, aws["spot"])
    assert spot.endswith("LABVM_OWNER=ada inv down --host aws2")
    assert " 0.00001 " in spot  # moto's spot price history; the on-demand Pricing API is not in moto (—)
    assert " — " in line_of(table, aws["running"])
    assert line_of(table, aws["stopped"]).split()[-3:] == ["t3.small", "—", "ok"]
    assert line_of(table, aws["gone"]).endswith(
        f"no profile 'gone' in hosts.yml: aws ec2 terminate-instances --instance-ids {aws['gone']} --region us-west-2"
    )
    assert aws["untagged"] not in table
    # Four images of one profile: the oldest goes by `inv images --prune`, its snapshot with it.
    assert line_of(table, aws["old_image"]).endswith(
        "older than the newest 3 images of aws: inv images --host aws --prune --keep 3"
    )
    assert all(line_of(table, image).endswith(" ok") for image in aws["images"])
    assert line_of(table, aws["snapshot"]).endswith(
        f"a snapshot of no image (its AMI is gone): aws ec2 delete-snapshot --snapshot-id {aws['snapshot']} --region us-west-2"
    )
    assert line_of(table, aws["volume"]).endswith(
        f"aws ec2 delete-volume --volume-id {aws['volume']} --region us-west-2"
    )
    assert line_of(table, aws["attached_ip"]).split()[-4:] == [
        "—",
        ec2.describe_addresses(AllocationIds=[aws["attached_ip"]])["Addresses"][0]["PublicIp"],
        "—",
        "ok",
    ]  # no age; no $/mo: Pricing API closed
    assert line_of(table, aws["loose_ip"]).endswith(
        f"an address attached to nothing, billed: inv up --host aws2 uses it again, "
        f"or aws ec2 release-address --allocation-id {aws['loose_ip']} --region us-west-2"
    )
    assert line_of(table, aws["gone_ip"]).endswith(
        f"no profile 'gone' in hosts.yml: aws ec2 release-address --allocation-id {aws['gone_ip']} --region us-west-2"
    )

    # OpenStack: a server stopped a month ago still holds its disk; a floating IP of no profile.
    assert line_of(table, cloud["server"]).endswith(
        "stopped, not started for 30d: its disk is billed: inv snapshot --host cades, then inv terminate --host cades"
    )
    assert " 30d " in line_of(table, cloud["server"])
    assert line_of(table, cloud["attached_ip"]).endswith(" ok")
    assert line_of(table, cloud["gone_ip"]).endswith(
        f"no profile 'gone' in hosts.yml: openstack --os-cloud cades floating ip delete {cloud['gone_ip']}"
    )
    assert cloud["other_ip"] not in table
    assert line_of(table, cloud["image"]).endswith(" ok")

    # GCE: a running spot VM priced from the billing catalog, a reserved address of a profile and one of no profile.
    assert line_of(table, "labvm-gce-1").endswith(" ok") and " 1.4 GB " in line_of(table, "labvm-gce-1")
    gce_lines = [line for line in table.splitlines() if line.startswith("gce proj ")]
    (vm,) = [line for line in gce_lines if " instance " in line]
    assert " labvm-gce " in vm and " 0.01005 " in vm and vm.endswith("running: billed by the hour: inv down --host gce")
    # an e2-medium on spot: 1 vCPU (shared core) and 4 GiB at fake_gce.CATALOG's Spot Preemptible E2 prices
    assert "not-labvm" not in table
    assert line_of(table, "labvm-gone").endswith(
        "no profile 'gone' in hosts.yml: gcloud compute addresses delete labvm-gone --region us-west1 --project proj"
    )
    (address,) = [line for line in gce_lines if " address " in line and " gce " in line]
    assert address.endswith(
        "inv up --host gce uses it again, or gcloud compute addresses delete labvm-gce --region us-west1 --project proj"
    )

    assert "not audited: local (local and ssh profiles: labvm owns no cloud resources there)" in table
    assert "resources: 21, with a next step: 13, running instances: 4 (≈ $0.01006/h for the 2 with a price)" in table
    assert (
        "$/h —: the AWS Pricing API (or its spot price history) did not answer (price_per_hour: in hosts.yml "
        "gives a profile's price)" in table
    )  # the OpenStack VM is not running: no OpenStack price is missing
    # By the month: GCE's two reserved addresses (Static Ip Charge, $0.01/h) and its 1.4 GB image (Storage
    # Image, $0.05 per GiB-month) from fake_gce.CATALOG; AWS's Pricing API is closed, OpenStack has no prices.
    assert " 7.30 " in address and " 0.07 " in line_of(table, "labvm-gce-1")
    assert " — " in line_of(table, aws["volume"]) and " — " in line_of(table, cloud["gone_ip"])
    assert (
        "  hedy: 3 running VMs, ≈ $0.01005/h (2 without a price); ≈ $14.67/month for disks, addresses, images "
        "and snapshots (12 without a price)"
    ) in table.splitlines()
    assert "$/mo —: the AWS Pricing API did not answer; OpenStack publishes no prices" in table.splitlines()
    assert "  ada: 1 running VM, ≈ $0.00001/h" in table.splitlines()

    data = json.loads(lab.inv("audit", "--json").stdout)
    rows = {row["id"]: row for row in data["resources"]}
    assert len(data["resources"]) == 21 and data["unreachable"] == [] and data["not_audited"] == ["local"]
    assert data["running_usd_per_hour"] == pytest.approx(0.010061)
    assert data["running_usd_per_hour_by_owner"] == {"hedy": pytest.approx(0.010051), "ada": pytest.approx(0.00001)}
    image_usd = rows["labvm-gce-1"]["size_gb"] * 0.05
    assert rows["labvm-gce-1"]["monthly_usd"] == pytest.approx(image_usd) and rows[aws["volume"]]["monthly_usd"] is None
    assert data["kept_usd_per_month_by_owner"] == {"hedy": pytest.approx(2 * 7.3 + image_usd)}
    running = rows[aws["running"]]
    assert {
        k: running[k]
        for k in ("cloud", "scope", "kind", "profile", "owner", "state", "type", "hourly_usd", "next_step")
    } == {
        "cloud": "aws",
        "scope": "us-west-2",
        "kind": "instance",
        "profile": "aws",
        "owner": "hedy",
        "state": "running",
        "type": "t3.small",
        "hourly_usd": None,
        "next_step": "inv down --host aws",
    }
    assert 0 <= running["age_seconds"] < 600 and datetime.fromisoformat(running["since"]).tzinfo
    assert rows[aws["spot"]]["hourly_usd"] == pytest.approx(0.00001)
    assert rows[aws["stopped"]]["why"] == rows[aws["stopped"]]["next_step"] == ""
    assert rows[aws["old_image"]]["size_gb"] > 0 and "deregister-image" in rows[aws["old_image"]]["delete"]
    assert rows[cloud["server"]]["age_seconds"] >= 30 * 86400
    assert rows[aws["gone_ip"]]["state"] == "unattached" and rows[aws["gone_ip"]]["address"]


def test_on_demand_price_from_the_pricing_api(lab, ec2):
    prices = PriceList("0.0208000000")  # t3.small, Linux, us-west-2, as AWS lists it in 2026
    lab.extra_env["AWS_ENDPOINT_URL_PRICING"] = prices.endpoint
    ami = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    instances = [
        i["InstanceId"]
        for i in ec2.run_instances(
            ImageId=ami, MinCount=2, MaxCount=2, InstanceType="t3.small", TagSpecifications=tagged("aws")
        )["Instances"]
    ]
    lab.write_hosts({"aws": AWS})
    try:
        table = lab.inv("audit").stdout
    finally:
        prices.server.shutdown()
    assert all(" 0.0208 " in line_of(table, instance) for instance in instances)
    assert "running instances: 2 (≈ $0.0416/h for the 2 with a price)" in table
    assert "$/h —" not in table
    ((target, request),) = prices.requests  # one question per instance type
    assert target == "AWSPriceListService.GetProducts" and request["ServiceCode"] == "AmazonEC2"
    assert {f["Field"]: f["Value"] for f in request["Filters"]} == {
        "instanceType": "t3.small",
        "regionCode": "us-west-2",
        "operatingSystem": "Linux",
        "tenancy": "Shared",
        "preInstalledSw": "NA",
        "capacitystatus": "Used",
        "licenseModel": "No License required",
    }


def test_a_cloud_out_of_reach_is_one_line_and_the_others_are_audited(lab, moto, cades, gce, monkeypatch):
    plant_gce(gce)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)  # no AWS credentials anywhere boto3 looks
    lab.extra_env.update(
        AWS_ENDPOINT_URL_EC2=moto,
        AWS_CONFIG_FILE="/nonexistent",
        AWS_SHARED_CREDENTIALS_FILE="/nonexistent",
        AWS_EC2_METADATA_DISABLED="true",
    )
    lab.write_hosts({"aws": AWS, "cades": CADES, "lost": {**CADES, "cloud": "nocloud"}, "gce": GCE})
    result = lab.inv("audit")
    lost, aws = [line for line in result.output.splitlines() if line.startswith("cannot audit")]
    assert lost.startswith(f"cannot audit openstack (profile lost): {lab.hosts}: profiles.lost.cloud: ")
    assert lost.endswith("add 'nocloud' to clouds.yaml (~/.config/openstack/clouds.yaml, or OS_CLIENT_CONFIG_FILE)")
    assert aws == (
        "cannot audit aws us-west-2 (profile aws): no AWS credentials found; set AWS_PROFILE, run "
        "`aws configure`, or export AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (labvm reads boto3's usual places)"
    )
    # The clouds that answer are audited all the same: GCE's four, and nothing left in OpenStack's cades.
    assert len([line for line in result.stdout.splitlines() if line.startswith("gce proj ")]) == 4
    assert "resources: 4, with a next step: 3, running instances: 1" in result.stdout
    lab.extra_env["AWS_PROFILE"] = "nosuch"
    data = json.loads(lab.inv("audit", "--json").stdout)
    unreachable = {u["profiles"][0]: u for u in data["unreachable"]}
    assert unreachable.keys() == {"aws", "lost"}
    assert unreachable["aws"] == {
        "cloud": "aws",
        "scope": None,
        "profiles": ["aws"],
        "error": (
            "AWS_PROFILE: The config profile (nosuch) could not be found; `aws configure list-profiles` lists the profiles there are"
        ),
    }
    assert {row["cloud"] for row in data["resources"]} == {"gce"}


def test_no_cloud_profiles(lab):
    lab.write_hosts({"local": {"provider": "local"}})
    assert lab.inv("audit").stdout.splitlines() == [
        "no cloud profile in hosts.yml: nothing to audit",
        "not audited: local (local and ssh profiles: labvm owns no cloud resources there)",
        "resources: 0, with a next step: 0, running instances: 0",
    ]


def test_aws_images_and_snapshots_cost_the_blocks_they_store(lab, ec2):
    """EBS bills a snapshot (so an AMI) for the data it stores, FullSnapshotSizeInBytes, not its volume's
    VolumeSize (moto_ec2_rules.StoredBlocks); a snapshot EC2 gives no such size (one from before the field) is
    priced by VolumeSize, the most it can store."""
    from moto_ec2_rules import StoredBlocks

    prices = PriceList("0.0208000000", STORAGE_PRICES)
    lab.extra_env["AWS_ENDPOINT_URL_PRICING"] = prices.endpoint
    ami = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    instance = ec2.run_instances(
        ImageId=ami, MinCount=1, MaxCount=1, InstanceType="t3.small", TagSpecifications=tagged("aws")
    )["Instances"][0]["InstanceId"]
    big, old = (
        ec2.create_volume(
            AvailabilityZone=f"{REGION}a", Size=size, VolumeType="gp3", TagSpecifications=tagged("aws", kind="volume")
        )["VolumeId"]
        for size in (100, 4)
    )
    with StoredBlocks(default=2 * 1024**3, written={big: 10 * 1024**3}):
        image = ec2.create_image(
            InstanceId=instance, Name="labvm-aws-1", TagSpecifications=tagged("aws", kind="image")
        )["ImageId"]
        stored = ec2.create_snapshot(VolumeId=big, TagSpecifications=tagged("aws", kind="snapshot"))["SnapshotId"]
        gone = ec2.create_image(
            InstanceId=instance, Name="labvm-gone-1", TagSpecifications=tagged("gone", kind="image")
        )["ImageId"]
    unsized = ec2.create_snapshot(VolumeId=old, TagSpecifications=tagged("aws", kind="snapshot"))["SnapshotId"]
    (data,) = ec2.describe_images(ImageIds=[image])["Images"]
    image_snapshots = [m["Ebs"]["SnapshotId"] for m in data["BlockDeviceMappings"]]
    assert sum(m["Ebs"]["VolumeSize"] for m in data["BlockDeviceMappings"]) > 2  # what labvm priced before
    ec2.create_tags(Resources=image_snapshots, Tags=tagged("aws")[0]["Tags"])  # as `inv snapshot` tags them
    lab.write_hosts({"aws": AWS})
    try:
        table = lab.inv("audit").stdout
        rows = {row["id"]: row for row in json.loads(lab.inv("audit", "--json").stdout)["resources"]}
    finally:
        prices.server.shutdown()
    # us-west-2's snapshot rate is $0.05 per GB-month (aws_world.STORAGE_PRICES); the volume bills all 100 GB.
    assert line_of(table, stored).split()[8:11] == ["10", "GB", "0.50"]
    assert line_of(table, image).split()[8:11] == ["2.0", "GB", "0.10"]
    assert line_of(table, unsized).split()[8:11] == ["4.0", "GB", "0.20"]
    assert line_of(table, big).split()[8:11] == ["100", "GB", "8.00"]
    assert rows[stored]["size_gb"] == pytest.approx(10) and rows[image]["monthly_usd"] == pytest.approx(0.1)
    # Its delete command takes DeregisterImage's DeleteAssociatedSnapshots: an older AWS CLI has no such option.
    assert line_of(table, gone).endswith(
        "no profile 'gone' in hosts.yml: with AWS CLI 2.27.24 or later (v1: 1.40.24), aws ec2 deregister-image "
        f"--image-id {gone} --delete-associated-snapshots --region us-west-2"
    )


def test_a_data_volume_and_its_backup_are_listed_priced_and_kept_while_their_profile_exists(lab, ec2):
    """Kinds "data" and "backup" (issue 29): in the table with what they cost a month, "ok" while their profile
    is in hosts.yml, and with the command that deletes them once it is not."""
    prices = PriceList("0.0208000000", STORAGE_PRICES)
    lab.extra_env["AWS_ENDPOINT_URL_PRICING"] = prices.endpoint

    def role(profile: str, kind: str, value: str) -> list[dict]:
        (spec,) = tagged(profile, kind=kind)
        return [{**spec, "Tags": spec["Tags"] + [{"Key": "labvm:role", "Value": value}]}]

    volumes, backups = {}, {}
    for profile in ("aws", "gone"):
        volumes[profile] = ec2.create_volume(
            AvailabilityZone=f"{REGION}a", Size=100, VolumeType="gp3", TagSpecifications=role(profile, "volume", "data")
        )["VolumeId"]
        backups[profile] = ec2.create_snapshot(
            VolumeId=volumes[profile], TagSpecifications=role(profile, "snapshot", "data-backup")
        )["SnapshotId"]
    lab.write_hosts({"aws": {**AWS, "data": {"size": 100}}})
    try:
        table = lab.inv("audit").stdout
    finally:
        prices.server.shutdown()
    assert line_of(table, volumes["aws"]).split()[2] == "data" and line_of(table, volumes["aws"]).endswith(" ok")
    assert line_of(table, backups["aws"]).split()[2] == "backup" and line_of(table, backups["aws"]).endswith(" ok")
    assert " 8.00 " in line_of(table, volumes["aws"])  # 100 GB of gp3 at $0.08
    assert line_of(table, backups["gone"]).endswith(
        f"no profile 'gone' in hosts.yml: aws ec2 delete-snapshot --snapshot-id {backups['gone']} --region us-west-2"
    )
