"""The quality and recaption assets load the captioner or judge the pipeline configured: a CoCa named by a registry
URI is resolved against the pipeline's MLflow (the ``mlflow`` resource), never MLflow's process-wide default."""

from __future__ import annotations

from pathlib import Path

import pytest

from assets.vlm import load_vlm
from infra.lake import Lake
from infra.resources import MlflowResource
from tests.ops.conftest import coca_registry, trained_coca

__all__ = ["coca_registry", "trained_coca"]  # session fixtures of the engine's tests, shared here


def test_a_coca_comes_from_the_pipelines_registry(coca_registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    tracker, version = coca_registry
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)  # MLflow's own default store here is empty
    mlflow = MlflowResource(tracking_uri=tracker.tracking_uri)
    loaded = load_vlm("models:/clipfoundry-coca/latest", "coca", mlflow, Lake(str(tmp_path / "lake")))
    assert loaded is not None and loaded.name.endswith(f"@models:/clipfoundry-coca/{version}")
    assert load_vlm(None, "coca", mlflow, Lake(str(tmp_path))) is None
