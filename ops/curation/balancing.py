"""MetaCLIP balancing: keep a text with probability 1 − Π(1 − min(1, t / count_e)) over its matched entries.

Entries matched fewer than ``t`` times keep all their texts (the tail); a head entry keeps about ``t`` of its
``count_e`` texts, so the curated set flattens the entry distribution. The keep decision compares ``p_keep``
with a uniform draw that is a pure function of (seed, uid): no RNG state, so a shard re-run, run alone or in any
order gives the same answer, and a uid's fate does not depend on which shard it landed in. ``p_keep`` is stored
so a data loader can redraw each epoch (MetaCLIP's "online curation").

Each formula has a short reference implementation beside the production one; tests hold them equal.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_MASK = (1 << 64) - 1
_HEX_UID = re.compile(r"^[0-9a-f]{16}")


def _entry_factor(counts: np.ndarray, t: float) -> np.ndarray:
    """1 − p_e per entry; an entry never counted (count 0) has p_e = 1."""
    counts = np.asarray(counts, np.float64)
    with np.errstate(divide="ignore"):
        return 1.0 - np.minimum(1.0, t / counts)


def p_keep_reference(offsets: np.ndarray, entry_ids: np.ndarray, counts: np.ndarray, t: float) -> np.ndarray:
    """The straightforward numpy formula: one factor per (sample, entry) pair, multiplied into its sample."""
    n = len(offsets) - 1
    sample = np.repeat(np.arange(n), np.diff(offsets))
    with np.errstate(divide="ignore"):
        factor = 1.0 - np.minimum(1.0, t / np.asarray(counts, np.float64)[entry_ids])
    product = np.ones(n)
    np.multiply.at(product, sample, factor)
    return np.where(np.diff(offsets) > 0, 1.0 - product, 0.0)


def p_keep(offsets: np.ndarray, entry_ids: np.ndarray, counts: np.ndarray, t: float) -> np.ndarray:
    """p_keep per sample from its entry ids (CSR ``offsets``/``entry_ids``); 0 for a sample with no entry.

    Factors are computed once per entry and multiplied per sample with ``multiply.reduceat``, in the same order
    as the reference, so the results are bit-identical.
    """
    offsets = np.asarray(offsets, np.int64)
    lengths = np.diff(offsets)
    out = np.zeros(len(lengths))
    matched = np.flatnonzero(lengths > 0)
    if matched.size:
        factors = _entry_factor(counts, t)[entry_ids]
        out[matched] = 1.0 - np.multiply.reduceat(factors, offsets[matched])
    return out


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def uid_key(uid: str) -> int:
    """64 bits standing for a uid: its first 16 hex digits (project uids are SHA-256 hex), else its blake2b."""
    if _HEX_UID.match(uid):
        return int(uid[:16], 16)
    return int.from_bytes(hashlib.blake2b(uid.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big")


def draw_reference(uid: str, seed: int) -> float:
    """The uniform draw in [0, 1) of one uid: splitmix64 of the uid key mixed with the seed, top 53 bits."""
    return (_splitmix64(uid_key(uid) ^ _splitmix64(seed & _MASK)) >> 11) / float(1 << 53)


def _splitmix64_np(x: np.ndarray) -> np.ndarray:
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


_HEX_VALUE = np.zeros(256, np.uint64)
_HEX_VALUE[np.frombuffer(b"0123456789abcdef", np.uint8)] = np.arange(16, dtype=np.uint64)


def draws(uids: Sequence[str] | pa.Array | np.ndarray, seed: int) -> np.ndarray:
    """:func:`draw_reference` for a whole column: hex uids are parsed from Arrow's buffer, others hashed one by one."""
    column = pa.array(uids, pa.string()) if not isinstance(uids, pa.Array) else uids.cast(pa.string())
    n = len(column)
    keys = np.zeros(n, np.uint64)
    hexed = pc.fill_null(pc.match_substring_regex(column, _HEX_UID.pattern), False).to_numpy(zero_copy_only=False)
    if hexed.any():
        heads = pc.utf8_slice_codeunits(column.filter(pa.array(hexed)), 0, 16)
        start = np.frombuffer(heads.buffers()[1], np.int32, count=1, offset=4 * heads.offset)[0]
        digits = np.frombuffer(heads.buffers()[2], np.uint8, count=16 * len(heads), offset=start).reshape(-1, 16)
        value = np.zeros(len(heads), np.uint64)
        for i in range(16):
            value = (value << np.uint64(4)) | _HEX_VALUE[digits[:, i]]
        keys[hexed] = value
    for i in np.flatnonzero(~hexed):
        keys[i] = uid_key(column[i].as_py() or "")
    mixed = _splitmix64_np(keys ^ np.uint64(_splitmix64(seed & _MASK)))
    return (mixed >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def tail_fraction(counts: np.ndarray, t: float) -> float:
    """Share of all matches that fall in entries matched fewer than ``t`` times (MetaCLIP 2's tail)."""
    counts = np.asarray(counts, np.int64)
    total = counts.sum()
    return float(counts[counts < t].sum() / total) if total else 0.0


def threshold_for_tail_fraction(counts: np.ndarray, target: float) -> int:
    """The smallest integer t whose tail fraction reaches ``target``: MetaCLIP 2 picks each language's t this way.

    The tail fraction is a step function of t, so "equal" means: tail(t) >= target > tail(t - 1).
    """
    if not 0.0 < target <= 1.0:
        raise ValueError(f"tail fraction must be in (0, 1], got {target}")
    values = np.sort(np.asarray(counts, np.int64)[np.asarray(counts) > 0])
    if not values.size:
        raise ValueError("no entry was matched: cannot derive t from a tail fraction")
    shares = np.cumsum(values) / values.sum()
    k = int(np.searchsorted(shares, target, side="left"))
    return int(values[min(k, len(values) - 1)]) + 1


def expected_kept_per_entry(offsets: np.ndarray, entry_ids: np.ndarray, p: np.ndarray, n_entries: int) -> np.ndarray:
    """Expected kept texts per entry, Σ p_keep over the texts matching it (≥ min(count, t))."""
    weights = np.repeat(np.asarray(p, np.float64), np.diff(offsets))
    return np.bincount(entry_ids, weights=weights, minlength=n_entries)


def head_tail(counts: np.ndarray, t: float, kept: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Entry counts by rank before and after balancing, for the head/tail plot.

    ``after`` is ``kept`` when given (expected kept texts per entry, summed over shards), else MetaCLIP's ideal
    ``min(count, t)``. Both are ordered by the before-count, largest first, and cover matched entries only.
    """
    counts = np.asarray(counts, np.float64)
    order = np.argsort(-counts, kind="stable")
    order = order[counts[order] > 0]
    after = np.minimum(counts, t) if kept is None else np.asarray(kept, np.float64)
    return {"rank": np.arange(1, len(order) + 1), "entry_id": order, "before": counts[order], "after": after[order]}


def summary(counts: np.ndarray, entries: Sequence[str], t: float, top: int = 20) -> dict[str, Any]:
    """What a user wants to see about the counts: the head, how many entries t caps, the tail share."""
    counts = np.asarray(counts, np.int64)
    order = np.argsort(-counts, kind="stable")[:top]
    return {
        "t": float(t),
        "entries": len(counts),
        "entries_matched": int((counts > 0).sum()),
        "entries_above_t": int((counts > t).sum()),
        "matches": int(counts.sum()),
        "tail_fraction": tail_fraction(counts, t),
        "top_entries": [{"entry": entries[i], "count": int(counts[i])} for i in order if counts[i] > 0],
    }
