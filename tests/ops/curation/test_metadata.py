import json

import pyarrow as pa
import pytest

from infra.lake import Lake
from ops.curation.metadata import (
    MetadataConfig,
    build_metadata,
    count_ngrams,
    crawl_texts,
    load_metadata,
    save_metadata,
    wordnet_heads,
)

CORPUS = (
    ["We flew to Qwerty Zorblax last spring.", "Qwerty Zorblax is big, and the city never sleeps."] * 30
    + [f"the {w} sat on the mat" for w in ("cat", "dog", "cow", "hen", "fox", "owl")] * 20
    + ["a", "the the the", "flibber jabber"] * 10
    + [f"lot {i} holds {i % 7} boxes of assorted goods" for i in range(200)]
)


@pytest.fixture(scope="module")
def heads():
    return wordnet_heads()


def test_wordnet_heads_from_database_files(heads):
    assert len(heads) > 60_000
    head_set = set(heads)
    assert {"entity", "dog", "physical entity", "hotdog", "red fox", "able", "run"} <= head_set
    assert not any("_" in h or h.endswith(("(a)", "(p)", "(ip)")) for h in heads)
    assert len(head_set) == len(heads)
    all_lemmas = set(wordnet_heads(all_lemmas=True))
    assert head_set < all_lemmas and "domestic dog" in all_lemmas and "domestic dog" not in head_set


def test_pmi_bigrams_are_collocations_not_frequent_pairs():
    counts = count_ngrams(CORPUS)
    pmi = counts.pmi(min_count=5)
    assert pmi["Qwerty Zorblax"] > 30 > pmi["the cat"]
    assert "Zorblax is" in pmi and "spring ." not in pmi  # punctuation breaks bigrams


def test_build_orders_sources_dedupes_and_caps(heads):
    config = MetadataConfig(min_unigram_count=20, pmi_threshold=30, min_bigram_count=5)
    entries = build_metadata(CORPUS, titles=["Qwerty Zorblax", "Deep Purple", "  ", "!!"], config=config)
    assert entries[:100] == [str(i) for i in range(100)]
    assert len(entries) == len(set(entries))
    assert "Qwerty Zorblax" in entries and "Deep Purple" in entries and "the cat" not in entries
    assert (
        entries.index("entity") < entries.index("the") < entries.index("Qwerty Zorblax") < entries.index("Deep Purple")
    )
    assert "  " not in entries and "!!" not in entries and "Qwerty" in entries and "flibber" not in entries
    capped = build_metadata(CORPUS, config=MetadataConfig(min_unigram_count=20, max_entries=1000))
    assert capped == entries[:1000]


def test_other_language_skips_wordnet():
    entries = build_metadata(["Der Hund bellt."] * 3, config=MetadataConfig(lang="de", min_unigram_count=3))
    assert entries[100:] == ["Der", "Hund", "bellt"]


def test_load_and_save_through_lake_and_uri(tmp_path):
    lake = Lake(str(tmp_path))
    save_metadata(lake, "curation/metadata.json", ["dog", "Москва", "0"])
    assert load_metadata("curation/metadata.json", lake=lake) == ["dog", "Москва", "0"]
    assert load_metadata(f"file://{tmp_path}/curation/metadata.json") == ["dog", "Москва", "0"]
    (tmp_path / "bad.json").write_text(json.dumps({"a": 1}))
    with pytest.raises(ValueError):
        load_metadata(str(tmp_path / "bad.json"))


def test_crawl_texts_per_language(tmp_path):
    lake = Lake(str(tmp_path))
    lake.write_parquet(
        "crawl/s0.parquet",
        pa.table({"text": ["a dog", "ein Hund", "dropped"], "lang": ["en", "de", "en"], "kept": [True, True, False]}),
    )
    assert list(crawl_texts(lake, None, ["s0"])) == ["a dog", "ein Hund"]
    assert list(crawl_texts(lake, "de", ["s0"])) == ["ein Hund"]
    assert list(crawl_texts(lake, None, [])) == []  # only the shards asked for are read
