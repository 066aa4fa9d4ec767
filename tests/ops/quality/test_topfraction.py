"""The streaming top-fraction threshold equals DataComp's sort-based rule, whatever the batching."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from ops.quality.topfraction import from_key, order_keys, top_fraction_threshold


def _sorted_rule(values: np.ndarray, fraction: float) -> float:
    ranked = np.sort(values)[::-1]
    return float(ranked[min(int(len(ranked) * fraction), len(ranked) - 1)])


def _batches(values: np.ndarray, sizes: list[int]):
    edges = np.cumsum([0, *sizes])
    return lambda: (values[a:b] for a, b in itertools.pairwise(edges))


def _scores(dtype, n: int, seed: int) -> np.ndarray:
    """CLIP-like scores with one value shared by a fifth of them, negatives, both zeros and the extremes."""
    rng = np.random.default_rng(seed)
    values = rng.normal(0.25, 0.08, n).astype(dtype)
    values[rng.random(n) < 0.2] = dtype(0.27)
    info = np.finfo(dtype)
    values[:40] = np.tile(np.array([0.0, -0.0, -1.5, info.max, info.min], dtype), 8)
    return rng.permutation(values)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("fraction", [1e-6, 0.1, 0.3, 0.5, 0.999, 1.0])
def test_equals_the_sorted_rule(dtype, fraction):
    values = _scores(dtype, 20_011, seed=int(fraction * 1e6))
    value, n = top_fraction_threshold(_batches(values, [1, 7_000, 0, 13_010]), fraction)
    assert n == len(values)
    assert value == _sorted_rule(values, fraction)


def test_ties_small_sets_and_nans():
    assert top_fraction_threshold(_batches(np.array([0.5], np.float32), [1]), 0.3) == (0.5, 1)
    tied = np.array([0.2, 0.2, 0.2, 0.9], np.float32)
    assert top_fraction_threshold(_batches(tied, [2, 2]), 0.5)[0] == pytest.approx(0.2)
    with_nan = np.array([np.nan, 0.1, 0.7, np.nan, 0.4], np.float32)
    assert top_fraction_threshold(_batches(with_nan, [5]), 0.4) == (_sorted_rule(with_nan[~np.isnan(with_nan)], 0.4), 3)


def test_keys_keep_the_order_and_come_back():
    values = np.array([-np.inf, -2.5, -1e-30, -0.0, 0.0, 1e-30, 0.25, 3.0, np.inf], np.float32)
    keys = order_keys(values)
    assert (np.diff(keys.astype(np.float64)) > 0).all()
    assert [from_key(int(k), np.float32) for k in keys] == values.tolist()


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="no score"):
        top_fraction_threshold(lambda: iter([np.zeros(0, np.float32)]), 0.3)
    with pytest.raises(ValueError, match="fraction"):
        top_fraction_threshold(lambda: iter([np.ones(3, np.float32)]), 0.0)
    with pytest.raises(ValueError, match="dtype"):
        top_fraction_threshold(lambda: iter([np.ones(3, np.float32), np.ones(3, np.float64)]), 0.3)
