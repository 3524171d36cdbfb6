"""The real google-cloud-compute clients (REST transport) against tests/fake_gce.py."""

import google.auth.exceptions
import pytest
import requests
from google.api_core import exceptions
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import compute_v1

from fake_gce import DISABLED_MESSAGE, QUOTA_MESSAGE, FakeGce
from gce_world import PROJECT, REGION, ZONE, Clients, instance_resource


@pytest.fixture
def fake():
    with FakeGce() as server:
        yield server


@pytest.fixture
def gce(fake):
    return Clients(fake.endpoint)


def insert_instance(gce, **kw):
    return gce.instances.insert(project=PROJECT, zone=ZONE, instance_resource=instance_resource(**kw))


def test_machine_types_and_public_image(gce):
    names = [m.name for m in gce.machine_types.list(project=PROJECT, zone=ZONE)]
    assert {"e2-small", "e2-medium", "e2-standard-4", "n2-standard-2"} <= set(names)
    mt = gce.machine_types.get(project=PROJECT, zone=ZONE, machine_type="e2-standard-4")
    assert (mt.guest_cpus, mt.memory_mb) == (4, 16384)
    with pytest.raises(exceptions.NotFound):
        gce.machine_types.get(project=PROJECT, zone=ZONE, machine_type="e2-standrd-4")
    image = gce.images.get_from_family(project="debian-cloud", family="debian-12")
    assert image.family == "debian-12" and image.status == "READY"
    assert image.self_link.endswith("projects/debian-cloud/global/images/" + image.name)


def test_an_accelerator_optimized_type_answers_its_gpus(gce):
    a2 = gce.machine_types.get(project=PROJECT, zone=ZONE, machine_type="a2-highgpu-2g")
    assert (a2.guest_cpus, a2.memory_mb) == (24, 174080)
    assert [(a.guest_accelerator_type, a.guest_accelerator_count) for a in a2.accelerators] == [
        ("nvidia-tesla-a100", 2)
    ]
    assert not gce.machine_types.get(project=PROJECT, zone=ZONE, machine_type="e2-standard-4").accelerators


def test_full_lifecycle(fake, gce):
    fw = compute_v1.Firewall(
        name="labvm-ssh",
        direction="INGRESS",
        source_ranges=["203.0.113.7/32"],
        allowed=[compute_v1.Allowed(I_p_protocol="tcp", ports=["22"])],
        target_tags=["labvm"],
    )
    op = gce.firewalls.insert(project=PROJECT, firewall_resource=fw)
    assert gce.wait_global(op).status == compute_v1.Operation.Status.DONE
    got = gce.firewalls.get(project=PROJECT, firewall="labvm-ssh")
    assert got.allowed[0].I_p_protocol == "tcp" and list(got.allowed[0].ports) == ["22"]
    assert list(got.source_ranges) == ["203.0.113.7/32"]
    with pytest.raises(exceptions.Conflict):
        gce.firewalls.insert(project=PROJECT, firewall_resource=fw)

    op = gce.addresses.insert(
        project=PROJECT,
        region=REGION,
        address_resource=compute_v1.Address(name="lab-1-ip", labels={"labvm-profile": "gce"}),
    )
    assert gce.wait_region(op).status == compute_v1.Operation.Status.DONE
    address = gce.addresses.get(project=PROJECT, region=REGION, address="lab-1-ip")
    nat_ip = address.address
    assert nat_ip and address.status == "RESERVED"
    assert [
        a.name
        for a in gce.addresses.list(
            request=compute_v1.ListAddressesRequest(project=PROJECT, region=REGION, filter='name = "lab-1-ip"')
        )
    ] == ["lab-1-ip"]
    assert [
        a.name
        for a in gce.addresses.list(
            request=compute_v1.ListAddressesRequest(
                project=PROJECT, region=REGION, filter='labels.labvm-profile = "gce"'
            )
        )
    ] == ["lab-1-ip"]

    op = insert_instance(gce, nat_ip=nat_ip)
    assert gce.instance("lab-1").status == "PROVISIONING"
    done = gce.wait_zone(op)
    assert done.status == compute_v1.Operation.Status.DONE and not done.error.errors
    vm = gce.instance("lab-1")
    assert vm.status == "RUNNING"
    assert vm.network_interfaces[0].access_configs[0].nat_i_p == nat_ip
    assert vm.network_interfaces[0].network_i_p.startswith("10.")
    assert vm.labels["labvm-profile"] == "gce"
    assert vm.metadata.items[0].key == "ssh-keys" and "hedy" in vm.metadata.items[0].value
    assert vm.scheduling.provisioning_model == "SPOT" and vm.scheduling.instance_termination_action == "STOP"
    assert vm.machine_type.endswith("/machineTypes/e2-medium")
    assert vm.creation_timestamp and vm.last_start_timestamp
    boot_disk = vm.disks[0].source
    assert boot_disk.endswith(f"zones/{ZONE}/disks/lab-1") and vm.disks[0].disk_size_gb == 20
    assert list(gce.addresses.get(project=PROJECT, region=REGION, address="lab-1-ip").users) == [vm.self_link]

    op2 = insert_instance(gce, name="other")  # ephemeral IP, no label match below
    gce.wait_zone(op2)
    listed = gce.instances.list(
        request=compute_v1.ListInstancesRequest(
            project=PROJECT, zone=ZONE, filter='(labels.labvm-profile = "gce") AND (name != "other")'
        )
    )
    assert [i.name for i in listed] == ["lab-1"]
    assert len(list(gce.instances.list(project=PROJECT, zone=ZONE))) == 2
    assert [
        i.name
        for i in gce.instances.list(
            request=compute_v1.ListInstancesRequest(project=PROJECT, zone=ZONE, filter="name eq lab-.*")
        )
    ] == ["lab-1"]
    assert (
        len(
            list(gce.instances.list(request=compute_v1.ListInstancesRequest(project=PROJECT, zone=ZONE, max_results=1)))
        )
        == 2
    )  # pager follows pageToken
    with pytest.raises(exceptions.BadRequest):
        list(
            gce.instances.list(
                request=compute_v1.ListInstancesRequest(project=PROJECT, zone=ZONE, filter='name = "a" OR name = "b"')
            )
        )

    with pytest.raises(exceptions.BadRequest, match="running"):
        gce.instances.set_machine_type(
            project=PROJECT,
            zone=ZONE,
            instance="lab-1",
            instances_set_machine_type_request_resource=compute_v1.InstancesSetMachineTypeRequest(
                machine_type=f"zones/{ZONE}/machineTypes/e2-standard-4"
            ),
        )
    op = gce.instances.stop(project=PROJECT, zone=ZONE, instance="lab-1")
    assert gce.instance("lab-1").status == "STOPPING"
    gce.wait_zone(op)
    assert gce.instance("lab-1").status == "TERMINATED"
    op = gce.instances.set_machine_type(
        project=PROJECT,
        zone=ZONE,
        instance="lab-1",
        instances_set_machine_type_request_resource=compute_v1.InstancesSetMachineTypeRequest(
            machine_type=f"zones/{ZONE}/machineTypes/e2-standard-4"
        ),
    )
    gce.wait_zone(op)
    assert gce.instance("lab-1").machine_type.endswith("/machineTypes/e2-standard-4")

    gce.wait_zone(gce.instances.start(project=PROJECT, zone=ZONE, instance="lab-1"))
    vm = gce.instance("lab-1")
    assert vm.status == "RUNNING"
    assert vm.network_interfaces[0].access_configs[0].nat_i_p == nat_ip
    assert vm.disks[0].source == boot_disk

    image = compute_v1.Image(name="lab-1-snap", source_disk=boot_disk, family="labvm", labels={"labvm-profile": "gce"})
    with pytest.raises(exceptions.BadRequest, match="already being used"):
        gce.images.insert(project=PROJECT, image_resource=image)  # disk of a RUNNING VM needs force_create
    op = gce.images.insert(
        request=compute_v1.InsertImageRequest(project=PROJECT, image_resource=image, force_create=True)
    )
    assert gce.images.get(project=PROJECT, image="lab-1-snap").status == "PENDING"
    gce.wait_global(op)
    snap = gce.images.get(project=PROJECT, image="lab-1-snap")
    assert snap.status == "READY" and snap.source_disk == boot_disk and snap.labels["labvm-profile"] == "gce"
    assert [
        i.name
        for i in gce.images.list(
            request=compute_v1.ListImagesRequest(project=PROJECT, filter='labels.labvm-profile = "gce"')
        )
    ] == ["lab-1-snap"]
    assert gce.images.get_from_family(project=PROJECT, family="labvm").name == "lab-1-snap"

    with pytest.raises(exceptions.BadRequest):
        gce.addresses.delete(project=PROJECT, region=REGION, address="lab-1-ip")  # still in use
    op = gce.instances.delete(project=PROJECT, zone=ZONE, instance="lab-1")
    gce.wait_zone(op)
    with pytest.raises(exceptions.NotFound, match="lab-1"):
        gce.instance("lab-1")
    assert "lab-1" not in fake.disks
    address = gce.addresses.get(project=PROJECT, region=REGION, address="lab-1-ip")
    assert address.status == "RESERVED" and not address.users
    gce.wait_region(gce.addresses.delete(project=PROJECT, region=REGION, address="lab-1-ip"))
    gce.wait_global(gce.images.delete(project=PROJECT, image="lab-1-snap"))
    gce.wait_global(gce.firewalls.delete(project=PROJECT, firewall="labvm-ssh"))
    assert not fake.addresses and not fake.images and not fake.firewalls


def test_ephemeral_ip_changes_across_stop_start(gce):
    gce.wait_zone(insert_instance(gce))
    first = gce.instance("lab-1").network_interfaces[0].access_configs[0].nat_i_p
    gce.wait_zone(gce.instances.stop(project=PROJECT, zone=ZONE, instance="lab-1"))
    assert not gce.instance("lab-1").network_interfaces[0].access_configs[0].nat_i_p
    gce.wait_zone(gce.instances.start(project=PROJECT, zone=ZONE, instance="lab-1"))
    second = gce.instance("lab-1").network_interfaces[0].access_configs[0].nat_i_p
    assert first and second and first != second


def test_operation_get_completes_too_and_scopes_are_checked(gce):
    op = insert_instance(gce)
    with pytest.raises(exceptions.NotFound):
        gce.global_ops.get(project=PROJECT, operation=op.name)  # a zonal operation
    assert gce.zone_ops.get(project=PROJECT, zone=ZONE, operation=op.name).status == compute_v1.Operation.Status.DONE
    assert gce.instance("lab-1").status == "RUNNING"


def test_bad_names_and_types(gce):
    with pytest.raises(exceptions.BadRequest, match="resource.name"):
        insert_instance(gce, name="Lab_1")
    with pytest.raises(exceptions.BadRequest, match="e2-mediun"):
        insert_instance(gce, machine_type="e2-mediun")


def test_quota_exceeded(fake, gce):
    fake.quota_exceeded = True
    with pytest.raises(exceptions.Forbidden) as info:
        insert_instance(gce)
    assert QUOTA_MESSAGE in info.value.message
    assert info.value.reason == "quotaExceeded" or info.value.errors[0]["reason"] == "quotaExceeded"
    assert not fake.instances


def test_zone_exhausted(fake, gce):
    fake.zone_exhausted = True
    op = insert_instance(gce)
    done = gce.wait_zone(op)
    assert done.status == compute_v1.Operation.Status.DONE
    assert done.error.errors[0].code == "ZONE_RESOURCE_POOL_EXHAUSTED"
    assert done.http_error_status_code == 503
    assert not fake.instances and not fake.disks
    # ExtendedOperation.result() raises it when its refresh uses a client pointed at the fake
    # (private hook: the transport caches the ZoneOperationsClient it polls through).
    gce.instances._transport._extended_operations_services["zone_operations"] = gce.zone_ops
    with pytest.raises(exceptions.ServiceUnavailable):
        insert_instance(gce, name="lab-2").result(timeout=5)


def test_api_disabled(fake, gce):
    fake.api_disabled = True
    with pytest.raises(exceptions.Forbidden, match="Compute Engine API has not been used in project proj"):
        gce.images.get_from_family(project="debian-cloud", family="debian-12")
    with pytest.raises(exceptions.Forbidden) as info:
        list(gce.instances.list(project=PROJECT, zone=ZONE))
    assert info.value.message.endswith(": " + DISABLED_MESSAGE)  # api_core prefixes "GET <url>: "
    assert info.value.reason == "accessNotConfigured" or info.value.errors[0]["reason"] == "accessNotConfigured"


def test_spot_preemption_stops_the_vm(fake, gce):
    gce.wait_zone(insert_instance(gce))
    fake.preempt("lab-1")
    assert gce.instance("lab-1").status == "TERMINATED"
    gce.wait_zone(gce.instances.start(project=PROJECT, zone=ZONE, instance="lab-1"))
    assert gce.instance("lab-1").status == "RUNNING"


def test_aggregated_lists(gce):
    """What `inv audit` reads: every zone's instances and every region's addresses in one call."""
    gce.wait_zone(insert_instance(gce))  # labelled labvm-profile=gce
    other = instance_resource(name="other")
    other.labels = {"team": "ocean"}
    gce.wait_zone(gce.instances.insert(project=PROJECT, zone=ZONE, instance_resource=other))
    gce.wait_region(
        gce.addresses.insert(
            project=PROJECT,
            region=REGION,
            address_resource=compute_v1.Address(name="lab-1-ip", labels={"labvm-profile": "gce"}),
        )
    )
    labelled = "labels.labvm-profile:*"

    instances = gce.instances.aggregated_list(
        request=compute_v1.AggregatedListInstancesRequest(project=PROJECT, filter=labelled)
    )
    assert [(scope, [i.name for i in scoped.instances]) for scope, scoped in instances] == [
        (f"zones/{ZONE}", ["lab-1"])
    ]
    everything = dict(gce.instances.aggregated_list(project=PROJECT))
    assert [i.name for i in everything[f"zones/{ZONE}"].instances] == ["lab-1", "other"]
    addresses = dict(
        gce.addresses.aggregated_list(
            request=compute_v1.AggregatedListAddressesRequest(project=PROJECT, filter=labelled)
        )
    )
    (address,) = addresses[f"regions/{REGION}"].addresses
    assert (address.name, address.status, dict(address.labels)) == ("lab-1-ip", "RESERVED", {"labvm-profile": "gce"})

    none = dict(
        gce.addresses.aggregated_list(
            request=compute_v1.AggregatedListAddressesRequest(project=PROJECT, filter='labels.labvm-profile = "nobody"')
        )
    )
    assert not none[f"regions/{REGION}"].addresses and none[f"regions/{REGION}"].warning.code == "NO_RESULTS_ON_PAGE"


def test_a_filter_of_several_terms_needs_parentheses(gce):
    gce.wait_zone(insert_instance(gce))
    bare = 'labels.labvm-profile = "gce" AND labels.labvm = "yes"'
    with pytest.raises(exceptions.BadRequest, match="Invalid list filter expression"):
        list(gce.instances.list(request=compute_v1.ListInstancesRequest(project=PROJECT, zone=ZONE, filter=bare)))
    for ok in [
        '(labels.labvm-profile = "gce") AND (labels.labvm = "yes")',
        '(labels.labvm-profile = "gce") (name = "lab-1")',
        '(name = "nope") OR (name = "lab-1") AND (labels.labvm:*)',
    ]:
        assert [
            i.name
            for i in gce.instances.list(request=compute_v1.ListInstancesRequest(project=PROJECT, zone=ZONE, filter=ok))
        ] == ["lab-1"], ok


def test_networks_must_exist():
    fake = FakeGce(default_network=False)
    with fake:
        clients = Clients(fake.endpoint)
        with pytest.raises(exceptions.NotFound):
            clients.networks.get(project=PROJECT, network="default")
        with pytest.raises(exceptions.BadRequest, match="The referenced network resource cannot be found"):
            insert_instance(clients)
        with pytest.raises(exceptions.BadRequest, match="The referenced network resource cannot be found"):
            clients.firewalls.insert(
                project=PROJECT,
                firewall_resource=compute_v1.Firewall(
                    name="ssh",
                    network="global/networks/default",
                    source_ranges=["0.0.0.0/0"],
                    allowed=[compute_v1.Allowed(I_p_protocol="tcp", ports=["22"])],
                ),
            )
        fake.add_network("lab", subnetwork="lab-west")
        custom = instance_resource()
        custom.network_interfaces[0].network = "global/networks/lab"
        with pytest.raises(exceptions.BadRequest, match="Subnetwork should be specified for custom subnetmode network"):
            clients.instances.insert(project=PROJECT, zone=ZONE, instance_resource=custom)
        custom.network_interfaces[0].subnetwork = f"regions/{REGION}/subnetworks/lab-west"
        clients.wait_zone(clients.instances.insert(project=PROJECT, zone=ZONE, instance_resource=custom))
        assert clients.instance("lab-1").network_interfaces[0].subnetwork.endswith("/subnetworks/lab-west")


def test_project_metadata_quotas_and_os_login(fake, gce):
    fake.project_metadata["enable-oslogin"] = "TRUE"
    items = gce.projects.get(project=PROJECT).common_instance_metadata.items
    assert [(i.key, i.value) for i in items] == [("enable-oslogin", "TRUE")]
    gce.wait_zone(insert_instance(gce))  # e2-medium: 2 vCPUs, one external IP
    quotas = {q.metric: (q.usage, q.limit) for q in gce.regions.get(project=PROJECT, region=REGION).quotas}
    assert quotas["CPUS"] == (2.0, 8.0) and quotas["IN_USE_ADDRESSES"] == (1.0, 8.0)
    assert fake.login_keys("lab-1") == {}  # OS Login ignores ssh-keys metadata
    fake.project_metadata["enable-oslogin"] = "FALSE"
    assert fake.login_keys("lab-1") == {"hedy": {"ssh-ed25519 AAAA hedy"}}
    fake.quota_limits["CPUS"] = 3.0
    with pytest.raises(exceptions.Forbidden, match="Quota 'CPUS' exceeded"):
        insert_instance(gce, name="lab-2")
    with pytest.raises(exceptions.NotFound):
        gce.zones.get(project=PROJECT, zone="us-west1-z")


def test_google_checks_credentials_and_the_emulator_keeps_any_it_is_sent(fake, monkeypatch):
    """Reached as https://compute.googleapis.com (through the fake as HTTPS proxy), every call needs an
    issued OAuth 2.0 access token: none or an unknown one is 401.  The loopback emulator serves anyone
    and records a token sent to it (a leak)."""
    from google.oauth2.credentials import Credentials

    for name, value in fake.google_environment().items():
        monkeypatch.setenv(name, value)
    fake.tokens["test-token"] = "hedy@example.org"

    def instances(credentials):
        return compute_v1.InstancesClient(credentials=credentials, transport="rest")

    url = f"https://compute.googleapis.com/compute/v1/projects/{PROJECT}/zones/{ZONE}/instances"
    # (google.auth's session answers a 401 by refreshing the credentials: read the 401 itself with requests)
    missing = requests.get(url, timeout=10)
    assert missing.status_code == 401 and missing.json()["error"]["status"] == "UNAUTHENTICATED"
    assert "missing required authentication credential" in missing.json()["error"]["message"]
    stolen = requests.get(url, headers={"Authorization": "Bearer stolen"}, timeout=10)
    assert stolen.status_code == 401 and "invalid authentication credentials" in stolen.json()["error"]["message"]
    with pytest.raises(google.auth.exceptions.GoogleAuthError):  # the client cannot refresh its way past
        list(instances(AnonymousCredentials()).list(project=PROJECT, zone=ZONE))
    assert list(instances(Credentials(token="test-token")).list(project=PROJECT, zone=ZONE)) == []
    assert fake.requests[-1] == ("GET", f"/compute/v1/projects/{PROJECT}/zones/{ZONE}/instances")
    assert fake.leaked_credentials == []

    emulator = compute_v1.InstancesClient(
        credentials=Credentials(token="test-token"),
        transport="rest",
        client_options=ClientOptions(api_endpoint=fake.endpoint),
    )
    monkeypatch.delenv("HTTPS_PROXY")
    monkeypatch.delenv("https_proxy")
    assert list(emulator.list(project=PROJECT, zone=ZONE)) == []
    assert fake.leaked_credentials == ["Bearer test-token"]


def test_cpu_quota_by_machine_family_and_for_the_project(fake, gce):
    """N2 draws from N2_CPUS, E2 from CPUS, every vCPU from the project's CPUS_ALL_REGIONS; spot from
    PREEMPTIBLE_CPUS only where the region grants it."""
    fake.quota_limits["N2_CPUS"] = 3.0
    with pytest.raises(exceptions.Forbidden, match="Quota 'N2_CPUS' exceeded. Limit: 3.0 in region us-west1"):
        insert_instance(gce, machine_type="n2-standard-4")
    gce.wait_zone(insert_instance(gce, machine_type="n2-standard-2"))
    quotas = {q.metric: q.usage for q in gce.regions.get(project=PROJECT, region=REGION).quotas}
    assert (quotas["N2_CPUS"], quotas["CPUS"], quotas["PREEMPTIBLE_CPUS"]) == (2.0, 0.0, 0.0)  # spot, none granted
    (project,) = [q for q in gce.projects.get(project=PROJECT).quotas if q.metric == "CPUS_ALL_REGIONS"]
    assert (project.usage, project.limit) == (2.0, 32.0)  # beside it: SNAPSHOTS

    fake.project_quota_limits["CPUS_ALL_REGIONS"] = 5.0
    with pytest.raises(exceptions.Forbidden, match="Quota 'CPUS_ALL_REGIONS' exceeded. Limit: 5.0 globally"):
        insert_instance(gce, name="lab-2", machine_type="e2-standard-4")
    fake.quota_limits["PREEMPTIBLE_CPUS"] = 8.0
    fake.project_quota_limits["CPUS_ALL_REGIONS"] = 32.0
    gce.wait_zone(insert_instance(gce, name="lab-3", machine_type="e2-standard-4"))
    quotas = {q.metric: q.usage for q in gce.regions.get(project=PROJECT, region=REGION).quotas}
    # The E2 Spot VM draws from PREEMPTIBLE_CPUS; the N2 one stays on N2_CPUS: PREEMPTIBLE_N2_CPUS, its
    # family's preemptible quota, is not granted here (https://cloud.google.com/compute/resource-usage).
    assert (quotas["PREEMPTIBLE_CPUS"], quotas["CPUS"], quotas["N2_CPUS"]) == (4.0, 0.0, 2.0)


def test_newer_families_and_spot_draw_from_their_own_quotas(fake, gce):
    """C4A, Z3, M4 ... each draw from their own <FAMILY>_CPUS, and a Spot VM of a family with its own quota
    from PREEMPTIBLE_<FAMILY>_CPUS where the region grants it (https://cloud.google.com/compute/resource-usage)."""
    fake.quota_limits.update(C4A_CPUS=3.0)
    with pytest.raises(exceptions.Forbidden, match="Quota 'C4A_CPUS' exceeded. Limit: 3.0 in region us-west1"):
        insert_instance(gce, machine_type="c4a-standard-4")
    fake.quota_limits.update(C4A_CPUS=4.0, PREEMPTIBLE_N2_CPUS=4.0, PREEMPTIBLE_CPUS=8.0)
    gce.wait_zone(insert_instance(gce, machine_type="c4a-standard-4"))
    gce.wait_zone(insert_instance(gce, name="lab-2", machine_type="n2-standard-2"))  # Spot (instance_resource)
    quotas = {q.metric: q.usage for q in gce.regions.get(project=PROJECT, region=REGION).quotas}
    assert (quotas["C4A_CPUS"], quotas["PREEMPTIBLE_N2_CPUS"], quotas["N2_CPUS"], quotas["CPUS"]) == (
        4.0,
        2.0,
        0.0,
        0.0,
    )
    assert quotas["PREEMPTIBLE_CPUS"] == 0.0  # an N2 Spot VM's quota is its family's, not E2's and N1's


def test_a_suspended_instance_is_resumed_not_started(fake, gce):
    gce.wait_zone(insert_instance(gce))
    fake.suspend("lab-1")
    with pytest.raises(exceptions.BadRequest, match="not ready"):
        gce.instances.start(project=PROJECT, zone=ZONE, instance="lab-1")
    gce.wait_zone(gce.instances.resume(project=PROJECT, zone=ZONE, instance="lab-1"))
    assert gce.instance("lab-1").status == "RUNNING"
    with pytest.raises(exceptions.BadRequest, match="only a suspended instance can be resumed"):
        gce.instances.resume(project=PROJECT, zone=ZONE, instance="lab-1")


def test_rate_limits_answer_403_or_429_then_pass(fake, gce):
    fake.rate_limited = 2
    for _ in range(2):
        with pytest.raises(exceptions.Forbidden) as info:
            list(gce.instances.list(project=PROJECT, zone=ZONE))
        assert info.value.errors[0]["reason"] == "rateLimitExceeded"
    assert list(gce.instances.list(project=PROJECT, zone=ZONE)) == []
    fake.rate_limited, fake.rate_limit_status = 1, 429
    with pytest.raises(exceptions.TooManyRequests, match="Queries per minute"):
        insert_instance(gce)
    assert not fake.instances


def test_label_values_are_checked(gce):
    bad = instance_resource()
    bad.labels = {"labvm-owner": "hedy.lamarr"}
    with pytest.raises(exceptions.BadRequest, match="resource.labels"):
        gce.instances.insert(project=PROJECT, zone=ZONE, instance_resource=bad)
    with pytest.raises(exceptions.BadRequest, match="resource.labels"):
        gce.addresses.insert(
            project=PROJECT, region=REGION, address_resource=compute_v1.Address(name="ip", labels={"Owner": "hedy"})
        )
    ok = instance_resource()
    ok.labels = {"labvm-owner": "hedy_lamarr-1", "empty": ""}
    gce.wait_zone(gce.instances.insert(project=PROJECT, zone=ZONE, instance_resource=ok))


def _client(fake, cls):
    return cls(
        credentials=AnonymousCredentials(), transport="rest", client_options=ClientOptions(api_endpoint=fake.endpoint)
    )


def _disk(fake, gce, name="data", size=20):
    disks = _client(fake, compute_v1.DisksClient)
    disk = compute_v1.Disk(name=name, size_gb=size, type_=f"projects/{PROJECT}/zones/{ZONE}/diskTypes/pd-balanced")
    gce.wait_zone(disks.insert(project=PROJECT, zone=ZONE, disk_resource=disk))
    return disks


def _snapshot(name="backup-1", disk="data", **labels):
    source = f"projects/{PROJECT}/zones/{ZONE}/disks/{disk}"
    return compute_v1.Snapshot(name=name, source_disk=source, labels=labels)


def test_a_snapshot_walks_creating_to_ready_and_bills_what_was_written_since_the_last(fake, gce):
    _disk(fake, gce)
    snapshots = _client(fake, compute_v1.SnapshotsClient)
    fake.write("data", 3 * 1024**3)
    operation = snapshots.insert(project=PROJECT, snapshot_resource=_snapshot(role="data-backup"))
    made = snapshots.get(project=PROJECT, snapshot="backup-1")
    assert (made.status, made.storage_bytes, made.disk_size_gb) == ("CREATING", 0, 20)
    assert gce.wait_global(operation).status == compute_v1.Operation.Status.DONE
    made = snapshots.get(project=PROJECT, snapshot="backup-1")
    assert (made.status, made.storage_bytes, made.storage_bytes_status) == ("READY", 3 * 1024**3, "UP_TO_DATE")
    assert dict(made.labels) == {"role": "data-backup"} and made.source_disk.endswith(f"/zones/{ZONE}/disks/data")
    gce.wait_global(snapshots.insert(project=PROJECT, snapshot_resource=_snapshot("backup-2")))
    assert snapshots.get(project=PROJECT, snapshot="backup-2").storage_bytes == 0  # incremental: nothing new
    listed = snapshots.list(
        request=compute_v1.ListSnapshotsRequest(project=PROJECT, filter='labels.role = "data-backup"')
    )
    assert [s.name for s in listed] == ["backup-1"]
    with pytest.raises(exceptions.Conflict, match="already exists"):  # names are the project's
        snapshots.insert(project=PROJECT, snapshot_resource=_snapshot())
    operation = snapshots.delete(project=PROJECT, snapshot="backup-1")
    assert snapshots.get(project=PROJECT, snapshot="backup-1").status == "DELETING"
    gce.wait_global(operation)
    assert sorted(fake.snapshots) == ["backup-2"]


def test_a_snapshot_can_fail_and_is_held_to_the_projects_quota(fake, gce):
    _disk(fake, gce)
    snapshots = _client(fake, compute_v1.SnapshotsClient)
    fake.snapshot_fails = True
    gce.wait_global(snapshots.insert(project=PROJECT, snapshot_resource=_snapshot()))
    assert snapshots.get(project=PROJECT, snapshot="backup-1").status == "FAILED"
    quotas = {q.metric: (q.usage, q.limit) for q in gce.projects.get(project=PROJECT).quotas}
    assert quotas["SNAPSHOTS"] == (1.0, 5000.0)
    fake.project_quota_limits["SNAPSHOTS"] = 1.0
    with pytest.raises(exceptions.Forbidden, match="Quota 'SNAPSHOTS' exceeded"):
        snapshots.insert(project=PROJECT, snapshot_resource=_snapshot("backup-2"))
    with pytest.raises(exceptions.BadRequest, match="sourceDisk"):
        snapshots.insert(project=PROJECT, snapshot_resource=_snapshot("backup-3", disk="nowhere"))


def test_a_disk_grows_attached_and_never_shrinks(fake, gce):
    gce.wait_zone(insert_instance(gce))
    disks = _disk(fake, gce)
    attached = compute_v1.AttachedDisk(source=f"projects/{PROJECT}/zones/{ZONE}/disks/data", device_name="data")
    gce.wait_zone(
        gce.instances.attach_disk(project=PROJECT, zone=ZONE, instance="lab-1", attached_disk_resource=attached)
    )
    operation = disks.resize(
        project=PROJECT, zone=ZONE, disk="data", disks_resize_request_resource=compute_v1.DisksResizeRequest(size_gb=30)
    )
    assert disks.get(project=PROJECT, zone=ZONE, disk="data").size_gb == 20  # until the operation is done
    assert gce.wait_zone(operation).status == compute_v1.Operation.Status.DONE
    assert disks.get(project=PROJECT, zone=ZONE, disk="data").size_gb == 30
    assert [d.disk_size_gb for d in gce.instance("lab-1").disks if d.device_name == "data"] == [30]
    assert gce.instance("lab-1").status == "RUNNING"
    with pytest.raises(exceptions.BadRequest, match="Requested disk size cannot be smaller than the current size"):
        disks.resize(
            project=PROJECT,
            zone=ZONE,
            disk="data",
            disks_resize_request_resource=compute_v1.DisksResizeRequest(size_gb=10),
        )


def test_disks_count_against_their_types_regional_storage_quota(fake, gce):
    gce.wait_zone(insert_instance(gce))  # its boot disk: pd-balanced
    boot = int(fake.disks["lab-1"]["sizeGb"])
    disks = compute_v1.DisksClient(
        credentials=AnonymousCredentials(), transport="rest", client_options=ClientOptions(api_endpoint=fake.endpoint)
    )
    for name, zone, disk_type, size in (("std", f"{REGION}-a", "pd-standard", 200), ("ssd", ZONE, "pd-ssd", 30)):
        disk = compute_v1.Disk(name=name, size_gb=size, type_=f"projects/{PROJECT}/zones/{zone}/diskTypes/{disk_type}")
        operation = disks.insert(project=PROJECT, zone=zone, disk_resource=disk)
        gce.zone_ops.wait(project=PROJECT, zone=zone, operation=operation.name)
    quotas = {q.metric: (q.usage, q.limit) for q in gce.regions.get(project=PROJECT, region=REGION).quotas}
    assert quotas["DISKS_TOTAL_GB"] == (200.0, 4096.0) and quotas["SSD_TOTAL_GB"] == (boot + 30.0, 500.0)
