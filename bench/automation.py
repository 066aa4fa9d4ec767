"""Integrating one new shard after N processed shards, through the automation path (a real ``dagster-daemon``).

The sample web is generated with more shards than needed; N of them are published and left to the daemon, then
one more is published and timed from its arrival until the graph is at rest. Each run of that integration is
booked to the new shard's per-shard work, to older shards' per-shard work (what a global step named as affected),
or to the global steps, by the partition it ran for. The goal: the per-shard part flat in N; the global part's
growth stated.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

from dagster import AssetKey, DagsterInstance, DagsterRunStatus, RunsFilter

from bench.common import REPO
from infra.deploy.local_services import free_port
from infra.lake import Lake
from infra.sample_web import ORIGIN, serve
from pipelines.daemon import running_daemon, wait_until_settled
from pipelines.demo import prepare_sample_web, publish_source

SIZES = (2, 4, 8)
PAGES_PER_SHARD = 60  # the demo's shard size
QUIET_SECONDS = 15
TIMEOUT_S = 3600


def _settle(instance: DagsterInstance, daemon, evaluations_before: int) -> None:
    """Wait until a new evaluation exists and nothing has run for a while."""
    if not wait_until_settled(
        instance, lambda: _evaluations(instance) > evaluations_before, QUIET_SECONDS, TIMEOUT_S, daemon
    ):
        raise TimeoutError("the graph did not come to rest")


def _evaluations(instance: DagsterInstance) -> int:
    return len(instance.fetch_materializations(AssetKey("evaluation"), limit=1000).records)


def _book(instance: DagsterInstance, since: float, new_shard: str) -> dict[str, float]:
    """Seconds of runs started after ``since``, by what they worked on."""
    out = {"new_shard": 0.0, "older_shards": 0.0, "global": 0.0, "runs": 0, "failed": 0}
    for record in instance.get_run_records(RunsFilter()):
        if (record.start_time or 0) < since or record.end_time is None:
            continue
        seconds = record.end_time - record.start_time
        partition = record.dagster_run.tags.get("dagster/partition")
        kind = "global" if partition is None else ("new_shard" if partition == new_shard else "older_shards")
        out[kind] += seconds
        out["runs"] += 1
        out["failed"] += record.dagster_run.status != DagsterRunStatus.SUCCESS
    return out


def run(sizes: tuple[int, ...] = SIZES) -> dict:
    work = Path(tempfile.mkdtemp(prefix="clipfoundry-bench-automation-"))
    lake_root, home = work / "lake", work / "home"
    home.mkdir()
    shutil.copy(REPO / "infra" / "deploy" / "dagster.local.yaml", home / "dagster.yaml")
    lake = Lake(str(lake_root))
    port = free_port()
    env = {
        "CLIPFOUNDRY_PROFILE": "demo",
        "CLIPFOUNDRY_DATA_ROOT": str(lake_root),
        "CLIPFOUNDRY_SAMPLE_WEB_PORT": str(port),
        "DAGSTER_HOME": str(home),
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    rows = []
    try:
        web = prepare_sample_web(
            lake,
            lake_root / "sample_web",
            ORIGIN,
            seed=0,
            publish=False,
            n_shards=max(sizes) + 1,
            pages_per_shard=PAGES_PER_SHARD,
            slow_links=0,
        )
        warcs = list(web.warc_paths)
        instance = DagsterInstance.from_config(str(home))
        published = 0
        with serve(web.site_dir, port=port), running_daemon(home) as daemon:
            for n in sizes:
                before = _evaluations(instance)
                while published < n:
                    publish_source(lake, warcs[published])
                    published += 1
                _settle(instance, daemon, before)
                before = _evaluations(instance)
                started = time.time()
                publish_source(lake, warcs[published])
                new_shard = f"sample_web.{warcs[published].name.split('.')[0]}"
                published += 1
                _settle(instance, daemon, before)
                wall = time.time() - started
                booked = _book(instance, started, new_shard)
                rows.append({"n": n, "wall_s": round(wall, 1), **{k: round(v, 1) for k, v in booked.items()}})
                print(rows[-1], flush=True)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(work, ignore_errors=True)
    lines = [
        f"One new sample-web shard ({PAGES_PER_SHARD} pages, ~600 image links) integrated after N processed shards, "
        "through a real dagster-daemon (demo profile: sensors every 5 s, one-second run dequeue, in-process "
        "executor, 2 concurrent runs). Seconds of runs by what they worked on; wall = arrival to rest.",
        "",
        "| N | wall s | new shard's per-shard runs s | older shards' runs s | global steps s | runs |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['n']} | {r['wall_s']} | {r['new_shard']} | {r['older_shards']} | {r['global']} | {r['runs']} |"
        for r in rows
    ]
    return {"rows": rows, "markdown": "\n".join(lines)}
