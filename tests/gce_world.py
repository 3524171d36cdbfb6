"""The GCE test world: clients of the fake of fake_gce.py, and what the tests say of it."""

from contextlib import contextmanager

import yaml
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import compute_v1

from labvm import config

PROJECT, ZONE, REGION = "proj", "us-west1-b", "us-west1"


@contextmanager
def fake_gce_for(lab):
    """The fake Compute Engine, and a laptop whose `inv` reaches it (and nothing of Google's)."""
    from fake_gce import FakeGce

    with FakeGce() as fake:
        lab.extra_env.update(
            LABVM_GCE_ENDPOINT=fake.endpoint,
            LABVM_OWNER="hedy",
            # google.auth must never probe a metadata server off this machine.
            NO_GCE_CHECK="true",
            GCE_METADATA_HOST="127.0.0.1:9",
            GCE_METADATA_IP="127.0.0.1:9",
            CLOUDSDK_CONFIG=str(lab.directory / "gcloud"),
        )
        lab.extra_env.pop("GOOGLE_APPLICATION_CREDENTIALS", None)
        yield fake


DEBIAN = "projects/debian-cloud/global/images/family/debian-12"


class Clients:
    def __init__(self, endpoint: str):
        def make(cls):
            return cls(
                credentials=AnonymousCredentials(),
                transport="rest",
                client_options=ClientOptions(api_endpoint=endpoint),
            )

        self.instances = make(compute_v1.InstancesClient)
        self.zone_ops = make(compute_v1.ZoneOperationsClient)
        self.region_ops = make(compute_v1.RegionOperationsClient)
        self.global_ops = make(compute_v1.GlobalOperationsClient)
        self.addresses = make(compute_v1.AddressesClient)
        self.firewalls = make(compute_v1.FirewallsClient)
        self.images = make(compute_v1.ImagesClient)
        self.machine_types = make(compute_v1.MachineTypesClient)
        self.networks = make(compute_v1.NetworksClient)
        self.projects = make(compute_v1.ProjectsClient)
        self.regions = make(compute_v1.RegionsClient)
        self.zones = make(compute_v1.ZonesClient)

    def wait_zone(self, op):
        return self.zone_ops.wait(project=PROJECT, zone=ZONE, operation=op.name)

    def wait_region(self, op):
        return self.region_ops.wait(project=PROJECT, region=REGION, operation=op.name)

    def wait_global(self, op):
        return self.global_ops.wait(project=PROJECT, operation=op.name)

    def instance(self, name):
        return self.instances.get(project=PROJECT, zone=ZONE, instance=name)


def instance_resource(name="lab-1", nat_ip=None, machine_type="e2-medium"):
    access = compute_v1.AccessConfig(name="External NAT", type_="ONE_TO_ONE_NAT", network_tier="PREMIUM")
    if nat_ip:
        access.nat_i_p = nat_ip
    return compute_v1.Instance(
        name=name,
        machine_type=f"zones/{ZONE}/machineTypes/{machine_type}",
        disks=[
            compute_v1.AttachedDisk(
                boot=True,
                auto_delete=True,
                initialize_params=compute_v1.AttachedDiskInitializeParams(source_image=DEBIAN, disk_size_gb=20),
            )
        ],
        network_interfaces=[compute_v1.NetworkInterface(network="global/networks/default", access_configs=[access])],
        metadata=compute_v1.Metadata(items=[compute_v1.Items(key="ssh-keys", value="hedy:ssh-ed25519 AAAA hedy")]),
        labels={"labvm-profile": "gce", "labvm": "yes"},
        scheduling=compute_v1.Scheduling(provisioning_model="SPOT", instance_termination_action="STOP"),
    )


KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGxhYnZtbGFidm1sYWJ2bWxhYnZtbGFidm1sYWJ2bWxh labvm"


def provider(tmp_path, owner=None, monkeypatch=None, **settings):
    """A GceProvider for profile `gce` of a hosts.yml holding these settings."""
    from labvm.providers.gce import GceProvider

    if owner:
        monkeypatch.setenv("LABVM_OWNER", owner)
    profile = {
        "provider": "gce",
        "project": "proj",
        "zone": ZONE,
        "user": "debian",
        "machine_type": "e2-small",
        "image_family": "debian-12",
        "ssh_cidr": "198.51.100.7/32",
        **settings,
    }
    hosts = tmp_path / "hosts.yml"
    hosts.write_text(yaml.safe_dump({"default": "gce", "profiles": {"gce": profile}}))
    return GceProvider(config.load(hosts).profile("gce"))
