"""End to end on a random tiny open_clip model: the pipeline from lake files to metrics, not the model's skill."""

import io
import json
import tarfile

import numpy as np
import open_clip
import pytest

from infra.lake import Lake
from ops.evaluation import load_classification_set, retrieval, zero_shot
from ops.evaluation.embed import classifier_weights, embed_images
from ops.evaluation.metrics import class_weights, classification_metrics, zero_shot_logits
from ops.evaluation.sets import iter_labelled
from tests.ops.dataset.lakes import COLOURS, image_bytes
from tests.ops.training.tiny import TINY_CONFIG, TINY_MODEL

NAMES = {"en": [f"{c} square" for c in COLOURS], "de": ["rotes Quadrat", "grünes Quadrat", "blaues Quadrat", "gelb"]}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / f"{TINY_MODEL}.json"
    path.write_text(json.dumps(TINY_CONFIG))
    open_clip.add_model_config(path)
    model, _, preprocess = open_clip.create_model_and_transforms(TINY_MODEL)
    return model.eval(), open_clip.get_tokenizer(TINY_MODEL), preprocess


def _folder(lake, per_class, skip_class=None):
    rng = np.random.default_rng(1)
    for i, name in enumerate(NAMES["en"]):
        if i == skip_class:
            continue
        for n in range(per_class):
            lake.write_bytes(f"eval/toy/{name.replace(' ', '_')}/{n}.jpg", image_bytes(list(COLOURS)[i], rng))
    lake.write_json("eval/toy/classes.json", NAMES)
    lake.write_json("eval/toy/templates.json", ["a photo of a {}.", "a {c}."])


def test_zero_shot_per_language_matches_the_metric_functions(tmp_path, tiny):
    model, tokenizer, preprocess = tiny
    lake = Lake(str(tmp_path))
    _folder(lake, per_class=3, skip_class=3)
    eval_set = load_classification_set(lake, "eval/toy")
    assert eval_set.kind == "folder" and set(eval_set.templates) == {"en", "de"}
    result = zero_shot(model, tokenizer, preprocess, lake, eval_set, batch_size=4)
    assert result["n_samples"] == 9 and set(result["by_language"]) == {"en", "de"}
    images, labels = zip(*iter_labelled(lake, eval_set), strict=True)
    emb = embed_images(model, preprocess, images)
    for lang, names in NAMES.items():
        w = class_weights(classifier_weights(model, tokenizer, names, eval_set.templates[lang]))
        expected = classification_metrics(zero_shot_logits(emb, w), np.array(labels))
        assert result["by_language"][lang] == pytest.approx(expected)
    per_class = result["per_class"].to_pylist()
    assert len(per_class) == 8
    empty = [r for r in per_class if r["class_index"] == 3]
    assert all(r["n_samples"] == 0 and r["recall"] is None for r in empty)


def test_webdataset_classification_and_retrieval(tmp_path, tiny):
    model, tokenizer, preprocess = tiny
    lake = Lake(str(tmp_path))
    rng = np.random.default_rng(2)
    cls_tar, ret_tar = tmp_path / "c.tar", tmp_path / "r.tar"
    with tarfile.open(cls_tar, "w") as c, tarfile.open(ret_tar, "w") as r:
        for i, colour in enumerate(list(COLOURS) * 2):
            img = image_bytes(colour, rng)
            captions = f"a {colour} square\na picture of {colour}\n"
            for tar, files in (
                (c, {"jpg": img, "cls": str(i % 4).encode()}),
                (r, {"jpg": img, "txt": captions.encode()}),
            ):
                for ext, data in files.items():
                    info = tarfile.TarInfo(f"{i:04d}.{ext}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    lake.put_file(cls_tar, "eval/cls/00000.tar")
    lake.write_json("eval/cls/classes.json", NAMES["en"])
    lake.write_json("eval/cls/templates.json", ["a {c}."])
    lake.put_file(ret_tar, "eval/ret/00000.tar")
    eval_set = load_classification_set(lake, "eval/cls")
    assert eval_set.kind == "webdataset"
    result = zero_shot(model, tokenizer, preprocess, lake, eval_set)
    assert result["n_samples"] == 8 and 0 <= result["metrics"]["top1"] <= 1 and result["metrics"]["top5"] == 1.0
    r = retrieval(model, tokenizer, preprocess, lake, "eval/ret")
    assert r["n_images"] == 8 and r["n_texts"] == 16
    assert r["mean_recall@1"] == pytest.approx((r["image_retrieval_recall@1"] + r["text_retrieval_recall@1"]) / 2)
    assert r["image_retrieval_recall@10"] == 1.0  # only 8 images: every query hits within 10
