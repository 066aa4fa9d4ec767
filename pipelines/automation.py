"""How the graph runs itself: each asset's automation condition, derived from the declarations in :mod:`ops.graph`
and evaluated by the daemon's automation sensor.

Every condition starts from :class:`InputsChanged`, which compares event-log storage ids, so it reads the same
whenever the sensor was turned on and however the runs fell into ticks:

- A per-shard stage is due for a shard it never ran on, once its inputs exist; when a per-shard stage it reads
  was updated for that shard (by another run than the one that last tried this stage); or when a global step it
  reads names the shard among the shards its new output changes (``affected_shards`` in its metadata). The
  stages of one level that become due together for a shard are requested in the same tick and run as one run.
- A global step is due when something it reads changed since it last ran; it waits until nothing upstream of it is
  in flight (running, queued or requested on this tick) or itself due, so it runs once for a batch, after the
  shards of the batch and any global step whose new output re-runs some of them. A failed shard is not in
  flight: it does not hold back the others. ``once`` steps run when they have never run; ``new_version`` steps
  (``model``) when their input has a new data version.
- Nothing is retried after a failure until an input changes again, so a broken shard cannot make the daemon loop.

Adding a shard therefore runs that shard's stages and the global steps, and re-runs an older shard's stage only
when a global step really changed something that stage reads.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from dagster import (
    AssetCheckKey,
    AssetKey,
    AssetRecordsFilter,
    AssetSelection,
    AutomationCondition,
    AutomationConditionSensorDefinition,
    DagsterEventType,
    DagsterInstance,
    DefaultSensorStatus,
)
from dagster._core.definitions.declarative_automation.automation_condition import AutomationResult
from dagster._core.definitions.declarative_automation.automation_context import AutomationContext

from assets.checks import ROWS_CONSERVED
from ops import graph
from pipelines.partitions import shards as SHARDS_PARTITIONS

AFFECTED = "affected_shards"
PUBLICATIONS_PAGE = 200
_MAT = DagsterEventType.ASSET_MATERIALIZATION
_PLANNED = DagsterEventType.ASSET_MATERIALIZATION_PLANNED


class InputsChanged(AutomationCondition):
    """True where the stage's inputs changed after it last ran or tried to run, or where it never ran."""

    def __init__(self, stage: str) -> None:
        self.stage = stage

    @property
    def requires_cursor(self) -> bool:
        return False

    @property
    def name(self) -> str:
        return "inputs_changed"

    @property
    def description(self) -> str:
        return f"something {self.stage} reads changed since it last ran"

    def evaluate(self, context: AutomationContext) -> AutomationResult:
        if context.candidate_subset.is_empty:
            return AutomationResult(context, context.get_empty_subset())
        instance = context.asset_graph_view.instance
        stage = graph.stage(self.stage)
        if stage.per_shard:
            due = _due_shards(instance, stage, context.candidate_subset.expensively_compute_partition_keys())
            subset = context.asset_graph_view.get_subset_from_partition_keys(context.key, context.partitions_def, due)
        else:
            subset = context.candidate_subset if _global_due(instance, stage) else context.get_empty_subset()
        return AutomationResult(context, subset)


def _latest_by_shard(instance: DagsterInstance, name: str, event: DagsterEventType) -> dict[str, int]:
    return dict(instance.event_log_storage.get_latest_storage_id_by_partition(AssetKey(name), event))


def _run_of(instance: DagsterInstance, name: str, storage_id: int) -> str | None:
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(name), storage_ids=[storage_id]), limit=1
    ).records
    return records[0].run_id if records else None


def _due_shards(instance: DagsterInstance, stage: graph.Stage, candidates: set[str]) -> set[str]:
    made = _latest_by_shard(instance, stage.name, _MAT)
    tried = _latest_by_shard(instance, stage.name, _PLANNED)
    seen = {p: max(made.get(p, -1), tried.get(p, -1)) for p in candidates}
    shard_deps, global_deps = graph.triggering_deps(stage.name)
    due = {p for p in candidates if seen[p] < 0} if not stage.deps else set()  # a new shard's first stage
    for dep in shard_deps:
        latest = _latest_by_shard(instance, dep, _MAT)
        for p in candidates:
            if p not in latest or latest[p] <= seen[p] or p in due:
                continue
            if p in tried:  # an input written by the run that last tried this stage was that run's to use
                attempt = instance.event_log_storage.get_latest_planned_materialization_info(AssetKey(stage.name), p)
                if attempt is not None and attempt.run_id == _run_of(instance, dep, latest[p]):
                    continue
            due.add(p)
    if global_deps:
        inputs = [d for d in stage.deps if graph.stage(d).per_shard]
        ready = {p: -1 for p in candidates}
        for dep in inputs:
            latest = _latest_by_shard(instance, dep, _MAT)
            ready = {p: max(ready[p], latest.get(p, -1)) for p in candidates}
        # a shard this stage never ran on is due once a global step published after its inputs were ready
        floor = {p: seen[p] if seen[p] >= 0 else ready[p] for p in candidates if p not in due}
        for name in global_deps:
            for storage_id, named in _publications(instance, name, min(floor.values(), default=0)):
                due.update(p for p in named if p in floor and storage_id > floor[p])
    return due


def _publications(instance: DagsterInstance, name: str, after: int) -> Iterable[tuple[int, list[str]]]:
    """(storage id, affected shards) of every materialization of a global step after ``after``."""
    cursor = None
    while True:
        page = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=AssetKey(name), after_storage_id=max(after, 0)),
            limit=PUBLICATIONS_PAGE,
            cursor=cursor,
            ascending=True,
        )
        for record in page.records:
            named = record.asset_materialization.metadata.get(AFFECTED)
            yield record.storage_id, list(named.value) if named is not None else []
        if not page.has_more:
            return
        cursor = page.cursor


def _global_due(instance: DagsterInstance, stage: graph.Stage) -> bool:
    return _inputs_changed(instance, stage) and not _upstream_due(instance, stage)


def _upstream_due(instance: DagsterInstance, stage: graph.Stage) -> bool:
    """Whether a data stage upstream of this global step is itself due now, read from the event log.

    Dagster's in-flight view (in progress, or requested on this tick) has a gap: a tick evaluates the assets one
    after another, so a stage evaluated while its input was still running is not requested, and a global step
    evaluated a moment later, when that input has just finished, sees nothing in flight. Asking the same question
    as :class:`InputsChanged` of every upstream stage closes it. Shards whose inputs are missing or failed their
    blocking check cannot run, so they do not hold the batch back; models (``new_version``) are left out, as
    ``evaluation`` follows them rather than the data.
    """
    shards = set(instance.get_dynamic_partitions(SHARDS_PARTITIONS.name))
    for name in graph.ancestors(stage.name):
        up = graph.stage(name)
        if up.trigger == "new_version":
            continue
        if not up.per_shard:
            if _inputs_changed(instance, up):
                return True
            continue
        runnable = set(shards)
        for dep in (d for d in up.deps if graph.stage(d).per_shard):
            latest = _latest_by_shard(instance, dep, _MAT)
            runnable &= set(latest)
            runs = {r.partition_key: r.run_id for r in _records(instance, dep, [latest[p] for p in runnable])}
            passed = _passed_runs(instance, AssetCheckKey(AssetKey(dep), ROWS_CONSERVED), set(runs.values()))
            runnable = {p for p in runnable if runs.get(p) in passed}
        if runnable and _due_shards(instance, up, runnable):
            return True
    return False


def _records(instance: DagsterInstance, name: str, storage_ids: list[int]) -> list:
    if not storage_ids:
        return []
    return instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(name), storage_ids=storage_ids), limit=len(storage_ids)
    ).records


def _inputs_changed(instance: DagsterInstance, stage: graph.Stage) -> bool:
    storage = instance.event_log_storage
    tried = storage.get_latest_planned_materialization_info(AssetKey(stage.name))
    made = storage.get_latest_materialization_storage_ids([AssetKey(stage.name)]).get(AssetKey(stage.name))
    if stage.trigger == "once":
        return tried is None and made is None
    seen = max(tried.storage_id if tried else -1, made if made is not None else -1)
    follows = stage.follows or stage.deps
    latest = storage.get_latest_materialization_storage_ids([AssetKey(d) for d in follows])
    for dep in follows:
        storage_id = latest.get(AssetKey(dep))
        if storage_id is None or storage_id <= seen:
            continue
        if tried is not None and tried.run_id == _run_of(instance, dep, storage_id):
            continue
        if stage.trigger == "new_version" and _same_version(instance, dep, stage.name):
            continue
        return True
    return False


def _same_version(instance: DagsterInstance, dep: str, name: str) -> bool:
    """Whether the latest output of ``name`` was made from the data version ``dep`` holds now."""
    theirs = instance.fetch_materializations(AssetKey(dep), limit=1).records
    ours = instance.fetch_materializations(AssetKey(name), limit=1).records
    if not theirs or not ours:
        return False
    version = theirs[0].asset_materialization.tags.get("dagster/data_version")
    return (
        version is not None
        and ours[0].asset_materialization.metadata.get("dataset_version") is not None
        and (ours[0].asset_materialization.metadata["dataset_version"].value == version)
    )


class UpstreamInFlight(AutomationCondition):
    """True when some partition of a stage upstream of this global step is running, queued, in a backfill, or
    requested on this tick: the step waits for the batch instead of running once per shard.

    One flat pass over the declared ancestors, in Python. The same question asked with Dagster's operators
    (``any_deps_match`` nested once per step of the longest upstream path) grows with the number of upstream
    paths, and on this graph cost tens of CPU seconds a tick, most of it re-reading the dynamic partitions.
    The automation evaluates assets in dependency order, so every ancestor's requests of this tick are known.
    """

    def __init__(self, stage: str) -> None:
        self.stage = stage

    @property
    def requires_cursor(self) -> bool:
        return False

    @property
    def name(self) -> str:
        return "upstream_in_flight"

    @property
    def description(self) -> str:
        return f"a stage upstream of {self.stage} is in flight"

    async def evaluate(self, context: AutomationContext) -> AutomationResult:
        if context.candidate_subset.is_empty:
            return AutomationResult(context, context.get_empty_subset())
        view = context.asset_graph_view
        for name in sorted(graph.ancestors(self.stage)):
            key = AssetKey(name)
            requested = context.request_subsets_by_key.get(key)
            if requested is not None and not requested.is_empty:
                return AutomationResult(context, context.candidate_subset)
            everything = view.get_full_subset(key=key)
            for moving in (view.compute_run_in_progress_subset, view.compute_backfill_in_progress_subset):
                if not (await moving(key=key, from_subset=everything)).is_empty:
                    return AutomationResult(context, context.candidate_subset)
        return AutomationResult(context, context.get_empty_subset())


def _shard_condition(stage: graph.Stage) -> AutomationCondition:
    shard_deps, _ = graph.triggering_deps(stage.name)
    due = InputsChanged(stage.name)
    if shard_deps:
        # requested with the stage before it, in the same tick: one run per shard for a level
        due = due | AutomationCondition.any_deps_match(AutomationCondition.will_be_requested()).allow(
            AssetSelection.assets(*shard_deps)
        ).with_label(f"{', '.join(shard_deps)} requested now")
    return (
        due
        & ~AutomationCondition.any_deps_missing()
        & ~AutomationCondition.any_deps_in_progress()
        & _deps_checked()
        & ~AutomationCondition.in_progress()
    ).with_label(f"{stage.name}: per shard")


def _deps_checked() -> AutomationCondition:
    """Every dep's latest materialization passed its blocking checks, or the dep runs in this same tick's run,
    where a failing check stops this stage before it starts (so a shard's stages of one level run together)."""
    return AutomationCondition.all_deps_match(LatestChecked() | AutomationCondition.will_be_requested()).with_label(
        "deps checked"
    )


class LatestChecked(AutomationCondition):
    """True for the partitions of an asset whose latest materialization passed its blocking checks in the run that
    made it. Dagster's ``check_passed`` looks at a check's latest execution, which on a partitioned asset belongs to
    whichever shard ran last, so it cannot speak for one shard."""

    @property
    def requires_cursor(self) -> bool:
        return False

    @property
    def name(self) -> str:
        return "latest_materialization_checked"

    def evaluate(self, context: AutomationContext) -> AutomationResult:
        graph_view, key = context.asset_graph_view, context.key
        checks = [k for k in context.asset_graph.get_check_keys_for_assets({key}) if _blocking(context, k)]
        if not checks or context.candidate_subset.is_empty:
            return AutomationResult(context, context.candidate_subset)
        instance = graph_view.instance
        if context.partitions_def is None:
            records = instance.fetch_materializations(key, limit=1).records
            runs = {None: records[0].run_id} if records else {}
        else:
            latest = _latest_by_shard(instance, key.to_user_string(), _MAT)
            wanted = {
                p: latest[p] for p in context.candidate_subset.expensively_compute_partition_keys() if p in latest
            }
            records = _records(instance, key.to_user_string(), list(wanted.values()))
            runs = {r.partition_key: r.run_id for r in records}
        passed_runs = set.intersection(*(_passed_runs(instance, check, set(runs.values())) for check in checks))
        good = {p for p, run in runs.items() if run in passed_runs}
        if context.partitions_def is None:
            return AutomationResult(context, context.candidate_subset if good else context.get_empty_subset())
        subset = graph_view.get_subset_from_partition_keys(key, context.partitions_def, good)
        return AutomationResult(context, subset)


def _blocking(context: AutomationContext, check_key) -> bool:
    return context.asset_graph.get_check_spec(check_key).blocking


def _passed_runs(instance: DagsterInstance, check_key, runs: set[str]) -> set[str]:
    """Which of ``runs`` executed ``check_key`` and passed it."""
    passed: set[str] = set()
    seen: set[str] = set()
    cursor = None
    while runs - seen:
        page = instance.event_log_storage.get_asset_check_execution_history(check_key, limit=200, cursor=cursor)
        if not page:
            break
        for record in page:
            if record.run_id in runs and record.run_id not in seen:
                seen.add(record.run_id)
                evaluation = record.event.dagster_event.event_specific_data if record.event else None
                if getattr(evaluation, "passed", False):
                    passed.add(record.run_id)
        cursor = page[-1].id
    return passed


def _global_condition(stage: graph.Stage, retrain_cron: str | None) -> AutomationCondition:
    if stage.trigger == "new_version" and retrain_cron:
        return AutomationCondition.on_cron(retrain_cron).with_label(f"{stage.name}: on cron {retrain_cron}")
    condition = InputsChanged(stage.name) & ~AutomationCondition.in_progress()
    shard_deps = [d for d in stage.deps if graph.stage(d).per_shard]
    global_deps = [d for d in stage.deps if not graph.stage(d).per_shard]
    if shard_deps:
        condition &= (
            AutomationCondition.any_deps_match(~AutomationCondition.missing())
            .allow(AssetSelection.assets(*shard_deps))
            .with_label("some shard ready")
        )
    if global_deps:
        condition &= ~AutomationCondition.any_deps_match(AutomationCondition.missing()).allow(
            AssetSelection.assets(*global_deps)
        ).with_label("global inputs exist")
    condition &= ~UpstreamInFlight(stage.name)
    return condition.with_label(f"{stage.name}: once per batch")


def condition_for(name: str, retrain_cron: str | None = None) -> AutomationCondition:
    """The automation condition of a stage's asset."""
    stage = graph.stage(name)
    return _shard_condition(stage) if stage.per_shard else _global_condition(stage, retrain_cron)


def automation_on() -> bool:
    """``CLIPFOUNDRY_AUTOMATION=off`` leaves the graph to people (UI, CLI, backfills); on by default."""
    value = os.environ.get("CLIPFOUNDRY_AUTOMATION", "on")
    if value not in ("on", "off"):
        raise ValueError(f"CLIPFOUNDRY_AUTOMATION must be 'on' or 'off', not {value!r}")
    return value == "on"


def automation_sensor(interval_seconds: int) -> AutomationConditionSensorDefinition:
    """The daemon's evaluator of every condition above. It runs in the code server (the conditions include
    project code) and asks for plain runs rather than backfills, one per shard, which start without waiting
    for the backfill daemon's 30-second cycle."""
    return AutomationConditionSensorDefinition(
        "automation_sensor",
        target=AssetSelection.all(),
        use_user_code_server=True,
        emit_backfills=False,
        minimum_interval_seconds=interval_seconds,
        default_status=DefaultSensorStatus.RUNNING if automation_on() else DefaultSensorStatus.STOPPED,
        description="Runs the pipeline: new shards through every stage, global steps once per batch of shards.",
    )
