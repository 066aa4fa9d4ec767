"""deploy: the sample web end to end on production services against the default, and shard scaling.

1. End to end: the same sample web (``shards`` WARCs) goes through crawl + download with Dagster, one run per
   shard, twice: on the default setup (local data root, SQLite Dagster instance, SQLite MLflow store) and on the
   production services started on this machine (an ``s3://`` lake on moto's S3 server, an MLflow tracking server
   with its store in PostgreSQL and artifacts on S3, and the Dagster instance on PostgreSQL from
   ``infra/deploy/dagster.yaml``).
2. Shard scaling: 1, 2, 4 and 8 shards, each shard its own run of ``ingest_job`` (``dagster job execute``, which
   uses the multiprocess executor: one process per step), all runs started at once, as a daemon with enough run
   slots would; reported as wall time and wall time per shard.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from bench.common import REPO, machine
from infra.deploy import local_services
from infra.lake import Lake
from infra.resources import MlflowResource
from infra.sample_web import generate, serve

KEY, SECRET = "bench-key", "bench-secret-not-logged"
SERVICE_ENV = {"NO_ALBUMENTATIONS_UPDATE": "1", "WANDB_MODE": "disabled", "DAGSTER_DISABLE_TELEMETRY": "1"}


@contextlib.contextmanager
def _env(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the duration (profiles and EnvVars read them at run time)."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _home(work: Path, instance_yaml: str) -> Path:
    home = work / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "infra" / "deploy" / instance_yaml, home / "dagster.yaml")
    return home


def _publish(lake: Lake, warcs: list[Path]) -> list[str]:
    for warc in warcs:
        lake.write_bytes(f"sources/sample_web/{warc.name}", warc.read_bytes())
    return [f"sample_web.{w.name.split('.')[0]}" for w in warcs]


def _ingest_in_process(home: Path, lake: Lake, warcs: list[Path], env: dict[str, str]) -> tuple[float, list[float]]:
    from dagster import DagsterInstance, materialize

    from assets.crawl import crawl
    from assets.download import download
    from pipelines.partitions import shards
    from pipelines.profiles import resources

    with _env({**SERVICE_ENV, **env}):
        keys = _publish(lake, warcs)
        instance = DagsterInstance.from_config(str(home))
        instance.add_dynamic_partitions(shards.name, keys)
        res = resources("demo")
        per_shard = []
        start = time.perf_counter()
        for key in keys:
            t = time.perf_counter()
            result = materialize([crawl, download], partition_key=key, resources=res, instance=instance)
            if not result.success:
                raise RuntimeError(f"run for {key} failed")
            per_shard.append(time.perf_counter() - t)
        total = time.perf_counter() - start
        instance.dispose()
    return total, per_shard


def end_to_end(warcs: list[Path], work: Path) -> dict:
    out: dict = {}
    local = work / "default"
    lake = Lake(str(local / "lake"))
    env = {"CLIPFOUNDRY_DATA_ROOT": lake.root_uri, "DAGSTER_HOME": str(local / "dagster_home")}
    with _env({"MLFLOW_TRACKING_URI": ""}):
        out["default_s"], out["default_per_shard_s"] = _ingest_in_process(
            _home(local, "dagster.local.yaml"), lake, warcs, env
        )

    prod = work / "services"
    prod.mkdir()
    started = time.perf_counter()
    with (
        local_services.postgres_server("bench-pg-password") as pg,
        local_services.moto_server(prod) as s3_url,
    ):
        local_services.make_bucket(s3_url, KEY, SECRET, "lake")
        local_services.make_bucket(s3_url, KEY, SECRET, "mlflow")
        s3 = {"AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_DEFAULT_REGION": "us-east-1"}
        store = pg.url(pg.create_database("mlflow"), driver="+psycopg2")
        mlflow_env = {"MLFLOW_S3_ENDPOINT_URL": s3_url, **s3}
        with local_services.mlflow_server(store, "s3://mlflow/artifacts", mlflow_env, prod / "mlflow.log") as ml:
            out["services_start_s"] = time.perf_counter() - started
            root = f"s3://lake/bench-{uuid.uuid4().hex[:6]}"
            lake = Lake(root, {"key": KEY, "secret": SECRET, "client_kwargs": {"endpoint_url": s3_url}})
            env = {
                "CLIPFOUNDRY_DATA_ROOT": root,
                "CLIPFOUNDRY_S3_ENDPOINT_URL": s3_url,
                "MLFLOW_TRACKING_URI": ml,
                "DAGSTER_HOME": str(prod / "dagster_home"),
                **s3,
                **pg.dagster_env(pg.create_database("dagster")),
            }
            out["services_s"], out["services_per_shard_s"] = _ingest_in_process(
                _home(prod, "dagster.yaml"), lake, warcs, env
            )
    return out


def scaling(warcs: list[Path], work: Path, counts: tuple[int, ...]) -> list[dict]:
    rows = []
    dagster = str(local_services.BIN / "dagster")
    for n in counts:
        base = work / f"scale-{n}"
        lake = Lake(str(base / "lake"))
        keys = _publish(lake, warcs[:n])
        home = _home(base, "dagster.local.yaml")
        env = {
            **os.environ,
            **SERVICE_ENV,
            "DAGSTER_HOME": str(home),
            "CLIPFOUNDRY_PROFILE": "demo",
            "CLIPFOUNDRY_DATA_ROOT": lake.root_uri,
        }
        env.pop("MLFLOW_TRACKING_URI", None)
        from dagster import DagsterInstance

        with DagsterInstance.from_config(str(home)) as instance:
            instance.add_dynamic_partitions("shards", keys)
        MlflowResource().tracker(lake)  # create the SQLite store once, not racing N runs through its migrations
        cmd = [dagster, "job", "execute", "-m", "pipelines.definitions", "-j", "ingest_job"]
        start = time.perf_counter()
        procs = [
            subprocess.Popen(
                [*cmd, "--tags", json.dumps({"dagster/partition": key})],
                cwd=REPO,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=(base / f"{key}.log").open("w"),
            )
            for key in keys
        ]
        try:
            codes = [p.wait(timeout=900) for p in procs]
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
        wall = time.perf_counter() - start
        if any(codes):
            tails = [(base / f"{k}.log").read_text()[-2000:] for k, c in zip(keys, codes, strict=True) if c]
            raise RuntimeError(f"{n} shards: exit codes {codes}:\n" + "\n".join(tails))
        kept = sum(lake.read_json(f"download/{k}.report.json")["rows_kept"] for k in keys)
        rows.append({"shards": n, "wall_s": wall, "per_shard_s": wall / n, "images": kept})
    return rows


def run(shards: int = 3, pages_per_shard: int = 20, counts: tuple[int, ...] = (1, 2, 4, 8)) -> dict:
    work = Path(tempfile.mkdtemp(prefix="clipfoundry-bench-deploy-"))
    try:
        site = work / "web"
        (site / "site").mkdir(parents=True)
        with serve(site / "site") as server:
            web = generate(
                site, server.url, seed=5, n_shards=max(shards, *counts), pages_per_shard=pages_per_shard, slow_links=0
            )
            warcs = sorted(web.warc_paths)
            result: dict = {"shards": shards, "pages_per_shard": pages_per_shard, "machine": machine()}
            result.update(end_to_end(warcs[:shards], work / "e2e"))
            result["scaling"] = scaling(warcs, work / "scaling", counts)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["markdown"] = _markdown(result)
    return result


def _markdown(r: dict) -> str:
    med = statistics.median
    lines = [
        f"The sample web, {r['shards']} shards × {r['pages_per_shard']} pages, crawl + download through Dagster "
        "(one in-process run per shard, same inputs, demo settings).",
        "",
        "| setup | total s | median s per shard | ratio |",
        "|---|---|---|---|",
        f"| default: local disk, SQLite Dagster + MLflow | {r['default_s']:.1f} | "
        f"{med(r['default_per_shard_s']):.1f} | 1.00× |",
        f"| services: S3 (moto, HTTP) + MLflow server (Postgres, S3 artifacts) + Dagster on Postgres | "
        f"{r['services_s']:.1f} | {med(r['services_per_shard_s']):.1f} | {r['services_s'] / r['default_s']:.2f}× |",
        "",
        f"Starting the services (PostgreSQL initdb + start, moto, MLflow server) took {r['services_start_s']:.0f} s "
        "and is not included.",
        "",
        "Shard scaling: N shards, one `ingest_job` run each (`dagster job execute`, multiprocess executor), all "
        "started together on local storage.",
        "",
        "| shards | wall s | s per shard | images kept |",
        "|---|---|---|---|",
    ]
    lines += [f"| {s['shards']} | {s['wall_s']:.1f} | {s['per_shard_s']:.1f} | {s['images']} |" for s in r["scaling"]]
    return "\n".join(lines)


if __name__ == "__main__":
    print(run()["markdown"])
