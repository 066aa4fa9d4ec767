"""Recaptioning with the bootstrapped CoCa, loaded from the MLflow registry by the production loader, through to
training's caption mixing and DreamLIP-style sentence sampling of the captions it wrote."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.lake import Lake
from ops.dataset import DatasetConfig, write_dataset
from ops.dataset.tars import iter_tar
from ops.layout import table_path
from ops.ledger import check_ledger
from ops.quality.images import decode
from ops.quality.shard import QualityConfig, quality_shard
from ops.recaption import REASONS, RecaptionConfig, recaption_shard
from ops.report import StageReport
from ops.training.sampling import SampleChooser, pick_sentence
from ops.vlm import VlmConfig, load_backend
from tests.ops.quality.shards import Sample, jpeg, many, write_shard

SAMPLES = [*many(7), Sample("german", lang="de"), Sample("bad", image="corrupt")]
QUALITY_KEPT = [s.uid for s in SAMPLES if s.uid != "german"]
CONFIG = RecaptionConfig(max_new_tokens=8, batch_size=3)


@pytest.fixture(scope="module")
def coca(coca_registry):
    tracker, _ = coca_registry
    engine = {"tracking_uri": tracker.tracking_uri}
    return load_backend(VlmConfig(model="models:/clipfoundry-coca/latest", backend="coca", engine_kwargs=engine))


def shard_after_quality(root: Path) -> Lake:
    lake = Lake(str(root))
    write_shard(lake, "s0", SAMPLES)
    quality_shard(lake, "s0", QualityConfig())
    return lake


def test_every_sample_gets_the_caption_and_version_of_the_coca(tmp_path: Path, coca, coca_registry) -> None:
    _, version = coca_registry
    lake = shard_after_quality(tmp_path)
    report = recaption_shard(lake, "s0", CONFIG, coca)
    table = lake.read_parquet(table_path("recaption", "s0"))
    assert (
        check_ledger(table, REASONS, StageReport.from_dict(lake.read_json("recaption/s0.report.json")), QUALITY_KEPT)
        == []
    )
    rows = {r["uid"]: r for r in table.to_pylist()}
    assert rows["bad"]["reason"] == "undecodable" and rows["bad"]["captioner"] is None
    direct = coca.generate([decode(jpeg(i)) for i in range(7)], [""] * 7, CONFIG.max_new_tokens)
    for sample, caption in zip(many(7), direct, strict=True):
        row = rows[sample.uid]
        assert row["kept"] and row["captioner"] == f"{coca.architecture}@models:/clipfoundry-coca/{version}"
        assert row["synthetic_text"] == (caption or None)
    assert report.extra["captioner"] == coca.name and report.extra["model_seconds"] > 0


def test_resume_after_interruption_gives_the_same_table(tmp_path: Path, coca) -> None:
    class DiesAfter:
        name, model_seconds = coca.name, 0.0

        def __init__(self, calls: int) -> None:
            self.calls, self.batches = calls, 0

        def generate(self, images, prompts, max_new_tokens):
            if self.batches >= self.calls:
                raise KeyboardInterrupt
            self.batches += 1
            return coca.generate(images, prompts, max_new_tokens)

    whole = shard_after_quality(tmp_path / "whole")
    recaption_shard(whole, "s0", CONFIG, coca)
    lake = shard_after_quality(tmp_path / "resumed")
    with pytest.raises(KeyboardInterrupt):
        recaption_shard(lake, "s0", CONFIG, DiesAfter(1))
    second = DiesAfter(99)
    recaption_shard(lake, "s0", CONFIG, second)
    assert second.batches == 2  # 8 samples in batches of 3: one before the kill, two after
    assert lake.read_parquet(table_path("recaption", "s0")).equals(whole.read_parquet(table_path("recaption", "s0")))


class _Epoch:
    def __init__(self, value: int) -> None:
        self.value = value

    def get_value(self) -> int:
        return self.value


def test_training_mixes_the_coca_captions_in(tmp_path: Path, coca) -> None:
    lake = shard_after_quality(tmp_path)
    recaption_shard(lake, "s0", CONFIG, coca)
    stages = ("crawl", "download", "quality", "recaption")
    ds = write_dataset(lake, ["s0"], DatasetConfig(stages, 100))
    with lake.open(f"dataset/{ds.version}/{ds.manifest['shards'][0]['path']}") as f:
        samples = [{"__key__": key, **files} for key, files in iter_tar(f)]
    synthetic = {s["__key__"]: s["syn.txt"] for s in samples if "syn.txt" in s}
    assert synthetic, "the CoCa wrote no caption to mix in"
    captions = {r["uid"]: r["synthetic_text"] for r in lake.read_parquet(table_path("recaption", "s0")).to_pylist()}
    assert {k: v.decode() for k, v in synthetic.items()} == {u: c for u, c in captions.items() if c}
    for probability, expect_synthetic in ((1.0, True), (0.0, False)):
        chooser = SampleChooser(iter, seed=0, synthetic_probability=probability, online_curation=False)
        chooser.epoch = _Epoch(0)
        for sample in chooser([dict(s) for s in samples]):
            uid = sample["__key__"]
            wanted = (
                synthetic[uid]
                if expect_synthetic and uid in synthetic
                else next(s["txt"] for s in samples if s["__key__"] == uid)
            )
            assert sample["txt"] == wanted


def test_long_coca_captions_are_sampled_sentence_by_sentence(coca) -> None:
    written = coca.detokenize(coca.tokenizer.encode("a red square on white . it is small ! the light is soft ."))
    assert written == "a red square on white. it is small! the light is soft."
    picked = {pick_sentence(0, epoch, "uid", written) for epoch in range(40)}
    assert picked == {"a red square on white.", "it is small!", "the light is soft."}
