"""Every measurement the settings ask for, on one trained model: the ``evaluation`` stage's and the bootstrap's
round-0 scores come from this one place, so the two rounds are compared on the same definitions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from infra.lake import Lake
from ops.curation.stage import ENTRY_COUNTS
from ops.evaluation.config import EvaluationConfig
from ops.evaluation.retrieval import retrieval
from ops.evaluation.sets import load_classification_set
from ops.evaluation.tails import entry_counts_from_table, neglected_tails
from ops.evaluation.zeroshot import zero_shot


@dataclass
class SuiteResult:
    """``eval/<set>/<metric>`` (and ``eval/<set>/<language>/<metric>``) values, and each classification set's
    per-class table with the curation entry counts beside it (rarest classes first)."""

    metrics: dict[str, float] = field(default_factory=dict)
    tails: dict[str, pa.Table] = field(default_factory=dict)

    @property
    def headline(self) -> str | None:
        """The metric models are ranked by: the first classification set's top-1, else the first metric."""
        tops = [k for k in self.metrics if k.endswith("/top1") and k.count("/") == 2]
        return tops[0] if tops else next(iter(self.metrics), None)


def set_name(prefix: str) -> str:
    return prefix.rstrip("/").rsplit("/", 1)[-1]


def run_suite(
    model: Any, tokenizer: Any, preprocess: Any, lake: Lake, config: EvaluationConfig, device: str = "cpu"
) -> SuiteResult:
    """Zero-shot classification (overall and per language) and retrieval on every configured set."""
    counts = entry_counts_from_table(lake.read_parquet(ENTRY_COUNTS)) if lake.exists(ENTRY_COUNTS) else {}
    result = SuiteResult()
    for prefix in config.classification_sets:
        name = set_name(prefix)
        found = zero_shot(model, tokenizer, preprocess, lake, load_classification_set(lake, prefix), device=device)
        for key, value in found["metrics"].items():
            result.metrics[f"eval/{name}/{key}"] = float(value)
        for lang, values in found["by_language"].items():
            for key, value in values.items():
                result.metrics[f"eval/{name}/{lang}/{key}"] = float(value)
        result.tails[name] = neglected_tails(found["per_class"], counts)
    for prefix in config.retrieval_sets:
        name = set_name(prefix)
        for key, value in retrieval(model, tokenizer, preprocess, lake, prefix, device=device).items():
            result.metrics[f"eval/{name}/{key}"] = float(value)
    return result
