"""Schedules: re-run stages on a cadence, so a new metadata list, threshold or model reaches every shard.

A schedule here is built from a job (an asset selection) by :func:`build_refresh_schedule`:

- ``per_shard=True``: one run per known ``shards`` partition, so shards spread over the run queue (and over pods
  on Kubernetes) exactly as sensor-triggered runs do;
- ``per_shard=False``: one run of an unpartitioned job (global steps: entry counts, dataset, model, evaluation).

``run_key`` is ``<schedule>:<tick>[:<shard>]``, so a tick evaluated twice (daemon restart) never doubles runs.
``refresh_schedule`` targets ``ingest_job`` today; when curation and training land, point it at the per-shard
curation job and add a ``per_shard=False`` schedule for the training job, each one line in ``definitions.py``.
Schedules ship stopped: turning one on is a deployment decision (UI, or ``dagster schedule start``).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from dagster import (
    DefaultScheduleStatus,
    JobDefinition,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SkipReason,
    schedule,
)

from pipelines.jobs import ingest_job
from pipelines.partitions import shards

if TYPE_CHECKING:
    from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

REFRESH_CRON = os.environ.get("CLIPFOUNDRY_REFRESH_CRON", "0 3 * * 0")
REFRESH_TAG = "clipfoundry/refresh"


def build_refresh_schedule(
    job: JobDefinition | UnresolvedAssetJobDefinition,
    *,
    name: str,
    cron_schedule: str = REFRESH_CRON,
    per_shard: bool = True,
    description: str | None = None,
) -> ScheduleDefinition:
    """A stopped-by-default UTC schedule over ``job``: per known shard, or one run for a global job."""

    @schedule(
        job=job,
        name=name,
        cron_schedule=cron_schedule,
        execution_timezone="UTC",
        default_status=DefaultScheduleStatus.STOPPED,
        description=description or f"Re-materialise {job.name} on '{cron_schedule}' (UTC).",
    )
    def _refresh(context: ScheduleEvaluationContext) -> list[RunRequest] | SkipReason:
        tick = context.scheduled_execution_time.strftime("%Y-%m-%dT%H%M")
        tags = {REFRESH_TAG: tick}
        if not per_shard:
            return [RunRequest(run_key=f"{name}:{tick}", tags=tags)]
        keys = sorted(context.instance.get_dynamic_partitions(shards.name))
        if not keys:
            return SkipReason("no shards registered yet (the new-sources sensor adds them)")
        return [RunRequest(run_key=f"{name}:{tick}:{key}", partition_key=key, tags=tags) for key in keys]

    return _refresh


refresh_schedule = build_refresh_schedule(
    ingest_job,
    name="refresh_schedule",
    description="Weekly: re-run every known shard through the per-shard stages with the current settings.",
)
