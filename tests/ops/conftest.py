"""A tiny CoCa trained once per session by the production training path, shared by the engine's tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from infra.lake import Lake
from ops.dataset import DatasetConfig, write_dataset
from ops.training import TrainConfig, TrainResult, dataset_shards, train
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
    stages = ("crawl", "download", "dedup", "curation", "quality", "recaption")
    ds = write_dataset(lake, ["shard-000", "shard-001"], DatasetConfig(stages, 20))
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
