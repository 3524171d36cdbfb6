"""The OpenStack test world: the fake of fake_openstack.py, and what the tests say of it."""

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from labvm import config
from labvm.providers.openstack import OpenStackProvider

SETTINGS = dict(
    provider="openstack",
    cloud="cades",
    image="Ubuntu 22.04",
    flavor="m1.medium",
    volume_size=40,
    network="lab-net",
    floating_ip_pool="public",
    user="cades",
)
LABELS = {"labvm:profile": "cades", "labvm:owner": "hedy"}
FAST = dict(wait=10, interval=0.01)


def new_key(comment: str = "labvm") -> str:
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    return key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode() + " " + comment


KEY = new_key()


def provider(place, **settings) -> OpenStackProvider:
    hosts = place / "hosts.yml"
    hosts.write_text(yaml.safe_dump({"profiles": {"cades": {**SETTINGS, **settings}}}))
    return OpenStackProvider(config.load(hosts).profile("cades"))


def one_line(error) -> str:
    message = str(error.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def boot(conn, name="labvm-cades", flavor="m1.medium", metadata=LABELS):
    image = conn.image.find_image("Ubuntu 22.04")
    network = conn.network.find_network("lab-net")
    return conn.compute.create_server(
        name=name,
        flavor_id=conn.compute.find_flavor(flavor).id,
        networks=[{"uuid": network.id}],
        metadata=metadata,
        block_device_mapping=[
            {
                "boot_index": 0,
                "uuid": image.id,
                "source_type": "image",
                "destination_type": "volume",
                "volume_size": 40,
                "delete_on_termination": True,
            }
        ],
    )
