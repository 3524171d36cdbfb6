"""A small, stateful fake OpenStack cloud for tests: one HTTP server on 127.0.0.1, state in memory.

What the real openstacksdk (with keystoneauth1) sends for the calls a VM tool makes, answered as
the API references describe:

- Keystone v3 (https://docs.openstack.org/api-ref/identity/v3/): version document at /identity
  and /identity/v3, POST /v3/auth/tokens (password, application credential) -> 201, X-Subject-Token, token with catalog.
- Nova v2.1 (https://docs.openstack.org/api-ref/compute/): version documents with microversions
  2.1..2.79 (responses use the 2.47+ embedded flavor), flavors, os-keypairs, servers and the
  server actions os-stop, os-start, shelve, unshelve, resize, confirmResize, revertResize and
  createImage (image id in the body from 2.45, in the Location header before), each logged in the
  server's action log (os-instance-actions, with its request id and start time), absolute limits, and
  os-volume_attachments (attach, list, show, detach: Nova reserves the volume in Cinder, the host
  attaches it; the device Nova answers, /dev/vdb, is its guess, not the guest's name).
- Neutron v2.0 (https://docs.openstack.org/api-ref/network/v2/): networks, subnets, ports,
  security-groups, security-group-rules, floatingips.
- Glance v2 (https://docs.openstack.org/api-ref/image/v2/): images list/get/delete; custom
  properties are top-level keys of an image.
- Cinder v3 (https://docs.openstack.org/api-ref/block-storage/v3/): volumes (create: creating ->
  available, or error; its type, zone and quota checked as Cinder does, 413 overLimit beyond it;
  reserved -> in-use on attach, detaching -> available on detach), os-extend (extending -> the new size;
  an in-use volume only from microversion 3.42, a shrink refused), snapshots (create: creating ->
  available, or error; an in-use volume only with force before microversion 3.66, force=false refused from
  it; the snapshots and gigabytes quota, 413 beyond it; list, show, delete, metadata) and absolute limits,
  under /volume/v3/{project_id}.

Nova makes a boot volume itself for a block_device_mapping_v2 entry with destination volume; a
snapshot (createImage) of such a server is a 0-byte Glance image naming a Cinder snapshot of it.
State is plain dicts (`.servers`, `.images`, `.flavors`, `.keypairs`, `.networks`, `.subnets`,
`.ports`, `.security_groups`, `.floating_ips`, `.volumes`, `.snapshots`); `.quota` holds Nova's,
Cinder's and Neutron's limits (usage is counted from the state, as Nova and Cinder count it); knobs
inject failures: `fail_next_resize` (NoValidHost), `fail_next_boot` (a fault message: the server goes
ERROR), `floating_ips_exhausted`, `shelved_offload_time` (Nova's option: 0 offloads at once, -1 never),
`count_usage_from_placement` (Nova's option, default False: offloaded servers keep counting cores and
RAM), `cross_az_attach` (Nova's [cinder] option, default True: no zone check on attach), `volume_zones`
and `volume_types` (Cinder's, default ["nova"] and ["__DEFAULT__"]), `fail_next_volume` (the next volume
ends "error"), `volume_gets` (looks that still see a volume's state in between), Cinder's `quota["volumes"]` and `quota["gigabytes"]` (a boot volume beyond them: the server is
accepted, then ERROR), `in_flight` (usage of other boots Nova has accepted but not yet counted: a boot beyond quota is
accepted, then ERROR), `fail_next_snapshot` (the snapshot image ends `killed`), Cinder's `quota["snapshots"]`
and `no_snapshot_gb_quota` (its option: snapshots count against gigabytes unless True),
`fail_next_volume_snapshot` (the next Cinder snapshot ends "error"), `max_volume_microversion` (what Cinder
advertises, set before the client's first block storage call), `online_extend_support` (the backend's
capability: False finds no backend to grow an in-use volume) and `fail_next_extend` (the next extend ends
"error_extending"), `unavailable` (a path
prefix, e.g. "/compute/v2.1/servers": its requests answer 503 until it is reset); the network
"dual-net" is dual-stack (an IPv6 and an IPv4 subnet).  `max_microversion` is what Nova advertises;
`.requests` logs every request served as (method, path with its query), the login included, so a
test can tell that nothing but reads reached the cloud; `.bodies` keeps each request's body as sent (a
test can tell whether a password reached this endpoint).
Auth: a password, or an application credential (`app_credential_clouds_yaml()`);
`FakeOpenStack(tls=True)` serves HTTPS with a certificate of its own CA (`.ca_file`).
openstacksdk 4.x fetches only GET /identity/v3, /compute/v2.1, /image and /volume/v3/ as version
documents.  Transitions (BUILD->ACTIVE, stop, shelve, resize, a volume snapshot, ...) complete at
the next GET of the resource, a new snapshot image of an image-backed server shows "queued" once
and then "active": waiters poll without anyone sleeping.
"""

from __future__ import annotations

import json
import re
import shutil
import threading
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from collections.abc import Callable
from typing import NamedTuple
from urllib.parse import parse_qsl, unquote, urlsplit

USERNAME, PASSWORD, PROJECT = "hedy", "secret", "lab"
ROUTES = []  # (method, compiled path pattern, FakeOpenStack method)
OPEN = re.compile(r"/\w+(/v[\d.]+)?|/identity/v3/auth/tokens")  # version documents and login need no token


def route(method: str, pattern: str):
    def register(fn):
        ROUTES.append((method, re.compile(pattern + "/?$"), fn))
        return fn

    return register


def now(precise: bool = False) -> str:
    """API timestamps; Nova's launched_at has microseconds and no zone ("2024-05-01T12:00:00.123456")."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f" if precise else "%Y-%m-%dT%H:%M:%SZ")


def new_id() -> str:
    return str(uuid.uuid4())


class Request(NamedTuple):
    params: dict  # from the path pattern
    query: dict
    body: dict
    headers: dict
    request_id: str = ""  # what the answer's x-openstack-request-id says


class ApiError(Exception):
    def __init__(self, status: int, body: dict):
        super().__init__(status)
        self.status, self.body = status, body


def nova_error(status: int, message: str) -> ApiError:
    kind = {400: "badRequest", 403: "forbidden", 404: "itemNotFound", 409: "conflictingRequest"}[status]
    return ApiError(status, {kind: {"code": status, "message": message}})


def neutron_error(status: int, kind: str, message: str) -> ApiError:
    return ApiError(status, {"NeutronError": {"type": kind, "message": message, "detail": ""}})


def glance_error(status: int, message: str) -> ApiError:
    return ApiError(status, {"code": status, "title": "Not Found", "message": message})


def fingerprint(public_key: str) -> str:
    """Nova's key pair fingerprint: MD5 of the decoded key blob, colon-separated hex; a key it cannot
    parse is a 400 (nova/crypto.py generate_fingerprint, nova.exception.InvalidKeypair)."""
    import base64
    import hashlib

    from cryptography.hazmat.primitives import serialization

    try:
        serialization.load_ssh_public_key(public_key.encode())
        digest = hashlib.md5(base64.b64decode(public_key.split(" ")[1])).hexdigest()
    except Exception:
        raise nova_error(400, "Keypair data is invalid: failed to generate fingerprint") from None
    return ":".join(a + b for a, b in zip(digest[::2], digest[1::2]))


def matches(item: dict, query: dict) -> bool:
    """List filters: query keys that are fields of the item compare as strings."""
    return all(
        str(item[k]).lower() == v.lower() if isinstance(item[k], bool) else str(item[k]) == v
        for k, v in query.items()
        if k in item
    )


# -- what each server status means in the extended attributes -------------------------
VM_STATE = {
    "BUILD": "building",
    "ACTIVE": "active",
    "SHUTOFF": "stopped",
    "SHELVED": "shelved",
    "SHELVED_OFFLOADED": "shelved_offloaded",
    "RESIZE": "active",
    "VERIFY_RESIZE": "resized",
    "REVERT_RESIZE": "resized",
    "ERROR": "error",
}
POWER_STATE = {"ACTIVE": 1, "RESIZE": 1, "VERIFY_RESIZE": 1, "REVERT_RESIZE": 1, "SHUTOFF": 4}
# action -> (statuses it is allowed from, status and task_state meanwhile, status after the next GET)
ACTIONS = {
    "os-stop": (("ACTIVE", "ERROR"), (None, "powering-off"), "SHUTOFF"),
    "os-start": (("SHUTOFF",), (None, "powering-on"), "ACTIVE"),
    # nova/compute/api.py shelve(): a volume-backed server is offloaded at once; an image-backed one
    # stays SHELVED unless the option shelved_offload_time is 0 (its default; -1: never offloaded)
    # (nova/compute/manager.py _shelve_instance). unshelve is allowed from both.
    "shelve": (("ACTIVE", "SHUTOFF"), (None, "shelving"), "SHELVED_OFFLOADED"),
    "unshelve": (("SHELVED", "SHELVED_OFFLOADED"), (None, "unshelving"), "ACTIVE"),
    "resize": (("ACTIVE", "SHUTOFF"), ("RESIZE", "resize_prep"), "VERIFY_RESIZE"),
    "confirmResize": (("VERIFY_RESIZE",), (None, None), None),
    "revertResize": (("VERIFY_RESIZE",), ("REVERT_RESIZE", "resize_reverting"), None),
    "createImage": (("ACTIVE", "SHUTOFF"), (None, "image_snapshot"), None),
}
# action -> its name in the server's action log (nova/compute/instance_actions.py: STOP = 'stop', START = 'start')
LOGGED_AS = {"os-stop": "stop", "os-start": "start"}


def action_time() -> str:
    """An action's start_time as GET /servers/{id}/os-instance-actions shows it: whole seconds, no zone
    ("2018-04-25T01:26:36.000000", https://docs.openstack.org/api-ref/compute/#list-actions-for-server;
    Nova's instance_actions.start_time is a DateTime column without fractions)."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000000")


# The volume statuses Cinder deletes from, without force (cinder/volume/api.py API.delete: expected['status'])
DELETABLE = ("available", "error", "error_restoring", "error_extending", "error_managing")
# The vm_states Nova attaches and detaches volumes in, with no task running (nova/compute/api.py attach_volume,
# detach_volume: @check_instance_state, whose task_state defaults to (None,))
ATTACHABLE = ("active", "paused", "stopped", "resized", "soft-delete", "shelved", "shelved_offloaded")


# The values of cinder/api/validation/parameter_types.py boolean (compared lowercased): the true ones, then the false
BOOLEANS = ("true", "1", "on", "yes", "y", "t", "false", "0", "off", "no", "n", "f")


def over_limit(message: str) -> ApiError:
    """Cinder's quota refusal: QuotaError is 413 (cinder/exception.py), its fault named overLimit with
    retryAfter (cinder/api/openstack/wsgi.py Fault)."""
    return ApiError(413, {"overLimit": {"code": 413, "message": message, "retryAfter": "0"}})


class FakeOpenStack:
    def __init__(self, tls: bool = False):
        self.tls = tls
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request served, in order
        self.bodies: list[bytes] = []  # the body of each of those requests, as it arrived
        self.tokens: set[str] = set()
        self.max_microversion = "2.79"  # set before the client's first compute call (discovery is cached)
        self.fail_next_resize = False
        self.fail_next_boot = ""
        self.shelved_offload_time = 0
        self.count_usage_from_placement = False
        self.in_flight = {"instances": 0, "cores": 0, "ram": 0}
        self.fail_next_snapshot = False
        self.unavailable = ""  # requests whose path starts with this answer 503 ("": none)
        # Nova's, Cinder's and Neutron's project limits (GET /limits, quotas/details); usage is counted from the state.
        self.quota = {
            "instances": 10,
            "cores": 8,
            "ram": 51200,
            "volumes": 10,
            "gigabytes": 1000,
            "snapshots": 10,
            "floatingip": 50,
        }
        self.floating_ips_exhausted = False
        self.app_credentials: dict[str, str] = {}  # id -> secret
        self.pending: dict[str, list] = {}  # id -> [GETs still to see the old state, updates]
        # A test's guest (tests/test_data_flow.py): called with each volume or snapshot as a GET shows it, under
        # the fake's lock, before the answer leaves: the "VM" has seen what Cinder did before labvm goes on.
        self.on_volume_look: Callable[[dict], None] | None = None
        self.resizing: dict[str, tuple] = {}  # server id -> (old flavor, status before the resize)
        self.project_id = uuid.uuid4().hex
        self.user_id = uuid.uuid4().hex
        self.flavors = {
            fid: {
                "id": fid,
                "name": name,
                "vcpus": vcpus,
                "ram": ram,
                "disk": disk,
                "swap": 0,
                "OS-FLV-EXT-DATA:ephemeral": 0,
                "OS-FLV-DISABLED:disabled": False,
                "rxtx_factor": 1.0,
                "os-flavor-access:is_public": True,
                "description": None,
                "extra_specs": {},
                "links": [],
            }
            for fid, name, vcpus, ram, disk in [
                ("2", "m1.small", 1, 2048, 20),
                ("3", "m1.medium", 2, 4096, 40),
                ("4", "m1.large", 4, 8192, 80),
            ]
        }
        self.keypairs: dict[str, dict] = {}
        self.servers: dict[str, dict] = {}
        self.actions: dict[str, list[dict]] = {}  # server id -> its action log, oldest first (kept after a delete)
        self.volumes: dict[str, dict] = {}
        self.snapshots: dict[str, dict] = {}
        # Nova's block device mappings of volumes: (server id, volume id) -> the device name Nova chose
        self.devices: dict[tuple[str, str], str | None] = {}
        # nova.conf [cinder] cross_az_attach (nova/conf/cinder.py, default True: no zone check on attach)
        self.cross_az_attach = True
        # Cinder's availability zones: its storage_availability_zone (cinder/common/config.py, default "nova")
        self.volume_zones = ["nova"]
        # Cinder's volume types: default_volume_type (cinder/common/config.py, "__DEFAULT__" since Train)
        self.volume_types = ["__DEFAULT__"]
        # cinder/volume/api.py cloned_volume_same_az (default True): a volume from a snapshot in the snapshot's zone
        self.cloned_volume_same_az = True
        # A backend whose volume made from a snapshot depends on it, and which refuses to delete that snapshot
        # (SnapshotIsBusy): RBD before Zed (cinder/volume/drivers/rbd.py delete_snapshot flattens the clones
        # first since 1a675c9aa, 2022) with rbd_flatten_volume_from_snapshot False, its default; no API rule.
        self.snapshots_busy_with_clones = False
        self.fail_next_volume = False  # the next volume made ends "error" (no backend could make it)
        # looks that still see a volume's or snapshot's state in between (creating, reserved, detaching, extending)
        self.volume_gets = 0
        self.max_volume_microversion = "3.70"  # the Cinder version document's "version"
        self.no_snapshot_gb_quota = False  # cinder/common/config.py, default False: snapshots count as gigabytes
        self.fail_next_volume_snapshot = False  # the next snapshot made ends "error" (the backend failed it)
        # A backend's online_extend_support capability (cinder/scheduler/filters/capabilities_filter.py, default
        # True): False, the scheduler finds no backend for an in-use volume's extend and puts it back as it was.
        self.online_extend_support = True
        self.fail_next_extend = False  # the next extend ends "error_extending" (the driver failed it)
        self.images: dict[str, dict] = {}
        self._image("Ubuntu 22.04", status="active", visibility="public", os_distro="ubuntu", os_version="22.04")
        self.networks: dict[str, dict] = {}
        self.subnets: dict[str, dict] = {}
        self._network("lab-net", "10.0.0", external=False)
        self._network("public", "203.0.113", external=True)
        self._network("dual-net", "10.1.0", external=False, ipv6_prefix="2001:db8:1::")
        self.ports: dict[str, dict] = {}
        self.security_groups: dict[str, dict] = {}
        self.security_group_rules: dict[str, dict] = {}
        self._security_group("default", "Default security group")
        self.floating_ips: dict[str, dict] = {}
        self.httpd = None

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> "FakeOpenStack":
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.handle_error = lambda request, address: None  # a client hanging up is no news
        self.httpd.fake = self
        if self.tls:
            self.httpd.socket = self._tls_context().wrap_socket(self.httpd.socket, server_side=True)
        self.base = f"{'https' if self.tls else 'http'}://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self.tls:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def auth_url(self) -> str:
        return f"{self.base}/identity/v3"

    def clouds_yaml(self, cloud_name: str = "cades", password: str | None = PASSWORD, extra: str = "") -> str:
        """A clouds.yaml for OS_CLIENT_CONFIG_FILE; another password makes Keystone answer 401, None
        leaves it out as Horizon's download does; `extra` adds cloud-level lines (cacert, api_timeout)."""
        secret = f"      password: {password}\n" if password is not None else ""
        return (
            f"clouds:\n  {cloud_name}:\n    auth_type: password\n    auth:\n      auth_url: {self.auth_url}\n"
            f"      username: {USERNAME}\n{secret}      project_name: {PROJECT}\n"
            f"      user_domain_name: Default\n      project_domain_name: Default\n"
            f"    region_name: RegionOne\n    interface: public\n    identity_api_version: 3\n{extra}"
        )

    def app_credential_clouds_yaml(self, cloud_name: str = "cades") -> str:
        """An application credential as `openstack application credential create` and Horizon give it
        (https://docs.openstack.org/keystone/latest/user/application_credentials.html)."""
        credential_id, secret = uuid.uuid4().hex, uuid.uuid4().hex
        self.app_credentials[credential_id] = secret
        return (
            f"clouds:\n  {cloud_name}:\n    auth_type: v3applicationcredential\n    auth:\n"
            f"      auth_url: {self.auth_url}\n      application_credential_id: {credential_id}\n"
            f"      application_credential_secret: {secret}\n"
            f"    region_name: RegionOne\n    interface: public\n    identity_api_version: 3\n"
        )

    def _tls_context(self):
        """A CA of the test's own (like a site's private CA) and a certificate for 127.0.0.1 signed by it."""
        import datetime as dt
        import ipaddress
        import ssl
        import tempfile

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        def cert(subject, issuer, key, signer, ca):
            start = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
            builder = (
                x509.CertificateBuilder()
                .subject_name(subject)
                .issuer_name(issuer)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(start)
                .not_valid_after(start + dt.timedelta(days=1))
                .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            )
            if not ca:
                builder = builder.add_extension(
                    x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
                )
            return builder.sign(signer, hashes.SHA256())

        ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Fake Lab Root CA")])
        ca_cert = cert(ca_name, ca_name, ca_key, ca_key, True)
        server = cert(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]), ca_name, key, ca_key, False)
        self.directory = tempfile.mkdtemp(prefix="fake-openstack-")
        self.ca_file = f"{self.directory}/ca.pem"
        with open(self.ca_file, "wb") as out:
            out.write(ca_cert.public_bytes(serialization.Encoding.PEM))
        with open(f"{self.directory}/server.pem", "wb") as out:
            out.write(server.public_bytes(serialization.Encoding.PEM))
            out.write(
                key.private_bytes(
                    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
                )
            )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(f"{self.directory}/server.pem")
        return context

    # -- helpers for state ------------------------------------------------------------------
    def _image(self, name, status="queued", **properties) -> dict:
        image = {
            "id": new_id(),
            "name": name,
            "status": status,
            "visibility": properties.pop("visibility", "private"),
            "container_format": "bare",
            "disk_format": "qcow2",
            "size": 0,
            "min_disk": 0,
            "min_ram": 0,
            "protected": False,
            "os_hidden": False,
            "tags": [],
            "owner": self.project_id,
            "checksum": None,
            "created_at": now(),
            "updated_at": now(),
            "schema": "/v2/schemas/image",
            **properties,
        }
        image.update(self=f"/v2/images/{image['id']}", file=f"/v2/images/{image['id']}/file")
        self.images[image["id"]] = image
        return image

    def _network(self, name, prefix, external, ipv6_prefix="") -> None:
        """A network with an IPv4 subnet; with ipv6_prefix a dual-stack one whose IPv6 subnet comes first
        (a port gets an address of each subnet, in the network's subnet order)."""
        net, sub = new_id(), new_id()
        self.networks[net] = {
            "id": net,
            "name": name,
            "status": "ACTIVE",
            "admin_state_up": True,
            "shared": False,
            "router:external": external,
            "subnets": [sub],
            "mtu": 1500,
            "description": "",
            "project_id": self.project_id,
            "tenant_id": self.project_id,
        }
        self.subnets[sub] = {
            "id": sub,
            "name": f"{name}-subnet",
            "network_id": net,
            "ip_version": 4,
            "cidr": f"{prefix}.0/24",
            "gateway_ip": f"{prefix}.1",
            "enable_dhcp": True,
            "project_id": self.project_id,
            "tenant_id": self.project_id,
            "_next": 10,
        }
        if ipv6_prefix:
            six = new_id()
            self.networks[net]["subnets"].insert(0, six)
            self.subnets[six] = {
                **self.subnets[sub],
                "id": six,
                "name": f"{name}-subnet-v6",
                "ip_version": 6,
                "cidr": f"{ipv6_prefix}/64",
                "gateway_ip": f"{ipv6_prefix}1",
            }

    def _addresses(self, network_id) -> list[dict]:
        """A new port's fixed_ips: the next address of each of the network's subnets."""
        fixed = []
        for subnet_id in self.networks[network_id]["subnets"]:
            subnet = self.subnets[subnet_id]
            subnet["_next"] += 1
            separator = "." if subnet["ip_version"] == 4 else ""
            base = subnet["cidr"].rsplit(".", 1)[0] if separator else subnet["cidr"].split("/")[0]
            fixed.append({"subnet_id": subnet_id, "ip_address": f"{base}{separator}{subnet['_next'] - 1}"})
        return fixed

    def _address(self, network_id) -> tuple[str, str]:
        (first,) = self._addresses(network_id)[:1]
        return first["subnet_id"], first["ip_address"]

    def _security_group(self, name, description) -> dict:
        group = {
            "id": new_id(),
            "name": name,
            "description": description,
            "security_group_rules": [],
            "project_id": self.project_id,
            "tenant_id": self.project_id,
            "stateful": True,
            "created_at": now(),
            "updated_at": now(),
        }
        self.security_groups[group["id"]] = group
        for ethertype in ("IPv4", "IPv6"):
            self._rule({"security_group_id": group["id"], "direction": "egress", "ethertype": ethertype})
        return group

    def _rule(self, spec: dict) -> dict:
        rule = {
            "id": new_id(),
            "protocol": None,
            "port_range_min": None,
            "port_range_max": None,
            "remote_ip_prefix": None,
            "remote_group_id": None,
            "description": "",
            "ethertype": "IPv4",
            "project_id": self.project_id,
            "tenant_id": self.project_id,
            **spec,
        }
        self.security_group_rules[rule["id"]] = rule
        self.security_groups[rule["security_group_id"]]["security_group_rules"].append(rule)
        return rule

    def _later(self, item_id: str, gets: int = 0, **updates) -> None:
        """Apply `updates` to the resource when it is fetched for the (gets+1)-th time."""
        self.pending[item_id] = [gets, {k: v for k, v in updates.items() if v is not None}]

    def _tick(self, item: dict) -> dict:
        if item["id"] in self.pending:
            entry = self.pending[item["id"]]
            if entry[0] == 0:
                del self.pending[item["id"]]
                item.update(entry[1])
                if "OS-EXT-STS:vm_state" in item:  # a server: its task is done
                    self._server_status(item, item["status"], None)
            else:
                entry[0] -= 1
        return item

    def _server_status(self, server: dict, status: str | None, task: str | None) -> None:
        status = status or server["status"]
        server.update(
            {
                "status": status,
                "OS-EXT-STS:task_state": task,
                "updated": now(),
                "OS-EXT-STS:vm_state": VM_STATE.get(status, status.lower()),
                "OS-EXT-STS:power_state": POWER_STATE.get(status, 0),
            }
        )

    def _server_view(self, server: dict, req=None) -> dict:
        """The server with its current addresses; the flavor as {"id", "links"} before microversion 2.47."""
        addresses = {}
        for port in self.ports.values():
            if port["device_id"] != server["id"]:
                continue
            entries = addresses.setdefault(self.networks[port["network_id"]]["name"], [])
            mac = {"OS-EXT-IPS-MAC:mac_addr": port["mac_address"]}
            for fixed in port["fixed_ips"]:
                version = 6 if ":" in fixed["ip_address"] else 4
                entries.append({"addr": fixed["ip_address"], "version": version, "OS-EXT-IPS:type": "fixed", **mac})
            for fip in self.floating_ips.values():
                if fip["port_id"] == port["id"]:
                    entries.append(
                        {"addr": fip["floating_ip_address"], "version": 4, "OS-EXT-IPS:type": "floating", **mac}
                    )
        server["addresses"] = addresses
        view = {k: v for k, v in server.items() if k != "fault"}
        # Nova shows an instance's last fault only while it is ERROR or DELETED
        # (nova/api/openstack/compute/views/servers.py, _fault_statuses).
        if server["status"] in ("ERROR", "DELETED") and "fault" in server:
            view["fault"] = server["fault"]
        if req and self._microversion(req.headers) < (2, 47):
            flavor_id = next(f["id"] for f in self.flavors.values() if f["name"] == server["flavor"]["original_name"])
            return {**view, "flavor": {"id": flavor_id, "links": []}}
        return view

    def _find(self, table: dict, key: str, error) -> dict:
        if key not in table:
            raise error
        return table[key]

    # -- Keystone -----------------------------------------------------------------------------
    def _identity_version(self) -> dict:
        return {
            "id": "v3.14",
            "status": "stable",
            "updated": "2020-04-07T00:00:00Z",
            "links": [{"rel": "self", "href": f"{self.base}/identity/v3/"}],
            "media-types": [{"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}],
        }

    @route("GET", r"/identity")
    def identity_versions(self, req):
        return 300, {"versions": {"values": [self._identity_version()]}}

    @route("GET", r"/identity/v3")
    def identity_version(self, req):
        return 200, {"version": self._identity_version()}

    @route("POST", r"/identity/v3/auth/tokens")
    def issue_token(self, req):
        identity = req.body.get("auth", {}).get("identity", {})
        user = identity.get("password", {}).get("user", {})
        # An application credential is scoped to its project already: the request names no project
        # (https://docs.openstack.org/api-ref/identity/v3/#authenticating-with-an-application-credential).
        credential = identity.get("application_credential", {})
        if credential:
            accepted = self.app_credentials.get(credential.get("id")) == credential.get("secret")
        else:
            accepted = user.get("name") == USERNAME and user.get("password") == PASSWORD
        if not accepted:
            raise ApiError(
                401,
                {
                    "error": {
                        "code": 401,
                        "title": "Unauthorized",
                        "message": "The request you have made requires authentication.",
                    }
                },
            )
        token = uuid.uuid4().hex
        self.tokens.add(token)
        domain = {"id": "default", "name": "Default"}
        catalog = [
            {
                "type": kind,
                "name": name,
                "id": uuid.uuid4().hex,
                "endpoints": [
                    {
                        "id": uuid.uuid4().hex,
                        "interface": "public",
                        "region": "RegionOne",
                        "region_id": "RegionOne",
                        "url": f"{self.base}{path}",
                    }
                ],
            }
            for kind, name, path in [
                ("identity", "keystone", "/identity"),
                ("compute", "nova", "/compute/v2.1"),
                ("network", "neutron", "/network"),
                ("image", "glance", "/image"),
                ("block-storage", "cinderv3", f"/volume/v3/{self.project_id}"),
            ]
        ]
        body = {
            "token": {
                "methods": ["application_credential" if credential else "password"],
                "expires_at": "2099-01-01T00:00:00.000000Z",
                "issued_at": now(),
                "user": {"id": self.user_id, "name": USERNAME, "domain": domain, "password_expires_at": None},
                "project": {"id": self.project_id, "name": PROJECT, "domain": domain},
                "roles": [{"id": uuid.uuid4().hex, "name": "member"}],
                "catalog": catalog,
                "is_domain": False,
                "audit_ids": [uuid.uuid4().hex[:22]],
            }
        }
        return 201, body, {"X-Subject-Token": token}

    # -- Nova -----------------------------------------------------------------------------------
    def _compute_version(self) -> dict:
        return {
            "id": "v2.1",
            "status": "CURRENT",
            "version": self.max_microversion,
            "min_version": "2.1",
            "updated": "2013-07-23T11:33:21Z",
            "links": [{"rel": "self", "href": f"{self.base}/compute/v2.1/"}],
        }

    @route("GET", r"/compute")
    def compute_versions(self, req):
        return 200, {"versions": [self._compute_version()]}

    @route("GET", r"/compute/v2\.1")
    def compute_version(self, req):
        return 200, {"version": self._compute_version()}

    @route("GET", r"/compute/v2\.1/flavors(/detail)?")
    def list_flavors(self, req):
        return 200, {"flavors": [f for f in self.flavors.values() if matches(f, req.query)]}

    @route("GET", r"/compute/v2\.1/flavors/(?P<id>[^/]+)")
    def get_flavor(self, req):
        return 200, {
            "flavor": self._find(
                self.flavors, req.params["id"], nova_error(404, f"Flavor {req.params['id']} could not be found.")
            )
        }

    @route("GET", r"/compute/v2\.1/os-keypairs")
    def list_keypairs(self, req):
        return 200, {"keypairs": [{"keypair": k} for k in self.keypairs.values()]}

    @route("POST", r"/compute/v2\.1/os-keypairs")
    def create_keypair(self, req):
        spec = req.body["keypair"]
        # nova/api/openstack/compute/schemas/keypairs.py: create_v210 takes parameter_types
        # keypair_name_special_chars, ^[_\- a-zA-Z0-9]+$ (255); "." and "@" only from 2.92
        # (keypair_name_special_chars_v292).  A schema failure is a 400 worded by
        # nova/api/validation/validators.py ("Invalid input for field/attribute ...").
        pattern = r"^[_\-\@\. a-zA-Z0-9]+$" if self._microversion(req.headers) >= (2, 92) else r"^[_\- a-zA-Z0-9]+$"
        if not re.match(pattern, spec.get("name", "")) or len(spec["name"]) > 255:
            raise nova_error(
                400,
                f"Invalid input for field/attribute name. Value: {spec.get('name')}. "
                f"{spec.get('name')!r} does not match {pattern!r}",
            )
        if spec["name"] in self.keypairs:
            raise nova_error(409, f"Key pair '{spec['name']}' already exists.")
        if not spec.get("public_key"):
            raise nova_error(400, "fake: keypair generation is not supported; pass public_key")
        self.keypairs[spec["name"]] = {
            "name": spec["name"],
            "public_key": spec["public_key"],
            "type": "ssh",
            "fingerprint": fingerprint(spec["public_key"]),
            "user_id": self.user_id,
        }
        return 200, {"keypair": self.keypairs[spec["name"]]}

    @route("GET", r"/compute/v2\.1/os-keypairs/(?P<name>[^/]+)")
    def get_keypair(self, req):
        name = req.params["name"]
        return 200, {"keypair": self._find(self.keypairs, name, nova_error(404, f"Keypair {name} not found"))}

    @route("DELETE", r"/compute/v2\.1/os-keypairs/(?P<name>[^/]+)")
    def delete_keypair(self, req):
        self.get_keypair(req)
        del self.keypairs[req.params["name"]]
        return 202, None

    @route("POST", r"/compute/v2\.1/servers")
    def create_server(self, req):
        spec = req.body["server"]
        flavor = self._find(
            self.flavors,
            str(spec.get("flavorRef")),
            nova_error(400, f"Flavor {spec.get('flavorRef')} could not be found."),
        )
        wanted = {"cores": flavor["vcpus"], "instances": 1, "ram": flavor["ram"]}
        used = self.compute_usage()
        for resource in ("instances", "cores", "ram"):
            if used[resource] + wanted[resource] > self.quota[resource]:  # nova.exception.TooManyInstances -> 403
                raise nova_error(
                    403,
                    f"Quota exceeded for {resource}: Requested {wanted[resource]}, "
                    f"but already used {used[resource]} of {self.quota[resource]} {resource}",
                )
        devices = spec.get("block_device_mapping_v2") or []
        boot = next((d for d in devices if str(d.get("boot_index")) == "0"), None)
        image_id = boot["uuid"] if boot and boot.get("source_type") == "image" else spec.get("imageRef")
        image = self._find(self.images, image_id or "", nova_error(400, f"Image {image_id} could not be found."))
        image_root = next(
            (d for d in json.loads(image.get("block_device_mapping") or "[]") if d["boot_index"] == 0), None
        )
        if image_root:
            # The image of a volume-backed server: its root mapping (a volume from its Cinder snapshot)
            # replaces the request's image->volume root (nova/compute/api.py _check_and_transform_bdm).
            self._find(
                self.snapshots,
                image_root["snapshot_id"],
                nova_error(400, f"Snapshot {image_root['snapshot_id']} could not be found."),
            )
            boot = image_root
        if spec.get("key_name") and spec["key_name"] not in self.keypairs:
            raise nova_error(400, "Invalid key_name provided.")
        groups = [g["name"] for g in spec.get("security_groups") or [{"name": "default"}]]
        for name in groups:
            if not any(name in (g["name"], g["id"]) for g in self.security_groups.values()):
                raise nova_error(400, f"Security group {name} not found for project {self.project_id}.")
        networks = spec.get("networks")
        if not isinstance(networks, list) or not networks:
            networks = [{"uuid": next(i for i, n in self.networks.items() if not n["router:external"])}]
        server_id = new_id()
        self._record(server_id, "create", req)
        volumes = []
        on_volume = bool(boot and boot.get("destination_type") == "volume")
        rechecked = self._recheck_quota(wanted)
        if rechecked:
            image_view = "" if on_volume else {"id": image_id, "links": []}
            return self._accept_then_error(server_id, spec, flavor, groups, image_view, rechecked)
        if on_volume and self._volume_over_quota(boot.get("volume_size") or flavor["disk"]):
            # Nova's API does not ask Cinder: the compute host creates the boot volume, Cinder refuses it (413
            # OverLimit), nova/volume/cinder.py API.create raises OverQuota(overs='volumes'), and
            # nova/compute/manager.py _build_resources turns it into BuildAbortException: ERROR, this fault,
            # the network the host had allocated released (_build_resources_cleanup), no volume.
            fault = f"Build of instance {server_id} aborted: Quota exceeded for resources: volumes"
            return self._accept_then_error(server_id, spec, flavor, groups, "", fault, host=uuid.uuid4().hex)
        if on_volume:
            volume = self._volume(server_id, boot.get("volume_size") or flavor["disk"], image)
            volume["snapshot_id"] = boot.get("snapshot_id")
            volumes.append({"id": volume["id"], "delete_on_termination": bool(boot.get("delete_on_termination"))})
            self.devices[(server_id, volume["id"])] = "/dev/vda"
        for net in networks:
            self._find(
                self.networks, net.get("uuid", ""), nova_error(400, f"Network {net.get('uuid')} could not be found.")
            )
            port_id = new_id()
            self.ports[port_id] = {
                "id": port_id,
                "name": "",
                "network_id": net["uuid"],
                "device_id": server_id,
                "device_owner": "compute:nova",
                "status": "ACTIVE",
                "admin_state_up": True,
                "mac_address": "fa:16:3e:" + ":".join(uuid.uuid4().hex[i : i + 2] for i in (0, 2, 4)),
                "fixed_ips": self._addresses(net["uuid"]),
                "security_groups": [
                    g["id"] for g in self.security_groups.values() if g["name"] in groups or g["id"] in groups
                ],
                "project_id": self.project_id,
                "tenant_id": self.project_id,
            }
        server = self._new_server(server_id, spec, flavor, groups, "" if volumes else {"id": image_id, "links": []})
        server["os-extended-volumes:volumes_attached"] = volumes
        self._server_status(server, "BUILD", "spawning")
        self.servers[server_id] = server
        self._server_view(server)
        if self.fail_next_boot:  # a build that fails ends in ERROR with a fault (nova.exception.BuildAbortException)
            server["fault"] = {"code": 500, "message": self.fail_next_boot, "created": now()}
            self.fail_next_boot = ""
            self._later(server_id, status="ERROR")
        else:
            self._later(server_id, status="ACTIVE", **{"OS-SRV-USG:launched_at": now(precise=True)})
        return self._accepted(server)

    def _recheck_quota(self, wanted: dict) -> str:
        """Nova's second look at quota, after the API accepted the boot (nova/conductor/manager.py
        schedule_and_build_instances -> _recheck_quota, `[quota] recheck_quota` default True): boots in
        flight that the API's count did not see (build requests are not counted until the conductor
        makes their instances) count now.  The TooManyInstances message of what is over, or ""."""
        used = self.compute_usage()
        for resource in ("instances", "cores", "ram"):
            total = used[resource] + self.in_flight[resource]
            if self.in_flight[resource] and total + wanted[resource] > self.quota[resource]:
                return (
                    f"Quota exceeded for {resource}: Requested {wanted[resource]}, but already used "
                    f"{total} of {self.quota[resource]} {resource}"
                )
        return ""

    def _volume_over_quota(self, size: int) -> bool:
        """Whether Cinder refuses a new volume of `size` GB: its create reserves volumes=1 and gigabytes=size
        (cinder/volume/flows/api/create_volume.py QuotaReserveTask), and gigabytes counts snapshots too
        unless no_snapshot_gb_quota (cinder/volume/api.py create_snapshot, default False); the limits and
        usage are the Block Storage API's (https://docs.openstack.org/api-ref/block-storage/v3/#limits-limits,
        #quota-sets-os-quota-sets: volumes, gigabytes)."""
        used = self.volume_usage()
        return used["volumes"] + 1 > self.quota["volumes"] or used["gigabytes"] + size > self.quota["gigabytes"]

    def volume_usage(self) -> dict:
        """What Cinder counts against the quota: every volume, and the gigabytes of volumes and snapshots."""
        return {
            "volumes": len(self.volumes),
            "gigabytes": sum(v["size"] for v in self.volumes.values())
            + sum(s["size"] for s in self.snapshots.values()),
        }

    def _accept_then_error(
        self, server_id: str, spec: dict, flavor: dict, groups: list, image, fault: str, host: str = ""
    ):
        """A boot that fails after the API accepted it: 202, then ERROR with the fault, no port, no volume.
        At the quota recheck no host either (nova/conductor/manager.py _cleanup_build_artifacts stores the
        instance in ERROR and its BDMs only; ports and volumes are made on a compute host, which it never
        reaches); on a compute host that aborts the build, `host` (its ports released, its volume never made)."""
        server = self._new_server(server_id, spec, flavor, groups, image)
        server.update(hostId=host)
        server["fault"] = {"code": 500, "message": fault, "created": now()}
        self._server_status(server, "BUILD", "scheduling")
        self.servers[server_id] = server
        self._server_view(server)
        self._later(server_id, status="ERROR")
        return self._accepted(server)

    def _accepted(self, server: dict):
        return 202, {
            "server": {
                "id": server["id"],
                "links": [],
                "OS-DCF:diskConfig": "MANUAL",
                "security_groups": server["security_groups"],
                "adminPass": uuid.uuid4().hex[:12],
            }
        }

    def _new_server(self, server_id: str, spec: dict, flavor: dict, groups: list, image) -> dict:
        return {
            "id": server_id,
            "name": spec["name"],
            "metadata": dict(spec.get("metadata") or {}),
            "flavor": self._embedded_flavor(flavor),
            "key_name": spec.get("key_name"),
            "image": image,
            "os-extended-volumes:volumes_attached": [],
            "security_groups": [{"name": n} for n in groups],
            "user_id": self.user_id,
            "tenant_id": self.project_id,
            "created": now(),
            "hostId": uuid.uuid4().hex,
            "OS-SRV-USG:launched_at": None,
            "OS-SRV-USG:terminated_at": None,
            "OS-EXT-AZ:availability_zone": "nova",
            "OS-DCF:diskConfig": "MANUAL",
            "accessIPv4": "",
            "accessIPv6": "",
            "config_drive": "",
            "progress": 0,
            "locked": False,
            "description": None,
            "tags": [],
            "links": [],
        }

    def _microversion(self, headers: dict) -> tuple[int, ...]:
        value = headers.get("OpenStack-API-Version", "compute 2.1").split()[-1]
        return tuple(int(part) for part in (self.max_microversion if value == "latest" else value).split("."))

    def _embedded_flavor(self, flavor: dict) -> dict:  # the microversion 2.47+ form
        return {
            "original_name": flavor["name"],
            "vcpus": flavor["vcpus"],
            "ram": flavor["ram"],
            "disk": flavor["disk"],
            "ephemeral": 0,
            "swap": 0,
            "extra_specs": {},
        }

    def _server(self, req) -> dict:
        server_id = req.params["id"]
        return self._find(self.servers, server_id, nova_error(404, f"Instance {server_id} could not be found."))

    @route("GET", r"/compute/v2\.1/servers(/detail)?")
    def list_servers(self, req):  # Nova filters no metadata; name is a regular expression
        return 200, {
            "servers": [
                self._server_view(self._tick(s), req)
                for s in list(self.servers.values())
                if re.search(req.query.get("name", ""), s["name"])
                and matches(s, {k: v for k, v in req.query.items() if k == "status"})
            ]
        }

    @route("GET", r"/compute/v2\.1/servers/(?P<id>[^/]+)")
    def get_server(self, req):
        return 200, {"server": self._server_view(self._tick(self._server(req)), req)}

    @route("DELETE", r"/compute/v2\.1/servers/(?P<id>[^/]+)")
    def delete_server(self, req):
        server = self.servers.pop(self._server(req)["id"])
        self._record(server["id"], "delete", req)
        self.pending.pop(server["id"], None)
        for port in [p for p in self.ports.values() if p["device_id"] == server["id"]]:
            del self.ports[port["id"]]
            for fip in self.floating_ips.values():
                if fip["port_id"] == port["id"]:
                    fip.update(port_id=None, fixed_ip_address=None, status="DOWN")
        for attached in server["os-extended-volumes:volumes_attached"]:
            self.devices.pop((server["id"], attached["id"]), None)
            self.pending.pop(attached["id"], None)
            volume = self.volumes[attached["id"]]
            volume.update(status="available", attachments=[], updated_at=now())
            # Nova asks Cinder to delete a delete_on_termination volume and only logs a refusal
            # (nova/compute/manager.py _cleanup_volumes(raise_exc=False)): one with snapshots stays.
            if attached["delete_on_termination"] and not self._snapshots_of(volume["id"]):
                del self.volumes[volume["id"]]
        return 204, None

    @route("POST", r"/compute/v2\.1/servers/(?P<id>[^/]+)/action")
    def server_action(self, req):
        server = self._server(req)
        ((action, args),) = req.body.items()
        if action not in ACTIONS:
            raise nova_error(400, f"fake: unsupported action {action}")
        allowed, (status, task), final = ACTIONS[action]
        if server["OS-EXT-STS:task_state"] or server["status"] not in allowed:
            state = (
                f"task_state {server['OS-EXT-STS:task_state']}"
                if server["OS-EXT-STS:task_state"]
                else f"vm_state {server['OS-EXT-STS:vm_state']}"
            )
            raise nova_error(409, f"Cannot '{action}' instance {server['id']} while it is in {state}")
        before = server["status"]
        self._record(server["id"], LOGGED_AS.get(action, action), req)
        self._server_status(server, status, task)
        headers, body = {}, None
        if action == "shelve" and not self._volume_backed(server) and self.shelved_offload_time != 0:
            final = "SHELVED"
        if action == "resize":
            flavor = self._find(
                self.flavors, str(args["flavorRef"]), nova_error(400, f"Flavor {args['flavorRef']} could not be found.")
            )
            if self.fail_next_resize:
                # The API casts the resize to the conductor and answers 202; when the scheduler finds no
                # host the conductor puts the instance back in its vm_state (ACTIVE, or SHUTOFF) on the
                # old flavor and records a fault, shown only while ERROR (nova/compute/api.py resize,
                # nova/conductor/manager.py _cold_migrate: NoValidHost).
                self.fail_next_resize = False
                final = before
                server["fault"] = {
                    "code": 500,
                    "created": now(),
                    "message": "No valid host was found. No valid host found for resize",
                }
            else:
                self.resizing[server["id"]] = (server["flavor"], before)
                server["flavor"] = self._embedded_flavor(flavor)
        elif action in ("confirmResize", "revertResize"):
            old_flavor, final = self.resizing.pop(server["id"])
            if action == "revertResize":
                server["flavor"] = old_flavor
        elif action == "createImage":
            properties = {
                **(args.get("metadata") or {}),
                "image_type": "snapshot",
                "instance_uuid": server["id"],
                "owner_user_name": USERNAME,
                "user_id": self.user_id,
            }
            if self._volume_backed(server):
                image = self._volume_backed_snapshot(server, args["name"], properties)
            else:
                image = self._image(args["name"], **properties)
                if self.fail_next_snapshot:
                    # An upload that fails leaves the image `killed` ("an error occurred during the uploading
                    # of an image's data, and the image is not readable",
                    # https://docs.openstack.org/glance/latest/user/statuses.html); Glance has no "error".
                    self.fail_next_snapshot = False
                    self._later(image["id"], gets=1, status="killed", updated_at=now())
                else:
                    self._later(image["id"], gets=1, status="active", size=1024, updated_at=now())
            if self._microversion(req.headers) >= (2, 45):
                body = {"image_id": image["id"]}
            else:
                headers = {"Location": f"{self.base}/image/v2/images/{image['id']}"}
        if action in ("unshelve", "resize", "revertResize"):
            self._later(server["id"], status=final, **{"OS-SRV-USG:launched_at": now(precise=True)})
        else:
            self._later(server["id"], status=final)
        return 202, body, headers

    def _record(self, server_id: str, action: str, req) -> None:
        """An entry of the server's action log, made by the API as it accepts the request (nova/compute/api.py
        _record_action_start, after the state check): os-start is logged while launched_at stays as it was
        (nova/compute/manager.py start_instance sets power and vm state only)."""
        self.actions.setdefault(server_id, []).append(
            {
                "action": action,
                "instance_uuid": server_id,
                "message": None,
                "project_id": self.project_id,
                "request_id": req.request_id,
                "start_time": action_time(),
                "user_id": self.user_id,
                "updated_at": action_time(),  # from microversion 2.58
            }
        )

    @route("GET", r"/compute/v2\.1/servers/(?P<id>[^/]+)/os-instance-actions")
    def list_server_actions(self, req):
        """List Actions For Server (https://docs.openstack.org/api-ref/compute/#list-actions-for-server): newest
        first (nova/db/main/api.py actions_get orders by created_at, id, descending)."""
        self._server(req)
        return 200, {"instanceActions": list(reversed(self.actions.get(req.params["id"], [])))}

    def _volume_backed(self, server: dict) -> bool:
        return not server["image"]

    def _volume_backed_snapshot(self, server: dict, name: str, properties: dict) -> dict:
        """nova/compute/api.py snapshot_volume_backed: a Cinder snapshot of each volume ("snapshot for
        <image name>") and a Glance image of no data (size 0, activated at once, disk_format raw)
        whose block_device_mapping property (a JSON string: Glance v2 properties are strings,
        nova/image/glance.py _json_dumps) names the snapshots."""
        mapping = []
        for index, attached in enumerate(server["os-extended-volumes:volumes_attached"]):
            volume = self.volumes[attached["id"]]
            snapshot = {
                "id": new_id(),
                "name": f"snapshot for {name}",
                "description": volume["description"],
                "volume_id": volume["id"],
                "size": volume["size"],
                "status": "creating",
                "metadata": {},
                "created_at": now(),
                "updated_at": None,
                "os-extended-snapshot-attributes:progress": "0%",
                "os-extended-snapshot-attributes:project_id": self.project_id,
            }
            self.snapshots[snapshot["id"]] = snapshot
            self._later(snapshot["id"], status="available", **{"os-extended-snapshot-attributes:progress": "100%"})
            mapping.append(
                {
                    "source_type": "snapshot",
                    "destination_type": "volume",
                    "snapshot_id": snapshot["id"],
                    "volume_size": volume["size"],
                    "boot_index": index,
                    "device_name": "/dev/vda",
                    "delete_on_termination": attached["delete_on_termination"],
                    "disk_bus": "virtio",
                    "volume_id": None,
                    "image_id": None,
                    "no_device": None,
                    "tag": None,
                    "guest_format": None,
                    "device_type": "disk",
                    "volume_type": None,
                }
            )
        image = self._image(
            name,
            status="active",
            block_device_mapping=json.dumps(mapping),
            bdm_v2="True",
            root_device_name="/dev/vda",
            **properties,
        )
        image.update(disk_format="raw", size=0)
        return image

    def _volume(self, server_id: str, size: int, image: dict) -> dict:
        volume = {
            "id": new_id(),
            "name": "",
            "description": "",
            "status": "in-use",
            "size": size,
            "bootable": "true",
            "attachments": [
                {
                    "server_id": server_id,
                    "attachment_id": new_id(),
                    "volume_id": None,
                    "device": "/dev/vda",
                    "id": None,
                    "host_name": None,
                    "attached_at": now(),
                }
            ],
            "metadata": {},
            "volume_image_metadata": {"image_id": image["id"], "image_name": image["name"]},
            "availability_zone": "nova",
            "snapshot_id": None,
            "source_volid": None,
            "volume_type": "__DEFAULT__",
            "multiattach": False,
            "encrypted": False,
            "created_at": now(),
            "updated_at": now(),
            "user_id": self.user_id,
            "os-vol-tenant-attr:tenant_id": self.project_id,
        }
        volume["attachments"][0].update(volume_id=volume["id"], id=volume["id"])
        self.volumes[volume["id"]] = volume
        return volume

    def _snapshots_of(self, volume_id: str) -> list:
        return [s for s in self.snapshots.values() if s["volume_id"] == volume_id]

    def compute_usage(self) -> dict:
        """What Nova counts against the quota: every server; the cores and RAM of every server from the cell
        databases (nova/quota.py _instances_cores_ram_count_legacy: offloaded ones too), or with
        `count_usage_from_placement` (nova/conf/quota.py, default False) from placement's allocations, which
        a shelved-offloaded server no longer has."""
        placed = [
            s
            for s in self.servers.values()
            if not (self.count_usage_from_placement and s["status"] == "SHELVED_OFFLOADED")
        ]
        return {
            "instances": len(self.servers),
            "cores": sum(s["flavor"]["vcpus"] for s in placed),
            "ram": sum(s["flavor"]["ram"] for s in placed),
        }

    @route("GET", r"/compute/v2\.1/limits")
    def compute_limits(self, req):  # https://docs.openstack.org/api-ref/compute/#limits-limits
        used = self.compute_usage()
        return 200, {
            "limits": {
                "rate": [],
                "absolute": {
                    "maxTotalInstances": self.quota["instances"],
                    "totalInstancesUsed": used["instances"],
                    "maxTotalCores": self.quota["cores"],
                    "totalCoresUsed": used["cores"],
                    "maxTotalRAMSize": self.quota["ram"],
                    "totalRAMUsed": used["ram"],
                    # the fields left from microversion 2.57 on (network and personality limits are gone)
                    "maxServerMeta": 128,
                    "maxImageMeta": 128,
                    "maxTotalKeypairs": 100,
                    "maxServerGroups": 10,
                    "maxServerGroupMembers": 10,
                    "totalServerGroupsUsed": 0,
                },
            }
        }

    # -- Nova's os-volume_attachments (https://docs.openstack.org/api-ref/compute/#servers-with-volume-attachments-servers-os-volume-attachments)
    def _attachment_view(self, req, server_id: str, volume_id: str) -> dict:
        """An attachment as Nova shows it: the volume id is its id (nova/api/openstack/compute/
        volume_attachments.py _translate_attachment_detail_view; tag from 2.70, delete_on_termination from 2.79)."""
        view = {"id": volume_id, "serverId": server_id, "volumeId": volume_id}
        if self.devices.get((server_id, volume_id)):
            view["device"] = self.devices[(server_id, volume_id)]
        if self._microversion(req.headers) >= (2, 70):
            view["tag"] = None
        if self._microversion(req.headers) >= (2, 79):
            server = self.servers[server_id]
            entry = next(v for v in server["os-extended-volumes:volumes_attached"] if v["id"] == volume_id)
            view["delete_on_termination"] = entry["delete_on_termination"]
        return view

    def _attachable(self, server: dict, action: str) -> None:
        """nova/compute/api.py @check_instance_state: a vm_state of ATTACHABLE and no task, else 409 as
        nova/api/openstack/common.py raise_http_conflict_for_instance_invalid_state words it."""
        vm_state, task = server["OS-EXT-STS:vm_state"], server["OS-EXT-STS:task_state"]
        if vm_state not in ATTACHABLE or task:
            attr, state = ("task_state", task) if vm_state in ATTACHABLE else ("vm_state", vm_state)
            raise nova_error(409, f"Cannot '{action}' instance {server['id']} while it is in {attr} {state}")

    def _nova_volume(self, volume_id: str) -> dict:
        """Nova's look at Cinder's volume: VolumeNotFound is 404."""
        return self._find(self.volumes, volume_id, nova_error(404, f"Volume {volume_id} could not be found."))

    def _next_device(self, server: dict) -> str:
        """The libvirt driver's next free name on the virtio bus (nova/virt/libvirt/blockinfo.py
        find_disk_dev_for_disk_bus): vda is the root disk, an image's or a boot volume's."""
        taken = {"/dev/vda"} | {d for (s, _), d in self.devices.items() if s == server["id"] and d}
        return next(f"/dev/vd{letter}" for letter in "bcdefghijklmnopqrstuvwxyz" if f"/dev/vd{letter}" not in taken)

    @route("GET", r"/compute/v2\.1/servers/(?P<id>[^/]+)/os-volume_attachments")
    def list_volume_attachments(self, req):
        server = self._server(req)
        attached = server["os-extended-volumes:volumes_attached"]
        return 200, {"volumeAttachments": [self._attachment_view(req, server["id"], v["id"]) for v in attached]}

    @route("GET", r"/compute/v2\.1/servers/(?P<id>[^/]+)/os-volume_attachments/(?P<volume>[^/]+)")
    def get_volume_attachment(self, req):
        server, volume_id = self._server(req), req.params["volume"]
        if not any(v["id"] == volume_id for v in server["os-extended-volumes:volumes_attached"]):
            raise nova_error(404, f"Instance {server['id']} is not attached to volume {volume_id}")
        return 200, {"volumeAttachment": self._attachment_view(req, server["id"], volume_id)}

    @route("POST", r"/compute/v2\.1/servers/(?P<id>[^/]+)/os-volume_attachments")
    def attach_volume(self, req):
        """nova/compute/api.py attach_volume: the state check, the volume's BDMs (one non-multiattach volume,
        one server), the zone check only when cross_az_attach is off (nova/volume/cinder.py
        check_availability_zone), then Cinder's attachment_create, which reserves an available volume
        (cinder/volume/api.py _attachment_reserve: status "reserved") and Nova's answer with the device it
        chose.  The host attaches later: Cinder says "attaching", then "in-use" and lists the attachment
        (cinder/api/v3/views/volumes.py _get_attachments: attached ones only).  A shelved-offloaded server
        has no host: Cinder's attachment_complete at once, no device (_attach_volume_shelved_offloaded)."""
        server = self._server(req)
        self._attachable(server, "attach_volume")
        volume = self._nova_volume(req.body["volumeAttachment"]["volumeId"])
        holders = [s for (s, v) in self.devices if v == volume["id"]]
        if holders:  # nova/compute/api.py _check_volume_already_attached
            raise nova_error(
                400, f"Invalid volume: volume {volume['id']} is already attached to instances: {' '.join(holders)}"
            )
        if not self.cross_az_attach and server["OS-EXT-AZ:availability_zone"] != volume["availability_zone"]:
            raise nova_error(
                400,
                f"Invalid volume: Instance {server['id']} and volume {volume['id']} are not in the same "
                f"availability_zone. Instance is in {server['OS-EXT-AZ:availability_zone']}. Volume is in "
                f"{volume['availability_zone']}",
            )
        if volume["status"] not in ("available", "downloading"):
            # Cinder's 400 InvalidVolume, which Nova re-raises as InvalidInput (nova/volume/cinder.py
            # _reraise_translated_volume_exception)
            raise nova_error(
                400,
                f"Invalid input received: Invalid volume: Volume {volume['id']} status must be available or "
                f"downloading to reserve, but the current status is {volume['status']}. (HTTP 400)",
            )
        offloaded = server["status"] == "SHELVED_OFFLOADED"
        device = None if offloaded else self._next_device(server)
        self.devices[(server["id"], volume["id"])] = device
        server["os-extended-volumes:volumes_attached"].append({"id": volume["id"], "delete_on_termination": False})
        self._record(server["id"], "attach_volume", req)
        attached = {
            "id": volume["id"],
            "attachment_id": new_id(),
            "volume_id": volume["id"],
            "server_id": server["id"],
            "host_name": None,
            "device": device,
            "attached_at": now(),
        }
        if offloaded:
            volume.update(status="in-use", attachments=[attached], updated_at=now())
        else:
            volume.update(status="reserved", updated_at=now())
            self._later(volume["id"], self.volume_gets, status="in-use", attachments=[attached])
        return 200, {"volumeAttachment": self._attachment_view(req, server["id"], volume["id"])}

    @route("DELETE", r"/compute/v2\.1/servers/(?P<id>[^/]+)/os-volume_attachments/(?P<volume>[^/]+)")
    def detach_volume(self, req):
        """nova/api/openstack/compute/volume_attachments.py delete: 404 for a volume the server has not, 400
        for its root volume; Cinder's begin_detaching needs "in-use" (cinder/volume/api.py: "detaching"),
        the host detaches, Cinder's attachment_delete leaves it "available".  A shelved-offloaded server's
        volume is cleaned up at once (nova/compute/api.py _detach_volume_shelved_offloaded)."""
        server = self._server(req)
        self._attachable(server, "detach_volume")
        volume = self._nova_volume(req.params["volume"])
        if (server["id"], volume["id"]) not in self.devices:
            raise nova_error(404, f"Instance {server['id']} is not attached to volume {volume['id']}")
        if self.devices[(server["id"], volume["id"])] == "/dev/vda":
            raise nova_error(400, "Cannot detach a root device volume")
        offloaded = server["status"] == "SHELVED_OFFLOADED"
        if volume["status"] != "in-use" and not offloaded:
            raise nova_error(
                400,
                "Invalid volume: Invalid input received: Invalid volume: Unable to detach volume. Volume status "
                "must be 'in-use' and attach_status must be 'attached' to detach. (HTTP 400)",
            )
        del self.devices[(server["id"], volume["id"])]
        attached = server["os-extended-volumes:volumes_attached"]
        attached[:] = [v for v in attached if v["id"] != volume["id"]]
        self._record(server["id"], "detach_volume", req)
        if offloaded:
            volume.update(status="available", attachments=[], updated_at=now())
        else:
            volume.update(status="detaching", updated_at=now())
            self._later(volume["id"], self.volume_gets, status="available", attachments=[])
        return 202, None

    # -- Cinder ---------------------------------------------------------------------------------
    def _volume_versions(self) -> dict:  # https://docs.openstack.org/api-ref/block-storage/v3/#api-versions
        return {
            "versions": [
                {
                    "id": "v3.0",
                    "status": "CURRENT",
                    "version": self.max_volume_microversion,
                    "min_version": "3.0",
                    "updated": "2023-08-31T00:00:00Z",
                    "links": [{"rel": "self", "href": f"{self.base}/volume/v3/"}],
                }
            ]
        }

    @route("GET", r"/volume(/v3)?")
    def volume_versions(self, req):
        return 300, self._volume_versions()

    @route("GET", r"/volume/v3/(?P<project>[0-9a-f]{32})")
    def volume_version(self, req):
        return 200, self._volume_versions()

    def _volume_item(self, kind: str, item_id: str) -> dict:
        table = self.volumes if kind == "volumes" else self.snapshots
        name = "Volume" if kind == "volumes" else "Snapshot"
        return self._find(table, item_id, nova_error(404, f"{name} {item_id} could not be found."))

    def _volume_tick(self, table: dict, item: dict) -> dict | None:
        """A snapshot being deleted ("deleting") is gone at the next look."""
        item = self._tick(item)
        if item["status"] == "deleted":
            del table[item["id"]]
            return None
        if self.on_volume_look is not None:
            self.on_volume_look(item)
        return item

    @route("GET", r"/volume/v3/(?P<project>[^/]+)/(?P<kind>volumes|snapshots)(/detail)?")
    def list_volume_resources(self, req):
        table = self.volumes if req.params["kind"] == "volumes" else self.snapshots
        seen = [self._volume_tick(table, i) for i in list(table.values())]
        return 200, {req.params["kind"]: [i for i in seen if i and matches(i, req.query)]}

    @route("GET", r"/volume/v3/(?P<project>[^/]+)/(?P<kind>volumes|snapshots)/(?P<id>[^/]+)")
    def get_volume_resource(self, req):
        kind = req.params["kind"]
        table = self.volumes if kind == "volumes" else self.snapshots
        if not self._volume_tick(table, self._volume_item(kind, req.params["id"])):
            raise nova_error(404, f"{kind[:-1].title()} {req.params['id']} could not be found.")
        return 200, {kind[:-1]: table[req.params["id"]]}

    @route("POST", r"/volume/v3/(?P<project>[^/]+)/(?P<kind>volumes|snapshots)/(?P<id>[^/]+)/metadata")
    def update_volume_metadata(self, req):  # merges, as "Create or update metadata" does
        item = self._volume_item(req.params["kind"], req.params["id"])
        item["metadata"].update(req.body.get("metadata") or {})
        return 200, {"metadata": item["metadata"]}

    @route("POST", r"/volume/v3/(?P<project>[^/]+)/volumes")
    def create_volume(self, req):
        """https://docs.openstack.org/api-ref/block-storage/v3/#create-a-volume: 202 "creating", "available"
        (or "error": no backend could make it) at a later look.  cinder/volume/flows/api/create_volume.py
        ExtractVolumeRequestTask first: an unknown type is 404 (VolumeTypeNotFoundByName), a zone Cinder
        lacks 400 (InvalidAvailabilityZone; allow_availability_zone_fallback defaults to False); then
        QuotaReserveTask: gigabytes, then volumes (cinder/quota_utils.py process_reserve_over_quota)."""
        spec = req.body["volume"]
        source = self._source_snapshot(spec.get("snapshot_id"))
        size = spec.get("size")
        if size is None and source is not None:  # cinder/api/v3/volumes.py create: the snapshot's volume_size
            size = source["size"]
        if not isinstance(size, int) or size < 1:  # cinder/api/schemas/volumes.py: an integer of 1 or more
            raise nova_error(400, f"Invalid input for field/attribute size. Value: {size}.")
        origin = self.volumes[source["volume_id"]] if source else None  # a snapshot lives inside its volume
        # cinder/volume/flows/api/create_volume.py _get_volume_type: without one, the snapshot's volume's type
        kind = spec.get("volume_type") or (origin["volume_type"] if origin else self.volume_types[0])
        if kind not in self.volume_types:
            raise nova_error(404, f"Volume type with name {kind} could not be found.")
        if source is not None and size < source["size"]:  # create_volume.py _extract_size, validate_snap_size
            raise nova_error(
                400,
                f"Invalid input received: Volume size '{size}'GB cannot be smaller than the snapshot size "
                f"{source['size']}GB. They must be >= original snapshot size.",
            )
        # create_volume.py _extract_availability_zones: without one, the snapshot's volume's zone
        zone = spec.get("availability_zone") or (origin["availability_zone"] if origin else self.volume_zones[0])
        if zone not in self.volume_zones:
            raise nova_error(400, f"Availability zone '{zone}' is invalid.")
        if origin and self.cloned_volume_same_az and zone != origin["availability_zone"]:
            raise nova_error(
                400, "Invalid input received: Volume must be in the same availability zone as the snapshot"
            )
        used = self.volume_usage()
        if used["gigabytes"] + size > self.quota["gigabytes"]:
            raise over_limit(
                f"Requested volume or snapshot exceeds allowed gigabytes quota. Requested {size}G, quota is "
                f"{self.quota['gigabytes']}G and {used['gigabytes']}G has been consumed."
            )
        if used["volumes"] + 1 > self.quota["volumes"]:
            raise over_limit(
                f"Maximum number of volumes allowed ({self.quota['volumes']}) exceeded for quota 'volumes'."
            )
        volume = {
            "id": new_id(),
            "name": spec.get("name") or "",
            "description": spec.get("description") or "",
            "status": "creating",
            "size": size,
            "bootable": "false",
            "attachments": [],
            "metadata": dict(spec.get("metadata") or {}),
            "availability_zone": zone,
            "snapshot_id": source["id"] if source else None,
            "source_volid": None,
            "volume_type": kind,
            "multiattach": False,
            "encrypted": False,
            "created_at": now(),
            "updated_at": now(),
            "user_id": self.user_id,
            "os-vol-tenant-attr:tenant_id": self.project_id,
        }
        self.volumes[volume["id"]] = volume
        self._later(volume["id"], self.volume_gets, status="error" if self.fail_next_volume else "available")
        self.fail_next_volume = False
        return 202, {"volume": volume}

    def _source_snapshot(self, snapshot_id: str | None) -> dict | None:
        """The snapshot a volume is made from: cinder/api/v3/volumes.py create looks it up (404
        SnapshotNotFound), then create_volume.py _extract_snapshot takes an available one only (400
        InvalidSnapshot, SNAPSHOT_PROCEED_STATUS)."""
        if snapshot_id is None:
            return None
        snapshot = self._volume_item("snapshots", snapshot_id)
        if snapshot["status"] != "available":
            raise nova_error(400, "Invalid snapshot: Originating snapshot status must be one of 'available' values")
        return snapshot

    def _volume_microversion(self, headers: dict) -> tuple[int, ...]:
        """The microversion a Cinder request asks for ("OpenStack-API-Version: volume 3.65"): 3.0 without one."""
        value = headers.get("OpenStack-API-Version", "volume 3.0").split()[-1]
        return tuple(int(part) for part in (self.max_volume_microversion if value == "latest" else value).split("."))

    @route("POST", r"/volume/v3/(?P<project>[^/]+)/snapshots")
    def create_snapshot(self, req):
        """cinder/api/v3/snapshots.py create: `force` a boolean (cinder/api/schemas/snapshots.py); from
        microversion 3.66 (SNAPSHOT_IN_USE) force=false is a 400 and an in-use volume needs no force.  Then
        cinder/volume/api.py create_snapshot_in_db: a volume in error refused, the status available (or in-use
        with force or from 3.66), then the quota: snapshots, and gigabytes the volume's size unless
        no_snapshot_gb_quota (cinder/quota_utils.py process_reserve_over_quota: SnapshotLimitExceeded,
        VolumeSizeExceedsAvailableQuota, both 413).  202 "creating", "available" (or "error") at a later look."""
        spec = req.body["snapshot"]
        force = spec.get("force")
        if force is not None and str(force).lower() not in BOOLEANS:
            raise nova_error(400, f"Invalid input for field/attribute force. Value: {force}.")
        volume = self._volume_item("volumes", spec["volume_id"])
        forced = force is not None and str(force).lower() in BOOLEANS[: BOOLEANS.index("false")]
        in_use_allowed = self._volume_microversion(req.headers) >= (3, 66)
        if in_use_allowed and force is not None and not forced:
            raise nova_error(
                400,
                "Since microversion 3.66 the 'force' flag is invalid for this request.  For backward "
                "compatability, however, when the 'force' flag is passed with a value evaluating to True, it is "
                "silently ignored.",
            )
        if volume["status"] == "error":
            raise nova_error(400, "Invalid volume: The snapshot cannot be created when the volume is in error status.")
        valid = ("available", "in-use") if forced or in_use_allowed else ("available",)
        if volume["status"] not in valid:
            raise nova_error(
                400,
                f"Invalid volume: Volume {volume['id']} status must be {', '.join(valid)}, but current status is: "
                f"{volume['status']}.",
            )
        if len(self.snapshots) + 1 > self.quota["snapshots"]:
            raise over_limit(f"Maximum number of snapshots allowed ({self.quota['snapshots']}) exceeded")
        used = self.volume_usage()["gigabytes"]
        if not self.no_snapshot_gb_quota and used + volume["size"] > self.quota["gigabytes"]:
            raise over_limit(
                f"Requested volume or snapshot exceeds allowed gigabytes quota. Requested {volume['size']}G, quota "
                f"is {self.quota['gigabytes']}G and {used}G has been consumed."
            )
        snapshot = {
            "id": new_id(),
            "name": spec.get("name") or "",
            "description": spec.get("description"),
            "volume_id": volume["id"],
            "size": volume["size"],
            "status": "creating",
            "metadata": dict(spec.get("metadata") or {}),
            "created_at": now(precise=True),  # cinder/api/views/snapshots.py: the datetime, as isoformat
            "updated_at": None,
            "os-extended-snapshot-attributes:progress": "0%",
            "os-extended-snapshot-attributes:project_id": self.project_id,
        }
        self.snapshots[snapshot["id"]] = snapshot
        failed = self.fail_next_volume_snapshot
        self.fail_next_volume_snapshot = False
        done = (
            {"status": "error"}
            if failed
            else {"status": "available", "os-extended-snapshot-attributes:progress": "100%"}
        )
        self._later(snapshot["id"], self.volume_gets, **done)
        return 202, {"snapshot": snapshot}

    @route("POST", r"/volume/v3/(?P<project>[^/]+)/volumes/(?P<id>[^/]+)/action")
    def volume_action(self, req):
        """os-extend (cinder/api/contrib/volume_actions.py _extend): an in-use volume from microversion 3.42
        (VOLUME_EXTEND_INUSE), else an available one; cinder/volume/api.py _extend refuses a size not larger
        (InvalidInput, 400), another status (InvalidVolume, 400) and gigabytes beyond the quota (413); then
        "extending", and at a later look the new size and the status it had (cinder/volume/manager.py
        extend_volume_completion), "error_extending" where the driver failed, or, where no backend grows an
        attached volume, the status and size it had (cinder/scheduler/manager.py extend_volume: NoValidBackend)."""
        volume = self._volume_item("volumes", req.params["id"])
        if set(req.body) != {"os-extend"}:
            raise nova_error(400, f"fake: no volume action {sorted(req.body)}")
        new_size = req.body["os-extend"].get("new_size")
        if not re.fullmatch(r"[0-9]+", str(new_size)) or int(new_size) < 1:  # parameter_types.volume_size
            raise nova_error(400, f"Invalid input for field/attribute new_size. Value: {new_size}.")
        new_size = int(new_size)
        attached = self._volume_microversion(req.headers) >= (3, 42) and volume["status"] == "in-use"
        if new_size <= volume["size"]:
            raise nova_error(
                400,
                f"Invalid input received: New size for extend must be greater than current size. (current: "
                f"{volume['size']}, extended: {new_size}).",
            )
        expected = "in-use" if attached else "available"
        if volume["status"] != expected:
            raise nova_error(
                400,
                f"Invalid volume: Volume {volume['id']} status must be '{{'status': '{expected}'}}' to extend, "
                f"currently {volume['status']}.",
            )
        used, increase = self.volume_usage()["gigabytes"], new_size - volume["size"]
        if used + increase > self.quota["gigabytes"]:
            raise over_limit(
                f"Requested volume or snapshot exceeds allowed gigabytes quota. Requested {increase}G, quota is "
                f"{self.quota['gigabytes']}G and {used}G has been consumed."
            )
        volume.update(status="extending", updated_at=now())
        if self.fail_next_extend:
            self._later(volume["id"], self.volume_gets, status="error_extending")
        elif attached and not self.online_extend_support:
            self._later(volume["id"], self.volume_gets, status=expected)
        else:
            self._later(volume["id"], self.volume_gets, status=expected, size=new_size)
        self.fail_next_extend = False
        return 202, None

    @route("DELETE", r"/volume/v3/(?P<project>[^/]+)/volumes/(?P<id>[^/]+)")
    def delete_volume(self, req):
        volume = self._volume_item("volumes", req.params["id"])
        if volume["status"] not in DELETABLE or self._snapshots_of(volume["id"]):
            # cinder/volume/api.py API.delete (without cascade), answered as 400 InvalidVolume
            raise nova_error(
                400,
                "Invalid volume: Volume status must be available or error or error_restoring or "
                "error_extending or error_managing and must not be migrating, attached, belong to "
                "a group, have snapshots, awaiting a transfer, or be disassociated from snapshots "
                "after volume transfer.",
            )
        del self.volumes[volume["id"]]
        return 202, None

    @route("DELETE", r"/volume/v3/(?P<project>[^/]+)/snapshots/(?P<id>[^/]+)")
    def delete_snapshot(self, req):
        snapshot = self._volume_item("snapshots", req.params["id"])
        if snapshot["status"] not in ("available", "error"):  # cinder/volume/api.py API.delete_snapshot
            raise nova_error(400, "Invalid snapshot: Volume Snapshot status must be available or error.")
        snapshot["status"] = "deleting"  # asynchronous: 202, then gone
        clones = [v for v in self.volumes.values() if v["snapshot_id"] == snapshot["id"]]
        if clones and self.snapshots_busy_with_clones:
            # cinder/volume/manager.py delete_snapshot: the driver's SnapshotIsBusy puts it back to available (and
            # leaves a user message); the API had answered 202 all the same
            self._later(snapshot["id"], status="available")
        else:
            self._later(snapshot["id"], status="deleted")
        return 202, None

    @route("GET", r"/volume/v3/(?P<project>[^/]+)/limits")
    def volume_limits(self, req):  # https://docs.openstack.org/api-ref/block-storage/v3/#limits-limits
        return 200, {
            "limits": {
                "rate": [],
                "absolute": {
                    "maxTotalVolumes": self.quota["volumes"],
                    "totalVolumesUsed": self.volume_usage()["volumes"],
                    "maxTotalVolumeGigabytes": self.quota["gigabytes"],
                    "totalGigabytesUsed": self.volume_usage()["gigabytes"],
                    "maxTotalSnapshots": self.quota["snapshots"],
                    "totalSnapshotsUsed": len(self.snapshots),
                    "maxTotalBackups": 10,
                    "totalBackupsUsed": 0,
                    "maxTotalBackupGigabytes": 1000,
                    "totalBackupGigabytesUsed": 0,
                },
            }
        }

    # -- Neutron ----------------------------------------------------------------------------------
    @route("GET", r"/network")
    def network_versions(self, req):
        return 200, {
            "versions": [
                {"id": "v2.0", "status": "CURRENT", "links": [{"rel": "self", "href": f"{self.base}/network/v2.0/"}]}
            ]
        }

    @route("GET", r"/network/v2\.0/(?P<kind>networks|subnets|ports|security-groups|security-group-rules|floatingips)")
    def list_network_resources(self, req):
        kind = req.params["kind"]
        return 200, {self._plural(kind): [self._public(i) for i in self._table(kind).values() if matches(i, req.query)]}

    @route(
        "GET",
        r"/network/v2\.0/(?P<kind>networks|subnets|ports|security-groups|security-group-rules|floatingips)"
        r"/(?P<id>[^/]+)",
    )
    def get_network_resource(self, req):
        return 200, {self._singular(req.params["kind"]): self._public(self._network_item(**req.params))}

    @route("POST", r"/network/v2\.0/security-groups")
    def create_security_group(self, req):
        spec = req.body["security_group"]
        return 201, {"security_group": self._security_group(spec["name"], spec.get("description", ""))}

    @route("POST", r"/network/v2\.0/security-group-rules")
    def create_security_group_rule(self, req):
        spec = req.body["security_group_rule"]
        self._network_item("security-groups", spec.get("security_group_id", ""))
        # neutron/extensions/securitygroup.py SecurityGroupMultipleRemoteEntites (400, raised by
        # neutron/db/securitygroups_db.py _validate_security_group_rule): one source per rule.
        if sum(bool(spec.get(k)) for k in ("remote_ip_prefix", "remote_group_id", "remote_address_group_id")) > 1:
            raise neutron_error(
                400,
                "SecurityGroupMultipleRemoteEntites",
                "Only one of remote_ip_prefix or remote_group_id or remote_address_group_id may be provided.",
            )
        # neutron/db/securitygroups_db.py _validate_security_group_rule: the remote group must exist (404).
        if spec.get("remote_group_id"):
            self._network_item("security-groups", spec["remote_group_id"])
        # neutron/db/securitygroups_db.py _check_for_duplicate_rules: the same rule twice is a 409.
        fields = (
            "direction",
            "ethertype",
            "protocol",
            "port_range_min",
            "port_range_max",
            "remote_ip_prefix",
            "remote_group_id",
        )
        wanted = {**{k: None for k in fields}, "ethertype": "IPv4", **{k: spec[k] for k in fields if k in spec}}
        for rule in self.security_groups[spec["security_group_id"]]["security_group_rules"]:
            if all(rule[k] == wanted[k] for k in fields):
                raise neutron_error(
                    409, "SecurityGroupRuleExists", f"Security group rule already exists. Rule id is {rule['id']}."
                )
        return 201, {"security_group_rule": self._rule(spec)}

    @route("POST", r"/network/v2\.0/floatingips")
    def create_floating_ip(self, req):
        spec = req.body["floatingip"]
        net_id = spec.get("floating_network_id", "")
        network = self._network_item("networks", net_id)
        if self.floating_ips_exhausted:
            raise neutron_error(
                409, "IpAddressGenerationFailure", f"No more IP addresses available on network {net_id}."
            )
        if not network["router:external"]:
            raise neutron_error(
                400, "BadRequest", f"Bad floatingip request: Network {net_id} is not a valid external network."
            )
        fip = {
            "id": new_id(),
            "floating_ip_address": self._address(net_id)[1],
            "floating_network_id": net_id,
            "port_id": None,
            "fixed_ip_address": None,
            "router_id": None,
            "status": "DOWN",
            "description": spec.get("description", ""),
            "tags": [],
            "project_id": self.project_id,
            "tenant_id": self.project_id,
            "created_at": now(),
            "updated_at": now(),
        }
        self.floating_ips[fip["id"]] = fip
        return 201, {"floatingip": self._update_floating_ip(fip, spec)}

    @route("PUT", r"/network/v2\.0/floatingips/(?P<id>[^/]+)")
    def update_floating_ip(self, req):
        fip = self._network_item("floatingips", req.params["id"])
        return 200, {"floatingip": self._update_floating_ip(fip, req.body["floatingip"])}

    def _update_floating_ip(self, fip: dict, spec: dict) -> dict:
        fip["description"] = spec.get("description", fip["description"])
        if "port_id" in spec:
            port = spec["port_id"] and self._network_item("ports", spec["port_id"])
            fixed = port and self._fip_fixed_address(port)
            fip.update(
                port_id=port and port["id"],
                fixed_ip_address=fixed,
                status="ACTIVE" if port else "DOWN",
                updated_at=now(),
            )
        return fip

    @staticmethod
    def _fip_fixed_address(port: dict) -> str:
        """The port's one IPv4 fixed address a floating IP maps to (neutron/db/l3_db.py
        _internal_fip_assoc_data: none or several IPv4 addresses is a 400 without fixed_ip_address)."""
        ipv4 = [ip["ip_address"] for ip in port["fixed_ips"] if ":" not in ip["ip_address"]]
        if len(ipv4) != 1:
            raise neutron_error(
                400, "BadRequest", f"Bad floatingip request: Port {port['id']} has no or several fixed IPv4 addresses."
            )
        return ipv4[0]

    @route("GET", r"/network/v2\.0/quotas/(?P<project>[^/]+)/details")
    def network_quota_details(self, req):
        # https://docs.openstack.org/api-ref/network/v2/#show-quota-details-for-a-project
        return 200, {
            "quota": {"floatingip": {"limit": self.quota["floatingip"], "reserved": 0, "used": len(self.floating_ips)}}
        }

    @route("DELETE", r"/network/v2\.0/(?P<kind>security-groups|security-group-rules|floatingips)/(?P<id>[^/]+)")
    def delete_network_resource(self, req):
        item = self._network_item(**req.params)
        if req.params["kind"] == "security-groups" and any(
            item["id"] in p["security_groups"] for p in self.ports.values()
        ):
            # https://docs.openstack.org/api-ref/network/v2/#delete-security-group: 409 while a port uses it
            raise neutron_error(409, "SecurityGroupInUse", f"Security Group {item['id']} in use.")
        del self._table(req.params["kind"])[item["id"]]
        if req.params["kind"] == "security-group-rules":
            self.security_groups[item["security_group_id"]]["security_group_rules"].remove(item)
        return 204, None

    def _table(self, kind: str) -> dict:
        return getattr(self, {"floatingips": "floating_ips"}.get(kind, kind.replace("-", "_")))

    def _plural(self, kind: str) -> str:  # the JSON key of a list: "security-groups" -> "security_groups"
        return kind.replace("-", "_")

    def _singular(self, kind: str) -> str:
        return self._plural(kind)[:-1]

    def _network_item(self, kind: str, id: str) -> dict:
        name = {"floatingips": "Floating IP"}.get(kind, self._singular(kind).replace("_", " ").title())
        return self._find(
            self._table(kind),
            id,
            neutron_error(404, name.replace(" ", "") + "NotFound", f"{name} {id} could not be found."),
        )

    def _public(self, item: dict) -> dict:
        return {k: v for k, v in item.items() if not k.startswith("_")}

    # -- Glance -------------------------------------------------------------------------------------
    @route("GET", r"/image")
    def image_versions(self, req):
        return 200, {
            "versions": [
                {"id": "v2.15", "status": "CURRENT", "links": [{"rel": "self", "href": f"{self.base}/image/v2/"}]}
            ]
        }

    @route("GET", r"/image/v2/images")
    def list_images(self, req):
        images = [self._tick(i) for i in list(self.images.values()) if matches(i, req.query)]
        return 200, {"images": images, "first": "/v2/images", "schema": "/v2/schemas/images"}

    @route("GET", r"/image/v2/images/(?P<id>[^/]+)")
    def get_image(self, req):
        image_id = req.params["id"]
        image = self._find(self.images, image_id, glance_error(404, f"No image found with ID {image_id}"))
        return 200, self._tick(image)

    @route("DELETE", r"/image/v2/images/(?P<id>[^/]+)")
    def delete_image(self, req):
        self.get_image(req)
        del self.images[req.params["id"]]
        self.pending.pop(req.params["id"], None)
        return 204, None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go in two writes: no 40 ms delayed-ACK stall per request

    def log_message(self, *args):  # nothing to stdout/stderr
        pass

    def _handle(self):
        fake: FakeOpenStack = self.server.fake
        url = urlsplit(self.path)
        path = unquote(url.path).rstrip("/") or "/"
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        request_id = "req-" + new_id()
        with fake.lock:
            fake.requests.append((self.command, self.path))
            fake.bodies.append(raw)
            status, body, headers = self._dispatch(fake, path, url.query, raw, request_id)
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        if data:
            self.send_header("Content-Type", "application/json")
        if path.startswith("/compute/v2.1/"):
            # every Nova answer names its request (oslo_middleware request_id): the id its action log shows
            self.send_header("x-openstack-request-id", request_id)
            if "OpenStack-API-Version" in self.headers:
                self.send_header("OpenStack-API-Version", self.headers["OpenStack-API-Version"])
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _dispatch(self, fake, path, query, raw, request_id):
        try:
            if fake.unavailable and path.startswith(fake.unavailable):
                # A service that cannot answer: Nova's fault body for 503 (nova/api/openstack/wsgi.py Fault,
                # _fault_names 503 "serviceUnavailable"; the message is webob.exc.HTTPServiceUnavailable's),
                # as the api-guide's faults page lists it (https://docs.openstack.org/api-guide/compute/faults.html).
                # openstacksdk raises it as HttpException at the first next() of a list's generator
                # (openstack/resource.py Resource.list: exceptions.raise_from_response inside the generator).
                raise ApiError(
                    503,
                    {
                        "serviceUnavailable": {
                            "code": 503,
                            "message": "The server is currently unavailable. Please try again at a later time.",
                        }
                    },
                )
            for method, pattern, handler in ROUTES:
                found = pattern.match(path)
                if found and method == self.command:
                    if not OPEN.fullmatch(path) and self.headers.get("X-Auth-Token") not in fake.tokens:
                        raise ApiError(401, {"error": {"code": 401, "message": "Authentication required"}})
                    body = json.loads(raw) if raw else {}
                    request = Request(found.groupdict(), dict(parse_qsl(query)), body, dict(self.headers), request_id)
                    answer = handler(fake, request)
                    return (*answer, {}) if len(answer) == 2 else answer
            raise ApiError(404, {"error": {"code": 404, "message": f"fake: no route for {self.command} {path}"}})
        except ApiError as e:
            return e.status, e.body, {}
        except Exception as e:  # a bug of the fake, or a request it does not understand: a 500 the test sees
            return 500, {"error": {"code": 500, "message": f"fake: {type(e).__name__}: {e}"}}, {}

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle
