"""The recaption op with a tiny random LLaVA captioner loaded offline by the production loader."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.lake import Lake
from ops import graph
from ops.ledger import check_ledger
from ops.recaption import REASONS, RecaptionConfig, recaption_shard
from ops.report import StageReport
from ops.stage import conservation_problems
from ops.vlm import VlmConfig, load_backend
from tests.ops.quality.shards import GERMAN, Sample, many, write_shard

SAMPLES = [*many(5), Sample("german", text=GERMAN), Sample("bad", image="corrupt"), Sample("gone", image="missing")]
SAFETY_KEPT = [s.name for s in SAMPLES if s.name != "german"]  # quality's language rule dropped it
RECAPTION = graph.stage("recaption")


@pytest.fixture(scope="module")
def captioner(tiny_llava: Path):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        return load_backend(VlmConfig(model=str(tiny_llava), name="tiny-llava"))


def shard_after_safety(root: Path) -> tuple[Lake, list[str]]:
    """The lake as every stage before recaption leaves it; the uids safety kept."""
    lake = Lake(str(root))
    uids = write_shard(lake, "s0", SAMPLES, through="safety")
    return lake, [uids[n] for n in SAFETY_KEPT]


def read(lake: Lake):
    return lake.read_parquet(RECAPTION.table("s0")), StageReport.from_dict(lake.read_json(RECAPTION.report("s0")))


def test_captions_every_sample_safety_kept(tmp_path: Path, captioner) -> None:
    lake, kept = shard_after_safety(tmp_path)
    report = recaption_shard(lake, "s0", RecaptionConfig(max_new_tokens=12, batch_size=2), captioner)
    table, written = read(lake)
    assert table["uid"].to_pylist() == kept
    assert check_ledger(table, REASONS, written, kept) == []
    assert conservation_problems(lake, RECAPTION, "s0") == []
    rows = dict(zip(SAFETY_KEPT, table.to_pylist(), strict=True))
    assert rows["bad"]["reason"] == rows["gone"]["reason"] == "undecodable"
    for sample in many(5):
        row = rows[sample.name]
        assert row["kept"] and row["captioner"] == "tiny-llava"
        assert row["synthetic_text"] is None or isinstance(row["synthetic_text"], str)
    assert report.extra["captioned"] + report.extra["empty_captions"] == 5
    assert report.extra["model_seconds"] > 0


def test_the_raw_caption_can_be_quoted_in_the_prompt(tmp_path: Path) -> None:
    class Recorder:
        name = "recorder"
        model_seconds = 0.0

        def __init__(self) -> None:
            self.prompts: list[str] = []

        def generate(self, images, prompts, max_new_tokens):
            self.prompts.extend(prompts)
            return ["A long synthetic caption. " * 40] * len(prompts)

    lake, _ = shard_after_safety(tmp_path)
    backend = Recorder()
    recaption_shard(lake, "s0", RecaptionConfig(prompt="Improve this alt text: {caption}"), backend)
    assert backend.prompts[0] == "Improve this alt text: photo u0 of a red bicycle"
    table, _ = read(lake)
    assert table["synthetic_text"][0].as_py() == ("A long synthetic caption. " * 40).strip()  # kept whole


def test_no_captioner_writes_no_captions_and_says_so(tmp_path: Path) -> None:
    lake, kept = shard_after_safety(tmp_path)
    report = recaption_shard(lake, "s0", RecaptionConfig(), None)
    table, written = read(lake)
    assert report.extra["captioner"] == "no captioner configured"
    assert table["synthetic_text"].null_count == table["captioner"].null_count == len(kept)
    assert check_ledger(table, REASONS, written, kept) == []


def test_generation_length_is_bounded() -> None:
    with pytest.raises(ValueError, match="max_new_tokens"):
        RecaptionConfig(max_new_tokens=4096)
    with pytest.raises(ValueError, match="max_new_tokens"):
        RecaptionConfig(max_new_tokens=0)


def test_resume_after_interruption_gives_the_same_table(tmp_path: Path, captioner) -> None:
    class DiesAfter:
        name = captioner.name
        model_seconds = 0.0

        def __init__(self, calls: int) -> None:
            self.calls, self.batches = calls, 0

        def generate(self, images, prompts, max_new_tokens):
            if self.batches >= self.calls:
                raise KeyboardInterrupt
            self.batches += 1
            return captioner.generate(images, prompts, max_new_tokens)

    config = RecaptionConfig(max_new_tokens=8, batch_size=2)
    whole, _ = shard_after_safety(tmp_path / "whole")
    recaption_shard(whole, "s0", config, captioner)
    lake, _ = shard_after_safety(tmp_path / "resumed")
    with pytest.raises(KeyboardInterrupt):
        recaption_shard(lake, "s0", config, DiesAfter(1))
    second = DiesAfter(99)
    recaption_shard(lake, "s0", config, second)
    # 7 samples in batches of 2: one batch before the kill, two after, and a last one with no decodable image
    assert second.batches == 2
    assert read(lake)[0].equals(read(whole)[0])
    assert lake.list("recaption") == ["recaption/s0.parquet", "recaption/s0.report.json"]
