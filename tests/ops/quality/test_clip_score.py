"""CLIP score: equal to a direct open_clip computation, loadable from a checkpoint or MLflow, and a global
top-fraction threshold that does not depend on how samples are spread over shards or listed, moves only past its
tolerance, and names the shards whose decisions it may change."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import open_clip
import pyarrow as pa
import pytest
import torch

from infra.lake import Lake
from ops import graph
from ops.ledger import check_ledger
from ops.quality import reasons as R
from ops.quality.clip_score import (
    SCHEMA,
    ClipModelSpec,
    ClipScorer,
    clip_score_shard,
    clip_threshold,
    read_clip_threshold,
)
from ops.quality.images import decode
from ops.report import StageReport
from ops.stage import conservation_problems
from tests.ops.lakes import jpeg
from tests.ops.quality.shards import Sample, many, write_shard
from tests.ops.quality.tiny_clip import NAME, build_checkpoint

STAGE = graph.stage("clip_scores")


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
    # MLflow's global URI is also an environment variable (set_tracking_uri exports it for subprocesses), and
    # get_tracking_uri() answers MLflow's default when none is set: restoring that default would leave every later
    # test writing to ./mlflow.db. Restore exactly what was set (None unsets both).
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    images = [decode(jpeg(i)) for i in range(3)]
    texts = ["a", "b c", "a red bicycle"]
    try:
        experiment = mlflow.MlflowClient().create_experiment(  # this store's own, whatever ran before
            "clip-score-test", artifact_location=(tmp_path / "artifacts").as_uri()
        )
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
        Sample("short", text="no"),  # the heuristics drop it: no model looks at it
    ]
    uids = write_shard(lake, "s0", samples)
    scorer = ClipScorer(ClipModelSpec(model=NAME, pretrained=str(path)))
    report = clip_score_shard(lake, "s0", scorer, batch_size=3)
    table = lake.read_parquet(STAGE.table("s0"))
    entering = [uids[s.name] for s in samples if s.downloaded and s.name != "short"]
    assert table.schema == SCHEMA
    assert table["uid"].to_pylist() == entering  # what the heuristics kept, in its order
    assert check_ledger(table, R.CLIP_SCORE_REASONS, report, entering) == []
    assert conservation_problems(lake, STAGE, "s0") == []
    assert report.rows_kept == 5 and dict(report.dropped) == {R.UNDECODABLE: 2}
    scores = dict(zip(table["uid"].to_pylist(), table["clip_score"].to_pylist(), strict=True))
    assert np.isnan(scores[uids["bad"]]) and np.isnan(scores[uids["gone"]])
    assert report.extra["model"] == scorer.name
    assert not lake.exists(f"{STAGE.home}/.staging/s0/fingerprint.json")


def test_without_a_scorer_every_sample_is_recorded_unscored(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path))
    write_shard(lake, "s0", many(3))
    report = clip_score_shard(lake, "s0", None)
    table = lake.read_parquet(STAGE.table("s0"))
    assert table.schema == SCHEMA and table["clip_score"].null_count == 3
    assert dict(report.dropped) == {R.NO_MODEL: 3} and report.extra["model"] is None
    assert clip_threshold(lake, ["s0"], 0.5).note == "no CLIP scores yet"


def write_scores(lake: Lake, shard: str, scores, model: str = "m") -> None:
    """A published clip_scores shard as clip_score_shard leaves it: the table, then its report naming the model."""
    n = len(scores)
    table = pa.table(
        {"uid": [f"{shard}-{i}" for i in range(n)], "clip_score": scores, "kept": [True] * n, "reason": [""] * n},
        schema=SCHEMA,
    )
    lake.write_parquet(STAGE.table(shard), table)
    report = StageReport(stage=STAGE.name, shard=shard, rows_in=n, rows_kept=n, extra={"model": model})
    lake.write_json(STAGE.report(shard), report.to_dict())


def test_top_fraction_threshold_is_datacomps_and_ignores_shard_order(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    pool = rng.normal(0.25, 0.05, 1000).astype(np.float32)
    for name, (a, b) in {"x": (0, 100), "y": (100, 550), "z": (550, 1000)}.items():
        write_scores(Lake(str(tmp_path / "one")), name, pool[a:b].tolist())
    shuffled = rng.permutation(pool)
    for name, (a, b) in {"p": (0, 700), "q": (700, 1000)}.items():
        write_scores(Lake(str(tmp_path / "two")), name, shuffled[a:b].tolist())
    one = clip_threshold(Lake(str(tmp_path / "one")), ["z", "x", "y"], 0.3)
    again = clip_threshold(Lake(str(tmp_path / "one")), ["x", "y", "z"], 0.3)
    assert again.threshold == one.threshold and again.shards == one.shards
    assert again.affected_shards == []  # nothing changed since the first publication
    two = clip_threshold(Lake(str(tmp_path / "two")), ["q", "p"], 0.3)
    expected = -np.sort(-pool)[int(len(pool) * 0.3)]  # DataComp's get_threshold
    assert one.threshold == one.exact == two.threshold == float(expected)
    assert (pool >= one.threshold).sum() == 301
    assert one.affected_shards == ["x", "y", "z"]  # the first threshold decides every shard
    assert read_clip_threshold(Lake(str(tmp_path / "one")), "m", 0.3) == one.threshold
    with pytest.raises(ValueError, match=r"not other top 0\.3"):
        read_clip_threshold(Lake(str(tmp_path / "one")), "other", 0.3)


def test_threshold_refuses_mixed_models_and_says_when_there_is_nothing_to_threshold(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path))
    write_scores(lake, "a", [0.1, 0.2], model="m1")
    write_scores(lake, "b", [0.3], model="m2")
    write_scores(lake, "c", [0.4], model="m1")
    with pytest.raises(ValueError, match=r"different models.*re-run clip_scores for \['b'\]"):
        clip_threshold(lake, ["a", "b", "c"], 0.5)
    write_scores(lake, "d", [], model="m1")
    empty = clip_threshold(lake, ["d"], 0.5)
    assert (empty.threshold, empty.exact, empty.note) == (None, None, "no CLIP scores yet")
    with pytest.raises(ValueError, match="re-run clip_score_threshold"):
        read_clip_threshold(lake, "m1", 0.5)
    assert clip_threshold(lake, ["a"], None).note == "no top-fraction CLIP filter configured"
    with pytest.raises(ValueError, match="top_fraction"):
        clip_threshold(lake, ["a"], 0.0)


LOW = np.linspace(0.0, 0.29, 100, dtype=np.float32)
MID = np.linspace(0.30, 0.60, 100, dtype=np.float32)
TOP = 0.25  # with LOW and MID, the threshold falls inside MID


def test_a_new_shard_like_the_pool_leaves_the_threshold_and_only_it_is_affected(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path))
    write_scores(lake, "s0", LOW)
    write_scores(lake, "s1", MID)
    first = clip_threshold(lake, ["s0", "s1"], TOP, tolerance=0.02)
    assert LOW.max() < first.threshold < MID.max() and first.affected_shards == ["s0", "s1"]
    rng = np.random.default_rng(1)
    write_scores(lake, "s2", rng.permutation(np.concatenate([LOW[::2], MID[1::2]])) + 0.001)
    second = clip_threshold(lake, ["s0", "s1", "s2"], TOP, tolerance=0.02)
    assert second.exact != first.threshold  # DataComp's value moved a little ...
    assert second.threshold == first.threshold  # ... but the share kept is within the tolerance
    assert abs(second.kept_share - TOP) <= 0.02
    assert second.affected_shards == ["s2"]
    exact = clip_threshold(lake, ["s0", "s1", "s2"], TOP)  # no tolerance: DataComp's value, always
    assert exact.threshold == exact.exact == second.exact


def test_changed_scores_affect_their_shard(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path))
    write_scores(lake, "s0", LOW)
    write_scores(lake, "s1", MID)
    first = clip_threshold(lake, ["s0", "s1"], TOP, tolerance=0.02)
    write_scores(lake, "s1", MID[::-1])  # the same values in another order are other rows
    second = clip_threshold(lake, ["s0", "s1"], TOP, tolerance=0.02)
    assert second.threshold == first.threshold and second.affected_shards == ["s1"]


def test_a_threshold_that_moves_affects_the_shards_with_scores_it_crosses(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path))
    write_scores(lake, "s0", LOW)
    write_scores(lake, "s1", MID)
    write_scores(lake, "s3", np.full(20, 0.95, np.float32))  # above both thresholds: decisions unchanged
    first = clip_threshold(lake, ["s0", "s1", "s3"], TOP, tolerance=0.01)
    write_scores(lake, "s2", np.linspace(0.8, 0.99, 100, dtype=np.float32))  # a much better shard arrives
    second = clip_threshold(lake, ["s0", "s1", "s2", "s3"], TOP, tolerance=0.01)
    assert second.threshold == second.exact > first.threshold  # the kept share drifted past the tolerance
    crossed = {name: np.any((v >= first.threshold) & (v < second.threshold)) for name, v in (("s0", LOW), ("s1", MID))}
    assert crossed == {"s0": False, "s1": True}
    assert second.affected_shards == ["s1", "s2"]  # s2 is new, s1 has scores the threshold crossed
    assert second.kept_share == pytest.approx(TOP, abs=0.01)


def test_scores_of_another_model_affect_every_shard(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path))
    write_scores(lake, "s0", LOW)
    write_scores(lake, "s1", MID)
    clip_threshold(lake, ["s0", "s1"], TOP, tolerance=0.5)
    write_scores(lake, "s0", LOW, model="m2")
    write_scores(lake, "s1", MID, model="m2")
    again = clip_threshold(lake, ["s0", "s1"], TOP, tolerance=0.5)
    assert again.model == "m2" and again.affected_shards == ["s0", "s1"]
    other_fraction = clip_threshold(lake, ["s0", "s1"], 0.3, tolerance=0.5)
    assert other_fraction.threshold == other_fraction.exact and other_fraction.affected_shards == ["s0", "s1"]
