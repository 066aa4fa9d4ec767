import numpy as np
import pytest

from ops.dedup import hamming
from ops.dedup.hamming import MAX_RADIUS, nearest_within, pairs_within


def _brute(a: np.ndarray, radius: int, b: np.ndarray | None = None) -> set[tuple[int, int]]:
    other = a if b is None else b
    dist = np.bitwise_count(a[:, None] ^ other[None, :])
    i, j = np.nonzero(dist <= radius)
    if b is None:
        keep = i < j
        i, j = i[keep], j[keep]
    return set(zip(i.tolist(), j.tolist(), strict=True))


@pytest.fixture(scope="module")
def codes():
    """Random hashes, noisy copies of them (clusters at every distance) and exact repeats."""
    rng = np.random.default_rng(3)
    base = rng.integers(0, 2**64, 1500, dtype=np.uint64)
    noise = np.zeros(len(base), dtype=np.uint64)
    for _ in range(14):
        noise |= (rng.random(len(base)) < 0.05).astype(np.uint64) << np.uint64(rng.integers(0, 64))
    return np.concatenate([base, base ^ noise, base[:40]])


@pytest.mark.parametrize("radius", [0, 2, 3, 4, 7, 8, 12, MAX_RADIUS])
def test_self_join_equals_brute_force(codes, radius):
    i, j, dist = pairs_within(codes, radius)
    assert set(zip(i.tolist(), j.tolist(), strict=True)) == _brute(codes, radius)
    assert (dist == np.bitwise_count(codes[i] ^ codes[j])).all()


@pytest.mark.parametrize("radius", [0, 5, 10])
def test_cross_join_equals_brute_force(codes, radius):
    a, b = codes[:900], codes[600:]
    i, j, _ = pairs_within(a, radius, b)
    assert set(zip(i.tolist(), j.tolist(), strict=True)) == _brute(a, radius, b)


def test_radius_out_of_range_is_refused(codes):
    with pytest.raises(ValueError):
        pairs_within(codes, MAX_RADIUS + 1)


def test_empty_inputs():
    empty = np.zeros(0, dtype=np.uint64)
    assert all(len(x) == 0 for x in pairs_within(empty, 4))
    assert all(len(x) == 0 for x in pairs_within(np.ones(3, dtype=np.uint64), 4, empty))


def _nearest_brute(q, b, radius, limit, groups, priority, per_group, exclude):
    """The closest ``limit`` groups per query and each group's ``per_group`` closest entries, in output order;
    and which queries had more groups."""
    dist = np.bitwise_count(q[:, None] ^ b[None, :])
    pairs, capped = [], []
    for i in range(len(q)):
        entries: dict[int, list[int]] = {}
        for j in sorted(np.flatnonzero((dist[i] <= radius) & (groups != exclude[i])), key=lambda j: (dist[i, j], j)):
            entries.setdefault(int(groups[j]), []).append(int(j))
        ranked = sorted(entries, key=lambda g: (dist[i, entries[g][0]], priority[g], g))
        capped.append(len(ranked) > limit)
        mine = [(i, j) for g in ranked[:limit] for j in entries[g][:per_group]]
        pairs += sorted(mine, key=lambda p: (dist[p], priority[groups[p[1]]], groups[p[1]], p[1]))
    return pairs, np.array(capped)


@pytest.mark.parametrize(("limit", "per_group"), [(1, 1), (3, 2), (5, 3), (10_000, 10_000)])
def test_nearest_within_equals_brute_force(codes, limit, per_group, monkeypatch):
    """Groups ranked by their closest entry, then priority; the query's own group left out; slices of a few
    candidates at a time (forced here) give the same answer as all at once."""
    rng = np.random.default_rng(5)
    q, b = codes[:700], codes[400:]
    groups = rng.integers(0, 300, len(b))
    priority = rng.permutation(300)
    exclude = rng.integers(0, 300, len(q))
    monkeypatch.setattr(hamming, "_CHUNK", 500)
    i, j, dist, capped = nearest_within(q, 8, b, limit, groups, priority, per_group, exclude)
    expected, expected_capped = _nearest_brute(q, b, 8, limit, groups, priority, per_group, exclude)
    assert list(zip(i.tolist(), j.tolist(), strict=True)) == expected
    assert (dist == np.bitwise_count(q[i] ^ b[j])).all()
    assert (capped == expected_capped).all()
    if limit == 1:
        assert capped.any() and len(i) == len(np.unique(i))


def test_nearest_within_bounds_crowded_hashes():
    """A crowd of near-identical hashes (look-alike images) yields at most ``limit`` pairs per query, not n²."""
    rng = np.random.default_rng(9)
    centre = np.uint64(rng.integers(0, 2**64, dtype=np.uint64))
    crowd = np.array([centre ^ (np.uint64(1) << np.uint64(k % 64)) for k in range(600)], dtype=np.uint64)
    assert len(pairs_within(crowd, 2)[0]) > 600 * 250
    i, _, _, capped = nearest_within(crowd, 2, crowd, 4)
    assert np.bincount(i).max() == 4 and capped.all()


def test_nearest_within_empty_inputs():
    empty = np.zeros(0, dtype=np.uint64)
    assert all(len(x) == 0 for x in nearest_within(empty, 4, np.ones(3, dtype=np.uint64), 2))
    i, _, _, capped = nearest_within(np.ones(3, dtype=np.uint64), 4, empty, 2)
    assert len(i) == 0 and not capped.any() and len(capped) == 3
