"""The fake of fake_openstack.py driven by the real openstacksdk, through the calls labvm makes."""

import json

import keystoneauth1.exceptions
import openstack
import pytest
from openstack import exceptions

from fake_openstack import FakeOpenStack
from openstack_world import FAST, LABELS, boot

# A real ed25519 public key (Nova parses keys it imports) and its Nova fingerprint (MD5 of the blob).
PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJfd3lXKGeMUspDZPp/5diS12zbGBGlZN4u27ud2jlsu hedy"
FINGERPRINT = "5a:81:60:0b:20:42:a7:b1:a6:bb:27:ac:bf:3c:c6:c2"

# openstacksdk's own notices of future removals (RemovedInSDK50Warning, RemovedInSDK60Warning)
pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")


def test_auth(fake, conn, tmp_path, monkeypatch):
    assert conn.compute.find_flavor("m1.small").vcpus == 1
    assert fake.requests[:2] == [("GET", "/identity/v3"), ("POST", "/identity/v3/auth/tokens")]
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(fake.clouds_yaml("cades", password="wrong"))
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(wrong))
    # keystoneauth's own exception: the SDK does not wrap a failed authentication into HttpException
    with pytest.raises(keystoneauth1.exceptions.Unauthorized) as refused:
        openstack.connect(cloud="cades").compute.find_flavor("m1.small")
    assert refused.value.http_status == 401 and "requires authentication" in str(refused.value)


def test_lookups_keypair_security_group(fake, conn):
    flavor = conn.compute.find_flavor("m1.large")
    assert (flavor.vcpus, flavor.ram, flavor.disk) == (4, 8192, 80)
    assert conn.compute.find_flavor("m1.lrage") is None
    assert sorted(f.name for f in conn.compute.flavors()) == ["m1.large", "m1.medium", "m1.small"]
    assert conn.image.find_image("Ubuntu 22.04").status == "active"
    assert conn.network.find_network("public").is_router_external
    assert conn.network.find_network("nonet") is None

    assert conn.compute.find_keypair("labvm-hedy") is None
    with pytest.raises(exceptions.BadRequestException, match="Keypair data is invalid"):
        conn.compute.create_keypair(name="labvm-hedy", public_key="ssh-ed25519 AAAA hedy")
    conn.compute.create_keypair(name="labvm-hedy", public_key=PUBLIC_KEY)
    found = conn.compute.find_keypair("labvm-hedy")
    assert found.public_key == PUBLIC_KEY and found.fingerprint == FINGERPRINT
    assert [k.name for k in conn.compute.keypairs()] == ["labvm-hedy"]
    conn.compute.delete_keypair("labvm-hedy")
    assert fake.keypairs == {}

    assert conn.network.find_security_group("default") is not None
    assert conn.network.find_security_group("labvm-cades") is None
    group = conn.network.create_security_group(name="labvm-cades", description="SSH only")
    rule = conn.network.create_security_group_rule(
        security_group_id=group.id,
        direction="ingress",
        ethertype="IPv4",
        protocol="tcp",
        port_range_min=22,
        port_range_max=22,
        remote_ip_prefix="0.0.0.0/0",
    )
    found = conn.network.find_security_group("labvm-cades")
    assert rule.id in [r["id"] for r in found.security_group_rules]
    assert any(r.port_range_min == 22 for r in conn.network.security_group_rules(security_group_id=group.id))
    conn.network.delete_security_group_rule(rule)
    conn.network.delete_security_group(group)
    assert conn.network.find_security_group("labvm-cades") is None


def test_server_lifecycle(fake, conn):
    conn.compute.create_keypair(name="labvm-hedy", public_key=PUBLIC_KEY)
    server = boot(conn)
    assert fake.servers[server.id]["status"] == "BUILD"
    server = conn.compute.wait_for_server(server, status="ACTIVE", **FAST)
    assert server.status == "ACTIVE" and server.metadata == LABELS and server.launched_at
    assert server.flavor.original_name == "m1.medium"
    (volume,) = conn.block_storage.volumes()
    assert volume.size == 40 and server.attached_volumes[0]["id"] == volume.id
    assert volume.status == "in-use" and volume.attachments[0]["server_id"] == server.id
    boot(conn, name="someone-else", metadata={"labvm:profile": "cades", "labvm:owner": "ada"})
    mine = [
        s for s in conn.compute.servers(details=True) if all((s.metadata or {}).get(k) == v for k, v in LABELS.items())
    ]
    assert [s.id for s in mine] == [server.id]
    (fixed,) = server.addresses["lab-net"]
    assert fixed["OS-EXT-IPS:type"] == "fixed"

    # floating IP on the server's port
    (port,) = conn.network.ports(device_id=server.id)
    public = conn.network.find_network("public")
    ip = conn.network.create_ip(floating_network_id=public.id, description="labvm:cades:hedy")
    assert ip.floating_ip_address.startswith("203.0.113.") and ip.port_id is None
    ip = conn.network.update_ip(ip, port_id=port.id)
    assert ip.port_id == port.id and ip.fixed_ip_address == fixed["addr"]
    addresses = conn.compute.get_server(server.id).addresses["lab-net"]
    assert {"addr": ip.floating_ip_address, "OS-EXT-IPS:type": "floating"}.items() <= addresses[1].items()
    assert [i.id for i in conn.network.ips() if i.description == "labvm:cades:hedy"] == [ip.id]

    # power and shelve
    for action, status in [
        (conn.compute.stop_server, "SHUTOFF"),
        (conn.compute.start_server, "ACTIVE"),
        (conn.compute.stop_server, "SHUTOFF"),
        (conn.compute.shelve_server, "SHELVED_OFFLOADED"),
        (conn.compute.unshelve_server, "ACTIVE"),
    ]:
        action(server)
        server = conn.compute.wait_for_server(server, status=status, failures=["ERROR"], **FAST)
        assert fake.servers[server.id]["status"] == status
    with pytest.raises(exceptions.ConflictException, match="Cannot 'os-start'"):
        conn.compute.start_server(server)

    # resize: confirm, revert, failure
    conn.compute.resize_server(server, conn.compute.find_flavor("m1.large").id)
    server = conn.compute.wait_for_server(server, status="VERIFY_RESIZE", **FAST)
    conn.compute.confirm_server_resize(server)
    server = conn.compute.wait_for_server(server, status="ACTIVE", **FAST)
    assert server.flavor.original_name == "m1.large"
    conn.compute.resize_server(server, conn.compute.find_flavor("m1.small").id)
    server = conn.compute.wait_for_server(server, status="VERIFY_RESIZE", **FAST)
    assert server.flavor.original_name == "m1.small"
    conn.compute.revert_server_resize(server)
    server = conn.compute.wait_for_server(server, status="ACTIVE", **FAST)
    assert server.flavor.original_name == "m1.large"
    fake.fail_next_resize = True  # NoValidHost: back to ACTIVE on the old flavor, the fault not shown
    conn.compute.resize_server(server, conn.compute.find_flavor("m1.small").id)
    server = conn.compute.get_server(server.id)
    assert (server.status, server.flavor.original_name, server.fault) == ("ACTIVE", "m1.large", None)

    # delete: the port goes, the floating IP stays until released
    conn.compute.delete_server(server)
    conn.compute.wait_for_delete(server, **FAST)
    assert server.id not in fake.servers and not fake.volumes.get(volume.id)
    assert conn.network.get_ip(ip.id).port_id is None
    conn.network.delete_ip(ip)
    assert ip.id not in fake.floating_ips


def test_snapshot_image(fake, conn):
    server = conn.compute.wait_for_server(boot(conn), status="ACTIVE", **FAST)
    image = conn.compute.create_server_image(server, "labvm-cades-1", metadata=LABELS, wait=True)
    assert image.status == "active" and image.properties["labvm:owner"] == "hedy"
    assert fake.images[image.id]["status"] == "active" and fake.images[image.id]["instance_uuid"] == server.id
    assert ("GET", f"/image/v2/images/{image.id}") in fake.requests
    mine = [i for i in conn.image.images() if all((i.properties or {}).get(k) == v for k, v in LABELS.items())]
    assert [i.name for i in mine] == ["labvm-cades-1"]
    assert fake.servers[server.id]["OS-EXT-STS:task_state"] == "image_snapshot"  # until the next GET
    server = conn.compute.get_server(server.id)
    assert (server.status, server.task_state) == ("ACTIVE", None)
    conn.image.delete_image(image.id)
    assert image.id not in fake.images and conn.image.find_image("labvm-cades-1") is None


def test_snapshot_before_microversion_2_45(fake, conn):
    """Before 2.45 Nova names the new image only in the Location header; the SDK reads either."""
    fake.max_microversion = "2.44"
    server = conn.compute.wait_for_server(boot(conn), status="ACTIVE", **FAST)
    assert server.flavor.id == conn.compute.find_flavor("m1.medium").id  # the pre-2.47 flavor reference
    image = conn.compute.create_server_image(server, "old-style", metadata=LABELS)  # volume-backed: active at once
    assert image.status == "active" and fake.images[image.id]["name"] == "old-style"
    assert conn.image.get_image(image.id).status == "active"


def test_failures(fake, conn):
    fake.quota["cores"] = 1
    with pytest.raises(
        exceptions.ForbiddenException, match="Quota exceeded for cores: Requested 2, but already used 0 of 1"
    ):
        boot(conn)
    assert fake.servers == {}
    limits = conn.compute.get_limits().absolute
    assert (limits.total_cores, limits.total_cores_used, limits.instances) == (1, 0, 10)
    fake.floating_ips_exhausted = True
    with pytest.raises(exceptions.ConflictException, match="No more IP addresses available"):
        conn.network.create_ip(floating_network_id=conn.network.find_network("public").id)


def test_volume_backed_snapshot_is_a_cinder_snapshot_the_volume_outlives_its_server(fake, conn):
    server = conn.compute.wait_for_server(boot(conn), status="ACTIVE", **FAST)
    image = conn.compute.create_server_image(server, "labvm-cades-1", metadata=LABELS, wait=True)
    assert image.status == "active" and image.size == 0  # no data: active at once
    (mapping,) = json.loads(image.properties["block_device_mapping"])
    snapshot = conn.block_storage.get_snapshot(mapping["snapshot_id"])
    (volume,) = conn.block_storage.volumes()
    assert snapshot.volume_id == volume.id and snapshot.name == "snapshot for labvm-cades-1"
    assert conn.block_storage.get_snapshot(snapshot.id).status == "available"
    clone = conn.compute.create_server(  # what `up --from-image` asks: the image's own mapping wins
        name="clone",
        flavor_id="3",
        networks=[{"uuid": conn.network.find_network("lab-net").id}],
        block_device_mapping=[
            {
                "boot_index": 0,
                "uuid": image.id,
                "source_type": "image",
                "destination_type": "volume",
                "volume_size": 40,
                "delete_on_termination": True,
            }
        ],
    )
    clone = conn.compute.wait_for_server(clone, status="ACTIVE", **FAST)
    assert fake.volumes[clone.attached_volumes[0]["id"]]["snapshot_id"] == snapshot.id
    conn.compute.delete_server(clone)
    conn.compute.delete_server(server)
    conn.compute.wait_for_delete(server, **FAST)
    volume = conn.block_storage.get_volume(volume.id)  # delete_on_termination, yet kept: it has a snapshot
    assert (volume.status, volume.attachments) == ("available", [])
    with pytest.raises(exceptions.BadRequestException, match="have snapshots"):
        conn.block_storage.delete_volume(volume)
    conn.image.delete_image(image.id)  # Glance knows nothing of the snapshot: it stays
    conn.block_storage.delete_snapshot(snapshot)
    with pytest.raises(exceptions.BadRequestException, match="have snapshots"):  # still deleting
        conn.block_storage.delete_volume(volume)
    conn.block_storage.wait_for_delete(snapshot, **FAST)
    conn.block_storage.delete_volume(volume)
    assert fake.volumes == fake.snapshots == {}


def test_shelve_stays_shelved_unless_offloaded_at_once(fake, conn):
    fake.shelved_offload_time = -1
    image = conn.image.find_image("Ubuntu 22.04")
    server = conn.compute.create_server(
        name="img", flavor_id="2", image_id=image.id, networks=[{"uuid": conn.network.find_network("lab-net").id}]
    )
    server = conn.compute.wait_for_server(server, status="ACTIVE", **FAST)
    conn.compute.shelve_server(server)
    server = conn.compute.wait_for_server(server, status="SHELVED", **FAST)
    assert conn.compute.get_server(server.id).status == "SHELVED"  # and stays so
    conn.compute.unshelve_server(server)
    conn.compute.wait_for_server(server, status="ACTIVE", **FAST)
    volume_backed = conn.compute.wait_for_server(boot(conn), status="ACTIVE", **FAST)
    conn.compute.shelve_server(volume_backed)  # a volume-backed server is offloaded at once, whatever the option
    conn.compute.wait_for_server(volume_backed, status="SHELVED_OFFLOADED", **FAST)


def test_a_failed_build_is_error_with_its_fault(fake, conn):
    fake.fail_next_boot = "No valid host was found. There are not enough hosts available."
    server = boot(conn)
    with pytest.raises(exceptions.ResourceFailure):
        conn.compute.wait_for_server(server, status="ACTIVE", failures=["ERROR"], **FAST)
    server = conn.compute.get_server(server.id)
    assert server.status == "ERROR" and "not enough hosts" in server.fault["message"]
    conn.compute.delete_server(server)
    conn.compute.wait_for_delete(server, **FAST)


def test_application_credential_and_private_ca(tmp_path, monkeypatch):
    monkeypatch.delenv("OS_CLOUD", raising=False)
    with FakeOpenStack(tls=True) as fake:
        clouds = tmp_path / "clouds.yaml"
        clouds.write_text(fake.app_credential_clouds_yaml("cades") + f"    cacert: {fake.ca_file}\n")
        monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(clouds))
        conn = openstack.connect(cloud="cades")
        assert fake.base.startswith("https://") and conn.compute.find_flavor("m1.small").vcpus == 1
        clouds.write_text(fake.app_credential_clouds_yaml("cades"))
        with pytest.raises(keystoneauth1.exceptions.SSLError):
            openstack.connect(cloud="cades").compute.find_flavor("m1.small")


# -- issue 17: what Nova, Neutron and Glance do that the fake used to hide ------------------------


def test_the_request_log_holds_every_request_served(fake, conn):
    conn.compute.find_flavor("m1.small")
    assert {r for r in fake.requests if r[0] != "GET"} == {("POST", "/identity/v3/auth/tokens")}  # reads and login
    served = len(fake.requests)
    conn.compute.create_keypair(name="labvm-hedy", public_key=PUBLIC_KEY)
    assert fake.requests[served:] == [("POST", "/compute/v2.1/os-keypairs")]


@pytest.mark.parametrize("name", ["labvm-hedy.lamarr", "labvm-hedy@lab.org", "labvm-hédy"])
def test_key_pair_names_at_microversion_2_10(fake, conn, name):
    """openstacksdk sends key pairs at 2.10, where "." and "@" are refused (they pass from 2.92)."""
    with pytest.raises(exceptions.BadRequestException, match="Invalid input for field/attribute name"):
        conn.compute.create_keypair(name=name, public_key=PUBLIC_KEY)
    conn.compute.create_keypair(name="labvm-Hedy Lamarr_1", public_key=PUBLIC_KEY)
    assert list(fake.keypairs) == ["labvm-Hedy Lamarr_1"]


def test_offloaded_servers_keep_counting_cores_unless_placement_counts(fake, conn):
    server = conn.compute.wait_for_server(boot(conn), status="ACTIVE", **FAST)
    conn.compute.shelve_server(server)
    conn.compute.wait_for_server(server, status="SHELVED_OFFLOADED", **FAST)
    limits = conn.compute.get_limits().absolute
    assert (limits.instances_used, limits.total_cores_used, limits.total_ram_used) == (1, 2, 4096)
    fake.count_usage_from_placement = True
    limits = conn.compute.get_limits().absolute
    assert (limits.instances_used, limits.total_cores_used, limits.total_ram_used) == (1, 0, 0)


def test_a_boot_beyond_quota_at_the_recheck_is_accepted_then_error(fake, conn):
    fake.quota["cores"] = 4
    fake.in_flight = {"instances": 1, "cores": 2, "ram": 4096}  # another boot the API has not counted yet
    first = conn.compute.wait_for_server(boot(conn), status="ACTIVE", **FAST)  # 2 + 2 in flight: fits
    assert conn.compute.get_limits().absolute.total_cores_used == 2  # the boot in flight is not shown
    second = boot(conn, name="second")  # the API's count (2 used) lets it in
    with pytest.raises(exceptions.ResourceFailure):
        conn.compute.wait_for_server(second, status="ACTIVE", failures=["ERROR"], **FAST)
    second = conn.compute.get_server(second.id)
    assert second.fault["message"] == "Quota exceeded for cores: Requested 2, but already used 4 of 4 cores"
    assert second.addresses == {} and second.attached_volumes == []  # never reached a compute host
    assert list(conn.network.ports(device_id=second.id)) == []
    conn.compute.delete_server(second)
    conn.compute.wait_for_delete(second, **FAST)
    assert list(fake.servers) == [first.id]


def test_a_dual_stack_port_has_both_addresses_and_its_floating_ip_maps_the_ipv4_one(fake, conn):
    network = conn.network.find_network("dual-net")
    server = conn.compute.create_server(
        name="dual", flavor_id="2", networks=[{"uuid": network.id}], image_id=conn.image.find_image("Ubuntu 22.04").id
    )
    server = conn.compute.wait_for_server(server, status="ACTIVE", **FAST)
    assert [(a["version"], a["addr"]) for a in server.addresses["dual-net"]] == [
        (6, "2001:db8:1::10"),
        (4, "10.1.0.10"),
    ]
    (port,) = conn.network.ports(device_id=server.id)
    ip = conn.network.create_ip(floating_network_id=conn.network.find_network("public").id)
    assert conn.network.update_ip(ip, port_id=port.id).fixed_ip_address == "10.1.0.10"


def test_a_snapshot_whose_upload_fails_ends_killed(fake, conn):
    image = conn.image.find_image("Ubuntu 22.04")
    server = conn.compute.create_server(
        name="img", flavor_id="2", image_id=image.id, networks=[{"uuid": conn.network.find_network("lab-net").id}]
    )
    server = conn.compute.wait_for_server(server, status="ACTIVE", **FAST)
    fake.fail_next_snapshot = True
    shot = conn.compute.create_server_image(server, "labvm-cades-1", metadata=LABELS)
    assert shot.status == "queued"  # the SDK's own look right after createImage
    assert [conn.image.get_image(shot.id).status for _ in range(2)] == ["killed", "killed"]


def test_neutron_reports_floating_ip_quota_details(fake, conn):
    conn.network.create_ip(floating_network_id=conn.network.find_network("public").id)
    details = conn.network.get_quota(conn.current_project_id, details=True)
    assert details.floating_ips == {"limit": 50, "reserved": 0, "used": 1}


def test_a_service_that_answers_503_fails_a_list_only_when_it_is_read(fake, conn):
    fake.unavailable = "/compute/v2.1/servers"
    servers = conn.compute.servers()  # openstacksdk's list is a generator: nothing asked yet
    with pytest.raises(exceptions.HttpException) as unavailable:
        list(servers)
    assert unavailable.value.status_code == 503 and "currently unavailable" in unavailable.value.details
    assert conn.image.find_image("Ubuntu 22.04")  # the other services answer
    fake.unavailable = ""
    assert list(conn.compute.servers()) == []


@pytest.mark.parametrize("quota", [dict(volumes=1), dict(gigabytes=60)])
def test_a_boot_volume_beyond_cinder_s_quota_is_accepted_then_error(fake, conn, quota):
    """Nova's API does not ask Cinder: the build aborts on the host (Quota exceeded for resources: volumes)."""
    conn.compute.wait_for_server(boot(conn), status="ACTIVE", **FAST)  # one 40 GB boot volume
    fake.quota.update(quota)
    limits = conn.block_storage.get_limits().absolute
    assert (limits.total_volumes_used, limits.total_gigabytes_used) == (1, 40)
    server = boot(conn, name="labvm-cades-w1")
    with pytest.raises(exceptions.ResourceFailure):
        conn.compute.wait_for_server(server, status="ACTIVE", failures=["ERROR"], **FAST)
    server = conn.compute.get_server(server.id)
    assert server.fault["message"] == f"Build of instance {server.id} aborted: Quota exceeded for resources: volumes"
    assert len(fake.volumes) == 1 and not [p for p in fake.ports.values() if p["device_id"] == server.id]


def test_the_action_log_records_a_start_while_launched_at_stays(fake, conn):
    """Nova logs each action with its request's id; os-start moves no launched_at (only build, unshelve, resize)."""
    server = conn.compute.wait_for_server(boot(conn), status="ACTIVE", **FAST)
    launched = server.launched_at
    conn.compute.stop_server(server)
    conn.compute.wait_for_server(server, status="SHUTOFF", **FAST)
    conn.compute.start_server(server)
    server = conn.compute.wait_for_server(server, status="ACTIVE", **FAST)
    assert server.launched_at == launched
    newest, stop, create = conn.compute.server_actions(server)  # newest first
    assert (newest.action, stop.action, create.action) == ("start", "stop", "create")
    assert newest.request_id.startswith("req-") and newest.start_time >= launched.split(".")[0]
    assert fake.actions[server.id][-1]["request_id"] == newest.request_id


# -- Cinder volumes and Nova's os-volume_attachments (issue 29's data volume) ----------------------------------


def new_volume(conn, size=20, **attrs):
    return conn.block_storage.create_volume(size=size, name="data", metadata={**LABELS, "labvm:role": "data"}, **attrs)


def test_a_volume_is_creating_then_available_and_counts_against_the_quota(fake, conn):
    volume = new_volume(conn)
    assert (volume.status, volume.availability_zone, volume.volume_type) == ("creating", "nova", "__DEFAULT__")
    volume = conn.block_storage.wait_for_status(volume, "available", **FAST)
    assert volume.attachments == [] and volume.metadata["labvm:role"] == "data"
    limits = conn.block_storage.get_limits().absolute
    assert (limits.total_volumes_used, limits.total_gigabytes_used) == (1, 20)


@pytest.mark.parametrize(
    "quota, message",
    [
        (
            dict(gigabytes=30),
            "Requested volume or snapshot exceeds allowed gigabytes quota. Requested 40G, quota is 30G and 20G has "
            "been consumed.",
        ),
        (dict(volumes=1), "Maximum number of volumes allowed (1) exceeded for quota 'volumes'."),
    ],
)
def test_a_volume_beyond_cinder_s_quota_is_refused_413(fake, conn, quota, message):
    new_volume(conn)
    fake.quota.update(quota)
    with pytest.raises(exceptions.HttpException) as refused:
        new_volume(conn, size=40)
    assert refused.value.status_code == 413 and message in str(refused.value)
    assert len(fake.volumes) == 1


def test_a_volume_s_type_and_zone_are_cinder_s_own(fake, conn):
    with pytest.raises(exceptions.NotFoundException, match="Volume type with name gold could not be found"):
        new_volume(conn, volume_type="gold")
    with pytest.raises(exceptions.BadRequestException, match="Availability zone 'az9' is invalid"):
        new_volume(conn, availability_zone="az9")
    assert fake.volumes == {}


def test_a_volume_the_backend_cannot_make_ends_error_and_can_be_deleted(fake, conn):
    fake.fail_next_volume = True
    volume = new_volume(conn)
    with pytest.raises(exceptions.ResourceFailure):
        conn.block_storage.wait_for_status(volume, "available", failures=["error"], **FAST)
    conn.block_storage.delete_volume(volume)  # Cinder deletes a volume in error (cinder/volume/api.py API.delete)
    assert fake.volumes == {}


def test_attach_reserves_the_volume_then_it_is_in_use_and_nova_lists_it(fake, conn):
    server = conn.compute.wait_for_server(boot(conn), status="ACTIVE", **FAST)
    volume = conn.block_storage.wait_for_status(new_volume(conn), "available", **FAST)
    attachment = conn.compute.create_volume_attachment(server, volume=volume.id)
    assert (attachment.volume_id, attachment.device) == (volume.id, "/dev/vdb")  # the boot volume is vda
    assert fake.volumes[volume.id]["status"] == "reserved"  # Cinder's attachment_create, before the host attaches
    volume = conn.block_storage.wait_for_status(volume, "in-use", **FAST)
    (attached,) = volume.attachments
    assert (attached["server_id"], attached["device"]) == (server.id, "/dev/vdb")
    devices = {a.volume_id: a.device for a in conn.compute.volume_attachments(server)}
    assert devices[volume.id] == "/dev/vdb" and len(devices) == 2
    assert {v["id"] for v in conn.compute.get_server(server).attached_volumes} == set(devices)
    assert fake.actions[server.id][-1]["action"] == "attach_volume"
    with pytest.raises(exceptions.BadRequestException, match="already attached"):
        conn.compute.create_volume_attachment(server, volume=volume.id)
    with pytest.raises(exceptions.BadRequestException, match="Invalid volume: Volume status must be available"):
        conn.block_storage.delete_volume(volume)  # in-use: Cinder refuses (400)


def test_detach_is_detaching_then_available(fake, conn):
    server = conn.compute.wait_for_server(boot(conn), status="ACTIVE", **FAST)
    volume = conn.block_storage.wait_for_status(new_volume(conn), "available", **FAST)
    conn.compute.create_volume_attachment(server, volume=volume.id)
    conn.block_storage.wait_for_status(volume, "in-use", **FAST)
    conn.compute.delete_volume_attachment(server, volume.id)
    assert fake.volumes[volume.id]["status"] == "detaching"  # Cinder's begin_detaching, from Nova's API
    volume = conn.block_storage.wait_for_status(volume, "available", **FAST)
    assert volume.attachments == [] and [a.volume_id for a in conn.compute.volume_attachments(server)] != [volume.id]
    with pytest.raises(exceptions.NotFoundException, match=f"Instance {server.id} is not attached to volume"):
        conn.compute.delete_volume_attachment(server, volume.id, ignore_missing=False)
    root = server.attached_volumes[0]["id"]
    with pytest.raises(exceptions.BadRequestException, match="Cannot detach a root device volume"):
        conn.compute.delete_volume_attachment(server, root, ignore_missing=False)
    conn.block_storage.delete_volume(volume)
    assert volume.id not in fake.volumes


def test_attach_needs_a_server_with_no_task_and_an_available_volume(fake, conn):
    server = boot(conn)  # BUILD
    volume = conn.block_storage.wait_for_status(new_volume(conn), "available", **FAST)
    with pytest.raises(exceptions.ConflictException, match="while it is in vm_state building"):
        conn.compute.create_volume_attachment(server.id, volume=volume.id)
    server = conn.compute.wait_for_server(server, status="ACTIVE", **FAST)
    fake.volumes[volume.id]["status"] = "detaching"
    with pytest.raises(exceptions.BadRequestException, match="status must be available or downloading to reserve"):
        conn.compute.create_volume_attachment(server, volume=volume.id)


def test_nova_attaches_across_zones_unless_cross_az_attach_is_off(fake, conn):
    """nova.conf [cinder] cross_az_attach, default True: no zone check at all."""
    fake.volume_zones.append("az2")
    server = conn.compute.wait_for_server(boot(conn), status="ACTIVE", **FAST)
    volume = conn.block_storage.wait_for_status(new_volume(conn, availability_zone="az2"), "available", **FAST)
    fake.cross_az_attach = False
    with pytest.raises(exceptions.BadRequestException, match="are not in the same availability_zone"):
        conn.compute.create_volume_attachment(server, volume=volume.id)
    fake.cross_az_attach = True
    conn.compute.create_volume_attachment(server, volume=volume.id)
    assert conn.block_storage.wait_for_status(volume, "in-use", **FAST).attachments[0]["server_id"] == server.id


def test_deleting_a_server_detaches_its_data_volume_and_keeps_it(fake, conn):
    server = conn.compute.wait_for_server(boot(conn), status="ACTIVE", **FAST)
    volume = conn.block_storage.wait_for_status(new_volume(conn), "available", **FAST)
    conn.compute.create_volume_attachment(server, volume=volume.id)
    conn.block_storage.wait_for_status(volume, "in-use", **FAST)
    conn.compute.delete_server(server)
    volume = conn.block_storage.get_volume(volume)
    assert (volume.status, volume.attachments) == ("available", [])
    assert len(fake.volumes) == 1  # the boot volume went with it (delete_on_termination), the data volume stays


# -- Cinder snapshots of a data volume and os-extend (issue 29's backups and growth) ---------------------------


def in_use_volume(conn, size=20):
    server = conn.compute.wait_for_server(boot(conn), status="ACTIVE", **FAST)
    volume = conn.block_storage.wait_for_status(new_volume(conn, size=size), "available", **FAST)
    conn.compute.create_volume_attachment(server, volume=volume.id)
    return conn.block_storage.wait_for_status(volume, "in-use", **FAST)


def snapshot_at(conn, microversion, volume_id, **spec):
    """POST /snapshots at a microversion of the test's choosing (openstacksdk sends 3.65 at most)."""
    body = {"snapshot": {"volume_id": volume_id, "name": "backup", **spec}}
    return conn.block_storage.post("/snapshots", json=body, microversion=microversion)


def test_an_in_use_volume_is_snapshotted_with_force_before_3_66_and_force_false_is_refused_from_it(fake, conn):
    """cinder/api/v3/snapshots.py create, cinder/volume/api.py create_snapshot_in_db."""
    volume = in_use_volume(conn)
    refused = snapshot_at(conn, "3.65", volume.id)
    assert refused.status_code == 400
    assert "status must be available, but current status is: in-use" in refused.json()["badRequest"]["message"]
    assert snapshot_at(conn, "3.65", volume.id, force=True).status_code == 202
    assert snapshot_at(conn, "3.66", volume.id).status_code == 202  # in use needs no force from 3.66
    assert snapshot_at(conn, "3.66", volume.id, force=True).status_code == 202  # ignored, for compatibility
    flag = snapshot_at(conn, "3.66", volume.id, force=False)
    assert flag.status_code == 400 and "the 'force' flag is invalid" in flag.json()["badRequest"]["message"]
    assert len(fake.snapshots) == 3


def test_a_snapshot_is_creating_then_available_with_its_metadata_and_counts_against_the_quota(fake, conn):
    volume = in_use_volume(conn)
    snapshot = conn.block_storage.create_snapshot(volume_id=volume.id, name="b", metadata=LABELS, is_forced=True)
    assert (snapshot.status, snapshot.progress, snapshot.size, snapshot.metadata) == ("creating", "0%", 20, LABELS)
    snapshot = conn.block_storage.wait_for_status(snapshot, "available", **FAST)
    assert snapshot.progress == "100%" and fake.volumes[volume.id]["status"] == "in-use"
    limits = conn.block_storage.get_limits().absolute
    assert (limits.total_snapshots_used, limits.total_gigabytes_used) == (1, 40 + 20 + 20)  # boot, data, snapshot
    conn.compute.delete_volume_attachment(volume.attachments[0]["server_id"], volume.id)
    assert conn.block_storage.get_volume(volume).status == "available"
    with pytest.raises(exceptions.BadRequestException, match="have snapshots"):  # API.delete without cascade
        conn.block_storage.delete_volume(volume)


@pytest.mark.parametrize(
    "quota, message",
    [
        (dict(snapshots=0), "Maximum number of snapshots allowed (0) exceeded"),
        (
            dict(gigabytes=70),
            "Requested volume or snapshot exceeds allowed gigabytes quota. Requested 20G, quota is 70G and 60G has "
            "been consumed.",
        ),
    ],
)
def test_a_snapshot_beyond_cinder_s_quota_is_refused_413(fake, conn, quota, message):
    volume = in_use_volume(conn)
    fake.quota.update(quota)
    with pytest.raises(exceptions.HttpException) as refused:
        conn.block_storage.create_snapshot(volume_id=volume.id, name="b", is_forced=True)
    assert refused.value.status_code == 413 and message in str(refused.value)
    assert fake.snapshots == {}


def test_a_snapshot_the_backend_fails_ends_error_and_can_be_deleted(fake, conn):
    fake.fail_next_volume_snapshot = True
    volume = in_use_volume(conn)
    snapshot = conn.block_storage.create_snapshot(volume_id=volume.id, name="b", is_forced=True)
    with pytest.raises(exceptions.ResourceFailure):
        conn.block_storage.wait_for_status(snapshot, "available", failures=["error"], **FAST)
    conn.block_storage.delete_snapshot(snapshot)
    conn.block_storage.wait_for_delete(snapshot, **FAST)
    assert fake.snapshots == {}


def test_an_in_use_volume_is_extended_from_3_42_and_a_shrink_is_refused(fake, conn):
    """cinder/api/contrib/volume_actions.py _extend and cinder/volume/api.py _extend."""
    volume = in_use_volume(conn)

    def extend(size, microversion):
        body = {"os-extend": {"new_size": size}}
        return conn.block_storage.post(f"/volumes/{volume.id}/action", json=body, microversion=microversion)

    before = extend(30, "3.41")
    assert before.status_code == 400
    assert "status must be '{'status': 'available'}' to extend, currently in-use" in before.text
    shrink = extend(10, "3.42")
    assert shrink.status_code == 400 and "New size for extend must be greater than current size" in shrink.text
    assert extend(30, "3.42").status_code == 202 and fake.volumes[volume.id]["status"] == "extending"
    grown = conn.block_storage.get_volume(volume)  # done at the next look
    assert (grown.status, grown.size) == ("in-use", 30)
    fake.quota["gigabytes"] = 80  # 40 boot + 30 data in use
    over = extend(50, "3.42")
    assert over.status_code == 413 and "exceeds allowed gigabytes quota. Requested 20G" in over.text
    assert conn.block_storage.get_volume(volume).size == 30


def test_openstacksdk_extends_at_the_cloud_s_microversion_and_a_backend_may_refuse_an_attached_one(fake, conn):
    """openstacksdk's Volume.extend sends min(3.71, the cloud's maximum); a backend without online_extend_support
    finds no valid backend and the volume is back as it was (cinder/scheduler/manager.py extend_volume)."""
    fake.online_extend_support = False
    volume = in_use_volume(conn)
    conn.block_storage.extend_volume(volume, 30)
    assert ("POST", f"/volume/v3/{fake.project_id}/volumes/{volume.id}/action") in fake.requests
    again = conn.block_storage.get_volume(volume)
    assert (again.status, again.size) == ("in-use", 20)


def available_snapshot(conn, volume):
    snapshot = conn.block_storage.create_snapshot(volume_id=volume.id, name="b", is_forced=True)
    return conn.block_storage.wait_for_status(snapshot, "available", **FAST)


def test_a_volume_from_a_snapshot_takes_its_size_zone_and_type_by_cinder_s_rules(fake, conn):
    """cinder/api/v3/volumes.py create, cinder/volume/flows/api/create_volume.py ExtractVolumeRequestTask."""
    fake.volume_zones, fake.volume_types = ["nova", "az2"], ["__DEFAULT__", "ssd"]
    volume = conn.block_storage.wait_for_status(new_volume(conn, volume_type="ssd"), "available", **FAST)
    snapshot = conn.block_storage.create_snapshot(volume_id=volume.id, name="b")
    with pytest.raises(exceptions.BadRequestException, match="Originating snapshot status must be one of 'available'"):
        new_volume(conn, snapshot_id=snapshot.id)  # still creating
    snapshot = conn.block_storage.wait_for_status(snapshot, "available", **FAST)
    with pytest.raises(exceptions.BadRequestException, match="cannot be smaller than the snapshot size 20GB"):
        new_volume(conn, size=10, snapshot_id=snapshot.id)
    with pytest.raises(exceptions.BadRequestException, match="same availability zone as the snapshot"):
        new_volume(conn, snapshot_id=snapshot.id, availability_zone="az2")
    with pytest.raises(exceptions.NotFoundException, match="could not be found"):
        new_volume(conn, snapshot_id="0" * 32)
    assert len(fake.volumes) == 1
    made = conn.block_storage.create_volume(snapshot_id=snapshot.id, name="restored")  # no size, zone or type
    assert (made.size, made.availability_zone, made.volume_type, made.snapshot_id) == (20, "nova", "ssd", snapshot.id)
    fake.cloned_volume_same_az = False  # cinder/volume/api.py: an admin's choice
    assert new_volume(conn, size=30, snapshot_id=snapshot.id, availability_zone="az2").availability_zone == "az2"


def test_a_snapshot_a_volume_was_made_from_is_deleted_unless_the_backend_keeps_it(fake, conn):
    """No API rule: DELETE is 202 either way; a backend whose clones depend on it (SnapshotIsBusy) puts it back
    to available (cinder/volume/manager.py delete_snapshot), and its volume keeps a snapshot, so no delete."""
    volume = conn.block_storage.wait_for_status(new_volume(conn), "available", **FAST)
    snapshot = available_snapshot(conn, volume)
    conn.block_storage.wait_for_status(new_volume(conn, snapshot_id=snapshot.id), "available", **FAST)
    fake.snapshots_busy_with_clones = True
    conn.block_storage.delete_snapshot(snapshot)
    assert conn.block_storage.get_snapshot(snapshot.id).status == "available"  # kept
    with pytest.raises(exceptions.BadRequestException, match="have snapshots"):
        conn.block_storage.delete_volume(volume)
    fake.snapshots_busy_with_clones = False  # a backend that flattens the clone first (RBD since Zed)
    conn.block_storage.delete_snapshot(snapshot)
    conn.block_storage.wait_for_delete(snapshot, **FAST)
    conn.block_storage.delete_volume(volume)
    assert volume.id not in fake.volumes and len(fake.volumes) == 1
