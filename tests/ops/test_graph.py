"""The declared stage graph: consistent declarations, the derived inputs, levels and waves on the real graph, and
the checks that refuse a bad declaration."""

from __future__ import annotations

import dataclasses

import pytest

from ops import graph
from ops.crawl.framing import ReadTotals
from ops.graph import Stage, _declare
from ops.report import StageReport


def names(stages) -> list[str]:
    return [s.name for s in stages]


def test_every_dependency_is_declared_before_the_stage_that_reads_it():
    order = list(graph.stages())
    for position, stage in enumerate(graph.stages().values()):
        assert stage.name == order[position]
        for dep in stage.deps:
            assert order.index(dep) < position, (stage.name, dep)
            assert stage.name not in graph.ancestors(dep)  # no cycle through it either


def test_flowing_stages_chain_and_each_takes_the_previous_one():
    flowing = [s for s in graph.shard_stages() if not s.annotates]
    assert names(flowing) == ["crawl", "download", "dedup", "curation", "heuristics", "quality", "safety", "recaption"]
    assert graph.last_flowing().name == "recaption"
    assert names(graph.flow("recaption")) == names(flowing)
    assert names(graph.flow("download")) == ["crawl", "download"]
    previous = None
    for stage in graph.shard_stages():
        assert stage.takes == previous, stage.name  # annotating stages too take the flowing stage before them
        if not stage.annotates:
            previous = stage.name
    for stage in graph.stages().values():
        if not stage.per_shard:
            assert stage.takes is None and stage.output, stage.name


def test_per_shard_paths_come_from_the_declaration():
    assert graph.stage("crawl").table("s1") == "crawl/s1.parquet"
    assert graph.stage("image_hashes").report("s1") == "dedup/hashes/s1.report.json"
    assert graph.stage("clip_scores").table("s1") == "quality/clip/s1.parquet"
    assert graph.stage("judge_scores").table("s1") == "quality/judge_scores/s1.parquet"
    assert graph.stage("curation").table("s1") == "curation/s1.parquet"
    homes = [s.home for s in graph.shard_stages()]
    assert len(homes) == len(set(homes))  # no two stages write the same table
    with pytest.raises(ValueError, match="global stage"):
        graph.stage("dataset").table("s1")
    with pytest.raises(KeyError, match="no stage 'dedupe'"):
        graph.stage("dedupe")


def test_every_per_shard_stage_has_a_vocabulary_and_the_books_checks_are_wired():
    for stage in graph.shard_stages():
        assert stage.reasons and "" not in stage.reasons, stage.name
        assert len(set(stage.reasons)) == len(stage.reasons), stage.name
    # the crawl's record and byte books and the download's tar count are checked beside the ledger
    read = ReadTotals(source_bytes=90, bytes_read=90, inflated_bytes=90, record_bytes=80, separator_bytes=10, records=2)
    books = {"source_format": "warc", "records_in": 2, "records_used": 1, "records_failed": 0}
    books |= {"records_ignored": 1, "records_ignored.warcinfo": 1, **read.to_extra()}
    assert graph.stage("crawl").verify(None, "s", StageReport(stage="crawl", shard="s", extra=books)) == []
    books["records_in"] = 3
    assert graph.stage("crawl").verify(None, "s", StageReport(stage="crawl", shard="s", extra=books)) == [
        "records in != used + ignored + failed",
        "3 records counted, 2 read (records and skipped spans)",
    ]
    report = StageReport(stage="download", shard="s", rows_in=3, rows_kept=2, extra={"tar_samples": 1})
    assert graph.stage("download").verify(None, "s", report) == ["tar holds 1 samples, ledger keeps 2"]


def test_levels_and_triggers_on_the_real_graph():
    levels = {name: graph.level(name) for name in graph.stages()}
    assert levels == {
        "crawl": 0,
        "download": 0,
        "image_hashes": 0,
        "dedup_index": 0,
        "dedup": 1,
        "metaclip_metadata": 0,
        "curation": 1,
        "entry_counts": 1,
        "heuristics": 1,
        "bootstrap": 1,
        "clip_scores": 2,
        "clip_score_threshold": 2,
        "judge_scores": 2,
        "judge_score_threshold": 2,
        "quality": 3,
        "safety": 3,
        "recaption": 3,
        "dataset": 3,
        "model": 3,
        "evaluation": 3,
    }
    # an update of a per-shard input behind a global dep reaches the stage through that global step
    assert graph.triggering_deps("dedup") == ((), ("dedup_index",))
    assert graph.triggering_deps("curation") == (("dedup",), ("metaclip_metadata",))
    assert graph.triggering_deps("quality") == ((), ("clip_score_threshold", "judge_score_threshold"))
    assert graph.triggering_deps("recaption") == (("safety",), ("bootstrap",))
    assert graph.triggering_deps("crawl") == ((), ())
    # the bootstrap trains once: what feeds it still triggers the scores directly, it passes no update on
    assert graph.triggering_deps("clip_scores") == (("heuristics",), ("bootstrap",))
    assert graph.ancestors("curation") == {
        "crawl",
        "download",
        "image_hashes",
        "dedup_index",
        "dedup",
        "metaclip_metadata",
    }


def test_waves_run_every_stage_once_after_everything_it_reads():
    waves = graph.waves()
    assert [(scope, names(group)) for scope, group in waves] == [
        ("shard", ["crawl", "download", "image_hashes"]),
        ("global", ["dedup_index", "metaclip_metadata"]),
        ("shard", ["dedup", "curation", "heuristics"]),
        ("global", ["entry_counts", "bootstrap"]),
        ("shard", ["clip_scores", "judge_scores"]),
        ("global", ["clip_score_threshold", "judge_score_threshold"]),
        ("shard", ["quality", "safety", "recaption"]),
        ("global", ["dataset", "model", "evaluation"]),
    ]
    done: set[str] = set()
    for scope, group in waves:
        for stage in group:
            assert stage.scope == scope
            assert set(stage.deps) <= done, stage.name  # earlier waves, or earlier in its own wave
            done.add(stage.name)
    assert done == set(graph.stages())


def test_settings_and_the_generated_table_cover_every_stage():
    settings = list(graph.iter_settings())
    assert len(settings) == len(set(settings))
    assert set(settings) == {c for s in graph.stages().values() for c in s.settings}
    assert all(dataclasses.is_dataclass(c) for c in settings)
    table = graph.markdown_table().splitlines()
    assert len(table) == 2 + len(graph.stages())
    for line, stage in zip(table[2:], graph.stages().values(), strict=True):
        assert line.startswith(f"| `{stage.name}` | ")
        assert stage.description in line
        where = stage.table("<shard>") if stage.per_shard else stage.output
        assert f"`{where}`" in line


def test_a_stage_inserted_into_the_list_becomes_the_next_ones_input():
    def shard(name, **kw):
        return Stage(name, "shard", "g", name, reasons=("x",), **kw)

    before = _declare([shard("a"), shard("b", annotates=True), shard("c")])
    assert [before[n].takes for n in "abc"] == [None, "a", "a"]
    after = _declare([shard("a"), shard("b", annotates=True), shard("new"), shard("c")])
    assert after["new"].takes == "a" and after["c"].takes == "new"
    with_global = _declare([shard("a"), Stage("g", "global", "g", "g", reads=("a",)), shard("c", reads=("g",))])
    assert with_global["c"].takes == "a" and with_global["c"].deps == ("a", "g")


@pytest.mark.parametrize(
    ("stages", "message"),
    [
        ([Stage("a", "shard", "g", "a"), Stage("a", "shard", "g", "a")], "declared twice"),
        ([Stage("a", "shard", "g", "a", reads=("b",)), Stage("b", "shard", "g", "b")], "not declared before it"),
        ([Stage("g", "global", "g", "g"), Stage("a", "shard", "g", "a", takes="g")], "a global stage"),
        ([Stage("a", "shard", "g", "a", takes="nowhere")], "not declared before it"),
    ],
)
def test_bad_declarations_are_refused(stages, message):
    with pytest.raises(ValueError, match=message):
        _declare(stages)
