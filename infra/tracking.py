"""MLflow tracking: one MLflow run per Dagster run, shared by every step of that run.

Steps of one Dagster run may execute in separate processes (the multiprocess executor, one pod per step on
Kubernetes), so there is no shared in-memory run handle. Each step finds the MLflow run tagged with its Dagster
run id, creating it when none exists. Two steps racing to create it converge: after creating, a step waits a
moment (longer than a creation takes to become visible), re-reads all runs with that tag, adopts the oldest and
deletes its own if it lost. Without the wait, a step that looked before its rival's run was visible would keep
its own run while the rival picks the older one. The client API (``MlflowClient``) is
used throughout, never the global ``mlflow.start_run`` state, so concurrent steps in one process cannot collide.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

from ops.report import StageReport

DAGSTER_RUN_TAG = "dagster.run_id"
ARCHITECTURE_TAG = "open_clip.architecture"
ARCHITECTURE_FILE = "open_clip_model.json"  # beside a logged model; read back by ops.vlm.coca


def check_tracking_uri(uri: str) -> str:
    """``uri`` itself, unless it carries credentials (``http://user:password@host``): those are refused, because
    MLflow repeats the tracking URI in its error messages, which end up in Dagster's event log. Credentials go in
    ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD`` or ``MLFLOW_TRACKING_TOKEN``, which it never prints.
    """
    parts = urlsplit(uri)
    if "@" in parts.netloc:
        host = parts.netloc.rsplit("@", 1)[1]
        raise ValueError(
            f"the MLflow tracking URI {parts.scheme}://{host} carries credentials; set MLFLOW_TRACKING_USERNAME and "
            "MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN; for a database URI, the driver's variables such as "
            "PGPASSWORD) instead, as MLflow repeats the URI in its errors"
        )
    return uri


def default_tracking_uri(local_root: Path) -> str:
    """A SQLite store under the data root: works offline with no server and shows in ``mlflow ui``."""
    local_root.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{local_root / 'mlflow.db'}"


class Tracker:
    """Thin wrapper over ``MlflowClient`` with the conventions every stage shares."""

    def __init__(
        self, tracking_uri: str, experiment: str, artifact_location: str | None = None, settle_seconds: float = 0.5
    ) -> None:
        self.tracking_uri = check_tracking_uri(tracking_uri)
        self.settle_seconds = settle_seconds
        self.client = MlflowClient(tracking_uri=tracking_uri)
        found = self.client.get_experiment_by_name(experiment)
        if found is None:
            try:
                self.experiment_id = self.client.create_experiment(experiment, artifact_location=artifact_location)
            except Exception:  # another process created it first
                found = self.client.get_experiment_by_name(experiment)
                if found is None:
                    raise
                self.experiment_id = found.experiment_id
        else:
            self.experiment_id = found.experiment_id

    def __repr__(self) -> str:
        return f"Tracker(experiment_id={self.experiment_id!r})"

    def runs_for(self, dagster_run_id: str) -> list[Any]:
        return list(
            self.client.search_runs(
                [self.experiment_id],
                filter_string=f"tags.`{DAGSTER_RUN_TAG}` = '{dagster_run_id}'",
                order_by=["attributes.start_time ASC"],
            )
        )

    def run_for(self, dagster_run_id: str, tags: Mapping[str, str], run_name: str | None = None) -> str:
        """The MLflow run id for this Dagster run, created on first use (race-safe, see module docstring)."""
        existing = self.runs_for(dagster_run_id)
        if existing:
            return _oldest(existing).info.run_id
        all_tags = {DAGSTER_RUN_TAG: dagster_run_id, **tags}
        mine = self.client.create_run(self.experiment_id, tags=all_tags, run_name=run_name)
        time.sleep(self.settle_seconds)
        winner = _oldest(self.runs_for(dagster_run_id) or [mine])
        if winner.info.run_id != mine.info.run_id:
            self.client.delete_run(mine.info.run_id)
        return winner.info.run_id

    def latest_model_version(self, name: str) -> str | None:
        """The newest version number of a registered model, or None when it has none (or does not exist)."""
        versions = self.client.search_model_versions(f"name = '{name}'")
        return str(max(int(v.version) for v in versions)) if versions else None

    def model_version_uri(self, name: str, version: str) -> str:
        """Where a registered version's files are, loadable without pointing MLflow's global API at this store."""
        return self.client.get_model_version_download_uri(name, version)

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        self.client.log_batch(run_id, tags=[RunTag(k, str(v)[:5000]) for k, v in tags.items()])

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        """Log params once; MLflow refuses to change a param, so ones already set to the same value are skipped."""
        current = self.client.get_run(run_id).data.params
        fresh = [Param(k, str(v)[:6000]) for k, v in params.items() if k not in current]
        if fresh:
            self.client.log_batch(run_id, params=fresh)

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
        now = int(time.time() * 1000)
        self.client.log_batch(run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()])

    def log_report(self, run_id: str, report: StageReport, step: int = 0) -> None:
        """Stage metrics as ``<stage>.<metric>`` plus the whole report as a JSON artifact per shard."""
        self.log_metrics(run_id, {f"{report.stage}.{k}": v for k, v in report.metrics().items()}, step=step)
        self.log_json(run_id, report.to_dict(), f"reports/{report.stage}/{report.shard}.json")

    def log_json(self, run_id: str, obj: Any, artifact_file: str) -> None:
        self.client.log_text(run_id, json.dumps(obj, indent=2, sort_keys=True, default=str), artifact_file)

    def log_figure(self, run_id: str, figure: Any, artifact_file: str) -> None:
        self.client.log_figure(run_id, figure, artifact_file)

    def log_file(self, run_id: str, local_path: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(run_id, str(local_path), artifact_path)

    def log_bytes(self, run_id: str, data: bytes, artifact_file: str) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / Path(artifact_file).name
            path.write_bytes(data)
            parent = str(Path(artifact_file).parent)
            self.client.log_artifact(run_id, str(path), None if parent == "." else parent)


def _oldest(runs: list[Any]) -> Any:
    return min(runs, key=lambda r: (r.info.start_time or 0, r.info.run_id))


def log_clip_model(
    tracker: Tracker,
    run_id: str,
    model: Any,
    registered_name: str,
    tags: dict[str, str],
    *,
    architecture: str | None = None,
    architecture_config: dict[str, Any] | None = None,
) -> str:
    """Log an open_clip model to the run, register it, tag the version with its lineage; returns the version.

    Only the client API is used (no ``mlflow.start_run``), so nothing global changes in a long-lived process.
    MLflow 3's default format needs an input example, which a two-tower CLIP has no single form of, so the
    model is saved in pickle format (load it only from a tracking server you trust). With ``architecture``,
    the open_clip model name (and a custom config) is saved beside it as ``open_clip_model.json`` and tagged
    ``open_clip.architecture``: the pickle holds the weights and code, but its tokenizer is found by that name.
    """
    import mlflow.pytorch
    from mlflow.exceptions import MlflowException

    version_tags = dict(tags)
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / "model"
        mlflow.pytorch.save_model(model, str(local), serialization_format="pickle")
        if architecture is not None:
            described = {"architecture": architecture, "architecture_config": architecture_config}
            (local / ARCHITECTURE_FILE).write_text(json.dumps(described, indent=1, sort_keys=True))
            version_tags[ARCHITECTURE_TAG] = architecture
        tracker.client.log_artifacts(run_id, str(local), "model")
    source = f"{tracker.client.get_run(run_id).info.artifact_uri}/model"
    with contextlib.suppress(MlflowException):  # it exists already
        tracker.client.create_registered_model(registered_name)
    version = tracker.client.create_model_version(registered_name, source, run_id=run_id, tags=version_tags)
    return str(version.version)


def log_coca_model(
    tracker: Tracker,
    run_id: str,
    model: Any,
    registered_name: str,
    tags: dict[str, str],
    *,
    architecture: str,
    architecture_config: dict[str, Any] | None = None,
) -> str:
    """Log and register a CoCa as :func:`log_clip_model` does, always with its architecture, which the
    captioner's loader (``ops.vlm.coca``) needs for the tokenizer; returns the version."""
    if not hasattr(model, "text_decoder"):
        raise TypeError(f"a {type(model).__name__} is not a CoCa (it has no text decoder)")
    return log_clip_model(
        tracker,
        run_id,
        model,
        registered_name,
        tags,
        architecture=architecture,
        architecture_config=architecture_config,
    )
