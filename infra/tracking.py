"""MLflow tracking: one parent MLflow run per Dagster run, one child run per shard it worked on, and the registry.

Steps of one Dagster run may execute in separate processes (the multiprocess executor, one pod per step on
Kubernetes), so there is no shared in-memory run handle. Each step finds the MLflow run tagged with its Dagster
run id and its kind (the run itself, or one shard of it), creating it when none exists. Two steps racing to create
it converge: on a SQLite store they take turns under a file lock; against a tracking server, after creating, a
step waits a moment (longer than a creation takes to become visible), re-reads all runs with those tags, adopts
the oldest and deletes its own if it lost. Without the wait, a step that looked before
its rival's run was visible would keep its own run while the rival picks the older one. The runs are ended with
the Dagster run's real status by a run-status sensor (:func:`Tracker.end_dagster_run`). The client API
(``MlflowClient``) is used throughout, never the global ``mlflow.start_run`` state, so concurrent steps in one
process cannot collide.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

from infra.credentials import refuse_credentials
from ops.bootstrap import BootstrapModel
from ops.quality.clip_score import ClipModelSpec
from ops.quality.config import ClipScoreConfig
from ops.report import StageReport
from ops.training.checkpoint import register_model_config

DAGSTER_RUN_TAG = "dagster.run_id"
KIND_TAG = "clipfoundry.kind"  # run (one per Dagster run), shard (one per partition of it), evaluation
PARTITION_TAG = "dagster.partition"
PARENT_TAG = "mlflow.parentRunId"
ROUND_TAG = "clipfoundry.round"  # the CapFilt round a model closes: 0 the bootstrap, 1 the model trained after it
# Dagster's end of a run -> MLflow's
END_STATUS = {"SUCCESS": "FINISHED", "FAILURE": "FAILED", "CANCELED": "KILLED"}
ARCHITECTURE_TAG = "open_clip.architecture"
ARCHITECTURE_FILE = "open_clip_model.json"  # beside a logged model; read back by ops.vlm.coca


def check_tracking_uri(uri: str) -> str:
    """``uri`` itself, unless it carries credentials (``http://user:password@host``, or a secret in its query such
    as ``postgresql://db/mlflow?password=``): those are refused, because MLflow repeats the tracking URI in its
    error messages, which end up in Dagster's event log, and Dagster stores it in the job snapshot.
    """
    return refuse_credentials(
        uri,
        "MLflow tracking URI",
        "set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN; for a database URI, "
        "the driver's variables such as PGPASSWORD) instead, as MLflow repeats the URI in its errors",
    )


def default_tracking_uri(local_root: Path) -> str:
    """A SQLite store under the data root: works offline with no server and shows in ``mlflow ui``."""
    local_root.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{local_root / 'mlflow.db'}"


@contextlib.contextmanager
def _store_lock(tracking_uri: str) -> Iterator[bool]:
    """Serialise a SQLite store's users on this machine (processes and threads alike); yields whether it did.

    Opening a fresh store creates and migrates its schema, which two runs starting together would race through;
    and a lock makes adopting a Dagster run's MLflow run exact, where a server's users have to settle a race."""
    if not tracking_uri.startswith("sqlite:///"):
        yield False
        return
    lock = Path(tracking_uri.removeprefix("sqlite:///")).with_suffix(".lock")
    with lock.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class Tracker:
    """Thin wrapper over ``MlflowClient`` with the conventions every stage shares."""

    def __init__(
        self,
        tracking_uri: str,
        experiment: str,
        artifact_location: str | None = None,
        settle_seconds: float = 0.5,
        ui_url: str | None = None,
    ) -> None:
        self.tracking_uri = check_tracking_uri(tracking_uri)
        self.ui_url = ui_url
        self.settle_seconds = settle_seconds
        if artifact_location is None and tracking_uri.startswith("sqlite:///"):
            # MLflow's default is ./mlruns under whatever folder the process runs in: keep artifacts by their store
            artifact_location = (Path(tracking_uri.removeprefix("sqlite:///")).parent / "artifacts").as_uri()
        with _store_lock(tracking_uri):
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

    def runs_for(self, dagster_run_id: str, kind: str = "run", partition: str | None = None) -> list[Any]:
        """The MLflow runs of one Dagster run, of one kind (and one partition), oldest first."""
        query = f"tags.`{DAGSTER_RUN_TAG}` = '{dagster_run_id}' and tags.`{KIND_TAG}` = '{kind}'"
        if partition is not None:
            query += f" and tags.`{PARTITION_TAG}` = '{partition}'"
        return list(self.client.search_runs([self.experiment_id], query, order_by=["attributes.start_time ASC"]))

    def run_for(self, dagster_run_id: str, tags: Mapping[str, str], run_name: str | None = None) -> str:
        """The parent MLflow run of this Dagster run, created on first use (race-safe, see module docstring)."""
        return self._adopt(dagster_run_id, "run", None, tags, run_name)

    def shard_run_for(self, dagster_run_id: str, parent_id: str, partition: str, tags: Mapping[str, str]) -> str:
        """The child run of one shard within this Dagster run: where that shard's stage metrics go, so shards can
        be compared side by side in the MLflow UI."""
        tags = {**tags, PARENT_TAG: parent_id, PARTITION_TAG: partition}
        name = f"{self.client.get_run(parent_id).info.run_name} · {partition}"
        return self._adopt(dagster_run_id, "shard", partition, tags, name)

    def evaluation_run_for(self, dagster_run_id: str, parent_id: str, model: str) -> str:
        """An evaluation's own run, a child of the Dagster run's, tagged with the model version it scored."""
        tags = {PARENT_TAG: parent_id, "evaluated.model": model}
        return self._adopt(dagster_run_id, "evaluation", None, tags, f"evaluation · {model}")

    def _adopt(
        self, dagster_run_id: str, kind: str, partition: str | None, tags: Mapping[str, str], name: str | None
    ) -> str:
        with _store_lock(self.tracking_uri) as serialised:
            existing = self.runs_for(dagster_run_id, kind, partition)
            if existing:
                return _oldest(existing).info.run_id
            all_tags = {DAGSTER_RUN_TAG: dagster_run_id, KIND_TAG: kind, **tags}
            mine = self.client.create_run(self.experiment_id, tags=all_tags, run_name=name)
            if serialised:
                return mine.info.run_id
        time.sleep(self.settle_seconds)
        winner = _oldest(self.runs_for(dagster_run_id, kind, partition) or [mine])
        if winner.info.run_id != mine.info.run_id:
            self.client.delete_run(mine.info.run_id)
        return winner.info.run_id

    def end_dagster_run(self, dagster_run_id: str, dagster_status: str) -> list[str]:
        """End every MLflow run of a Dagster run (its own, its shards', its evaluations') with the Dagster run's
        status; returns the ids ended. Runs already ended keep their status."""
        status = END_STATUS[dagster_status]
        query = f"tags.`{DAGSTER_RUN_TAG}` = '{dagster_run_id}' and attributes.status = 'RUNNING'"
        ended = []
        for run in self.client.search_runs([self.experiment_id], query):
            self.client.set_terminated(run.info.run_id, status)
            ended.append(run.info.run_id)
        return ended

    def run_url(self, run_id: str) -> str | None:
        """A link to the run in the MLflow UI: ``ui_url`` (the ``mlflow ui`` that ``make ui`` serves over the local
        store), else the tracking server itself; None when there is no UI to link to."""
        base = self.ui_url or (self.tracking_uri if self.tracking_uri.startswith(("http://", "https://")) else None)
        return f"{base.rstrip('/')}/#/experiments/{self.experiment_id}/runs/{run_id}" if base else None

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


def describe_model_version(
    tracker: Tracker, name: str, version: str, description: str, tags: Mapping[str, str]
) -> None:
    """Say what a registered version is, in its description and tags (its lineage: lake URIs, not local paths)."""
    tracker.client.update_model_version(name, version, description=description)
    for key, value in tags.items():
        tracker.client.set_model_version_tag(name, version, key, str(value))


CHAMPION = "champion"


def record_evaluation(tracker: Tracker, name: str, version: str, metrics: Mapping[str, float], headline: str) -> str:
    """Tag a version with its evaluation metrics and move the ``champion`` alias to the best version by the headline
    metric (higher is better); returns the champion's version."""
    for key, value in metrics.items():
        tracker.client.set_model_version_tag(name, version, f"eval.{key}", f"{value:.6g}")
    scored = []
    for candidate in tracker.client.search_model_versions(f"name = '{name}'"):
        value = candidate.tags.get(f"eval.{headline}")
        if value is not None:
            scored.append((float(value), int(candidate.version)))
    best = str(max(scored)[1]) if scored else version
    tracker.client.set_registered_model_alias(name, CHAMPION, best)
    return best


def resolve_clip_model(
    clip: ClipScoreConfig, tracker: Tracker, bootstrap: BootstrapModel | None = None
) -> tuple[ClipModelSpec | None, str]:
    """The CLIP model a quality setting names, resolved now (a registered model's newest version is looked up in
    the registry; ``bootstrap`` is the round-0 model when the setting names it), or None, with a sentence for
    the UI saying which model scores or why none does."""
    if not clip.configured:
        return None, "no CLIP model configured"
    if clip.bootstrap:
        if bootstrap is None:
            raise ValueError("the CLIP score names the bootstrap model, but none was given")
        if bootstrap.architecture_config is not None:
            register_model_config(bootstrap.architecture, bootstrap.architecture_config)
        uri = tracker.model_version_uri(bootstrap.registered_model, bootstrap.version)
        spec = ClipModelSpec(model=bootstrap.architecture, mlflow_uri=uri, source=bootstrap.uri)
        return spec, f"{spec.name} (bootstrap, round 0)"
    if clip.architecture_config is not None:
        register_model_config(clip.model, clip.architecture_config)
    uri, source = clip.mlflow_uri, None
    if clip.registered_model is not None:
        version = tracker.latest_model_version(clip.registered_model)
        if version is None:
            return None, f"no version of {clip.registered_model} registered yet: no CLIP score"
        uri, source = (
            tracker.model_version_uri(clip.registered_model, version),
            f"models:/{clip.registered_model}/{version}",
        )
    spec = ClipModelSpec(model=clip.model, pretrained=clip.pretrained, mlflow_uri=uri, source=source)
    return spec, spec.name


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
