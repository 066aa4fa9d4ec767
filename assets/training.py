"""model and evaluation: open_clip training under torchrun, launched through Dagster Pipes, then zero-shot and
retrieval evaluation with the curation entry counts beside each class ("Neglected Tails")."""

import hashlib
import json
import sys
from dataclasses import asdict

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
from infra.resources import LakeResource, MlflowResource
from infra.tracking import describe_model_version, log_clip_model, record_evaluation
from ops.curation.stage import ENTRY_COUNTS
from ops.training import dataset_shards, load_trained


def _latest_metadata(context: AssetExecutionContext, asset_key: str) -> dict:
    records = context.instance.fetch_materializations(AssetKey(asset_key), limit=1).records
    if not records:
        raise ValueError(f"materialize {asset_key} first")
    return {k: v.value for k, v in records[0].asset_materialization.metadata.items()}


@stage_asset("model", kinds={"pytorch", "mlflow"})
def model(
    context: AssetExecutionContext, lake: LakeResource, mlflow: MlflowResource, model_settings: ModelSettings
) -> MaterializeResult:
    """A CLIP model trained on the latest dataset version, logged and registered in MLflow with its lineage.

    The run folder is named after the dataset version and the settings, inside the lake, so a crashed run
    resumes from its newest checkpoint when the asset is materialised again.
    """
    store = lake.lake()
    if not store.is_local:
        raise ValueError("training reads and checkpoints on a local or mounted data root; stage the lake locally")
    ds = _latest_metadata(context, "dataset")
    version = ds["version"]
    pattern, manifest = dataset_shards(store, version)
    model_config = model_settings.config()
    settings = asdict(model_config)
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:10]
    samples = int(manifest.get("expected_samples_per_epoch") or manifest["samples"])
    config = model_config.train_config(pattern, max(1, samples), store.path("models/runs"), f"{version[:16]}-{digest}")

    tracker, run_id = open_tracking(context, mlflow, store).result()
    tracker.log_params(run_id, {f"train.{k}": v for k, v in settings.items()} | {"dataset.version": version})
    tracker.set_tags(run_id, {"dataset.version": version, "dataset.manifest": ds["manifest"]})

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
    checkpoint = reported["checkpoint"]
    clip, _, _ = load_trained(checkpoint, config.model, config.model_config)
    lineage = {"dataset.version": version, "dataset.manifest": ds["manifest"], "dagster.run_id": context.run.run_id}
    registered = log_clip_model(tracker, run_id, clip, model_config.registered_model, lineage)
    describe_model_version(
        tracker,
        model_config.registered_model,
        registered,
        f"{config.model} trained by open_clip_train on dataset {version} ({manifest['samples']} samples, "
        f"{reported['steps']} steps, final loss {reported['final_loss']:.4g}); Dagster run {context.run.run_id}.",
        {"dataset.samples": manifest["samples"], "train.final_loss": reported["final_loss"]},
    )
    return MaterializeResult(
        metadata={
            **{k: MetadataValue.text(str(v)) if isinstance(v, str) else v for k, v in reported.items()},
            "dataset_version": MetadataValue.text(version),
            "model": MetadataValue.text(config.model),
            "model_config": MetadataValue.json(config.model_config or {}),
            "registered_model": MetadataValue.text(f"{model_config.registered_model}/{registered}"),
            **tracking_metadata(tracker, run_id),
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
    """Zero-shot top-1/top-5/mean per-class recall and retrieval R@1/5/10, per set, compared with the last model."""
    store = lake.lake()
    import torch

    from ops.evaluation import entry_counts_from_table, load_classification_set, neglected_tails, retrieval, zero_shot

    trained = _latest_metadata(context, "model")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    architecture = model_settings.config()
    clip, preprocess, tokenizer = load_trained(
        trained["checkpoint"], architecture.architecture, architecture.architecture_config, device=device
    )
    tracker, parent = open_tracking(context, mlflow, store).result()
    run_id = tracker.evaluation_run_for(context.run.run_id, parent, trained["registered_model"])
    counts = {}
    if store.exists(ENTRY_COUNTS):
        counts = entry_counts_from_table(store.read_parquet(ENTRY_COUNTS))
    metrics: dict[str, float] = {}
    tails_md = []
    sets = evaluation_settings.config()
    for prefix in sets.classification_sets:
        name = prefix.rstrip("/").rsplit("/", 1)[-1]
        result = zero_shot(clip, tokenizer, preprocess, store, load_classification_set(store, prefix), device=device)
        for key, value in result["metrics"].items():
            metrics[f"eval/{name}/{key}"] = float(value)
        for lang, values in result["by_language"].items():
            for key, value in values.items():
                metrics[f"eval/{name}/{lang}/{key}"] = float(value)
        tails = neglected_tails(result["per_class"], counts)
        store.write_parquet(f"evaluation/{trained['mlflow_run_id']}/{name}.parquet", tails)
        tracker.log_json(run_id, tails.to_pylist(), f"evaluation/{name}/neglected_tails.json")
        tails_md.append(f"**{name}** (rarest classes first)\n\n{markdown_table(tails, limit=12)}")
    for prefix in sets.retrieval_sets:
        name = prefix.rstrip("/").rsplit("/", 1)[-1]
        for key, value in retrieval(clip, tokenizer, preprocess, store, prefix, device=device).items():
            metrics[f"eval/{name}/{key}"] = float(value)
    tracker.log_metrics(run_id, metrics)
    previous = _previous_metrics(tracker, trained["registered_model"], metrics)
    name, version = trained["registered_model"].split("/")
    tops = [k for k in metrics if k.endswith("/top1") and k.count("/") == 2]
    headline = tops[0] if tops else next(iter(metrics), None)
    champion = record_evaluation(tracker, name, version, metrics, headline) if headline else None
    return MaterializeResult(
        metadata={
            **{k: MetadataValue.float(v) for k, v in metrics.items()},
            "model": MetadataValue.text(trained["registered_model"]),
            "champion": MetadataValue.text(f"{name}/{champion} by {headline}" if champion else "no metric to rank by"),
            "vs_previous_model": MetadataValue.json(previous),
            "neglected_tails": MetadataValue.md("\n\n".join(tails_md) or "_no classification set configured_"),
            **tracking_metadata(tracker, run_id),
        }
    )


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
