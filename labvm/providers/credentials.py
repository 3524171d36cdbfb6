"""No credentials where a cloud's SDK looks for them: an error of its own kind, so that a verb that only asks
(`--plan`, `check`) can tell "could not look" from a refusal, and every verb words it with the one line its
cloud's API client gives (`no_credentials` in each cloud's api.py)."""

from __future__ import annotations

from ..errors import LabvmError


class NoCredentials(LabvmError):
    """The SDK of `cloud` found no credentials; the message names where it looks and the next step."""

    def __init__(self, message: str, cloud: str):
        super().__init__(message)
        self.cloud = cloud
