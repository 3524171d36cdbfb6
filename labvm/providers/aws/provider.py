"""The aws provider: the contract's verbs (cloud.CloudProvider) wired over the package's collaborators."""

from __future__ import annotations

from ...config import Profile
from ..base import CLOUD_FEATURES, Tags
from ..cloud import CloudProvider, Parts, owner
from . import price
from .api import Ec2Api
from .head import AwsHead
from .gpus import Gpus
from .images import Images
from .inventory import AwsInventory
from .names import AwsNames
from .network import Network
from .preflight import AwsPreflight
from .price import AwsPrice
from .settings import AwsSettings
from .volumes import AwsVolumes
from .workers import AwsWorkers


class AwsProvider(CloudProvider):
    """The provider of aws profiles: the contract's verbs from the collaborators that do them."""

    FEATURES = CLOUD_FEATURES | {"--share"}
    NO_PRICE, NO_MONTHLY_PRICE = price.NO_PRICE, price.NO_MONTHLY_PRICE

    def __init__(self, profile: Profile):
        settings = AwsSettings.of(profile)
        api = Ec2Api(profile, settings)
        names = AwsNames(profile.name, owner(), settings.tags)
        network = Network(api, settings, names, profile)
        gpus = Gpus(api)
        images = Images(api, settings, names, profile, gpus)
        head = AwsHead(api, settings, names, network, images, profile, gpus)
        parts = Parts(
            head=head,
            images=images,
            network=network,
            workers=AwsWorkers(api, head, network, names, profile),
            preflight=AwsPreflight(api, settings, names, network, images, profile, gpus),
            inventory=AwsInventory(api),
            price=AwsPrice(api, settings, network),
            volumes=AwsVolumes(api, names, profile),
        )
        super().__init__(profile, api, settings, Tags(names.profile, names.owner), parts)
        self.api: Ec2Api = api

    def where(self) -> str:
        """The region."""
        return self.api.scope
