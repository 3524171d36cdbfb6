"""local and ssh profiles: a machine labvm reaches but does not make, power or delete (the null provider)."""

from __future__ import annotations

from .base import Instance, Provider


class ExistingMachine(Provider):
    """Always there and running at its `address:`; it does none of FEATURES, so every lifecycle verb raises
    Unsupported naming the profile."""

    def find(self) -> Instance:
        """Its `address:` (this machine for `local`), running."""
        address = self.profile.address or "127.0.0.1"
        return Instance(self.profile.name, self.profile.name, "running", address)

    def why_not(self, feature: str) -> str:
        """It uses the machine, it does not manage it; `stop` names `down`, the verb that does what it can here."""
        reason = super().why_not(feature)
        if feature == "stop":
            return f"{reason}; `inv down --host {self.profile.name}` syncs notebooks home and stops the notebook"
        return reason
