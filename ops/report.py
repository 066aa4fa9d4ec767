"""The one stats object every stage returns, so any executor (Dagster, a benchmark, a test) reads the same numbers.

A stage takes rows in and lets each leave kept or dropped with a reason from a fixed vocabulary; the report
keeps the counts so the conservation rule (rows in = kept + dropped) can be checked anywhere.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


class ConservationError(ValueError):
    """Raised when a stage's counts do not add up: some sample was lost or invented."""


@dataclass
class StageReport:
    """Counts for one stage over one shard (or one global step)."""

    stage: str
    shard: str
    rows_in: int = 0
    rows_kept: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rows_dropped(self) -> int:
        return sum(self.dropped.values())

    @property
    def rows_per_second(self) -> float:
        return self.rows_in / self.seconds if self.seconds > 0 else 0.0

    def count(self, kept: Iterable[bool], reasons: Iterable[str]) -> None:
        """Add a batch of per-row decisions; the reason of a kept row is ignored."""
        for k, r in zip(kept, reasons, strict=True):
            self.rows_in += 1
            if k:
                self.rows_kept += 1
            else:
                self.dropped[r] += 1

    def check(self) -> None:
        """Fail loudly when rows in != kept + dropped, or a drop carries no reason."""
        if self.rows_in != self.rows_kept + self.rows_dropped:
            raise ConservationError(
                f"{self.stage}/{self.shard}: {self.rows_in} in != {self.rows_kept} kept + "
                f"{self.rows_dropped} dropped {dict(self.dropped)}"
            )
        if self.dropped.get("", 0):
            raise ConservationError(f"{self.stage}/{self.shard}: {self.dropped['']} rows dropped without reason")

    @contextmanager
    def timed(self) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds += time.perf_counter() - start

    def metrics(self) -> dict[str, float]:
        """Flat numeric view, same keys for every stage (for MLflow and the Dagster UI)."""
        out: dict[str, float] = {
            "rows_in": self.rows_in,
            "rows_kept": self.rows_kept,
            "rows_dropped": self.rows_dropped,
            "seconds": round(self.seconds, 4),
            "rows_per_s": round(self.rows_per_second, 2),
        }
        for reason, n in sorted(self.dropped.items()):
            out[f"dropped.{reason}"] = n
        for key, value in self.extra.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                out[key] = value
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "shard": self.shard,
            "rows_in": self.rows_in,
            "rows_kept": self.rows_kept,
            "dropped": dict(sorted(self.dropped.items())),
            "seconds": self.seconds,
            "extra": self.extra,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, default=str)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StageReport:
        return cls(
            stage=data["stage"],
            shard=data["shard"],
            rows_in=int(data["rows_in"]),
            rows_kept=int(data["rows_kept"]),
            dropped=Counter({str(k): int(v) for k, v in data.get("dropped", {}).items()}),
            seconds=float(data.get("seconds", 0.0)),
            extra=dict(data.get("extra", {})),
        )
