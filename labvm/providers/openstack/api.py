"""The connection to one clouds.yaml entry: the call that turns openstacksdk's and keystoneauth's errors into
one line, the server's view in labvm's words, waits, and the stand-ins of --plan (whose id is PLANNED:
nothing is ever read by that id).  Every call that changes the project passes `mutate`, the gate of
cloud.CloudApi."""

from __future__ import annotations

import base64
import functools
import hashlib
import os
import sys
from collections.abc import Callable, Iterator
from datetime import datetime
from types import SimpleNamespace
from typing import Any, TypeVar, overload

from ...config import Profile
from ...errors import LabvmError
from ..base import IMAGE_AVAILABLE, IMAGE_FAILED, IMAGE_PENDING, Instance, from_cloud, parse_time
from ..cloud import PLANNED, CloudApi
from ..credentials import NoCredentials
from ..registry import sdk_files_problem
from ..web_page import WebPage, is_web_page, web_page
from .settings import OpenStackSettings

T = TypeVar("T")
# The server actions that power a stopped server on again (nova/compute/instance_actions.py START, UNSHELVE, RESUME)
RESTARTS = ("start", "unshelve", "resume")
SHELVED = ("SHELVED", "SHELVED_OFFLOADED")  # SHELVED stays so where the cloud does not offload at once
STATES = {
    "ACTIVE": "running",
    "SHUTOFF": "stopped",
    "SHELVED": "stopped",
    "SHELVED_OFFLOADED": "stopped",
    "ERROR": "error",
}
# Glance's image statuses (https://docs.openstack.org/glance/latest/user/statuses.html) in labvm's words:
# "killed" is an upload that failed; Glance has no "error", the only failure openstacksdk's wait knows.
IMAGE_STATES = {
    "active": IMAGE_AVAILABLE,
    "queued": IMAGE_PENDING,
    "saving": IMAGE_PENDING,
    "uploading": IMAGE_PENDING,
    "importing": IMAGE_PENDING,
    "killed": IMAGE_FAILED,
    "deleted": IMAGE_FAILED,
    "pending_delete": IMAGE_FAILED,
    "deactivated": IMAGE_FAILED,
}
WAIT = 900  # seconds a server transition may take
IMAGE_WAIT = 1800  # seconds a snapshot may take
QUOTA_HELP = "free some (openstack server list) or ask for more (cades-help@ornl.gov raises CADES quotas)"
# openstacksdk's files, each as .yaml, .yml or .json; it reads the first of each it finds along its search
# path (openstack/config/loader.py: CONFIG_FILES, SECURE_FILES, VENDOR_FILES over CONFIG_SEARCH_PATH).
SDK_FILES = ("clouds", "secure", "clouds-public")


def nova_fingerprint(public_key: str) -> str:
    """What Nova shows as a key pair's fingerprint: MD5 of the decoded key blob, colon-separated
    (nova/crypto.py generate_fingerprint)."""
    digest = hashlib.md5(base64.b64decode(public_key.split()[1]), usedforsecurity=False).hexdigest()
    return ":".join(a + b for a, b in zip(digest[::2], digest[1::2]))


def image_state(glance_status: str) -> str:
    """Glance's status in labvm's words."""
    return IMAGE_STATES.get(glance_status, IMAGE_PENDING)


def more(count: int) -> str:
    """How many more a quota line asks room for."""
    return "one more" if count == 1 else f"{count} more"


def config_folders() -> list[str]:
    """Where labvm lets openstacksdk look for its files: its own search path without its first folder, the
    current one (loader.CONFIG_SEARCH_PATH starts with os.getcwd()).  A checkout's clouds.yaml there
    would redefine an entry, and your secure.yaml's password would go to the auth_url it names."""
    from openstack.config import loader

    return list(
        dict.fromkeys(
            [loader.CONFIG_HOME, loader.UNIX_CONFIG_HOME, loader.SITE_CONFIG_HOME, loader.UNIX_SITE_CONFIG_HOME]
        )
    )


def sdk_files(kind: str, folder: str) -> list[str]:
    """The names openstacksdk gives one of its files (SDK_FILES) in a folder."""
    from openstack.config import loader

    return [os.path.join(folder, kind + suffix) for suffix in loader.YAML_SUFFIXES + loader.JSON_SUFFIXES]


@functools.cache
def say_once(note: str) -> None:
    """A note on stderr once per process, however many profiles connect (`inv audit`)."""
    print(note, file=sys.stderr, flush=True)


def refuse_web_pages(response: Any, *args: Any, **kwargs: Any) -> Any:
    """A requests response hook on the connection's session: an HTML answer (a Wi-Fi login page, a proxy's
    page) stops the request where it arrives.  Unstopped, keystoneauth calls a 200 page an "Invalid response",
    a 500 page an InternalServerError, and openstacksdk parses a 200 page as an empty resource (get_limits
    answers no limits, find_flavor no flavor) or fails on it in a list (requests' JSONDecodeError)."""
    if is_web_page(response.headers):
        where = from_cloud(str(response.url).split("?")[0])
        raise WebPage(web_page("OpenStack", f"from {where}"))
    return response


def planned(thing: Any) -> bool:
    """Whether this is a stand-in for something --plan only printed (never to be read from the cloud)."""
    return getattr(thing, "id", None) == PLANNED


def instance_of(server: Any) -> Instance:
    """Nova's server in labvm's words."""
    flavor = server.flavor or {}
    return Instance(
        server.id,
        server.name,
        STATES.get(server.status, server.status.lower()),
        address_of(server),
        flavor.get("original_name") or flavor.get("id", ""),
        private_address=address_of(server, "fixed"),
        zone=server.availability_zone or "",  # OS-EXT-AZ:availability_zone: where its volumes must be
    )  # no `started`: Nova's server record does not say its last start (OpenStackApi.last_start does)


def address_of(server: Any, kind: str = "floating") -> str:
    """The server's address of this kind (Nova's OS-EXT-IPS:type), else its first fixed one.  IPv4
    first: a dual-stack network lists IPv6 too, and floating IPs and the cluster rule are IPv4
    (neutron/db/l3_db.py _internal_fip_assoc_data maps a floating IP to the IPv4 fixed address)."""
    entries = [e for group in (server.addresses or {}).values() for e in group]
    entries.sort(key=lambda e: e.get("version", 4) != 4)
    for entry in entries:
        if entry.get("OS-EXT-IPS:type") == kind:
            return entry["addr"]
    return next((e.get("addr", "") for e in entries if e.get("OS-EXT-IPS:type", "fixed") == "fixed"), "")


def fault(server: Any) -> str:
    """Nova shows the last fault only while a server is ERROR (views/servers.py _fault_statuses)."""
    return from_cloud((server.fault or {}).get("message") or "Nova recorded no fault message")


def as_if(server: Any, status: str) -> SimpleNamespace:
    """A stand-in of the server in another status (--plan: what a change would leave)."""
    fields = (
        "id",
        "name",
        "metadata",
        "addresses",
        "flavor",
        "attached_volumes",
        "image",
        "created_at",
        "launched_at",
        "availability_zone",
    )
    return SimpleNamespace(**{f: getattr(server, f, None) for f in fields}, status=status, task_state=None, fault=None)


def planned_server(name: str, flavor: Any, metadata: dict) -> SimpleNamespace:
    """What a planned boot answers."""
    return SimpleNamespace(
        id=PLANNED,
        name=name,
        status="BUILD",
        task_state=None,
        metadata=metadata,
        addresses={},
        flavor={"original_name": flavor.name},
        attached_volumes=[],
        image=None,
        created_at="",
        launched_at=None,
        fault=None,
        availability_zone="",  # Nova's scheduler picks it
    )


class OpenStackApi(CloudApi):
    """openstacksdk's connection to one clouds.yaml entry (imported only here, when such a profile is used)."""

    def __init__(self, profile: Profile, settings: OpenStackSettings):
        from openstack import exceptions

        super().__init__("openstack")
        self.profile = profile
        self.exceptions = exceptions
        if not settings.entry:
            raise LabvmError(f"{profile.key('cloud')}: not set; name an entry of your clouds.yaml (or set OS_CLOUD)")
        self.entry = settings.entry  # the clouds.yaml entry
        self.cli = f"openstack --os-cloud {self.entry}"
        self.conn = self._connect()
        self._require_password()
        # Log in now: the SDK would otherwise do it inside the first proxy attribute access.
        self.call(self.conn.session.get_token)

    @property
    def scope(self) -> str:
        """The clouds.yaml entry: what one set of OpenStack credentials sees."""
        return self.entry

    def _connect(self) -> Any:
        """A connection to the entry, from the user's own files only (config_folders; OS_CLIENT_CONFIG_FILE
        and OS_CLIENT_SECURE_FILE from the shell come first, as openstacksdk puts them)."""
        from openstack import connection, exceptions
        from openstack.config import loader

        problem = sdk_files_problem(self.cloud)
        if problem:
            raise LabvmError(problem)
        folders = config_folders()
        files = {kind: [name for folder in folders for name in sdk_files(kind, folder)] for kind in SDK_FILES}
        try:
            config = loader.OpenStackConfig(
                config_files=files["clouds"], secure_files=files["secure"], vendor_files=files["clouds-public"]
            )
        except exceptions.ConfigException as e:
            raise LabvmError(f"{self.profile.key('cloud')}: {from_cloud(e)}") from None
        looked = f"OS_CLIENT_CONFIG_FILE, then {', '.join(folders)}"
        ignored = self._ignored_here(config, folders)
        for name in ignored:
            say_once(
                f"openstack: {name} is not read: labvm reads openstacksdk's files only from {looked} (one "
                f"here may have come with a checkout); the `openstack` CLI run in this folder reads it first"
            )
        if self.entry not in config.cloud_config["clouds"]:
            if self.entry == "envvars":  # openstacksdk's name for "the OS_* variables of an openrc"
                raise LabvmError(
                    f"{self.profile.key('cloud')}: envvars reads OS_AUTH_URL, OS_USERNAME, ... from the environment: "
                    f"`source` your openrc file (Horizon: API Access, Download OpenStack RC File) first"
                )
            unread = "".join(f"; {name} is not read" for name in ignored)
            raise NoCredentials(
                f"{self.profile.key('cloud')}: no entry {self.entry!r} in "
                f"{config.config_filename or 'any clouds.yaml'} "
                f"(labvm reads clouds.yaml from {looked}, never from the current folder{unread}); add "
                f"{self.entry!r} to clouds.yaml (~/.config/openstack/clouds.yaml, or OS_CLIENT_CONFIG_FILE)",
                self.cloud,
            )
        try:
            conn = connection.Connection(config=config.get_one(cloud=self.entry))
        except exceptions.ConfigException as e:
            raise LabvmError(
                f"{self.profile.key('cloud')}: {from_cloud(e)} (clouds.yaml entry {self.entry!r} in "
                f"{config.config_filename})"
            ) from None
        conn.session.session.hooks["response"].append(refuse_web_pages)
        return conn

    @staticmethod
    def _ignored_here(config: Any, folders: list[str]) -> list[str]:
        """openstacksdk's files in the current folder that it would have read first and labvm did not."""
        here = os.getcwd()
        if any(os.path.realpath(here) == os.path.realpath(folder) for folder in folders):
            return []
        read = {os.path.realpath(name) for name in (config.config_filename, config.secure_config_filename) if name}
        return [
            name
            for kind in SDK_FILES
            for name in sdk_files(kind, here)
            if os.path.isfile(name) and os.path.realpath(name) not in read
        ]

    def _require_password(self) -> None:
        """keystoneauth raises a bare Exception("password is a required attribute") at login."""
        config = self.conn.config.config
        if config.get("auth_type") not in ("password", "v3password") or config.get("auth", {}).get("password"):
            return
        if self.entry == "envvars":
            raise LabvmError("OS_PASSWORD is not set: `source` your openrc file again (it asks for the password)")
        raise LabvmError(
            f"clouds.yaml entry {self.entry!r} has no password (Horizon's download leaves it out): add "
            f"`password:` under its auth, put it in secure.yaml, or use an application credential "
            f"(auth_type: v3applicationcredential)"
        )

    @overload
    def call(self, action: Callable[..., Iterator[T]], *args: Any, **kwargs: Any) -> list[T]: ...

    @overload
    def call(self, action: Callable[..., T], *args: Any, **kwargs: Any) -> T: ...

    def call(self, action: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """One SDK call, its errors turned into one line with the next step.  A list comes back whole:
        openstacksdk's list calls return generators that ask the cloud only as they are iterated
        (openstack/resource.py Resource.list), so a 503 met later would escape these lines as a traceback."""
        from keystoneauth1 import exceptions as ksa

        refused = LabvmError(
            f"OpenStack refused the credentials of clouds.yaml entry {self.entry!r}; check its auth "
            f"section (`{self.cli} token issue` tries them)"
        )
        auth_url = self.conn.config.config.get("auth", {}).get("auth_url", "")
        untrusted = LabvmError(
            f"the TLS certificate of {auth_url} is not trusted here; set `cacert: /path/to/your-site-ca.pem` "
            f"in clouds.yaml entry {self.entry!r} (your site's CA bundle)"
        )
        unreachable = LabvmError(
            f"cannot reach the OpenStack API of {self.entry!r} ({auth_url}): no answer; is the VPN up? "
            f"(`{self.cli} token issue` tries the same)"
        )
        try:
            answer = action(*args, **kwargs)
            return list(answer) if isinstance(answer, Iterator) else answer
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
            raise LabvmError(
                f"{auth_url}: {from_cloud(e)}; check auth_url in clouds.yaml entry {self.entry!r}"
            ) from None
        except self.exceptions.HttpException as e:
            if e.status_code == 401:
                raise refused from None
            message = from_cloud(e.details or e.message or e)
            if (
                e.status_code == 413 or "quota" in message.lower()
            ):  # Cinder's QuotaError family is 413 (cinder/exception.py)
                raise LabvmError(
                    f"OpenStack quota: {message}; free resources or ask for more (CADES Birthright "
                    f"defaults are small and raised by request to cades-help@ornl.gov)"
                ) from None
            if "No more IP addresses" in message:
                raise LabvmError(
                    f"OpenStack: {message}; release floating IPs you no longer use (openstack floating ip list) "
                    f"or set {self.profile.key('floating_ip_pool')} to another external network"
                ) from None
            if e.status_code in (502, 503, 504):  # the cloud is down or busy (a load balancer with no healthy API)
                where = from_cloud(str(e.url or "").split("?")[0])
                raise LabvmError(
                    f"OpenStack answered {e.status_code} for {where}: {message}; nothing is wrong on this "
                    f"side: try again in a few minutes"
                ) from None
            raise LabvmError(f"OpenStack: {message}") from None
        except self.exceptions.SDKException as e:  # a wait that failed or timed out, among others
            raise LabvmError(f"OpenStack: {from_cloud(e)}") from None

    def volume_limits(self) -> Any:
        """Cinder's absolute limits and usage (https://docs.openstack.org/api-ref/block-storage/v3/#limits-limits);
        None on a cloud without Block Storage."""
        if not self.conn.has_service("block-storage"):
            return None
        return self.call(self.conn.block_storage.get_limits).absolute

    def server(self, server_id: str) -> Any:
        """Nova's server of this id, as it is now."""
        return self.call(self.conn.compute.get_server, server_id)

    def last_start(self, server: Any) -> datetime | None:
        """The later of Nova's launched_at and the newest start, unshelve or resume in the server's action log
        (None for a server that never launched).  launched_at moves on build, unshelve and resize, never on
        os-start (nova/compute/manager.py start_instance), labvm's default `down`.  The log: List Actions For
        Server (https://docs.openstack.org/api-ref/compute/#list-actions-for-server), openstacksdk's
        conn.compute.server_actions."""
        actions = self.call(self.conn.compute.server_actions, server)
        starts = [parse_time(a.start_time) for a in actions if a.action in RESTARTS]
        stamps = [stamp for stamp in (parse_time(server.launched_at), *starts) if stamp]
        return max(stamps) if stamps else None

    def replace_hint(self, server: Any) -> str:
        """The way out of a server in ERROR: `up --replace` for the head; for a worker, `cluster`, which deletes
        a worker in ERROR and makes it again (labvm/workers.py)."""
        if (server.metadata or {}).get("labvm:role") == "worker":
            return f"`inv cluster --host {self.profile.name}` deletes it and makes it again"
        return f"`inv up --host {self.profile.name} --replace` deletes it and makes a new one"

    def wait(self, server: Any, statuses: tuple[str, ...], what: str) -> Any:
        """Until the server is in one of `statuses` with no task running; ERROR ends the wait with its fault.
        Under --plan only printed: the server as it would then be."""
        if self.plan:
            self.wait_until(what, None, WAIT)
            return as_if(server, statuses[0])

        def settled() -> Any:
            current = self.server(server.id)
            if current.status == "ERROR":
                raise LabvmError(f"{server.id} went ERROR: {fault(current)}; {self.replace_hint(current)}")
            return current if current.status in statuses and not current.task_state else None

        return self.wait_until(what, settled, WAIT, late=f"`{self.cli} server show {server.id}`")

    def servers(self, labels: dict[str, str]) -> list:
        """Every server carrying these labels (a profile's and owner's: the head and its workers)."""
        return [
            s
            for s in self.call(self.conn.compute.servers, details=True)
            if all((s.metadata or {}).get(k) == v for k, v in labels.items())
        ]
