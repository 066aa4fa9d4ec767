"""Sensors: new source files become shard partitions; a cron refreshes the whole chain; a Dagster run's end ends
its MLflow runs with the same status.

Neither launches stage runs itself: a new partition is picked up by the automation sensor
(:mod:`pipelines.automation`) like any other change, and the refresh is one asset backfill of the whole graph
(:mod:`pipelines.backfill`), which Dagster's backfill daemon runs in dependency order.
"""

from __future__ import annotations

import hashlib
import json
import os

from dagster import (
    AssetObservation,
    AssetSelection,
    DagsterRunStatus,
    DefaultSensorStatus,
    MetadataValue,
    RunRequest,
    RunStatusSensorContext,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    run_status_sensor,
    sensor,
)
from dagster._time import get_current_datetime
from dagster._utils.schedules import get_latest_completed_cron_tick

from infra.resources import LakeResource, MlflowResource
from infra.tracking import END_STATUS
from ops.sources import registry, sync
from pipelines.automation import automation_on
from pipelines.backfill import whole_graph
from pipelines.partitions import shards

REFRESH_CRON = os.environ.get("CLIPFOUNDRY_REFRESH_CRON", "0 3 * * 0")
REFRESH_TAG = "clipfoundry/refresh"


def new_sources_sensor_for(interval_seconds: int):
    """The new-sources sensor, polling ``sources/`` every ``interval_seconds`` (the profile decides)."""

    @sensor(
        name="new_sources_sensor",
        minimum_interval_seconds=interval_seconds,
        default_status=DefaultSensorStatus.RUNNING if automation_on() else DefaultSensorStatus.STOPPED,
        description="Registers every new file under sources/ as a shard partition; reports files it cannot use.",
    )
    def new_sources_sensor(context: SensorEvaluationContext, lake: LakeResource) -> SensorResult | SkipReason:
        """A file's first registration binds its shard key to it for ever (:mod:`ops.sources`); a file that folds
        to a key bound to another file, or whose name makes no key, is refused and reported on the tick and on
        the ``crawl`` asset (an observation listing the files), once per change of that list."""
        store = lake.lake()
        new, refused = sync(store, set(context.instance.get_dynamic_partitions(shards.name)))
        for message in refused:
            context.log.warning(message)
        digest = hashlib.sha256(json.dumps(sorted(refused)).encode()).hexdigest()[:16]
        events = []
        if digest != (context.cursor or hashlib.sha256(b"[]").hexdigest()[:16]):
            events.append(
                AssetObservation(
                    "crawl",
                    metadata={
                        "unusable_sources": MetadataValue.json(refused),
                        "unusable_source_count": MetadataValue.int(len(refused)),
                    },
                )
            )
        if not new and not events:
            note = f"; {len(refused)} file(s) refused: {refused[:3]}" if refused else ""
            return SkipReason(f"no new source files ({len(registry(store))} registered){note}")
        if new:
            context.log.info(f"new shards: {new}")
        return SensorResult(
            dynamic_partitions_requests=[shards.build_add_request(new)] if new else [],
            asset_events=events,
            cursor=digest,
        )

    return new_sources_sensor


@sensor(
    name="refresh_sensor",
    asset_selection=AssetSelection.all(),  # a sensor may submit an asset backfill only over a selection it names
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.STOPPED,
    description=f"On '{REFRESH_CRON}' (UTC): one backfill of the whole graph over every shard.",
)
def refresh_sensor(context: SensorEvaluationContext) -> RunRequest | SkipReason:
    """A cron for the whole chain. It is a sensor because a Dagster schedule launches runs of one job, and one
    job cannot hold per-shard and global assets; a sensor can submit the asset backfill that spans both. The
    first evaluation after it is turned on only records the latest tick, as a schedule would wait for the next.
    """
    tick = get_latest_completed_cron_tick(REFRESH_CRON, get_current_datetime(), "UTC").isoformat()
    if context.cursor is None:
        context.update_cursor(tick)
        return SkipReason(f"armed: the next refresh is the first tick of '{REFRESH_CRON}' after {tick}")
    if context.cursor == tick:
        return SkipReason(f"refreshed at {tick} already")
    context.update_cursor(tick)
    keys = context.instance.get_dynamic_partitions(shards.name)
    if not keys:
        return SkipReason("no shards registered yet")
    asset_graph = context.repository_def.asset_graph
    return RunRequest.for_asset_graph_subset(whole_graph(asset_graph, keys), tags={REFRESH_TAG: tick})


def _end_tracking_on(status: DagsterRunStatus):
    @run_status_sensor(
        run_status=status,
        name=f"mlflow_on_{status.value.lower()}_sensor",
        default_status=DefaultSensorStatus.RUNNING,
        description=f"Ends the MLflow runs of every {status.value.lower()} Dagster run with the matching status.",
    )
    def end_tracking(context: RunStatusSensorContext, lake: LakeResource, mlflow: MlflowResource) -> None:
        """A Dagster run's MLflow runs (its own, its shards', its evaluations') stay RUNNING while its steps log
        to them from wherever they execute; only the run's end knows how it went, so this is where they end."""
        ended = mlflow.tracker(lake.lake()).end_dagster_run(context.dagster_run.run_id, status.value)
        context.log.info(
            f"ended {len(ended)} MLflow run(s) of {context.dagster_run.run_id} as {END_STATUS[status.value]}"
        )

    return end_tracking


TRACKING_SENSORS = [
    _end_tracking_on(s) for s in (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED)
]
