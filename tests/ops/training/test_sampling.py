import json
from pathlib import Path

import open_clip_train.data as oc_data
import pytest
import torch
from open_clip_train.params import parse_args
from torchvision import transforms

from ops.dataset import DatasetConfig, write_dataset
from ops.tarscan import iter_samples
from ops.training.config import dataset_shards
from ops.training.entry import install_sampling
from ops.training.sampling import SampleChooser, draw, keep_for_epoch, pick_sentence, use_synthetic
from ops.vlm import VlmConfig, load_backend
from tests.ops.dataset.lakes import build_lake


def test_draws_are_fixed_per_arguments_and_uniform():
    assert draw(0, "caption", 1, "u") == draw(0, "caption", 1, "u")
    assert draw(0, "caption", 1, "u") != draw(0, "caption", 2, "u")
    values = [draw(7, "curation", 0, str(i)) for i in range(4000)]
    assert 0.47 < sum(v < 0.5 for v in values) / len(values) < 0.53
    assert keep_for_epoch(0, 3, "u", None) and not keep_for_epoch(0, 3, "u", 0.0)
    assert not use_synthetic(0, 0, "u", 0.0) and use_synthetic(0, 0, "u", 1.0)


def test_long_synthetic_captions_give_one_sentence_per_epoch():
    text = "A red car. It is parked by a tree! The sky is blue?"
    picks = {pick_sentence(0, epoch, "u", text) for epoch in range(30)}
    assert picks == {"A red car.", "It is parked by a tree!", "The sky is blue?"}
    assert pick_sentence(0, 0, "u", "one sentence only.") == "one sentence only."


class _Epoch:
    def __init__(self, value):
        self.value = value

    def get_value(self):
        return self.value


def _samples(n):
    for i in range(n):
        yield {
            "__key__": f"uid{i}",
            "txt": b"raw",
            "syn.txt": b"synthetic",
            "json": json.dumps({"p_keep": 0.5}).encode(),
        }


def test_chooser_mixes_captions_and_redraws_curation_each_epoch():
    chooser = SampleChooser(lambda src: src, seed=1, synthetic_probability=0.3, online_curation=True)
    kept = {}
    for epoch in (0, 1):
        chooser.epoch = _Epoch(epoch)
        out = list(chooser(_samples(2000)))
        kept[epoch] = {s["__key__"] for s in out}
        assert 0.45 < len(out) / 2000 < 0.55
        assert 0.25 < sum(s["txt"] == b"synthetic" for s in out) / len(out) < 0.35
    assert kept[0] != kept[1]


@pytest.fixture
def captioner(tiny_llava: Path, offline):
    return load_backend(VlmConfig(model=str(tiny_llava), name="tiny-llava"))


def test_entry_pipeline_reads_through_the_chooser(tmp_path, monkeypatch, captioner):
    monkeypatch.setattr(oc_data, "get_wds_dataset", oc_data.get_wds_dataset)  # restored after the test
    lake = build_lake(tmp_path / "lake", n_shards=2, per_shard=40, captioner=captioner)
    ds = write_dataset(lake, ["shard-000", "shard-001"], DatasetConfig(samples_per_shard=10))
    pattern, manifest = dataset_shards(lake, ds.version)
    args = parse_args(
        [
            *("--train-data", pattern, "--dataset-type", "webdataset", "--workers", "0"),
            *("--train-num-samples", str(manifest["samples"]), "--batch-size", str(manifest["samples"])),
        ]
    )
    args.world_size = 1
    install_sampling(synthetic_probability=1.0, online_curation=False)
    info = oc_data.get_data(args, (transforms.ToTensor(), None), tokenizer=lambda text: [text])["train"]
    images, texts = next(iter(info.dataloader))
    assert isinstance(images, torch.Tensor)
    expected = []
    for uid, files in _all(lake, ds):
        synthetic = files.get("syn.txt")
        raw = files["txt"].decode()
        expected.append(pick_sentence(args.seed, 0, uid, synthetic.decode()) if synthetic else raw)
    assert sorted(texts) == sorted(expected)  # one sentence of the synthetic caption wherever there is one
    assert any(not t.startswith("a ") for t in texts)


def _all(lake, ds):
    """(uid, files) of every sample of the dataset: a dataset tar's sample key is the uid."""
    for s in ds.manifest["shards"]:
        with lake.open(f"dataset/{ds.version}/{s['path']}") as f:
            yield from iter_samples(f, s["path"])
