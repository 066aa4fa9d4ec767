"""The whole code location loads, and its structure is what the stage graph declares: a change to either is a visible
diff here. The expected parents are written out once below so a review sees the pipeline's shape."""

from __future__ import annotations

from dagster import AssetKey, AutomationCondition

from ops import graph
from pipelines.definitions import defs
from pipelines.partitions import shards

PARENTS = {
    "crawl": set(),
    "download": {"crawl"},
    "image_hashes": {"download"},
    "dedup_index": {"image_hashes"},
    "dedup": {"download", "image_hashes", "dedup_index"},
    "metaclip_metadata": {"crawl"},
    "curation": {"dedup", "metaclip_metadata"},
    "entry_counts": {"curation"},
    "heuristics": {"curation"},
    "bootstrap": {"heuristics", "entry_counts"},
    "clip_scores": {"heuristics", "bootstrap"},
    "clip_score_threshold": {"clip_scores"},
    "judge_scores": {"heuristics", "bootstrap"},
    "judge_score_threshold": {"judge_scores"},
    "quality": {"heuristics", "clip_scores", "clip_score_threshold", "judge_scores", "judge_score_threshold"},
    "safety": {"quality"},
    "recaption": {"safety", "bootstrap"},
    "dataset": {"recaption", "entry_counts"},
    "model": {"dataset"},
    "evaluation": {"model", "entry_counts"},
}


def test_code_location_loads_with_every_resource():
    repo = defs.get_repository_def()
    settings = {f"{name}_settings" for name in ("crawl", "download", "dedup", "curation", "quality", "safety")}
    assert {"lake", "mlflow"} | settings <= set(repo.get_top_level_resources())
    assert {s.name for s in defs.sensors} == {
        "new_sources_sensor",
        "refresh_sensor",
        "automation_sensor",
        *(f"mlflow_on_{status}_sensor" for status in ("success", "failure", "canceled")),
    }


def test_assets_follow_the_declared_graph():
    asset_graph = defs.resolve_asset_graph()
    assert {k.to_user_string() for k in asset_graph.get_all_asset_keys()} == set(PARENTS) == set(graph.stages())
    for name, stage in graph.stages().items():
        node = asset_graph.get(AssetKey(name))
        assert {p.to_user_string() for p in node.parent_keys} == PARENTS[name] == set(stage.deps)
        assert node.partitions_def == (shards if stage.per_shard else None)
        assert (node.backfill_policy is not None) == stage.per_shard
        assert isinstance(node.automation_condition, AutomationCondition)
    checks = {(c.asset_key.to_user_string(), c.name): c for c in asset_graph.asset_check_keys}
    per_shard = {(s.name, name) for s in graph.shard_stages() for name in ("rows_conserved", "drop_share")}
    assert set(checks) == per_shard | {("dataset", "not_empty")}
    for (_, name), key in checks.items():
        assert asset_graph.get_check_spec(key).blocking == (name != "drop_share")  # a share is a warning


def test_jobs_are_the_graph_waves_in_order():
    jobs = [j for j in defs.resolve_all_job_defs() if not j.name.startswith("__")]
    expected = [f"{stages[0].name}_job" for _, stages in graph.waves()]
    assert sorted(j.name for j in jobs) == sorted(expected)
    for scope, stages in graph.waves():
        job = defs.resolve_job_def(f"{stages[0].name}_job")
        assert {k.to_user_string() for k in job.asset_layer.executable_asset_keys} == {s.name for s in stages}
        assert (job.partitions_def == shards) == (scope == "shard")


def test_readme_stage_table_is_generated_from_the_graph():
    readme = graph.__file__.rsplit("/ops/", 1)[0] + "/README.md"
    with open(readme) as f:
        text = f.read()
    assert graph.markdown_table() in text, "README's stage table is stale: regenerate it with `python -m ops.graph`"
