import numpy as np
import pyarrow as pa
import pytest

from ops.curation.balancing import (
    draw_reference,
    draws,
    expected_kept_per_entry,
    head_tail,
    p_keep,
    p_keep_reference,
    summary,
    tail_fraction,
    threshold_for_tail_fraction,
)
from ops.uid import pair_uid


def csr(lists):
    offsets = np.concatenate([[0], np.cumsum([len(x) for x in lists])]).astype(np.int64)
    values = np.array([e for x in lists for e in x], np.int64)
    return offsets, values


def test_p_keep_is_bit_identical_to_reference_and_to_the_formula():
    rng = np.random.default_rng(1)
    lists = [list(rng.integers(0, 50, rng.integers(0, 6))) for _ in range(5000)]
    offsets, values = csr(lists)
    counts = np.bincount(values, minlength=60)  # entries 50..59 never matched: count 0
    for t in (1.0, 7.5, 100.0, 1e9):
        ours = p_keep(offsets, values, counts, t)
        assert np.array_equal(ours, p_keep_reference(offsets, values, counts, t))
        for i in (0, 1, 2, 4999):
            q = 1.0
            for e in lists[i]:
                q *= 1.0 - min(1.0, t / counts[e])
            assert ours[i] == (1.0 - q if lists[i] else 0.0)


def test_draws_match_reference_for_project_and_foreign_uids():
    uids = [pair_uid(f"http://x/{i}", "t") for i in range(300)] + ["u1", "", "ÄÖ", "ABCDEF0123456789abc", "0" * 15]
    for seed in (0, 1, 2**70 + 3):
        got = draws(uids, seed)
        assert got.tolist() == [draw_reference(u, seed) for u in uids]
        assert ((got >= 0) & (got < 1)).all()
    assert not np.array_equal(draws(uids, 0), draws(uids, 1))
    assert draws(pa.array(uids).slice(7), 0).tolist() == draws(uids[7:], 0).tolist()


def test_draws_are_uniform():
    u = draws([pair_uid("http://x", str(i)) for i in range(20000)], seed=7)
    # mean of U(0,1) over n=20000 has sd 0.0020; deciles each hold 2000 ± 42 (sd): allow 5 sd.
    assert abs(u.mean() - 0.5) < 0.01
    assert np.abs(np.histogram(u, bins=10, range=(0, 1))[0] - 2000).max() < 5 * 42


def test_kept_counts_per_entry_follow_the_caps():
    """Single-entry samples: entry e keeps Binomial(count_e, min(1, t/count_e)) texts, expected min(count_e, t)."""
    counts = np.array([50_000, 20_000, 5_000, 2_000, 1_000, 300, 10])
    t = 2_000.0
    lists = [[e] for e, c in enumerate(counts) for _ in range(c)]
    offsets, values = csr(lists)
    uids = [pair_uid("http://x", str(i)) for i in range(len(lists))]
    kept = draws(uids, seed=3) < p_keep(offsets, values, counts, t)
    per_entry = np.bincount(values[kept], minlength=len(counts))
    p = np.minimum(1.0, t / counts)
    sd = np.sqrt(counts * p * (1 - p))
    # Tolerance: 5 binomial standard deviations (plus 1 for the p = 1 entries, which must be exact).
    assert (np.abs(per_entry - np.minimum(counts, t)) <= 5 * sd + 1e-9).all()
    assert (per_entry[counts <= t] == counts[counts <= t]).all()


def test_multi_entry_kept_counts_match_expectation():
    rng = np.random.default_rng(5)
    lists = [list(set((rng.zipf(1.5, rng.integers(1, 4)) - 1) % 200)) for _ in range(40_000)]
    offsets, values = csr(lists)
    counts = np.bincount(values, minlength=200)
    t = 500.0
    p = p_keep(offsets, values, counts, t)
    kept = draws([pair_uid("u", str(i)) for i in range(len(lists))], seed=11) < p
    kept_per_entry = np.bincount(values, weights=np.repeat(kept, np.diff(offsets)).astype(float), minlength=200)
    expected = expected_kept_per_entry(offsets, values, p, 200)
    variance = np.bincount(values, weights=np.repeat(p * (1 - p), np.diff(offsets)), minlength=200)
    assert (expected >= np.minimum(counts, t) - 1e-6).all()
    assert (np.abs(kept_per_entry - expected) <= 5 * np.sqrt(variance) + 1e-6).all()


def test_threshold_from_tail_fraction_hits_target():
    rng = np.random.default_rng(2)
    counts = np.bincount((rng.zipf(1.2, 200_000) - 1) % 20_000, minlength=20_000)
    for target in (0.05, 0.3, 0.5, 0.9, 1.0):
        t = threshold_for_tail_fraction(counts, target)
        assert tail_fraction(counts, t) >= target > tail_fraction(counts, t - 1)
    with pytest.raises(ValueError):
        threshold_for_tail_fraction(counts, 0.0)


def test_plot_and_ui_data():
    counts = np.array([5, 0, 100, 30])
    curve = head_tail(counts, t=20)
    assert curve["entry_id"].tolist() == [2, 3, 0]
    assert curve["before"].tolist() == [100, 30, 5] and curve["after"].tolist() == [20, 20, 5]
    info = summary(counts, ["a", "b", "c", "d"], t=20, top=2)
    assert info["entries_above_t"] == 2 and info["entries_matched"] == 3
    assert info["top_entries"] == [{"entry": "c", "count": 100}, {"entry": "d", "count": 30}]
    assert info["tail_fraction"] == pytest.approx(5 / 135)
