"""Issue #7's fault cases against real servers, and the end-to-end credential scan.

- **The S3 server stops mid-write**: a moto server of this module's own is frozen (SIGSTOP, the process state
  "stopped") while an upload is in flight, and killed outright (SIGKILL). A frozen server is what keeps its state
  (moto keeps objects in memory only), so what stays visible afterwards can be checked; the killed one is
  restarted empty on the same port.
- **The MLflow server is down**: an ``mlflow server`` of this module's own (its store in Postgres, so a restart on
  the same port keeps every run) is stopped between the two stages of one run, and stays down for the next run.
- **A ``shards`` partition is deleted and re-added** (by the new-sources sensor), with the global dedup index
  rebuilt after each change.
- **Credentials never leak**: a short pipeline with distinctive secrets, then everything it left behind is
  searched for them.

The session's shared servers (``s3_server``, Postgres) are never stopped here. Every run goes through Dagster in
process (``materialize``) with the demo profile's resources, as ``test_s3_mlflow_postgres.py`` does.
"""

from __future__ import annotations

import base64
import contextlib
import io
import logging
import os
import signal
import subprocess
import tarfile
import tempfile
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from botocore.exceptions import EndpointConnectionError
from dagster import (
    AssetCheckKey,
    AssetKey,
    DagsterInstance,
    DagsterUnknownPartitionError,
    EnvVar,
    ExecuteInProcessResult,
    build_sensor_context,
    materialize,
)
from dagster._serdes import serialize_value
from mlflow import MlflowClient

from assets.crawl import crawl
from assets.dedup import dedup_index, image_hashes
from assets.download import download
from assets.settings import as_resource
from infra.deploy.local_services import BIN, Postgres, free_port, make_bucket, start, stop, wait_server
from infra.lake import Lake, LakeTimeoutError
from infra.resources import LakeResource, MlflowResource
from infra.tracking import check_tracking_uri
from ops.crawl import crawl_shard
from ops.dedup.config import DedupConfig
from ops.dedup.layout import SUMMARY, decisions_path, hashes_path
from ops.download import download_shard
from ops.sources import source_for
from pipelines.partitions import shards
from pipelines.profiles import resources
from pipelines.sensors import new_sources_sensor_for
from tests.conftest import S3Server
from tests.integration.conftest import S3Web, dagster_home_for

pytestmark = pytest.mark.integration

# A down MLflow server fails a step after one retry with no backoff here; MLflow's defaults wait about 4 minutes.
FAST_MLFLOW = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "0",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
}
# A frozen S3 server fails an upload after 2 s and a request after 1 s (defaults: infra/lake.py).
FAST_S3 = {"s3_connect_timeout": 1, "s3_read_timeout": 1, "s3_max_attempts": 1, "upload_timeout": 2}
HANG_GUARD_S = 300  # a call that has not returned by then is taken to hang (the deadlines above are seconds)


class Service:
    """A server process on a fixed 127.0.0.1 port that a test may freeze, thaw, kill, stop and start again."""

    def __init__(self, name: str, argv: Callable[[int], list[str]], health: str, logs: Path, env: dict | None = None):
        self.name, self.argv, self.health, self.logs, self.env = name, argv, health, logs, env
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, wait: bool = True) -> None:
        self.starts += 1
        self.proc = start(self.argv(self.port), self._log(), env=self.env)
        if wait:
            self.wait()

    def wait(self) -> None:
        wait_server(self.proc, self.url + self.health, self._log(), timeout=180)

    def _log(self) -> Path:
        return self.logs / f"{self.name}.{self.starts}.log"

    def stop(self) -> None:
        if self.proc is not None:
            self.thaw()
            stop(self.proc)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def freeze(self) -> None:
        self._signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self._signal(signal.SIGCONT)

    def _signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)  # its own process group (``start``): workers included

    def log_text(self) -> str:
        return "".join(p.read_text(errors="replace") for p in sorted(self.logs.glob(f"{self.name}.*.log")))


@pytest.fixture(scope="module")
def flaky_s3(tmp_path_factory) -> Iterator[Service]:
    """moto's S3 server, this module's own, for the tests that freeze or kill it."""
    logs = tmp_path_factory.mktemp("flaky_s3")
    service = Service(
        "moto", lambda port: [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], "/moto-api/", logs
    )
    service.start()
    yield service
    service.stop()


@pytest.fixture(scope="module")
def tracking_boot(postgres: Postgres, tmp_path_factory) -> Iterator[Service]:
    """``mlflow server``, this module's own: runs in Postgres (so a restart keeps them), artifacts proxied
    (``mlflow-artifacts:``) to a folder. Started here, waited for in ``tracking``: it boots while ``reference``
    runs."""
    db = postgres.create_database(f"mlflow_faults_{uuid.uuid4().hex[:6]}")
    logs = tmp_path_factory.mktemp("tracking")
    store = postgres.url(db, driver="+psycopg2")

    def argv(port: int) -> list[str]:
        cmd = [str(BIN / "mlflow"), "server", "--backend-store-uri", store]
        cmd += ["--artifacts-destination", str(logs / "artifacts"), "--host", "127.0.0.1", "--port", str(port)]
        return [*cmd, "--workers", "1"]

    service = Service("mlflow", argv, "/health", logs, env=dict(os.environ))
    service.start(wait=False)
    yield service
    service.stop()


@pytest.fixture(scope="module")
def reference(tracking_boot, s3_web, tmp_path_factory) -> dict[str, Any]:
    """The first shard crawled and downloaded once, uninterrupted, by the ops themselves with the demo profile's
    settings: what every faulted run of it must end up equal to."""
    shard = s3_web.shards[0]
    lake = Lake(str(tmp_path_factory.mktemp("reference")))
    publish(lake, s3_web)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CLIPFOUNDRY_PROFILE", "demo")
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        settings = resources()
    crawl_shard(lake, source_for(lake, shard), shard, settings["crawl_settings"].config())
    download_shard(lake, shard, settings["download_settings"].config())
    return outputs(lake, shard)


@pytest.fixture(scope="module")
def tracking(tracking_boot: Service, reference) -> Service:
    tracking_boot.wait()
    return tracking_boot


def pipeline_env(root: str, endpoint: str, tracking_uri: str, key: str, secret: str) -> dict[str, str]:
    """The demo profile (sample web on 127.0.0.1) with its lake at ``root`` and MLflow at ``tracking_uri``."""
    return {
        "CLIPFOUNDRY_PROFILE": "demo",
        "CLIPFOUNDRY_DATA_ROOT": root,
        "CLIPFOUNDRY_S3_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": key,
        "AWS_SECRET_ACCESS_KEY": secret,
        "AWS_DEFAULT_REGION": "us-east-1",
        "MLFLOW_TRACKING_URI": tracking_uri,
        **FAST_MLFLOW,
        "NO_ALBUMENTATIONS_UPDATE": "1",
        "WANDB_MODE": "disabled",
        "DAGSTER_DISABLE_TELEMETRY": "1",
    }


class Pipeline:
    """The profile's resources and a Dagster instance on Postgres, with the environment set while it is open."""

    def __init__(self, instance: DagsterInstance, home: Path, db: str):
        self.instance, self.home, self.db = instance, home, db
        self.resources = resources()
        self.sensor_cursor: str | None = None

    def run(self, assets: list, shard: str | None = None, only: list | None = None) -> ExecuteInProcessResult:
        return materialize(
            assets,
            partition_key=shard,
            resources=self.resources,
            instance=self.instance,
            selection=only,
            raise_on_error=False,
        )

    def add_partitions_from_sensor(self) -> list:
        """One tick of the new-sources sensor; its partitions are added and its cursor kept as the daemon would."""
        with build_sensor_context(
            instance=self.instance, resources={"lake": self.resources["lake"]}, cursor=self.sensor_cursor
        ) as context:
            result = new_sources_sensor_for(30)(context)
        self.sensor_cursor = getattr(result, "cursor", None) or self.sensor_cursor
        added = []
        for request in getattr(result, "dynamic_partitions_requests", None) or []:
            self.instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
            added.extend(request.partition_keys)
        return added


@contextlib.contextmanager
def pipeline(env: dict[str, str], postgres: Postgres, tmp: Path) -> Iterator[Pipeline]:
    db = f"dagster_{uuid.uuid4().hex[:8]}"
    home, pg_env = dagster_home_for(postgres, tmp, db)
    with pytest.MonkeyPatch.context() as mp:
        for k, v in {**env, **pg_env}.items():
            mp.setenv(k, v)
        instance = DagsterInstance.from_config(str(home))
        try:
            yield Pipeline(instance, home, db)
        finally:
            instance.dispose()


def lake_resource(root: str, endpoint: str, **timeouts: Any) -> LakeResource:
    """The profile's lake resource (credentials as ``EnvVar``), with another endpoint and timeouts."""
    key, secret = EnvVar("AWS_ACCESS_KEY_ID"), EnvVar("AWS_SECRET_ACCESS_KEY")
    return LakeResource(
        root=root, s3_endpoint_url=endpoint, aws_access_key_id=key, aws_secret_access_key=secret,
        aws_region="us-east-1", **timeouts,
    )  # fmt: skip


def new_lake(endpoint: str, key: str = S3Server.key, secret: str = S3Server.secret) -> Lake:
    bucket = f"faults-{uuid.uuid4().hex[:8]}"
    make_bucket(endpoint, key, secret, bucket)
    opts = {"key": key, "secret": secret, "client_kwargs": {"endpoint_url": endpoint}}
    return Lake(f"s3://{bucket}/clipfoundry", opts)


def publish(lake: Lake, web: S3Web) -> None:
    for path in web.warcs.values():
        lake.write_bytes(f"sources/sample_web/{path.name}", path.read_bytes())


def shard_files(lake: Lake, shard: str) -> list[str]:
    return sorted(p for p in lake.list("crawl") + lake.list("download") if f"/{shard}" in p)


def outputs(lake: Lake, shard: str) -> dict[str, Any]:
    """What crawl and download made of a shard, without wall-clock fields: tables, tar payloads, report counts."""
    with tarfile.open(fileobj=io.BytesIO(lake.read_bytes(f"download/{shard}.tar"))) as tf:
        tar = {m.name: tf.extractfile(m).read() for m in tf.getmembers() if m.isfile()}
    reports = {}
    for stage in ("crawl", "download"):
        report = lake.read_json(f"{stage}/{shard}.report.json")
        reports[stage] = {k: report[k] for k in ("rows_in", "rows_kept", "dropped")}
    return {
        "files": shard_files(lake, shard),
        "crawl": lake.read_parquet(f"crawl/{shard}.parquet").to_pylist(),
        "ledger": lake.read_parquet(f"download/{shard}.parquet").to_pylist(),
        "tar": tar,
        "reports": reports,
    }


def failures(result: ExecuteInProcessResult) -> dict[str, str]:
    """Failed step -> its error, with the whole cause chain, as Dagster recorded it."""
    return {e.step_key: e.step_failure_data.error.to_string() for e in result.all_events if e.is_step_failure}


def succeeded_steps(result: ExecuteInProcessResult) -> set[str]:
    return {e.step_key for e in result.all_events if e.is_step_success}


def checks_passed(instance: DagsterInstance, asset: str) -> bool:
    key = AssetCheckKey(AssetKey(asset), "rows_conserved")
    check = instance.event_log_storage.get_latest_asset_check_execution_by_key([key])[key]
    return check.event.dagster_event.event_specific_data.passed


@contextlib.contextmanager
def on_download_staging(tmp: Path, shard: str, action: Callable[[], None]) -> Iterator[list[bool]]:
    """Run ``action`` the moment the download stage opens the shard's local staging folder: its input has been
    read from the lake, img2dataset is about to run, and nothing of the shard's output is written yet.
    (``ops.download`` stages under ``tempfile``'s folder, which the caller points at ``tmp``.)"""
    stop_watching, fired = threading.Event(), []

    def watch() -> None:
        while not stop_watching.is_set():
            if any(tmp.glob(f"clipfoundry-download-{shard}-*")):
                action()
                fired.append(True)
                return
            time.sleep(0.01)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield fired
    finally:
        stop_watching.set()
        watcher.join(timeout=HANG_GUARD_S)


def returns(call: Callable[[], Any]) -> BaseException | None:
    """Run ``call`` in a thread; its exception (or None). Fails the test if it has not returned within the guard."""
    raised: list[BaseException | None] = []

    def target() -> None:
        try:
            call()
            raised.append(None)
        except BaseException as e:
            raised.append(e)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout=HANG_GUARD_S)
    assert raised, f"the call did not return within {HANG_GUARD_S}s: it hangs"
    return raised[0]


# --- the S3 server stops mid-write ---------------------------------------------------------------------------


def test_upload_to_a_frozen_or_dead_s3_server_fails_clearly_and_keeps_the_old_object(flaky_s3):
    lake = new_lake(flaky_s3.url)
    fast = Lake(lake.root_uri, {**lake.storage_options, "config_kwargs": {"connect_timeout": 1, "read_timeout": 1}}, 2)
    old, new = os.urandom(3 << 20), os.urandom(3 << 20)
    fast.write_bytes("download/shard.tar", old)

    flaky_s3.freeze()  # the upload below starts and stalls inside the server, which never answers
    try:
        error = returns(lambda: fast.write_bytes("download/shard.tar", new))
    finally:
        flaky_s3.thaw()
    assert isinstance(error, LakeTimeoutError), error
    assert f"{lake.root_uri}/download/shard.tar" in str(error) and flaky_s3.url in str(error)
    assert lake.read_bytes("download/shard.tar") == old  # the previous version, whole
    bucket = lake.root_uri.removeprefix("s3://").split("/")[0]
    assert lake.fs.find(bucket) == [f"{bucket}/clipfoundry/download/shard.tar"]  # nothing else, nothing partial
    fast.write_bytes("download/shard.tar", new)  # the same client works again once the server does
    assert lake.read_bytes("download/shard.tar") == new

    flaky_s3.kill()  # dead: connections are refused, and the write says where it could not connect
    try:
        error = returns(lambda: fast.write_bytes("download/other.tar", new))
        assert isinstance(error, EndpointConnectionError) and flaky_s3.url in str(error), error
    finally:
        flaky_s3.start()  # the same port, empty: moto keeps its objects in memory
    again = new_lake(flaky_s3.url)
    again.write_bytes("download/other.tar", new)
    assert again.read_bytes("download/other.tar") == new


def test_a_lake_sees_what_another_writer_added_after_it_listed(s3_server):
    """s3fs caches listings for ever by default; the lake turns that off, or a long-lived process (the sensor's,
    or a test inspecting a faulted run) would answer ``exists`` and ``list`` from a stale listing."""
    reader = new_lake(s3_server.endpoint_url)
    writer = Lake(reader.root_uri, {**reader.storage_options, "config_kwargs": {"read_timeout": 29}})
    assert writer.fs is not reader.fs  # two clients, as two processes would have
    writer.write_bytes("sources/a/one.warc.gz", b"1")
    assert reader.list("sources") == ["sources/a/one.warc.gz"]
    reader.fs.find(reader.root_uri.removeprefix("s3://").split("/")[0])  # everything listed once
    writer.write_bytes("sources/a/two.warc.gz", b"2")
    writer.write_bytes("download/x.tar", b"3")
    assert reader.exists("sources/a/two.warc.gz")
    assert reader.list("download") == ["download/x.tar"]


def test_s3_server_frozen_mid_shard_fails_the_stage_and_the_rerun_matches(
    flaky_s3, s3_web, tracking, reference, postgres, tmp_path, monkeypatch
):
    shard = s3_web.shards[0]
    lake = new_lake(flaky_s3.url)
    publish(lake, s3_web)
    staging = tmp_path / "staging"
    staging.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(staging))
    env = pipeline_env(lake.root_uri, flaky_s3.url, tracking.url, S3Server.key, S3Server.secret)
    with pipeline(env, postgres, tmp_path) as p:
        p.resources["lake"] = lake_resource(lake.root_uri, flaky_s3.url, **FAST_S3)
        p.instance.add_dynamic_partitions(shards.name, [shard])
        assert p.run([crawl], shard).success

        try:
            with on_download_staging(staging, shard, flaky_s3.freeze) as fired:
                failed = p.run([crawl, download], shard, only=[download])
        finally:
            flaky_s3.thaw()
        assert fired, "the download stage never started"
        assert not failed.success
        [error] = failures(failed).values()
        assert "LakeTimeoutError" in error and f"{lake.root_uri}/download/{shard}.tar" in error, error
        assert lake.list("download") == []  # the stage stopped at its first write: nothing of it is visible
        bucket = lake.root_uri.removeprefix("s3://").split("/")[0]
        assert not [p for p in lake.fs.find(bucket) if "/." in p or "tmp" in p]

        again = p.run([crawl, download], shard, only=[download])
        assert again.success, failures(again)
        assert checks_passed(p.instance, "download")
        assert outputs(lake, shard) == reference


# --- the MLflow server is down ---------------------------------------------------------------------------------


def test_mlflow_down_fails_the_step_clearly_and_the_rerun_loses_and_duplicates_nothing(
    s3_server, s3_web, tracking, reference, postgres, tmp_path, monkeypatch
):
    shard = s3_web.shards[0]
    lake = new_lake(s3_server.endpoint_url)
    publish(lake, s3_web)
    staging = tmp_path / "staging"
    staging.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(staging))
    env = pipeline_env(lake.root_uri, s3_server.endpoint_url, tracking.url, s3_server.key, s3_server.secret)
    with pipeline(env, postgres, tmp_path) as p:
        p.instance.add_dynamic_partitions(shards.name, [shard])
        try:
            # stopped between the two stages of one run: crawl is tracked, then download cannot be
            with on_download_staging(staging, shard, tracking.stop) as fired:
                mid_run = p.run([crawl, download], shard)
            assert fired, "the download stage never started"
            assert not mid_run.success
            assert succeeded_steps(mid_run) == {"crawl"} and set(failures(mid_run)) == {"download"}
            assert "MlflowException" in failures(mid_run)["download"]
            assert f"API request to {tracking.url}/api/" in failures(mid_run)["download"]
            # download published its shard before its tracking failed: whole, as an uninterrupted run's
            assert outputs(lake, shard) == reference

            # down before the run: crawl rewrites its shard (the same bytes), then fails; download never starts
            down_before = p.run([crawl, download], shard)
            assert not down_before.success
            assert set(failures(down_before)) == {"crawl"} and succeeded_steps(down_before) == set()
            assert f"API request to {tracking.url}/api/" in failures(down_before)["crawl"]
            assert outputs(lake, shard) == reference
        finally:
            if not tracking.running:
                tracking.start()  # the same port and store: the runs it had are still there

        # back up: the re-run writes the same files again (overwritten, none added, none lost) and tracks them
        again = p.run([crawl, download], shard)
        assert again.success, failures(again)
        assert checks_passed(p.instance, "crawl") and checks_passed(p.instance, "download")
        assert outputs(lake, shard) == reference

    client = MlflowClient(tracking_uri=tracking.url)
    experiment = client.get_experiment_by_name("clipfoundry").experiment_id

    def mlflow_run(dagster_run_id: str) -> list:
        """The run's child for its one shard: where that shard's stage metrics go."""
        query = f"tags.`dagster.run_id` = '{dagster_run_id}' and tags.`clipfoundry.kind` = 'shard'"
        return client.search_runs([experiment], filter_string=query)

    stages = lambda run: {k.split(".")[0] for k in run.data.metrics if k.endswith(".rows_in")}  # noqa: E731
    [before_stop] = mlflow_run(mid_run.run_id)
    assert stages(before_stop) == {"crawl"}  # tracked before the server stopped, kept through the restart
    assert mlflow_run(down_before.run_id) == []
    [tracked] = mlflow_run(again.run_id)
    assert stages(tracked) == {"crawl", "download"}
    for stage in ("crawl", "download"):
        assert tracked.data.metrics[f"{stage}.rows_kept"] == reference["reports"][stage]["rows_kept"]
        files = {f.path for f in client.list_artifacts(tracked.info.run_id, f"reports/{stage}")}
        assert files == {f"reports/{stage}/{shard}.json"}


# --- a partition is deleted and re-added ---------------------------------------------------------------------


def index_state(lake: Lake) -> dict[str, Any]:
    summary = lake.read_json(SUMMARY)
    decisions = {s: lake.read_parquet(decisions_path(s)).to_pylist() for s in summary["shards"]}
    counts = {k: summary["report"][k] for k in ("rows_in", "rows_kept", "dropped")}
    return {"shards": summary["shards"], "counts": counts, "decisions": decisions}


def test_a_deleted_and_re_added_partition_rematerialises_identically(s3_server, s3_web, tracking, postgres, tmp_path):
    gone, stays = s3_web.shards
    lake = new_lake(s3_server.endpoint_url)
    publish(lake, s3_web)
    ingest = [crawl, download, image_hashes]
    env = pipeline_env(lake.root_uri, s3_server.endpoint_url, tracking.url, s3_server.key, s3_server.secret)
    with pipeline(env, postgres, tmp_path) as p:
        p.resources["dedup_settings"] = as_resource(DedupConfig())  # no eval sets: this lake holds none
        assert sorted(p.add_partitions_from_sensor()) == [gone, stays]
        for shard in (gone, stays):
            assert p.run(ingest, shard).success
        first = outputs(lake, gone)
        first_hashes = lake.read_parquet(hashes_path(gone)).to_pylist()
        assert p.run([dedup_index]).success
        index_before = index_state(lake)
        assert index_before["shards"] == [gone, stays]

        p.instance.delete_dynamic_partition(shards.name, gone)
        assert p.instance.get_dynamic_partitions(shards.name) == [stays]
        with pytest.raises(DagsterUnknownPartitionError):  # a deleted partition cannot be materialised
            p.run(ingest, gone)
        # Dagster keeps its history (the materialisations of the deleted key) and the lake keeps its files
        history = p.instance.fetch_materializations(AssetKey("download"), limit=10).records
        assert gone in {r.partition_key for r in history}
        # the global index is rebuilt over the partitions that exist: the deleted shard's samples leave it
        assert p.run([dedup_index]).success
        index_without = index_state(lake)
        assert index_without["shards"] == [stays]
        assert index_without["counts"]["rows_in"] < index_before["counts"]["rows_in"]
        assert lake.exists(hashes_path(gone)) and lake.exists(f"download/{gone}.tar")  # its files stay

        # the sensor finds the shard's registered source file again and re-adds the partition; its history and its
        # files are still there, so nothing is missing for the automation: materialising it again is a choice
        assert p.add_partitions_from_sensor() == [gone]
        assert sorted(p.instance.get_dynamic_partitions(shards.name)) == [gone, stays]

        rerun = p.run(ingest, gone)
        assert rerun.success
        for asset in ("crawl", "download", "image_hashes"):
            assert checks_passed(p.instance, asset), asset
        assert outputs(lake, gone) == first
        assert lake.read_parquet(hashes_path(gone)).to_pylist() == first_hashes
        assert p.run([dedup_index]).success
        assert index_state(lake) == index_before


# --- credentials ---------------------------------------------------------------------------------------------

S3_KEY_ID = "AKIAFAULTSCANKEY7Q2W"
S3_SECRET = "s3-secret-Vq7xZK2mRw"
MLFLOW_USER = "scan-user-Hb4T"
MLFLOW_PASSWORD = "mlflow-pw-Jx9LpQ3s"


def secret_forms() -> dict[str, str]:
    """Each secret as written, plus the basic-auth header value that carries the MLflow password."""
    basic = base64.standard_b64encode(f"{MLFLOW_USER}:{MLFLOW_PASSWORD}".encode()).decode()
    return {"s3 key id": S3_KEY_ID, "s3 secret": S3_SECRET, "mlflow password": MLFLOW_PASSWORD, "basic auth": basic}


class Scan:
    def __init__(self) -> None:
        self.found: dict[str, set[str]] = {}
        self.places = 0

    def __call__(self, where: str, data: Any, ignore: tuple[str, ...] = ()) -> None:
        self.places += 1
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)
        for name, secret in secret_forms().items():
            if secret in text and name not in ignore:
                self.found.setdefault(where, set()).add(name)


def scan_postgres(scan: Scan, postgres: Postgres, db: str) -> None:
    """Every row of every table of Dagster's database, compressed snapshots unpacked."""
    conn = psycopg2.connect(postgres.url(db))
    with conn, conn.cursor() as cur:
        cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        for (table,) in cur.fetchall():
            cur.execute(f'SELECT * FROM "{table}"')
            for row in cur.fetchall():
                for value in row:
                    if isinstance(value, memoryview):
                        value = bytes(value)
                        with contextlib.suppress(zlib.error):
                            value = zlib.decompress(value)
                    scan(f"postgres {table}", value)
    conn.close()


def scan_lake(scan: Scan, lake: Lake) -> None:
    """Every object, parquet decoded (it is compressed), tars unpacked."""
    for rel in lake.list("sources") + lake.list("crawl") + lake.list("download"):
        data = lake.read_bytes(rel)
        scan(f"lake {rel}", data)
        if rel.endswith(".parquet"):
            scan(f"lake {rel}", lake.read_parquet(rel).to_pylist())
        if rel.endswith(".tar"):
            with tarfile.open(fileobj=io.BytesIO(data)) as tf:
                for m in tf.getmembers():
                    if m.isfile():
                        scan(f"lake {rel}:{m.name}", tf.extractfile(m).read())


def test_tracking_uri_with_credentials_is_refused_without_repeating_them(monkeypatch):
    uri = f"http://{MLFLOW_USER}:{MLFLOW_PASSWORD}@mlflow.internal:5000"
    with pytest.raises(ValueError) as refused:
        check_tracking_uri(uri)
    assert MLFLOW_PASSWORD not in str(refused.value) and "mlflow.internal:5000" in str(refused.value)
    assert "MLFLOW_TRACKING_PASSWORD" in str(refused.value)
    monkeypatch.setenv("CLIPFOUNDRY_PROFILE", "demo")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    with pytest.raises(ValueError) as at_load:  # before Dagster could store it in a job snapshot
        resources()
    assert MLFLOW_PASSWORD not in str(at_load.value)
    assert check_tracking_uri("http://mlflow.internal:5000") == "http://mlflow.internal:5000"
    assert check_tracking_uri("sqlite:////data/mlflow.db") == "sqlite:////data/mlflow.db"


def test_no_credential_reaches_dagster_logs_mlflow_or_the_lake(
    s3_server, s3_web, tracking, postgres, tmp_path, caplog, capfd
):
    caplog.set_level(logging.DEBUG)
    lake = new_lake(s3_server.endpoint_url, S3_KEY_ID, S3_SECRET)  # moto accepts any key
    publish(lake, s3_web)
    env = pipeline_env(lake.root_uri, s3_server.endpoint_url, tracking.url, S3_KEY_ID, S3_SECRET)
    env |= {"MLFLOW_TRACKING_USERNAME": MLFLOW_USER, "MLFLOW_TRACKING_PASSWORD": MLFLOW_PASSWORD}
    scan = Scan()
    with pipeline(env, postgres, tmp_path) as p:
        shard = p.add_partitions_from_sensor()[0]
        runs = [p.run([crawl, download], shard)]
        assert runs[0].success, failures(runs[0])
        # and the failure paths, whose error messages name endpoints: MLflow unreachable, then S3 unreachable
        nowhere = f"http://127.0.0.1:{free_port()}"
        working = dict(p.resources)
        p.resources["mlflow"] = MlflowResource(tracking_uri=nowhere)
        runs.append(p.run([crawl], shard))
        p.resources = working | {"lake": lake_resource(lake.root_uri, nowhere, s3_max_attempts=1)}
        runs.append(p.run([crawl], shard))
        assert [bool(failures(r)) for r in runs] == [False, True, True]
        assert "MlflowException" in failures(runs[1])["crawl"] and nowhere in failures(runs[1])["crawl"]
        assert "EndpointConnectionError" in failures(runs[2])["crawl"] and nowhere in failures(runs[2])["crawl"]
        for result in runs:
            for entry in p.instance.all_logs(result.run_id):  # every event, with its metadata
                scan(f"event {entry.dagster_event_type}", serialize_value(entry))
            run = p.instance.get_run_by_id(result.run_id)
            scan("run record", serialize_value(run))
            scan("job snapshot", serialize_value(p.instance.get_job_snapshot(run.job_snapshot_id)))
        scan_postgres(scan, postgres, p.db)
        for path in p.home.rglob("*"):  # compute logs (captured stdout/stderr of each step) and the rest
            if path.is_file():
                scan(f"dagster home {path.relative_to(p.home)}", path.read_bytes())

    out, err = capfd.readouterr()
    scan("stdout", out)
    scan("stderr", err)
    # botocore's DEBUG log prints each request's Authorization header, whose SigV4 credential scope names the
    # access key id (never the secret key); DEBUG is off unless someone turns it on. Everything else: no secret.
    for record in caplog.records:
        ignore = ("s3 key id",) if record.levelno < logging.INFO and record.name.startswith("botocore") else ()
        scan(f"python logging {record.name}", f"{record.getMessage()} {record.args}", ignore=ignore)

    client = MlflowClient(tracking_uri=tracking.url)
    experiment = client.get_experiment_by_name("clipfoundry")
    scan("mlflow experiment", experiment)
    query = f"tags.`dagster.run_id` = '{runs[0].run_id}' and tags.`clipfoundry.kind` = 'shard'"
    [run] = client.search_runs([experiment.experiment_id], filter_string=query)
    scan("mlflow params", run.data.params)
    scan("mlflow tags", run.data.tags)
    scan("mlflow metric names", list(run.data.metrics))
    scan("mlflow run info", run.info)
    folders, artifacts = [None], []
    while folders:  # every artifact of the run, however deep
        for item in client.list_artifacts(run.info.run_id, folders.pop()):
            (folders if item.is_dir else artifacts).append(item.path)
    assert sorted(artifacts) == [f"reports/crawl/{shard}.json", f"reports/download/{shard}.json"]
    for artifact in artifacts:
        local = client.download_artifacts(run.info.run_id, artifact, str(tmp_path))
        scan(f"mlflow artifact {artifact}", Path(local).read_bytes())
    scan("mlflow server log", tracking.log_text())
    scan_lake(scan, lake)

    assert scan.found == {}
    assert scan.places > 100
    control = Scan()  # the scan sees a secret where there is one
    control("control", {"config": f"x{S3_SECRET}x", "header": "Basic " + secret_forms()["basic auth"]})
    assert control.found == {"control": {"s3 secret", "basic auth"}}
