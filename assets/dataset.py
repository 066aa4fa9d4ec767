"""dataset: the final webdataset shards from every sample all upstream stages kept, over ALL shards, with a
content-derived version and a manifest whose counts equal the upstream ledgers."""

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from assets.quality import recaption
from assets.reporting import track
from assets.settings import DatasetSettings
from infra.resources import LakeResource, MlflowResource
from ops.dataset import DatasetConfig, present_stages, write_dataset
from ops.layout import table_path
from pipelines.partitions import shards


@asset(deps=[recaption], group_name="training", kinds={"webdataset", "json"})
def dataset(
    context: AssetExecutionContext, lake: LakeResource, mlflow: MlflowResource, dataset_settings: DatasetSettings
) -> MaterializeResult:
    """Image, raw caption, synthetic caption and lineage per sample; the same inputs give the same version."""
    store = lake.lake()
    known = context.instance.get_dynamic_partitions(shards.name)
    ready = sorted(s for s in known if store.exists(table_path("download", s)))
    stages = present_stages(store, ready)
    config = DatasetConfig(
        stages=stages,
        samples_per_shard=dataset_settings.samples_per_shard,
        online_curation=dataset_settings.online_curation,
    )
    result = write_dataset(store, ready, config)
    context.log.info(f"dataset {result.version}: {'written' if result.written else 'unchanged'} from {stages}")
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
            "stages": MetadataValue.json(list(stages)),
            "source_shards": MetadataValue.int(len(ready)),
            "written": MetadataValue.bool(result.written),
            "mlflow_run_id": MetadataValue.text(run_id),
        }
    )
