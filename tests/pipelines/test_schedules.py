"""The refresh schedule: one run per known shard per tick (stable run keys), or one run for a global job.

Ticks are evaluated with ``evaluate_tick`` inside ``with build_schedule_context(...)``, as the daemon does, so the
context's instance is closed afterwards (a bare ``schedule(context)`` call leaves it open and breaks later
definition loads in the same process).
"""

from __future__ import annotations

from datetime import UTC, datetime

from dagster import DagsterInstance, Definitions, asset, build_schedule_context, define_asset_job

from pipelines.definitions import defs
from pipelines.partitions import shards
from pipelines.schedules import REFRESH_TAG, build_refresh_schedule, refresh_schedule

TICK = datetime(2026, 11, 29, 3, 0, tzinfo=UTC)


def _tick(schedule, definitions: Definitions, instance: DagsterInstance):
    repo = definitions.get_repository_def()
    with build_schedule_context(instance=instance, scheduled_execution_time=TICK, repository_def=repo) as context:
        return schedule.evaluate_tick(context)


def test_one_run_per_known_shard_with_stable_run_keys(tmp_path):
    code = Definitions.merge(defs, Definitions(schedules=[refresh_schedule]))
    assert code.resolve_schedule_def("refresh_schedule").job_name == "ingest_job"
    with DagsterInstance.local_temp(str(tmp_path)) as instance:
        empty = _tick(refresh_schedule, code, instance)
        assert not empty.run_requests
        assert "no shards" in empty.skip_message

        instance.add_dynamic_partitions(shards.name, ["cc.b", "cc.a"])
        requests = _tick(refresh_schedule, code, instance).run_requests
        assert [r.partition_key for r in requests] == ["cc.a", "cc.b"]
        assert [r.run_key for r in requests] == [
            "refresh_schedule:2026-11-29T0300:cc.a",
            "refresh_schedule:2026-11-29T0300:cc.b",
        ]
        assert all(r.tags[REFRESH_TAG] == "2026-11-29T0300" for r in requests)
        again = _tick(refresh_schedule, code, instance).run_requests
        assert [r.run_key for r in again] == [r.run_key for r in requests]


def test_schedule_ships_stopped_in_utc():
    assert refresh_schedule.execution_timezone == "UTC"
    assert refresh_schedule.default_status.value == "STOPPED"


def test_global_job_gets_one_run_per_tick(tmp_path):
    @asset
    def model() -> None:
        """Stands in for the training stage's unpartitioned asset."""

    retrain_job = define_asset_job("retrain_job", selection=[model])
    retrain = build_refresh_schedule(retrain_job, name="retrain_schedule", cron_schedule="0 4 1 * *", per_shard=False)
    code = Definitions(assets=[model], jobs=[retrain_job], schedules=[retrain])
    assert code.resolve_schedule_def("retrain_schedule").cron_schedule == "0 4 1 * *"
    with DagsterInstance.local_temp(str(tmp_path)) as instance:
        [request] = _tick(retrain, code, instance).run_requests
        assert request.run_key == "retrain_schedule:2026-11-29T0300"
        assert request.partition_key is None
