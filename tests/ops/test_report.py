import pytest

from ops.report import ConservationError, StageReport


def test_count_and_metrics_keep_books():
    r = StageReport(stage="s", shard="a")
    r.count([True, False, False, True], ["", "x", "y", "ignored"])
    r.check()
    assert (r.rows_in, r.rows_kept, r.rows_dropped) == (4, 2, 2)
    m = r.metrics()
    assert m["dropped.x"] == 1 and m["dropped.y"] == 1 and m["rows_in"] == 4


def test_check_refuses_unbalanced_and_reasonless_drops():
    r = StageReport(stage="s", shard="a", rows_in=3, rows_kept=1)
    r.dropped["x"] = 1
    with pytest.raises(ConservationError, match="3 in != 1 kept"):
        r.check()
    r = StageReport(stage="s", shard="a")
    r.count([False], [""])
    with pytest.raises(ConservationError, match="without reason"):
        r.check()


def test_roundtrip_dict():
    r = StageReport(stage="s", shard="a", extra={"records_in": 3})
    r.count([True, False], ["", "z"])
    again = StageReport.from_dict(r.to_dict())
    assert again.to_dict() == r.to_dict()
