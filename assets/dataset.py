"""dataset: MetaCLIP balancing over the global entry counts, then the versioned webdataset shards of every sample
all stages kept, over ALL shards that are through the chain; a manifest whose counts equal the stages' ledgers."""

from dagster import AssetCheckResult, AssetExecutionContext, DataVersion, MaterializeResult, MetadataValue

from assets.checks import NOT_EMPTY, not_empty_spec
from assets.reporting import track, tracking_metadata
from assets.settings import CurationSettings, DatasetSettings, GuardrailSettings
from assets.stage_asset import stage_asset
from infra.resources import LakeResource, MlflowResource
from ops import graph
from ops.dataset import publish_dataset
from ops.guardrails import top_reasons
from ops.stage import done_shards
from pipelines.partitions import shards


@stage_asset("dataset", kinds={"webdataset", "json"}, checks=[not_empty_spec("dataset")])
def dataset(
    context: AssetExecutionContext,
    lake: LakeResource,
    mlflow: MlflowResource,
    dataset_settings: DatasetSettings,
    curation_settings: CurationSettings,
    guardrail_settings: GuardrailSettings,
) -> MaterializeResult:
    store = lake.lake()
    config = dataset_settings.config()
    through = graph.stage(config.through) if config.through else graph.last_flowing()
    known = context.instance.get_dynamic_partitions(shards.name)
    ready = done_shards(store, through, known)
    waiting = {s: f"not through {through.name} yet" for s in sorted(set(known) - set(ready))}
    result = publish_dataset(store, ready, config, curation_settings.config().balance)
    waiting |= result.manifest["shards_left_out"]
    if waiting:
        context.log.warning(f"{len(waiting)} shard(s) left out: {dict(list(waiting.items())[:10])}")
    context.log.info(
        f"dataset {result.version}: {'written' if result.written else 'unchanged'} from {len(ready)} shards"
    )
    run_id = track(context, mlflow, store, [result.report])
    tracker = mlflow.tracker(store)
    tracker.set_tags(run_id, {"dataset.version": result.version, "dataset.manifest": store.uri(result.manifest_path)})
    tracker.log_json(run_id, result.manifest, f"dataset/{result.version}/manifest.json")
    manifest = result.manifest
    minimum = guardrail_settings.config().min_dataset_samples
    losses = sorted(
        ((c["rows_in"] - c["rows_kept"], stage, c["dropped"]) for stage, c in manifest["stages"].items()),
        reverse=True,
    )
    not_empty = AssetCheckResult(
        check_name=NOT_EMPTY,
        passed=manifest["samples"] >= minimum,
        metadata={
            "samples": MetadataValue.int(int(manifest["samples"])),
            "minimum": MetadataValue.int(minimum),
            "biggest_drops": MetadataValue.md(
                "\n".join(f"- {stage}: {lost} dropped; {top_reasons(dropped)}" for lost, stage, dropped in losses[:3])
            ),
        },
    )
    return MaterializeResult(
        check_results=[not_empty],
        metadata={
            "version": MetadataValue.text(result.version),
            "manifest": MetadataValue.path(store.uri(result.manifest_path)),
            "samples": MetadataValue.int(int(manifest["samples"])),
            "tar_shards": MetadataValue.int(len(manifest["shards"])),
            "stages": MetadataValue.json(list(manifest["stages"])),
            "dropped": MetadataValue.json(manifest["dataset"]["dropped"]),
            "shards_left_out": MetadataValue.json(waiting),
            "source_shards": MetadataValue.int(len(result.manifest["input_shards"])),
            "written": MetadataValue.bool(result.written),
            **tracking_metadata(mlflow.tracker(store), run_id),
        },
        data_version=DataVersion(result.version),
    )
