"""GPUs on GCE against tests/fake_gce.py (issue 30): gpu: on N1 (guestAccelerators, onHostMaintenance TERMINATE),
the accelerator-optimized types' own GPUs, the Deep Learning VM image when the profile names none, GPU quota in
`inv check`, a full zone's next step, the price with the GPUs."""

import pytest

from fake_gce import DLVM_FAMILY, LIVE_MIGRATION_MESSAGE, ZONE
from gce_world import KEY, provider
from labvm.errors import LabvmError

T4 = {"type": "nvidia-tesla-t4", "count": 1}


def n1_t4(tmp_path, **settings):
    """An N1 + T4 profile that names no image of its own."""
    return provider(tmp_path, machine_type="n1-standard-4", gpu=T4, image_family=None, **settings)


def checks(gce) -> dict:
    return {c.name: c for c in gce.preflight(KEY)}


def test_n1_with_a_t4_sends_guest_accelerators_terminate_and_the_deep_learning_image(emulator, tmp_path):
    made = n1_t4(tmp_path).create(public_key=KEY)
    instance = emulator.instances[made.id]
    assert instance["guestAccelerators"] == [
        {"acceleratorType": f"zones/{ZONE}/acceleratorTypes/nvidia-tesla-t4", "acceleratorCount": 1}
    ]
    assert instance["scheduling"]["onHostMaintenance"] == "TERMINATE"
    boot = emulator.disks[instance["disks"][0]["source"].rsplit("/", 1)[-1]]
    assert "/projects/deeplearning-platform-release/global/images/common-cu129-" in boot["sourceImage"]
    assert {"key": "install-nvidia-driver", "value": "True"} in instance["metadata"]["items"]


def test_an_accelerator_optimized_type_terminates_on_maintenance_without_gpu_key(emulator, tmp_path):
    emulator.quota_limits["G2_CPUS"] = 8.0
    made = provider(tmp_path, machine_type="g2-standard-4", image_family=None).create(public_key=KEY)
    instance = emulator.instances[made.id]
    assert "guestAccelerators" not in instance and instance["scheduling"]["onHostMaintenance"] == "TERMINATE"
    boot = emulator.disks[instance["disks"][0]["source"].rsplit("/", 1)[-1]]
    assert "deeplearning-platform-release" in boot["sourceImage"]


def test_a_written_image_wins_and_a_cpu_type_keeps_debian(emulator, tmp_path):
    gpu = provider(tmp_path, machine_type="n1-standard-4", gpu=T4, image_family="debian-12").create(public_key=KEY)
    boot = emulator.disks[emulator.instances[gpu.id]["disks"][0]["source"].rsplit("/", 1)[-1]]
    assert "/debian-cloud/" in boot["sourceImage"]
    assert not any(i["key"] == "install-nvidia-driver" for i in emulator.instances[gpu.id]["metadata"]["items"])


def test_gpu_on_a_type_that_takes_none_is_one_line(emulator, tmp_path):
    with pytest.raises(LabvmError, match=r"profiles\.gce\.gpu: GCE attaches GPUs to N1 machine types only, not e2"):
        provider(tmp_path, machine_type="e2-standard-4", gpu=T4).create(public_key=KEY)
    assert emulator.instances == {}


def test_an_unknown_accelerator_names_the_zones_closest(emulator, tmp_path):
    gce = provider(tmp_path, machine_type="n1-standard-4", gpu={"type": "nvidia-tesla-t5"})
    with pytest.raises(LabvmError) as raised:
        gce.create(public_key=KEY)
    assert "hosts.yml: profiles.gce.gpu.type: no accelerator type in us-west1-b 'nvidia-tesla-t5'" in str(raised.value)
    assert "closest: nvidia-tesla-t4" in str(raised.value) and "\n" not in str(raised.value)
    too_many = provider(tmp_path, machine_type="n1-standard-4", gpu={"type": "nvidia-tesla-t4", "count": 8})
    with pytest.raises(LabvmError, match=r"gpu\.count: nvidia-tesla-t4 comes 4 at most to a VM in us-west1-b, not 8"):
        too_many.create(public_key=KEY)


def test_the_fake_refuses_what_gce_refuses(emulator):
    from gce_world import Clients, instance_resource
    from google.api_core import exceptions
    from google.cloud import compute_v1

    clients = Clients(emulator.endpoint)
    t4 = compute_v1.AcceleratorConfig(
        accelerator_type=f"zones/{ZONE}/acceleratorTypes/nvidia-tesla-t4", accelerator_count=1
    )
    migrating = instance_resource("lab-1", machine_type="n1-standard-4")
    migrating.scheduling = compute_v1.Scheduling()
    migrating.guest_accelerators = [t4]
    with pytest.raises(exceptions.BadRequest, match="do not support live migration"):
        clients.instances.insert(project="proj", zone=ZONE, instance_resource=migrating)
    on_e2 = instance_resource("lab-2", machine_type="e2-standard-4")
    on_e2.scheduling = compute_v1.Scheduling(on_host_maintenance="TERMINATE")
    on_e2.guest_accelerators = [t4]
    with pytest.raises(exceptions.BadRequest, match="does not support accelerators"):
        clients.instances.insert(project="proj", zone=ZONE, instance_resource=on_e2)
    assert LIVE_MIGRATION_MESSAGE.startswith("Invalid resource usage") and DLVM_FAMILY.startswith("common-cu")


def test_check_counts_the_gpus_against_their_quota(emulator, tmp_path):
    found = checks(n1_t4(tmp_path))
    assert found["size"].ok and found["size"].detail == "n1-standard-4 with 1 nvidia-tesla-t4 is offered in us-west1-b"
    assert found["quota"].ok and "NVIDIA_T4_GPUS 0/4" in found["quota"].detail
    assert "GPUS_ALL_REGIONS 0/8" in found["quota"].detail
    assert found["image"].detail.startswith("common-cu129-")
    emulator.quota_limits["NVIDIA_T4_GPUS"] = 0.0
    short = checks(n1_t4(tmp_path))["quota"]
    assert not short.ok and "NVIDIA_T4_GPUS 0/0 leaves no room for 1 more" in short.detail
    emulator.project_quota_limits["GPUS_ALL_REGIONS"] = 0.0
    emulator.quota_limits["NVIDIA_T4_GPUS"] = 4.0
    emulator.quota_limits["A2_CPUS"] = 16.0
    short = checks(provider(tmp_path, machine_type="a2-highgpu-1g"))["quota"]
    assert not short.ok and "GPUS_ALL_REGIONS 0/0 leaves no room for 1 more" in short.detail


def test_spot_gpus_draw_from_the_preemptible_quota_where_granted(emulator, tmp_path):
    emulator.quota_limits["PREEMPTIBLE_NVIDIA_T4_GPUS"] = 2.0
    emulator.quota_limits["PREEMPTIBLE_CPUS"] = 8.0
    found = checks(n1_t4(tmp_path, spot=True))["quota"]
    assert found.ok and "PREEMPTIBLE_NVIDIA_T4_GPUS 0/2" in found.detail


def test_a_full_zone_names_the_zones_that_offer_the_gpu(emulator, tmp_path):
    emulator.quota_limits["A2_CPUS"] = 16.0
    emulator.zone_exhausted = True
    with pytest.raises(LabvmError) as raised:
        n1_t4(tmp_path).create(public_key=KEY)
    assert str(raised.value).startswith("zone us-west1-b has no capacity for this machine type now; try later or set ")
    assert str(raised.value).endswith(
        "profiles.gce.zone to another zone of us-west1; zones of us-west1 that offer nvidia-tesla-t4: us-west1-a"
    )
    with pytest.raises(LabvmError) as raised:
        provider(tmp_path, machine_type="a2-highgpu-1g").create(public_key=KEY)
    assert str(raised.value).endswith("; no other zone of us-west1 offers nvidia-tesla-a100")


def test_n1_with_gpu_is_priced_with_its_gpus(emulator, tmp_path):
    from gce_catalog import catalog_sku

    emulator.billing_skus.append(catalog_sku("Nvidia Tesla T4 GPU running in Americas", "GPU", "OnDemand", 0.35))
    n1 = 4 * 0.031611 + 15 * 0.004237
    assert n1_t4(tmp_path).price_per_hour("n1-standard-4", spot=False) == pytest.approx(n1 + 0.35)
    two = provider(tmp_path, machine_type="n1-standard-4", gpu={"type": "nvidia-tesla-t4", "count": 2})
    assert two.price_per_hour("n1-standard-4", spot=False) == pytest.approx(n1 + 2 * 0.35)
    assert provider(tmp_path, machine_type="n1-standard-4").price_per_hour("n1-standard-4", spot=False) == (
        pytest.approx(n1)
    )


@pytest.mark.parametrize(
    "gpu, problem",
    [
        ("nvidia-tesla-t4", "gpu: must be a mapping like {type: nvidia-tesla-t4, count: 1}"),
        ({"count": 1}, "gpu: must be a mapping like {type: nvidia-tesla-t4, count: 1}"),
        ({"type": "nvidia-tesla-t4", "cards": 2}, "gpu: must be a mapping like"),
        ({"type": "nvidia-tesla-t4", "count": 0}, "gpu: count must be a positive whole number, not 0"),
    ],
)
def test_a_bad_gpu_key_is_one_line_naming_it(emulator, tmp_path, gpu, problem):
    with pytest.raises(LabvmError) as raised:
        provider(tmp_path, machine_type="n1-standard-4", gpu=gpu)
    assert f"profiles.gce.{problem}" in str(raised.value)


def test_check_and_up_say_it_in_the_terminal(lab, user, sshd):
    """What a user sees: `inv check` counts the T4 against its quota and names the image with the driver; a full
    zone's `up` names the zones that offer the GPU."""
    from gce_world import fake_gce_for
    from realhost import ssh_profile

    settings = dict(provider="gce", project="proj", zone=ZONE, machine_type="n1-standard-4", gpu=T4)
    with fake_gce_for(lab) as fake:
        lab.write_hosts({"gce": ssh_profile(user, sshd, ssh_cidr="127.0.0.1/32", **settings)})
        checked = lab.inv("check", "--host", "gce", check=False)
        assert "n1-standard-4 with 1 nvidia-tesla-t4 is offered in us-west1-b" in checked.output
        assert "NVIDIA_T4_GPUS 0/4" in checked.output and "GPUS_ALL_REGIONS 0/8" in checked.output
        assert "common-cu129-" in checked.output
        fake.zone_exhausted = True
        full = lab.inv("up", "--host", "gce", "--no-browser", check=False)
        assert full.returncode == 1
        assert "zones of us-west1 that offer nvidia-tesla-t4: us-west1-a" in full.stderr
        assert "Traceback" not in full.stderr


def test_a_gpu_worker_beside_a_cpu_head_stops_for_maintenance(emulator, tmp_path):
    emulator.quota_limits["G2_CPUS"] = 8.0
    gce = provider(tmp_path, machine_type="e2-small", cluster={"workers": 1, "worker_size": "g2-standard-4"})
    head = gce.create(public_key=KEY)
    (worker,) = gce.create_workers([1], "", "g2-standard-4", KEY)
    assert emulator.instances[head.id]["scheduling"]["onHostMaintenance"] == "MIGRATE"
    assert emulator.instances[worker.id]["scheduling"]["onHostMaintenance"] == "TERMINATE"
    assert "guestAccelerators" not in emulator.instances[worker.id]


def test_the_cached_price_of_an_n1_with_gpus_is_not_the_plain_n1s(emulator, tmp_path, monkeypatch):
    """labvm.prices caches a price by what it is of (Provider.priced_as): an N1 + T4 profile and a plain N1 one
    in the same region each get their own, whichever is asked first."""
    from gce_catalog import catalog_sku
    from labvm import prices

    monkeypatch.setenv("LABVM_SSH_DIR", str(tmp_path / "ssh"))
    prices._unreachable.clear()
    emulator.billing_skus.append(catalog_sku("Nvidia Tesla T4 GPU running in Americas", "GPU", "OnDemand", 0.35))
    n1 = 4 * 0.031611 + 15 * 0.004237
    with_gpu = n1_t4(tmp_path)
    plain = provider(tmp_path, machine_type="n1-standard-4")
    assert prices.lookup(with_gpu, "n1-standard-4", False) == pytest.approx(n1 + 0.35)
    assert prices.lookup(plain, "n1-standard-4", False) == pytest.approx(n1)
    assert prices.lookup(with_gpu, "n1-standard-4", False) == pytest.approx(n1 + 0.35)
