"""Real services on 127.0.0.1 for integration tests and benchmarks: PostgreSQL, an S3-protocol server (moto),
and an MLflow tracking server. Each is a context manager that starts a separate process and always stops it.

PostgreSQL refuses to run as root, so as root the cluster runs as the ``postgres`` user (``runuser``).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: Callable[[], Any], timeout: float, interval: float = 0.5, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; ``TimeoutError`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=2).close()
        return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


def wait_server(proc: subprocess.Popen, url: str, log: Path, timeout: float) -> None:
    """Wait until ``url`` answers; fail at once, with the log's tail, if the server process died."""

    def up() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"server for {url} exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        return _answers(url)

    try:
        wait_for(up, timeout, what=url)
    except TimeoutError:
        raise TimeoutError(f"{url} not up after {timeout:.0f}s:\n{log.read_text()[-4000:]}") from None


def start(cmd: list[str], log: Path, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.Popen:
    """Start a server in its own process group, so :func:`stop` also ends whatever it spawned."""
    with log.open("w") as out:
        return subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM the process group, SIGKILL after ``timeout``, then SIGKILL any child that outlived its parent."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=timeout)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def pg_bin() -> Path | None:
    """The newest installed PostgreSQL server's bin folder (Debian layout), else ``initdb`` on PATH."""
    for cand in sorted(glob.glob(PG_BIN_GLOB), key=lambda p: int(Path(p).parent.name), reverse=True):
        if (Path(cand) / "initdb").exists():
            return Path(cand)
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path else None


@dataclass
class Postgres:
    host: str
    port: int
    user: str
    password: str

    def url(self, db: str, driver: str = "") -> str:
        return f"postgresql{driver}://{self.user}:{self.password}@{self.host}:{self.port}/{db}"

    def create_database(self, name: str) -> str:
        import psycopg2

        conn = psycopg2.connect(
            host=self.host, port=self.port, user=self.user, password=self.password, dbname="postgres"
        )
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        conn.close()
        return name

    def dagster_env(self, db: str) -> dict[str, str]:
        """The variables ``infra/deploy/dagster.yaml`` reads."""
        return {
            "DAGSTER_PG_HOST": self.host,
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_USER": self.user,
            "DAGSTER_PG_PASSWORD": self.password,
            "DAGSTER_PG_DB": db,
        }


@contextlib.contextmanager
def postgres_server(password: str, user: str = "clipfoundry") -> Iterator[Postgres]:
    """A throwaway PostgreSQL cluster in a temp dir on a free 127.0.0.1 port (password auth, no Unix socket)."""
    binaries = pg_bin()
    if binaries is None:
        raise FileNotFoundError("PostgreSQL server binaries not found (Debian: apt-get install postgresql)")
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    base = Path(tempfile.mkdtemp(prefix="clipfoundry-pg-"))
    data, log, pwfile = base / "data", base / "server.log", base / "pw"
    pwfile.write_text(password)
    if as_postgres:
        shutil.chown(base, "postgres")
        shutil.chown(pwfile, "postgres")
    base.chmod(0o700)
    port = free_port()
    initdb = [str(binaries / "initdb"), "-D", str(data), "-U", user, f"--pwfile={pwfile}", "--auth=scram-sha-256"]
    pg_ctl = [*as_postgres, str(binaries / "pg_ctl"), "-D", str(data), "-w", "-t", "60"]
    opts = f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories='' -c fsync=off -c max_connections=200"
    try:
        subprocess.run([*as_postgres, *initdb, "-E", "UTF8", "--no-sync"], check=True, capture_output=True, timeout=120)
        subprocess.run([*pg_ctl, "-l", str(log), "-o", opts, "start"], check=True, capture_output=True, timeout=90)
        yield Postgres("127.0.0.1", port, user, password)
    finally:
        subprocess.run([*pg_ctl, "-m", "immediate", "stop"], capture_output=True, timeout=90)
        shutil.rmtree(base, ignore_errors=True)


@contextlib.contextmanager
def moto_server(log_dir: Path) -> Iterator[str]:
    """moto's standalone S3-protocol server; yields its endpoint URL."""
    port = free_port()
    proc = start([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], log_dir / "moto.log")
    try:
        url = f"http://127.0.0.1:{port}"
        wait_server(proc, url + "/moto-api/", log_dir / "moto.log", timeout=60)
        yield url
    finally:
        stop(proc)


def make_bucket(endpoint_url: str, key: str, secret: str, bucket: str) -> None:
    import boto3

    client = boto3.client(
        "s3", endpoint_url=endpoint_url, aws_access_key_id=key, aws_secret_access_key=secret, region_name="us-east-1"
    )
    if bucket not in {b["Name"] for b in client.list_buckets().get("Buckets", [])}:
        client.create_bucket(Bucket=bucket)


@contextlib.contextmanager
def mlflow_server(
    backend_store_uri: str, artifacts_destination: str, s3_env: dict[str, str], log: Path
) -> Iterator[str]:
    """``mlflow server`` with a SQL store and proxied artifacts (clients never see the S3 credentials)."""
    port = free_port()
    cmd = [str(BIN / "mlflow"), "server", "--backend-store-uri", backend_store_uri]
    cmd += ["--artifacts-destination", artifacts_destination, "--host", "127.0.0.1", "--port", str(port)]
    proc = start([*cmd, "--workers", "1"], log, env={**os.environ, **s3_env})
    try:
        url = f"http://127.0.0.1:{port}"
        wait_server(proc, url + "/health", log, timeout=180)
        yield url
    finally:
        stop(proc)
