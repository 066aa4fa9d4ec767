"""``make demo``: generate the embedded sample web, serve it on 127.0.0.1, and run the pipeline through Dagster.

It drives Dagster the way a deployment does: the new-sources sensor is evaluated against the persistent instance
in ``DAGSTER_HOME`` (so new shards become partitions), then each shard's ingest job runs on that same instance,
so ``make ui`` shows every materialization, check and log afterwards. Everything is offline and deterministic.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

from dagster import AssetKey, DagsterInstance, SensorResult, build_sensor_context

from infra.lake import Lake
from infra.sample_web import generate, metadata_entries, serve
from ops.layout import STAGES, report_path
from ops.sources import SOURCES, list_sources
from pipelines.profiles import SAMPLE_WEB_METADATA, current_profile

SAMPLE_PREFIX = f"{SOURCES}/sample_web"
# (job, runs once per shard?) in dependency order: per-shard jobs alternate with global ones.
PLAN = (
    ("ingest_job", True),
    ("metadata_job", False),
    ("dedup_job", True),
    ("entry_counts_job", False),
    ("curate_job", True),
    ("clip_score_threshold_job", False),
    ("quality_job", True),
    ("dataset_job", False),
    ("train_job", False),
)


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--serve-only", action="store_true", help="only serve the sample web (used by `make ui`)")
    p.add_argument("--port", type=int, default=int(os.environ.get("CLIPFOUNDRY_SAMPLE_WEB_PORT", "8765")))
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def prepare_sample_web(lake: Lake, work: Path, base_url: str, seed: int, **sizes: int):
    """Generate the web in ``work`` and publish its WARCs under ``sources/sample_web/`` (unchanged ones stay)."""
    web = generate(work, base_url, seed=seed, **sizes)
    lake.write_json(SAMPLE_WEB_METADATA, metadata_entries())
    for warc in web.warc_paths:
        rel = f"{SAMPLE_PREFIX}/{warc.name}"
        if not lake.exists(rel) or lake.read_bytes(rel) != warc.read_bytes():
            lake.write_bytes(rel, warc.read_bytes())
    return web


def run_sensor_tick(instance: DagsterInstance, defs) -> list[str]:
    """Evaluate the new-sources sensor once, as the daemon would, and apply its partition requests."""
    sensor = defs.resolve_sensor_def("new_sources_sensor")
    context = build_sensor_context(
        instance=instance, definitions=defs, sensor_name=sensor.name, resources={"lake": defs.resources["lake"]}
    )
    result = sensor(context)
    added: list[str] = []
    if isinstance(result, SensorResult):
        for request in result.dynamic_partitions_requests or []:
            instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
            added.extend(request.partition_keys)
    return added


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    if current_profile() != "demo":
        print("the demo runs with CLIPFOUNDRY_PROFILE=demo (make demo sets it)", file=sys.stderr)
        return 2
    from pipelines.definitions import defs

    lake: Lake = defs.resources["lake"].lake()
    if not lake.is_local:
        print("the demo writes its sample web next to a local data root", file=sys.stderr)
        return 2
    base_url = f"http://127.0.0.1:{args.port}"
    web = prepare_sample_web(lake, Path(lake.path("sample_web")), base_url, args.seed)
    with serve(web.site_dir, port=args.port) as server:
        print(f"sample web: {server.url} ({web.site_dir})")
        if args.serve_only:
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
            while True:
                time.sleep(3600)
        instance = DagsterInstance.get()
        started = time.perf_counter()
        added = run_sensor_tick(instance, defs)
        print(f"new-sources sensor registered {len(added)} new shard(s): {added}")
        found, _ = list_sources(lake)
        keys = sorted(k for k, rel in found.items() if rel.startswith(SAMPLE_PREFIX + "/"))
        for job_name, per_shard in PLAN:
            job = defs.resolve_job_def(job_name)
            for key in keys if per_shard else [None]:
                result = job.execute_in_process(instance=instance, partition_key=key, raise_on_error=False)
                print(f"{job_name} {key or '(all shards)'}: {'ok' if result.success else 'FAILED'} ({result.run_id})")
                if not result.success:
                    return 1
        print(f"\npipeline finished in {time.perf_counter() - started:.1f}s over {len(keys)} shards\n")
        _summary(lake, keys)
        _model_summary(instance)
    _where_to_look(lake)
    return 0


def _summary(lake: Lake, keys: list[str]) -> None:
    print(f"{'stage':<10} {'shard':<22} {'in':>6} {'kept':>6}  dropped")
    for stage in STAGES:
        for key in keys:
            if not lake.exists(report_path(stage, key)):
                continue
            r = lake.read_json(report_path(stage, key))
            print(f"{stage:<10} {key:<22} {r['rows_in']:>6} {r['rows_kept']:>6}  {r['dropped']}")


def _model_summary(instance: DagsterInstance) -> None:
    """What the global steps produced: the dataset version, the model and its zero-shot scores."""
    for asset, keys in (
        ("dataset", ("version", "samples")),
        ("model", ("registered_model", "steps", "first_loss", "final_loss")),
        ("evaluation", ("eval/sample_web/top1", "eval/sample_web/top5", "eval/sample_web/mean_per_class_recall")),
    ):
        records = instance.fetch_materializations(AssetKey(asset), limit=1).records
        if records:
            meta = records[0].asset_materialization.metadata
            shown = ", ".join(f"{k.rsplit('/', 1)[-1]}={_fmt(meta[k].value)}" for k in keys if k in meta)
            print(f"{asset:<10} {shown}")


def _fmt(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _where_to_look(lake: Lake) -> None:
    home = os.environ.get("DAGSTER_HOME", "(DAGSTER_HOME unset)")
    print(
        "\nwhere to look:\n"
        f"  Dagster UI : make ui, then http://127.0.0.1:3000 (instance in {home})\n"
        f"  MLflow     : .venv/bin/mlflow ui --backend-store-uri sqlite:///{lake.path('mlflow/mlflow.db')}\n"
        f"  data       : {lake.root_uri}/{{{','.join((*STAGES, 'dataset', 'models', 'evaluation'))}}}/\n"
        "  one sample : .venv/bin/clipfoundry trace <uid>   (CLIPFOUNDRY_DATA_ROOT=data)"
    )


if __name__ == "__main__":
    sys.exit(main())
