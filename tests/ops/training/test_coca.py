"""CoCa trains through the same path as CLIP (torchrun, our entry point, open_clip_train's CoCa loss) and loads
back through the same loader; configs open_clip would quietly train as something else are refused."""

import pytest
import torch

from ops.training import TrainConfig, load_trained, open_clip_args, train
from ops.training.config import check_architecture, is_coca
from tests.ops.training.tiny import TINY_COCA_CONFIG, TINY_COCA_MODEL, TINY_CONFIG, TINY_MODEL


def test_coca_trains_with_the_caption_and_contrastive_losses(trained_coca):
    steps = trained_coca.result.steps
    assert len(steps) >= 6 and trained_coca.result.epoch == 2
    assert all({"caption_loss", "contrastive_loss", "loss"} <= set(s) for s in steps)
    for s in steps:  # open_clip_train's defaults: caption loss weighted 2, contrastive 1
        assert s["loss"] == pytest.approx(s["caption_loss"] + s["contrastive_loss"], rel=1e-5)
    half = len(steps) // 2
    first = sum(s["caption_loss"] for s in steps[:half]) / half
    last = sum(s["caption_loss"] for s in steps[-half:]) / half
    assert last < first


def test_the_checkpoint_loads_back_as_a_coca(trained_coca):
    model, _, tokenizer = load_trained(trained_coca.checkpoint, TINY_COCA_MODEL, TINY_COCA_CONFIG)
    assert type(model).__name__ == "CoCa"
    saved = torch.load(trained_coca.checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    key = next(k for k in saved if k.endswith("text_decoder.text_projection"))
    assert torch.equal(model.text_decoder.text_projection.detach(), saved[key])
    tokens = tokenizer(["a red square"])
    assert tokens.shape == (1, TINY_COCA_CONFIG["text_cfg"]["context_length"])
    with torch.inference_mode():
        out = model(torch.zeros(1, 3, 32, 32), tokens)
    assert out["logits"].shape == (1, tokens.shape[1] - 1, 49408)


def _config(tmp_path, **kw):
    return TrainConfig(train_data="/d/{00000..00001}.tar", train_num_samples=10, logs=str(tmp_path), name="r", **kw)


def test_coca_loss_weights_reach_open_clip_train_only_for_a_coca(tmp_path):
    coca = open_clip_args(
        _config(tmp_path, model=TINY_COCA_MODEL, model_config=TINY_COCA_CONFIG, coca_caption_loss_weight=1.5)
    )
    assert coca[coca.index("--coca-caption-loss-weight") + 1] == "1.5"
    assert coca[coca.index("--coca-contrastive-loss-weight") + 1] == "1.0"
    clip = open_clip_args(_config(tmp_path, model=TINY_MODEL, model_config=TINY_CONFIG))
    assert "--coca-caption-loss-weight" not in clip
    assert is_coca("coca_ViT-B-32") and not is_coca("ViT-B-32")  # open_clip's own configs


def test_coca_configs_open_clip_would_misread_are_refused(tmp_path):
    check_architecture(_config(tmp_path, model=TINY_COCA_MODEL, model_config=TINY_COCA_CONFIG))
    with pytest.raises(ValueError, match="contains 'coca'"):
        train(_config(tmp_path, model="cf-captioner", model_config=TINY_COCA_CONFIG))
    no_custom_text = {k: v for k, v in TINY_COCA_CONFIG.items() if k != "custom_text"}
    with pytest.raises(ValueError, match="custom_text"):
        check_architecture(_config(tmp_path, model=TINY_COCA_MODEL, model_config=no_custom_text))
