"""Publisher opt-out from AI training, as signalled in the page itself.

The signals are the ``noai`` / ``noimageai`` directives, in a robots meta tag or an ``X-Robots-Tag`` HTTP header
(or its ``<meta http-equiv>`` twin). A directive scoped to one crawler (``somebot: noai``) is honoured too: the
publisher has said no to AI use, and we would rather lose a page than argue about which bot we are.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_DIRECTIVES = frozenset({"noai", "noimageai"})
_SPLIT = re.compile(r"[\s,;:]+")
ROBOTS_META_NAMES = frozenset({"robots", "x-robots-tag"})


def opts_out(values: Iterable[str | None]) -> bool:
    """True when any of the robots values (meta content or header value) carries noai or noimageai."""
    for value in values:
        if not value:
            continue
        low = value.lower()
        if ("noai" in low or "noimageai" in low) and _DIRECTIVES.intersection(_SPLIT.split(low)):
            return True
    return False
