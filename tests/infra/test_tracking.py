from concurrent.futures import ThreadPoolExecutor

import pytest

from infra.tracking import (
    CHAMPION,
    Tracker,
    default_tracking_uri,
    describe_model_version,
    log_clip_model,
    record_evaluation,
)
from ops.report import StageReport


def test_one_mlflow_run_per_dagster_run_even_when_steps_race(tmp_path):
    uri = default_tracking_uri(tmp_path / "mlflow")
    Tracker(uri, "exp")  # create the schema once, as the first step of a run would

    def step(_):
        return Tracker(uri, "exp").run_for("dagster-run-1", {"dagster.job": "j"})

    with ThreadPoolExecutor(4) as pool:
        ids = set(pool.map(step, range(4)))
    assert len(ids) == 1
    tracker = Tracker(uri, "exp")
    assert [r.info.run_id for r in tracker.runs_for("dagster-run-1")] == list(ids)
    assert tracker.run_for("dagster-run-2", {}) not in ids


def test_report_metrics_and_artifact(tmp_path):
    tracker = Tracker(default_tracking_uri(tmp_path / "m"), "exp", artifact_location=(tmp_path / "art").as_uri())
    run_id = tracker.run_for("r", {})
    report = StageReport(stage="crawl", shard="s1")
    report.count([True, False], ["", "no_text"])
    tracker.log_report(run_id, report)
    tracker.log_params(run_id, {"a": 1})
    tracker.log_params(run_id, {"a": 1, "b": 2})
    run = tracker.client.get_run(run_id)
    assert run.data.metrics["crawl.rows_in"] == 2
    assert run.data.metrics["crawl.dropped.no_text"] == 1
    assert run.data.params == {"a": "1", "b": "2"}
    arts = [a.path for a in tracker.client.list_artifacts(run_id, "reports/crawl")]
    assert arts == ["reports/crawl/s1.json"]


def test_a_fresh_sqlite_store_opens_from_many_processes_at_once(tmp_path):
    """Opening migrates the schema; two runs starting together on a new store must not race through it."""
    import multiprocessing

    uri = default_tracking_uri(tmp_path / "fresh")
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        experiments = pool.starmap(_open_store, [(uri, "exp")] * 3)
    assert len(set(experiments)) == 1


def _open_store(uri: str, experiment: str) -> str:
    return Tracker(uri, experiment).experiment_id


def test_shards_get_child_runs_and_the_dagster_status_ends_them_all(tmp_path):
    tracker = Tracker(default_tracking_uri(tmp_path / "m"), "exp", artifact_location=(tmp_path / "art").as_uri())
    parent = tracker.run_for("d1", {"dagster.job": "crawl_job"}, run_name="crawl_job · s1...s2")
    children = {s: tracker.shard_run_for("d1", parent, s, {}) for s in ("s1", "s2")}
    assert tracker.shard_run_for("d1", parent, "s1", {}) == children["s1"]  # found again, not created twice
    evaluation = tracker.evaluation_run_for("d1", parent, "clip/3")
    for shard, child in children.items():
        run = tracker.client.get_run(child)
        assert run.data.tags["mlflow.parentRunId"] == parent and run.data.tags["dagster.partition"] == shard
        assert run.info.run_name == f"crawl_job · s1...s2 · {shard}"
    assert tracker.runs_for("d1")[0].info.run_id == parent  # the children are not mistaken for the run itself
    ended = tracker.end_dagster_run("d1", "FAILURE")
    assert set(ended) == {parent, evaluation, *children.values()}
    assert {tracker.client.get_run(r).info.status for r in ended} == {"FAILED"}
    assert tracker.end_dagster_run("d1", "SUCCESS") == []  # an ended run keeps its status
    other = tracker.run_for("d2", {})
    tracker.end_dagster_run("d2", "CANCELED")
    assert tracker.client.get_run(other).info.status == "KILLED"


def test_run_links_need_an_mlflow_ui(tmp_path):
    tracker = Tracker(default_tracking_uri(tmp_path / "m"), "exp")
    run_id = tracker.run_for("d", {})
    assert tracker.run_url(run_id) is None
    linked = Tracker(default_tracking_uri(tmp_path / "m"), "exp", ui_url="http://127.0.0.1:5000/")
    assert linked.run_url(run_id) == f"http://127.0.0.1:5000/#/experiments/{tracker.experiment_id}/runs/{run_id}"


def test_versions_are_described_and_the_champion_follows_the_best_evaluation(tmp_path):
    import torch

    tracker = Tracker(default_tracking_uri(tmp_path / "m"), "exp", artifact_location=(tmp_path / "art").as_uri())
    versions = []
    for i in range(3):
        run_id = tracker.run_for(f"d{i}", {})
        versions.append(log_clip_model(tracker, run_id, torch.nn.Linear(2, 2), "clip", {"dataset.version": f"v{i}"}))
    describe_model_version(tracker, "clip", versions[0], "trained on v0", {"dataset.manifest": "s3://lake/m.json"})
    mv = tracker.client.get_model_version("clip", versions[0])
    assert mv.description == "trained on v0" and mv.tags["dataset.manifest"] == "s3://lake/m.json"
    assert record_evaluation(tracker, "clip", versions[0], {"eval/x/top1": 0.2}, "eval/x/top1") == versions[0]
    assert record_evaluation(tracker, "clip", versions[1], {"eval/x/top1": 0.5}, "eval/x/top1") == versions[1]
    assert record_evaluation(tracker, "clip", versions[2], {"eval/x/top1": 0.3}, "eval/x/top1") == versions[1]
    assert str(tracker.client.get_model_version_by_alias("clip", CHAMPION).version) == versions[1]
    assert tracker.client.get_model_version("clip", versions[2]).tags["eval.eval/x/top1"] == "0.3"


def test_a_logged_model_carries_its_architecture_for_its_tokenizer(tmp_path):
    import json

    import open_clip
    from mlflow.artifacts import download_artifacts

    from infra.tracking import ARCHITECTURE_FILE, ARCHITECTURE_TAG, log_coca_model
    from ops.training.checkpoint import register_model_config
    from tests.ops.training.tiny import TINY_CONFIG, TINY_MODEL

    tracker = Tracker(default_tracking_uri(tmp_path / "m"), "exp", artifact_location=(tmp_path / "art").as_uri())
    run_id = tracker.run_for("r", {})
    register_model_config(TINY_MODEL, TINY_CONFIG)
    clip = open_clip.create_model(TINY_MODEL)
    plain = log_clip_model(tracker, run_id, clip, "clip", {"dataset.version": "v1"})
    assert ARCHITECTURE_TAG not in tracker.client.get_model_version("clip", plain).tags
    kw = {"architecture": TINY_MODEL, "architecture_config": TINY_CONFIG}
    described = log_clip_model(tracker, run_id, clip, "clip", {}, **kw)
    assert tracker.client.get_model_version("clip", described).tags[ARCHITECTURE_TAG] == TINY_MODEL
    local = download_artifacts(tracker.model_version_uri("clip", described), dst_path=str(tmp_path / "dl"))
    assert json.loads((tmp_path / "dl" / "model" / ARCHITECTURE_FILE).read_text()) == {
        "architecture": TINY_MODEL,
        "architecture_config": TINY_CONFIG,
    }
    assert local.endswith("model")
    with pytest.raises(TypeError, match="not a CoCa"):
        log_coca_model(tracker, run_id, clip, "coca", {}, architecture=TINY_MODEL)
