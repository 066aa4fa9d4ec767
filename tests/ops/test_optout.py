"""The one opt-out rule of the crawl and the download: scoped directives count, ``none`` is noindex + nofollow."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ops.optout import OPT_OUT_DIRECTIVES, directives, opts_out

WORDS = ["noai", "noimageai", "noindex", "noimageindex", "none", "all", "nofollow", "noarchive", "max-snippet: 20"]


@pytest.mark.parametrize(
    ("value", "refused"),
    [
        ("noai", True),
        ("otherbot: noai", True),
        ("GoogleBot : NoImageIndex, follow", True),
        ("none", True),
        ("otherbot: none", True),
        ("all", False),
        ("nofollow, noarchive", False),
        ("unavailable_after: 25 Jun 2010 15:00:00 PST", False),
        ("max-image-preview: large", False),
        ("noaix", False),
        ("", False),
    ],
)
def test_the_rule(value: str, refused: bool) -> None:
    assert opts_out([value]) is refused


@settings(max_examples=300, derandomize=True, deadline=None)
@given(
    scope=st.sampled_from(["", "otherbot:", " bot-2 : ", "*:", "CLIPFOUNDRY:"]),
    words=st.lists(st.sampled_from(WORDS), min_size=1, max_size=4),
    upper=st.booleans(),
)
def test_any_scope_and_case_refuses_exactly_the_refusing_directives(scope: str, words: list, upper: bool) -> None:
    value = scope + ", ".join(words)
    value = value.upper() if upper else value
    refused = any(w in ("noai", "noimageai", "noindex", "noimageindex", "none") for w in words)
    assert opts_out([value]) is refused
    assert opts_out([None, "", value]) is refused
    assert directives("none") == {"noindex", "nofollow"}


def test_the_directive_set_is_a_setting() -> None:
    assert opts_out(["noindex"]) and not opts_out(["noindex"], refused=("noai",))
    assert set(OPT_OUT_DIRECTIVES) == {"noai", "noimageai", "noindex", "noimageindex"}
