"""A tiny CoCa trained once per session by the production training path, and registered in MLflow, shared by
the engine's tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from infra.lake import Lake
from infra.tracking import Tracker, default_tracking_uri, log_coca_model
from ops.dataset import DatasetConfig, write_dataset
from ops.training import TrainConfig, TrainResult, dataset_shards, load_trained, train
from tests.ops.dataset.lakes import build_lake
from tests.ops.training.tiny import TINY_COCA_CONFIG, TINY_COCA_MODEL


@dataclass(frozen=True)
class TrainedCoca:
    config: TrainConfig
    result: TrainResult
    lake: Lake
    version: str  # the dataset version it trained on

    @property
    def checkpoint(self) -> Path:
        assert self.result.checkpoint is not None
        return self.result.checkpoint

    @property
    def engine_kwargs(self) -> dict:
        return {"architecture": TINY_COCA_MODEL, "architecture_config": TINY_COCA_CONFIG}


@pytest.fixture(scope="session")
def trained_coca(tmp_path_factory: pytest.TempPathFactory) -> TrainedCoca:
    """A few steps of open_clip_train under torchrun (one CPU process), on captions that name the colour."""
    root = tmp_path_factory.mktemp("coca")
    lake = build_lake(root / "lake", n_shards=2, per_shard=40)
    ds = write_dataset(lake, ["shard-000", "shard-001"], DatasetConfig(samples_per_shard=20))
    pattern, manifest = dataset_shards(lake, ds.version)
    config = TrainConfig(
        train_data=pattern,
        train_num_samples=int(manifest["samples"]),
        logs=str(root / "logs"),
        name="coca",
        model=TINY_COCA_MODEL,
        model_config=TINY_COCA_CONFIG,
        batch_size=8,
        epochs=2,
        lr=2e-3,
        warmup=2,
        workers=0,
        precision="fp32",
        device="cpu",
        seed=0,
    )
    return TrainedCoca(config, train(config, poll_seconds=0.2), lake, ds.version)


@pytest.fixture(scope="session")
def coca_registry(trained_coca: TrainedCoca, tmp_path_factory: pytest.TempPathFactory) -> tuple[Tracker, str]:
    """The trained CoCa registered as ``clipfoundry-coca`` version 1 (alias ``round0``) and again as version 2,
    in a SQLite MLflow store; returns the tracker and the newest version."""
    root = tmp_path_factory.mktemp("mlflow")
    tracker = Tracker(default_tracking_uri(root), "coca", artifact_location=(root / "artifacts").as_uri())
    run_id = tracker.run_for("dagster-run", {})
    model, _, _ = load_trained(trained_coca.checkpoint, TINY_COCA_MODEL, TINY_COCA_CONFIG)
    tags = {"dataset.version": trained_coca.version}
    first = log_coca_model(
        tracker,
        run_id,
        model,
        "clipfoundry-coca",
        tags,
        architecture=TINY_COCA_MODEL,
        architecture_config=TINY_COCA_CONFIG,
    )
    source = tracker.client.get_model_version("clipfoundry-coca", first).source
    second = tracker.client.create_model_version("clipfoundry-coca", source, run_id=run_id, tags=tags).version
    tracker.client.set_registered_model_alias("clipfoundry-coca", "round0", first)
    return tracker, str(second)
