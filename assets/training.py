"""model and evaluation: open_clip training under torchrun, launched through Dagster Pipes, then zero-shot and
retrieval evaluation with the curation entry counts beside each class ("Neglected Tails"). The training and
evaluation paths here are also the bootstrap's (:mod:`assets.bootstrap`)."""

import hashlib
import json
import sys
from dataclasses import asdict, dataclass
from typing import Any

from dagster import (
    AssetExecutionContext,
    AssetKey,
    MaterializeResult,
    MetadataValue,
    PipesSubprocessClient,
)

from assets.reporting import markdown_table, open_tracking, tracking_metadata
from assets.settings import EvaluationSettings, ModelSettings
from assets.stage_asset import stage_asset
from infra.lake import Lake
from infra.resources import LakeResource, MlflowResource
from infra.tracking import (
    ROUND_TAG,
    Tracker,
    describe_model_version,
    log_clip_model,
    log_coca_model,
    record_evaluation,
)
from ops.bootstrap import OUTPUT as BOOTSTRAP_OUTPUT
from ops.bootstrap import curation_round
from ops.evaluation.config import EvaluationConfig
from ops.evaluation.suite import SuiteResult, run_suite
from ops.training import TrainConfig, dataset_shards, load_trained
from ops.training.config import ModelConfig


def _latest_metadata(context: AssetExecutionContext, asset_key: str) -> dict:
    records = context.instance.fetch_materializations(AssetKey(asset_key), limit=1).records
    if not records:
        raise ValueError(f"materialize {asset_key} first")
    return {k: v.value for k, v in records[0].asset_materialization.metadata.items()}


@dataclass(frozen=True)
class Trained:
    """A model trained and registered by :func:`train_registered`."""

    reported: dict[str, Any]  # what the training process reported through Pipes (checkpoint, steps, losses)
    config: TrainConfig
    registered_model: str
    version: str
    samples: int
    tracker: Tracker
    run_id: str


def train_registered(
    context: AssetExecutionContext,
    store: Lake,
    mlflow: MlflowResource,
    model_config: ModelConfig,
    dataset_version: str,
    manifest_uri: str,
    tags: dict[str, str],
) -> Trained:
    """Train ``model_config`` on a dataset version under torchrun through Dagster Pipes, then log and register it in
    MLflow with its lineage: the one training path of the ``model`` and ``bootstrap`` stages.

    The run folder is named after the dataset version and the settings, inside the lake, so a crashed run
    resumes from its newest checkpoint when the asset is materialised again.
    """
    if not store.is_local:
        raise ValueError("training reads and checkpoints on a local or mounted data root; stage the lake locally")
    pattern, manifest = dataset_shards(store, dataset_version)
    settings = asdict(model_config)
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:10]
    samples = int(manifest.get("expected_samples_per_epoch") or manifest["samples"])
    run_name = f"{dataset_version[:16]}-{digest}"
    config = model_config.train_config(pattern, max(1, samples), store.path("models/runs"), run_name)

    tracker, run_id = open_tracking(context, mlflow, store).result()
    tracker.log_params(run_id, {f"train.{k}": v for k, v in settings.items()} | {"dataset.version": dataset_version})
    lineage = {"dataset.version": dataset_version, "dataset.manifest": manifest_uri, **tags}
    tracker.set_tags(run_id, lineage)

    invocation = PipesSubprocessClient().run(
        command=[sys.executable, "-m", "infra.launchers.train_pipes"],
        context=context,
        extras={
            "train_config": {k: v for k, v in vars(config).items()},
            "tracking_uri": tracker.tracking_uri,
            "experiment": mlflow.experiment,
            "mlflow_run_id": run_id,
        },
    )
    reported = {k: v.value for k, v in invocation.get_materialize_result().metadata.items()}
    model, _, _ = load_trained(reported["checkpoint"], config.model, config.model_config)
    log = log_coca_model if config.is_coca else log_clip_model
    name = model_config.registered_model
    registered = log(
        tracker,
        run_id,
        model,
        name,
        lineage | {"dagster.run_id": context.run.run_id},
        architecture=config.model,
        architecture_config=config.model_config,
    )
    describe_model_version(
        tracker,
        name,
        registered,
        f"{config.model} trained by open_clip_train on dataset {dataset_version} ({manifest['samples']} samples, "
        f"{reported['steps']} steps, final loss {reported['final_loss']:.4g}); Dagster run {context.run.run_id}.",
        {"dataset.samples": manifest["samples"], "train.final_loss": reported["final_loss"]},
    )
    return Trained(reported, config, name, registered, int(manifest["samples"]), tracker, run_id)


def evaluate_checkpoint(
    store: Lake, checkpoint: str, architecture: str, architecture_config: dict | None, sets: EvaluationConfig
) -> SuiteResult:
    """The evaluation suite on a trained checkpoint, on the GPU when there is one."""
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, preprocess, tokenizer = load_trained(checkpoint, architecture, architecture_config, device=device)
    return run_suite(model, tokenizer, preprocess, store, sets, device=device)


def trained_metadata(trained: Trained) -> dict[str, Any]:
    """What a training asset shows: the Pipes report, the dataset, the architecture and the registered version."""
    return {
        **{k: MetadataValue.text(str(v)) if isinstance(v, str) else v for k, v in trained.reported.items()},
        "model": MetadataValue.text(trained.config.model),
        "model_config": MetadataValue.json(trained.config.model_config or {}),
        "registered_model": MetadataValue.text(f"{trained.registered_model}/{trained.version}"),
        **tracking_metadata(trained.tracker, trained.run_id),
    }


@stage_asset("model", kinds={"pytorch", "mlflow"})
def model(
    context: AssetExecutionContext,
    lake: LakeResource,
    mlflow: MlflowResource,
    model_settings: ModelSettings,
) -> MaterializeResult:
    """A CLIP model trained on the latest dataset version, logged and registered in MLflow with its lineage; the
    round of the CapFilt loop it closes (1 when a stage used the bootstrap's model) is tagged."""
    store = lake.lake()
    ds = _latest_metadata(context, "dataset")
    round_tag = {ROUND_TAG: str(curation_round(store))}
    trained = train_registered(
        context, store, mlflow, model_settings.config(), ds["version"], ds["manifest"], round_tag
    )
    return MaterializeResult(
        metadata={
            **trained_metadata(trained),
            "dataset_version": MetadataValue.text(ds["version"]),
            "round": MetadataValue.int(int(round_tag[ROUND_TAG])),
        }
    )


@stage_asset("evaluation", kinds={"pytorch", "mlflow"})
def evaluation(
    context: AssetExecutionContext,
    lake: LakeResource,
    mlflow: MlflowResource,
    model_settings: ModelSettings,
    evaluation_settings: EvaluationSettings,
) -> MaterializeResult:
    """Zero-shot top-1/top-5/mean per-class recall and retrieval R@1/5/10, per set, compared with the last model
    and, when the loop ran, with the bootstrap's round-0 model."""
    store = lake.lake()
    trained = _latest_metadata(context, "model")
    architecture = model_settings.config()
    suite = evaluate_checkpoint(
        store,
        trained["checkpoint"],
        architecture.architecture,
        architecture.architecture_config,
        evaluation_settings.config(),
    )
    metrics = suite.metrics
    tracker, parent = open_tracking(context, mlflow, store).result()
    run_id = tracker.evaluation_run_for(context.run.run_id, parent, trained["registered_model"])
    tails_md = []
    for name, tails in suite.tails.items():
        store.write_parquet(f"evaluation/{trained['mlflow_run_id']}/{name}.parquet", tails)
        tracker.log_json(run_id, tails.to_pylist(), f"evaluation/{name}/neglected_tails.json")
        tails_md.append(f"**{name}** (rarest classes first)\n\n{markdown_table(tails, limit=12)}")
    round0 = _round0_metrics(store, trained)
    tracker.log_metrics(run_id, metrics | {f"round0/{k}": v for k, v in round0.items()})
    previous = _previous_metrics(tracker, trained["registered_model"], metrics)
    name, version = trained["registered_model"].split("/")
    headline = suite.headline
    champion = record_evaluation(tracker, name, version, metrics, headline) if headline else None
    return MaterializeResult(
        metadata={
            **{k: MetadataValue.float(v) for k, v in metrics.items()},
            "model": MetadataValue.text(trained["registered_model"]),
            "round": MetadataValue.int(int(trained.get("round", 0))),
            "champion": MetadataValue.text(f"{name}/{champion} by {headline}" if champion else "no metric to rank by"),
            "vs_previous_model": MetadataValue.json(previous),
            "vs_round_0": MetadataValue.json(
                {k: round(v - round0[k], 6) for k, v in metrics.items() if k in round0}
                if round0
                else "no round-0 model this run (the bootstrap is not used)"
            ),
            "neglected_tails": MetadataValue.md("\n\n".join(tails_md) or "_no classification set configured_"),
            **tracking_metadata(tracker, run_id),
        }
    )


def _round0_metrics(store: Lake, trained: dict) -> dict[str, float]:
    """The bootstrap's round-0 scores when the evaluated model closed round 1, else nothing."""
    if int(trained.get("round", 0)) != 1 or not store.exists(BOOTSTRAP_OUTPUT):
        return {}
    found = store.read_json(BOOTSTRAP_OUTPUT).get("model")
    return dict(found["metrics"]) if found else {}


def _previous_metrics(tracker, current_model: str, metrics: dict[str, float]) -> dict[str, float]:
    """Difference to the newest earlier evaluation of another model (same metric names), empty if none."""
    runs = tracker.client.search_runs(
        [tracker.experiment_id],
        filter_string="tags.`evaluated.model` != ''",
        order_by=["attributes.start_time DESC"],
        max_results=20,
    )
    for run in runs:
        if run.data.tags.get("evaluated.model") == current_model or not run.data.metrics:
            continue
        shared = set(metrics) & set(run.data.metrics)
        if shared:
            return {k: round(metrics[k] - run.data.metrics[k], 6) for k in sorted(shared)}
    return {}
