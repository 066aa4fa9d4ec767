"""MetaCLIP metadata: the list of entries (concepts) that texts are matched against.

The format is MetaCLIP's: a JSON list of strings, an entry's id is its index, so a list written here can be used
by MetaCLIP's own tools and theirs by ours. A list is built the way MetaCLIP built theirs, from sources a user can
point at: the strings "0".."99", WordNet synset head words, unigrams seen at least ``min_unigram_count`` times
and bigrams with PMI at least ``pmi_threshold`` in a text corpus (Wikipedia for MetaCLIP; here any iterable of
texts, such as the pipeline's own crawled captions of one language), and an optional titles list.

Corpus texts are tokenised with the matcher's own rule (:func:`ops.curation.matching.spacing`, split on
spaces), so every unigram and bigram counted can actually be matched. Languages written without spaces (zh, ja,
th, ...) need a word segmenter, which MetaCLIP 2 adds per language; this builder does not.
"""

from __future__ import annotations

import json
import string
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fsspec
import pyarrow.compute as pc

from infra.lake import Lake
from ops import graph
from ops.curation.matching import spacing

WORDNET_DIR = Path("/usr/share/wordnet")
WORDNET_FILES = ("data.noun", "data.verb", "data.adj", "data.adv")
MAX_ENTRY_CHARS = 256
_PUNCTUATION = set(string.punctuation) | set("，。、；：？¿！“”‘’（）【】《》〈〉「」『』～—")
_ADJECTIVE_MARKERS = ("(a)", "(p)", "(ip)")


def load_metadata(source: str, lake: Lake | None = None, storage_options: dict[str, Any] | None = None) -> list[str]:
    """Read a MetaCLIP-format list from a lake-relative path (when ``lake`` is given) or any fsspec URI."""
    if lake is not None:
        data = lake.read_json(source)
    else:
        with fsspec.open(source, "rb", **(storage_options or {})) as f:
            data = json.load(f)
    if not isinstance(data, list) or not all(isinstance(e, str) for e in data):
        raise ValueError(f"{source}: a MetaCLIP metadata file is a JSON list of strings")
    return data


def save_metadata(lake: Lake, rel: str, entries: Sequence[str]) -> None:
    """Write the list atomically, one entry per id, without escaping non-ASCII (as MetaCLIP's files are)."""
    lake.write_bytes(rel, json.dumps(list(entries), ensure_ascii=False).encode())


def wordnet_heads(wordnet_dir: str | Path = WORDNET_DIR, all_lemmas: bool = False) -> list[str]:
    """Head words of every WordNet synset (or all lemmas), from the WordNet database files, in file order.

    A data line is ``offset lex_filenum ss_type w_cnt(hex) word lex_id [word lex_id ...] ...``; header lines
    start with two spaces. Underscores become spaces and adjective position markers such as ``(a)`` are dropped.
    """
    out: dict[str, None] = {}
    for name in WORDNET_FILES:
        with open(Path(wordnet_dir) / name, encoding="utf-8") as f:
            for line in f:
                if line.startswith("  "):
                    continue
                fields = line.split(" ")
                n_words = int(fields[3], 16) if all_lemmas else 1
                for k in range(n_words):
                    word = fields[4 + 2 * k]
                    for marker in _ADJECTIVE_MARKERS:
                        word = word.removesuffix(marker)
                    out.setdefault(word.replace("_", " "), None)
    return list(out)


def tokens(text: str) -> list[str]:
    """The text's tokens as the matcher sees them: spaced, split on spaces, empty pieces dropped."""
    return [t for t in spacing(text).split(" ") if t]


def is_punctuation(token: str) -> bool:
    return all(c in _PUNCTUATION for c in token)


@dataclass
class NgramCounts:
    """Unigram and bigram counts of a corpus; a bigram is two adjacent tokens with no punctuation token between."""

    unigrams: Counter[str] = field(default_factory=Counter)
    bigrams: Counter[str] = field(default_factory=Counter)

    def add(self, text: str) -> None:
        previous = None
        for token in tokens(text):
            if is_punctuation(token):
                previous = None
                continue
            self.unigrams[token] += 1
            if previous is not None:
                self.bigrams[f"{previous} {token}"] += 1
            previous = token

    def pmi(self, min_count: int = 1) -> dict[str, float]:
        """p(ab) / (p(a) p(b)) of every bigram seen ``min_count`` times, not logged: MetaCLIP's threshold of 30
        is on this ratio. Rare pairs of rare words score highest, hence the minimum count."""
        n_uni, n_bi = self.unigrams.total(), self.bigrams.total()
        out = {}
        for bigram, count in self.bigrams.items():
            if count >= min_count:
                a, b = bigram.split(" ")
                out[bigram] = count * n_uni * n_uni / (n_bi * self.unigrams[a] * self.unigrams[b])
        return out


def count_ngrams(texts: Iterable[str]) -> NgramCounts:
    counts = NgramCounts()
    for text in texts:
        counts.add(text)
    return counts


def crawl_texts(lake: Lake, lang: str | None, shards: Iterable[str]) -> Iterator[str]:
    """Kept texts of the shards' crawl tables, only those identified as ``lang`` if set."""
    for shard in shards:
        rel = graph.stage("crawl").table(shard)
        table = lake.read_parquet(rel, columns=["text", "lang", "kept"]).filter(pc.field("kept"))
        if lang is not None:
            table = table.filter(pc.equal(table["lang"], lang))
        yield from (t for t in table["text"].to_pylist() if t)


@dataclass(frozen=True)
class MetadataConfig:
    """Sources and caps; MetaCLIP's English list used min count 100, PMI 30 and 500,000 entries in all."""

    lang: str | None = "en"
    include_numbers: bool = True
    wordnet_dir: str | None = str(WORDNET_DIR)
    wordnet_all_lemmas: bool = False
    min_unigram_count: int = 100
    pmi_threshold: float = 30.0
    min_bigram_count: int = 5
    max_unigrams: int | None = None
    max_bigrams: int | None = None
    max_titles: int | None = None
    max_entries: int = 500_000


def _usable(entry: str) -> str | None:
    entry = entry.strip()
    if not entry or len(entry) > MAX_ENTRY_CHARS or is_punctuation(entry):
        return None
    return entry


def build_metadata(
    texts: Iterable[str] = (),
    titles: Iterable[str] = (),
    config: MetadataConfig = MetadataConfig(),
) -> list[str]:
    """A deduplicated entry list in a fixed order: numbers, WordNet, unigrams, bigrams, titles.

    Unigrams go by count and bigrams by PMI (highest first, ties by string), so the per-source caps and the
    overall cap keep the strongest entries and the same inputs always give the same list. WordNet is English,
    so it is used only when ``config.lang`` is None or ``"en"``.
    """
    entries: dict[str, None] = {}

    def add(candidates: Iterable[str], cap: int | None = None) -> None:
        added = 0
        for candidate in candidates:
            if len(entries) >= config.max_entries or (cap is not None and added >= cap):
                return
            entry = _usable(candidate)
            if entry is not None and entry not in entries:
                entries[entry] = None
                added += 1

    if config.include_numbers:
        add(str(i) for i in range(100))
    if config.wordnet_dir and config.lang in (None, "en"):
        add(wordnet_heads(config.wordnet_dir, config.wordnet_all_lemmas))
    counts = count_ngrams(texts)
    unigrams = sorted(
        (w for w, c in counts.unigrams.items() if c >= config.min_unigram_count),
        key=lambda w: (-counts.unigrams[w], w),
    )
    add(unigrams, config.max_unigrams)
    scored = [(p, b) for b, p in counts.pmi(config.min_bigram_count).items() if p >= config.pmi_threshold]
    add((b for _, b in sorted(scored, key=lambda s: (-s[0], s[1]))), config.max_bigrams)
    add(titles, config.max_titles)
    return list(entries)
