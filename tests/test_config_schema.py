"""The hosts.yml schema is declared once (labvm/config/schema.py, and each cloud's own keys on its settings
dataclass, labvm/providers/<cloud>/settings.py): each key on the field that holds it, with a Kind that checks
and reads its value; the valid keys, the checks and the Profile all come from that one declaration, and the
documentation lists the same keys."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from labvm import config
from labvm.config.kinds import Kind
from labvm.config.schema import KEY, ClusterSpec, DataSpec, EnvSpec, NotebookSpec, Profile, schema
from labvm.providers.registry import CLOUDS, settings_class

ROOT = config.PACKAGE_DIR.parent
SPECS = (Profile, EnvSpec, NotebookSpec, ClusterSpec, DataSpec)
LABVM_OWN = {"name", "source", "cloud_settings", "worker_key"}  # Profile's fields hosts.yml does not set
CLOUD_KEYS = {cloud: config.cloud_keys(cloud) for cloud in CLOUDS}


def leaves(keys, prefix: str = ""):
    """(dotted hosts.yml key, Kind) of every key, nested mappings walked."""
    for name, kind in keys.items():
        if isinstance(kind, Kind):
            yield prefix + name, kind
        else:
            yield from leaves(kind, f"{prefix}{name}.")


def test_every_field_is_a_declared_key_or_labvms_own():
    for spec in SPECS:
        for field in dataclasses.fields(spec):
            declared = field.metadata.get(KEY)
            if declared is None:
                assert spec is Profile and field.name in LABVM_OWN, f"{spec.__name__}.{field.name} declares no key"
                continue
            assert (declared.kind is None) != (declared.section is None), f"{spec.__name__}.{field.name}"


@pytest.mark.parametrize("cloud", CLOUDS)
def test_every_field_of_a_clouds_settings_is_a_declared_key(cloud):
    settings = settings_class(cloud)
    for field in dataclasses.fields(settings):
        declared = field.metadata.get(KEY)
        assert declared is not None and declared.kind is not None, f"{settings.__name__}.{field.name} declares no kind"
    assert list(config.cloud_keys(cloud)) == [field.name for field in dataclasses.fields(settings)]


@pytest.mark.parametrize("provider", config.provider_names())
def test_every_key_has_a_check_that_refuses_what_no_key_takes(provider):
    keys = {**config.COMMON_KEYS, **config.cloud_keys(provider)}
    for name, kind in leaves(keys):
        assert callable(kind.check) and callable(kind.read), name
        assert kind.check(object()).startswith("must be"), name


def test_a_key_is_declared_once():
    names = [name for spec in SPECS for name in schema(spec)]
    assert len(config.COMMON_KEYS) == len(schema(Profile)) == len(set(schema(Profile)))
    assert "sync" in names and "sync_patterns" not in names  # hosts.yml's name, not the field's
    for cloud, keys in CLOUD_KEYS.items():
        assert not set(keys) & set(config.COMMON_KEYS), f"{cloud} redeclares a common key"


def test_the_valid_keys_keep_hosts_yml_order():
    assert list(config.COMMON_KEYS) == [
        "provider",
        "address",
        "port",
        "user",
        "identity",
        "jump",
        "env",
        "notebook",
        "autostop",
        "autostop_load",
        "autostop_gpu",
        "sync",
        "sync_dir",
        "sync_max_file",
        "sync_max_total",
        "price_per_hour",
        "cluster",
        "data",
    ]
    assert list(config.COMMON_KEYS["data"]) == ["size", "mount", "type"]
    assert list(config.COMMON_KEYS["cluster"]) == [
        "workers",
        "worker_size",
        "threads",
        "memory_limit",
        "hosts",
        "price_per_hour",
    ]


def test_a_key_left_out_reads_as_the_fields_default(tmp_path):
    (tmp_path / "hosts.yml").write_text("profiles:\n  lab: {provider: ssh, address: h, notebook: {port: 9000}}\n")
    profile = config.load(tmp_path / "hosts.yml").profile("lab")
    assert profile.env == EnvSpec()
    assert profile.notebook == NotebookSpec(port=9000, local_port=9000)  # the tunnel's port: the same by default
    assert profile.sync_dir == tmp_path / "notebooks" / "lab"
    assert (profile.autostop, profile.sync_patterns, profile.cluster) == (
        config.DEFAULT_AUTOSTOP,
        config.DEFAULT_SYNC,
        None,
    )


def test_a_key_set_to_null_is_a_key_left_out(tmp_path):
    # As the checks have always read it (a null value is not checked): its default, never the text "None".
    (tmp_path / "hosts.yml").write_text(
        "profiles:\n  lab: {provider: ssh, address: h, env: {python: null, conda_installer_sha256: null},\n"
        "        notebook: {port: 9000, local_port: null, password: 1234}, sync: null, cluster: null}\n"
    )
    profile = config.load(tmp_path / "hosts.yml").profile("lab")
    assert profile.env == EnvSpec()
    assert profile.notebook == NotebookSpec(port=9000, local_port=9000, password="1234")  # a text key reads as text
    assert (profile.sync_patterns, profile.cluster) == (config.DEFAULT_SYNC, None)


def readme_key_table() -> set[str]:
    readme = (ROOT / "README.md").read_text()
    rows = readme[readme.index("| key | meaning |") :].splitlines()[2:]
    first_cells = [row.split("|")[1] for row in rows[: next(i for i, r in enumerate(rows) if not r.startswith("|"))]]
    return {name for cell in first_cells for name in re.findall(r"`([a-z0-9_.]+)`", cell)}


def test_the_readmes_key_table_lists_the_schemas_keys():
    documented = readme_key_table()
    keys = {name for name, _ in leaves(config.COMMON_KEYS)}
    assert documented - keys == set(), "the README names keys hosts.yml does not take"
    assert {k for k in keys if not k.startswith("cluster.")} - documented == set(), "keys the README leaves out"


def test_the_cluster_and_cloud_keys_are_documented():
    cluster_doc = (ROOT / "docs" / "cluster.md").read_text() + (ROOT / "README.md").read_text()
    for name in config.COMMON_KEYS["cluster"]:
        assert re.search(rf"\b{name}\b", cluster_doc), f"cluster.{name} is not in docs/cluster.md or the README"
    written = "".join(p.read_text() for p in [ROOT / "README.md", ROOT / "hosts.yml", *Path(ROOT, "docs").glob("*.md")])
    for cloud, keys in CLOUD_KEYS.items():
        for name in keys:
            assert re.search(rf"\b{name}:", written), f"{cloud}'s {name}: in no README, hosts.yml or docs/ example"


def test_the_names_other_modules_import_stay_importable():
    from labvm.config import (  # noqa: F401
        CLUSTER_PACKAGES,
        COMMON_KEYS,
        ClusterSpec,
        Config,
        LabvmError,
        Member,
        Profile,
        cloud_keys,
        load,
        parse_duration,
        provider_names,
    )
    from labvm.providers.registry import sdk_files_problem  # noqa: F401


def test_a_workers_name_is_its_head_and_index():
    from labvm.config import Member

    assert str(Member("aws", 2)) == "aws+w2" and Member.parse("aws+w2") == Member("aws", 2)
    assert Member.parse("aws") is None and Member.parse("aws+w?") is None and Member.parse("a+wx") is None
    assert Member.head_of("aws+w2") == Member.head_of("aws") == "aws"
