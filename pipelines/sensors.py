"""The new-sources sensor: a new file under ``sources/`` becomes a shard partition and a run, no code change."""

from __future__ import annotations

from dagster import DefaultSensorStatus, RunRequest, SensorEvaluationContext, SensorResult, SkipReason, sensor

from infra.resources import LakeResource
from ops.sources import list_sources
from pipelines.jobs import ingest_job
from pipelines.partitions import shards


@sensor(job=ingest_job, minimum_interval_seconds=60, default_status=DefaultSensorStatus.STOPPED)
def new_sources_sensor(context: SensorEvaluationContext, lake: LakeResource) -> SensorResult | SkipReason:
    """Register every unseen source file as a ``shards`` partition and request its ingest run.

    The cursor counts registration rounds and the run key carries it (``ingest:<shard>:<round>``): a retried
    tick reuses its keys, so a file is never ingested twice, while a partition deleted and later registered
    again is a new registration and gets a new ingest run.
    """
    found, skipped = list_sources(lake.lake())
    for message in skipped:
        context.log.warning(message)
    known = set(context.instance.get_dynamic_partitions(shards.name))
    new = sorted(set(found) - known)
    if not new:
        return SkipReason(f"no new source files ({len(found)} known)")
    context.log.info(f"new shards: {new}")
    registration = int(context.cursor or 0) + 1
    return SensorResult(
        run_requests=[RunRequest(partition_key=key, run_key=f"ingest:{key}:{registration}") for key in new],
        dynamic_partitions_requests=[shards.build_add_request(new)],
        cursor=str(registration),
    )
