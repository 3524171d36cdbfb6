"""How labvm logs in: ssh-keys metadata, an opt-out of the project's OS Login, or the key in the account's
OS Login profile where the organisation enforces it."""

from __future__ import annotations

import getpass
import os

from ...config import Profile
from ...errors import LabvmError
from ..base import from_cloud
from ..cloud import PLANNED
from .api import LOGIN_METADATA, GceApi


class OsLogin:
    """How labvm logs in to the profile's VMs, and the metadata that makes it so."""

    def __init__(self, api: GceApi, profile: Profile):
        self.api, self.profile = api, profile
        self.project = api.project

    def _project_oslogin(self) -> bool:
        """Project metadata enable-oslogin=TRUE: instances follow it unless their own metadata says otherwise."""
        project = self.api.call(self.api.projects.get, project=self.project)
        return any(
            item.key == "enable-oslogin" and item.value.upper() == "TRUE"
            for item in project.common_instance_metadata.items
        )

    def _oslogin_enforced(self) -> bool | None:
        """Organisation policy constraints/compute.requireOsLogin (then an instance's enable-oslogin=FALSE
        is ignored), read with Resource Manager's getEffectiveOrgPolicy; None when it cannot be read
        (no orgpolicy.policy.get permission). LABVM_GCE_OSLOGIN=required says so for every profile."""
        if os.environ.get("LABVM_GCE_OSLOGIN", "").lower() == "required":
            return True
        url = self.api.google(
            f"https://cloudresourcemanager.googleapis.com/v1/projects/{self.project}:getEffectiveOrgPolicy"
        )
        try:
            answer = self.api.session().post(url, json={"constraint": "constraints/compute.requireOsLogin"}, timeout=30)
        except OSError:
            return None
        if answer.status_code != 200:
            return None
        return bool(answer.json().get("booleanPolicy", {}).get("enforced"))

    def mode(self) -> tuple[str, str]:
        """(mode, detail): "metadata" (ssh-keys work), "opt-out" (project OS Login, the VM opts out) or
        "oslogin" (enforced: labvm's key goes to the account's OS Login profile)."""
        enforced = self._oslogin_enforced()
        if enforced:
            return "oslogin", "enforced by organisation policy (constraints/compute.requireOsLogin)"
        unknown = (
            ""
            if enforced is not None
            else " (organisation policy not readable: if SSH is refused, set LABVM_GCE_OSLOGIN=required)"
        )
        if self._project_oslogin():
            return "opt-out", f"on in project {self.project}: labvm's VMs opt out with enable-oslogin=FALSE{unknown}"
        return "metadata", f"off: labvm's key goes in the VM's ssh-keys metadata{unknown}"

    def metadata(self, public_key: str) -> dict[str, str]:
        """The instance metadata that lets labvm's key log in, its OS Login user's name among it where needed."""
        user = self.profile.user or getpass.getuser()
        metadata = {"ssh-keys": f"{user}:{public_key}"}
        mode, _ = self.mode()
        if mode == "opt-out":
            # An instance's own enable-oslogin overrides the project's
            # (https://cloud.google.com/compute/docs/oslogin/set-up-oslogin).
            metadata["enable-oslogin"] = "FALSE"
            print(
                f"gce: project {self.project} turns OS Login on; this VM opts out (enable-oslogin=FALSE) "
                "so labvm's key works",
                flush=True,
            )
        elif mode == "oslogin":
            account = self.account()
            metadata[LOGIN_METADATA] = login = self.api.mutate(
                f"import labvm's key into {account}'s OS Login profile",
                self._import_key,
                account,
                public_key,
                planned=PLANNED,
            )
            if not self.api.plan:
                print(
                    f"gce: OS Login is enforced here; labvm's key is in {account}'s login profile, "
                    f"logging in as {login}",
                    flush=True,
                )
        return metadata

    def account(self) -> str:
        """The Google account of the credentials: a service account names itself; a user's token
        tells through tokeninfo (ADC from gcloud carries the userinfo.email scope)."""
        from google.auth.transport.requests import Request

        credentials = self.api.credentials
        email = getattr(credentials, "service_account_email", "")
        if email and "@" in email:
            return email
        try:
            if not credentials.valid:
                credentials.refresh(Request())
            answer = self.api.session().get(
                self.api.google("https://oauth2.googleapis.com/tokeninfo"),
                params={"access_token": credentials.token},
                timeout=30,
            )
            email = answer.json().get("email", "") if answer.status_code == 200 else ""
        except Exception:  # anonymous or unrefreshable credentials: no account to name
            email = ""
        if not email:
            raise LabvmError(
                "OS Login is enforced in project {self.project} and labvm cannot tell your Google account; "
                "run `gcloud auth application-default login` (or use a service account key)".format(self=self)
            )
        return email

    def _import_key(self, account: str, public_key: str) -> str:
        """POST users/{account}:importSshPublicKey; the login is the POSIX username it answers
        (https://cloud.google.com/compute/docs/oslogin/rest/v1/users/importSshPublicKey)."""
        url = self.api.google(f"https://oslogin.googleapis.com/v1/users/{account}:importSshPublicKey")
        answer = self.api.session().post(url, params={"projectId": self.project}, json={"key": public_key}, timeout=30)
        if answer.status_code != 200:
            message = answer.json().get("error", {}).get("message", answer.text) if answer.content else answer.reason
            raise LabvmError(
                f"OS Login would not take labvm's key for {account}: {from_cloud(message)}; "
                "ask for roles/compute.osLogin on the project"
            )
        accounts = answer.json()["loginProfile"]["posixAccounts"]
        return next((a for a in accounts if a.get("primary")), accounts[0])["username"]
