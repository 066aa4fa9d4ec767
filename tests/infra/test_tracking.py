from concurrent.futures import ThreadPoolExecutor

import pytest

from infra.tracking import Tracker, default_tracking_uri
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


def test_a_logged_model_carries_its_architecture_for_its_tokenizer(tmp_path):
    import json

    import open_clip
    from mlflow.artifacts import download_artifacts

    from infra.tracking import ARCHITECTURE_FILE, ARCHITECTURE_TAG, log_clip_model, log_coca_model
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
