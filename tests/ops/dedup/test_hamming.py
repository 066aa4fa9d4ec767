import numpy as np
import pytest

from ops.dedup.hamming import MAX_RADIUS, pairs_within


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
