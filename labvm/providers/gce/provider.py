"""The gce provider: the contract's verbs (cloud.CloudProvider) wired over the package's collaborators."""

from __future__ import annotations

from ...config import Profile
from ..base import Tags
from ..cloud import CloudProvider, Parts, owner
from . import price
from .api import GceApi
from .gpus import Gpus
from .head import GceHead
from .images import Images
from .inventory import GceInventory
from .names import GceNames
from .network import Network
from .oslogin import OsLogin
from .preflight import GcePreflight
from .price import GcePrice
from .settings import GceSettings
from .volumes import GceVolumes
from .workers import GceWorkers


class GceProvider(CloudProvider):
    """A GCE profile: the head VM, its workers, its data disk, network and login, `inv check` and `inv audit`."""

    NO_PRICE, NO_MONTHLY_PRICE = price.NO_PRICE, price.NO_MONTHLY_PRICE
    INSTEAD = {"--share": "grant roles/compute.imageUser on the project instead"}

    def __init__(self, profile: Profile):
        settings = GceSettings.of(profile)
        api = GceApi(profile, settings)
        names = GceNames(profile.name, owner())
        network = Network(api, settings, names, profile)
        gpus = Gpus(api, settings, profile)
        api.capacity_hint = gpus.capacity_hint
        images = Images(api, settings, names, gpus)
        login = OsLogin(api, profile)
        head = GceHead(api, settings, names, network, images, login, gpus, profile)
        workers = GceWorkers(api, head, names, network, images, profile)
        parts = Parts(
            head=head,
            images=images,
            network=network,
            workers=workers,
            preflight=GcePreflight(api, settings, names, network, images, login, head, gpus, profile),
            inventory=GceInventory(api),
            price=GcePrice(api, gpus),
            volumes=GceVolumes(api, names, profile),
        )
        super().__init__(profile, api, settings, Tags(names.labels["labvm-profile"], names.owner), parts)
        self.api: GceApi = api
        self.gce_settings = settings

    def where(self) -> str:
        """The zone's region."""
        return self.api.region

    def priced_as(self, size: str) -> str:
        """The machine type, and gpu:'s GPUs where they go with it (price.per_hour prices both)."""
        attached = self.gce_settings.accelerator
        if attached and size == self.gce_settings.machine_type:
            return f"{size}+{attached.count}x{attached.type}"
        return size
