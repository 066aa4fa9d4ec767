from concurrent.futures import ThreadPoolExecutor

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
