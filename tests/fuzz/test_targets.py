"""Property-based runs of every fuzz target: random bytes, and seeds mutated byte by byte (flips, insertions,
deletions, cuts, repeated spans). Bounded and reproducible in ``make test``; ``make fuzz`` raises the count
(``CLIPFOUNDRY_FUZZ_EXAMPLES``) and lets Hypothesis pick new examples each time."""

from __future__ import annotations

import functools
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz.seeds import SEEDS
from tests.fuzz.targets import TARGETS

EXAMPLES = int(os.environ.get("CLIPFOUNDRY_FUZZ_EXAMPLES", "0"))
FUZZ = settings(
    max_examples=EXAMPLES or 150,
    derandomize=not EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)


@functools.cache
def seeds(name: str) -> list[bytes]:
    return SEEDS[name]()


def _mutate(seed: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    data = bytearray(seed)
    for kind, at, value in edits:
        at = at % (len(data) + 1)
        if kind == 0 and at < len(data):
            data[at] ^= 1 << (value % 8)
        elif kind == 1:
            data[at:at] = bytes([value % 256]) * (1 + value % 9)
        elif kind == 2:
            del data[at : at + 1 + value % 64]
        elif kind == 3:
            del data[at:]
        else:
            data[at:at] = data[at : at + 1 + value % 512]
    return bytes(data)


def inputs(name: str) -> st.SearchStrategy[bytes]:
    edits = st.lists(st.tuples(st.integers(0, 4), st.integers(0, 1 << 20), st.integers(0, 1 << 16)), max_size=6)
    mutated = st.builds(_mutate, st.sampled_from(seeds(name)), edits)
    return st.one_of(mutated, st.binary(max_size=2048))


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_target(name: str) -> None:
    @FUZZ
    @given(data=inputs(name))
    def run(data: bytes) -> None:
        TARGETS[name](data)

    run()


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_every_seed_passes(name: str) -> None:
    """The seeds are valid inputs or hostile ones a parser must already survive: a target fails none of them."""
    for seed in seeds(name):
        TARGETS[name](seed)
