"""Shared fixtures: paths to the real fixtures, and real local services (an S3-protocol server) on 127.0.0.1."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# the checkout's parent holds shared/ (or, for a git worktree nested deeper, an ancestor does)
FIXTURES = next(
    (p / "shared" / "fixtures" for p in REPO.parents if (p / "shared" / "fixtures").is_dir()),
    REPO.parent / "shared" / "fixtures",
)

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", "89478485")  # OpenCV reads it once, on import (ops.download)


# What MLflow or a Tracker leaves in the folder it runs in when something reaches MLflow without the URI it was
# meant to use (MLflow 3's default store is ./mlflow.db, its default artifact root ./mlruns).
STRAY = ("mlflow.db", "mlflow.lock", "mlruns", "artifacts")


@pytest.fixture(scope="session", autouse=True)
def no_stray_tracking_files() -> Iterator[None]:
    """Fail the session when a test leaves MLflow files in the checkout (a user's own are left alone)."""
    before = {name for name in STRAY if (REPO / name).exists()}
    yield
    left = sorted(name for name in STRAY if (REPO / name).exists() and name not in before)
    assert not left, f"tests left {left} in {REPO}: some MLflow call ran without the tracking URI it was meant to use"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    assert FIXTURES.is_dir(), f"shared fixtures not found at {FIXTURES}"
    return FIXTURES


@dataclass
class S3Server:
    endpoint_url: str
    key: str = "testing-key"
    secret: str = "testing-secret-do-not-log"

    def storage_options(self) -> dict:
        return {"key": self.key, "secret": self.secret, "client_kwargs": {"endpoint_url": self.endpoint_url}}


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A real S3-protocol server (moto's standalone server) as a separate process on 127.0.0.1."""
    port = free_port()
    log = (tmp_path_factory.mktemp("moto") / "moto.log").open("w")
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/moto-api/")
        yield S3Server(endpoint_url=url)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
