"""bootstrap: round 0 of the CapFilt loop (:mod:`ops.bootstrap`): a CoCa trained on what curation and the
heuristics kept, registered in MLflow and scored zero-shot, for the round-1 stages whose settings name it."""

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue

from assets.reporting import affected_metadata
from assets.settings import (
    BootstrapSettings,
    CurationSettings,
    DatasetSettings,
    EvaluationSettings,
    QualitySettings,
    RecaptionSettings,
)
from assets.stage_asset import stage_asset
from assets.training import evaluate_checkpoint, train_registered, trained_metadata
from infra.resources import LakeResource, MlflowResource
from infra.tracking import ROUND_TAG, record_evaluation
from ops import graph
from ops.bootstrap import BootstrapModel, check_trainable, round0_through, users, write_bootstrap
from ops.dataset import DatasetConfig, write_dataset
from ops.stage import done_shards
from pipelines.partitions import shards


@stage_asset("bootstrap", kinds={"pytorch", "mlflow"})
def bootstrap(
    context: AssetExecutionContext,
    lake: LakeResource,
    mlflow: MlflowResource,
    bootstrap_settings: BootstrapSettings,
    quality_settings: QualitySettings,
    recaption_settings: RecaptionSettings,
    dataset_settings: DatasetSettings,
    curation_settings: CurationSettings,
    evaluation_settings: EvaluationSettings,
) -> MaterializeResult:
    store = lake.lake()
    used_by = users(quality_settings.config(), recaption_settings.config())
    through = graph.stage(round0_through())
    ready = done_shards(store, through, context.instance.get_dynamic_partitions(shards.name))
    if not used_by:
        write_bootstrap(store, None, [])
        return MaterializeResult(
            metadata={
                "used_by": MetadataValue.text("no stage's settings name the bootstrap model: nothing trained"),
                **affected_metadata([], "no round-0 model"),
            }
        )
    config = bootstrap_settings.config()
    check_trainable(config)
    data = write_dataset(
        store,
        ready,
        DatasetConfig(samples_per_shard=dataset_settings.config().samples_per_shard, through=through.name),
        curation_settings.config().balance,
    )
    context.log.info(f"round 0: dataset {data.version} of {data.manifest['samples']} samples from {len(ready)} shards")
    trained = train_registered(
        context,
        store,
        mlflow,
        config.training(),
        data.version,
        store.uri(data.manifest_path),
        {ROUND_TAG: "0"},
    )
    suite = evaluate_checkpoint(
        store,
        trained.reported["checkpoint"],
        config.architecture,
        config.architecture_config,
        evaluation_settings.config(),
    )
    trained.tracker.log_metrics(trained.run_id, suite.metrics)
    if suite.headline:
        record_evaluation(trained.tracker, trained.registered_model, trained.version, suite.metrics, suite.headline)
    made = BootstrapModel(
        registered_model=trained.registered_model,
        version=trained.version,
        architecture=config.architecture,
        architecture_config=config.architecture_config,
        dataset_version=data.version,
        samples=trained.samples,
        metrics=suite.metrics,
    )
    write_bootstrap(store, made, used_by)
    return MaterializeResult(
        metadata={
            **trained_metadata(trained),
            **{k: MetadataValue.float(v) for k, v in suite.metrics.items()},
            "round": MetadataValue.int(0),
            "used_by": MetadataValue.json(used_by),
            "dataset_version": MetadataValue.text(data.version),
            "samples": MetadataValue.int(trained.samples),
            **affected_metadata(ready, "the round-0 model changed: their scores, judgements and captions follow it"),
        }
    )
