"""Two-process DDP training on CPU (gloo) through our entry point, then crash recovery, then evaluation."""

import io
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from ops.curation.config import BalanceConfig
from ops.curation.stage import load_entry_counts
from ops.dataset import DatasetConfig, write_dataset
from ops.training import TrainConfig, dataset_shards, latest_checkpoint, load_trained, train
from ops.training.launch import scalars_path
from tests.ops.dataset.lakes import build_lake, image_bytes
from tests.ops.training.tiny import TINY_CONFIG, TINY_MODEL

EPOCHS = 3


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    lake = build_lake(root / "lake", n_shards=4, per_shard=80)
    counts, _ = load_entry_counts(lake)
    balance = BalanceConfig(t=0.8 * counts.max())  # the head entry keeps about 4/5 of its samples each epoch
    shards = [f"shard-{i:03d}" for i in range(4)]
    ds = write_dataset(lake, shards, DatasetConfig(samples_per_shard=20, online_curation=True), balance)
    pattern, manifest = dataset_shards(lake, ds.version)
    config = TrainConfig(
        train_data=pattern,
        train_num_samples=round(manifest["expected_samples_per_epoch"]),
        logs=str(root / "logs"),
        name="run",
        model=TINY_MODEL,
        model_config=TINY_CONFIG,
        batch_size=16,
        epochs=EPOCHS,
        lr=2e-3,
        warmup=2,
        workers=0,
        precision="fp32",
        nproc_per_node=2,
        device="cpu",
        synthetic_caption_prob=0.5,
        online_curation=True,
    )
    seen = []
    result = train(config, on_step=seen.append, poll_seconds=0.2)
    return config, result, seen


def test_ddp_run_trains_and_rank0_alone_reports(trained):
    config, result, seen = trained
    per_epoch = len(result.steps) // EPOCHS
    assert per_epoch >= 3
    assert [s["step"] for s in result.steps] == list(range(EPOCHS * per_epoch))
    assert [s["step"] for s in seen] == [s["step"] for s in result.steps]  # followed live, each step once
    lines = [json.loads(x) for x in scalars_path(config).read_text().splitlines()]
    assert len(lines) == len({(x["step"], x["tag"]) for x in lines})  # one writer: no step written twice
    losses = [s["loss"] for s in result.steps]
    assert sum(losses[-per_epoch:]) / per_epoch < sum(losses[:per_epoch]) / per_epoch
    assert all(s["lr"] > 0 for s in result.steps) and result.steps[0]["lr"] < result.steps[1]["lr"]  # warmup
    assert result.epoch == EPOCHS and result.checkpoint.name == f"epoch_{EPOCHS}.pt"


def test_resume_after_crash_continues_at_the_next_epoch(trained):
    config, result, _ = trained
    per_epoch = len(result.steps) // EPOCHS
    crashed = TrainConfig(**{**config.__dict__, "name": "crashed"})
    (crashed.run_dir / "checkpoints").mkdir(parents=True)
    shutil.copy(config.run_dir / "checkpoints" / "epoch_1.pt", crashed.run_dir / "checkpoints" / "epoch_1.pt")
    resumed = train(crashed, poll_seconds=0.2)
    assert [s["step"] for s in resumed.steps] == list(range(per_epoch, EPOCHS * per_epoch))
    assert latest_checkpoint(crashed.run_dir)[1] == EPOCHS
    assert "resuming checkpoint" in (crashed.run_dir / "out.log").read_text()


def test_checkpoint_loads_back_and_embeds(trained):
    _, result, _ = trained
    model, preprocess, tokenizer = load_trained(result.checkpoint, TINY_MODEL, TINY_CONFIG)
    saved = torch.load(result.checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    key = next(k for k in saved if k.endswith("logit_scale"))
    assert torch.equal(model.logit_scale.detach(), saved[key])
    image = Image.open(io.BytesIO(image_bytes("red", np.random.default_rng(0))))
    with torch.inference_mode():
        text = model.encode_text(tokenizer(["a red square", "a blue square"]))
        pixels = model.encode_image(preprocess(image)[None])
    assert text.shape == (2, TINY_CONFIG["embed_dim"]) and pixels.shape == (1, TINY_CONFIG["embed_dim"])
