"""Sample accounting: every row that enters a stage leaves it kept, or dropped with a reason.

These checks read what a stage actually wrote (not what it says it wrote) and return a list of problems; an
empty list means the books balance. Dagster runs them as blocking asset checks; tests and CLIs call them too.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import pyarrow as pa
import pyarrow.compute as pc

from ops.report import StageReport


def check_ledger(
    table: pa.Table,
    reasons: Iterable[str],
    report: StageReport | None = None,
    expected_uids: Iterable[str] | None = None,
) -> list[str]:
    """Problems in one stage table with ``uid``, ``kept`` and ``reason`` columns."""
    problems: list[str] = []
    for column in ("uid", "kept", "reason"):
        if column not in table.column_names:
            return [f"missing column {column!r}"]
    vocabulary = set(reasons)
    kept = table["kept"].fill_null(False)
    reason = table["reason"].fill_null("")
    if table["kept"].null_count:
        problems.append(f"{table['kept'].null_count} rows with no kept/dropped decision")
    n_kept = pc.sum(kept).as_py() or 0
    kept_with_reason = pc.sum(pc.and_(kept, pc.not_equal(reason, ""))).as_py() or 0
    if kept_with_reason:
        problems.append(f"{kept_with_reason} kept rows carry a drop reason")
    drops = Counter(r for k, r in zip(kept.to_pylist(), reason.to_pylist(), strict=True) if not k)
    if drops.get(""):
        problems.append(f"{drops['']} dropped rows have no reason")
    unknown = sorted(set(drops) - vocabulary - {""})
    if unknown:
        problems.append(f"reasons outside the vocabulary: {unknown}")
    if report is not None:
        if table.num_rows != report.rows_in:
            problems.append(f"table has {table.num_rows} rows, report says {report.rows_in} in")
        if n_kept != report.rows_kept:
            problems.append(f"table keeps {n_kept}, report says {report.rows_kept}")
        if dict(drops) != {k: v for k, v in report.dropped.items() if v}:
            problems.append(f"drops {dict(drops)} != report {dict(report.dropped)}")
        if report.rows_in != report.rows_kept + report.rows_dropped:
            problems.append("report: rows in != kept + dropped")
    if expected_uids is not None:
        expected = Counter(expected_uids)
        actual = Counter(table["uid"].to_pylist())
        if expected != actual:
            lost = sum((expected - actual).values())
            extra = sum((actual - expected).values())
            problems.append(f"{lost} upstream samples missing, {extra} unexpected samples")
    return problems


def kept_uids(table: pa.Table) -> list[str]:
    """The uids a stage passed on downstream."""
    return table.filter(pc.field("kept"))["uid"].to_pylist()
