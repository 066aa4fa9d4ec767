"""Real services for the integration tests, each a separate process on 127.0.0.1, stopped by its finalizer.

- ``postgres``: a throwaway PostgreSQL cluster (initdb in a temp dir, password auth over TCP). PostgreSQL refuses
  to run as root, so as root it runs as the ``postgres`` user.
- ``mlflow_server``: ``mlflow server`` with its SQL store on that Postgres and its artifacts proxied to the
  session's S3-protocol server (``s3_server`` from ``tests/conftest.py``).
- ``s3_web``: a tiny sample web served on 127.0.0.1 whose WARCs sit under ``sources/`` of an ``s3://`` lake.

``service_env`` is the demo profile (sample web on 127.0.0.1) pointed at all of them.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from infra.deploy import local_services
from infra.deploy.local_services import Postgres, pg_bin, postgres_server
from infra.lake import Lake
from infra.sample_web import generate, serve
from tests.conftest import REPO, S3Server

PG_PASSWORD = "pg-secret-do-not-log"


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A real PostgreSQL server on a free 127.0.0.1 port, in a temp dir, removed afterwards."""
    if pg_bin() is None:  # `make test` installs it; only a bare pytest run outside make can get here
        pytest.fail("PostgreSQL server binaries not found: run `make system-deps` (Debian package postgresql)")
    with postgres_server(PG_PASSWORD) as server:
        yield server


def make_bucket(s3: S3Server, bucket: str) -> None:
    local_services.make_bucket(s3.endpoint_url, s3.key, s3.secret, bucket)


def s3_env(s3: S3Server) -> dict[str, str]:
    return {
        "AWS_ACCESS_KEY_ID": s3.key,
        "AWS_SECRET_ACCESS_KEY": s3.secret,
        "AWS_DEFAULT_REGION": "us-east-1",
    }


@dataclass
class MlflowServer:
    url: str
    artifacts: str
    log: Path


@pytest.fixture(scope="session")
def mlflow_server(postgres: Postgres, s3_server: S3Server) -> Iterator[MlflowServer]:
    """``mlflow server``: runs and the model registry in Postgres, artifacts proxied to S3 (``mlflow-artifacts:``)."""
    db = postgres.create_database("mlflow")
    make_bucket(s3_server, "mlflow")
    logs = Path(tempfile.mkdtemp(prefix="clipfoundry-mlflow-"))
    env = {"MLFLOW_S3_ENDPOINT_URL": s3_server.endpoint_url, **s3_env(s3_server)}
    store = postgres.url(db, driver="+psycopg2")
    try:
        with local_services.mlflow_server(store, "s3://mlflow/artifacts", env, logs / "server.log") as url:
            yield MlflowServer(url, "s3://mlflow/artifacts", logs / "server.log")
    finally:
        shutil.rmtree(logs, ignore_errors=True)


@dataclass
class S3Web:
    """A tiny sample web: its site on 127.0.0.1, its WARCs under ``sources/sample_web/`` of an S3 lake."""

    root: str
    url: str
    lake: Lake
    shards: list[str]
    warcs: dict[str, Path] = field(default_factory=dict)

    def publish(self, shard: str) -> None:
        self.lake.write_bytes(f"sources/sample_web/{self.warcs[shard].name}", self.warcs[shard].read_bytes())


@pytest.fixture(scope="module")
def s3_web(s3_server: S3Server) -> Iterator[S3Web]:
    """Two tiny shards generated and served; nothing is published yet (tests decide which shard appears when)."""
    bucket = f"lake-{uuid.uuid4().hex[:8]}"
    make_bucket(s3_server, bucket)
    root = f"s3://{bucket}/clipfoundry"
    work = Path(tempfile.mkdtemp(prefix="clipfoundry-web-"))
    (work / "site").mkdir()
    try:
        with serve(work / "site") as server:
            web = generate(work, server.url, seed=3, n_shards=2, pages_per_shard=5, slow_links=0)
            warcs = {f"sample_web.{p.name.split('.')[0]}": p for p in web.warc_paths}
            yield S3Web(root, server.url, Lake(root, s3_server.storage_options()), sorted(warcs), warcs)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def service_env(s3: S3Server, web: S3Web, mlflow: MlflowServer | None = None) -> dict[str, str]:
    """The demo profile (sample web on 127.0.0.1) pointed at production services: S3 lake, MLflow server."""
    env = {
        "CLIPFOUNDRY_PROFILE": "demo",
        "CLIPFOUNDRY_DATA_ROOT": web.root,
        "CLIPFOUNDRY_S3_ENDPOINT_URL": s3.endpoint_url,
        **s3_env(s3),
        "NO_ALBUMENTATIONS_UPDATE": "1",
        "WANDB_MODE": "disabled",
        "DAGSTER_DISABLE_TELEMETRY": "1",
    }
    if mlflow is not None:
        env["MLFLOW_TRACKING_URI"] = mlflow.url
    return env


def dagster_home_for(postgres: Postgres, tmp: Path, db: str) -> tuple[Path, dict[str, str]]:
    """A DAGSTER_HOME holding ``infra/deploy/dagster.yaml`` plus the variables it reads, on a fresh database."""
    home = tmp / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "infra" / "deploy" / "dagster.yaml", home / "dagster.yaml")
    postgres.create_database(db)
    return home, {"DAGSTER_HOME": str(home), **postgres.dagster_env(db)}
