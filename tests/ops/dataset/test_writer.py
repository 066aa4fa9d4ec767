"""The dataset stage on a lake built by the real ops: the manifest's ledgers, the survivors of every stage,
MetaCLIP balancing decided at dataset time from the stored matches and the global counts, online curation, the
per-shard decisions tables, ``latest.json``, content-derived versions and bounded memory."""

import json
import tracemalloc
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pytest

from ops import graph
from ops.curation.balancing import draw_reference, p_keep_reference, threshold_for_tail_fraction
from ops.curation.config import BalanceConfig
from ops.curation.stage import load_entry_counts
from ops.dataset import DatasetConfig, decisions_path, publish_dataset, write_dataset
from ops.dataset.writer import LATEST
from ops.tarscan import CorruptTar, iter_samples
from ops.vlm import VlmConfig, load_backend
from tests.ops.dataset.lakes import ENTRIES, QUALITY, build_lake, pairs_for, shard_names
from tests.ops.lakes import Settings, ingest, rewrite_tar, run
from tests.ops.tar_damage import KINDS, damaged

SHARDS = shard_names(2)
CHAIN = ["crawl", "download", "dedup", "curation", "heuristics", "quality", "safety", "recaption"]


def _ledger_counts(lake, stage, shards=SHARDS):
    rows = kept = 0
    dropped = Counter()
    for shard in shards:
        t = lake.read_parquet(graph.stage(stage).table(shard))
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


def _kept(lake, stage, shards=SHARDS) -> list[str]:
    return [
        uid
        for shard in shards
        for uid in lake.read_parquet(graph.stage(stage).table(shard)).filter(pc.field("kept"))["uid"].to_pylist()
    ]


def _expected_p_keep(lake, t: float) -> dict[str, float]:
    """MetaCLIP's formula, written out with the reference implementation over the stored matches."""
    counts, _ = load_entry_counts(lake)
    out = {}
    for shard in SHARDS:
        table = lake.read_parquet(graph.stage("curation").table(shard))
        for uid, ids in zip(table["uid"].to_pylist(), table["entry_ids"].to_pylist(), strict=True):
            out[uid] = float(p_keep_reference(np.array([0, len(ids)]), np.array(ids, np.int64), counts, t)[0])
    return out


@pytest.fixture(scope="module")
def captioned(tmp_path_factory, tiny_llava: Path):
    """The lake, recaptioned by a tiny random LLaVA through the production loader."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        captioner = load_backend(VlmConfig(model=str(tiny_llava), name="tiny-llava"))
    return build_lake(tmp_path_factory.mktemp("captioned") / "lake", captioner=captioner)


def test_manifest_counts_equal_ledgers_and_samples_are_the_survivors(captioned):
    lake = captioned
    result = write_dataset(lake, SHARDS, DatasetConfig(samples_per_shard=7))
    m = lake.read_json(result.manifest_path)
    assert list(result.manifest["stages"]) == [*CHAIN, "balance"]  # pipeline order (the JSON sorts its keys)
    for stage in CHAIN:
        assert m["stages"][stage] == _ledger_counts(lake, stage)
    assert {"no_text", "http_client_error", "exact_duplicate", "no_match", "caption_too_short", "pii_email"} <= {
        reason for stage in CHAIN for reason in m["stages"][stage]["dropped"]
    }  # the lake drops samples at every stage that decides
    survivors = set(_kept(lake, "recaption"))
    samples = _read_all(lake, result)
    assert set(samples) == survivors
    assert m["samples"] == len(survivors) == sum(s["samples"] for s in m["shards"])
    assert all(s["samples"] == 7 for s in m["shards"][:-1])
    assert m["dataset"] == {"rows_in": len(survivors), "rows_kept": len(survivors), "dropped": {}}
    assert m["settings"]["through"] == "recaption" and m["settings"]["balance"] is None
    synthetic = {}
    for shard in SHARDS:
        table = lake.read_parquet(graph.stage("recaption").table(shard))
        synthetic |= dict(zip(table["uid"].to_pylist(), table["synthetic_text"].to_pylist(), strict=True))
    for uid, files in samples.items():
        meta = json.loads(files["json"])
        assert meta["uid"] == uid and meta["source_shard"] in SHARDS and meta["p_keep"] is None
        assert files["txt"].decode().startswith("a ") and files["jpg"][:2] == b"\xff\xd8"
        assert files.get("syn.txt", b"").decode() == (synthetic[uid] or "")  # the captioner's text, if any
    assert any("syn.txt" in files for files in samples.values())


def test_balancing_at_dataset_time_follows_metaclip_over_the_global_counts(captioned):
    lake = captioned
    config = BalanceConfig(t=6, seed=3)
    result = publish_dataset(lake, SHARDS, DatasetConfig(samples_per_shard=10), config)
    expected = _expected_p_keep(lake, 6)
    counts, entries = load_entry_counts(lake)
    assert entries[0] == "red" and counts[0] > 6 > counts[1:].max()  # red is the head; the rest is tail
    written = _read_all(lake, result)
    decided = Counter()
    for shard in SHARDS:
        table = lake.read_parquet(decisions_path(result.version, shard))
        assert table.column_names == ["uid", "p_keep", "kept", "reason"]
        assert table["uid"].to_pylist() == _kept(lake, "recaption", [shard])  # every sample the chain kept
        for row in table.to_pylist():
            assert row["p_keep"] == expected[row["uid"]]
            assert row["kept"] == (draw_reference(row["uid"], 3) < row["p_keep"])
            assert row["reason"] == ("" if row["kept"] else "balanced_out")
            assert row["kept"] == (row["uid"] in written)
            decided[row["kept"]] += 1
        assert decided[False] > 0 and decided[True] > 0
    for uid, files in written.items():
        assert json.loads(files["json"])["p_keep"] == expected[uid]
    assert result.manifest["stages"]["balance"]["dropped"] == {"balanced_out": decided[False]}
    assert result.manifest["samples"] == decided[True] and result.report.extra["t"] == 6
    assert lake.read_json(LATEST) == {"version": result.version, "manifest": result.manifest_path}

    tail = BalanceConfig(tail_fraction=0.5, seed=3)
    by_fraction = write_dataset(lake, SHARDS, DatasetConfig(samples_per_shard=10), tail)
    assert by_fraction.report.extra["t"] == threshold_for_tail_fraction(counts, 0.5)
    assert by_fraction.version != result.version
    assert lake.read_json(LATEST)["version"] == result.version  # only the dataset stage moves latest.json


def test_online_curation_keeps_every_sample_with_a_chance(captioned):
    lake = captioned
    balance = BalanceConfig(t=6)
    offline = write_dataset(lake, SHARDS, DatasetConfig(), balance)
    online = write_dataset(lake, SHARDS, DatasetConfig(online_curation=True), balance)
    p = _expected_p_keep(lake, 6)
    chain = _kept(lake, "recaption")
    assert online.manifest["samples"] == sum(p[u] > 0 for u in chain) > offline.manifest["samples"]
    assert online.manifest["expected_samples_per_epoch"] == pytest.approx(sum(p[u] for u in chain), abs=1e-3)
    assert online.version != offline.version


def test_balance_is_applied_only_where_curation_is_in_the_chain(captioned):
    raw = write_dataset(captioned, SHARDS, DatasetConfig(through="download"), BalanceConfig(t=1))
    assert raw.manifest["settings"]["balance"] is None and raw.manifest["stages"]["balance"]["dropped"] == {}
    assert list(raw.manifest["stages"]) == ["crawl", "download", "balance"]
    assert raw.manifest["samples"] == len(_kept(captioned, "download"))


def test_no_shard_table_goes_stale_when_a_shard_is_added(tmp_path):
    """Entry counts change with every shard; p_keep is computed from them when the dataset is written, so the
    old shards' curation tables are never rewritten and still give current decisions."""
    lake = build_lake(tmp_path / "lake")
    before = {s: lake.read_bytes(graph.stage("curation").table(s)) for s in SHARDS}
    first = write_dataset(lake, SHARDS, DatasetConfig(), BalanceConfig(t=6))
    ingest(lake, "shard-002", pairs_for(2, 40, np.random.default_rng(7)))
    grown = [*SHARDS, "shard-002"]
    run(lake, grown, "recaption", Settings(entries=ENTRIES, quality=QUALITY))
    assert {s: lake.read_bytes(graph.stage("curation").table(s)) for s in SHARDS} == before
    second = write_dataset(lake, grown, DatasetConfig(), BalanceConfig(t=6))
    old = lake.read_parquet(decisions_path(first.version, "shard-000")).to_pylist()
    new = lake.read_parquet(decisions_path(second.version, "shard-000")).to_pylist()
    assert [r["uid"] for r in old] == [r["uid"] for r in new]
    red = next(r["uid"] for r in old if 0 < r["p_keep"] < 1)
    assert {r["uid"]: r["p_keep"] for r in new}[red] < {r["uid"]: r["p_keep"] for r in old}[red]  # more red
    reordered = write_dataset(lake, list(reversed(grown)), DatasetConfig(), BalanceConfig(t=6))
    assert reordered.version == second.version  # decisions do not depend on shard order


def test_same_inputs_same_version_and_nothing_rewritten(tmp_path):
    lake = build_lake(tmp_path / "lake")
    config = DatasetConfig(samples_per_shard=10)
    first = write_dataset(lake, SHARDS, config)
    stamp = {p: lake.fs.info(lake.path(p))["mtime"] for p in lake.list(f"dataset/{first.version}")}
    second = write_dataset(lake, list(reversed(SHARDS)), config)
    assert second.version == first.version and first.written and not second.written
    assert {p: lake.fs.info(lake.path(p))["mtime"] for p in lake.list(f"dataset/{first.version}")} == stamp
    other = write_dataset(lake, SHARDS, DatasetConfig(samples_per_shard=9))
    assert other.version != first.version


def test_rebuilt_lake_gives_identical_bytes(tmp_path):
    config = DatasetConfig(samples_per_shard=10)
    a, b = build_lake(tmp_path / "a"), build_lake(tmp_path / "b")
    ra, rb = write_dataset(a, SHARDS, config, BalanceConfig(t=6)), write_dataset(b, SHARDS, config, BalanceConfig(t=6))
    assert ra.version == rb.version
    assert [s["sha256"] for s in ra.manifest["shards"]] == [s["sha256"] for s in rb.manifest["shards"]]


def test_missing_images_are_counted_and_missing_stages_named(tmp_path):
    lake = build_lake(tmp_path / "lake", through="download")
    # the ledger keeps a sample whose image is no longer in its tar entry: dropped with a reason, not lost silently
    ledger = lake.read_parquet(graph.stage("download").table("shard-001"))
    lost = ledger.filter(pc.field("kept"))["uid"][0].as_py()
    crawl = lake.read_parquet(graph.stage("crawl").table("shard-001"))
    name = next(f"s1-{i}" for i, u in enumerate(crawl["uid"].to_pylist()) if u == lost)
    rewrite_tar(lake, "shard-001", {name: lost}, remove_image=[name])
    r = write_dataset(lake, SHARDS, DatasetConfig(through="download"))
    assert r.report.dropped == {"missing_image": 1}
    assert r.report.rows_in == r.report.rows_kept + 1 == r.manifest["stages"]["download"]["rows_kept"]
    decisions = lake.read_parquet(decisions_path(r.version, "shard-001")).to_pylist()
    assert [d["reason"] for d in decisions if d["uid"] == lost] == ["missing_image"]
    with pytest.raises(FileNotFoundError, match=r"dedup/shard-000\.parquet"):
        write_dataset(lake, SHARDS, DatasetConfig())  # everything every stage kept: dedup has not run


def test_memory_does_not_grow_with_dataset_size(tmp_path):
    def peak(n_shards):
        lake = build_lake(tmp_path / f"lake{n_shards}", n_shards=n_shards, per_shard=300, through="download")
        tracemalloc.start()
        r = write_dataset(lake, shard_names(n_shards), DatasetConfig(samples_per_shard=100, through="download"))
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
