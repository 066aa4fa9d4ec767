"""Recaptioning with the bootstrapped CoCa, loaded from the MLflow registry by the production loader, through to
training's caption mixing and DreamLIP-style sentence sampling of the captions it wrote."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.lake import Lake
from ops import graph
from ops.dataset import DatasetConfig, write_dataset
from ops.ledger import check_ledger
from ops.recaption import REASONS, RecaptionConfig, recaption_shard
from ops.report import StageReport
from ops.stage import conservation_problems
from ops.tarscan import iter_samples
from ops.training.sampling import SampleChooser, pick_sentence
from ops.vlm import VlmConfig, load_backend
from tests.ops.quality.shards import GERMAN, Sample, many, stored_images, write_shard

SAMPLES = [*many(7), Sample("german", text=GERMAN), Sample("bad", image="corrupt")]
SAFETY_KEPT = [s.name for s in SAMPLES if s.name != "german"]  # quality's language rule dropped it
CONFIG = RecaptionConfig(max_new_tokens=8, batch_size=3)
RECAPTION = graph.stage("recaption")


@pytest.fixture(scope="module")
def coca(coca_registry):
    tracker, _ = coca_registry
    engine = {"tracking_uri": tracker.tracking_uri}
    return load_backend(VlmConfig(model="models:/clipfoundry-coca/latest", backend="coca", engine_kwargs=engine))


def shard_after_safety(root: Path) -> tuple[Lake, dict[str, str]]:
    """The lake as every stage before recaption leaves it; name -> uid."""
    lake = Lake(str(root))
    return lake, write_shard(lake, "s0", SAMPLES, through="safety")


def test_every_sample_gets_the_caption_and_version_of_the_coca(tmp_path: Path, coca, coca_registry) -> None:
    _, version = coca_registry
    lake, uids = shard_after_safety(tmp_path)
    report = recaption_shard(lake, "s0", CONFIG, coca)
    table = lake.read_parquet(RECAPTION.table("s0"))
    written = StageReport.from_dict(lake.read_json(RECAPTION.report("s0")))
    assert check_ledger(table, REASONS, written, [uids[n] for n in SAFETY_KEPT]) == []
    assert conservation_problems(lake, RECAPTION, "s0") == []
    names = {uid: name for name, uid in uids.items()}
    rows = {names[r["uid"]]: r for r in table.to_pylist()}
    assert rows["bad"]["reason"] == "undecodable" and rows["bad"]["captioner"] is None
    images = stored_images(lake, "recaption", "s0", [uids[s.name] for s in many(7)])
    direct = coca.generate(images, [""] * 7, CONFIG.max_new_tokens)
    for sample, caption in zip(many(7), direct, strict=True):
        row = rows[sample.name]
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

    whole, _ = shard_after_safety(tmp_path / "whole")
    recaption_shard(whole, "s0", CONFIG, coca)
    lake, _ = shard_after_safety(tmp_path / "resumed")
    with pytest.raises(KeyboardInterrupt):
        recaption_shard(lake, "s0", CONFIG, DiesAfter(1))
    second = DiesAfter(99)
    recaption_shard(lake, "s0", CONFIG, second)
    assert second.batches == 2  # 8 samples in batches of 3: one before the kill, two after
    assert lake.read_parquet(RECAPTION.table("s0")).equals(whole.read_parquet(RECAPTION.table("s0")))


class _Epoch:
    def __init__(self, value: int) -> None:
        self.value = value

    def get_value(self) -> int:
        return self.value


def test_training_mixes_the_coca_captions_in(tmp_path: Path, coca) -> None:
    lake, _ = shard_after_safety(tmp_path)
    recaption_shard(lake, "s0", CONFIG, coca)
    ds = write_dataset(lake, ["s0"], DatasetConfig(samples_per_shard=100))
    path = ds.manifest["shards"][0]["path"]
    with lake.open(f"dataset/{ds.version}/{path}") as f:
        samples = [{"__key__": key, **files} for key, files in iter_samples(f, path)]
    synthetic = {s["__key__"]: s["syn.txt"] for s in samples if "syn.txt" in s}
    assert synthetic, "the CoCa wrote no caption to mix in"
    captions = {r["uid"]: r["synthetic_text"] for r in lake.read_parquet(RECAPTION.table("s0")).to_pylist()}
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
