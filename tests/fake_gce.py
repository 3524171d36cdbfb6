"""A small, stateful fake of the Google Compute Engine REST API v1 for tests (127.0.0.1, state in memory).

Answers what the real google-cloud-compute client (REST transport) sends, shaped as the reference
pages at https://cloud.google.com/compute/docs/reference/rest/v1 describe:

- instances (insert, get, list, delete, start, stop, setMachineType) -> ``instances`` page; status
  PROVISIONING/STAGING -> RUNNING, STOPPING -> TERMINATED; setMachineType only when TERMINATED
  (else HTTP 400, as GCE refuses it for a running VM). The boot disk (``.disks``) is made from
  ``initializeParams`` and auto-deleted with the instance; an ephemeral natIP is lost on stop and a new
  one is given on start, a static one (a reserved address given as ``natIP``) stays.
- zoneOperations / regionOperations / globalOperations (get, wait) -> ``Operation`` resource: each
  mutating call answers an operation with status RUNNING; the change it makes completes (and the
  operation becomes DONE, with ``error`` when a knob says so) the first time it is fetched or waited.
  No sleeps, so tests are deterministic.
- addresses (regional: insert, get, list, delete) -> ``addresses`` page; ``users`` lists the instance.
- aggregated lists of instances and addresses (``/aggregated/instances``, ``/aggregated/addresses``)
  -> ``instances/aggregatedList`` page: ``items`` maps each scope (``zones/ZONE``, ``regions/REGION``)
  to its list, or to a NO_RESULTS_ON_PAGE ``warning`` when the filter leaves it empty; one page.
- firewalls (global: insert, get, list, delete) -> ``firewalls`` page.
- images (global: insert from sourceDisk, get, list, delete, getFromFamily) -> ``images`` page;
  project ``debian-cloud`` holds a public image of family ``debian-12``. Making an image from a disk
  attached to a RUNNING instance needs ``forceCreate=true`` (else 400 resourceInUseByAnotherResource).
- machineTypes (zonal: get, list) -> ``machineTypes`` page.
- Errors use the JSON error body of https://cloud.google.com/compute/docs/api/handling-errors
  ({"error": {"code", "message", "errors": [{"domain", "reason", "message"}]}}), which
  google.api_core turns into exceptions (NotFound, Conflict, BadRequest, Forbidden, ...).

List ``filter`` (https://cloud.google.com/compute/docs/reference/rest/v1/instances/list): terms
``field = value``, ``field != value``, ``field eq regex``, ``field ne regex``, ``field:*`` (present),
joined by ``AND`` or spaces, each optionally in parentheses; fields are dotted paths such as
``name``, ``status``, ``labels.labvm-profile``; values may be quoted and ``*`` in ``=`` values is a
wildcard. ``OR`` and anything else -> 400 invalid filter. ``maxResults``/``pageToken`` paginate.

Knobs: ``quota_exceeded`` (instances.insert -> 403 quotaExceeded), ``zone_exhausted`` (insert's
operation ends with ZONE_RESOURCE_POOL_EXHAUSTED, HTTP 503 in the operation, no instance left),
``api_disabled`` (every call -> 403 accessNotConfigured). ``.requests`` logs (method, path).
Only project ``proj``, zone ``us-west1-b`` and region ``us-west1`` exist (plus read-only
``debian-cloud`` images); selfLinks use the real https://www.googleapis.com/compute/v1/ prefix.

Client configuration: ``ClientOptions(api_endpoint="http://127.0.0.1:PORT")`` with
``transport="rest"`` keeps the http scheme (the transport only adds https when no scheme is given).
"""

from __future__ import annotations

import fnmatch
import itertools
import json
import random
import re
import threading
import zlib
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, unquote, urlsplit

PROJECT, ZONE, REGION = "proj", "us-west1-b", "us-west1"
API = "https://www.googleapis.com/compute/v1/"
P = "/compute/v1/projects/(?P<project>[^/]+)"
NAME_RE = re.compile(r"[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?$")
MACHINE_TYPES = {  # name: (guestCpus, memoryMb, shared core)
    "e2-micro": (2, 1024, True), "e2-small": (2, 2048, True), "e2-medium": (2, 4096, True),
    "e2-standard-2": (2, 8192, False), "e2-standard-4": (4, 16384, False),
    "e2-standard-8": (8, 32768, False), "e2-highmem-2": (2, 16384, False),
    "n2-standard-2": (2, 8192, False), "n2-standard-4": (4, 16384, False),
    "n2-standard-8": (8, 32768, False), "n1-standard-1": (1, 3840, False),
}
QUOTA_MESSAGE = f"Quota 'CPUS' exceeded. Limit: 8.0 in region {REGION}."
DISABLED_MESSAGE = (f"Compute Engine API has not been used in project {PROJECT} before or it is disabled. "
                    f"Enable it by visiting https://console.developers.google.com/apis/api/compute.googleapis.com/"
                    f"overview?project={PROJECT} then retry.")
EXHAUSTED_MESSAGE = (f"The zone 'projects/{PROJECT}/zones/{ZONE}' does not have enough resources available to "
                     "fulfill the request.  Try a different zone, or try again later.")
ROUTES = []  # (method, compiled path pattern, FakeGce method name)


def route(method: str, pattern: str):
    def register(fn):
        ROUTES.append((method, re.compile(P + pattern + "$"), fn.__name__))
        return fn
    return register


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str, domain: str = "global"):
        super().__init__(message)
        self.code, self.body = code, {"error": {"code": code, "message": message, "errors": [
            {"message": message, "domain": domain, "reason": reason}]}}


def not_found(path: str) -> ApiError:
    return ApiError(404, "notFound", f"The resource '{path}' was not found")


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def new_id() -> str:
    return str(random.randrange(10**18, 2**63))


def tail(url: str) -> str:
    """'https://.../compute/v1/projects/p/zones/z/machineTypes/e2-small' or 'zones/z/...' -> last segment."""
    return url.rstrip("/").rsplit("/", 1)[-1]


def relative(url: str) -> str:
    return re.sub(r"^(https?://[^/]+/compute/v1/|/?compute/v1/)", "", url)


# --- list filters -------------------------------------------------------------------------------
TERM = re.compile(r"""\(?\s*(?P<field>[\w.-]+)\s*(?:(?P<op>!=|=|\beq\b|\bne\b)\s*(?P<value>"[^"]*"|'[^']*'|[^\s()]+)
                      |:\s*\*)\s*\)?\s*(?:AND\s+)?""", re.X)


def parse_filter(text: str):
    terms, pos, text = [], 0, (text or "").strip()
    while pos < len(text):
        m = TERM.match(text, pos)
        if not m or m.end() == pos:
            raise ApiError(400, "invalid", f"Invalid value for field 'filter': '{text}'. Invalid list filter expression.")
        value = m["value"]
        if value and value[0] in "\"'":
            value = value[1:-1]
        terms.append((m["field"], m["op"] or ":*", value))
        pos = m.end()
    return terms


def lookup(resource: dict, field: str):
    value = resource
    for part in field.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def matches(resource: dict, terms) -> bool:
    for field, op, want in terms:
        have = lookup(resource, field)
        text = "" if have is None else str(have).lower() if isinstance(have, bool) else str(have)
        if op == ":*":
            ok = have is not None
        elif op in ("=", "!="):
            ok = have is not None and fnmatch.fnmatchcase(text, want)
            ok = ok if op == "=" else not ok
        else:
            ok = have is not None and re.fullmatch(want, text) is not None
            ok = ok if op == "eq" else not ok
        if not ok:
            return False
    return True


class FakeGce:
    def __init__(self, project: str = PROJECT):
        self.project = project
        self.instances: dict[str, dict] = {}
        self.disks: dict[str, dict] = {}
        self.images: dict[str, dict] = {}
        self.addresses: dict[str, dict] = {}
        self.firewalls: dict[str, dict] = {}
        self.operations: dict[str, dict] = {}
        self.public_images = {"debian-cloud": {"debian-12-bookworm-v20240515": self._public_image()}}
        self.requests: list[tuple[str, str]] = []
        self.quota_exceeded = self.zone_exhausted = self.api_disabled = False
        self._pending: dict[str, callable] = {}  # operation name -> completes its change, may return error
        self._ips = itertools.count(2)
        self._lock = threading.RLock()
        self._server = None

    # --- lifecycle ------------------------------------------------------------------------------
    def start(self) -> "FakeGce":
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def do_request(self):
                fake._handle(self)

            do_GET = do_POST = do_DELETE = do_PATCH = do_PUT = do_request

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # --- HTTP plumbing --------------------------------------------------------------------------
    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        url = urlsplit(h.path)
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        self.requests.append((h.command, url.path))
        try:
            if self.api_disabled:
                raise ApiError(403, "accessNotConfigured", DISABLED_MESSAGE, domain="usageLimits")
            for method, pattern, name in ROUTES:
                m = pattern.match(url.path)
                if m and method == h.command:
                    params = {k: unquote(v) for k, v in m.groupdict().items()}
                    self._check_scope(params, h.command, url.path)
                    body = json.loads(raw) if raw.strip() else {}
                    with self._lock:
                        status, payload = 200, getattr(self, name)(params, dict(parse_qsl(url.query)), body)
                    break
            else:
                raise ApiError(404, "notFound", f"Not Found: {h.command} {url.path}")
        except ApiError as e:
            status, payload = e.code, e.body
        except (ValueError, KeyError, TypeError) as e:
            status, payload = 400, ApiError(400, "invalid", f"Invalid request: {e!r}").body
        data = json.dumps(payload).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json; charset=UTF-8")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def _check_scope(self, p: dict, method: str, path: str) -> None:
        public = p["project"] in self.public_images and method == "GET" and "/global/images" in path
        if p["project"] != self.project and not public:
            raise not_found(f"projects/{p['project']}")
        if p.get("zone", ZONE) != ZONE:
            raise ApiError(400, "invalid", f"Invalid value for field 'zone': '{p['zone']}'. Unknown zone.")
        if p.get("region", REGION) != REGION:
            raise ApiError(400, "invalid", f"Invalid value for field 'region': '{p['region']}'. Unknown region.")

    # --- helpers --------------------------------------------------------------------------------
    def _link(self, *parts: str) -> str:
        return API + f"projects/{self.project}/" + "/".join(parts)

    def _get(self, table: dict, name: str, path: str) -> dict:
        if name not in table:
            raise not_found(f"projects/{self.project}/{path}/{name}")
        return table[name]

    def _new_name(self, table: dict, body: dict, path: str) -> str:
        name = body.get("name", "")
        if not NAME_RE.match(name):
            raise ApiError(400, "invalid", f"Invalid value for field 'resource.name': '{name}'. "
                           "Must be a match of regex '(?:[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?)'")
        if name in table:
            raise ApiError(409, "alreadyExists", f"The resource 'projects/{self.project}/{path}/{name}' already exists")
        return name

    def _list(self, kind: str, table: dict, scope: str, q: dict) -> dict:
        items = [r for r in table.values() if matches(r, parse_filter(q.get("filter")))]
        items.sort(key=lambda r: r["name"])
        start, size = int(q.get("pageToken") or 0), int(q.get("maxResults") or 500)
        out = {"kind": f"compute#{kind}List", "id": f"projects/{self.project}/{scope}",
               "items": items[start:start + size], "selfLink": self._link(scope)}
        if start + size < len(items):
            out["nextPageToken"] = str(start + size)
        return out

    def _aggregated(self, kind: str, table: dict, scope: str, q: dict) -> dict:
        items = [r for r in table.values() if matches(r, parse_filter(q.get("filter")))]
        plural = f"{kind}es" if kind.endswith("s") else f"{kind}s"
        listed = {plural: sorted(items, key=lambda r: r["name"])} if items else {"warning": {
            "code": "NO_RESULTS_ON_PAGE", "message": f"There are no results for scope '{scope}' on this page.",
            "data": [{"key": "scope", "value": scope}]}}
        return {"kind": f"compute#{kind}AggregatedList", "id": f"projects/{self.project}/aggregated/{plural}",
                "items": {scope: listed}, "selfLink": self._link("aggregated", plural)}

    def _operation(self, op_type: str, target: dict, scope: str, complete=None) -> dict:
        """An Operation in status RUNNING; `complete` runs when it is first fetched/waited."""
        name = f"operation-{int(datetime.now().timestamp() * 1000)}-{new_id()[:12]}"
        where = {"zone": self._link("zones", ZONE)} if scope.startswith("zones") else \
            {"region": self._link("regions", REGION)} if scope.startswith("regions") else {}
        op = {"kind": "compute#operation", "id": new_id(), "name": name, "operationType": op_type,
              "targetLink": target["selfLink"], "targetId": target["id"], "status": "RUNNING",
              "user": "tester@example.com", "progress": 0, "insertTime": now(), "startTime": now(),
              "selfLink": self._link(scope, "operations", name), **where}
        self.operations[name] = op
        self._pending[name] = complete or (lambda: None)
        return op

    def _finish(self, name: str, scope: str) -> dict:
        op = self.operations.get(name)
        if op is None or relative(op["selfLink"]) != f"projects/{self.project}/{scope}/operations/{name}":
            raise not_found(f"projects/{self.project}/{scope}/operations/{name}")
        if name in self._pending:
            error = self._pending.pop(name)()
            op.update(status="DONE", progress=100, endTime=now())
            if isinstance(error, tuple):  # (code, message, (http status, http message))
                code, message, http = error
                op.update(error={"errors": [{"code": code, "message": message}]},
                          httpErrorStatusCode=http[0], httpErrorMessage=http[1])
        return op

    # --- operations -----------------------------------------------------------------------------
    @route("GET", r"/zones/(?P<zone>[^/]+)/operations/(?P<operation>[^/]+)")
    @route("POST", r"/zones/(?P<zone>[^/]+)/operations/(?P<operation>[^/]+)/wait")
    def zone_operation(self, p, q, body):
        return self._finish(p["operation"], f"zones/{ZONE}")

    @route("GET", r"/regions/(?P<region>[^/]+)/operations/(?P<operation>[^/]+)")
    @route("POST", r"/regions/(?P<region>[^/]+)/operations/(?P<operation>[^/]+)/wait")
    def region_operation(self, p, q, body):
        return self._finish(p["operation"], f"regions/{REGION}")

    @route("GET", r"/global/operations/(?P<operation>[^/]+)")
    @route("POST", r"/global/operations/(?P<operation>[^/]+)/wait")
    def global_operation(self, p, q, body):
        return self._finish(p["operation"], "global")

    # --- machine types --------------------------------------------------------------------------
    def _machine_type(self, name: str) -> dict:
        if name not in MACHINE_TYPES:
            raise not_found(f"projects/{self.project}/zones/{ZONE}/machineTypes/{name}")
        cpus, mem, shared = MACHINE_TYPES[name]
        return {"kind": "compute#machineType", "id": str(zlib.crc32(name.encode())), "name": name,
                "description": f"{cpus} vCPUs, {mem / 1024:g} GB RAM", "guestCpus": cpus, "memoryMb": mem,
                "isSharedCpu": shared, "maximumPersistentDisks": 128, "maximumPersistentDisksSizeGb": "263168",
                "zone": ZONE, "selfLink": self._link("zones", ZONE, "machineTypes", name),
                "creationTimestamp": "2015-01-01T00:00:00.000-07:00", "architecture": "X86_64"}

    @route("GET", r"/zones/(?P<zone>[^/]+)/machineTypes")
    def list_machine_types(self, p, q, body):
        table = {n: self._machine_type(n) for n in MACHINE_TYPES}
        return self._list("machineType", table, f"zones/{ZONE}/machineTypes", q)

    @route("GET", r"/zones/(?P<zone>[^/]+)/machineTypes/(?P<name>[^/]+)")
    def get_machine_type(self, p, q, body):
        return self._machine_type(p["name"])

    # --- images ---------------------------------------------------------------------------------
    def _public_image(self) -> dict:
        name = "debian-12-bookworm-v20240515"
        return {"kind": "compute#image", "id": new_id(), "creationTimestamp": "2024-05-15T00:00:00.000-07:00",
                "name": name, "description": "Debian, Debian GNU/Linux, 12 (bookworm), amd64 built on 20240515",
                "sourceType": "RAW", "status": "READY", "archiveSizeBytes": "1000000000", "diskSizeGb": "10",
                "family": "debian-12", "architecture": "X86_64", "labels": {},
                "licenses": [API + "projects/debian-cloud/global/licenses/debian-12-bookworm"],
                "selfLink": API + f"projects/debian-cloud/global/images/{name}"}

    def _image_table(self, project: str) -> dict:
        return self.images if project == self.project else self.public_images.get(project, {})

    def _resolve_image(self, url: str) -> dict:
        m = re.match(r"projects/([^/]+)/global/images/(family/)?([^/]+)$", relative(url)) or \
            re.match(r"()global/images/(family/)?([^/]+)$", relative(url))
        if not m:
            raise ApiError(400, "invalid", f"Invalid value for field 'resource.disks[0].initializeParams.sourceImage': '{url}'.")
        project, family, name = m[1] or self.project, m[2], m[3]
        table = self._image_table(project)
        found = [i for i in table.values() if i.get("family") == name and i["status"] == "READY"] if family \
            else [table[name]] if name in table else []
        if not found:
            raise not_found(f"projects/{project}/global/images/{family or ''}{name}")
        return max(found, key=lambda i: i["creationTimestamp"])

    @route("GET", r"/global/images/family/(?P<family>[^/]+)")
    def image_from_family(self, p, q, body):
        return self._resolve_image(f"projects/{p['project']}/global/images/family/{p['family']}")

    @route("GET", r"/global/images/(?P<image>[^/]+)")
    def get_image(self, p, q, body):
        return self._get(self._image_table(p["project"]), p["image"], "global/images")

    @route("GET", r"/global/images")
    def list_images(self, p, q, body):
        return self._list("image", self._image_table(p["project"]), "global/images", q)

    @route("POST", r"/global/images")
    def insert_image(self, p, q, body):
        self._own(p)
        name = self._new_name(self.images, body, "global/images")
        disk_name = tail(body.get("sourceDisk", ""))
        disk = self._get(self.disks, disk_name, f"zones/{ZONE}/disks")
        users = [self.instances[tail(u)] for u in disk.get("users", []) if tail(u) in self.instances]
        if any(i["status"] != "TERMINATED" for i in users) and q.get("forceCreate", "").lower() != "true":
            raise ApiError(400, "resourceInUseByAnotherResource",
                           f"The disk resource 'projects/{self.project}/zones/{ZONE}/disks/{disk_name}' is already "
                           f"being used by 'projects/{self.project}/zones/{ZONE}/instances/{tail(disk['users'][0])}'")
        image = {"kind": "compute#image", "id": new_id(), "creationTimestamp": now(), "name": name,
                 "description": body.get("description", ""), "sourceType": "RAW", "status": "PENDING",
                 "archiveSizeBytes": "0", "diskSizeGb": disk["sizeGb"], "sourceDisk": disk["selfLink"],
                 "sourceDiskId": disk["id"], "labels": body.get("labels", {}), "labelFingerprint": "42WmSpB8rSM=",
                 "storageLocations": body.get("storageLocations", ["us"]), "architecture": "X86_64",
                 "selfLink": self._link("global/images", name), **({"family": body["family"]} if body.get("family") else {})}
        self.images[name] = image
        return self._operation("insert", image, "global", lambda: image.update(status="READY", archiveSizeBytes="1500000000"))

    @route("DELETE", r"/global/images/(?P<image>[^/]+)")
    def delete_image(self, p, q, body):
        self._own(p)
        image = self._get(self.images, p["image"], "global/images")
        return self._operation("delete", image, "global", lambda: self.images.pop(image["name"], None))

    def _own(self, p: dict) -> None:
        if p["project"] != self.project:
            raise ApiError(403, "forbidden", f"Required 'compute.images.create' permission for 'projects/{p['project']}'")

    # --- firewalls ------------------------------------------------------------------------------
    @route("POST", r"/global/firewalls")
    def insert_firewall(self, p, q, body):
        name = self._new_name(self.firewalls, body, "global/firewalls")
        fw = {"kind": "compute#firewall", "id": new_id(), "creationTimestamp": now(), "name": name,
              "description": body.get("description", ""),
              "network": body.get("network") or self._link("global/networks/default"),
              "priority": body.get("priority", 1000), "direction": body.get("direction", "INGRESS"),
              "sourceRanges": body.get("sourceRanges", []), "allowed": body.get("allowed", []),
              "logConfig": {"enable": False}, "disabled": False, "selfLink": self._link("global/firewalls", name),
              **{k: body[k] for k in ("targetTags", "sourceTags", "denied") if k in body}}
        self.firewalls[name] = fw
        return self._operation("insert", fw, "global")

    @route("GET", r"/global/firewalls/(?P<firewall>[^/]+)")
    def get_firewall(self, p, q, body):
        return self._get(self.firewalls, p["firewall"], "global/firewalls")

    @route("GET", r"/global/firewalls")
    def list_firewalls(self, p, q, body):
        return self._list("firewall", self.firewalls, "global/firewalls", q)

    @route("DELETE", r"/global/firewalls/(?P<firewall>[^/]+)")
    def delete_firewall(self, p, q, body):
        fw = self._get(self.firewalls, p["firewall"], "global/firewalls")
        return self._operation("delete", fw, "global", lambda: self.firewalls.pop(fw["name"], None))

    # --- addresses ------------------------------------------------------------------------------
    def _new_external_ip(self) -> str:
        n = next(self._ips)
        return f"34.82.{n // 250}.{n % 250 + 2}"

    @route("POST", r"/regions/(?P<region>[^/]+)/addresses")
    def insert_address(self, p, q, body):
        name = self._new_name(self.addresses, body, f"regions/{REGION}/addresses")
        addr = {"kind": "compute#address", "id": new_id(), "creationTimestamp": now(), "name": name,
                "description": body.get("description", ""), "address": body.get("address") or self._new_external_ip(),
                "status": "RESERVING", "region": self._link("regions", REGION),
                "selfLink": self._link("regions", REGION, "addresses", name), "users": [],
                "networkTier": body.get("networkTier", "PREMIUM"), "addressType": body.get("addressType", "EXTERNAL"),
                "labels": body.get("labels", {}), "labelFingerprint": "42WmSpB8rSM="}
        self.addresses[name] = addr
        return self._operation("insert", addr, f"regions/{REGION}", lambda: addr.update(status="RESERVED"))

    @route("GET", r"/regions/(?P<region>[^/]+)/addresses/(?P<address>[^/]+)")
    def get_address(self, p, q, body):
        return self._get(self.addresses, p["address"], f"regions/{REGION}/addresses")

    @route("GET", r"/regions/(?P<region>[^/]+)/addresses")
    def list_addresses(self, p, q, body):
        return self._list("address", self.addresses, f"regions/{REGION}/addresses", q)

    @route("GET", r"/aggregated/addresses")
    def aggregated_addresses(self, p, q, body):
        return self._aggregated("address", self.addresses, f"regions/{REGION}", q)

    @route("DELETE", r"/regions/(?P<region>[^/]+)/addresses/(?P<address>[^/]+)")
    def delete_address(self, p, q, body):
        addr = self._get(self.addresses, p["address"], f"regions/{REGION}/addresses")
        if addr["users"]:
            raise ApiError(400, "resourceInUseByAnotherResource",
                           f"The address resource '{relative(addr['selfLink'])}' is already being used by "
                           f"'{relative(addr['users'][0])}'")
        return self._operation("delete", addr, f"regions/{REGION}", lambda: self.addresses.pop(addr["name"], None))

    # --- instances ------------------------------------------------------------------------------
    def _instance(self, p: dict) -> dict:
        return self._get(self.instances, p["instance"], f"zones/{ZONE}/instances")

    @route("POST", r"/zones/(?P<zone>[^/]+)/instances")
    def insert_instance(self, p, q, body):
        name = self._new_name(self.instances, body, f"zones/{ZONE}/instances")
        mt = tail(body.get("machineType", ""))
        if mt not in MACHINE_TYPES:
            raise ApiError(400, "invalid", f"Invalid value for field 'resource.machineType': "
                           f"'{body.get('machineType', '')}'. Machine type with name '{mt}' does not exist in zone '{ZONE}'.")
        if self.quota_exceeded:
            raise ApiError(403, "quotaExceeded", QUOTA_MESSAGE, domain="usageLimits")
        boot = next((d for d in body.get("disks", []) if d.get("boot")), (body.get("disks") or [{}])[0])
        init = boot.get("initializeParams", {})
        image = self._resolve_image(init.get("sourceImage", ""))
        disk_name = init.get("diskName") or name
        if disk_name in self.disks:
            raise ApiError(409, "alreadyExists", f"The resource 'projects/{self.project}/zones/{ZONE}/disks/{disk_name}' already exists")
        nics = body.get("networkInterfaces") or [{}]
        access = [dict(a) for a in nics[0].get("accessConfigs", [])]
        static = None
        for a in access:
            if a.get("natIP"):
                static = next((x for x in self.addresses.values() if x["address"] == a["natIP"]), None)
                if static is None or static["users"]:
                    raise ApiError(400, "invalid", f"Invalid value for field 'resource.networkInterfaces[0]."
                                   f"accessConfigs[0].natIP': '{a['natIP']}'. The specified external IP address "
                                   f"'{a['natIP']}' was not found in region '{REGION}'." if static is None else
                                   f"IP address '{a['natIP']}' is already being used by another resource.")
            a.update(kind="compute#accessConfig", type=a.get("type", "ONE_TO_ONE_NAT"), name=a.get("name", "External NAT"),
                     natIP=a.get("natIP") or self._new_external_ip(), networkTier=a.get("networkTier", "PREMIUM"))
        link = self._link("zones", ZONE, "instances", name)
        disk = {"kind": "compute#disk", "id": new_id(), "name": disk_name, "sizeGb": str(init.get("diskSizeGb", image["diskSizeGb"])),
                "sourceImage": image["selfLink"], "status": "READY", "users": [link], "creationTimestamp": now(),
                "type": self._link("zones", ZONE, "diskTypes", tail(init.get("diskType", "pd-balanced"))),
                "selfLink": self._link("zones", ZONE, "disks", disk_name)}
        inst = {"kind": "compute#instance", "id": new_id(), "creationTimestamp": now(), "name": name,
                "description": body.get("description", ""), "tags": {**body.get("tags", {}), "fingerprint": "42WmSpB8rSM="},
                "machineType": self._link("zones", ZONE, "machineTypes", mt), "status": "PROVISIONING", "zone": self._link("zones", ZONE),
                "networkInterfaces": [{"kind": "compute#networkInterface", "name": "nic0",
                                       "network": nics[0].get("network") or self._link("global/networks/default"),
                                       "subnetwork": self._link("regions", REGION, "subnetworks", "default"),
                                       "networkIP": f"10.138.0.{len(self.instances) + 2}", "accessConfigs": access,
                                       "fingerprint": "ZxQ3Ox5QF2I=", "stackType": "IPV4_ONLY"}],
                "disks": [{"kind": "compute#attachedDisk", "type": "PERSISTENT", "mode": "READ_WRITE", "source": disk["selfLink"],
                           "deviceName": boot.get("deviceName", "persistent-disk-0"), "index": 0, "boot": True,
                           "autoDelete": boot.get("autoDelete", True), "interface": "SCSI", "diskSizeGb": disk["sizeGb"],
                           "licenses": image.get("licenses", []), "architecture": "X86_64"}],
                "metadata": {"kind": "compute#metadata", "fingerprint": "k4bl9p2N8pQ=", "items": body.get("metadata", {}).get("items", [])},
                "serviceAccounts": body.get("serviceAccounts", []), "selfLink": link,
                "scheduling": {"onHostMaintenance": "MIGRATE", "automaticRestart": True, "preemptible": False,
                               "provisioningModel": "STANDARD", **body.get("scheduling", {})},
                "cpuPlatform": "Unknown CPU Platform", "labels": body.get("labels", {}), "labelFingerprint": "42WmSpB8rSM=",
                "startRestricted": False, "deletionProtection": False, "fingerprint": "Pl5vU4VzWUk=",
                "lastStartTimestamp": "", "_static": static["name"] if static else None}
        if inst["scheduling"].get("provisioningModel") == "SPOT":
            inst["scheduling"].update(onHostMaintenance="TERMINATE", automaticRestart=False)
        self.instances[name], self.disks[disk_name] = inst, disk
        if static:
            static.update(status="IN_USE", users=[link])

        def complete():
            if self.zone_exhausted:
                self._remove_instance(inst)
                return "ZONE_RESOURCE_POOL_EXHAUSTED", EXHAUSTED_MESSAGE, (503, "SERVICE UNAVAILABLE")
            inst.update(status="RUNNING", cpuPlatform="Intel Broadwell", lastStartTimestamp=now())
        return self._public(self._operation("insert", inst, f"zones/{ZONE}", complete))

    def _public(self, resource: dict) -> dict:
        return {k: v for k, v in resource.items() if not k.startswith("_")}

    def _remove_instance(self, inst: dict) -> None:
        self.instances.pop(inst["name"], None)
        for d in inst["disks"]:
            disk = self.disks.get(tail(d["source"]))
            if disk:
                disk["users"] = [u for u in disk["users"] if u != inst["selfLink"]]
                if d["autoDelete"]:
                    self.disks.pop(disk["name"], None)
        if inst.get("_static") in self.addresses:
            self.addresses[inst["_static"]].update(status="RESERVED", users=[])

    @route("GET", r"/zones/(?P<zone>[^/]+)/instances/(?P<instance>[^/]+)")
    def get_instance(self, p, q, body):
        return self._public(self._instance(p))

    @route("GET", r"/zones/(?P<zone>[^/]+)/instances")
    def list_instances(self, p, q, body):
        table = {n: self._public(i) for n, i in self.instances.items()}
        return self._list("instance", table, f"zones/{ZONE}/instances", q)

    @route("GET", r"/aggregated/instances")
    def aggregated_instances(self, p, q, body):
        table = {n: self._public(i) for n, i in self.instances.items()}
        return self._aggregated("instance", table, f"zones/{ZONE}", q)

    @route("DELETE", r"/zones/(?P<zone>[^/]+)/instances/(?P<instance>[^/]+)")
    def delete_instance(self, p, q, body):
        inst = self._instance(p)
        inst["status"] = "STOPPING"
        return self._operation("delete", inst, f"zones/{ZONE}", lambda: self._remove_instance(inst))

    def _not_ready(self, inst: dict) -> ApiError:
        return ApiError(400, "resourceNotReady", f"The resource '{relative(inst['selfLink'])}' is not ready")

    @route("POST", r"/zones/(?P<zone>[^/]+)/instances/(?P<instance>[^/]+)/stop")
    def stop_instance(self, p, q, body):
        inst = self._instance(p)
        if inst["status"] not in ("RUNNING", "TERMINATED"):
            raise self._not_ready(inst)
        if inst["status"] == "TERMINATED":  # GCE answers a no-op operation
            return self._operation("stop", inst, f"zones/{ZONE}")
        inst["status"] = "STOPPING"

        def complete():
            inst.update(status="TERMINATED", lastStopTimestamp=now())
            if not inst.get("_static"):  # an ephemeral external IP is released on stop
                for a in inst["networkInterfaces"][0]["accessConfigs"]:
                    a.pop("natIP", None)
        return self._operation("stop", inst, f"zones/{ZONE}", complete)

    @route("POST", r"/zones/(?P<zone>[^/]+)/instances/(?P<instance>[^/]+)/start")
    def start_instance(self, p, q, body):
        inst = self._instance(p)
        if inst["status"] not in ("RUNNING", "TERMINATED"):
            raise self._not_ready(inst)
        if inst["status"] == "RUNNING":
            return self._operation("start", inst, f"zones/{ZONE}")
        inst["status"] = "STAGING"

        def complete():
            for a in inst["networkInterfaces"][0]["accessConfigs"]:
                a.setdefault("natIP", self._new_external_ip())
            inst.update(status="RUNNING", lastStartTimestamp=now())
        return self._operation("start", inst, f"zones/{ZONE}", complete)

    @route("POST", r"/zones/(?P<zone>[^/]+)/instances/(?P<instance>[^/]+)/setMachineType")
    def set_machine_type(self, p, q, body):
        inst = self._instance(p)
        mt = tail(body.get("machineType", ""))
        if mt not in MACHINE_TYPES:
            raise ApiError(400, "invalid", f"Invalid value for field 'machineType': '{body.get('machineType', '')}'. "
                           f"Machine type with name '{mt}' does not exist in zone '{ZONE}'.")
        if inst["status"] != "TERMINATED":
            raise ApiError(400, "invalidResourceUsage", "Invalid resource usage: 'Instance is starting or running.'")
        return self._operation("setMachineType", inst, f"zones/{ZONE}",
                               lambda: inst.update(machineType=self._link("zones", ZONE, "machineTypes", mt)))

    def preempt(self, name: str) -> None:
        """What GCE does to a SPOT VM with instanceTerminationAction STOP when it reclaims capacity."""
        with self._lock:
            self.instances[name].update(status="TERMINATED", lastStopTimestamp=now())
