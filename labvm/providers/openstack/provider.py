"""The openstack provider: the contract's verbs (cloud.CloudProvider) wired over the package's collaborators."""

from __future__ import annotations

from ...config import Profile
from ..base import Tags
from ..cloud import CloudProvider, Parts, owner
from .api import OpenStackApi
from .head import OpenStackHead
from .images import Images
from .inventory import OpenStackInventory
from .names import OpenStackNames
from .network import Network
from .preflight import OpenStackPreflight
from .settings import OpenStackSettings
from .volumes import OpenStackVolumes
from .workers import OpenStackWorkers


class OpenStackProvider(CloudProvider):
    """An OpenStack profile: the contract of base.Provider on Nova, Neutron, Glance and Cinder."""

    NO_PRICE = NO_MONTHLY_PRICE = "OpenStack publishes no prices"
    INSTEAD = {"--share": "`openstack image set --shared` and `openstack image add project` share an image there"}

    def __init__(self, profile: Profile):
        settings = OpenStackSettings.of(profile)
        api = OpenStackApi(profile, settings)
        names = OpenStackNames(profile.name, owner())
        network = Network(api, settings, names, profile)
        images = Images(api, settings, names, profile)
        head = OpenStackHead(api, settings, names, network, images, profile)
        parts = Parts(
            head=head,
            images=images,
            network=network,
            workers=OpenStackWorkers(api, head, settings, names, network, images, profile),
            preflight=OpenStackPreflight(api, settings, names, network, images, head, profile),
            inventory=OpenStackInventory(api),
            volumes=OpenStackVolumes(api, names, profile),
        )
        super().__init__(profile, api, settings, Tags(names.profile, names.owner), parts)
        self.api: OpenStackApi = api

    def where(self) -> str:
        """The clouds.yaml entry."""
        return self.api.entry
