"""The quality assets load the judge the pipeline configured: a CoCa named by a registry URI is resolved against
the pipeline's MLflow (the ``mlflow`` resource), never MLflow's process-wide default."""

from __future__ import annotations

from pathlib import Path

import pytest

from assets.quality import load_judge
from infra.lake import Lake
from infra.resources import MlflowResource
from ops.quality import JudgeConfig
from tests.ops.conftest import coca_registry, trained_coca

__all__ = ["coca_registry", "trained_coca"]  # session fixtures of the engine's tests, shared here


def test_a_coca_judge_comes_from_the_pipelines_registry(
    coca_registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tracker, version = coca_registry
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)  # MLflow's own default store here is empty
    judge = JudgeConfig(
        model="models:/clipfoundry-coca/latest", backend="coca", mode="pairs", likelihood_top_fraction=0.5
    )
    loaded = load_judge(judge, MlflowResource(tracking_uri=tracker.tracking_uri), Lake(str(tmp_path / "lake")))
    assert loaded is not None and loaded.name.endswith(f"@models:/clipfoundry-coca/{version}")
    assert load_judge(JudgeConfig(), MlflowResource(tracking_uri=tracker.tracking_uri), Lake(str(tmp_path))) is None
