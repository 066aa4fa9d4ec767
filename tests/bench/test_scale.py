"""The scale benchmark's synthetic lakes go through the real global steps (small sizes, in process): the figures
of docs/scale.md are only worth something if each step reads this data the way it reads a real lake."""

from __future__ import annotations

from pathlib import Path

import pyarrow.compute as pc

from bench.scale import STEPS
from bench.scale_data import build
from infra.lake import Lake
from ops import graph


def _step(root: Path, task: str, kind: str, total: int, per_shard: int) -> dict:
    shards = build(str(root / kind), kind, total, per_shard)
    return STEPS[task](Lake(str(root / kind)), shards)


def test_clip_threshold_equals_the_sorted_reference(tmp_path: Path) -> None:
    found = _step(tmp_path, "clip_threshold", "scores", 5_000, 2_000)
    reference = STEPS["clip_threshold_sorted"](
        Lake(str(tmp_path / "scores")), ["scores-00000", "scores-00001", "scores-00002"]
    )
    assert found == reference
    assert 4_800 < found["items"] < 5_000  # 2% of the scores are left unscored


def test_entry_counts_sum_every_generated_match(tmp_path: Path) -> None:
    found = _step(tmp_path, "entry_counts", "matches", 3_000, 1_000)
    lake = Lake(str(tmp_path / "matches"))
    lengths = [
        pc.list_value_length(lake.read_parquet(graph.stage("curation").table(f"matches-{s:05d}"))["entry_ids"])
        for s in range(3)
    ]
    assert found == {"items": 3_000, "matches": sum(int(pc.sum(x).as_py()) for x in lengths)}


def test_diverse_hashes_hold_the_generated_copies(tmp_path: Path) -> None:
    found = _step(tmp_path, "dedup_diverse", "diverse", 4_000, 2_000)
    # 5% near and 1% exact copies of an earlier image: the index finds most of them and invents none
    assert 0.03 * 4_000 < found["items"] - found["kept"] <= 0.06 * 4_000
    assert found["index"]["checked_pairs"] > 0


def test_products_and_dataset_steps_run_on_their_lakes(tmp_path: Path) -> None:
    products = _step(tmp_path, "dedup_products", "products", 200, 100)
    assert products["items"] == 200 and 0 < products["items"] - products["kept"] <= 10  # one in 20 is a copy
    dataset = _step(tmp_path, "dataset", "download", 300, 100)
    assert dataset["items"] == 300 and dataset["bytes"] > 0
