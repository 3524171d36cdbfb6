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
  project ``debian-cloud`` holds a public image of family ``debian-12``, ``deeplearning-platform-release`` one of
  the Deep Learning VM family ``common-cu129-ubuntu-2404-nvidia-580``. Making an image from a disk
  attached to a RUNNING instance needs ``forceCreate=true`` (else 400 resourceInUseByAnotherResource).
- machineTypes (zonal: get, list) -> ``machineTypes`` page; accelerator-optimized types answer their GPUs
  (``accelerators``, see ACCELERATORS).  acceleratorTypes (zonal: get, list; aggregatedList) of ACCELERATOR_ZONES.
  instances.insert's ``guestAccelerators``: N1 types only, a type of the zone, at most maximumCardsPerInstance;
  any GPU (attached or the type's own) needs scheduling.onHostMaintenance TERMINATE (400 otherwise).
- disks (zonal: insert, get, list, delete; aggregatedList) -> ``disks`` page; a boot disk takes its instance's name
  and the ``labels`` of ``initializeParams``; an attached disk is not deleted (400 resourceInUseByAnotherResource).
  A disk may live in any zone of the region (``ZONES``, ``zone_disks``; ``disks`` is ZONE's); insert leaves it
  CREATING until its operation is done, then READY.  diskTypes (get, list): ``DISK_TYPES`` in every zone.
  instances.attachDisk / detachDisk (by deviceName): the disk's ``users`` and the instance's ``disks`` (deviceName,
  autoDelete, mode); a disk of another zone is refused, one another instance uses READ_WRITE fails in the operation;
  instances.delete keeps a disk attached with autoDelete false.  disks.resize grows a disk, attached or not
  (sizeGb smaller than the disk's: 400), the attached disk's diskSizeGb with it.  disks.insert with sourceSnapshot
  makes a disk from a READY snapshot in any zone (not READY: 400 resourceNotReady; sizeGb below its diskSizeGb: 400).
  disks.setLabels replaces the labels given the current labelFingerprint (a stale one: 412 conditionNotMet), which
  changes with them.  Disks count against the region's DISKS_TOTAL_GB (pd-standard) or SSD_TOTAL_GB (pd-balanced,
  pd-ssd) quota.
- snapshots (global: insert from sourceDisk, get, list, delete) -> ``snapshots`` page: CREATING until the insert's
  operation is done, then READY (FAILED with ``snapshot_fails``); a name in use is 409 alreadyExists; storageBytes is
  what the disk was written (``write``) since its last snapshot; the project's SNAPSHOTS quota (403 quotaExceeded).
- projects.get (``commonInstanceMetadata``, e.g. ``enable-oslogin``), zones.get, regions.get (``quotas``
  CPUS / IN_USE_ADDRESSES / STATIC_ADDRESSES with usage counted from the instances and addresses;
  instances.insert beyond the CPUS limit -> 403 quotaExceeded).
- networks (get, list) and subnetworks.get: ``default`` (auto mode) exists unless
  ``FakeGce(default_network=False)``; ``add_network`` makes others. instances.insert and firewalls.insert
  naming a missing network -> 400 "The referenced network resource cannot be found."; a custom mode
  network needs a subnetwork.
- Beside Compute, on the same port: the OAuth 2.0 tokeninfo endpoint (tokens in ``tokens``), the OS Login API's
  users.importSshPublicKey and Resource Manager's projects.getEffectiveOrgPolicy (for
  constraints/compute.requireOsLogin), and the Cloud Billing Catalog's services.skus.list of Compute Engine
  (``billing_skus``, see gce_catalog.py). ``login_keys(instance)`` says which keys a login accepts: OS Login
  (project or instance ``enable-oslogin``, or ``oslogin_enforced``) ignores ``ssh-keys`` metadata.
- Errors use the JSON error body of https://cloud.google.com/compute/docs/api/handling-errors
  ({"error": {"code", "message", "errors": [{"domain", "reason", "message"}]}}), which
  google.api_core turns into exceptions (NotFound, Conflict, BadRequest, Forbidden, ...).

List ``filter`` (https://cloud.google.com/compute/docs/reference/rest/v1/instances/list): terms
``field = value``, ``field != value``, ``field eq regex``, ``field ne regex``, ``field:*`` (present);
one bare term, or several each in parentheses joined by spaces, ``AND`` or ``OR``; a bare multi-term
filter is 400 "Invalid list filter expression." as on the real API. Fields are dotted paths such as
``name``, ``status``, ``labels.labvm-profile``; values may be quoted and ``*`` in ``=`` values is a
wildcard. ``maxResults``/``pageToken`` paginate.

Knobs: ``quota_exceeded`` (instances.insert -> 403 quotaExceeded), ``zone_exhausted`` (insert's
operation ends with ZONE_RESOURCE_POOL_EXHAUSTED, HTTP 503 in the operation, no instance left),
``api_disabled`` (every Compute call -> 403 accessNotConfigured), ``rate_limited`` (the next N Compute
calls -> 403 rateLimitExceeded, or 429 with ``rate_limit_status``), ``oslogin_enforced``,
``orgpolicy_denied``, ``billing_disabled`` (services.skus.list -> 403 SERVICE_DISABLED), ``project_metadata``, ``quota_limits`` (regional: CPUS and the families' N2_CPUS,
... PREEMPTIBLE_CPUS and the families' PREEMPTIBLE_N2_CPUS ..., addresses, GPUs NVIDIA_T4_GPUS ... with usage
counted), ``project_quota_limits`` (CPUS_ALL_REGIONS, GPUS_ALL_REGIONS); insert, start and resume
check the CPU metric of the machine's family.  ``suspend(name)`` leaves an instance SUSPENDED: only
instances.resume runs it again.  Names are RFC 1035, label keys and values as GCE checks them.
Only project ``proj``, zone ``us-west1-b`` and region ``us-west1`` exist (plus read-only
``debian-cloud`` images); selfLinks use the real https://www.googleapis.com/compute/v1/ prefix.

Two faces, one state.  ``endpoint``: a loopback emulator (plain HTTP, anonymous, as LABVM_GCE_ENDPOINT
names it); any credential sent to it is kept in ``leaked_credentials``.  ``google_environment()``: the
environment (HTTPS proxy + a CA to trust) under which the real clients' https://*.googleapis.com
requests reach the fake as Google itself, which answers 401 without a Bearer token it issued (``tokens``).
``requests`` logs (method, path) of every request either face served, in order.

Client configuration: ``ClientOptions(api_endpoint="http://127.0.0.1:PORT")`` with
``transport="rest"`` keeps the http scheme (the transport only adds https when no scheme is given).
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import itertools
import json
import random
import re
import shutil
import ssl
import tempfile
import threading
import zlib
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, unquote, urlsplit

from gce_catalog import CATALOG, COMPUTE_SERVICE

PROJECT, ZONE, REGION = "proj", "us-west1-b", "us-west1"
# The region's zones (https://cloud.google.com/compute/docs/regions-zones: us-west1-a, -b, -c): disks may live in
# any of them (a data disk restored elsewhere); instances, machine types and the rest only in ZONE.
ZONES = (f"{REGION}-a", ZONE, f"{REGION}-c")
# Persistent Disk types (https://cloud.google.com/compute/docs/disks#disk-types); hyperdisks need newer machines.
DISK_TYPES = ("pd-standard", "pd-balanced", "pd-ssd", "pd-extreme")
# The regional quota a disk's GB count against (https://cloud.google.com/compute/resource-usage#disk_quota): standard
# Persistent Disk DISKS_TOTAL_GB, balanced and SSD Persistent Disk SSD_TOTAL_GB (pd-extreme: not modelled).
DISK_QUOTAS = {"pd-standard": "DISKS_TOTAL_GB", "pd-balanced": "SSD_TOTAL_GB", "pd-ssd": "SSD_TOTAL_GB"}
API = "https://www.googleapis.com/compute/v1/"
P = "/compute/v1/projects/(?P<project>[^/]+)"
# Resource names (instances, firewalls, addresses, images, ...): RFC 1035, 1-63 characters
# (https://cloud.google.com/compute/docs/naming-resources#resource-name-format).
NAME_RE = re.compile(r"[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?$")
LABEL_KEY_RE = re.compile(r"[a-z][a-z0-9_-]{0,62}$")
LABEL_VALUE_RE = re.compile(r"[a-z0-9_-]{0,63}$")
MACHINE_TYPES = {  # name: (guestCpus, memoryMb, shared core)
    "e2-micro": (2, 1024, True),
    "e2-small": (2, 2048, True),
    "e2-medium": (2, 4096, True),
    "e2-standard-2": (2, 8192, False),
    "e2-standard-4": (4, 16384, False),
    "e2-standard-8": (8, 32768, False),
    "e2-highmem-2": (2, 16384, False),
    "n2-standard-2": (2, 8192, False),
    "n2-standard-4": (4, 16384, False),
    "n2-standard-8": (8, 32768, False),
    "n1-standard-1": (1, 3840, False),
    "n1-standard-4": (4, 15360, False),
    "n2d-standard-2": (2, 8192, False),
    "c2-standard-4": (4, 16384, False),
    "c4a-standard-4": (4, 16384, False),
    # accelerator-optimized (https://cloud.google.com/compute/docs/accelerator-optimized-machines): a2-highgpu-1g
    # 12 vCPUs and 85 GB, a2-ultragpu-1g 12 vCPUs and 170 GB, g2-standard-4 4 vCPUs and 16 GB
    "a2-highgpu-1g": (12, 87040, False),
    "a2-highgpu-2g": (24, 174080, False),
    "a2-ultragpu-1g": (12, 174080, False),
    "g2-standard-4": (4, 16384, False),
}
# The GPUs a machine type carries, as machineTypes.get answers them in accelerators[]: {guestAcceleratorType,
# guestAcceleratorCount} (https://cloud.google.com/compute/docs/reference/rest/v1/machineTypes); the other types
# answer no accelerators field.  name: (guestAcceleratorType, guestAcceleratorCount)
ACCELERATORS = {
    "a2-highgpu-1g": ("nvidia-tesla-a100", 1),
    "a2-highgpu-2g": ("nvidia-tesla-a100", 2),
    "a2-ultragpu-1g": ("nvidia-a100-80gb", 1),
    "g2-standard-4": ("nvidia-l4", 1),
}
# The regional CPU quota of each machine family (its name's first part): E2, N1 (and F1, G1) count
# against CPUS, every other family against its own <FAMILY>_CPUS (N2, N2D, N4, C2, C2D, C3, C3D, C4, C4A,
# C4D, T2D, T2A, M1, M2, M3, M4, X4, Z3, H3, A2, G2); every vCPU also counts against the project's
# CPUS_ALL_REGIONS.  Spot and preemptible VMs count against the preemptible quota of their family instead,
# PREEMPTIBLE_CPUS for those of CPUS and PREEMPTIBLE_<FAMILY>_CPUS for the others, where the region grants it
# (limit above 0) (https://cloud.google.com/compute/resource-usage, "CPU quota" and "Preemptible quotas").
# The accelerator types of each zone (acceleratorTypes get, list, aggregatedList:
# https://cloud.google.com/compute/docs/reference/rest/v1/acceleratorTypes, with maximumCardsPerInstance), as
# https://cloud.google.com/compute/docs/gpus/gpu-regions-zones lists us-west1's (T4: a, b; L4: a, b, c; A100: b;
# V100: a, b) and a zone of another region that a region's list must leave out.  name: maximumCardsPerInstance
ACCELERATOR_ZONES = {
    f"{REGION}-a": {"nvidia-tesla-t4": 4, "nvidia-l4": 8, "nvidia-tesla-v100": 8},
    ZONE: {"nvidia-tesla-t4": 4, "nvidia-l4": 8, "nvidia-tesla-a100": 16, "nvidia-tesla-v100": 8},
    f"{REGION}-c": {"nvidia-l4": 8},
    "europe-west4-a": {"nvidia-tesla-t4": 4},
}
# GCE attaches GPUs (guestAccelerators) to N1 machine types only; the accelerator-optimized carry their own
# (https://cloud.google.com/compute/docs/gpus: "you can attach GPUs only to general-purpose N1 machine types").
ATTACHABLE_SERIES = ("n1",)
# A VM with GPUs cannot live-migrate: instances.insert without scheduling.onHostMaintenance TERMINATE is refused
# (https://cloud.google.com/compute/docs/gpus/create-vm-with-gpus: "set the host maintenance policy to TERMINATE";
# the 400 "Invalid resource usage" GCE answers).
LIVE_MIGRATION_MESSAGE = "Invalid resource usage: 'Instances with guest accelerators do not support live migration.'."
# The regional quota a GPU model counts against, PREEMPTIBLE_ for Spot VMs where granted; each GPU also against the
# project's GPUS_ALL_REGIONS (https://cloud.google.com/compute/resource-usage#gpu_quota).
GPU_QUOTA = {
    "nvidia-tesla-t4": "NVIDIA_T4_GPUS",
    "nvidia-l4": "NVIDIA_L4_GPUS",
    "nvidia-tesla-a100": "NVIDIA_A100_GPUS",
    "nvidia-a100-80gb": "NVIDIA_A100_80GB_GPUS",
    "nvidia-tesla-v100": "NVIDIA_V100_GPUS",
}
FAMILY_QUOTA = {
    family: f"{family.upper()}_CPUS"
    for family in (
        *("n2", "n2d", "n4", "c2", "c2d", "c3", "c3d", "c4", "c4a", "c4d", "t2d", "t2a"),
        *("m1", "m2", "m3", "m4", "x4", "z3", "h3", "a2", "g2"),
    )
}
QUOTA_MESSAGE = f"Quota 'CPUS' exceeded. Limit: 8.0 in region {REGION}."
DISABLED_MESSAGE = (
    f"Compute Engine API has not been used in project {PROJECT} before or it is disabled. "
    f"Enable it by visiting https://console.developers.google.com/apis/api/compute.googleapis.com/"
    f"overview?project={PROJECT} then retry."
)
EXHAUSTED_MESSAGE = (
    f"The zone 'projects/{PROJECT}/zones/{ZONE}' does not have enough resources available to "
    "fulfill the request.  Try a different zone, or try again later."
)
# A request to Google without a valid OAuth 2.0 access token: HTTP 401, status UNAUTHENTICATED
# (https://cloud.google.com/compute/docs/api/how-tos/authorization: "all requests ... must be authorized";
# the body as https://cloud.google.com/apis/design/errors#handling_errors gives it for UNAUTHENTICATED).
MISSING_CREDENTIALS = (
    "Request is missing required authentication credential. Expected OAuth 2 access token, "
    "login cookie or other valid authentication credential."
)
INVALID_CREDENTIALS = (
    "Request had invalid authentication credentials. Expected OAuth 2 access token, "
    "login cookie or other valid authentication credential."
)
RATE_429_MESSAGE = (
    f"Quota exceeded for quota metric 'Queries' and limit 'Queries per minute' of service "
    f"'compute.googleapis.com' for consumer 'project_number:{zlib.crc32(PROJECT.encode())}'."
)
# The Deep Learning VM image family with the NVIDIA driver (https://cloud.google.com/deep-learning-vm/docs/images)
DLVM_FAMILY, DLVM_IMAGE = "common-cu129-ubuntu-2404-nvidia-580", "common-cu129-ubuntu-2404-nvidia-580-v20261101"
ROUTES = []  # (method, compiled path pattern, FakeGce method name)
BILLING_DISABLED_MESSAGE = (
    f"Cloud Billing API has not been used in project {PROJECT} before or it is disabled. "
    f"Enable it by visiting https://console.developers.google.com/apis/api/cloudbilling.googleapis.com/"
    f"overview?project={PROJECT} then retry."
)


OTHER_ROUTES = []  # the same, for the other Google APIs labvm calls (full paths)


def route(method: str, pattern: str, table: list = ROUTES, prefix: str = P):
    def register(fn):
        table.append((method, re.compile(prefix + pattern + "$"), fn.__name__))
        return fn

    return register


def other_route(method: str, pattern: str):
    return route(method, pattern, OTHER_ROUTES, "")


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str, domain: str = "global", status: str = ""):
        super().__init__(message)
        self.code, self.body = (
            code,
            {
                "error": {
                    "code": code,
                    "message": message,
                    "errors": [{"message": message, "domain": domain, "reason": reason}],
                    **({"status": status} if status else {}),
                }
            },
        )


def _tls_context(directory: Path) -> ssl.SSLContext:
    """A CA (written to DIRECTORY/ca.pem for the client to trust) and a server certificate it signs
    for *.googleapis.com: TLS as Google's front ends serve it, from a key only this test holds."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def certificate(subject: str, key, issuer: str, issuer_key, ca: bool, names=()):
        start = datetime.now(timezone.utc) - timedelta(hours=1)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if ca:
            builder = builder.add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            ).add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        else:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False
            )
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
            )
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = certificate("fake-gce test CA", ca_key, "fake-gce test CA", ca_key, True)
    server = certificate(
        "*.googleapis.com", server_key, "fake-gce test CA", ca_key, False, ["*.googleapis.com", "googleapis.com"]
    )
    pem = serialization.Encoding.PEM
    (directory / "ca.pem").write_bytes(ca.public_bytes(pem))
    (directory / "server.pem").write_bytes(
        server.public_bytes(pem)
        + server_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(directory / "server.pem")
    return context


def not_found(path: str) -> ApiError:
    return ApiError(404, "notFound", f"The resource '{path}' was not found")


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def label_fingerprint(labels: dict) -> str:
    """A fingerprint of a label set, as GCE's: 8 bytes, base64 (its hash is its own; any that changes with the set
    serves optimistic locking)."""
    digest = hashlib.sha256(json.dumps(labels, sort_keys=True).encode()).digest()
    return base64.b64encode(digest[:8]).decode()


def new_id() -> str:
    return str(random.randrange(10**18, 2**63))


def tail(url: str) -> str:
    """'https://.../compute/v1/projects/p/zones/z/machineTypes/e2-small' or 'zones/z/...' -> last segment."""
    return url.rstrip("/").rsplit("/", 1)[-1]


def relative(url: str) -> str:
    return re.sub(r"^(https?://[^/]+/compute/v1/|/?compute/v1/)", "", url)


# --- list filters -------------------------------------------------------------------------------
# https://cloud.google.com/compute/docs/reference/rest/v1/instances/list (`filter`): one bare expression,
# or several, "provide each separate expression within parentheses", joined by spaces (AND), AND or OR.
# A bare multi-term filter is a 400 "Invalid list filter expression." (seen from the real API in
# googleapis/nodejs-compute#48 for 'status eq RUNNING AND name eq somehostname', and in
# googleapis/google-cloud-go#11318). OR binds tighter than AND (https://google.aip.dev/160).
TERM = r"""(?P<field>[\w.-]+)\s*(?:(?P<op>!=|=|\beq\b|\bne\b)\s*(?P<value>"[^"]*"|'[^']*'|[^\s()]+)|:\s*\*)"""
BARE = re.compile(r"\s*" + TERM + r"\s*$")
GROUP = re.compile(r"\s*\(\s*" + TERM + r"\s*\)\s*(?:(?P<join>AND|OR)(?=[\s(])\s*)?")


def _term(m) -> tuple:
    value = m["value"]
    if value and value[0] in "\"'":
        value = value[1:-1]
    return m["field"], m["op"] or ":*", value


def parse_filter(text: str) -> list[list[tuple]]:
    """The filter as AND of ORs of (field, op, value) terms."""
    text = (text or "").strip()
    if not text:
        return []
    bare = BARE.match(text)
    if bare:
        return [[_term(bare)]]
    clauses, pos, join = [[]], 0, None
    while pos < len(text):
        m = GROUP.match(text, pos)
        if not m:
            raise ApiError(
                400, "invalid", f"Invalid value for field 'filter': '{text}'. Invalid list filter expression."
            )
        if join == "OR":
            clauses[-1].append(_term(m))
        else:
            clauses.append([_term(m)])
        join, pos = m["join"], m.end()
    if join:
        raise ApiError(400, "invalid", f"Invalid value for field 'filter': '{text}'. Invalid list filter expression.")
    return [c for c in clauses if c]


def lookup(resource: dict, field: str):
    value = resource
    for part in field.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _term_matches(resource: dict, field: str, op: str, want: str) -> bool:
    have = lookup(resource, field)
    text = "" if have is None else str(have).lower() if isinstance(have, bool) else str(have)
    if op == ":*":
        return have is not None
    if op in ("=", "!="):
        ok = have is not None and fnmatch.fnmatchcase(text, want)
        return ok if op == "=" else not ok
    ok = have is not None and re.fullmatch(want, text) is not None
    return ok if op == "eq" else not ok


def matches(resource: dict, clauses) -> bool:
    return all(any(_term_matches(resource, *term) for term in clause) for clause in clauses)


class FakeGce:
    def __init__(self, project: str = PROJECT, default_network: bool = True):
        self.project = project
        # A new project gets an auto mode network `default` unless the organisation enforces
        # constraints/compute.skipDefaultNetworkCreation, and anyone may delete it
        # (https://cloud.google.com/vpc/docs/vpc#default-network): default_network=False is such a project.
        self.networks: dict[str, dict] = {}
        self.subnetworks: dict[str, dict] = {}
        if default_network:
            self.add_network("default", auto=True)
        self.project_metadata: dict[str, str] = {}  # commonInstanceMetadata, e.g. enable-oslogin=TRUE
        self.oslogin_enforced = False  # constraints/compute.requireOsLogin enforced on the project
        self.orgpolicy_denied = False  # the caller lacks orgpolicy.policy.get: getEffectiveOrgPolicy -> 403
        self.billing_skus: list[dict] = list(CATALOG)  # Compute Engine's SKUs in the Cloud Billing Catalog
        self.billing_disabled = False  # the Cloud Billing API is not enabled for the caller's project
        self.oslogin_profiles: dict[str, dict] = {}  # account email -> {"username", "keys"}
        self.tokens: dict[str, str] = {}  # access token -> account email, as Google's OAuth server issued them
        self.quota_limits = {
            "CPUS": 8.0,
            "N2_CPUS": 8.0,
            "N2D_CPUS": 8.0,
            "C2_CPUS": 8.0,
            "PREEMPTIBLE_CPUS": 0.0,
            "IN_USE_ADDRESSES": 8.0,
            "STATIC_ADDRESSES": 8.0,
            "DISKS_TOTAL_GB": 4096.0,
            "SSD_TOTAL_GB": 500.0,
            "NVIDIA_T4_GPUS": 4.0,
            "PREEMPTIBLE_NVIDIA_T4_GPUS": 0.0,
            "NVIDIA_L4_GPUS": 4.0,
            "NVIDIA_A100_GPUS": 4.0,
        }  # regional
        # Project-wide: vCPUs of every region, and snapshots (https://cloud.google.com/compute/resource-usage).
        self.project_quota_limits = {"CPUS_ALL_REGIONS": 32.0, "SNAPSHOTS": 5000.0, "GPUS_ALL_REGIONS": 8.0}
        self.instances: dict[str, dict] = {}
        self.zone_disks: dict[str, dict[str, dict]] = {zone: {} for zone in ZONES}  # zone -> name -> disk
        self.disks = self.zone_disks[ZONE]  # the instances' zone, where boot disks are made
        self.images: dict[str, dict] = {}
        self.snapshots: dict[str, dict] = {}
        self.snapshot_fails = False  # the next snapshots end FAILED
        self.unsnapshotted: dict[str, int] = {}  # a disk's selfLink -> bytes written since its last snapshot
        self.addresses: dict[str, dict] = {}
        self.firewalls: dict[str, dict] = {}
        self.operations: dict[str, dict] = {}
        self.public_images = {
            "debian-cloud": {"debian-12-bookworm-v20240515": self._public_image()},
            "deeplearning-platform-release": {DLVM_IMAGE: self._public_image(DLVM_IMAGE)},
        }
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request served, in order
        self.leaked_credentials: list[str] = []  # Authorization headers sent to the loopback emulator
        self.quota_exceeded = self.zone_exhausted = self.api_disabled = False
        self.rate_limited, self.rate_limit_status = 0, 403  # the next N Compute calls answer a rate limit
        self._pending: dict[str, callable] = {}  # operation name -> completes its change, may return error
        # A test's guest (tests/test_data_flow.py): called with each operation as it is done, under the fake's lock,
        # before the answer that shows it done leaves: the "VM" has seen what Compute Engine did before labvm goes on.
        self.on_operation_done: Callable[[dict], None] | None = None
        self._ips = itertools.count(2)
        self._lock = threading.RLock()
        self._server = None

    # --- lifecycle ------------------------------------------------------------------------------
    def start(self) -> "FakeGce":
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True
            google = False  # reached as https://*.googleapis.com through the proxy (else: the loopback emulator)

            def do_request(self):
                fake._handle(self)

            do_GET = do_POST = do_DELETE = do_PATCH = do_PUT = do_request

            def do_CONNECT(self):
                """An HTTPS proxy for *.googleapis.com only: the tunnel's TLS ends here, with a certificate
                of the fake's own CA (google_environment() makes the client trust it)."""
                host = self.path.rsplit(":", 1)[0]
                if not host.endswith(".googleapis.com"):
                    self.send_error(403, f"this proxy serves *.googleapis.com only, not {host}")
                    return
                self.send_response(200, "Connection established")
                self.end_headers()
                self.close_connection = True
                try:
                    tunnel = fake._tls.wrap_socket(self.connection, server_side=True)
                except (ssl.SSLError, OSError):
                    return
                GoogleHandler(tunnel, self.client_address, self.server)

            def log_message(self, *args):
                pass

        class GoogleHandler(Handler):
            google = True

        self._directory = Path(tempfile.mkdtemp(prefix="fake-gce-"))
        self._tls = _tls_context(self._directory)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
            shutil.rmtree(self._directory, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def endpoint(self) -> str:
        """The loopback emulator: plain HTTP, anonymous (what LABVM_GCE_ENDPOINT names)."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def google_environment(self) -> dict[str, str]:
        """Environment under which the real clients' https://*.googleapis.com requests reach this fake as
        Google itself: through it as an HTTPS proxy, trusting its CA.  There the credentials are checked."""
        return {
            "HTTPS_PROXY": self.endpoint,
            "https_proxy": self.endpoint,
            "NO_PROXY": "",
            "no_proxy": "",
            "REQUESTS_CA_BUNDLE": str(self._directory / "ca.pem"),
        }

    # --- HTTP plumbing --------------------------------------------------------------------------
    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        url = urlsplit(h.path)
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        self.requests.append((h.command, url.path))
        try:
            self._authorize(h.google, h.headers.get("Authorization", ""), url.path)
            status, payload = 200, self._dispatch(h.command, url, raw, h.headers.get("Content-Type", ""))
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

    def _authorize(self, google: bool, authorization: str, path: str) -> None:
        """Google: every API call carries `Authorization: Bearer <access token>` of an issued token, else 401
        (https://cloud.google.com/compute/docs/api/how-tos/authorization); tokeninfo takes the token as a
        parameter instead.  The loopback emulator serves anyone, and keeps every token sent to it: a
        token that reaches an endpoint other than Google's has leaked."""
        if not google:
            if authorization:
                self.leaked_credentials.append(authorization)
            return
        if path == "/tokeninfo":
            return
        scheme, _, token = authorization.partition(" ")
        if scheme != "Bearer" or not token:
            raise ApiError(401, "required", MISSING_CREDENTIALS, status="UNAUTHENTICATED")
        if token not in self.tokens:
            raise ApiError(401, "authError", INVALID_CREDENTIALS, status="UNAUTHENTICATED")

    def _dispatch(self, method: str, url, raw: bytes, content_type: str) -> dict:
        query = dict(parse_qsl(url.query))
        if "x-www-form-urlencoded" in content_type:
            body = dict(parse_qsl(raw.decode()))
        else:
            body = json.loads(raw) if raw.strip() else {}
        for verb, pattern, name in OTHER_ROUTES:  # OAuth 2.0, OS Login, Resource Manager: not Compute
            m = pattern.match(url.path)
            if m and verb == method:
                with self._lock:
                    return getattr(self, name)({k: unquote(v) for k, v in m.groupdict().items()}, query, body)
        if self.api_disabled:
            raise ApiError(403, "accessNotConfigured", DISABLED_MESSAGE, domain="usageLimits")
        self._rate_limit()
        for verb, pattern, name in ROUTES:
            m = pattern.match(url.path)
            if m and verb == method:
                params = {k: unquote(v) for k, v in m.groupdict().items()}
                self._check_scope(params, method, url.path)
                with self._lock:
                    return getattr(self, name)(params, query, body)
        raise ApiError(404, "notFound", f"Not Found: {method} {url.path}")

    def _rate_limit(self) -> None:
        """The next `rate_limited` Compute calls are refused as a rate quota refuses them: 403 rateLimitExceeded
        (https://cloud.google.com/compute/api-quota), or with rate_limit_status 429 RESOURCE_EXHAUSTED
        (https://cloud.google.com/apis/design/errors, RESOURCE_EXHAUSTED)."""
        with self._lock:
            if self.rate_limited <= 0:
                return
            self.rate_limited -= 1
        if self.rate_limit_status == 429:
            raise ApiError(429, "rateLimitExceeded", RATE_429_MESSAGE, status="RESOURCE_EXHAUSTED")
        raise ApiError(403, "rateLimitExceeded", "Rate Limit Exceeded", domain="usageLimits")

    def _check_scope(self, p: dict, method: str, path: str) -> None:
        public = p["project"] in self.public_images and method == "GET" and "/global/images" in path
        if p["project"] != self.project and not public:
            raise not_found(f"projects/{p['project']}")
        if p.get("zone", ZONE) != ZONE and path.endswith(f"/zones/{p['zone']}"):  # zones.get
            raise not_found(f"projects/{self.project}/zones/{p['zone']}")
        elsewhere = p.get("zone") in ZONES and re.search(r"/zones/[^/]+/(disks|diskTypes|operations)(/|$)", path)
        if p.get("zone", ZONE) != ZONE and not elsewhere:
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
        self._check_labels(body.get("labels") or {})
        name = body.get("name", "")
        if not NAME_RE.match(name):
            raise ApiError(
                400,
                "invalid",
                f"Invalid value for field 'resource.name': '{name}'. "
                "Must be a match of regex '(?:[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?)'",
            )
        if name in table:
            raise ApiError(409, "alreadyExists", f"The resource 'projects/{self.project}/{path}/{name}' already exists")
        return name

    @staticmethod
    def _check_labels(labels: dict) -> None:
        """https://cloud.google.com/compute/docs/labeling-resources#requirements: keys 1-63 characters starting
        with a lowercase letter, values 0-63; both only lowercase letters, digits, "_" and "-"."""
        for key, value in labels.items():
            if not LABEL_KEY_RE.match(key) or not LABEL_VALUE_RE.match(value):
                raise ApiError(
                    400,
                    "invalid",
                    f"Invalid value for field 'resource.labels': '{key}={value}'. Label "
                    "keys and values can only contain lowercase letters, numeric characters, underscores "
                    "and dashes, at most 63 characters; keys start with a lowercase letter.",
                )

    def _list(self, kind: str, table: dict, scope: str, q: dict) -> dict:
        items = [r for r in table.values() if matches(r, parse_filter(q.get("filter")))]
        items.sort(key=lambda r: r["name"])
        start, size = int(q.get("pageToken") or 0), int(q.get("maxResults") or 500)
        out = {
            "kind": f"compute#{kind}List",
            "id": f"projects/{self.project}/{scope}",
            "items": items[start : start + size],
            "selfLink": self._link(scope),
        }
        if start + size < len(items):
            out["nextPageToken"] = str(start + size)
        return out

    def _aggregated(self, kind: str, tables: dict[str, dict], q: dict) -> dict:
        """Each scope's (zones/Z, regions/R: its table) matching items, or its NO_RESULTS_ON_PAGE warning."""
        plural = f"{kind}es" if kind.endswith("s") else f"{kind}s"

        def listed(scope: str, table: dict) -> dict:
            items = [r for r in table.values() if matches(r, parse_filter(q.get("filter")))]
            if items:
                return {plural: sorted(items, key=lambda r: r["name"])}
            return {
                "warning": {
                    "code": "NO_RESULTS_ON_PAGE",
                    "message": f"There are no results for scope '{scope}' on this page.",
                    "data": [{"key": "scope", "value": scope}],
                }
            }

        return {
            "kind": f"compute#{kind}AggregatedList",
            "id": f"projects/{self.project}/aggregated/{plural}",
            "items": {scope: listed(scope, table) for scope, table in tables.items()},
            "selfLink": self._link("aggregated", plural),
        }

    def _operation(self, op_type: str, target: dict, scope: str, complete=None) -> dict:
        """An Operation in status RUNNING; `complete` runs when it is first fetched/waited."""
        name = f"operation-{int(datetime.now().timestamp() * 1000)}-{new_id()[:12]}"
        where = (
            {"zone": self._link(scope)}
            if scope.startswith("zones")
            else {"region": self._link("regions", REGION)}
            if scope.startswith("regions")
            else {}
        )
        op = {
            "kind": "compute#operation",
            "id": new_id(),
            "name": name,
            "operationType": op_type,
            "targetLink": target["selfLink"],
            "targetId": target["id"],
            "status": "RUNNING",
            "user": "tester@example.com",
            "progress": 0,
            "insertTime": now(),
            "startTime": now(),
            "selfLink": self._link(scope, "operations", name),
            **where,
        }
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
                op.update(
                    error={"errors": [{"code": code, "message": message}]},
                    httpErrorStatusCode=http[0],
                    httpErrorMessage=http[1],
                )
            if self.on_operation_done is not None:
                self.on_operation_done(op)
        return op

    # --- project, zone, region (quotas) -----------------------------------------------------------
    @route("GET", r"")
    def get_project(self, p, q, body):
        """https://cloud.google.com/compute/docs/reference/rest/v1/projects/get: commonInstanceMetadata
        holds project-wide keys such as enable-oslogin."""
        items = [{"key": k, "value": v} for k, v in self.project_metadata.items()]
        return {
            "kind": "compute#project",
            "id": str(zlib.crc32(self.project.encode())),
            "name": self.project,
            "commonInstanceMetadata": {"kind": "compute#metadata", "fingerprint": "cGFyaXM=", "items": items},
            # https://cloud.google.com/compute/docs/reference/rest/v1/projects/get: quotas[] of the project
            "quotas": [
                {"metric": m, "limit": limit, "usage": self.usage()[m]}
                for m, limit in self.project_quota_limits.items()
            ],
            "defaultNetworkTier": "PREMIUM",
            "selfLink": API + f"projects/{self.project}",
        }

    @route("GET", r"/zones/(?P<zone>[^/]+)")
    def get_zone(self, p, q, body):
        return {
            "kind": "compute#zone",
            "id": "2000",
            "name": ZONE,
            "status": "UP",
            "region": self._link("regions", REGION),
            "selfLink": self._link("zones", ZONE),
        }

    def cpu_metric(self, inst: dict) -> str:
        scheduling = inst.get("scheduling", {})
        spot = scheduling.get("provisioningModel") == "SPOT" or scheduling.get("preemptible")
        metric = FAMILY_QUOTA.get(tail(inst["machineType"]).split("-", 1)[0], "CPUS")
        if spot and self.quota_limits.get(f"PREEMPTIBLE_{metric}", 0) > 0:
            return f"PREEMPTIBLE_{metric}"
        return metric

    @staticmethod
    def gpus(inst: dict) -> list[tuple[str, int]]:
        """(accelerator type, count) of an instance: its machine type's own and its guestAccelerators."""
        own = [ACCELERATORS[tail(inst["machineType"])]] if tail(inst["machineType"]) in ACCELERATORS else []
        attached = [
            (tail(a["acceleratorType"]), int(a.get("acceleratorCount", 1))) for a in inst.get("guestAccelerators", [])
        ]
        return own + attached

    def gpu_metric(self, inst: dict, gpu: str) -> str:
        scheduling = inst.get("scheduling", {})
        spot = scheduling.get("provisioningModel") == "SPOT" or scheduling.get("preemptible")
        metric = GPU_QUOTA.get(gpu, f"{gpu.upper().replace('-', '_')}_GPUS")
        if spot and self.quota_limits.get(f"PREEMPTIBLE_{metric}", 0) > 0:
            return f"PREEMPTIBLE_{metric}"
        return metric

    def _check_accelerators(self, body: dict, mt: str) -> None:
        """instances.insert: guestAccelerators on an N1 type only, of a type the zone offers, at most
        maximumCardsPerInstance; any GPU needs onHostMaintenance TERMINATE (400 otherwise)."""
        for i, a in enumerate(body.get("guestAccelerators", [])):
            field = f"resource.guestAccelerators[{i}].acceleratorType"
            gpu = tail(a.get("acceleratorType", ""))
            if mt.split("-", 1)[0] not in ATTACHABLE_SERIES:
                raise ApiError(
                    400,
                    "invalid",
                    f"Invalid value for field '{field}': '{a.get('acceleratorType', '')}'. "
                    f"Machine type '{mt}' does not support accelerators.",
                )
            cards = ACCELERATOR_ZONES[ZONE].get(gpu)
            if cards is None:
                raise ApiError(
                    400,
                    "invalid",
                    f"Invalid value for field '{field}': '{a.get('acceleratorType', '')}'. "
                    f"Accelerator type '{gpu}' does not exist in zone '{ZONE}'.",
                )
            if int(a.get("acceleratorCount", 1)) > cards:
                raise ApiError(
                    400,
                    "invalid",
                    f"Invalid value for field 'resource.guestAccelerators[{i}].acceleratorCount': "
                    f"'{a.get('acceleratorCount')}'. Accelerator count must be at most {cards}.",
                )
        inst = {"machineType": mt, "guestAccelerators": body.get("guestAccelerators", [])}
        if self.gpus(inst) and body.get("scheduling", {}).get("onHostMaintenance") != "TERMINATE":
            raise ApiError(400, "invalid", LIVE_MIGRATION_MESSAGE)

    def usage(self) -> dict:
        """Quota usage as GCE counts it: vCPUs of instances not TERMINATED (or SUSPENDED) under their
        family's metric and CPUS_ALL_REGIONS, external IPs in use by them, reserved static addresses, and the GB of
        disks by type (https://cloud.google.com/compute/resource-usage)."""
        live = [i for i in self.instances.values() if i["status"] not in ("TERMINATED", "SUSPENDED")]
        counted = {metric: 0.0 for metric in (*self.quota_limits, *self.project_quota_limits)}
        for inst in live:
            cpus = MACHINE_TYPES[tail(inst["machineType"])][0]
            counted[self.cpu_metric(inst)] = counted.get(self.cpu_metric(inst), 0.0) + cpus
            counted["CPUS_ALL_REGIONS"] += cpus
            for gpu, count in self.gpus(inst):
                counted[self.gpu_metric(inst, gpu)] = counted.get(self.gpu_metric(inst, gpu), 0.0) + count
                counted["GPUS_ALL_REGIONS"] += count
        counted["IN_USE_ADDRESSES"] = float(sum(1 for i in live for a in i["networkInterfaces"][0]["accessConfigs"]))
        counted["STATIC_ADDRESSES"] = float(len(self.addresses))
        counted["SNAPSHOTS"] = float(len(self.snapshots))
        for table in self.zone_disks.values():  # every disk of the region, boot disks too, by its type's metric
            for disk in table.values():
                metric = DISK_QUOTAS.get(tail(disk["type"]))
                if metric:
                    counted[metric] = counted.get(metric, 0.0) + int(disk["sizeGb"])
        return counted

    def _check_cpu_quota(self, inst: dict) -> None:
        """instances.insert and instances.start: 403 quotaExceeded naming the metric that has no room."""
        cpus, usage = MACHINE_TYPES[tail(inst["machineType"])][0], self.usage()
        metric = self.cpu_metric(inst)
        limit = self.quota_limits.get(metric, 0.0)
        if usage.get(metric, 0.0) + cpus > limit:
            raise ApiError(
                403,
                "quotaExceeded",
                f"Quota '{metric}' exceeded. Limit: {limit} in region {REGION}.",
                domain="usageLimits",
            )
        limit = self.project_quota_limits["CPUS_ALL_REGIONS"]
        if usage["CPUS_ALL_REGIONS"] + cpus > limit:
            raise ApiError(
                403,
                "quotaExceeded",
                f"Quota 'CPUS_ALL_REGIONS' exceeded. Limit: {limit} globally.",
                domain="usageLimits",
            )

    @route("GET", r"/regions/(?P<region>[^/]+)")
    def get_region(self, p, q, body):
        """https://cloud.google.com/compute/docs/reference/rest/v1/regions/get: quotas[] of metric, limit, usage."""
        usage = self.usage()
        return {
            "kind": "compute#region",
            "id": "1210",
            "name": REGION,
            "status": "UP",
            "zones": [self._link("zones", ZONE)],
            "selfLink": self._link("regions", REGION),
            "quotas": [{"metric": m, "limit": limit, "usage": usage[m]} for m, limit in self.quota_limits.items()],
        }

    # --- networks ---------------------------------------------------------------------------------
    def add_network(self, name: str, auto: bool = False, subnetwork: str | None = None) -> None:
        """An auto mode network has a subnet of its own name in every region; a custom mode one only
        those made for it (https://cloud.google.com/vpc/docs/vpc#subnet-ranges)."""
        link = self._link("global/networks", name)
        subnets = [name] if auto else [subnetwork] if subnetwork else []
        self.networks[name] = {
            "kind": "compute#network",
            "id": new_id(),
            "name": name,
            "selfLink": link,
            "autoCreateSubnetworks": auto,
            "routingConfig": {"routingMode": "REGIONAL"},
            "subnetworks": [self._link("regions", REGION, "subnetworks", n) for n in subnets],
        }
        for n in subnets:
            self.subnetworks[n] = {
                "kind": "compute#subnetwork",
                "id": new_id(),
                "name": n,
                "network": link,
                "ipCidrRange": "10.138.0.0/20",
                "region": self._link("regions", REGION),
                "selfLink": self._link("regions", REGION, "subnetworks", n),
            }

    @route("GET", r"/global/networks/(?P<network>[^/]+)")
    def get_network(self, p, q, body):
        return self._get(self.networks, p["network"], "global/networks")

    @route("GET", r"/global/networks")
    def list_networks(self, p, q, body):
        return self._list("network", self.networks, "global/networks", q)

    @route("GET", r"/regions/(?P<region>[^/]+)/subnetworks/(?P<subnetwork>[^/]+)")
    def get_subnetwork(self, p, q, body):
        return self._get(self.subnetworks, p["subnetwork"], f"regions/{REGION}/subnetworks")

    def _network_of(self, field: str, value: str) -> dict:
        """A network reference must name an existing network: the real API answers 400 "The referenced
        network resource cannot be found." (instances.insert, firewalls.insert), as users meet it in
        projects without `default` (e.g. GoogleCloudPlatform DataflowTemplates' troubleshooting page)."""
        network = self.networks.get(tail(value))
        if network is None:
            raise ApiError(
                400,
                "invalid",
                f"Invalid value for field '{field}': '{value}'. The referenced network resource cannot be found.",
            )
        return network

    def _interface(self, nic: dict) -> tuple[str, str]:
        """(network, subnetwork) links of an instance's interface: the subnetwork implies its network;
        a custom mode network needs the subnetwork named
        (https://cloud.google.com/compute/docs/reference/rest/v1/instances: networkInterfaces[].subnetwork)."""
        field = "resource.networkInterfaces[0]"
        if nic.get("subnetwork"):
            subnet = self.subnetworks.get(tail(nic["subnetwork"]))
            if subnet is None:
                raise ApiError(
                    400,
                    "invalid",
                    f"Invalid value for field '{field}.subnetwork': '{nic['subnetwork']}'. "
                    "The referenced subnetwork resource cannot be found.",
                )
            return subnet["network"], subnet["selfLink"]
        network = self._network_of(f"{field}.network", nic.get("network") or "global/networks/default")
        if not network["autoCreateSubnetworks"]:
            raise ApiError(
                400,
                "invalid",
                f"Invalid value for field '{field}': '{json.dumps(nic)}'. "
                "Subnetwork should be specified for custom subnetmode network",
            )
        return network["selfLink"], network["subnetworks"][0]

    # --- who may log in (what the guest agent would install) --------------------------------------
    def login_keys(self, instance: str) -> dict[str, set[str]]:
        """user -> public keys a login to the instance accepts. With OS Login on (instance metadata
        enable-oslogin over the project's; always when constraints/compute.requireOsLogin is enforced)
        only keys imported through the OS Login API count and `ssh-keys` metadata is ignored
        (https://cloud.google.com/compute/docs/oslogin/set-up-oslogin,
        https://cloud.google.com/compute/docs/instances/access-overview)."""
        items = {i["key"]: i["value"] for i in self.instances[instance]["metadata"].get("items", [])}
        oslogin = items.get("enable-oslogin", self.project_metadata.get("enable-oslogin", "FALSE"))
        if self.oslogin_enforced or oslogin.upper() == "TRUE":
            return {prof["username"]: set(prof["keys"]) for prof in self.oslogin_profiles.values()}
        keys: dict[str, set[str]] = {}
        for line in items.get("ssh-keys", "").splitlines():
            user, _, key = line.partition(":")
            keys.setdefault(user, set()).add(key.strip())
        return keys

    # --- other Google APIs ------------------------------------------------------------------------
    @other_route("GET", r"/tokeninfo")
    def tokeninfo(self, p, q, body):
        """https://oauth2.googleapis.com/tokeninfo?access_token=...: the token's account (with the
        userinfo.email scope, which `gcloud auth application-default login` asks for)."""
        if q.get("access_token") not in self.tokens:
            raise ApiError(400, "invalid_token", "Invalid Value")
        return {"email": self.tokens[q["access_token"]], "email_verified": "true", "expires_in": "3500"}

    @other_route("POST", r"/v1/projects/(?P<project>[^/:]+):getEffectiveOrgPolicy")
    def effective_org_policy(self, p, q, body):
        """https://cloud.google.com/resource-manager/reference/rest/v1/projects/getEffectiveOrgPolicy:
        a boolean constraint answers booleanPolicy.enforced (absent when not enforced); without
        orgpolicy.policy.get it is 403 PERMISSION_DENIED."""
        if self.orgpolicy_denied:
            raise ApiError(403, "forbidden", "The caller does not have permission")
        enforced = body.get("constraint") == "constraints/compute.requireOsLogin" and self.oslogin_enforced
        return {
            "constraint": body.get("constraint"),
            "etag": "BwYT9a2e2ME=",
            "booleanPolicy": {"enforced": True} if enforced else {},
        }

    @other_route("GET", r"/v1/services/(?P<service>[^/]+)/skus")
    def list_skus(self, p, q, body):
        """https://cloud.google.com/billing/docs/reference/rest/v1/services.skus/list: {"skus": [...],
        "nextPageToken": ""} (an empty token on the last page), pageSize at most 5000; currencyCode picks the
        currency (USD here: other currencies are 400 in this fake).  An unknown service is 404."""
        if self.billing_disabled:
            raise ApiError(
                403, "SERVICE_DISABLED", BILLING_DISABLED_MESSAGE, domain="googleapis.com", status="PERMISSION_DENIED"
            )
        if p["service"] != COMPUTE_SERVICE:
            raise ApiError(404, "notFound", f"Service services/{p['service']} not found.", status="NOT_FOUND")
        if q.get("currencyCode", "USD") != "USD":
            raise ApiError(400, "badRequest", "This fake answers in USD only.", status="INVALID_ARGUMENT")
        start, size = int(q.get("pageToken") or 0), min(int(q.get("pageSize") or 5000), 5000)
        end = start + size
        return {"skus": self.billing_skus[start:end], "nextPageToken": str(end) if end < len(self.billing_skus) else ""}

    @other_route("POST", r"/v1/users/(?P<user>[^/:]+):importSshPublicKey")
    def import_ssh_public_key(self, p, q, body):
        """https://cloud.google.com/compute/docs/oslogin/rest/v1/users/importSshPublicKey: adds the key to
        the account's login profile and answers it; the POSIX username is the email with '@' and '.' as
        '_' (a service account: sa_ and its unique id) (https://cloud.google.com/compute/docs/oslogin)."""
        email = p["user"]
        name = (
            f"sa_{zlib.crc32(email.encode())}"
            if email.endswith(".gserviceaccount.com")
            else re.sub(r"[@.]", "_", email)
        )
        profile = self.oslogin_profiles.setdefault(email, {"username": name, "keys": []})
        if body["key"] not in profile["keys"]:
            profile["keys"].append(body["key"])
        return {
            "loginProfile": {
                "name": email,
                "posixAccounts": [
                    {
                        "primary": True,
                        "username": name,
                        "uid": str(zlib.crc32(name.encode()) % 2**31),
                        "gid": "1000",
                        "homeDirectory": f"/home/{name}",
                        "operatingSystemType": "LINUX",
                        "accountId": q.get("projectId", self.project),
                    }
                ],
                "sshPublicKeys": {str(zlib.crc32(k.encode())): {"key": k} for k in profile["keys"]},
            }
        }

    # --- operations -----------------------------------------------------------------------------
    @route("GET", r"/zones/(?P<zone>[^/]+)/operations/(?P<operation>[^/]+)")
    @route("POST", r"/zones/(?P<zone>[^/]+)/operations/(?P<operation>[^/]+)/wait")
    def zone_operation(self, p, q, body):
        return self._finish(p["operation"], f"zones/{p['zone']}")

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
        gpus = {}
        if name in ACCELERATORS:
            gpu, count = ACCELERATORS[name]
            gpus = {"accelerators": [{"guestAcceleratorType": gpu, "guestAcceleratorCount": count}]}
        return {
            **gpus,
            "kind": "compute#machineType",
            "id": str(zlib.crc32(name.encode())),
            "name": name,
            "description": f"{cpus} vCPUs, {mem / 1024:g} GB RAM",
            "guestCpus": cpus,
            "memoryMb": mem,
            "isSharedCpu": shared,
            "maximumPersistentDisks": 128,
            "maximumPersistentDisksSizeGb": "263168",
            "zone": ZONE,
            "selfLink": self._link("zones", ZONE, "machineTypes", name),
            "creationTimestamp": "2015-01-01T00:00:00.000-07:00",
            "architecture": "X86_64",
        }

    @route("GET", r"/zones/(?P<zone>[^/]+)/machineTypes")
    def list_machine_types(self, p, q, body):
        table = {n: self._machine_type(n) for n in MACHINE_TYPES}
        return self._list("machineType", table, f"zones/{ZONE}/machineTypes", q)

    @route("GET", r"/zones/(?P<zone>[^/]+)/machineTypes/(?P<name>[^/]+)")
    def get_machine_type(self, p, q, body):
        return self._machine_type(p["name"])

    # --- accelerator types ------------------------------------------------------------------------
    def _accelerator_type(self, zone: str, name: str) -> dict:
        return {
            "kind": "compute#acceleratorType",
            "id": str(zlib.crc32(name.encode())),
            "creationTimestamp": "2018-01-01T00:00:00.000-07:00",
            "name": name,
            "description": name.replace("nvidia-tesla-", "NVIDIA ").replace("nvidia-", "NVIDIA ").upper(),
            "zone": self._link("zones", zone),
            "maximumCardsPerInstance": ACCELERATOR_ZONES[zone][name],
            "selfLink": self._link("zones", zone, "acceleratorTypes", name),
        }

    def _accelerator_table(self, zone: str) -> dict:
        return {name: self._accelerator_type(zone, name) for name in ACCELERATOR_ZONES.get(zone, {})}

    @route("GET", r"/zones/(?P<zone>[^/]+)/acceleratorTypes")
    def list_accelerator_types(self, p, q, body):
        return self._list(
            "acceleratorType", self._accelerator_table(p["zone"]), f"zones/{p['zone']}/acceleratorTypes", q
        )

    @route("GET", r"/zones/(?P<zone>[^/]+)/acceleratorTypes/(?P<name>[^/]+)")
    def get_accelerator_type(self, p, q, body):
        return self._get(self._accelerator_table(p["zone"]), p["name"], f"zones/{p['zone']}/acceleratorTypes")

    @route("GET", r"/aggregated/acceleratorTypes")
    def aggregated_accelerator_types(self, p, q, body):
        """https://cloud.google.com/compute/docs/reference/rest/v1/acceleratorTypes/aggregatedList: per zone."""
        tables = {f"zones/{zone}": self._accelerator_table(zone) for zone in ACCELERATOR_ZONES}
        return self._aggregated("acceleratorType", tables, q)

    # --- images ---------------------------------------------------------------------------------
    def _public_image(self, name: str = "debian-12-bookworm-v20240515") -> dict:
        if name == DLVM_IMAGE:  # https://cloud.google.com/deep-learning-vm/docs/images: CUDA 12.4, Debian 11
            return {
                **self._public_image(),
                "name": name,
                "description": "Google, Deep Learning VM with CUDA 12.4, M126, Debian 11, Python 3.10",
                "family": DLVM_FAMILY,
                "diskSizeGb": "50",
                "licenses": [API + "projects/click-to-deploy-images/global/licenses/c2d-dl-platform-gvnic"],
                "selfLink": API + f"projects/deeplearning-platform-release/global/images/{name}",
            }
        return {
            "kind": "compute#image",
            "id": new_id(),
            "creationTimestamp": "2024-05-15T00:00:00.000-07:00",
            "name": name,
            "description": "Debian, Debian GNU/Linux, 12 (bookworm), amd64 built on 20240515",
            "sourceType": "RAW",
            "status": "READY",
            "archiveSizeBytes": "1000000000",
            "diskSizeGb": "10",
            "family": "debian-12",
            "architecture": "X86_64",
            "labels": {},
            "licenses": [API + "projects/debian-cloud/global/licenses/debian-12-bookworm"],
            "selfLink": API + f"projects/debian-cloud/global/images/{name}",
        }

    def _image_table(self, project: str) -> dict:
        return self.images if project == self.project else self.public_images.get(project, {})

    def _resolve_image(self, url: str) -> dict:
        m = re.match(r"projects/([^/]+)/global/images/(family/)?([^/]+)$", relative(url)) or re.match(
            r"()global/images/(family/)?([^/]+)$", relative(url)
        )
        if not m:
            raise ApiError(
                400, "invalid", f"Invalid value for field 'resource.disks[0].initializeParams.sourceImage': '{url}'."
            )
        project, family, name = m[1] or self.project, m[2], m[3]
        table = self._image_table(project)
        found = (
            [i for i in table.values() if i.get("family") == name and i["status"] == "READY"]
            if family
            else [table[name]]
            if name in table
            else []
        )
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
            raise ApiError(
                400,
                "resourceInUseByAnotherResource",
                f"The disk resource 'projects/{self.project}/zones/{ZONE}/disks/{disk_name}' is already "
                f"being used by 'projects/{self.project}/zones/{ZONE}/instances/{tail(disk['users'][0])}'",
            )
        image = {
            "kind": "compute#image",
            "id": new_id(),
            "creationTimestamp": now(),
            "name": name,
            "description": body.get("description", ""),
            "sourceType": "RAW",
            "status": "PENDING",
            "archiveSizeBytes": "0",
            "diskSizeGb": disk["sizeGb"],
            "sourceDisk": disk["selfLink"],
            "sourceDiskId": disk["id"],
            "labels": body.get("labels", {}),
            "labelFingerprint": "42WmSpB8rSM=",
            "storageLocations": body.get("storageLocations", ["us"]),
            "architecture": "X86_64",
            "selfLink": self._link("global/images", name),
            **({"family": body["family"]} if body.get("family") else {}),
        }
        self.images[name] = image
        return self._operation(
            "insert", image, "global", lambda: image.update(status="READY", archiveSizeBytes="1500000000")
        )

    @route("DELETE", r"/global/images/(?P<image>[^/]+)")
    def delete_image(self, p, q, body):
        self._own(p)
        image = self._get(self.images, p["image"], "global/images")
        return self._operation("delete", image, "global", lambda: self.images.pop(image["name"], None))

    def _own(self, p: dict) -> None:
        if p["project"] != self.project:
            raise ApiError(
                403, "forbidden", f"Required 'compute.images.create' permission for 'projects/{p['project']}'"
            )

    # --- disks ---------------------------------------------------------------------------------
    def _disk(self, zone: str, name: str) -> dict:
        return self._get(self.zone_disks[zone], name, f"zones/{zone}/disks")

    def _disk_type(self, zone: str, name: str) -> dict:
        return {
            "kind": "compute#diskType",
            "id": str(zlib.crc32(name.encode())),
            "name": name,
            "zone": self._link("zones", zone),
            "selfLink": self._link("zones", zone, "diskTypes", name),
        }

    @route("GET", r"/zones/(?P<zone>[^/]+)/diskTypes/(?P<type>[^/]+)")
    def get_disk_type(self, p, q, body):
        """https://cloud.google.com/compute/docs/reference/rest/v1/diskTypes/get: each zone's DISK_TYPES."""
        if p["type"] not in DISK_TYPES:
            raise not_found(f"projects/{self.project}/zones/{p['zone']}/diskTypes/{p['type']}")
        return self._disk_type(p["zone"], p["type"])

    @route("GET", r"/zones/(?P<zone>[^/]+)/diskTypes")
    def list_disk_types(self, p, q, body):
        """https://cloud.google.com/compute/docs/reference/rest/v1/diskTypes/list."""
        table = {name: self._disk_type(p["zone"], name) for name in DISK_TYPES}
        return self._list("diskType", table, f"zones/{p['zone']}/diskTypes", q)

    @route("POST", r"/zones/(?P<zone>[^/]+)/disks")
    def insert_disk(self, p, q, body):
        """https://cloud.google.com/compute/docs/reference/rest/v1/disks/insert: a blank disk of sizeGb and `type`
        (a disk type of the disk's own zone), CREATING until its operation is done, then READY
        (https://cloud.google.com/compute/docs/reference/rest/v1/disks: status CREATING, RESTORING, FAILED, READY,
        DELETING).  An unknown type is refused as initializeParams.diskType is: "The referenced diskType resource
        cannot be found." (broadinstitute/cromwell#3776)."""
        zone = p["zone"]
        name = self._new_name(self.zone_disks[zone], body, f"zones/{zone}/disks")
        snapshot = self._source_snapshot(body)
        disk_type = (
            body.get("type") or "pd-standard"
        )  # `gcloud compute disks create --type`: "The default ... pd-standard"
        typed = re.fullmatch(r"(?:.*/)?zones/([^/]+)/diskTypes/([^/]+)", disk_type)
        if (typed and typed[1] != zone) or (typed[2] if typed else disk_type) not in DISK_TYPES:
            raise ApiError(
                400,
                "invalid",
                f"Invalid value for field 'resource.type': '{disk_type}'. The referenced diskType resource "
                "cannot be found.",
            )
        if not body.get("sizeGb"):  # labvm always sends one; the fake models no default size (nor source images)
            raise ApiError(400, "invalid", "Invalid value for field 'resource.sizeGb': ''. The fake needs a size.")
        if snapshot and int(body["sizeGb"]) < int(snapshot["diskSizeGb"]):
            raise ApiError(
                400,
                "invalid",
                f"Invalid value for field 'resource.sizeGb': '{body['sizeGb']}'. Requested disk size cannot be smaller "
                f"than the snapshot size ({snapshot['diskSizeGb']} GB)",
            )
        from_snapshot = {"sourceSnapshot": snapshot["selfLink"], "sourceSnapshotId": snapshot["id"]} if snapshot else {}
        disk = {
            "kind": "compute#disk",
            "id": new_id(),
            "name": name,
            "description": body.get("description", ""),
            "sizeGb": str(body["sizeGb"]),
            "zone": self._link("zones", zone),
            "status": "CREATING",
            "users": [],
            "creationTimestamp": now(),
            "type": self._link("zones", zone, "diskTypes", typed[2] if typed else disk_type),
            "selfLink": self._link("zones", zone, "disks", name),
            "labels": dict(body.get("labels") or {}),
            "labelFingerprint": "42WmSpB8rSM=",
            "physicalBlockSizeBytes": "4096",
            **from_snapshot,
        }
        self.zone_disks[zone][name] = disk
        return self._operation("insert", disk, f"zones/{zone}", lambda: disk.update(status="READY"))

    def _source_snapshot(self, body: dict) -> dict | None:
        """disks.insert's sourceSnapshot (https://cloud.google.com/compute/docs/reference/rest/v1/disks: "The source
        snapshot used to create this disk", a full or partial URL), or None for a blank disk.  A snapshot is global,
        so a disk is made from it in any zone (https://cloud.google.com/compute/docs/disks/restore-snapshot).  One that
        does not exist is 404 notFound; one not READY is 400 resourceNotReady, as GCE answers for a resource still
        being made (the fake's wording of it, as attachDisk's); a sizeGb below its diskSizeGb is 400 "Requested disk
        size cannot be smaller than the snapshot size (N GB)" (the message GCE gives, quoted in public Terraform
        modules and runbooks; the reference: "the value of sizeGb must not be less than the size of the source")."""
        source = body.get("sourceSnapshot")
        if not source:
            return None
        named = re.fullmatch(r"(?:.*/)?global/snapshots/([^/]+)", source)
        snapshot = self.snapshots.get(named[1]) if named else None
        if snapshot is None:
            raise not_found(f"projects/{self.project}/global/snapshots/{named[1] if named else source}")
        if snapshot["status"] != "READY":
            raise ApiError(400, "resourceNotReady", f"The resource '{relative(snapshot['selfLink'])}' is not ready")
        return snapshot

    @route("POST", r"/zones/(?P<zone>[^/]+)/disks/(?P<disk>[^/]+)/setLabels")
    def set_disk_labels(self, p, q, body):
        """https://cloud.google.com/compute/docs/reference/rest/v1/disks/setLabels, body ZoneSetLabelsRequest {labels,
        labelFingerprint}: the whole set replaced.  labelFingerprint "is essentially a hash of the labels set used for
        optimistic locking ... You must always provide an up-to-date fingerprint hash in order to update or change
        labels, otherwise the request will fail with error 412 conditionNotMet" (the disks reference, labelFingerprint);
        the message as googleapi quotes it: "Labels fingerprint either invalid or resource labels have changed".  The
        new labels and fingerprint are the disk's once the operation is done."""
        disk = self._disk(p["zone"], p["disk"])
        if body.get("labelFingerprint") != disk["labelFingerprint"]:
            raise ApiError(412, "conditionNotMet", "Labels fingerprint either invalid or resource labels have changed")
        labels = dict(body.get("labels") or {})
        self._check_labels(labels)

        def complete():
            disk.update(labels=labels, labelFingerprint=label_fingerprint(labels))

        return self._operation("setLabels", disk, f"zones/{p['zone']}", complete)

    @route("GET", r"/zones/(?P<zone>[^/]+)/disks/(?P<disk>[^/]+)")
    def get_disk(self, p, q, body):
        """https://cloud.google.com/compute/docs/reference/rest/v1/disks/get: sourceImage names the image
        the disk was made from."""
        return self._disk(p["zone"], p["disk"])

    @route("GET", r"/zones/(?P<zone>[^/]+)/disks")
    def list_disks(self, p, q, body):
        """https://cloud.google.com/compute/docs/reference/rest/v1/disks/list: the zone's disks, one page."""
        return self._list("disk", self.zone_disks[p["zone"]], f"zones/{p['zone']}/disks", q)

    @route("GET", r"/aggregated/disks")
    def aggregated_disks(self, p, q, body):
        """https://cloud.google.com/compute/docs/reference/rest/v1/disks/aggregatedList: per zone, as instances."""
        return self._aggregated("disk", {f"zones/{zone}": self.zone_disks[zone] for zone in ZONES}, q)

    @route("DELETE", r"/zones/(?P<zone>[^/]+)/disks/(?P<disk>[^/]+)")
    def delete_disk(self, p, q, body):
        """https://cloud.google.com/compute/docs/reference/rest/v1/disks/delete: "You cannot delete a disk that is
        attached to an instance" (400 resourceInUseByAnotherResource, as for an address in use)."""
        disk = self._disk(p["zone"], p["disk"])
        if disk["users"]:
            raise ApiError(
                400,
                "resourceInUseByAnotherResource",
                f"The disk resource '{relative(disk['selfLink'])}' is already being used by "
                f"'{relative(disk['users'][0])}'",
            )
        disk["status"] = "DELETING"
        table = self.zone_disks[p["zone"]]
        return self._operation("delete", disk, f"zones/{p['zone']}", lambda: table.pop(disk["name"], None))

    @route("POST", r"/zones/(?P<zone>[^/]+)/disks/(?P<disk>[^/]+)/resize")
    def resize_disk(self, p, q, body):
        """https://cloud.google.com/compute/docs/reference/rest/v1/disks/resize: "You can only increase the size of
        the disk", attached to a running instance or not (https://cloud.google.com/compute/docs/disks/resize-persistent-disk);
        a smaller sizeGb is refused at once, 400 invalid (GCP "only allows upsizing through the API",
        hashicorp/terraform-provider-google#8614), worded as its sibling for an image, "Requested disk size cannot be
        smaller than the image size (100 GB)" (NixOS/nixops#1072).  The size is the disk's once the operation is done."""
        disk = self._disk(p["zone"], p["disk"])
        size = int(body.get("sizeGb") or 0)
        if size < int(disk["sizeGb"]):
            raise ApiError(
                400,
                "invalid",
                f"Invalid value for field 'sizeGb': '{size}'. Requested disk size cannot be smaller than the current "
                f"size ({disk['sizeGb']} GB).",
            )

        def complete():
            disk["sizeGb"] = str(size)
            for inst in self.instances.values():
                for attached in inst["disks"]:
                    if attached["source"] == disk["selfLink"]:
                        attached["diskSizeGb"] = str(size)

        return self._operation("resize", disk, f"zones/{p['zone']}", complete)

    def write(self, disk: str, size: int, zone: str = ZONE) -> None:
        """The guest wrote `size` new bytes to the disk: what its next snapshot holds."""
        with self._lock:
            link = self._disk(zone, disk)["selfLink"]
            self.unsnapshotted[link] = self.unsnapshotted.get(link, 0) + size

    # --- snapshots ------------------------------------------------------------------------------
    @route("POST", r"/global/snapshots")
    def insert_snapshot(self, p, q, body):
        """https://cloud.google.com/compute/docs/reference/rest/v1/snapshots/insert of sourceDisk, labels in the body
        (no labelFingerprint: only setLabels takes one).  Names are the project's (409 alreadyExists).  status
        (https://cloud.google.com/compute/docs/reference/rest/v1/snapshots): CREATING until the operation is done, then
        READY, or FAILED with ``snapshot_fails`` (the operation's own error is not modelled).  Snapshots are
        incremental (https://cloud.google.com/compute/docs/disks/snapshots): storageBytes, what bills, is what the disk
        was written since its previous snapshot, diskSizeGb the disk's size; a snapshot deleted is not folded into the
        next.  A disk attached to a running instance is snapshotted as it is (no forceCreate, unlike images.insert).
        Beyond the project's SNAPSHOTS quota: 403 quotaExceeded."""
        name = self._new_name(self.snapshots, body, "global/snapshots")
        source = body.get("sourceDisk", "")
        named = re.fullmatch(r"(?:.*/)?zones/([^/]+)/disks/([^/]+)", source)
        if not named or named[1] not in ZONES or named[2] not in self.zone_disks[named[1]]:
            raise ApiError(
                400,
                "invalid",
                f"Invalid value for field 'resource.sourceDisk': '{source}'. The referenced disk resource cannot be "
                "found.",
            )
        limit = self.project_quota_limits["SNAPSHOTS"]
        if self.usage()["SNAPSHOTS"] + 1 > limit:
            raise ApiError(
                403, "quotaExceeded", f"Quota 'SNAPSHOTS' exceeded. Limit: {limit} globally.", domain="usageLimits"
            )
        disk = self.zone_disks[named[1]][named[2]]
        snapshot = {
            "kind": "compute#snapshot",
            "id": new_id(),
            "creationTimestamp": now(),
            "name": name,
            "description": body.get("description", ""),
            "status": "CREATING",
            "sourceDisk": disk["selfLink"],
            "sourceDiskId": disk["id"],
            "diskSizeGb": disk["sizeGb"],
            "storageBytes": "0",
            "storageBytesStatus": "UPDATING",
            "labels": dict(body.get("labels") or {}),
            "labelFingerprint": "42WmSpB8rSM=",
            "storageLocations": body.get("storageLocations", ["us"]),
            "snapshotType": body.get("snapshotType", "STANDARD"),
            "selfLink": self._link("global/snapshots", name),
        }
        self.snapshots[name] = snapshot

        def complete():
            if self.snapshot_fails:
                snapshot.update(status="FAILED")
                return
            written = self.unsnapshotted.pop(disk["selfLink"], 0)
            snapshot.update(status="READY", storageBytes=str(written), storageBytesStatus="UP_TO_DATE")

        return self._operation("insert", snapshot, "global", complete)

    @route("GET", r"/global/snapshots/(?P<snapshot>[^/]+)")
    def get_snapshot(self, p, q, body):
        return self._get(self.snapshots, p["snapshot"], "global/snapshots")

    @route("GET", r"/global/snapshots")
    def list_snapshots(self, p, q, body):
        """https://cloud.google.com/compute/docs/reference/rest/v1/snapshots/list, filtered as every list."""
        return self._list("snapshot", self.snapshots, "global/snapshots", q)

    @route("DELETE", r"/global/snapshots/(?P<snapshot>[^/]+)")
    def delete_snapshot(self, p, q, body):
        """https://cloud.google.com/compute/docs/reference/rest/v1/snapshots/delete: DELETING until the operation is
        done, then gone."""
        snapshot = self._get(self.snapshots, p["snapshot"], "global/snapshots")
        snapshot["status"] = "DELETING"
        return self._operation("delete", snapshot, "global", lambda: self.snapshots.pop(snapshot["name"], None))

    # --- firewalls ------------------------------------------------------------------------------
    @route("POST", r"/global/firewalls")
    def insert_firewall(self, p, q, body):
        name = self._new_name(self.firewalls, body, "global/firewalls")
        network = self._network_of("resource.network", body.get("network") or "global/networks/default")
        sources = [k for k in ("sourceRanges", "sourceTags", "sourceServiceAccounts") if body.get(k)]
        if body.get("direction", "INGRESS") == "INGRESS" and not sources:
            # https://cloud.google.com/compute/docs/reference/rest/v1/firewalls (sourceRanges): "If no ingress
            # source is specified, the firewall rule applies to all sources, 0.0.0.0/0" for IPv4.
            body = {**body, "sourceRanges": ["0.0.0.0/0"]}
        if body.get("sourceTags") and body.get("sourceServiceAccounts"):
            # Same page (sourceServiceAccounts): "cannot be used at the same time as sourceTags or targetTags".
            raise ApiError(
                400,
                "invalid",
                "Invalid value for field 'resource.sourceServiceAccounts': "
                "Source service accounts cannot be used with source tags.",
            )
        fw = {
            "kind": "compute#firewall",
            "id": new_id(),
            "creationTimestamp": now(),
            "name": name,
            "description": body.get("description", ""),
            "network": network["selfLink"],
            "priority": body.get("priority", 1000),
            "direction": body.get("direction", "INGRESS"),
            "sourceRanges": body.get("sourceRanges", []),
            "allowed": body.get("allowed", []),
            "logConfig": {"enable": False},
            "disabled": False,
            "selfLink": self._link("global/firewalls", name),
            **{k: body[k] for k in ("targetTags", "sourceTags", "denied") if k in body},
        }
        self.firewalls[name] = fw
        return self._operation("insert", fw, "global")

    @route("GET", r"/global/firewalls/(?P<firewall>[^/]+)")
    def get_firewall(self, p, q, body):
        return self._get(self.firewalls, p["firewall"], "global/firewalls")

    @route("GET", r"/global/firewalls")
    def list_firewalls(self, p, q, body):
        return self._list("firewall", self.firewalls, "global/firewalls", q)

    @route("PATCH", r"/global/firewalls/(?P<firewall>[^/]+)")
    def patch_firewall(self, p, q, body):
        """https://cloud.google.com/compute/docs/reference/rest/v1/firewalls/patch: the fields sent replace
        the rule's (JSON merge patch); name and network cannot change."""
        fw = self._get(self.firewalls, p["firewall"], "global/firewalls")
        changes = {
            k: v
            for k, v in body.items()
            if k in ("sourceRanges", "allowed", "denied", "targetTags", "priority", "description", "disabled")
        }
        return self._operation("patch", fw, "global", lambda: fw.update(changes))

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
        addr = {
            "kind": "compute#address",
            "id": new_id(),
            "creationTimestamp": now(),
            "name": name,
            "description": body.get("description", ""),
            "address": body.get("address") or self._new_external_ip(),
            "status": "RESERVING",
            "region": self._link("regions", REGION),
            "selfLink": self._link("regions", REGION, "addresses", name),
            "users": [],
            "networkTier": body.get("networkTier", "PREMIUM"),
            "addressType": body.get("addressType", "EXTERNAL"),
            "labels": body.get("labels", {}),
            "labelFingerprint": "42WmSpB8rSM=",
        }
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
        return self._aggregated("address", {f"regions/{REGION}": self.addresses}, q)

    @route("DELETE", r"/regions/(?P<region>[^/]+)/addresses/(?P<address>[^/]+)")
    def delete_address(self, p, q, body):
        addr = self._get(self.addresses, p["address"], f"regions/{REGION}/addresses")
        if addr["users"]:
            raise ApiError(
                400,
                "resourceInUseByAnotherResource",
                f"The address resource '{relative(addr['selfLink'])}' is already being used by "
                f"'{relative(addr['users'][0])}'",
            )
        return self._operation("delete", addr, f"regions/{REGION}", lambda: self.addresses.pop(addr["name"], None))

    # --- instances ------------------------------------------------------------------------------
    def _instance(self, p: dict) -> dict:
        return self._get(self.instances, p["instance"], f"zones/{ZONE}/instances")

    @route("POST", r"/zones/(?P<zone>[^/]+)/instances")
    def insert_instance(self, p, q, body):
        name = self._new_name(self.instances, body, f"zones/{ZONE}/instances")
        mt = tail(body.get("machineType", ""))
        if mt not in MACHINE_TYPES:
            raise ApiError(
                400,
                "invalid",
                f"Invalid value for field 'resource.machineType': "
                f"'{body.get('machineType', '')}'. Machine type with name '{mt}' does not exist in zone '{ZONE}'.",
            )
        if self.quota_exceeded:
            raise ApiError(403, "quotaExceeded", QUOTA_MESSAGE, domain="usageLimits")
        self._check_cpu_quota({"machineType": mt, "scheduling": body.get("scheduling", {})})
        self._check_accelerators(body, mt)
        nics = body.get("networkInterfaces") or [{}]
        network, subnetwork = self._interface(nics[0])
        boot = next((d for d in body.get("disks", []) if d.get("boot")), (body.get("disks") or [{}])[0])
        init = boot.get("initializeParams", {})
        image = self._resolve_image(init.get("sourceImage", ""))
        disk_name = init.get("diskName") or name
        if disk_name in self.disks:
            raise ApiError(
                409,
                "alreadyExists",
                f"The resource 'projects/{self.project}/zones/{ZONE}/disks/{disk_name}' already exists",
            )
        access = [dict(a) for a in nics[0].get("accessConfigs", [])]
        static = None
        for a in access:
            if a.get("natIP"):
                static = next((x for x in self.addresses.values() if x["address"] == a["natIP"]), None)
                if static is None or static["users"]:
                    raise ApiError(
                        400,
                        "invalid",
                        f"Invalid value for field 'resource.networkInterfaces[0]."
                        f"accessConfigs[0].natIP': '{a['natIP']}'. The specified external IP address "
                        f"'{a['natIP']}' was not found in region '{REGION}'."
                        if static is None
                        else f"IP address '{a['natIP']}' is already being used by another resource.",
                    )
            a.update(
                kind="compute#accessConfig",
                type=a.get("type", "ONE_TO_ONE_NAT"),
                name=a.get("name", "External NAT"),
                natIP=a.get("natIP") or self._new_external_ip(),
                networkTier=a.get("networkTier", "PREMIUM"),
            )
        link = self._link("zones", ZONE, "instances", name)
        disk = {
            "kind": "compute#disk",
            "id": new_id(),
            "name": disk_name,
            "sizeGb": str(init.get("diskSizeGb", image["diskSizeGb"])),
            "sourceImage": image["selfLink"],
            "status": "READY",
            "users": [link],
            "creationTimestamp": now(),
            "type": self._link("zones", ZONE, "diskTypes", tail(init.get("diskType", "pd-balanced"))),
            "selfLink": self._link("zones", ZONE, "disks", disk_name),
            # initializeParams.labels: "Labels to apply to this disk" (reference/rest/v1/instances); the
            # instance's own labels are not copied to it.
            **({"labels": dict(init["labels"])} if init.get("labels") else {}),
            "labelFingerprint": "42WmSpB8rSM=",
        }
        inst = {
            "kind": "compute#instance",
            "id": new_id(),
            "creationTimestamp": now(),
            "name": name,
            "description": body.get("description", ""),
            "tags": {**body.get("tags", {}), "fingerprint": "42WmSpB8rSM="},
            "machineType": self._link("zones", ZONE, "machineTypes", mt),
            "status": "PROVISIONING",
            "zone": self._link("zones", ZONE),
            "networkInterfaces": [
                {
                    "kind": "compute#networkInterface",
                    "name": "nic0",
                    "network": network,
                    "subnetwork": subnetwork,
                    "networkIP": f"10.138.0.{len(self.instances) + 2}",
                    "accessConfigs": access,
                    "fingerprint": "ZxQ3Ox5QF2I=",
                    "stackType": "IPV4_ONLY",
                }
            ],
            "disks": [
                {
                    "kind": "compute#attachedDisk",
                    "type": "PERSISTENT",
                    "mode": "READ_WRITE",
                    "source": disk["selfLink"],
                    "deviceName": boot.get("deviceName", "persistent-disk-0"),
                    "index": 0,
                    "boot": True,
                    "autoDelete": boot.get("autoDelete", True),
                    "interface": "SCSI",
                    "diskSizeGb": disk["sizeGb"],
                    "licenses": image.get("licenses", []),
                    "architecture": "X86_64",
                }
            ],
            "metadata": {
                "kind": "compute#metadata",
                "fingerprint": "k4bl9p2N8pQ=",
                "items": body.get("metadata", {}).get("items", []),
            },
            "serviceAccounts": body.get("serviceAccounts", []),
            "selfLink": link,
            "scheduling": {
                "onHostMaintenance": "MIGRATE",
                "automaticRestart": True,
                "preemptible": False,
                "provisioningModel": "STANDARD",
                **body.get("scheduling", {}),
            },
            "cpuPlatform": "Unknown CPU Platform",
            **({"guestAccelerators": body["guestAccelerators"]} if body.get("guestAccelerators") else {}),
            "labels": body.get("labels", {}),
            "labelFingerprint": "42WmSpB8rSM=",
            "startRestricted": False,
            "deletionProtection": False,
            "fingerprint": "Pl5vU4VzWUk=",
            "lastStartTimestamp": "",
            "_static": static["name"] if static else None,
        }
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
        return self._aggregated("instance", {f"zones/{ZONE}": table}, q)

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
        """A SUSPENDED instance cannot be started, only resumed (instances.resume; Terraform's provider calls
        resume instead of start for it: GoogleCloudPlatform/magic-modules#11672)."""
        inst = self._instance(p)
        if inst["status"] not in ("RUNNING", "TERMINATED"):
            raise self._not_ready(inst)
        if inst["status"] == "RUNNING":
            return self._operation("start", inst, f"zones/{ZONE}")
        self._check_cpu_quota(inst)
        inst["status"] = "STAGING"

        def complete():
            for a in inst["networkInterfaces"][0]["accessConfigs"]:
                a.setdefault("natIP", self._new_external_ip())
            inst.update(status="RUNNING", lastStartTimestamp=now())

        return self._operation("start", inst, f"zones/{ZONE}", complete)

    @route("POST", r"/zones/(?P<zone>[^/]+)/instances/(?P<instance>[^/]+)/resume")
    def resume_instance(self, p, q, body):
        """https://cloud.google.com/compute/docs/reference/rest/v1/instances/resume: "Resumes an instance that
        was suspended"; only a SUSPENDED one (https://cloud.google.com/compute/docs/troubleshooting/
        troubleshooting-suspend-resume), which then counts against the CPU quota again."""
        inst = self._instance(p)
        if inst["status"] != "SUSPENDED":
            raise ApiError(
                400, "unsupportedOperation", "UNSUPPORTED_OPERATION: only a suspended instance can be resumed"
            )
        self._check_cpu_quota(inst)
        inst["status"] = "RESUMING"
        return self._operation(
            "resume", inst, f"zones/{ZONE}", lambda: inst.update(status="RUNNING", lastStartTimestamp=now())
        )

    def suspend(self, name: str) -> None:
        """What instances.suspend leaves (https://cloud.google.com/compute/docs/instances/suspend-resume-instance):
        the instance SUSPENDED, its memory kept on disk; no CPU quota used."""
        with self._lock:
            self.instances[name].update(status="SUSPENDED", lastSuspendedTimestamp=now())

    @route("POST", r"/zones/(?P<zone>[^/]+)/instances/(?P<instance>[^/]+)/setMachineType")
    def set_machine_type(self, p, q, body):
        inst = self._instance(p)
        mt = tail(body.get("machineType", ""))
        if mt not in MACHINE_TYPES:
            raise ApiError(
                400,
                "invalid",
                f"Invalid value for field 'machineType': '{body.get('machineType', '')}'. "
                f"Machine type with name '{mt}' does not exist in zone '{ZONE}'.",
            )
        if inst["status"] != "TERMINATED":
            raise ApiError(400, "invalidResourceUsage", "Invalid resource usage: 'Instance is starting or running.'")
        return self._operation(
            "setMachineType",
            inst,
            f"zones/{ZONE}",
            lambda: inst.update(machineType=self._link("zones", ZONE, "machineTypes", mt)),
        )

    @route("POST", r"/zones/(?P<zone>[^/]+)/instances/(?P<instance>[^/]+)/attachDisk")
    def attach_disk(self, p, q, body):
        """https://cloud.google.com/compute/docs/reference/rest/v1/instances/attachDisk, body an AttachedDisk
        (https://cloud.google.com/compute/docs/reference/rest/v1/instances: deviceName "If not specified, the server
        chooses a default device name ... in the form persistent-disk-x", autoDelete false unless given, mode
        READ_WRITE unless given).  A disk of another zone is refused at once: "Invalid value for field
        'resource.source': '...'. Disk must be in the same zone as the instance." [400]
        (GoogleCloudPlatform/google-cloud-powershell#237); a disk not READY yet is not ready (resourceNotReady, as an
        instance answers).  A READ_WRITE disk some instance already uses fails in the operation: "The disk resource
        '...' is already being used by '...'" (cloudfoundry/bosh-google-cpi-release#280)."""
        inst = self._instance(p)
        source = body.get("source", "")
        named = re.fullmatch(r"(?:.*/)?zones/([^/]+)/disks/([^/]+)", source)
        if not named or named[1] not in ZONES or named[2] not in self.zone_disks[named[1]]:
            raise ApiError(
                400,
                "invalid",
                f"Invalid value for field 'resource.source': '{source}'. The referenced disk resource cannot be found.",
            )
        disk = self.zone_disks[named[1]][named[2]]
        if named[1] != ZONE:
            raise ApiError(
                400,
                "invalid",
                f"Invalid value for field 'resource.source': '{source}'. Disk must be in the same zone as the instance.",
            )
        if disk["status"] != "READY":  # the message as the fake's _not_ready words it for an instance
            raise ApiError(400, "resourceNotReady", f"The resource '{relative(disk['selfLink'])}' is not ready")
        index = len(inst["disks"])
        device = body.get("deviceName") or f"persistent-disk-{index}"
        # deviceName is "a unique device name" on the instance (the reference); the message is the fake's own.
        if any(d["deviceName"] == device for d in inst["disks"]):
            raise ApiError(
                400,
                "invalid",
                f"Invalid value for field 'resource.deviceName': '{device}'. The device name is already in use.",
            )
        mode = body.get("mode", "READ_WRITE")

        def complete():
            if mode == "READ_WRITE" and disk["users"]:
                return (
                    "RESOURCE_IN_USE_BY_ANOTHER_RESOURCE",
                    f"The disk resource '{relative(disk['selfLink'])}' is already being used by "
                    f"'{relative(disk['users'][0])}'",
                    (400, "BAD REQUEST"),
                )
            inst["disks"].append(
                {
                    "kind": "compute#attachedDisk",
                    "type": "PERSISTENT",
                    "mode": mode,
                    "source": disk["selfLink"],
                    "deviceName": device,
                    "index": index,
                    "boot": False,
                    "autoDelete": body.get("autoDelete", False),
                    "interface": body.get("interface", "SCSI"),
                    "diskSizeGb": disk["sizeGb"],
                }
            )
            disk["users"].append(inst["selfLink"])
            disk["lastAttachTimestamp"] = now()

        return self._operation("attachDisk", inst, f"zones/{ZONE}", complete)

    @route("POST", r"/zones/(?P<zone>[^/]+)/instances/(?P<instance>[^/]+)/detachDisk")
    def detach_disk(self, p, q, body):
        """https://cloud.google.com/compute/docs/reference/rest/v1/instances/detachDisk: by the deviceName query
        parameter (the disk's own name is no device name: a name no disk was attached under is "No attached disk
        found", GoogleCloudPlatform/google-cloud-powershell#410); the disk's users lose the instance."""
        inst = self._instance(p)
        device = q.get("deviceName", "")
        attached = next((d for d in inst["disks"] if d["deviceName"] == device), None)
        if attached is None:
            raise ApiError(
                400,
                "invalid",
                f"Invalid value for field 'deviceName': '{device}'. No attached disk found with device name '{device}'",
            )

        def complete():
            inst["disks"].remove(attached)
            disk = self._disk(ZONE, tail(attached["source"]))
            disk["users"] = [u for u in disk["users"] if u != inst["selfLink"]]
            disk["lastDetachTimestamp"] = now()

        return self._operation("detachDisk", inst, f"zones/{ZONE}", complete)

    def preempt(self, name: str) -> None:
        """What GCE does to a SPOT VM with instanceTerminationAction STOP when it reclaims capacity."""
        with self._lock:
            self.instances[name].update(status="TERMINATED", lastStopTimestamp=now())
