import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ops.curation.matching import Matcher, match_reference, spacing


def naive_spacing(text):
    """MetaCLIP's rule written out step by step, independently of the module under test."""
    text = f" {text} "
    for punct in [",", ".", ";", ":", "?", "!", "`"]:
        text = text.replace(punct, f" {punct} ")
    for char in ["\t", "\n", "\r"]:
        text = text.replace(char, " ")
    return text


def naive_match(texts, metadata):
    padded = [f" {e} " for e in metadata]
    spaced = [naive_spacing(t) for t in texts]
    return [[i for i, e in enumerate(padded) if e in s] for s in spaced]


EDGE_TEXTS = [
    "",
    " ",
    "  ",
    "dog",
    "hot  dog",
    "a\tb c\r\nd",
    "U.S. Open, 2019!",
    "Vol. 8 by Various Artists",
    "end.",
    "`quoted`",
    "Москва зимой — фото",
    "東京 タワー 夜景",
    "café au lait",
    "x\x0by\u00a0z",
    "3.5 inch",
    "?!",
]

EDGE_ENTRIES = [
    "",
    " ",
    "  ",
    "dog",
    "Dog",
    "DOG",
    "hot dog",
    "hot  dog",
    " dog",
    "dog ",
    "U.S.",
    "U . S .",
    "Open ,",
    "2019 !",
    "Vol .  8",
    "Vol . 8",
    "end .",
    "` quoted `",
    "a\tb",
    "a b",
    "c d",
    "c  d",
    "Москва",
    "Москва зимой",
    "東京",
    "タワー 夜景",
    "café",
    "x\x0by\u00a0z",
    "y",
    "3",
    "3 . 5",
    "3.5",
    "5 inch",
    "? !",
    "?",
    "!",
    "dog",
]


@pytest.fixture(scope="module")
def captions(fixtures_dir):
    texts = pq.read_table(fixtures_dir / "captions" / "laion_sample_10000.parquet", columns=["TEXT"])["TEXT"]
    return texts.to_pylist() + EDGE_TEXTS


@pytest.fixture(scope="module")
def metadata(captions):
    """Thousands of entries from the captions: frequent words in three casings, bigrams, trigrams, non-Latin
    tokens, numbers, punctuation-bearing strings and the edge cases above."""
    counts = {}
    for text in captions:
        for token in naive_spacing(text).split(" "):
            counts[token] = counts.get(token, 0) + 1
    words = sorted((w for w in counts if w), key=lambda w: (-counts[w], w))
    entries = [str(i) for i in range(100)]
    for w in words[:1500]:
        entries += [w, w.lower(), w.title(), w.upper()]
    entries += [w for w in words if not w.isascii()][:300]
    grams = []
    for text in captions[:3000]:
        pieces = naive_spacing(text).split(" ")
        grams += [" ".join(pieces[i : i + n]) for n in (2, 3) for i in range(1, len(pieces) - n, 7)]
    entries += grams[:1500]
    entries += EDGE_ENTRIES
    return entries


def test_spacing_is_metaclip_rule():
    for text in [*EDGE_TEXTS, "a,b.c;d:e?f!g`h\ti\nj\rk"]:
        assert spacing(text) == naive_spacing(text)


def test_fast_matcher_equals_naive_loop_on_real_captions(captions, metadata):
    assert len(metadata) > 5000 and any("  " in e for e in metadata) and any(not e.isascii() for e in metadata)
    sample = captions[:1500] + EDGE_TEXTS
    got = Matcher(metadata).match(sample).to_pylist()
    assert got == naive_match(sample, metadata)
    assert sum(map(len, got)) > 5 * len(sample)


def test_fast_matcher_equals_pyahocorasick_on_all_captions(captions, metadata):
    matcher = Matcher(metadata)
    expected = match_reference(captions, metadata)
    assert matcher.match(captions).to_pylist() == expected
    assert (
        matcher.match(pa.chunked_array([captions[:10], captions[10:]]), batch=333, walk_batch=50).to_pylist()
        == expected
    )


def test_edge_cases_by_hand():
    metadata = ["dog", "hot dog", "", "U.S.", "U . S .", "dog", " dog", "Vol .  8", "東京"]
    got = Matcher(metadata).match(["hot dog", "U.S. dog", "a  b", "Vol. 8", None, "東京タワー"]).to_pylist()
    assert got == [[0, 1, 5], [0, 2, 4, 5, 6], [2], [2, 7], [2], []]
    assert got == naive_match(["hot dog", "U.S. dog", "a  b", "Vol. 8", "", "東京タワー"], metadata)


def test_empty_inputs():
    assert Matcher([]).match(["a b"]).to_pylist() == [[]]
    assert Matcher(["a"]).match([]).to_pylist() == []
    assert Matcher(["a"]).match(pa.array([], pa.string())).type == pa.list_(pa.int32())
