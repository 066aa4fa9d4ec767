"""The stage shell: what a stage is fed, what it refuses to publish, the order it writes in, the conservation
check read back from the lake, and the helpers global steps use to tell which shards changed.

The shell is exercised with a probe stage declared here, taking the samples the real download kept, so every
rule is tested on a stage whose decisions the test controls, against tables the real ops wrote.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from infra.lake import Lake
from ops import graph
from ops.report import ConservationError, StageReport
from ops.stage import (
    Decisions,
    conservation_problems,
    done_shards,
    entering,
    publish_if_changed,
    run_shard_stage,
    table_digest,
)
from tests.ops.lakes import Pair, ingest, jpeg

PROBE = graph.Stage("probe", "shard", "test", "a stage declared by the test", takes="download", reasons=("too_red",))


@pytest.fixture
def lake(tmp_path) -> tuple[Lake, dict[str, str]]:
    """One shard crawled and downloaded by the real ops: five pairs, one failing download, one without text."""
    lake = Lake(str(tmp_path / "lake"))
    pairs = [Pair(f"p{i}", f"a red bicycle number {i}", jpeg(i)) for i in range(5)]
    pairs += [Pair("fails", "a blue bicycle", None), Pair("untitled", "", jpeg(9))]
    return lake, ingest(lake, "s0", pairs)


def entered(lake: Lake) -> list[str]:
    return entering(lake, PROBE, "s0")["uid"].to_pylist()


def decisions(uids: list[str], drop: dict[str, str] | None = None) -> pa.Table:
    drop = drop or {}
    return pa.table(
        {
            "uid": pa.array(uids, pa.string()),
            "kept": pa.array([u not in drop for u in uids], pa.bool_()),
            "reason": pa.array([drop.get(u, "") for u in uids], pa.string()),
        }
    )


def test_the_stage_is_fed_what_its_declared_input_kept_with_columns_joined(lake):
    lake, uids = lake
    samples = entering(lake, PROBE, "s0", ["text", "lang", "key", "original_width"])
    assert samples["uid"].to_pylist() == [uids[f"p{i}"] for i in range(5)]  # download's kept rows, in order
    assert samples["text"].to_pylist() == [f"a red bicycle number {i}" for i in range(5)]
    assert samples["original_width"].to_pylist() == [40] * 5 and samples["key"].null_count == 0
    with pytest.raises(KeyError, match="unknown sample column 'colour'"):
        entering(lake, PROBE, "s0", ["colour"])
    with pytest.raises(ValueError, match="takes no samples"):
        entering(lake, graph.stage("crawl"), "s0")


def test_a_published_stage_balances_and_writes_its_report_last(lake, monkeypatch):
    lake, uids = lake
    writes: list[str] = []
    for method in ("write_parquet", "write_json"):
        original = getattr(Lake, method)

        def record(self, rel, obj, _original=original):
            writes.append(rel)
            return _original(self, rel, obj)

        monkeypatch.setattr(Lake, method, record)
    published: list[list[str]] = []

    def decide(samples: pa.Table) -> Decisions:
        order = samples["uid"].to_pylist()
        return Decisions(
            decisions(order, {order[1]: "too_red"}),
            extra={"note": "probe"},
            after_publish=lambda: published.append(list(writes)),
        )

    report = run_shard_stage(lake, PROBE, "s0", decide)
    assert writes == [PROBE.table("s0"), PROBE.report("s0")]
    assert published == [writes]  # after the report, so a crash in it cannot unpublish the shard
    assert (report.rows_in, report.rows_kept, dict(report.dropped)) == (5, 4, {"too_red": 1})
    assert report.extra == {"note": "probe"} and report.seconds > 0
    assert StageReport.from_dict(lake.read_json(PROBE.report("s0"))).to_dict() == report.to_dict()
    assert conservation_problems(lake, PROBE, "s0") == []
    assert done_shards(lake, PROBE, ["s1", "s0"]) == ["s0"]
    assert uids["fails"] not in lake.read_parquet(PROBE.table("s0"))["uid"].to_pylist()


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda u: u[:-1], "1 upstream samples missing, 0 unexpected"),
        (lambda u: [*u, "f" * 32], "0 upstream samples missing, 1 unexpected"),
        (lambda u: [*u, u[0]], "0 upstream samples missing, 1 unexpected"),
        (lambda u: u[::-1], "not in the order of the entering samples"),
    ],
    ids=["lost", "invented", "repeated", "reordered"],
)
def test_the_shell_refuses_to_publish_lost_invented_or_reordered_rows(lake, change, problem):
    lake, _ = lake
    with pytest.raises(ConservationError, match=f"probe/s0: refusing to publish: .*{problem}"):
        run_shard_stage(lake, PROBE, "s0", lambda samples: Decisions(decisions(change(samples["uid"].to_pylist()))))
    assert not lake.exists(PROBE.table("s0")) and not lake.exists(PROBE.report("s0"))


@pytest.mark.parametrize(
    ("drop", "problem"),
    [
        ("too_blue", r"reasons outside the vocabulary: \['too_blue'\]"),
        ("", "1 dropped rows have no reason"),
    ],
)
def test_the_shell_refuses_reasons_outside_the_vocabulary(lake, drop, problem):
    lake, _ = lake

    def decide(samples: pa.Table) -> Decisions:
        table = decisions(samples["uid"].to_pylist())
        return Decisions(
            table.set_column(1, "kept", pa.array([False] + [True] * (table.num_rows - 1))).set_column(
                2, "reason", pa.array([drop] + [""] * (table.num_rows - 1))
            )
        )

    with pytest.raises(ConservationError, match=problem):
        run_shard_stage(lake, PROBE, "s0", decide)
    assert not lake.exists(PROBE.table("s0"))


def test_conservation_catches_a_table_edited_after_publication(lake):
    lake, _ = lake
    assert conservation_problems(lake, PROBE, "s0") == [f"{PROBE.report('s0')} is missing: the stage did not finish"]
    run_shard_stage(lake, PROBE, "s0", lambda s: Decisions(decisions(s["uid"].to_pylist())))
    table = lake.read_parquet(PROBE.table("s0"))
    lake.write_parquet(PROBE.table("s0"), table.slice(1))  # a sample removed by hand
    assert any("upstream samples missing" in p for p in conservation_problems(lake, PROBE, "s0"))
    flipped = table.set_column(1, "kept", pc.invert(table["kept"]))  # kept rows turned into drops without reason
    lake.write_parquet(PROBE.table("s0"), flipped)
    problems = conservation_problems(lake, PROBE, "s0")
    assert "5 dropped rows have no reason" in problems and "table keeps 0, report says 5" in problems
    lake.write_parquet(PROBE.table("s0"), table)
    assert conservation_problems(lake, PROBE, "s0") == []


def test_conservation_runs_the_stages_own_rules(lake):
    lake, _ = lake
    for stage in ("crawl", "download"):
        assert conservation_problems(lake, graph.stage(stage), "s0") == []
    report = lake.read_json(graph.stage("download").report("s0"))
    report["extra"]["tar_samples"] -= 1  # the report claims a tar that does not match the ledger
    lake.write_json(graph.stage("download").report("s0"), report)
    assert conservation_problems(lake, graph.stage("download"), "s0") == ["tar holds 4 samples, ledger keeps 5"]
    verified = graph.Stage(**{**PROBE.__dict__, "verify": lambda _lake, shard, r: [f"{shard}: {r.rows_in} seen"]})
    run_shard_stage(lake, verified, "s0", lambda s: Decisions(decisions(s["uid"].to_pylist())))
    assert conservation_problems(lake, verified, "s0") == ["s0: 5 seen"]


def test_a_stage_reading_a_source_file_is_fed_nothing(lake):
    lake, _ = lake
    source = graph.Stage("listing", "shard", "test", "a first stage", reasons=("x",))
    seen = []

    def decide(samples):
        seen.append(samples)
        return Decisions(decisions(["a", "b"], {"b": "x"}))

    report = run_shard_stage(lake, source, "s0", decide)
    assert seen == [None] and report.rows_in == 2 and conservation_problems(lake, source, "s0") == []


def test_table_digest_reads_content_not_chunking():
    table = pa.table({"uid": ["a", "b", "c", "d"], "score": [0.1, 0.2, 0.3, 0.4]})
    chunked = pa.Table.from_batches(table.to_batches(max_chunksize=1))
    assert chunked.column("uid").num_chunks == 4
    assert table_digest(chunked) == table_digest(table)
    assert table_digest(table.set_column(1, "score", pa.array([0.1, 0.2, 0.3, 0.5]))) != table_digest(table)
    assert table_digest(table.slice(0, 3)) != table_digest(table)


def test_publish_if_changed_writes_only_new_content(tmp_path):
    lake = Lake(str(tmp_path))
    table = pa.table({"uid": ["a", "b", "c"], "kept": [True, False, True]})
    assert publish_if_changed(lake, "x/s0.parquet", table)
    stamp = lake.fs.info(lake.path("x/s0.parquet"))["mtime"]
    chunked = pa.Table.from_batches(table.to_batches(max_chunksize=2))
    assert not publish_if_changed(lake, "x/s0.parquet", chunked)  # the same rows, chunked otherwise
    assert lake.fs.info(lake.path("x/s0.parquet"))["mtime"] == stamp
    changed = table.set_column(1, "kept", pa.array([True, True, True]))
    assert publish_if_changed(lake, "x/s0.parquet", changed)
    assert lake.read_parquet("x/s0.parquet").equals(changed)
    retyped = changed.cast(pa.schema([("uid", pa.large_string()), ("kept", pa.bool_())]))
    assert publish_if_changed(lake, "x/s0.parquet", retyped)  # another schema is another file
