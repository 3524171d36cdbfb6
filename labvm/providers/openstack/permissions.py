"""What a first `up` of an openstack profile makes (from hosts.yml alone), and the API calls labvm's OpenStack
code makes, as the policy names a cloud's admin grants (read from that code, not a list kept by hand).

How they are derived: every `conn.<service>.<method>` named in labvm/providers/openstack/*.py is one
openstacksdk proxy call, and POLICIES names the policy rule its API call is checked against, as each service
defines it: Nova nova/policies/*.py (os_compute_api:...), Neutron neutron/conf/policies/*.py, Cinder
cinder/policies/*.py (volume:..., volume_extension:...), Glance glance/policies/image.py.  A call labvm makes
that POLICIES lacks is a test failure (tests/test_plan_without_credentials.py), so the list cannot drift; a
waiter polls with its service's get."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

from ...config import Profile
from ..cloud import owner
from .names import OpenStackNames
from .settings import OpenStackSettings

SERVICES = ("compute", "network", "image", "block_storage")
# A call's rule, or its rules where the service checks one of several by the resource's state.
POLICIES: dict[str, str | tuple[str, ...]] = {
    # Nova: nova/policies/servers.py, keypairs.py, flavor_*.py, limits.py, shelve.py, instance_actions.py
    "compute.create_server": "os_compute_api:servers:create",
    "compute.get_server": "os_compute_api:servers:show",
    "compute.servers": "os_compute_api:servers:detail",
    "compute.delete_server": "os_compute_api:servers:delete",
    "compute.start_server": "os_compute_api:servers:start",
    "compute.stop_server": "os_compute_api:servers:stop",
    "compute.resize_server": "os_compute_api:servers:resize",
    "compute.confirm_server_resize": "os_compute_api:servers:confirm_resize",
    "compute.create_server_image": "os_compute_api:servers:create_image",
    "compute.shelve_server": "os_compute_api:os-shelve:shelve",
    "compute.unshelve_server": "os_compute_api:os-shelve:unshelve",
    "compute.server_actions": "os_compute_api:os-instance-actions:list",
    "compute.wait_for_delete": "os_compute_api:servers:show",
    "compute.find_keypair": "os_compute_api:os-keypairs:show",
    "compute.create_keypair": "os_compute_api:os-keypairs:create",
    "compute.find_flavor": "os_compute_api:os-flavor-access",
    "compute.flavors": "os_compute_api:os-flavor-access",
    "compute.get_limits": "os_compute_api:limits",
    # nova/policies/volumes_attachments.py
    "compute.create_volume_attachment": "os_compute_api:os-volumes-attachments:create",
    "compute.delete_volume_attachment": "os_compute_api:os-volumes-attachments:delete",
    # Neutron: neutron/conf/policies/network.py, security_group.py, floatingip.py, port.py, quotas.py
    "network.find_network": "get_network",
    "network.find_security_group": "get_security_group",
    "network.create_security_group": "create_security_group",
    "network.delete_security_group": "delete_security_group",
    "network.security_group_rules": "get_security_group_rule",
    "network.create_security_group_rule": "create_security_group_rule",
    "network.delete_security_group_rule": "delete_security_group_rule",
    "network.ips": "get_floatingip",
    "network.create_ip": "create_floatingip",
    "network.update_ip": "update_floatingip",
    "network.delete_ip": "delete_floatingip",
    "network.ports": "get_port",
    "network.get_quota": "get_quota",
    # Cinder: cinder/policies/volumes.py, volume_metadata.py, snapshots.py, snapshot_metadata.py, limits.py
    "block_storage.find_volume": "volume:get",
    "block_storage.get_volume": "volume:get",
    "block_storage.volumes": "volume:get_all",
    # a volume from a snapshot (restore) is volume:create too, after the snapshot's volume:get_snapshot
    # (cinder/volume/api.py create; cinder/api/v3/volumes.py create)
    "block_storage.create_volume": "volume:create",
    "block_storage.delete_volume": "volume:delete",
    "block_storage.wait_for_status": "volume:get",
    # openstacksdk POSTs /volumes/ID/metadata (a merge), which cinder/api/v3/volume_metadata.py create checks
    # against volume:create_volume_metadata (cinder/volume/api.py create_volume_metadata); PUT is the update rule
    "block_storage.set_volume_metadata": "volume:create_volume_metadata",
    # cinder/policies/volume_actions.py: os-extend is checked against volume:extend for an available volume and
    # volume:extend_attached_volume for an in-use one (cinder/volume/api.py extend, extend_attached_volume)
    "block_storage.extend_volume": ("volume:extend", "volume:extend_attached_volume"),
    "block_storage.create_snapshot": "volume:create_snapshot",
    "block_storage.find_snapshot": "volume:get_snapshot",
    "block_storage.get_snapshot": "volume:get_snapshot",
    "block_storage.snapshots": "volume:get_all_snapshots",
    "block_storage.delete_snapshot": "volume:delete_snapshot",
    "block_storage.set_snapshot_metadata": "volume:update_snapshot_metadata",
    "block_storage.wait_for_delete": "volume:get_snapshot",
    "block_storage.get_limits": "limits_extension:used_limits",
    # Glance: glance/policies/image.py
    "image.find_image": "get_image",
    "image.get_image": "get_image",
    "image.images": "get_images",
    "image.delete_image": "delete_image",
}


def calls() -> set[str]:
    """Each `<service>.<method>` of openstacksdk's proxies named in labvm's OpenStack code."""
    found = set()
    for source in sorted(Path(__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute):
                service, connection = node.value.attr, node.value.value
                if service in SERVICES and "conn" in (getattr(connection, "attr", ""), getattr(connection, "id", "")):
                    found.add(f"{service}.{node.attr}")
    return found


@functools.cache
def permissions() -> tuple[str, ...]:
    """Each policy rule ("os_compute_api:servers:create") labvm's OpenStack calls are checked against, sorted."""
    rules = [POLICIES[call] for call in calls() if call in POLICIES]
    return tuple(sorted({rule for entry in rules for rule in ((entry,) if isinstance(entry, str) else entry)}))


def first_up(profile: Profile) -> list[str]:
    """What a first `up` makes (network.py, head.py): labvm's key pair, its security group, the server (on a
    boot volume where hosts.yml sets volume_size), and a floating IP where it names a pool; no cloud call."""
    settings = OpenStackSettings.of(profile)
    names = OpenStackNames(profile.name, owner())
    disk = f", a {settings.volume_size} GB boot volume" if settings.volume_size else ""
    made = [
        f"key pair labvm-{names.owner}-<key fingerprint> (labvm's public key)",
        f"security group {names.name} (port 22 from {settings.ssh_cidr or 'anywhere'})",
        f"server {names.name}: {settings.flavor}, image {settings.image or '(hosts.yml image:)'}{disk}",
    ]
    return made + ([f"a floating IP from {settings.floating_ip_pool}"] if settings.floating_ip_pool else [])
