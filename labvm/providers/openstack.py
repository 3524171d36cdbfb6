"""OpenStack profiles (CADES) on openstacksdk (imported only here, when such a profile is used).

Credentials and endpoints come only from openstacksdk's clouds.yaml / OS_CLOUD
(`openstack.connect(cloud=...)`, `cloud: envvars` for an openrc's OS_* variables); labvm stores
no password.  The server carries the metadata labvm:profile and labvm:owner and is found by it,
never by local state; its name, security group, key pair and floating IP carry the owner too,
so several lab members can share one profile in one project.
"""

from __future__ import annotations

import base64
import difflib
import hashlib
import json
import os
import time

from ..config import Profile
from ..errors import LabvmError
from .cloud import CloudProvider
from .base import Check, Image, Instance, Resource, ask, in_parallel, parse_time, partial_cluster

SHELVED = ("SHELVED", "SHELVED_OFFLOADED")  # SHELVED stays so where the cloud does not offload at once
STATES = {"ACTIVE": "running", "SHUTOFF": "stopped", "SHELVED": "stopped", "SHELVED_OFFLOADED": "stopped",
          "ERROR": "error"}
WAIT = 900  # seconds a server transition may take


def nova_fingerprint(public_key: str) -> str:
    """What Nova shows as a key pair's fingerprint: MD5 of the decoded key blob, colon-separated
    (nova/crypto.py generate_fingerprint)."""
    digest = hashlib.md5(base64.b64decode(public_key.split()[1]), usedforsecurity=False).hexdigest()
    return ":".join(a + b for a, b in zip(digest[::2], digest[1::2]))


class OpenStackProvider(CloudProvider):
    cloud = "openstack"
    image_ready = "active"

    def __init__(self, profile: Profile):
        import openstack
        from openstack import exceptions

        super().__init__(profile)
        self.exceptions = exceptions
        self.labels = {"labvm:profile": profile.name, "labvm:owner": self.owner}
        self.name = f"labvm-{profile.name}-{self.owner}"
        cloud = self.settings.get("cloud") or os.environ.get("OS_CLOUD")
        if not cloud:
            raise LabvmError(f"{self._where('cloud')}: not set; name an entry of your clouds.yaml (or set OS_CLOUD)")
        self.cloud = str(cloud)
        self.cli = f"openstack --os-cloud {self.cloud}"
        try:
            self.conn = openstack.connect(cloud=self.cloud)
        except exceptions.ConfigException as e:
            if self.cloud == "envvars":  # openstacksdk's name for "the OS_* variables of an openrc"
                raise LabvmError(
                    f"{self._where('cloud')}: envvars reads OS_AUTH_URL, OS_USERNAME, ... from the environment: "
                    f"`source` your openrc file (Horizon: API Access, Download OpenStack RC File) first"
                ) from None
            raise LabvmError(
                f"{self._where('cloud')}: {e}; add {self.cloud!r} to clouds.yaml "
                f"(~/.config/openstack/clouds.yaml, or OS_CLIENT_CONFIG_FILE)"
            ) from None
        self._require_password()
        # Log in now: the SDK would otherwise do it inside the first proxy attribute access.
        self._call(self.conn.session.get_token)

    def _require_password(self) -> None:
        """keystoneauth raises a bare Exception("password is a required attribute") at login."""
        config = self.conn.config.config
        if config.get("auth_type") not in ("password", "v3password") or config.get("auth", {}).get("password"):
            return
        if self.cloud == "envvars":
            raise LabvmError("OS_PASSWORD is not set: `source` your openrc file again (it asks for the password)")
        raise LabvmError(
            f"clouds.yaml entry {self.cloud!r} has no password (Horizon's download leaves it out): add "
            f"`password:` under its auth, put it in secure.yaml, or use an application credential "
            f"(auth_type: v3applicationcredential)"
        )

    def _call(self, action, *args, **kwargs):
        """One SDK call, its errors turned into one line with the next step."""
        from keystoneauth1 import exceptions as ksa

        refused = LabvmError(
            f"OpenStack refused the credentials of clouds.yaml entry {self.cloud!r}; check its auth "
            f"section (`{self.cli} token issue` tries them)"
        )
        auth_url = self.conn.config.config.get("auth", {}).get("auth_url", "")
        untrusted = LabvmError(
            f"the TLS certificate of {auth_url} is not trusted here; set `cacert: /path/to/your-site-ca.pem` "
            f"in clouds.yaml entry {self.cloud!r} (your site's CA bundle)"
        )
        unreachable = LabvmError(
            f"cannot reach the OpenStack API of {self.cloud!r} ({auth_url}): no answer; is the VPN up? "
            f"(`{self.cli} token issue` tries the same)"
        )
        try:
            return action(*args, **kwargs)
        except (ksa.Unauthorized, ksa.auth.AuthorizationFailure):
            raise refused from None
        except ksa.SSLError:
            raise untrusted from None
        except (ksa.ConnectFailure, ksa.ConnectTimeout):
            raise unreachable from None
        except ksa.DiscoveryFailure as e:
            # The generic password plugin reports a TLS or connection failure of its version discovery
            # in the message only (keystoneauth1/identity/generic/base.py get_auth_ref).
            if "SSL exception connecting" in str(e):
                raise untrusted from None
            if "timed out" in str(e) or "Unable to establish connection" in str(e):
                raise unreachable from None
            raise LabvmError(f"{auth_url}: {e}; check auth_url in clouds.yaml entry {self.cloud!r}") from None
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
                        self._address(server), (server.flavor or {}).get("original_name") or (server.flavor or {}).get("id", ""),
                        private_address=self._address(server, "fixed"))

    def _address(self, server, kind: str = "floating") -> str:
        """The server's address of this kind (Nova's OS-EXT-IPS:type), else its first fixed one."""
        fixed = ""
        for entries in (server.addresses or {}).values():
            for entry in entries:
                if entry.get("OS-EXT-IPS:type") == kind:
                    return entry["addr"]
                if entry.get("OS-EXT-IPS:type", "fixed") == "fixed":
                    fixed = fixed or entry.get("addr", "")
        return fixed

    def _server(self, server_id: str):
        return self._call(self.conn.compute.get_server, server_id)

    def _fault(self, server) -> str:
        """Nova shows the last fault only while a server is ERROR (views/servers.py _fault_statuses)."""
        return (server.fault or {}).get("message") or "Nova recorded no fault message"

    def _replace_hint(self) -> str:
        return f"`inv up --host {self.profile.name} --replace` deletes it and makes a new one"

    def _wait(self, server, statuses: tuple[str, ...], what: str):
        """Until the server is in one of `statuses` with no task running; ERROR ends the wait with its fault."""
        print(f"openstack: waiting until {what} ...", flush=True)
        start = time.monotonic()
        while True:
            server = self._server(server.id)
            if server.status in statuses and not server.task_state:
                print(f"openstack: {what} ({time.monotonic() - start:.0f}s)", flush=True)
                return server
            if server.status == "ERROR":
                raise LabvmError(f"{server.id} went ERROR: {self._fault(server)}; {self._replace_hint()}")
            if time.monotonic() - start > WAIT:
                raise LabvmError(f"{server.id} is still {server.status} after {WAIT}s; `{self.cli} server show {server.id}`")
            time.sleep(2)

    # -- the provider interface --------------------------------------------------------

    def find(self) -> Instance | None:
        mine = [s for s in self._call(self.conn.compute.servers, details=True)
                if all((s.metadata or {}).get(k) == v for k, v in self.labels.items())
                and (s.metadata or {}).get("labvm:role") != "worker"]  # workers carry the profile's labels too
        return self._instance(max(mine, key=lambda s: s.created_at or "")) if mine else None

    def create(self, image: str | None = None, public_key: str = "") -> Instance:
        flavor = self._flavor(str(self.settings.get("flavor") or "m1.small"))
        image_id = self._image(image)
        network = self._network()
        key_name = self._keypair(public_key)
        server = self._boot(self.name, flavor, image_id, network.id, key_name, self.labels)
        self._floating_ip(server)
        return self._instance(self._server(server.id))

    def _boot(self, name: str, flavor, image_id: str, network_id: str, key_name: str, metadata: dict):
        """One server of this profile, the head or a worker, waited for until ACTIVE."""
        groups = [*({"name": str(g)} for g in self.settings.get("security_groups") or []), {"name": self._ssh_group().name}]
        request = dict(name=name, flavor_id=flavor.id, networks=[{"uuid": network_id}], key_name=key_name,
                       security_groups=groups, metadata=metadata)
        if self.settings.get("volume_size"):
            request["block_device_mapping"] = [{
                "boot_index": 0, "uuid": image_id, "source_type": "image", "destination_type": "volume",
                "volume_size": int(self.settings["volume_size"]), "delete_on_termination": True,
            }]
        else:
            request["image_id"] = image_id
        print(f"openstack: creating {flavor.name} {name} in {self.cloud}", flush=True)
        server = self._call(self.conn.compute.create_server, **request)
        server = self._wait(server, ("ACTIVE",), f"{server.id} is ACTIVE")
        for volume in server.attached_volumes or []:  # Nova's boot volume: labelled so audit finds it if left
            self._call(self.conn.block_storage.set_volume_metadata, volume["id"], **metadata)
        return server

    def start(self, inst: Instance) -> Instance:
        server = self._server(inst.id)
        if server.status == "ERROR":
            raise LabvmError(f"{inst.id} is in ERROR: {self._fault(server)}; {self._replace_hint()}")
        if server.status == "SHUTOFF":
            self._call(self.conn.compute.start_server, server)
        elif server.status in SHELVED:
            self._call(self.conn.compute.unshelve_server, server)
        if server.status != "ACTIVE" or server.task_state:
            server = self._wait(server, ("ACTIVE",), f"{inst.id} is ACTIVE")
        self._floating_ip(server)
        return self._instance(self._server(inst.id))

    def stop(self, inst: Instance) -> Instance:
        shelve = self.settings.get("stop_action") == "shelve"
        server = self._server(inst.id)
        if server.status == "ACTIVE":
            self._call(self.conn.compute.stop_server, server)
            server = self._wait(server, ("SHUTOFF",), f"{inst.id} is SHUTOFF")
        if shelve and server.status == "SHUTOFF":
            # Shelving frees the compute quota once offloaded; the disk stays.
            self._call(self.conn.compute.shelve_server, server)
            server = self._wait(server, SHELVED, f"{inst.id} is shelved")
        return self._instance(server)

    def terminate(self, inst: Instance, keep_ip: bool = False) -> None:
        server = self._server(inst.id)
        volumes = [v["id"] for v in server.attached_volumes or []]
        self._call(self.conn.compute.delete_server, server)
        self._call(self.conn.compute.wait_for_delete, server, interval=2, wait=600)
        for volume_id in volumes:
            self._report_left_volume(volume_id)
        if self.find() is None and not self._workers_data():  # the group serves the whole cluster
            self._delete_ssh_group()
        if not keep_ip:
            self._release_ips(server)

    def _release_ips(self, server) -> None:
        for ip in self._my_ips(self._ip_tag(server)):
            self._call(self.conn.network.delete_ip, ip)
            print(f"openstack: released floating IP {ip.floating_ip_address}")

    def _report_left_volume(self, volume_id: str) -> None:
        """Nova deletes a delete_on_termination volume only when Cinder lets it: never one with snapshots."""
        volume = self._call(self.conn.block_storage.find_volume, volume_id, ignore_missing=True)
        if volume is not None and volume.status != "deleting":  # Cinder deletes asynchronously
            print(f"openstack: boot volume {volume_id} stays: the snapshots of labvm images depend on it; "
                  f"`inv images --host {self.profile.name} --prune --keep 0` deletes them and it")

    def snapshot(self, inst: Instance, name: str, *options) -> Image:
        server = self._server(inst.id)
        if server.status in SHELVED:  # Nova's createImage allows ACTIVE, SHUTOFF, PAUSED, SUSPENDED only
            raise LabvmError(f"{inst.id} is shelved: `inv start --host {self.profile.name}` first, "
                             f"then `inv snapshot --host {self.profile.name}`")
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        image_name = f"{name}-{self.profile.name}-{stamp}"
        print(f"openstack: making image {image_name} ...", flush=True)
        image = self._call(self.conn.compute.create_server_image, server, image_name,
                           metadata=self.labels, wait=True, timeout=1800)
        for snapshot_id in self._volume_snapshots(image):
            # A boot-from-volume image is only a pointer to these (nova/compute/api.py snapshot_volume_backed).
            self._call(self.conn.block_storage.set_snapshot_metadata, snapshot_id, **self.labels)
            snapshot = self._call(self.conn.block_storage.get_snapshot, snapshot_id)
            self._call(self.conn.block_storage.wait_for_status, snapshot, "available", failures=["error"],
                       interval=2, wait=1800)
        return Image(image.id, image.name, image.created_at or "", image.status)

    @staticmethod
    def _volume_snapshots(image) -> list[str]:
        """The Cinder snapshots a boot-from-volume image names (its block_device_mapping, a JSON string)."""
        mapping = (image.properties or {}).get("block_device_mapping") or "[]"
        entries = json.loads(mapping) if isinstance(mapping, str) else mapping
        return [e["snapshot_id"] for e in entries if e.get("snapshot_id")]

    def images(self) -> list[Image]:
        mine = [
            i for i in self._call(self.conn.image.images)
            if all((i.properties or {}).get(k) == v for k, v in self.labels.items())
        ]
        return sorted((Image(i.id, i.name, i.created_at or "", i.status) for i in mine), key=lambda i: i.created)

    def delete_image(self, image: Image) -> None:
        """The image, its Cinder snapshots (Glance does not know them), then a boot volume they alone kept."""
        snapshot_ids = self._volume_snapshots(self._call(self.conn.image.get_image, image.id))
        self._call(self.conn.image.delete_image, image.id)
        for snapshot_id in snapshot_ids:
            snapshot = self._call(self.conn.block_storage.find_snapshot, snapshot_id, ignore_missing=True)
            if snapshot is None:
                continue
            self._call(self.conn.block_storage.delete_snapshot, snapshot)
            self._call(self.conn.block_storage.wait_for_delete, snapshot, interval=2, wait=600)
            print(f"openstack: deleted volume snapshot {snapshot_id}")
            self._delete_left_volume(snapshot.volume_id)

    def _delete_left_volume(self, volume_id: str) -> None:
        volume = self._call(self.conn.block_storage.find_volume, volume_id, ignore_missing=True)
        if (volume is None or volume.status != "available" or volume.attachments
                or any((volume.metadata or {}).get(k) != v for k, v in self.labels.items())
                or list(self._call(self.conn.block_storage.snapshots, volume_id=volume_id))):
            return
        self._call(self.conn.block_storage.delete_volume, volume)
        print(f"openstack: deleted boot volume {volume_id}, left by a deleted server")

    def resize(self, inst: Instance, size: str) -> Instance:
        flavor = self._flavor(size, key="--size")
        server = self._server(inst.id)
        if flavor.name == inst.size or flavor.id == inst.size:
            print(f"openstack: {inst.id} is already {flavor.name}")
            return inst
        before = server.status  # a SHUTOFF server is resized and stays SHUTOFF after the confirm
        self._call(self.conn.compute.resize_server, server, flavor.id)
        server = self._wait(server, ("VERIFY_RESIZE", before), f"{inst.id} is resized")
        if server.status != "VERIFY_RESIZE":
            # The conductor rolled back (nova/conductor/manager.py _cold_migrate: NoValidHost); the fault
            # is not shown while the server is not ERROR, the instance actions have it.
            raise LabvmError(
                f"resize to {flavor.name} did not happen: Nova put {inst.id} back to {server.status} on "
                f"{self._instance(server).size} (no host had room: NoValidHost, most often); "
                f"`{self.cli} server event list {inst.id}` tells why"
            )
        self._call(self.conn.compute.confirm_server_resize, server)
        server = self._wait(server, (before,), f"{inst.id} runs as {flavor.name}")
        print(f"openstack: {inst.id} is {flavor.name}, {server.status} as before")
        if server.status == "ACTIVE":
            self._floating_ip(server)
        return self._instance(self._server(inst.id))

    def last_start(self, inst: Instance):
        from datetime import datetime, timezone

        launched = self._server(inst.id).launched_at
        stamp = datetime.fromisoformat(launched) if launched else datetime.now(timezone.utc)
        return stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)

    def admit_caller(self) -> None:
        """labvm's group admits SSH from `ssh_cidr`, else from anywhere (CADES networks are internal)."""
        group = self._ssh_group()
        cidr = str(self.settings.get("ssh_cidr") or "0.0.0.0/0")
        rules = self._ssh_rules(group)
        if any(r.remote_ip_prefix == cidr for r in rules):
            return
        for rule in rules:
            self._call(self.conn.network.delete_security_group_rule, rule)
        self._add_ssh_rule(group, cidr)
        print(f"ssh rule: now admits {cidr} (was {', '.join(r.remote_ip_prefix or '?' for r in rules) or 'none'})")

    # -- a Dask cluster's workers ---------------------------------------------------------

    def _worker_labels(self, index: int) -> dict[str, str]:
        return {**self.labels, "labvm:cluster": self.profile.name, "labvm:role": "worker", "labvm:index": str(index)}

    def _workers_data(self) -> list:
        wanted = {"labvm:cluster": self.profile.name, "labvm:owner": self.owner, "labvm:role": "worker"}
        mine = [s for s in self._call(self.conn.compute.servers, details=True)
                if all((s.metadata or {}).get(k) == v for k, v in wanted.items())]
        return sorted(mine, key=lambda s: int(s.metadata.get("labvm:index", 0)))

    def workers(self) -> list[Instance]:
        """This profile's worker servers of this owner, by index; each name ends with -w<index>."""
        return [self._instance(s) for s in self._workers_data()]

    def create_workers(self, indexes: list[int], image: str, size: str, public_key: str) -> list[Instance]:
        """Workers of these indexes, booted in parallel on the head's network with its groups and key.
        image "" is the head's image, size "" its flavor.  One that fails leaves the others made."""

        found = self.find()
        if found is None:
            raise LabvmError(f"profile {self.profile.name!r} has no VM to make workers beside; `inv up --host {self.profile.name}`")
        head = self._server(found.id)
        flavor = self._flavor(size, key=self._where("cluster.worker_size")) if size else self._flavor(found.size)
        image_id = self._image(image) if image else self._head_image(head)
        ports = list(self._call(self.conn.network.ports, device_id=head.id))
        key_name = self._keypair(public_key)

        def boot(index: int):
            server = self._boot(f"{self.name}-w{index}", flavor, image_id, ports[0].network_id, key_name,
                                self._worker_labels(index))
            self._floating_ip(server)
            return server.id

        made, failed = in_parallel(boot, indexes)
        if failed:
            raise LabvmError(partial_cluster(self.profile.name, made, failed))
        ids = set(made.values())
        return [self._instance(s) for s in self._workers_data() if s.id in ids]

    def cluster_image(self) -> str:
        """The image new workers are made from (the head's); "" without a head."""
        found = self.find()
        return self._head_image(self._server(found.id)) if found else ""

    def _head_image(self, head) -> str:
        """The image the head booted from: Nova's image of an image-backed server; for a volume-backed
        one (Nova shows no image) Cinder's volume_image_metadata of its boot volume."""
        if head.image and head.image.get("id"):
            return head.image["id"]
        for attached in head.attached_volumes or []:
            volume = self._call(self.conn.block_storage.get_volume, attached["id"])
            if (volume.volume_image_metadata or {}).get("image_id"):
                return volume.volume_image_metadata["image_id"]
        raise LabvmError(f"cannot tell the image of {head.id}; set {self._where('image')} and pass --from-image")

    def allow_cluster(self) -> None:
        """Every TCP port between the servers of labvm's group (the head and its workers), and only
        between them: the rule's source is the group itself (remote_group_id), no address range."""
        group = self._ssh_group()
        rules = self._call(self.conn.network.security_group_rules, security_group_id=group.id)
        if any(r.direction == "ingress" and r.remote_group_id == group.id for r in rules):
            return
        self._call(self.conn.network.create_security_group_rule, security_group_id=group.id, direction="ingress",
                   ethertype="IPv4", protocol="tcp", remote_group_id=group.id,
                   description="labvm: Dask between the cluster's machines")
        print(f"openstack: security group {self.name} lets the cluster's machines reach each other (Dask)")

    def terminate_workers(self) -> None:
        """Every worker of this profile and owner with its floating IP; the group too once the head is gone."""
        workers = self._workers_data()
        for server in workers:
            self._call(self.conn.compute.delete_server, server)
        for server in workers:
            self._call(self.conn.compute.wait_for_delete, server, interval=2, wait=600)
            print(f"openstack: deleted worker {server.name}")
            for volume in server.attached_volumes or []:
                self._report_left_volume(volume["id"])
            self._release_ips(server)
        if workers and self.find() is None:
            self._delete_ssh_group()

    # -- inv check -----------------------------------------------------------------------

    def preflight(self, public_key: str) -> list[Check]:
        """Read-only: what `up` needs, asked of the cloud before anything is made."""
        access = self._call(self.conn.session.auth.get_access, self.conn.session)
        checks = [Check("credentials", True, f"user {access.username}, project {access.project_name} on {self.cloud!r}")]
        steps = [("network", lambda: f"{self._network().name}")]
        if self.settings.get("floating_ip_pool"):
            steps.append(("floating ip pool", self._check_pool))
        steps += [("image", lambda: self._image(None)), ("size", self._check_flavor), ("quota", self._check_quota),
                  ("key pair", lambda: self._check_keypair(public_key)), ("ssh rule", self._check_ssh_rule)]
        return checks + [ask(name, step) for name, step in steps]

    def _check_pool(self) -> str:
        pool = str(self.settings["floating_ip_pool"])
        network = self._call(self.conn.network.find_network, pool, ignore_missing=True)
        if network is None or not network.is_router_external:
            problem = "not found" if network is None else "is not an external network"
            raise LabvmError(f"{self._where('floating_ip_pool')}: {pool!r} {problem}; list: openstack network list --external")
        return f"{pool} (external)"

    def _check_flavor(self) -> str:
        flavor = self._flavor(str(self.settings.get("flavor") or "m1.small"))
        return f"{flavor.name}: {flavor.vcpus} vCPU, {flavor.ram} MB RAM"

    def _check_quota(self) -> str:
        """Nova's absolute limits (and Cinder's for a boot volume) leave room for one more server."""
        flavor = self._call(self.conn.compute.find_flavor, str(self.settings.get("flavor") or "m1.small"),
                            ignore_missing=True)  # an unknown one is the "size" check's line
        nova = self._call(self.conn.compute.get_limits).absolute
        wanted = [("instances", nova.instances_used, nova.instances, 1, "one more")]
        if flavor is not None:
            wanted += [("cores", nova.total_cores_used, nova.total_cores, flavor.vcpus, f"{flavor.name} needs {flavor.vcpus}"),
                       ("RAM MB", nova.total_ram_used, nova.total_ram, flavor.ram, f"{flavor.name} needs {flavor.ram}")]
        size = int(self.settings.get("volume_size") or 0)
        if size and self.conn.has_service("block-storage"):
            cinder = self._call(self.conn.block_storage.get_limits).absolute
            wanted += [("volumes", cinder.total_volumes_used, cinder.max_total_volumes, 1, "one more"),
                       ("volume gigabytes", cinder.total_gigabytes_used, cinder.max_total_volume_gigabytes, size,
                        f"volume_size needs {size}")]
        short = [f"{what}: {used} of {limit} used, {need}" for what, used, limit, n, need in wanted
                 if limit is not None and limit >= 0 and used + n > limit]
        if short:
            raise LabvmError("; ".join(short) + "; free some (openstack server list) or ask for more "
                             "(cades-help@ornl.gov raises CADES quotas)")
        return "room for one more: " + ", ".join(f"{what} {used}/{limit}" for what, used, limit, _, _ in wanted)

    def _check_keypair(self, public_key: str) -> str:
        if not public_key:
            return "no labvm key on this machine yet: the first `inv up` makes it and imports it"
        name, fingerprint = self._keypair_name(public_key)
        found = self._call(self.conn.compute.find_keypair, name, ignore_missing=True)
        if found is None:
            return f"{name}: none yet; `inv up` would import labvm's key ({fingerprint})"
        if found.fingerprint != fingerprint:
            raise self._other_key(name, found.fingerprint, fingerprint)
        return f"{name} holds labvm's key ({fingerprint})"

    def _check_ssh_rule(self) -> str:
        cidr = str(self.settings.get("ssh_cidr") or "0.0.0.0/0")
        group = self._call(self.conn.network.find_security_group, self.name, ignore_missing=True)
        if group is None:
            return f"{self.name}: none yet; `inv up` would make it, admitting {cidr} on port 22"
        if any(r.remote_ip_prefix == cidr for r in self._ssh_rules(group)):
            return f"{self.name} admits {cidr} on port 22"
        return f"{self.name} does not admit {cidr} yet; `inv up` adds the rule"

    # -- inv audit -----------------------------------------------------------------------

    @property
    def scope(self) -> str:
        return self.cloud

    def inventory(self) -> list[Resource]:
        """Every server, image, left boot volume, orphan volume snapshot and floating IP labvm made in
        this project, whatever its profile or owner."""
        found = []
        for server in self._call(lambda: list(self.conn.compute.servers(details=True))):
            labels = server.metadata or {}
            if "labvm:profile" in labels:
                member = labels["labvm:profile"]
                if labels.get("labvm:role") == "worker":  # named as the session names a worker: cades+w2
                    member = f"{labels.get('labvm:cluster', member)}+w{labels.get('labvm:index', '?')}"
                state = "shelved" if server.status in SHELVED else STATES.get(server.status, server.status.lower())
                found.append(Resource(
                    "openstack", self.cloud, "instance", server.id, member, labels.get("labvm:owner", ""),
                    state, parse_time(server.launched_at or server.created_at),
                    f"{self.cli} server delete {server.id}", type=self._instance(server).size))
        images = [i for i in self._call(lambda: list(self.conn.image.images())) if "labvm:profile" in (i.properties or {})]
        for image in images:
            labels = image.properties
            found.append(Resource(
                "openstack", self.cloud, "image", image.id, labels["labvm:profile"], labels.get("labvm:owner", ""),
                image.status, parse_time(image.created_at), f"{self.cli} image delete {image.id}",
                size_gb=image.size / 1024**3 if image.size else None))
        if self.conn.has_service("block-storage"):
            found += self._volume_inventory({s: i.id for i in images for s in self._volume_snapshots(i)})
        for ip in self._call(lambda: list(self.conn.network.ips())):
            if (ip.description or "").startswith("labvm:"):
                profile, _, owner = ip.description.removeprefix("labvm:").partition(":")
                found.append(Resource(
                    "openstack", self.cloud, "address", ip.id, profile, owner, "attached" if ip.port_id else "unattached",
                    parse_time(ip.created_at), f"{self.cli} floating ip delete {ip.id}", address=ip.floating_ip_address))
        return found

    def _volume_inventory(self, image_of: dict[str, str]) -> list[Resource]:
        """Boot volumes whose server is gone (kept by snapshots: Nova's delete ignores Cinder's refusal)
        and volume snapshots whose image is gone; the delete command deletes what Cinder needs gone first."""
        snapshots = [s for s in self._call(lambda: list(self.conn.block_storage.snapshots()))
                     if "labvm:profile" in (s.metadata or {})]
        found = []
        for volume in self._call(lambda: list(self.conn.block_storage.volumes())):
            labels = volume.metadata or {}
            if "labvm:profile" not in labels or volume.attachments:
                continue
            steps = []
            for snapshot in [s for s in snapshots if s.volume_id == volume.id]:
                if snapshot.id in image_of:
                    steps.append(f"{self.cli} image delete {image_of[snapshot.id]}")
                steps.append(f"{self.cli} volume snapshot delete {snapshot.id}")
            found.append(Resource(
                "openstack", self.cloud, "volume", volume.id, labels["labvm:profile"], labels.get("labvm:owner", ""),
                "unattached", parse_time(volume.created_at), " && ".join([*steps, f"{self.cli} volume delete {volume.id}"]),
                size_gb=volume.size))
        for snapshot in snapshots:
            if snapshot.id not in image_of:
                labels = snapshot.metadata
                found.append(Resource(
                    "openstack", self.cloud, "snapshot", snapshot.id, labels["labvm:profile"], labels.get("labvm:owner", ""),
                    snapshot.status, parse_time(snapshot.created_at), f"{self.cli} volume snapshot delete {snapshot.id}",
                    size_gb=snapshot.size))
        return found

    # -- what create needs ------------------------------------------------------------

    def _network(self):
        wanted = str(self.settings.get("network") or "")
        network = self._call(self.conn.network.find_network, wanted, ignore_missing=True)
        if network is None:
            raise LabvmError(f"{self._where('network')}: {self.settings.get('network')!r} not found; list: openstack network list")
        return network

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

    def _keypair_name(self, public_key: str) -> tuple[str, str]:
        """Named by owner and fingerprint: a second laptop's key gets a key pair of its own."""
        try:
            fingerprint = nova_fingerprint(public_key)
        except (IndexError, ValueError):
            raise LabvmError(f"labvm's public key is not an OpenSSH key line: {public_key[:40]!r}") from None
        return f"labvm-{self.owner}-{fingerprint.replace(':', '')[:8]}", fingerprint

    def _other_key(self, name: str, theirs: str, ours: str) -> LabvmError:
        return LabvmError(f"key pair {name} holds another key ({theirs}, labvm's is {ours}); "
                          f"`{self.cli} keypair delete {name}` if it is yours, and run again")

    def _keypair(self, public_key: str) -> str:
        name, fingerprint = self._keypair_name(public_key)
        found = self._call(self.conn.compute.find_keypair, name, ignore_missing=True)
        if found is None:
            self._call(self.conn.compute.create_keypair, name=name, public_key=public_key)
            print(f"openstack: imported labvm's public key as keypair {name}")
        elif found.fingerprint != fingerprint:
            raise self._other_key(name, found.fingerprint, fingerprint)
        return name

    def _ssh_group(self):
        """labvm's own group of this profile and owner, opening port 22 only (made when missing)."""
        group = self._call(self.conn.network.find_security_group, self.name, ignore_missing=True)
        if group is None:
            group = self._call(self.conn.network.create_security_group, name=self.name,
                               description=f"labvm {self.profile.name} of {self.owner}: SSH only")
            self._add_ssh_rule(group, str(self.settings.get("ssh_cidr") or "0.0.0.0/0"))
            print(f"openstack: security group {self.name} opens port 22 only")
        return group

    def _ssh_rules(self, group) -> list:
        return [r for r in self._call(self.conn.network.security_group_rules, security_group_id=group.id)
                if r.direction == "ingress" and r.port_range_min == 22]

    def _add_ssh_rule(self, group, cidr: str) -> None:
        self._call(self.conn.network.create_security_group_rule, security_group_id=group.id,
                   direction="ingress", ethertype="IPv6" if ":" in cidr else "IPv4", protocol="tcp",
                   port_range_min=22, port_range_max=22, remote_ip_prefix=cidr)

    def _delete_ssh_group(self) -> None:
        group = self._call(self.conn.network.find_security_group, self.name, ignore_missing=True)
        if group is None:
            return
        try:
            self._call(self.conn.network.delete_security_group, group)
            print(f"openstack: deleted security group {self.name}")
        except LabvmError as e:  # still on a port Neutron has not released: harmless, reused next time
            print(f"openstack: kept security group {self.name} ({e})")

    def _ip_tag(self, server) -> str:
        """A floating IP's description: labvm:<profile>:<owner>, for a worker labvm:<profile>+w<index>:<owner>."""
        metadata = server.metadata or {}
        member = self.profile.name
        if metadata.get("labvm:role") == "worker":
            member += f"+w{metadata.get('labvm:index')}"
        return f"labvm:{member}:{self.owner}"

    def _my_ips(self, tag: str = "") -> list:
        tag = tag or f"labvm:{self.profile.name}:{self.owner}"
        return [ip for ip in self._call(self.conn.network.ips) if ip.description == tag]

    def _floating_ip(self, server) -> None:
        pool = self.settings.get("floating_ip_pool")
        if not pool:
            return
        ports = list(self._call(self.conn.network.ports, device_id=server.id))
        if not ports:
            raise LabvmError(f"server {server.id} has no network port for a floating IP")
        tag = self._ip_tag(server)
        mine = self._my_ips(tag)
        if any(ip.port_id == ports[0].id for ip in mine):
            return
        ip = next((ip for ip in mine if not ip.port_id), None)
        if ip is None:
            network = self._call(self.conn.network.find_network, str(pool), ignore_missing=True)
            if network is None:
                raise LabvmError(f"{self._where('floating_ip_pool')}: no network {pool!r} (list: openstack network list --external)")
            ip = self._call(self.conn.network.create_ip, floating_network_id=network.id, description=tag)
            print(f"openstack: took floating IP {ip.floating_ip_address} from {pool}")
        self._call(self.conn.network.update_ip, ip, port_id=ports[0].id)
        print(f"openstack: floating IP {ip.floating_ip_address} -> {server.id}")
