import json
import tracemalloc
from collections import Counter

import pyarrow.compute as pc
import pytest

from ops.dataset import STAGES, DatasetConfig, MissingStageError, present_stages, write_dataset
from ops.layout import table_path
from ops.tarscan import CorruptTar, iter_samples
from tests.ops.dataset.lakes import build_lake, write_tar
from tests.ops.tar_damage import KINDS, damaged

SHARDS = ["shard-000", "shard-001"]


def _ledger_counts(lake, stage):
    rows = kept = 0
    dropped = Counter()
    for shard in SHARDS:
        t = lake.read_parquet(table_path(stage, shard))
        rows += t.num_rows
        kept += pc.sum(t["kept"]).as_py()
        dropped.update(t.filter(pc.invert(t["kept"]))["reason"].to_pylist())
    return {"rows_in": rows, "rows_kept": kept, "dropped": dict(sorted(dropped.items()))}


def _read_all(lake, result):
    out = {}
    for entry in result.manifest["shards"]:
        with lake.open(f"dataset/{result.version}/{entry['path']}") as f:
            for key, files in iter_samples(f, entry["path"]):
                out[key] = files
    return out


def test_manifest_counts_equal_ledgers_and_samples_are_the_survivors(tmp_path):
    lake = build_lake(tmp_path / "lake")
    stages = present_stages(lake, SHARDS)
    assert stages == STAGES
    result = write_dataset(lake, SHARDS, DatasetConfig(stages=stages, samples_per_shard=7))
    m = lake.read_json(result.manifest_path)
    for stage in stages:
        assert m["stages"][stage] == _ledger_counts(lake, stage)
    survivors = set()
    for shard in SHARDS:
        survivors |= set(lake.read_parquet(table_path("quality", shard)).filter(pc.field("kept"))["uid"].to_pylist())
    samples = _read_all(lake, result)
    assert set(samples) == survivors
    assert m["samples"] == len(survivors) == sum(s["samples"] for s in m["shards"])
    assert all(s["samples"] == 7 for s in m["shards"][:-1])
    assert m["dataset"] == {"rows_in": len(survivors), "rows_kept": len(survivors), "dropped": {}}
    uid, files = next(iter(samples.items()))
    meta = json.loads(files["json"])
    assert meta["uid"] == uid and meta["source_shard"] in SHARDS and meta["p_keep"] in (0.5, 1.0)
    assert files["txt"].decode().startswith("a ") and files["jpg"][:2] == b"\xff\xd8"
    syn = [k for k, f in samples.items() if "syn.txt" in f]
    assert 0 < len(syn) < len(samples)


def test_same_inputs_same_version_and_nothing_rewritten(tmp_path):
    lake = build_lake(tmp_path / "lake")
    config = DatasetConfig(stages=STAGES, samples_per_shard=10)
    first = write_dataset(lake, SHARDS, config)
    stamp = {p: lake.fs.info(lake.path(p))["mtime"] for p in lake.list(f"dataset/{first.version}")}
    second = write_dataset(lake, list(reversed(SHARDS)), config)
    assert second.version == first.version and first.written and not second.written
    assert {p: lake.fs.info(lake.path(p))["mtime"] for p in lake.list(f"dataset/{first.version}")} == stamp
    other = write_dataset(lake, SHARDS, DatasetConfig(stages=STAGES, samples_per_shard=9))
    assert other.version != first.version


def test_rebuilt_lake_gives_identical_bytes(tmp_path):
    config = DatasetConfig(stages=STAGES, samples_per_shard=10)
    a, b = build_lake(tmp_path / "a"), build_lake(tmp_path / "b")
    ra, rb = write_dataset(a, SHARDS, config), write_dataset(b, SHARDS, config)
    assert ra.version == rb.version
    assert [s["sha256"] for s in ra.manifest["shards"]] == [s["sha256"] for s in rb.manifest["shards"]]


def test_online_curation_keeps_every_sample_with_a_chance(tmp_path):
    lake = build_lake(tmp_path / "lake")
    offline = write_dataset(lake, SHARDS, DatasetConfig(stages=STAGES[:4]))
    online = write_dataset(lake, SHARDS, DatasetConfig(stages=STAGES[:4], online_curation=True))
    chance = sum(pc.sum(pc.greater(lake.read_parquet(table_path("curation", s))["p_keep"], 0)).as_py() for s in SHARDS)
    assert online.manifest["samples"] == chance > offline.manifest["samples"]


def test_missing_images_are_counted_and_partial_stages_refused(tmp_path):
    lake = build_lake(tmp_path / "lake", later_stages=False)
    assert present_stages(lake, SHARDS) == ("crawl", "download")
    # the ledger keeps a sample whose image is not in its tar entry: dropped with a reason, not lost silently
    with lake.open("download/shard-001.tar") as f:
        samples = list(iter_samples(f, "shard-001"))
    samples[0][1].pop("jpg")
    write_tar(tmp_path / "rewritten.tar", samples)
    lake.put_file(tmp_path / "rewritten.tar", "download/shard-001.tar")
    r = write_dataset(lake, SHARDS, DatasetConfig())
    assert r.report.dropped == {"missing_image": 1}
    assert r.report.rows_in == r.report.rows_kept + 1 == r.manifest["stages"]["download"]["rows_kept"]
    lake.delete(table_path("download", "shard-001"))
    with pytest.raises(MissingStageError):
        present_stages(lake, SHARDS)


def test_memory_does_not_grow_with_dataset_size(tmp_path):
    def peak(n_shards):
        lake = build_lake(tmp_path / f"lake{n_shards}", n_shards=n_shards, per_shard=300, later_stages=False)
        shards = [f"shard-{s:03d}" for s in range(n_shards)]
        tracemalloc.start()
        r = write_dataset(lake, shards, DatasetConfig(samples_per_shard=100))
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top, r.manifest["samples"]

    small, n_small = peak(2)
    large, n_large = peak(10)
    assert n_large > 4 * n_small
    assert large < 1.5 * small + 200_000


@pytest.mark.parametrize("kind", KINDS)
def test_a_damaged_download_tar_fails_the_dataset_and_publishes_nothing(tmp_path, kind):
    lake = build_lake(tmp_path / "lake")
    lake.write_bytes("download/shard-001.tar", damaged(lake.read_bytes("download/shard-001.tar"), kind, 4_321))
    with pytest.raises(CorruptTar, match=r"download/shard-001\.tar"):
        write_dataset(lake, SHARDS, DatasetConfig())
    assert lake.list("dataset") == []
