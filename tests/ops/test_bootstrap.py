"""The bootstrap's settings and hand-off: who uses round 0's model, what it may be, and how a round-1 stage finds
exactly the version it registered."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.lake import Lake
from ops.bootstrap import (
    BOOTSTRAP,
    BootstrapConfig,
    BootstrapModel,
    check_trainable,
    curation_round,
    read_bootstrap,
    round0_through,
    users,
    write_bootstrap,
)
from ops.quality.config import ClipScoreConfig, QualityConfig
from ops.quality.judge import JudgeConfig
from ops.recaption.shard import RecaptionConfig
from tests.ops.training.tiny import TINY_COCA_CONFIG, TINY_COCA_MODEL, TINY_CONFIG, TINY_MODEL

PAIRS = JudgeConfig(model=BOOTSTRAP, backend="coca", mode="pairs", likelihood_top_fraction=0.8)


def test_the_users_are_the_stages_whose_settings_name_it():
    assert users(QualityConfig(), RecaptionConfig()) == []
    quality = QualityConfig(clip=ClipScoreConfig(bootstrap=True, top_fraction=0.7), judge=PAIRS)
    recaption = RecaptionConfig(model=BOOTSTRAP, backend="coca")
    assert users(quality, recaption) == ["clip_scores", "judge_scores", "recaption"]
    # a real VLM in the captioner's place: the bootstrap still serves the others, the captioner is the VLM's
    assert users(quality, RecaptionConfig(model="Qwen/Qwen2-VL-2B-Instruct")) == ["clip_scores", "judge_scores"]
    with pytest.raises(ValueError, match="backend 'coca'"):
        users(QualityConfig(), RecaptionConfig(model=BOOTSTRAP, backend="hf"))


def test_a_clip_score_from_the_bootstrap_takes_everything_from_it():
    assert ClipScoreConfig(bootstrap=True, threshold=0.2).configured
    assert not ClipScoreConfig().configured
    with pytest.raises(ValueError, match="leave model unset"):
        ClipScoreConfig(bootstrap=True, model="ViT-B-32", top_fraction=0.5)
    with pytest.raises(ValueError, match="exactly one of pretrained"):
        ClipScoreConfig(bootstrap=True, registered_model="clip", top_fraction=0.5)
    with pytest.raises(ValueError, match="exactly one of threshold"):
        ClipScoreConfig(bootstrap=True)


def test_only_a_coca_can_be_bootstrapped():
    check_trainable(BootstrapConfig(architecture=TINY_COCA_MODEL, architecture_config=TINY_COCA_CONFIG))
    check_trainable(BootstrapConfig())  # open_clip's own coca_ViT-B-32
    with pytest.raises(ValueError, match="not one"):
        check_trainable(BootstrapConfig(architecture=TINY_MODEL, architecture_config=TINY_CONFIG))
    trained = BootstrapConfig(architecture=TINY_COCA_MODEL, epochs=1).training()
    assert (trained.architecture, trained.epochs, trained.registered_model) == (
        TINY_COCA_MODEL,
        1,
        "clipfoundry-bootstrap",
    )


def test_round_zero_is_what_the_heuristics_kept():
    assert round0_through() == "heuristics"


def test_the_hand_off_names_one_version(tmp_path: Path):
    lake = Lake(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="materialize the bootstrap"):
        read_bootstrap(lake)
    assert curation_round(lake) == 0
    write_bootstrap(lake, None, [])
    with pytest.raises(ValueError, match="trained none"):
        read_bootstrap(lake)
    assert curation_round(lake) == 0  # no model filter used a round-0 model: the final model closes round 0
    made = BootstrapModel("clipfoundry-bootstrap", "3", TINY_COCA_MODEL, TINY_COCA_CONFIG, "abc", 120, {"top1": 0.5})
    write_bootstrap(lake, made, ["clip_scores"])
    found = read_bootstrap(lake)
    assert found == made and found.uri == "models:/clipfoundry-bootstrap/3"
    assert curation_round(lake) == 1
