import pyarrow as pa

from ops.ledger import check_ledger, kept_uids
from ops.report import StageReport


def _table(kept, reasons, uids=None):
    uids = uids or [f"u{i}" for i in range(len(kept))]
    return pa.table({"uid": uids, "kept": kept, "reason": reasons})


def test_balanced_books_have_no_problems():
    t = _table([True, False, False], ["", "a", "b"])
    r = StageReport(stage="s", shard="x")
    r.count([True, False, False], ["", "a", "b"])
    assert check_ledger(t, {"a", "b"}, report=r, expected_uids=["u0", "u1", "u2"]) == []
    assert kept_uids(t) == ["u0"]


def test_every_kind_of_imbalance_is_reported():
    t = _table([True, False, False, None], ["x", "", "zzz", ""])
    r = StageReport(stage="s", shard="x")
    r.count([True, True], ["", ""])
    problems = "\n".join(check_ledger(t, {"a"}, report=r, expected_uids=["u0", "u9"]))
    for needle in [
        "no kept/dropped decision",
        "kept rows carry a drop reason",
        "have no reason",
        "outside the vocabulary",
        "report says 2 in",
        "upstream samples missing",
    ]:
        assert needle in problems
