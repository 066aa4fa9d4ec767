"""uid: one pair, one uid, and never one uid for two pairs, whatever characters the URL and text hold."""

from __future__ import annotations

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from ops.uid import pair_uid

# Strings rich in the characters that break naive encodings: NUL and other controls, separators, surrogates.
NASTY = st.text(
    st.one_of(
        st.sampled_from(["\x00", "\x01", "\x1f", "\x7f", "\x85", "\u2028", "\ufeff", "\ud800", "\udfff", "a", "/"]),
        st.characters(),
    ),
    max_size=8,
)


def test_nul_in_the_url_cannot_make_two_pairs_one() -> None:
    assert pair_uid("a\x00b", "c") != pair_uid("a", "b\x00c")
    assert pair_uid("\x00", "") != pair_uid("", "\x00")
    assert pair_uid("a\x00", "b") != pair_uid("a", "\x00b")


@settings(max_examples=2000, derandomize=True, deadline=None)
@given(a=st.tuples(NASTY, NASTY), b=st.tuples(NASTY, NASTY))
def test_distinct_pairs_have_distinct_uids(a: tuple[str, str], b: tuple[str, str]) -> None:
    assert (pair_uid(*a) == pair_uid(*b)) == (a == b)


@settings(max_examples=300, derandomize=True, deadline=None)
@given(url=NASTY.filter(lambda u: "\x00" not in u), text=NASTY)
def test_uids_of_urls_without_nul_are_unchanged(url: str, text: str) -> None:
    """Every uid issued before the NUL fix (which all had a NUL-free URL) is still the same."""
    before = hashlib.sha256(f"{url}\x00{text}".encode("utf-8", "surrogatepass")).hexdigest()[:32]
    assert pair_uid(url, text) == before
