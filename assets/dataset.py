"""dataset: MetaCLIP balancing over the global entry counts, then the versioned webdataset shards of every sample
all stages kept, over ALL shards that are through the chain; a manifest whose counts equal the stages' ledgers."""

from dagster import AssetExecutionContext, DataVersion, MaterializeResult, MetadataValue

from assets.reporting import track
from assets.settings import CurationSettings, DatasetSettings
from assets.stage_asset import stage_asset
from infra.resources import LakeResource, MlflowResource
from ops import graph
from ops.dataset import publish_dataset
from ops.stage import done_shards
from pipelines.partitions import shards


@stage_asset("dataset", kinds={"webdataset", "json"})
def dataset(
    context: AssetExecutionContext,
    lake: LakeResource,
    mlflow: MlflowResource,
    dataset_settings: DatasetSettings,
    curation_settings: CurationSettings,
) -> MaterializeResult:
    store = lake.lake()
    config = dataset_settings.config()
    through = graph.stage(config.through) if config.through else graph.last_flowing()
    known = context.instance.get_dynamic_partitions(shards.name)
    ready = done_shards(store, through, known)
    waiting = sorted(set(known) - set(ready))
    if waiting:
        context.log.warning(f"{len(waiting)} shard(s) are not through {through.name} and are left out: {waiting[:10]}")
    result = publish_dataset(store, ready, config, curation_settings.config().balance)
    context.log.info(
        f"dataset {result.version}: {'written' if result.written else 'unchanged'} from {len(ready)} shards"
    )
    run_id = track(context, mlflow, store, [result.report])
    tracker = mlflow.tracker(store)
    tracker.set_tags(run_id, {"dataset.version": result.version, "dataset.manifest": store.uri(result.manifest_path)})
    tracker.log_json(run_id, result.manifest, f"dataset/{result.version}/manifest.json")
    manifest = result.manifest
    return MaterializeResult(
        metadata={
            "version": MetadataValue.text(result.version),
            "manifest": MetadataValue.path(store.uri(result.manifest_path)),
            "samples": MetadataValue.int(int(manifest["samples"])),
            "tar_shards": MetadataValue.int(len(manifest["shards"])),
            "stages": MetadataValue.json(list(manifest["stages"])),
            "dropped": MetadataValue.json(manifest["dataset"]["dropped"]),
            "source_shards": MetadataValue.int(len(ready)),
            "shards_left_out": MetadataValue.json(waiting),
            "written": MetadataValue.bool(result.written),
            "mlflow_run_id": MetadataValue.text(run_id),
        },
        data_version=DataVersion(result.version),
    )
