"""``make demo``: generate the embedded sample web, serve it on 127.0.0.1, and let Dagster run the pipeline.

Nothing here sequences stages: the demo publishes the web's WARCs under ``sources/`` and starts a real
``dagster-daemon`` on the instance in ``DAGSTER_HOME``. The new-sources sensor registers each WARC as a shard,
the automation sensor runs every stage in the order the stage graph declares, and the demo waits until the graph
is at rest, printing each run as it ends. ``make ui`` afterwards shows every run (in the timeline, on the job
pages and in the sensors' history), materialization, check and log. Everything is offline and deterministic.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from dagster import AssetKey, DagsterInstance, DagsterRunStatus, RunsFilter
from dagster._core.scheduler.instigation import InstigatorStatus, InstigatorType

from infra.lake import Lake
from infra.pools import ensure_gpu_pool
from infra.sample_web import ORIGIN as SAMPLE_WEB_ORIGIN
from infra.sample_web import generate, metadata_entries, serve
from ops import graph
from ops.sources import SOURCES, registry
from pipelines.daemon import REPO, running_daemon, wait_until_settled
from pipelines.profiles import SAMPLE_WEB_METADATA, current_profile, sample_web_port, sensor_interval

SAMPLE_PREFIX = f"{SOURCES}/sample_web"
DRIVING_SENSORS = ("new_sources_sensor", "automation_sensor")
TIMEOUT_S = 1200


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--serve-only", action="store_true", help="only serve the sample web (used by `make ui`)")
    p.add_argument("--port", type=int, default=sample_web_port())
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def prepare_sample_web(lake: Lake, work: Path, base_url: str, seed: int, publish: bool = True, **sizes: int):
    """Generate the web in ``work`` and publish its WARCs under ``sources/sample_web/`` (unchanged ones stay).

    The WARCs name ``base_url``, not the server's address, so they are the same bytes whatever port serves them.
    """
    web = generate(work, base_url, seed=seed, **sizes)
    lake.write_json(SAMPLE_WEB_METADATA, metadata_entries())
    if publish:
        for warc in web.warc_paths:
            publish_source(lake, warc)
    return web


def publish_source(lake: Lake, warc: Path) -> str:
    """Copy one generated WARC under ``sources/sample_web/`` unless the same bytes are there; its lake path."""
    rel = f"{SAMPLE_PREFIX}/{warc.name}"
    if not lake.exists(rel) or lake.read_bytes(rel) != warc.read_bytes():
        lake.write_bytes(rel, warc.read_bytes())
    return rel


def ensure_sensors_running(instance: DagsterInstance) -> None:
    """Start the sensors that drive the graph if someone stopped them in the UI (they default to running)."""
    stopped = [
        state.instigator_name
        for state in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR)
        if state.instigator_name in DRIVING_SENSORS and state.status == InstigatorStatus.STOPPED
    ]
    if stopped:
        dagster = Path(sys.executable).parent / "dagster"
        for name in stopped:
            subprocess.run([str(dagster), "sensor", "start", "-w", str(REPO / "workspace.yaml"), name], check=True)


class RunPrinter:
    """Prints each run once it ends: what it materialized, for which shard, how it ended and how long it took."""

    def __init__(self, instance: DagsterInstance, since: float) -> None:
        self._instance, self._since = instance, since
        self._seen: set[str] = set()
        self.failed: list[str] = []

    def poll(self) -> None:
        ended = [DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED]
        for record in reversed(
            self._instance.get_run_records(RunsFilter(statuses=ended, created_after=_utc(self._since)))
        ):
            run = record.dagster_run
            if run.run_id in self._seen:
                continue
            self._seen.add(run.run_id)
            assets = ",".join(sorted(k.to_user_string() for k in run.asset_selection or []))
            where = run.tags.get("dagster/partition") or "(all shards)"
            took = (record.end_time or 0) - (record.start_time or record.end_time or 0)
            print(f"  {run.status.value:<8} {where:<26} {assets}  ({took:.0f}s, {run.run_id[:8]})", flush=True)
            if run.status != DagsterRunStatus.SUCCESS:
                self.failed.append(run.run_id)


def _utc(timestamp: float):
    from datetime import UTC, datetime

    return datetime.fromtimestamp(timestamp, UTC)


def _latest_time(instance: DagsterInstance, asset: str) -> float | None:
    records = instance.fetch_materializations(AssetKey(asset), limit=1).records
    return records[0].timestamp if records else None


def evaluated_latest(instance: DagsterInstance, keys: list[str]) -> bool:
    """The end of the graph reflects its start: evaluation after the newest dataset, the dataset after every
    shard's last flowing stage."""
    times = [_latest_time(instance, name) for name in ("dataset", "evaluation")]
    last = graph.last_flowing().name
    records = instance.fetch_materializations(AssetKey(last), limit=max(10, 4 * len(keys))).records
    shard_times = [r.timestamp for r in records]
    if None in times or not keys:
        return False
    return times[1] >= times[0] and (not shard_times or times[0] >= max(shard_times))


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    if current_profile() != "demo":
        print("the demo runs with CLIPFOUNDRY_PROFILE=demo (make demo sets it)", file=sys.stderr)
        return 2
    from pipelines.profiles import resources

    lake: Lake = resources()["lake"].lake()
    if not lake.is_local:
        print("the demo writes its sample web next to a local data root", file=sys.stderr)
        return 2
    if args.port != sample_web_port():
        print("set the port with CLIPFOUNDRY_SAMPLE_WEB_PORT: the download settings read it too", file=sys.stderr)
        return 2
    web = prepare_sample_web(lake, Path(lake.path("sample_web")), SAMPLE_WEB_ORIGIN, args.seed)
    with serve(web.site_dir, port=args.port) as server:
        print(f"sample web: {server.url} ({web.site_dir})")
        if args.serve_only:
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
            while True:
                time.sleep(3600)
        home = os.environ["DAGSTER_HOME"]
        instance = DagsterInstance.get()
        ensure_sensors_running(instance)
        print(f"gpu pool: {ensure_gpu_pool(instance)} slot(s)")
        started = time.time()
        printer = RunPrinter(instance, started)
        print("dagster-daemon: the sensors register the shards and the automation runs the graph; runs as they end:")
        with running_daemon(home) as daemon:

            def done() -> bool:
                keys = sorted(k for k, v in registry(lake).items() if v["path"].startswith(SAMPLE_PREFIX + "/"))
                return evaluated_latest(instance, keys)

            settled = wait_until_settled(
                instance,
                done,
                quiet_seconds=3 * sensor_interval(),
                timeout=TIMEOUT_S,
                daemon=daemon,
                on_poll=printer.poll,
            )
        printer.poll()
        keys = sorted(k for k, v in registry(lake).items() if v["path"].startswith(SAMPLE_PREFIX + "/"))
        print(f"\npipeline at rest after {time.time() - started:.1f}s over {len(keys)} shards\n")
        _summary(lake, keys)
        _model_summary(instance)
    _where_to_look(lake)
    if not settled:
        print(f"the graph did not come to rest within {TIMEOUT_S}s; see {home}/daemon.log", file=sys.stderr)
        return 1
    if printer.failed:
        print(f"{len(printer.failed)} run(s) failed: {printer.failed}; see them in the UI (make ui)", file=sys.stderr)
        return 1
    return 0


def _summary(lake: Lake, keys: list[str]) -> None:
    print(f"{'stage':<13} {'shard':<22} {'in':>6} {'kept':>6}  dropped")
    for stage in graph.shard_stages():
        for key in keys:
            if not lake.exists(stage.report(key)):
                continue
            r = lake.read_json(stage.report(key))
            print(f"{stage.name:<13} {key:<22} {r['rows_in']:>6} {r['rows_kept']:>6}  {r['dropped']}")


def _model_summary(instance: DagsterInstance) -> None:
    """What the global steps produced: round 0 (the bootstrap CoCa and its zero-shot scores), the dataset version,
    the final model and its zero-shot scores."""
    top = ("eval/sample_web/top1", "eval/sample_web/top5", "eval/sample_web/mean_per_class_recall")
    for asset, keys in (
        ("bootstrap", ("registered_model", "samples", "final_loss", *top)),
        ("dataset", ("version", "samples")),
        ("model", ("registered_model", "steps", "first_loss", "final_loss")),
        ("evaluation", (*top, "round")),
    ):
        records = instance.fetch_materializations(AssetKey(asset), limit=1).records
        if records:
            meta = records[0].asset_materialization.metadata
            shown = ", ".join(f"{k.rsplit('/', 1)[-1]}={_fmt(meta[k].value)}" for k in keys if k in meta)
            print(f"{asset:<10} {shown}")


def _fmt(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _where_to_look(lake: Lake) -> None:
    folders = sorted({s.home.split("/")[0] for s in graph.shard_stages()})
    home = os.environ.get("DAGSTER_HOME", "(DAGSTER_HOME unset)")
    print(
        "\nwhere to look:\n"
        f"  Dagster UI : make ui, then http://127.0.0.1:3000 (instance in {home})\n"
        f"  MLflow     : .venv/bin/mlflow ui --backend-store-uri sqlite:///{lake.path('mlflow/mlflow.db')}\n"
        f"  data       : {lake.root_uri}/{{{','.join(folders)}}}/\n"
        "  one sample : .venv/bin/clipfoundry trace <uid>   (CLIPFOUNDRY_DATA_ROOT=data)"
    )


if __name__ == "__main__":
    sys.exit(main())
