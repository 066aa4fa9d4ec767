"""Pixels for quality and recaption come from the download tar: an absent image is a per-sample outcome, a damaged
tar fails the step (it must not make every later sample look undecodable)."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.lake import Lake
from ops import graph
from ops.quality.images import iter_images
from ops.tarscan import CorruptTar
from tests.ops.quality.shards import Sample, write_shard
from tests.ops.tar_damage import KINDS, damaged

SAMPLES = [Sample(f"u{i:02d}", image="missing" if i == 3 else "ok") for i in range(12)]


def _shard(lake: Lake) -> tuple[dict[str, str], dict[str, str]]:
    """The shard ``s`` of :data:`SAMPLES`, downloaded; (name -> uid, tar key -> uid of every sample kept)."""
    uids = write_shard(lake, "s", SAMPLES, through="download")
    ledger = lake.read_parquet(graph.stage("download").table("s"), ["uid", "key", "kept"]).to_pylist()
    assert all(row["kept"] for row in ledger)
    return uids, {row["key"]: row["uid"] for row in ledger}


def test_an_absent_image_is_none_and_the_rest_decode(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path))
    uids, wanted = _shard(lake)
    got = dict(iter_images(lake, "s", wanted))
    assert got.keys() == set(uids.values())
    assert [uid for uid, image in got.items() if image is None] == [uids["u03"]]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("where", [5, 2_002, 90_001])
def test_a_damaged_tar_raises_instead_of_reading_as_absent_images(tmp_path: Path, kind: str, where: int) -> None:
    lake = Lake(str(tmp_path))
    uids, wanted = _shard(lake)
    lake.write_bytes("download/s.tar", damaged(lake.read_bytes("download/s.tar"), kind, where))
    with_image = {key: uid for key, uid in wanted.items() if uid != uids["u03"]}
    with pytest.raises(CorruptTar, match=r"download/s\.tar"):
        list(iter_images(lake, "s", with_image))
