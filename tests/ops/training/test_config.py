import json
from pathlib import Path

import pytest

from ops.training.config import TrainConfig, brace_pattern, check_shards, entry_args, open_clip_args, torchrun
from tests.ops.training.tiny import TINY_CONFIG, TINY_MODEL


def _config(tmp_path, **kw):
    return TrainConfig(train_data="/d/{00000..00003}.tar", train_num_samples=100, logs=str(tmp_path), name="r", **kw)


def test_open_clip_args_carry_the_settings_and_resume_latest(tmp_path):
    args = open_clip_args(_config(tmp_path, device="cpu", batch_size=8, epochs=2))
    pairs = dict(zip(args[::2], args[1::2], strict=True))
    assert pairs["--train-num-samples"] == "100" and pairs["--batch-size"] == "8" and pairs["--epochs"] == "2"
    assert (
        pairs["--resume"] == "latest" and pairs["--dist-backend"] == "gloo" and pairs["--dataset-type"] == "webdataset"
    )
    assert pairs["--logs"] == str(tmp_path) and pairs["--name"] == "r"


def test_entry_args_write_the_custom_model_config(tmp_path):
    config = _config(
        tmp_path, model=TINY_MODEL, model_config=TINY_CONFIG, synthetic_caption_prob=0.3, online_curation=True
    )
    args = entry_args(config)
    path = args[args.index("--cf-model-config") + 1]
    assert path.endswith(f"{TINY_MODEL}.json") and json.loads(Path(path).read_text()) == TINY_CONFIG
    assert "--cf-online-curation" in args and args[args.index("--cf-synthetic-caption-prob") + 1] == "0.3"
    assert args[args.index("--report-to") + 1] == "tensorboard"


def test_torchrun_separates_script_arguments():
    cmd = torchrun("ops.training.entry", ["--logs", "x"], 2)
    assert cmd[cmd.index("-m", 3) :] == ["-m", "ops.training.entry", "--", "--logs", "x"]
    assert "--nproc_per_node=2" in cmd


def test_brace_pattern():
    assert brace_pattern(["/a/00000.tar", "/a/00001.tar", "/a/00002.tar"]) == "/a/{00000..00002}.tar"
    assert brace_pattern(["/a/00000.tar"]) == "/a/00000.tar"
    with pytest.raises(ValueError):
        brace_pattern([])


def test_too_few_shards_for_ranks_times_workers_is_refused_early(tmp_path):
    assert check_shards(_config(tmp_path, workers=2, nproc_per_node=2)) == 4
    with pytest.raises(ValueError, match="need 6"):
        check_shards(_config(tmp_path, workers=3, nproc_per_node=2))
