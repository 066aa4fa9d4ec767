"""crawl and download materialised through Dagster for two shards: in-process, and with the CLI as CI would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from dagster import AssetCheckKey, AssetKey, DagsterInstance, materialize

from assets.crawl import crawl
from assets.curation import curation, curation_matches, entry_counts, metaclip_metadata
from assets.dedup import dedup, dedup_index, image_hashes
from assets.download import download
from assets.quality import clip_score_threshold, clip_scores, quality, recaption
from infra.tracking import Tracker, default_tracking_uri
from pipelines.partitions import shards
from pipelines.profiles import resources
from tests.conftest import REPO


def _demo_resources(root: Path) -> dict:
    os.environ["CLIPFOUNDRY_DATA_ROOT"] = str(root)
    try:
        return resources("demo")
    finally:
        del os.environ["CLIPFOUNDRY_DATA_ROOT"]


def _latest_check_passed(instance: DagsterInstance, asset: str) -> bool:
    record = instance.event_log_storage.get_latest_asset_check_execution_by_key(
        [AssetCheckKey(AssetKey(asset), "rows_conserved")]
    )[AssetCheckKey(AssetKey(asset), "rows_conserved")]
    return record.event.dagster_event.event_specific_data.passed


def test_in_process_two_shards_through_dedup_with_checks_and_mlflow(small_web, dagster_home):
    instance = DagsterInstance.from_config(str(dagster_home))
    instance.add_dynamic_partitions(shards.name, small_web.shards)
    res = _demo_resources(small_web.root)
    run_ids = []
    for key in small_web.shards:
        result = materialize([crawl, download], partition_key=key, resources=res, instance=instance)
        assert result.success
        run_ids.append(result.run_id)
        for asset in ("crawl", "download"):
            assert _latest_check_passed(instance, asset)
    for asset in ("crawl", "download"):
        mats = instance.fetch_materializations(AssetKey(asset), limit=10).records
        assert sorted(m.partition_key for m in mats) == small_web.shards
        meta = mats[0].asset_materialization.metadata
        assert meta["rows_in"].value == meta["rows_kept"].value + meta["rows_dropped"].value
    dl = instance.fetch_materializations(AssetKey("download"), limit=1).records[0].asset_materialization.metadata
    assert dl["rows_kept"].value > 0

    tracker = Tracker(default_tracking_uri(small_web.root / "mlflow"), "clipfoundry")
    for run_id, key in zip(run_ids, small_web.shards, strict=True):
        [run] = tracker.runs_for(run_id)
        assert run.data.tags["dagster.partitions"] == key
        assert {"crawl.rows_in", "crawl.rows_kept", "download.rows_in", "download.rows_per_s"} <= set(run.data.metrics)
        assert run.data.metrics["download.rows_in"] == run.data.metrics["crawl.rows_kept"]

    # dedup: fingerprint each shard, one global index, then per-shard decisions, all with blocking checks
    for key in small_web.shards:
        assert materialize([image_hashes], partition_key=key, resources=res, instance=instance).success
        assert _latest_check_passed(instance, "image_hashes")
    index = materialize([dedup_index], resources=res, instance=instance)
    assert index.success
    meta = instance.fetch_materializations(AssetKey("dedup_index"), limit=1).records[0].asset_materialization.metadata
    assert meta["shards"].value == 2
    [index_run] = tracker.runs_for(index.run_id)
    assert "dedup/cluster_sizes.png" in [a.path for a in tracker.client.list_artifacts(index_run.info.run_id, "dedup")]
    for key in small_web.shards:
        assert materialize([dedup], partition_key=key, resources=res, instance=instance).success
        assert _latest_check_passed(instance, "dedup")
        report = small_web.lake.read_json(f"dedup/{key}.report.json")
        assert report["rows_in"] == small_web.lake.read_json(f"download/{key}.report.json")["rows_kept"]

    # MetaCLIP curation: the sample web's metadata, matches, global counts, balancing
    assert materialize([metaclip_metadata], resources=res, instance=instance).success
    for key in small_web.shards:
        assert materialize([curation_matches], partition_key=key, resources=res, instance=instance).success
        assert _latest_check_passed(instance, "curation_matches")
    assert materialize([entry_counts], resources=res, instance=instance).success
    for key in small_web.shards:
        assert materialize([curation], partition_key=key, resources=res, instance=instance).success
        assert _latest_check_passed(instance, "curation")
    [curation_run] = tracker.runs_for(instance.fetch_materializations(AssetKey("curation"), limit=1).records[0].run_id)
    plots = [a.path for a in tracker.client.list_artifacts(curation_run.info.run_id, "curation")]
    assert "curation/entry_counts_head_tail.png" in plots

    # quality + recaption with the demo's honest defaults: heuristics only, no model invented
    for key in small_web.shards:
        assert materialize([clip_scores], partition_key=key, resources=res, instance=instance).success
    assert materialize([clip_score_threshold], resources=res, instance=instance).success
    for key in small_web.shards:
        assert materialize([quality, recaption], partition_key=key, resources=res, instance=instance).success
        assert _latest_check_passed(instance, "quality") and _latest_check_passed(instance, "recaption")
        q = small_web.lake.read_json(f"quality/{key}.report.json")
        assert q["rows_in"] == small_web.lake.read_json(f"curation/{key}.report.json")["rows_kept"]
        assert q["extra"]["clip_score"] == "no CLIP model configured" and q["extra"]["judge"] == "no judge configured"
        assert set(q["dropped"]) <= {"language", "caption_too_short", "image_too_small", "aspect_ratio"}
        assert q["dropped"]  # the sample web's tiny icons, banners and short captions
    meta = instance.fetch_materializations(AssetKey("recaption"), limit=1).records[0].asset_materialization.metadata
    assert meta["captioner"].value == "no captioner configured"


def test_cli_materialize_partition_range_as_ci_would(small_web, dagster_home):
    instance = DagsterInstance.from_config(str(dagster_home))
    instance.add_dynamic_partitions(shards.name, small_web.shards)
    env = {
        **os.environ,
        "DAGSTER_HOME": str(dagster_home),
        "CLIPFOUNDRY_PROFILE": "demo",
        "CLIPFOUNDRY_DATA_ROOT": str(small_web.root),
    }
    dagster = str(Path(sys.executable).parent / "dagster")
    cmd = [dagster, "asset", "materialize", "-m", "pipelines.definitions", "--select", "crawl,download"]
    one = subprocess.run(
        [*cmd, "--partition", small_web.shards[0]], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    assert one.returncode == 0, one.stderr[-3000:]
    both = subprocess.run(
        [*cmd, "--partition-range", f"{small_web.shards[0]}...{small_web.shards[1]}"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert both.returncode == 0, both.stderr[-3000:]
    instance = DagsterInstance.from_config(str(dagster_home))
    for asset in ("crawl", "download"):
        records = instance.fetch_materializations(AssetKey(asset), limit=10).records
        assert sorted(r.partition_key for r in records) == sorted([small_web.shards[0], *small_web.shards])
        assert _latest_check_passed(instance, asset)
