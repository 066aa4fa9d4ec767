"""Cancelling a run stops its work: a real ``dagster-daemon`` runs a new shard's first stages, the run is cancelled
while img2dataset is downloading (slow links keep it busy), and within seconds the run is CANCELED, every process
it started is gone, nothing of the download is published, its MLflow runs are KILLED, and the partition
materializes cleanly afterwards."""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
import time
from pathlib import Path

import psutil
import pytest
from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter, materialize

from assets.crawl import crawl
from assets.download import download
from infra.deploy.local_services import wait_for
from infra.lake import Lake
from infra.sample_web import ORIGIN, serve
from infra.tracking import DAGSTER_RUN_TAG, Tracker, default_tracking_uri
from pipelines.daemon import running_daemon
from pipelines.demo import prepare_sample_web
from pipelines.profiles import resources
from tests.conftest import REPO, free_port

pytestmark = pytest.mark.integration


def _download_started(instance: DagsterInstance, run_id: str) -> bool:
    records = instance.get_records_for_run(run_id, of_type=DagsterEventType.STEP_START).records
    return any(r.event_log_entry.step_key == "download" for r in records)


def _run_processes(run_id: str) -> list[psutil.Process]:
    """The run's worker (its command line carries the run id) and everything it started."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if any(run_id in part for part in proc.info["cmdline"] or []):
            found += [proc, *proc.children(recursive=True)]
    return found


@pytest.mark.timeout(1200)
def test_cancelling_a_download_stops_its_processes_and_publishes_nothing(tmp_path: Path):
    started = time.time()
    lake_root, home = tmp_path / "lake", tmp_path / "home"
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
    web = prepare_sample_web(
        lake, lake_root / "sample_web", ORIGIN, seed=9, n_shards=1, pages_per_shard=20, slow_links=40, slow_seconds=30
    )
    shard = f"sample_web.{web.warc_paths[0].name.split('.')[0]}"
    instance = DagsterInstance.from_config(str(home))
    try:
        with serve(web.site_dir, port=port), running_daemon(home):
            [run] = wait_for(lambda: instance.get_runs(RunsFilter(tags={"dagster/partition": shard})), 300, 1, "run")
            wait_for(lambda: _download_started(instance, run.run_id), 300, 0.5, "the download step")
            time.sleep(3)  # img2dataset is fetching (its slow links answer after 30 s)
            processes = _run_processes(run.run_id)
            assert processes, "the run's processes were not found"
            cancelled_at = time.monotonic()
            instance.run_coordinator.cancel_run(run.run_id)

            def cancelled() -> bool:
                return instance.get_run_by_id(run.run_id).status == DagsterRunStatus.CANCELED

            wait_for(cancelled, 90, 0.5, "the run to be CANCELED")
            _, alive = psutil.wait_procs(processes, timeout=30)
            assert not alive, [p.info.get("cmdline", [])[:3] for p in alive]
            assert time.monotonic() - cancelled_at < 60
            tracker = Tracker(default_tracking_uri(Path(lake.path("mlflow"))), "clipfoundry")

            def killed() -> bool:
                runs = tracker.client.search_runs([tracker.experiment_id], f"tags.`{DAGSTER_RUN_TAG}` = '{run.run_id}'")
                return bool(runs) and all(r.info.status == "KILLED" for r in runs)

            wait_for(killed, 90, 1, "the run's MLflow runs to end as KILLED")
        assert not lake.exists(f"download/{shard}.tar") and not lake.exists(f"download/{shard}.report.json")
        staged = glob.glob(os.path.join(tempfile.gettempdir(), f"clipfoundry-download-{shard}-*"))
        assert not [d for d in staged if os.stat(d).st_mtime >= started]  # this run's staging is gone
        again = materialize([crawl, download], partition_key=shard, resources=resources("demo"), instance=instance)
        assert again.success and lake.exists(f"download/{shard}.tar")
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
