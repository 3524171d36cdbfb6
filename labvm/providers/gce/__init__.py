"""Google Compute Engine profiles on google-cloud-compute (imported only in this package: it takes 1.5 s).

Credentials are Google Application Default Credentials only.  The instance carries the labels
labvm-profile and labvm-owner and is found by them; its name, its firewall rule and its static address
carry both too, so lab members sharing a project and a hosts.yml never meet.  Every change goes through
`mutate` (the --plan gate).

`GceProvider` is the contract's template (cloud.CloudProvider) over these collaborators, one module each:
`settings`, `names` (names and labels), `api` (clients, credentials, the error-translating call, operation
waits), `network` (network, SSH rule, static IP), `oslogin` (how labvm logs in), `gpus` (a machine's GPUs, their
quota, the driver image, the zones that offer them), `images`, `head` (the
profile's VM), `workers` (a Dask cluster's VMs), `preflight` (`inv check`, quota by machine family),
`inventory` (`inv audit`), `price` (the billing catalog).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .settings import GceSettings

if TYPE_CHECKING:
    from .provider import GceProvider

__all__ = ["GceProvider", "GceSettings"]


def __getattr__(name: str) -> Any:
    """GceProvider, imported on first use: config reads GceSettings (the profile's keys) without the parts
    the provider wires, and so without their imports."""
    if name == "GceProvider":
        from .provider import GceProvider

        return GceProvider
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
