"""OpenStack profiles (CADES) on openstacksdk (imported only here, when such a profile is used).

Credentials and endpoints come only from openstacksdk's clouds.yaml / OS_CLOUD
(`openstack.connect(cloud=...)`); labvm stores no password.  The server carries the
metadata labvm:profile and labvm:owner and is found by it, never by local state.
"""

from __future__ import annotations

import difflib
import getpass
import os
import time

from .config import Profile
from .errors import LabvmError
from .providers import Image, Instance, Resource, parse_time

STOPPED = ("SHUTOFF", "SHELVED", "SHELVED_OFFLOADED")
STATES = {"ACTIVE": "running", "SHUTOFF": "stopped", "SHELVED": "stopped", "SHELVED_OFFLOADED": "stopped"}


class OpenStackProvider:
    owns_machine = True
    image_ready = "active"

    def __init__(self, profile: Profile):
        import openstack
        from openstack import exceptions

        self.profile = profile
        self.settings = profile.cloud_settings
        self.exceptions = exceptions
        self.owner = os.environ.get("LABVM_OWNER") or getpass.getuser()
        self.labels = {"labvm:profile": profile.name, "labvm:owner": self.owner}
        self.name = f"labvm-{profile.name}"
        self.plan = False
        cloud = self.settings.get("cloud") or os.environ.get("OS_CLOUD")
        if not cloud:
            raise LabvmError(f"{self._where('cloud')}: not set; name an entry of your clouds.yaml (or set OS_CLOUD)")
        self.cloud = cloud
        try:
            self.conn = openstack.connect(cloud=str(cloud))
        except exceptions.ConfigException as e:
            raise LabvmError(
                f"{self._where('cloud')}: {e}; add {cloud!r} to clouds.yaml "
                f"(~/.config/openstack/clouds.yaml, or OS_CLIENT_CONFIG_FILE)"
            ) from None
        # Log in now: the SDK would otherwise do it inside the first proxy attribute access.
        self._call(self.conn.session.get_token)

    def _where(self, key: str) -> str:
        return f"{self.profile.source}: profiles.{self.profile.name}.{key}"

    def _call(self, action, *args, **kwargs):
        """One SDK call, its errors turned into one line with the next step."""
        from keystoneauth1 import exceptions as ksa

        refused = LabvmError(
            f"OpenStack refused the credentials of clouds.yaml entry {self.cloud!r}; check its auth "
            f"section (`openstack --os-cloud {self.cloud} token issue` tries them)"
        )
        try:
            return action(*args, **kwargs)
        except (ksa.Unauthorized, ksa.auth.AuthorizationFailure):
            raise refused from None
        except ksa.connection.ConnectFailure as e:
            raise LabvmError(f"cannot reach the OpenStack API of {self.cloud!r}: {e}; VPN?") from None
        except self.exceptions.HttpException as e:
            if e.status_code == 401:
                raise refused from None
            message = str(e.details or e.message or e)
            if "Quota exceeded" in message or "quota" in message.lower():
                raise LabvmError(
                    f"OpenStack quota: {message}; free resources or ask for more (CADES Birthright "
                    f"defaults are small and raised by request to cades-help@ornl.gov)"
                ) from None
            if "No more IP addresses" in message:
                raise LabvmError(
                    f"OpenStack: {message}; release floating IPs you no longer use (openstack floating ip list) "
                    f"or set {self._where('floating_ip_pool')} to another external network"
                ) from None
            raise LabvmError(f"OpenStack: {message}") from None
        except self.exceptions.SDKException as e:  # a wait that failed or timed out, among others
            raise LabvmError(f"OpenStack: {e}") from None

    def _instance(self, server) -> Instance:
        return Instance(server.id, server.name, STATES.get(server.status, server.status.lower()),
                        self._address(server), (server.flavor or {}).get("original_name") or (server.flavor or {}).get("id", ""))

    def _address(self, server) -> str:
        fixed = ""
        for entries in (server.addresses or {}).values():
            for entry in entries:
                if entry.get("OS-EXT-IPS:type") == "floating":
                    return entry["addr"]
                fixed = fixed or entry.get("addr", "")
        return fixed

    def _server(self, server_id: str):
        return self._call(self.conn.compute.get_server, server_id)

    def _wait(self, server, status: str, what: str):
        print(f"openstack: waiting until {what} ...", flush=True)
        start = time.monotonic()
        server = self._call(self.conn.compute.wait_for_server, server, status=status, failures=["ERROR"],
                            interval=2, wait=900)
        print(f"openstack: {what} ({time.monotonic() - start:.0f}s)", flush=True)
        return server

    # -- the provider interface --------------------------------------------------------

    def find(self) -> Instance | None:
        mine = [
            s for s in self._call(self.conn.compute.servers, details=True)
            if all((s.metadata or {}).get(k) == v for k, v in self.labels.items())
        ]
        if not mine:
            return None
        return self._instance(max(mine, key=lambda s: s.created_at or ""))

    def create(self, image: str | None = None, public_key: str = "") -> Instance:
        flavor = self._flavor(str(self.settings.get("flavor") or "m1.small"))
        image_id = self._image(image)
        network = self._call(self.conn.network.find_network, str(self.settings.get("network") or ""), ignore_missing=True)
        if network is None:
            raise LabvmError(f"{self._where('network')}: {self.settings.get('network')!r} not found; list: openstack network list")
        key_name = self._keypair(public_key)
        groups = [{"name": g} for g in self._security_groups()]
        request = dict(name=self.name, flavor_id=flavor.id, networks=[{"uuid": network.id}], key_name=key_name,
                       security_groups=groups, metadata=self.labels)
        if self.settings.get("volume_size"):
            request["block_device_mapping"] = [{
                "boot_index": 0, "uuid": image_id, "source_type": "image", "destination_type": "volume",
                "volume_size": int(self.settings["volume_size"]), "delete_on_termination": True,
            }]
        else:
            request["image_id"] = image_id
        print(f"openstack: creating {flavor.name} in {self.cloud}", flush=True)
        server = self._call(self.conn.compute.create_server, **request)
        server = self._wait(server, "ACTIVE", f"{server.id} is ACTIVE")
        self._floating_ip(server)
        return self._instance(self._server(server.id))

    def start(self, inst: Instance) -> Instance:
        server = self._server(inst.id)
        if server.status == "SHUTOFF":
            self._call(self.conn.compute.start_server, server)
        elif server.status in ("SHELVED", "SHELVED_OFFLOADED"):
            self._call(self.conn.compute.unshelve_server, server)
        if server.status != "ACTIVE":
            server = self._wait(server, "ACTIVE", f"{inst.id} is ACTIVE")
        self._floating_ip(server)
        return self._instance(self._server(inst.id))

    def stop(self, inst: Instance) -> Instance:
        shelve = self.settings.get("stop_action") == "shelve"
        server = self._server(inst.id)
        if server.status == "ACTIVE":
            self._call(self.conn.compute.stop_server, server)
            server = self._wait(server, "SHUTOFF", f"{inst.id} is SHUTOFF")
        if shelve and server.status == "SHUTOFF":
            # Shelving frees the compute quota; the disk stays.
            self._call(self.conn.compute.shelve_server, server)
            server = self._wait(server, "SHELVED_OFFLOADED", f"{inst.id} is shelved")
        return self._instance(server)

    def terminate(self, inst: Instance, keep_ip: bool = False) -> None:
        server = self._server(inst.id)
        self._call(self.conn.compute.delete_server, server)
        self._call(self.conn.compute.wait_for_delete, server, interval=2, wait=600)
        if not keep_ip:
            for ip in self._my_ips():
                self._call(self.conn.network.delete_ip, ip)
                print(f"openstack: released floating IP {ip.floating_ip_address}")

    def snapshot(self, inst: Instance, name: str, *options) -> Image:
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        image_name = f"{name}-{self.profile.name}-{stamp}"
        print(f"openstack: making image {image_name} ...", flush=True)
        image = self._call(self.conn.compute.create_server_image, self._server(inst.id), image_name,
                           metadata=self.labels, wait=True, timeout=1800)
        return Image(image.id, image.name, image.created_at or "", image.status)

    def images(self) -> list[Image]:
        mine = [
            i for i in self._call(self.conn.image.images)
            if all((i.properties or {}).get(k) == v for k, v in self.labels.items())
        ]
        return sorted((Image(i.id, i.name, i.created_at or "", i.status) for i in mine), key=lambda i: i.created)

    def delete_image(self, image: Image) -> None:
        self._call(self.conn.image.delete_image, image.id)

    def resize(self, inst: Instance, size: str) -> Instance:
        flavor = self._flavor(size, key="--size")
        server = self._server(inst.id)
        if flavor.name == inst.size or flavor.id == inst.size:
            print(f"openstack: {inst.id} is already {flavor.name}")
            return inst
        self._call(self.conn.compute.resize_server, server, flavor.id)
        try:
            server = self._wait(server, "VERIFY_RESIZE", f"{inst.id} is resized")
        except LabvmError as failure:
            current = self._server(inst.id)
            if current.status == "VERIFY_RESIZE":
                self._call(self.conn.compute.revert_server_resize, current)
            raise LabvmError(
                f"resize to {flavor.name} failed ({failure}); the server is {self._server(inst.id).status} "
                f"on its old flavor where OpenStack allows; `openstack server show {inst.id}` tells more"
            ) from None
        self._call(self.conn.compute.confirm_server_resize, server)
        server = self._wait(server, "ACTIVE", f"{inst.id} runs as {flavor.name}")
        self._floating_ip(server)
        return self._instance(server)

    def last_start(self, inst: Instance):
        from datetime import datetime, timezone

        launched = self._server(inst.id).launched_at
        stamp = datetime.fromisoformat(launched) if launched else datetime.now(timezone.utc)
        return stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)

    # -- inv audit -----------------------------------------------------------------------

    @property
    def scope(self) -> str:
        return self.cloud

    def inventory(self) -> list[Resource]:
        """Every server, image and floating IP labvm made in this project, whatever its profile or owner.

        Boot volumes are not listed: Nova makes them without labvm's metadata and deletes them with
        the server (delete_on_termination)."""
        cli = f"openstack --os-cloud {self.cloud}"
        found = []
        for server in self._call(lambda: list(self.conn.compute.servers(details=True))):
            labels = server.metadata or {}
            if "labvm:profile" in labels:
                found.append(Resource(
                    "openstack", self.cloud, "instance", server.id, labels["labvm:profile"], labels.get("labvm:owner", ""),
                    STATES.get(server.status, server.status.lower()), parse_time(server.launched_at or server.created_at),
                    f"{cli} server delete {server.id}", type=self._instance(server).size))
        for image in self._call(lambda: list(self.conn.image.images())):
            labels = image.properties or {}
            if "labvm:profile" in labels:
                found.append(Resource(
                    "openstack", self.cloud, "image", image.id, labels["labvm:profile"], labels.get("labvm:owner", ""),
                    image.status, parse_time(image.created_at), f"{cli} image delete {image.id}",
                    size_gb=image.size / 1024**3 if image.size else None))
        for ip in self._call(lambda: list(self.conn.network.ips())):
            if (ip.description or "").startswith("labvm:"):
                profile, _, owner = ip.description.removeprefix("labvm:").partition(":")
                found.append(Resource(
                    "openstack", self.cloud, "address", ip.id, profile, owner, "attached" if ip.port_id else "unattached",
                    parse_time(ip.created_at), f"{cli} floating ip delete {ip.id}", address=ip.floating_ip_address))
        return found

    # -- what create needs ------------------------------------------------------------

    def _flavor(self, wanted: str, key: str = ""):
        flavor = self._call(self.conn.compute.find_flavor, wanted, ignore_missing=True)
        if flavor is None:
            names = [f.name for f in self._call(self.conn.compute.flavors)]
            close = difflib.get_close_matches(wanted, names, n=3, cutoff=0.5)
            hint = f"; closest: {', '.join(close)}" if close else ""
            raise LabvmError(f"{key or self._where('flavor')}: no flavor {wanted!r}{hint} (list: openstack flavor list)")
        return flavor

    def _image(self, image: str | None) -> str:
        wanted = image or str(self.settings.get("image") or "")
        found = self._call(self.conn.image.find_image, wanted, ignore_missing=True)
        if found is None:
            raise LabvmError(f"{self._where('image')}: no image {wanted!r} (list: openstack image list)")
        return found.id

    def _keypair(self, public_key: str) -> str:
        name = f"labvm-{self.owner}"
        if self._call(self.conn.compute.find_keypair, name, ignore_missing=True) is None:
            self._call(self.conn.compute.create_keypair, name=name, public_key=public_key)
            print(f"openstack: imported labvm's public key as keypair {name}")
        return name

    def _security_groups(self) -> list[str]:
        """The profile's groups, plus labvm's own opening port 22 only (made when missing)."""
        name = self.name
        if self._call(self.conn.network.find_security_group, name, ignore_missing=True) is None:
            group = self._call(self.conn.network.create_security_group, name=name,
                               description=f"labvm {self.profile.name}: SSH only")
            self._call(self.conn.network.create_security_group_rule, security_group_id=group.id,
                       direction="ingress", ethertype="IPv4", protocol="tcp",
                       port_range_min=22, port_range_max=22, remote_ip_prefix="0.0.0.0/0")
            print(f"openstack: security group {name} opens port 22 only")
        return [*[str(g) for g in self.settings.get("security_groups") or []], name]

    def _my_ips(self) -> list:
        tag = f"labvm:{self.profile.name}:{self.owner}"
        return [ip for ip in self._call(self.conn.network.ips) if ip.description == tag]

    def _floating_ip(self, server) -> None:
        pool = self.settings.get("floating_ip_pool")
        if not pool:
            return
        ports = list(self._call(self.conn.network.ports, device_id=server.id))
        if not ports:
            raise LabvmError(f"server {server.id} has no network port for a floating IP")
        mine = self._my_ips()
        if any(ip.port_id == ports[0].id for ip in mine):
            return
        ip = next((ip for ip in mine if not ip.port_id), None)
        if ip is None:
            network = self._call(self.conn.network.find_network, str(pool), ignore_missing=True)
            if network is None:
                raise LabvmError(f"{self._where('floating_ip_pool')}: no network {pool!r} (list: openstack network list --external)")
            ip = self._call(self.conn.network.create_ip, floating_network_id=network.id,
                            description=f"labvm:{self.profile.name}:{self.owner}")
            print(f"openstack: took floating IP {ip.floating_ip_address} from {pool}")
        self._call(self.conn.network.update_ip, ip, port_id=ports[0].id)
        print(f"openstack: floating IP {ip.floating_ip_address} -> {server.id}")
