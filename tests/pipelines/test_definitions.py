"""The whole code location loads, and its structure is what reviewers expect (a change here is a visible diff)."""

from __future__ import annotations

from dagster import AssetKey

from pipelines.definitions import defs
from pipelines.partitions import shards

PER_SHARD = {
    "crawl",
    "download",
    "image_hashes",
    "dedup",
    "curation_matches",
    "curation",
    "clip_scores",
    "quality",
    "recaption",
}
GLOBAL = {"dedup_index", "metaclip_metadata", "entry_counts", "clip_score_threshold", "dataset", "model", "evaluation"}
CHECKED = PER_SHARD - {"clip_scores"}
PARENTS = {
    "crawl": set(),
    "download": {"crawl"},
    "image_hashes": {"download"},
    "dedup_index": {"image_hashes"},
    "dedup": {"dedup_index"},
    "metaclip_metadata": {"crawl"},
    "curation_matches": {"dedup", "metaclip_metadata"},
    "entry_counts": {"curation_matches"},
    "curation": {"entry_counts"},
    "clip_scores": {"curation"},
    "clip_score_threshold": {"clip_scores"},
    "quality": {"clip_score_threshold"},
    "recaption": {"quality"},
    "dataset": {"recaption"},
    "model": {"dataset"},
    "evaluation": {"model"},
}


def test_code_location_loads_with_every_resource():
    repo = defs.get_repository_def()
    settings = {"crawl_settings", "download_settings", "dedup_settings", "curation_settings", "quality_settings"}
    assert {"lake", "mlflow"} | settings <= set(repo.get_top_level_resources())
    jobs = {"ingest_job", "metadata_job", "dedup_job", "entry_counts_job", "curate_job", "quality_job", "train_job"}
    assert jobs <= {j.name for j in defs.resolve_all_job_defs()}
    assert defs.resolve_sensor_def("new_sources_sensor").job_name == "ingest_job"
    assert defs.resolve_schedule_def("refresh_schedule").job_name == "ingest_job"


def test_structure_snapshot():
    graph = defs.resolve_asset_graph()
    assert {k.to_user_string() for k in graph.get_all_asset_keys()} == PER_SHARD | GLOBAL
    for key in PER_SHARD:
        node = graph.get(AssetKey(key))
        assert node.partitions_def == shards
        assert node.backfill_policy is not None
    for key in GLOBAL:
        assert graph.get(AssetKey(key)).partitions_def is None
    for key, parents in PARENTS.items():
        assert {p.to_user_string() for p in graph.get(AssetKey(key)).parent_keys} == parents
    checks = {(c.asset_key.to_user_string(), c.name) for c in graph.asset_check_keys}
    assert checks == {(k, "rows_conserved") for k in CHECKED}
    for key in graph.asset_check_keys:
        assert graph.get_check_spec(key).blocking
