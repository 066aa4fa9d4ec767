"""The "Neglected Tails" view: how often the training captions name each class, next to its accuracy.

A class's frequency is the sum of the curation entry counts (MetaCLIP: captions matching the entry, over all
shards) of its name and its synonyms, matched exactly as MetaCLIP matches (case-sensitive). A caption naming
two synonyms counts twice, so the figure is an upper bound on the captions that mention the class; what the
view is for, ranking concepts from starved to plentiful, is unaffected.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pyarrow as pa
import pyarrow.compute as pc


def class_frequencies(
    classnames: Sequence[str],
    entry_counts: Mapping[str, int],
    synonyms: Mapping[str, Sequence[str]] | None = None,
) -> list[int]:
    """Per class, the summed entry counts of its distinct names (an unknown name counts 0)."""
    synonyms = synonyms or {}
    return [sum(entry_counts.get(n, 0) for n in dict.fromkeys([c, *synonyms.get(c, ())])) for c in classnames]


def neglected_tails(
    per_class: pa.Table,
    entry_counts: Mapping[str, int],
    synonyms: Mapping[str, Sequence[str]] | None = None,
    language: str = "en",
) -> pa.Table:
    """The zero-shot per-class table of one language with a ``frequency`` column, rarest class first."""
    table = per_class.filter(pc.field("language") == language)
    freq = class_frequencies(table["classname"].to_pylist(), entry_counts, synonyms)
    table = table.append_column("frequency", pa.array(freq, pa.int64()))
    return table.sort_by([("frequency", "ascending"), ("class_index", "ascending")])


def entry_counts_from_table(table: pa.Table) -> dict[str, int]:
    """``curation/entry_counts.parquet`` (entry_id, entry, count) as entry → count."""
    return dict(zip(table["entry"].to_pylist(), table["count"].to_pylist(), strict=True))
