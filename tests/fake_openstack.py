"""A small, stateful fake OpenStack cloud for tests: one HTTP server on 127.0.0.1, state in memory.

What the real openstacksdk (with keystoneauth1) sends for the calls a VM tool makes, answered as
the API references describe:

- Keystone v3 (https://docs.openstack.org/api-ref/identity/v3/): version document at /identity
  and /identity/v3, POST /v3/auth/tokens (password) -> 201, X-Subject-Token, token with catalog.
- Nova v2.1 (https://docs.openstack.org/api-ref/compute/): version documents with microversions
  2.1..2.79 (responses use the 2.47+ embedded flavor), flavors, os-keypairs, servers and the
  server actions os-stop, os-start, shelve, unshelve, resize, confirmResize, revertResize and
  createImage (image id in the body from 2.45, in the Location header before).
- Neutron v2.0 (https://docs.openstack.org/api-ref/network/v2/): networks, subnets, ports,
  security-groups, security-group-rules, floatingips.
- Glance v2 (https://docs.openstack.org/api-ref/image/v2/): images list/get/delete; custom
  properties are top-level keys of an image.

No Cinder: with block_device_mapping_v2 Nova makes the boot volume itself (kept in `.volumes`).
State is plain dicts (`.servers`, `.images`, `.flavors`, `.keypairs`, `.networks`, `.subnets`,
`.ports`, `.security_groups`, `.floating_ips`, `.volumes`); knobs inject failures:
`fail_next_resize`, `quota_exceeded["cores"|"instances"|"ram"]`, `floating_ips_exhausted`;
`max_microversion` is what Nova advertises; `.requests` logs (method, path) as received.
openstacksdk 4.x fetches only GET /identity/v3, /compute/v2.1 and /image as version documents.
Transitions (BUILD->ACTIVE, stop, shelve, resize, ...) complete at the next GET of the resource, a
new snapshot image shows "queued" once and then "active": waiters poll without anyone sleeping.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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


def matches(item: dict, query: dict) -> bool:
    """List filters: query keys that are fields of the item compare as strings."""
    return all(str(item[k]).lower() == v.lower() if isinstance(item[k], bool) else str(item[k]) == v
               for k, v in query.items() if k in item)


# -- what each server status means in the extended attributes -------------------------
VM_STATE = {"BUILD": "building", "ACTIVE": "active", "SHUTOFF": "stopped", "SHELVED_OFFLOADED": "shelved_offloaded",
            "RESIZE": "active", "VERIFY_RESIZE": "resized", "REVERT_RESIZE": "resized", "ERROR": "error"}
POWER_STATE = {"ACTIVE": 1, "RESIZE": 1, "VERIFY_RESIZE": 1, "REVERT_RESIZE": 1, "SHUTOFF": 4}
# action -> (statuses it is allowed from, status and task_state meanwhile, status after the next GET)
ACTIONS = {
    "os-stop": (("ACTIVE", "ERROR"), (None, "powering-off"), "SHUTOFF"),
    "os-start": (("SHUTOFF",), (None, "powering-on"), "ACTIVE"),
    "shelve": (("ACTIVE", "SHUTOFF"), (None, "shelving"), "SHELVED_OFFLOADED"),
    "unshelve": (("SHELVED_OFFLOADED",), (None, "unshelving"), "ACTIVE"),
    "resize": (("ACTIVE", "SHUTOFF"), ("RESIZE", "resize_prep"), "VERIFY_RESIZE"),
    "confirmResize": (("VERIFY_RESIZE",), (None, None), None),
    "revertResize": (("VERIFY_RESIZE",), ("REVERT_RESIZE", "resize_reverting"), None),
    "createImage": (("ACTIVE", "SHUTOFF"), (None, "image_snapshot"), None),
}


class FakeOpenStack:
    def __init__(self):
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str]] = []  # (method, path) as received, for debugging tests
        self.tokens: set[str] = set()
        self.max_microversion = "2.79"  # set before the client's first compute call (discovery is cached)
        self.fail_next_resize = False
        self.quota_exceeded = {"cores": False, "instances": False, "ram": False}
        self.floating_ips_exhausted = False
        self.pending: dict[str, list] = {}  # id -> [GETs still to see the old state, updates]
        self.resizing: dict[str, tuple] = {}  # server id -> (old flavor, status before the resize)
        self.project_id = uuid.uuid4().hex
        self.user_id = uuid.uuid4().hex
        self.flavors = {fid: {"id": fid, "name": name, "vcpus": vcpus, "ram": ram, "disk": disk, "swap": 0,
                              "OS-FLV-EXT-DATA:ephemeral": 0, "OS-FLV-DISABLED:disabled": False, "rxtx_factor": 1.0,
                              "os-flavor-access:is_public": True, "description": None, "extra_specs": {},
                              "links": []}
                        for fid, name, vcpus, ram, disk in [("2", "m1.small", 1, 2048, 20),
                                                            ("3", "m1.medium", 2, 4096, 40),
                                                            ("4", "m1.large", 4, 8192, 80)]}
        self.keypairs: dict[str, dict] = {}
        self.servers: dict[str, dict] = {}
        self.volumes: dict[str, dict] = {}
        self.images: dict[str, dict] = {}
        self._image("Ubuntu 22.04", status="active", visibility="public", os_distro="ubuntu", os_version="22.04")
        self.networks: dict[str, dict] = {}
        self.subnets: dict[str, dict] = {}
        self._network("lab-net", "10.0.0", external=False)
        self._network("public", "203.0.113", external=True)
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
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def auth_url(self) -> str:
        return f"{self.base}/identity/v3"

    def clouds_yaml(self, cloud_name: str = "cades", password: str = PASSWORD) -> str:
        """A clouds.yaml for OS_CLIENT_CONFIG_FILE; another password makes Keystone answer 401."""
        return (f"clouds:\n  {cloud_name}:\n    auth_type: password\n    auth:\n      auth_url: {self.auth_url}\n"
                f"      username: {USERNAME}\n      password: {password}\n      project_name: {PROJECT}\n"
                f"      user_domain_name: Default\n      project_domain_name: Default\n"
                f"    region_name: RegionOne\n    interface: public\n    identity_api_version: 3\n")

    # -- helpers for state ------------------------------------------------------------------
    def _image(self, name, status="queued", **properties) -> dict:
        image = {"id": new_id(), "name": name, "status": status, "visibility": properties.pop("visibility", "private"),
                 "container_format": "bare", "disk_format": "qcow2", "size": 0, "min_disk": 0, "min_ram": 0,
                 "protected": False, "os_hidden": False, "tags": [], "owner": self.project_id, "checksum": None,
                 "created_at": now(), "updated_at": now(), "schema": "/v2/schemas/image", **properties}
        image.update(self=f"/v2/images/{image['id']}", file=f"/v2/images/{image['id']}/file")
        self.images[image["id"]] = image
        return image

    def _network(self, name, prefix, external) -> None:
        net, sub = new_id(), new_id()
        self.networks[net] = {"id": net, "name": name, "status": "ACTIVE", "admin_state_up": True, "shared": False,
                              "router:external": external, "subnets": [sub], "mtu": 1500, "description": "",
                              "project_id": self.project_id, "tenant_id": self.project_id}
        self.subnets[sub] = {"id": sub, "name": f"{name}-subnet", "network_id": net, "ip_version": 4,
                             "cidr": f"{prefix}.0/24", "gateway_ip": f"{prefix}.1", "enable_dhcp": True,
                             "project_id": self.project_id, "tenant_id": self.project_id, "_next": 10}

    def _address(self, network_id) -> tuple[str, str]:
        subnet = self.subnets[self.networks[network_id]["subnets"][0]]
        subnet["_next"] += 1
        return subnet["id"], subnet["cidr"].rsplit(".", 1)[0] + f".{subnet['_next'] - 1}"

    def _security_group(self, name, description) -> dict:
        group = {"id": new_id(), "name": name, "description": description, "security_group_rules": [],
                 "project_id": self.project_id, "tenant_id": self.project_id, "stateful": True,
                 "created_at": now(), "updated_at": now()}
        self.security_groups[group["id"]] = group
        for ethertype in ("IPv4", "IPv6"):
            self._rule({"security_group_id": group["id"], "direction": "egress", "ethertype": ethertype})
        return group

    def _rule(self, spec: dict) -> dict:
        rule = {"id": new_id(), "protocol": None, "port_range_min": None, "port_range_max": None,
                "remote_ip_prefix": None, "remote_group_id": None, "description": "", "ethertype": "IPv4",
                "project_id": self.project_id, "tenant_id": self.project_id, **spec}
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
        server.update({"status": status, "OS-EXT-STS:task_state": task, "updated": now(),
                       "OS-EXT-STS:vm_state": VM_STATE.get(status, status.lower()),
                       "OS-EXT-STS:power_state": POWER_STATE.get(status, 0)})

    def _server_view(self, server: dict, req=None) -> dict:
        """The server with its current addresses; the flavor as {"id", "links"} before microversion 2.47."""
        addresses = {}
        for port in self.ports.values():
            if port["device_id"] != server["id"]:
                continue
            entries = addresses.setdefault(self.networks[port["network_id"]]["name"], [])
            mac = {"version": 4, "OS-EXT-IPS-MAC:mac_addr": port["mac_address"]}
            for fixed in port["fixed_ips"]:
                entries.append({"addr": fixed["ip_address"], "OS-EXT-IPS:type": "fixed", **mac})
            for fip in self.floating_ips.values():
                if fip["port_id"] == port["id"]:
                    entries.append({"addr": fip["floating_ip_address"], "OS-EXT-IPS:type": "floating", **mac})
        server["addresses"] = addresses
        if req and self._microversion(req.headers) < (2, 47):
            flavor_id = next(f["id"] for f in self.flavors.values() if f["name"] == server["flavor"]["original_name"])
            return {**server, "flavor": {"id": flavor_id, "links": []}}
        return server

    def _find(self, table: dict, key: str, error) -> dict:
        if key not in table:
            raise error
        return table[key]

    # -- Keystone -----------------------------------------------------------------------------
    def _identity_version(self) -> dict:
        return {"id": "v3.14", "status": "stable", "updated": "2020-04-07T00:00:00Z",
                "links": [{"rel": "self", "href": f"{self.base}/identity/v3/"}],
                "media-types": [{"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}]}

    @route("GET", r"/identity")
    def identity_versions(self, req):
        return 300, {"versions": {"values": [self._identity_version()]}}

    @route("GET", r"/identity/v3")
    def identity_version(self, req):
        return 200, {"version": self._identity_version()}

    @route("POST", r"/identity/v3/auth/tokens")
    def issue_token(self, req):
        user = req.body.get("auth", {}).get("identity", {}).get("password", {}).get("user", {})
        if user.get("name") != USERNAME or user.get("password") != PASSWORD:
            raise ApiError(401, {"error": {"code": 401, "title": "Unauthorized",
                                           "message": "The request you have made requires authentication."}})
        token = uuid.uuid4().hex
        self.tokens.add(token)
        domain = {"id": "default", "name": "Default"}
        catalog = [{"type": kind, "name": name, "id": uuid.uuid4().hex,
                    "endpoints": [{"id": uuid.uuid4().hex, "interface": "public", "region": "RegionOne",
                                   "region_id": "RegionOne", "url": f"{self.base}{path}"}]}
                   for kind, name, path in [("identity", "keystone", "/identity"), ("compute", "nova", "/compute/v2.1"),
                                            ("network", "neutron", "/network"), ("image", "glance", "/image")]]
        body = {"token": {"methods": ["password"], "expires_at": "2099-01-01T00:00:00.000000Z", "issued_at": now(),
                          "user": {"id": self.user_id, "name": USERNAME, "domain": domain, "password_expires_at": None},
                          "project": {"id": self.project_id, "name": PROJECT, "domain": domain},
                          "roles": [{"id": uuid.uuid4().hex, "name": "member"}], "catalog": catalog,
                          "is_domain": False, "audit_ids": [uuid.uuid4().hex[:22]]}}
        return 201, body, {"X-Subject-Token": token}

    # -- Nova -----------------------------------------------------------------------------------
    def _compute_version(self) -> dict:
        return {"id": "v2.1", "status": "CURRENT", "version": self.max_microversion, "min_version": "2.1",
                "updated": "2013-07-23T11:33:21Z", "links": [{"rel": "self", "href": f"{self.base}/compute/v2.1/"}]}

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
        return 200, {"flavor": self._find(self.flavors, req.params["id"],
                                          nova_error(404, f"Flavor {req.params['id']} could not be found."))}

    @route("GET", r"/compute/v2\.1/os-keypairs")
    def list_keypairs(self, req):
        return 200, {"keypairs": [{"keypair": k} for k in self.keypairs.values()]}

    @route("POST", r"/compute/v2\.1/os-keypairs")
    def create_keypair(self, req):
        spec = req.body["keypair"]
        if spec["name"] in self.keypairs:
            raise nova_error(409, f"Key pair '{spec['name']}' already exists.")
        if not spec.get("public_key"):
            raise nova_error(400, "fake: keypair generation is not supported; pass public_key")
        self.keypairs[spec["name"]] = {"name": spec["name"], "public_key": spec["public_key"], "type": "ssh",
                                       "fingerprint": "fa:ke:" + uuid.uuid4().hex[:8], "user_id": self.user_id}
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
        flavor = self._find(self.flavors, str(spec.get("flavorRef")),
                            nova_error(400, f"Flavor {spec.get('flavorRef')} could not be found."))
        wanted = {"cores": flavor["vcpus"], "instances": 1, "ram": flavor["ram"]}
        limit = {"cores": 8, "instances": 10, "ram": 51200}
        for resource, exceeded in self.quota_exceeded.items():
            if exceeded:  # nova.exception.TooManyInstances, as the API answers it
                raise nova_error(403, f"Quota exceeded for {resource}: Requested {wanted[resource]}, "
                                      f"but already used {limit[resource]} of {limit[resource]} {resource}")
        devices = spec.get("block_device_mapping_v2") or []
        boot = next((d for d in devices if str(d.get("boot_index")) == "0"), None)
        image_id = boot["uuid"] if boot and boot.get("source_type") == "image" else spec.get("imageRef")
        self._find(self.images, image_id or "", nova_error(400, f"Image {image_id} could not be found."))
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
        volumes = []
        if boot and boot.get("destination_type") == "volume":
            volume = {"id": new_id(), "size": boot.get("volume_size") or flavor["disk"], "image_id": image_id,
                      "server_id": server_id, "delete_on_termination": bool(boot.get("delete_on_termination"))}
            self.volumes[volume["id"]] = volume
            volumes.append({"id": volume["id"], "delete_on_termination": volume["delete_on_termination"]})
        for net in networks:
            self._find(self.networks, net.get("uuid", ""),
                       nova_error(400, f"Network {net.get('uuid')} could not be found."))
            subnet_id, ip = self._address(net["uuid"])
            port_id = new_id()
            self.ports[port_id] = {"id": port_id, "name": "", "network_id": net["uuid"], "device_id": server_id,
                                   "device_owner": "compute:nova", "status": "ACTIVE", "admin_state_up": True,
                                   "mac_address": "fa:16:3e:" + ":".join(uuid.uuid4().hex[i:i + 2] for i in (0, 2, 4)),
                                   "fixed_ips": [{"subnet_id": subnet_id, "ip_address": ip}],
                                   "project_id": self.project_id, "tenant_id": self.project_id}
        server = {"id": server_id, "name": spec["name"], "metadata": dict(spec.get("metadata") or {}),
                  "flavor": self._embedded_flavor(flavor), "key_name": spec.get("key_name"),
                  "image": "" if volumes else {"id": image_id, "links": []},
                  "os-extended-volumes:volumes_attached": volumes, "security_groups": [{"name": n} for n in groups],
                  "user_id": self.user_id, "tenant_id": self.project_id, "created": now(), "hostId": uuid.uuid4().hex,
                  "OS-SRV-USG:launched_at": None, "OS-SRV-USG:terminated_at": None,
                  "OS-EXT-AZ:availability_zone": "nova",
                  "OS-DCF:diskConfig": "MANUAL", "accessIPv4": "", "accessIPv6": "", "config_drive": "", "progress": 0,
                  "locked": False, "description": None, "tags": [], "links": []}
        self._server_status(server, "BUILD", "spawning")
        self.servers[server_id] = self._server_view(server)
        self._later(server_id, status="ACTIVE", **{"OS-SRV-USG:launched_at": now(precise=True)})
        return 202, {"server": {"id": server_id, "links": [], "OS-DCF:diskConfig": "MANUAL",
                                "security_groups": server["security_groups"], "adminPass": uuid.uuid4().hex[:12]}}

    def _microversion(self, headers: dict) -> tuple[int, ...]:
        value = headers.get("OpenStack-API-Version", "compute 2.1").split()[-1]
        return tuple(int(part) for part in (self.max_microversion if value == "latest" else value).split("."))

    def _embedded_flavor(self, flavor: dict) -> dict:  # the microversion 2.47+ form
        return {"original_name": flavor["name"], "vcpus": flavor["vcpus"], "ram": flavor["ram"], "disk": flavor["disk"],
                "ephemeral": 0, "swap": 0, "extra_specs": {}}

    def _server(self, req) -> dict:
        server_id = req.params["id"]
        return self._find(self.servers, server_id, nova_error(404, f"Instance {server_id} could not be found."))

    @route("GET", r"/compute/v2\.1/servers(/detail)?")
    def list_servers(self, req):  # Nova filters no metadata; name is a regular expression
        return 200, {"servers": [self._server_view(self._tick(s), req) for s in list(self.servers.values())
                                 if re.search(req.query.get("name", ""), s["name"])
                                 and matches(s, {k: v for k, v in req.query.items() if k == "status"})]}

    @route("GET", r"/compute/v2\.1/servers/(?P<id>[^/]+)")
    def get_server(self, req):
        return 200, {"server": self._server_view(self._tick(self._server(req)), req)}

    @route("DELETE", r"/compute/v2\.1/servers/(?P<id>[^/]+)")
    def delete_server(self, req):
        server = self.servers.pop(self._server(req)["id"])
        self.pending.pop(server["id"], None)
        for port in [p for p in self.ports.values() if p["device_id"] == server["id"]]:
            del self.ports[port["id"]]
            for fip in self.floating_ips.values():
                if fip["port_id"] == port["id"]:
                    fip.update(port_id=None, fixed_ip_address=None, status="DOWN")
        for volume in server["os-extended-volumes:volumes_attached"]:
            if volume["delete_on_termination"]:
                self.volumes.pop(volume["id"], None)
        return 204, None

    @route("POST", r"/compute/v2\.1/servers/(?P<id>[^/]+)/action")
    def server_action(self, req):
        server = self._server(req)
        (action, args), = req.body.items()
        if action not in ACTIONS:
            raise nova_error(400, f"fake: unsupported action {action}")
        allowed, (status, task), final = ACTIONS[action]
        if server["OS-EXT-STS:task_state"] or server["status"] not in allowed:
            state = (f"task_state {server['OS-EXT-STS:task_state']}" if server["OS-EXT-STS:task_state"]
                     else f"vm_state {server['OS-EXT-STS:vm_state']}")
            raise nova_error(409, f"Cannot '{action}' instance {server['id']} while it is in {state}")
        before = server["status"]
        self._server_status(server, status, task)
        headers, body = {}, None
        if action == "resize":
            flavor = self._find(self.flavors, str(args["flavorRef"]),
                                nova_error(400, f"Flavor {args['flavorRef']} could not be found."))
            self.resizing[server["id"]] = (server["flavor"], before)
            if self.fail_next_resize:
                self.fail_next_resize = False
                final = "ERROR"
                server["fault"] = {"code": 500, "message": "fake: resize failed (fail_next_resize)", "created": now()}
            else:
                server["flavor"] = self._embedded_flavor(flavor)
        elif action in ("confirmResize", "revertResize"):
            old_flavor, final = self.resizing.pop(server["id"])
            if action == "revertResize":
                server["flavor"] = old_flavor
        elif action == "createImage":
            properties = {**(args.get("metadata") or {}), "image_type": "snapshot", "instance_uuid": server["id"],
                          "owner_user_name": USERNAME, "user_id": self.user_id}
            image = self._image(args["name"], **properties)
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

    # -- Neutron ----------------------------------------------------------------------------------
    @route("GET", r"/network")
    def network_versions(self, req):
        return 200, {"versions": [{"id": "v2.0", "status": "CURRENT",
                                   "links": [{"rel": "self", "href": f"{self.base}/network/v2.0/"}]}]}

    @route("GET", r"/network/v2\.0/(?P<kind>networks|subnets|ports|security-groups|security-group-rules|floatingips)")
    def list_network_resources(self, req):
        kind = req.params["kind"]
        return 200, {self._plural(kind): [self._public(i) for i in self._table(kind).values() if matches(i, req.query)]}

    @route("GET", r"/network/v2\.0/(?P<kind>networks|subnets|ports|security-groups|security-group-rules|floatingips)"
                  r"/(?P<id>[^/]+)")
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
        return 201, {"security_group_rule": self._rule(spec)}

    @route("POST", r"/network/v2\.0/floatingips")
    def create_floating_ip(self, req):
        spec = req.body["floatingip"]
        net_id = spec.get("floating_network_id", "")
        network = self._network_item("networks", net_id)
        if self.floating_ips_exhausted:
            raise neutron_error(409, "IpAddressGenerationFailure",
                                f"No more IP addresses available on network {net_id}.")
        if not network["router:external"]:
            raise neutron_error(400, "BadRequest",
                                f"Bad floatingip request: Network {net_id} is not a valid external network.")
        fip = {"id": new_id(), "floating_ip_address": self._address(net_id)[1], "floating_network_id": net_id,
               "port_id": None, "fixed_ip_address": None, "router_id": None, "status": "DOWN",
               "description": spec.get("description", ""), "tags": [], "project_id": self.project_id,
               "tenant_id": self.project_id, "created_at": now(), "updated_at": now()}
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
            fip.update(port_id=port and port["id"], fixed_ip_address=port and port["fixed_ips"][0]["ip_address"],
                       status="ACTIVE" if port else "DOWN", updated_at=now())
        return fip

    @route("DELETE", r"/network/v2\.0/(?P<kind>security-groups|security-group-rules|floatingips)/(?P<id>[^/]+)")
    def delete_network_resource(self, req):
        item = self._network_item(**req.params)
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
        return self._find(self._table(kind), id, neutron_error(
            404, name.replace(" ", "") + "NotFound", f"{name} {id} could not be found."))

    def _public(self, item: dict) -> dict:
        return {k: v for k, v in item.items() if not k.startswith("_")}

    # -- Glance -------------------------------------------------------------------------------------
    @route("GET", r"/image")
    def image_versions(self, req):
        return 200, {"versions": [{"id": "v2.15", "status": "CURRENT",
                                   "links": [{"rel": "self", "href": f"{self.base}/image/v2/"}]}]}

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
        with fake.lock:
            fake.requests.append((self.command, self.path))
            status, body, headers = self._dispatch(fake, path, url.query, raw)
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        if data:
            self.send_header("Content-Type", "application/json")
        if path.startswith("/compute/v2.1/") and "OpenStack-API-Version" in self.headers:
            self.send_header("OpenStack-API-Version", self.headers["OpenStack-API-Version"])
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _dispatch(self, fake, path, query, raw):
        try:
            for method, pattern, handler in ROUTES:
                found = pattern.match(path)
                if found and method == self.command:
                    if not OPEN.fullmatch(path) and self.headers.get("X-Auth-Token") not in fake.tokens:
                        raise ApiError(401, {"error": {"code": 401, "message": "Authentication required"}})
                    body = json.loads(raw) if raw else {}
                    answer = handler(fake, Request(found.groupdict(), dict(parse_qsl(query)), body, dict(self.headers)))
                    return (*answer, {}) if len(answer) == 2 else answer
            raise ApiError(404, {"error": {"code": 404, "message": f"fake: no route for {self.command} {path}"}})
        except ApiError as e:
            return e.status, e.body, {}
        except Exception as e:  # a bug of the fake, or a request it does not understand: a 500 the test sees
            return 500, {"error": {"code": 500, "message": f"fake: {type(e).__name__}: {e}"}}, {}

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle
