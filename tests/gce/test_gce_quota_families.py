"""`inv check` on GCE counts each machine family against its own regional CPU quota, and a Spot VM against
its family's preemptible one, as Compute Engine does (https://cloud.google.com/compute/resource-usage; the fake
models it: tests/fake_gce.py FAMILY_QUOTA)."""

import pytest

from fake_gce import FAMILY_QUOTA
from gce_world import KEY, provider
from labvm.providers.gce.preflight import CPU_QUOTA


def quota_of(gce):
    (quota,) = [c for c in gce.preflight(KEY) if c.name == "quota"]
    return quota


def test_labvm_knows_every_family_the_cloud_counts_apart():
    """C4, C4A, C4D, N4, Z3, X4, M3, M4, H3 among them: a family labvm missed was counted against CPUS."""
    assert CPU_QUOTA == FAMILY_QUOTA
    assert {"c4", "c4a", "c4d", "n4", "z3", "x4", "m3", "m4", "h3"} <= set(CPU_QUOTA)


def test_a_c4a_machine_is_checked_against_c4a_cpus(fake, tmp_path):
    fake.quota_limits.update(C4A_CPUS=3.0)  # CPUS keeps its 8: room there would hide the shortage
    quota = quota_of(provider(tmp_path, machine_type="c4a-standard-4"))
    assert not quota.ok and "C4A_CPUS 0/3 leaves no room for 4 more" in quota.detail


@pytest.mark.parametrize("granted", [True, False])
def test_a_spot_vm_is_checked_against_its_family_s_preemptible_quota_where_granted(fake, tmp_path, granted):
    fake.quota_limits.update(N2_CPUS=1.0, PREEMPTIBLE_N2_CPUS=4.0 if granted else 0.0, PREEMPTIBLE_CPUS=8.0)
    spot = provider(tmp_path, machine_type="n2-standard-2", spot=True)
    quota = quota_of(spot)
    if granted:
        assert quota.ok and "PREEMPTIBLE_N2_CPUS 0/4" in quota.detail and "PREEMPTIBLE_CPUS" not in quota.detail
        spot.create(public_key=KEY)
        assert fake.usage()["PREEMPTIBLE_N2_CPUS"] == 2.0
    else:  # no preemptible quota for N2 in this region: the Spot VM counts against N2_CPUS
        assert not quota.ok and "N2_CPUS 0/1 leaves no room for 2 more" in quota.detail
