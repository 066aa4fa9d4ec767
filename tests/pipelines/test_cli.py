"""``clipfoundry materialize`` submits the whole-graph backfill CI runs (executed by a daemon elsewhere in the suite:
``tests/integration/test_materialize_all.py`` runs the same backfill through the UI's API)."""

from __future__ import annotations

import shutil

from dagster import AssetKey, DagsterInstance

from infra.lake import Lake
from ops import graph
from ops.sources import registry
from pipelines.cli import main
from pipelines.partitions import shards
from tests.conftest import REPO


def test_materialize_registers_new_sources_and_submits_every_stage_for_the_given_shards(tmp_path, monkeypatch):
    home, lake = tmp_path / "home", tmp_path / "lake"
    home.mkdir()
    shutil.copy(REPO / "infra" / "deploy" / "dagster.local.yaml", home / "dagster.yaml")
    for name in ("a", "b", "c"):
        (lake / "sources" / "web").mkdir(parents=True, exist_ok=True)
        (lake / "sources" / "web" / f"{name}.warc.gz").write_bytes(b"x")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("CLIPFOUNDRY_DATA_ROOT", str(lake))

    assert main(["materialize", "--shard", "web.a", "--shard", "web.b", "--no-daemon"]) == 0
    instance = DagsterInstance.from_config(str(home))
    assert sorted(instance.get_dynamic_partitions(shards.name)) == ["web.a", "web.b", "web.c"]
    assert set(registry(Lake(str(lake)))) == {"web.a", "web.b", "web.c"}
    [backfill] = instance.get_backfills()
    subset = backfill.asset_backfill_data.target_subset
    for stage in graph.stages().values():
        if stage.per_shard:
            keys = subset.get_partitions_subset(AssetKey(stage.name)).get_partition_keys()
            assert sorted(keys) == ["web.a", "web.b"], stage.name
        else:
            assert AssetKey(stage.name) in subset.non_partitioned_asset_keys

    assert main(["materialize", "--shard", "web.zzz", "--no-daemon"]) == 2  # unknown shard: refused, nothing queued
    assert len(instance.get_backfills()) == 1
