"""Every input a fuzzer ever broke a target with, kept under ``tests/fuzz/crashers/<target>/``, replayed: the bug it
found stays fixed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fuzz.targets import TARGETS

CRASHERS = Path(__file__).parent / "crashers"
CASES = sorted(
    (target.name, path) for target in CRASHERS.iterdir() if target.is_dir() for path in sorted(target.iterdir())
)


@pytest.mark.parametrize(("name", "path"), CASES, ids=[f"{n}/{p.name}" for n, p in CASES])
def test_crasher_stays_fixed(name: str, path: Path) -> None:
    TARGETS[name](path.read_bytes())


def test_every_crasher_names_a_target() -> None:
    assert CASES, "no crasher kept: the replay would test nothing"
    assert {name for name, _ in CASES} <= set(TARGETS)
