"""CLIP score: equal to a direct open_clip computation, loadable from a checkpoint or MLflow, and a global
top-fraction threshold that does not depend on how samples are spread over shards or listed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import open_clip
import pyarrow as pa
import pytest
import torch

from infra.lake import Lake
from ops.layout import table_path
from ops.ledger import check_ledger
from ops.quality import reasons as R
from ops.quality.clip_score import (
    SCHEMA,
    STAGE,
    ClipModelSpec,
    ClipScorer,
    clip_score_shard,
    clip_threshold,
    read_clip_threshold,
)
from ops.quality.images import decode
from tests.ops.quality.shards import Sample, jpeg, many, write_shard
from tests.ops.quality.tiny_clip import NAME, build_checkpoint


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, Path]:
    return build_checkpoint(tmp_path_factory.mktemp("clip"))


def direct_scores(model: torch.nn.Module, images, texts) -> np.ndarray:
    """The textbook computation, written out independently of the op."""
    preprocess = open_clip.image_transform(model.visual.image_size, is_train=False)
    tokens = open_clip.get_tokenizer(NAME)(texts)
    with torch.no_grad():
        img = model.encode_image(torch.stack([preprocess(im) for im in images]))
        txt = model.encode_text(tokens)
    img = img / img.norm(dim=-1, keepdim=True)
    txt = txt / txt.norm(dim=-1, keepdim=True)
    return (img @ txt.T).diagonal().numpy()


def test_score_equals_direct_open_clip(tiny_clip) -> None:
    model, path = tiny_clip
    images = [decode(jpeg(i, (40 + i, 30))) for i in range(5)]
    texts = ["a red bicycle", "a dog on a beach", "x", "", "a very long caption " * 10]
    scorer = ClipScorer(ClipModelSpec(model=NAME, pretrained=str(path)))
    got = scorer.score(images, texts)
    assert got.dtype == np.float32 and got.shape == (5,)
    np.testing.assert_allclose(got, direct_scores(model, images, texts), atol=1e-5)
    np.testing.assert_allclose(scorer.score(images[:2], texts[:2]), got[:2], atol=1e-5)  # batch-independent


def test_spec_needs_exactly_one_weight_source() -> None:
    with pytest.raises(ValueError, match="needs weights"):
        ClipModelSpec(model=NAME)
    with pytest.raises(ValueError, match="needs weights"):
        ClipModelSpec(model=NAME, pretrained="x.pt", mlflow_uri="runs:/abc/model")


def test_loads_a_clip_model_logged_to_mlflow(tiny_clip, tmp_path: Path) -> None:
    import mlflow
    import mlflow.pytorch

    model, _ = tiny_clip
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    images = [decode(jpeg(i)) for i in range(3)]
    texts = ["a", "b c", "a red bicycle"]
    try:
        experiment = mlflow.MlflowClient().create_experiment("clip-score-test")  # this store's own, whatever ran before
        with mlflow.start_run(experiment_id=experiment) as run:
            info = mlflow.pytorch.log_model(
                model, name="clip", serialization_format="pickle", pip_requirements=["torch"]
            )
        for uri in (info.model_uri, f"runs:/{run.info.run_id}/clip"):
            scores = ClipScorer(ClipModelSpec(model=NAME, mlflow_uri=uri)).score(images, texts)
            np.testing.assert_allclose(scores, direct_scores(model, images, texts), atol=1e-5)
    finally:
        mlflow.set_tracking_uri(previous)


def test_clip_score_shard_scores_every_entering_sample(tiny_clip, tmp_path: Path) -> None:
    _, path = tiny_clip
    lake = Lake(str(tmp_path))
    samples = [
        *many(5),
        Sample("bad", image="corrupt"),
        Sample("gone", image="missing"),
        Sample("fail", downloaded=False),
        Sample("short", text="no"),  # heuristics would drop it, but the pool is scored whole
    ]
    write_shard(lake, "s0", samples)
    scorer = ClipScorer(ClipModelSpec(model=NAME, pretrained=str(path)))
    report = clip_score_shard(lake, "s0", scorer, upstream="download", batch_size=3)
    table = lake.read_parquet(table_path(STAGE, "s0"))
    assert table.schema == SCHEMA
    assert table["uid"].to_pylist() == [s.uid for s in samples if s.downloaded]
    assert check_ledger(table, R.CLIP_SCORE_REASONS, report, [s.uid for s in samples if s.downloaded]) == []
    assert report.rows_kept == 6 and dict(report.dropped) == {R.UNDECODABLE: 2}
    scores = dict(zip(table["uid"].to_pylist(), table["clip_score"].to_pylist(), strict=True))
    assert np.isnan(scores["bad"]) and np.isnan(scores["gone"])
    assert not lake.exists(f"{STAGE}/.staging/s0/fingerprint.json")


def write_scores(lake: Lake, shard: str, scores: list[float], model: str = "m") -> None:
    n = len(scores)
    table = pa.table(
        {"uid": [f"{shard}-{i}" for i in range(n)], "clip_score": scores, "kept": [True] * n, "reason": [""] * n},
        schema=SCHEMA,
    )
    lake.write_parquet(table_path(STAGE, shard), table)
    lake.write_json(f"{STAGE}/{shard}.report.json", {"extra": {"model": model}})


def test_top_fraction_threshold_is_datacomps_and_ignores_shard_order(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    pool = rng.normal(0.25, 0.05, 1000).astype(np.float32)
    for name, (a, b) in {"x": (0, 100), "y": (100, 550), "z": (550, 1000)}.items():
        write_scores(Lake(str(tmp_path / "one")), name, pool[a:b].tolist())
    shuffled = rng.permutation(pool)
    for name, (a, b) in {"p": (0, 700), "q": (700, 1000)}.items():
        write_scores(Lake(str(tmp_path / "two")), name, shuffled[a:b].tolist())
    one = clip_threshold(Lake(str(tmp_path / "one")), ["z", "x", "y"], 0.3)
    assert clip_threshold(Lake(str(tmp_path / "one")), ["x", "y", "z"], 0.3) == one
    two = clip_threshold(Lake(str(tmp_path / "two")), ["q", "p"], 0.3)
    expected = -np.sort(-pool)[int(len(pool) * 0.3)]  # DataComp's get_threshold
    assert one.threshold == two.threshold == float(expected)
    assert (pool >= one.threshold).sum() == 301
    assert read_clip_threshold(Lake(str(tmp_path / "one")), "m", 0.3) == one.threshold
    with pytest.raises(ValueError, match=r"not other top 0\.3"):
        read_clip_threshold(Lake(str(tmp_path / "one")), "other", 0.3)


def test_threshold_refuses_mixed_models_and_empty_pools(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path))
    write_scores(lake, "a", [0.1, 0.2], model="m1")
    write_scores(lake, "b", [0.3], model="m2")
    with pytest.raises(ValueError, match="different models"):
        clip_threshold(lake, ["a", "b"], 0.5)
    write_scores(lake, "c", [], model="m1")
    with pytest.raises(ValueError, match="no finite"):
        clip_threshold(lake, ["c"], 0.5)
    with pytest.raises(ValueError, match="top_fraction"):
        clip_threshold(lake, ["a"], 0.0)
