"""Publisher opt-out, one rule for the crawl (the page's robots ``<meta>`` and ``X-Robots-Tag``) and the download
(the image response's ``X-Robots-Tag``).

A robots value is a comma-separated list of directives, optionally addressed to one crawler first
(``otherbot: noai, noindex``). The rule, the same at both stages:

- a directive counts whoever it is addressed to: a publisher who refuses one AI crawler has refused AI use, and we
  would rather lose a page than argue about which bot we are;
- ``none`` means ``noindex, nofollow``, as the robots specification defines it (``all`` means nothing);
- the directives that refuse use are :data:`OPT_OUT_DIRECTIVES`: the AI opt-outs ``noai`` and ``noimageai``, and
  the index opt-outs ``noindex`` and ``noimageindex`` that img2dataset (and so DataComp) honours on images. A page
  that asks not to be indexed is left out with its images, as an image that asks it is.

Anything else (``nofollow``, ``noarchive``, a ``max-image-preview``, an unknown word) refuses nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

OPT_OUT_DIRECTIVES: tuple[str, ...] = ("noai", "noimageai", "noindex", "noimageindex")
ROBOTS_META_NAMES = frozenset({"robots", "x-robots-tag"})
_ALIASES = {"none": ("noindex", "nofollow"), "all": ()}
_SCOPE = re.compile(r"^\s*[^\s:,]+\s*:")  # an optional crawler name before a colon


def directives(value: str) -> set[str]:
    """The directives one robots value states, lower-cased, with ``none``/``all`` expanded and any crawler scope
    removed."""
    found: set[str] = set()
    for part in value.lower().split(","):
        scoped = _SCOPE.match(part)
        word = part[scoped.end() :] if scoped else part
        word = word.strip().split(":", 1)[0].strip()
        found.update(_ALIASES.get(word, (word,)))
    return found


def opts_out(values: Iterable[str | None], refused: Iterable[str] = OPT_OUT_DIRECTIVES) -> bool:
    """True when any of the robots values (meta contents or header values) states a directive in ``refused``."""
    wanted = {d.strip().lower() for d in refused}
    return any(value and wanted.intersection(directives(value)) for value in values)
