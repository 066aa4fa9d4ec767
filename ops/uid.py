"""Stable sample identifiers.

A ``uid`` names a (URL, text) pair: the same pair seen in two crawls or two shards gets the same uid, so
decisions keyed by uid (dedup survivors, balancing draws) do not depend on which shard saw it first.
"""

from __future__ import annotations

import hashlib


def pair_uid(url: str, text: str) -> str:
    """32 hex characters (128 bits) of SHA-256 over an encoding of the pair that no other pair shares.

    The encoding is the URL and the text joined by NUL, which tells them apart as long as the URL holds no NUL
    (the first NUL is the separator). A URL that does hold one (junk from a page or a URL list) is encoded as
    0xFF, the URL's length and the two strings instead: 0xFF never occurs in UTF-8, so that form cannot collide
    with the first, and every uid ever issued for a URL without NUL stays what it was.
    """
    url_bytes = url.encode("utf-8", "surrogatepass")
    text_bytes = text.encode("utf-8", "surrogatepass")
    if b"\x00" in url_bytes:
        payload = b"\xff" + len(url_bytes).to_bytes(8, "big") + url_bytes + text_bytes
    else:
        payload = url_bytes + b"\x00" + text_bytes
    return hashlib.sha256(payload).hexdigest()[:32]
