"""The exact top-fraction threshold of a stream of scores, in a few passes of mergeable histograms.

DataComp's rule sorts every score and takes the value at ``int(n × fraction)`` from the top. Sorting needs all
scores in one memory (4 GB for a billion float32 scores, and one machine). The same value is found by a radix
select instead: map each float to an unsigned integer of the same order, histogram its top 16 bits, find the
bucket that holds the wanted rank, then histogram the next 16 bits of the scores in that bucket, and so on: two
passes for float32, four for float64. Each pass is a sum of per-batch histograms of 65,536 counts, so batches
(shards) can be histogrammed anywhere, in any order, and the sums merged: a map-reduce with exact, not
approximate, results, and memory of one batch plus the histogram.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

DIGIT_BITS = 16
_BUCKETS = 1 << DIGIT_BITS
_KEYS = {np.dtype(np.float32): np.dtype(np.uint32), np.dtype(np.float64): np.dtype(np.uint64)}


class NoScores(ValueError):
    """The stream held no (non-NaN) score: there is no top fraction to take."""


def order_keys(values: np.ndarray) -> np.ndarray:
    """Unsigned integers in the same order as the (non-NaN) floats: sign bit flipped for positives, all bits
    for negatives (-0.0 lands just below 0.0; they compare equal as floats)."""
    values = np.ascontiguousarray(values)
    unsigned = _KEYS[values.dtype]
    bits = values.view(unsigned)
    sign = unsigned.type(1 << (8 * unsigned.itemsize - 1))
    return np.where(bits & sign, ~bits, bits | sign)


def from_key(key: int, dtype: np.dtype) -> float:
    """The float whose :func:`order_keys` is ``key``."""
    unsigned = _KEYS[np.dtype(dtype)]
    sign = 1 << (8 * unsigned.itemsize - 1)
    bits = key ^ sign if key & sign else ~key & ((sign << 1) - 1)
    return float(np.array([bits], dtype=unsigned).view(dtype)[0])


def digit_histogram(values: np.ndarray, level: int, prefix: int) -> np.ndarray:
    """Counts of the ``level``-th 16-bit digit (from the top) of the keys of ``values`` whose higher digits equal
    ``prefix``; NaNs are left out. The map step: histograms of any batches add up."""
    values = values[~np.isnan(values)]
    keys = order_keys(values)
    width = 8 * keys.dtype.itemsize
    shift = width - DIGIT_BITS * (level + 1)
    if level:
        keys = keys[(keys >> np.array(shift + DIGIT_BITS, keys.dtype)) == prefix]
    digits = (keys >> np.array(shift, keys.dtype)) & np.array(_BUCKETS - 1, keys.dtype)
    return np.bincount(digits.astype(np.int64), minlength=_BUCKETS)


def top_fraction_threshold(batches: Callable[[], Iterable[np.ndarray]], fraction: float) -> tuple[float, int]:
    """``(threshold, n)``: the value DataComp's rule picks among the ``n`` non-NaN scores ``batches()`` yields
    (sorted descending, the one at ``min(int(n × fraction), n - 1)``). ``batches`` is called once per pass and must
    yield the same scores each time, all float32 or all float64."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    dtype: np.dtype | None = None
    prefix = rank = n = 0
    level = 0
    while dtype is None or level < 8 * _KEYS[dtype].itemsize // DIGIT_BITS:
        histogram = np.zeros(_BUCKETS, dtype=np.int64)
        for batch in batches():
            batch = np.asarray(batch)
            if dtype is None:
                dtype = batch.dtype
            elif batch.dtype != dtype:
                raise ValueError(f"scores of one threshold must share a dtype: {dtype} and {batch.dtype}")
            histogram += digit_histogram(batch, level, prefix)
        if level == 0:
            n = int(histogram.sum())
            if not n:
                raise NoScores("no score to take a top fraction of")
            rank = n - 1 - min(int(n * fraction), n - 1)  # ascending rank of the wanted value
        below = np.cumsum(histogram)
        digit = int(np.searchsorted(below, rank, side="right"))
        rank -= int(below[digit - 1]) if digit else 0
        prefix = (prefix << DIGIT_BITS) | digit
        level += 1
    return from_key(prefix, dtype), n
