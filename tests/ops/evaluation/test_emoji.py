"""The cross-style emoji sets on the REAL Debian packages (ruby-tanuki-emoji, ruby-gemojione; ``make system-deps``).

No fakes: the join, the names and the images are the installed files, and the end-to-end test trains a tiny
random CLIP on one style and evaluates it zero-shot on the other.
"""

import io
import json
import math
import tarfile

import numpy as np
import pytest
from PIL import Image

from infra.lake import Lake
from ops.evaluation import emoji, load_classification_set, zero_shot
from ops.evaluation.sets import iter_labelled
from ops.training import TrainConfig, load_trained, train
from tests.ops.training.tiny import TINY_CONFIG, TINY_MODEL


@pytest.fixture(scope="module")
def sources():
    return emoji.load_sources()


@pytest.fixture(scope="module")
def concepts(sources):
    return emoji.shared_concepts(sources)


def _by_name(concepts):
    return {c.name: c for c in concepts}


def test_join_finds_over_a_thousand_shared_concepts(sources, concepts):
    assert len(sources.noto) > 1700 and len(sources.emojione) > 1700  # both packages read in full
    assert len(concepts) > 1000
    assert len({c.name for c in concepts}) == len(concepts)
    for c in concepts:
        assert emoji.base_key(c.key) == c.key  # no skin-tone variant is a concept of its own
        assert all(len(paths) == 1 and paths[0].is_file() for paths in c.images.values())
    assert not {c.name for c in concepts} & {"light skin tone", "red hair"}  # components are not emoji


def test_known_emoji_have_matching_files_and_names(concepts):
    by_name = _by_name(concepts)
    expected = {
        "grinning face": ((0x1F600,), "emoji_u1f600.png", "1F600.png", "grinning face"),
        "family: man, woman, girl": (
            (0x1F468, 0x1F469, 0x1F467),  # ZWJ dropped from the join key
            "emoji_u1f468_200d_1f469_200d_1f467.png",
            "1F468-1F469-1F467.png",
            "family (man,woman,girl)",
        ),
        "keycap: #": ((0x23, 0x20E3), "emoji_u0023_20e3.png", "0023-20E3.png", "number sign"),  # FE0F dropped
        "rainbow flag": ((0x1F3F3, 0x1F308), "emoji_u1f3f3_200d_1f308.png", "1F3F3-1F308.png", None),
        "flag: Germany": ((0x1F1E9, 0x1F1EA), "DE.png", "1F1E9-1F1EA.png", "germany"),
        "pool 8 ball": ((0x1F3B1,), "emoji_u1f3b1.png", "1F3B1.png", "billiards"),  # Unicode's name wins
    }
    for name, (key, noto_file, emojione_file, emojione_name) in expected.items():
        c = by_name[name]
        assert c.key == key
        assert c.images["noto"][0].name == noto_file and c.images["emojione"][0].name == emojione_file
        if emojione_name is not None:
            assert c.emojione_name == emojione_name
    assert by_name["rainbow flag"].sequence == "1F3F3 FE0F 200D 1F308"
    assert "smile" in by_name["grinning face"].keywords


def _mean_colour(png: bytes) -> np.ndarray:
    """Mean RGB of the drawing (pixels that are not near-white background)."""
    pixels = np.asarray(Image.open(io.BytesIO(png))).reshape(-1, 3).astype(float)
    return pixels[pixels.min(axis=1) < 230].mean(axis=0)


def test_images_show_the_named_emoji_in_both_styles(concepts):
    """The files really draw what the names say: a red heart is red, a grinning face yellow, in both styles."""
    by_name = _by_name(concepts)
    for style in emoji.STYLES:
        r, g, b = _mean_colour(emoji.rgb_png(by_name["red heart"].images[style][0]))
        assert r > 150 and r > 2 * g and r > 2 * b, (style, r, g, b)
        r, g, b = _mean_colour(emoji.rgb_png(by_name["grinning face"].images[style][0]))
        assert r > 150 and g > 100 and b < 0.6 * g, (style, r, g, b)
        r, g, b = _mean_colour(emoji.rgb_png(by_name["green apple"].images[style][0]))
        assert g > r and g > b, (style, r, g, b)


def test_rgb_png_is_rgb_on_white_at_the_requested_size(concepts):
    grinning = _by_name(concepts)["grinning face"]
    for style, native in (("noto", 72), ("emojione", 64)):
        path = grinning.images[style][0]
        assert Image.open(path).mode in ("RGBA", "P", "LA")  # transparent sources
        for size, side in ((32, 32), (None, native)):
            image = Image.open(io.BytesIO(emoji.rgb_png(path, size)))
            assert image.mode == "RGB" and image.size == (side, side)
            assert image.getpixel((0, 0)) == (255, 255, 255)  # transparent corner became white, not black


def test_skin_tones_are_dropped_or_merged(sources, concepts):
    assert (0x1F483, 0x1F3FE) in sources.names  # "woman dancing: medium-dark skin tone" is named by Unicode
    assert sources.names[(0x1F483, 0x1F3FE)].name == "woman dancing: medium-dark skin tone"
    merged = emoji.shared_concepts(sources, variants="merge")
    assert [c.name for c in merged] == [c.name for c in concepts]  # same classes, more images
    dancing = _by_name(merged)["woman dancing"]
    assert len(dancing.images["noto"]) == len(dancing.images["emojione"]) == 6
    assert dancing.images["noto"][0].name == "emoji_u1f483.png"  # the base image first
    assert {p.name for p in dancing.images["emojione"][1:]} == {f"1F483-1F3F{t}.png" for t in "BCDEF"}
    assert sum(len(c.images["noto"]) for c in merged) > len(concepts) + 300
    with pytest.raises(ValueError, match="variants"):
        emoji.shared_concepts(sources, variants="tones")


def test_captions_from_names_and_keywords(concepts):
    grinning = _by_name(concepts)["grinning face"]
    assert emoji.caption(grinning) == "an emoji of grinning face."
    with_keywords = emoji.caption(grinning, "keywords")
    assert with_keywords.startswith("an emoji of grinning face: ") and "smile" in with_keywords
    assert "grinning," not in with_keywords  # keywords already in the name are not repeated


def test_missing_package_names_the_debian_package(tmp_path, monkeypatch, capsys):
    with pytest.raises(emoji.EmojiPackageMissing, match="ruby-tanuki-emoji"):
        emoji.load_sources(tanuki=tmp_path / "nowhere")
    monkeypatch.setattr(emoji, "GEMS_DIR", tmp_path)
    with pytest.raises(emoji.EmojiPackageMissing, match="apt-get install ruby-gemojione"):
        emoji.gemojione_dir()
    assert emoji.main(["build", "--out", str(tmp_path / "out")]) == 1
    assert "ruby-tanuki-emoji" in capsys.readouterr().err


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("emoji")
    assert emoji.main(["build", "--train-style", "noto", "--out", str(out), "--limit", "64", "--size", "32"]) == 0
    return out, json.loads((out / "build.json").read_text())


def test_built_sets_load_through_the_evaluation_sets(built):
    out, summary = built
    assert summary["concepts"] == 64 and summary["train_style"] == "noto" and summary["eval_style"] == "emojione"
    lake = Lake(str(out))
    classes = None
    for style in ("emojione", "noto"):
        eval_set = load_classification_set(lake, f"eval/{style}")
        assert eval_set.kind == "webdataset" and eval_set.n_classes == 64
        assert eval_set.templates["en"] == list(emoji.TEMPLATES)
        classes = classes or eval_set.classnames["en"]
        assert eval_set.classnames["en"] == classes  # both sets name the same classes in the same order
        labelled = list(iter_labelled(lake, eval_set))
        assert sorted(label for _, label in labelled) == list(range(64))
        assert all(im.mode == "RGB" and im.size == (32, 32) for im, _ in labelled)
    captions = []
    for path in summary["train_tars"]:
        with tarfile.open(path) as tar:
            names = tar.getnames()
            captions += [tar.extractfile(n).read().decode() for n in names if n.endswith(".txt")]
            assert sum(n.endswith(".png") for n in names) == sum(n.endswith(".txt") for n in names)
    assert sorted(captions) == sorted(f"an emoji of {c}." for c in classes)


def test_tiny_clip_trained_on_noto_evaluates_zero_shot_on_emojione(built):
    out, summary = built
    config = TrainConfig(
        train_data=summary["train_data"],
        train_num_samples=summary["train_samples"],
        logs=str(out / "logs"),
        name="noto",
        model=TINY_MODEL,
        model_config=TINY_CONFIG,
        batch_size=16,
        epochs=3,
        lr=2e-3,
        warmup=2,
        workers=0,
        precision="fp32",
        device="cpu",
    )
    result = train(config, poll_seconds=0.2)
    losses = [s["loss"] for s in result.steps]
    assert len(losses) == 12 and all(math.isfinite(x) for x in losses)
    assert sum(losses[-4:]) < sum(losses[:4])  # it learned something from the Noto pairs
    clip, preprocess, tokenizer = load_trained(result.checkpoint, TINY_MODEL, TINY_CONFIG)
    lake = Lake(str(out))
    for style in ("emojione", "noto"):
        scores = zero_shot(clip, tokenizer, preprocess, lake, load_classification_set(lake, f"eval/{style}"))
        assert scores["n_samples"] == 64 and scores["n_classes"] == 64
        metrics = scores["metrics"]
        assert set(metrics) == {"top1", "top5", "mean_per_class_recall"}
        assert all(math.isfinite(v) and 0 <= v <= 1 for v in metrics.values())
        assert metrics["top5"] >= metrics["top1"]
        assert metrics["mean_per_class_recall"] == pytest.approx(metrics["top1"])  # one image per class
