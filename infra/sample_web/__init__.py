"""The embedded sample web: a small synthetic web with known ground truth, for ``make demo`` and the tests.

:func:`generate` writes gzipped WARC shards of HTML pages (the crawl input), the image files those pages link
to, a held-out eval split of the same concepts and ``ground_truth.parquet`` with one row per image link (what
the image shows, what its caption names, which problem it carries and which stage should catch it).
:func:`serve` serves the files on 127.0.0.1 together with the broken and hostile routes the generator links to.
Pages embed the base URL they are generated with: a test can generate with the server's own ``.url``::

    with serve(out / "site") as server:
        web = generate(out, server.url)

while the demo generates with the fixed :data:`ORIGIN` and lets the download stage map it to the server.

Concepts are coloured shapes ("red circle") with a long-tailed frequency. ``generate(..., mode="hard")`` writes
a web where about half the captions are mismatched, generic or junk and many images are look-alike product
shots, with the worth of every caption in its ground truth. See ``concepts`` for the vocabulary, ``render`` for
the pictures, ``generator`` for the noise kinds and their fractions and ``server`` for the routes. Plain
Python: no Dagster import.
"""

from infra.sample_web.concepts import CONCEPTS, metadata_entries, ranked_concepts
from infra.sample_web.generator import (
    EXPECT,
    HARD_NOISE_FRACTIONS,
    MODES,
    NOISE_FRACTIONS,
    PER_SHARD,
    PRODUCT_SHARE,
    SOURCE_NAME,
    SampleWeb,
    caption_truth,
    generate,
)
from infra.sample_web.server import SampleWebServer, serve

# The origin the demo's pages and WARCs name, whatever port the site is served on: the download stage maps it
# to the server (``DownloadConfig.origin_overrides``), so a uid never depends on a port. ``.test`` is reserved
# (RFC 2606): the name can never reach a real host.
ORIGIN = "http://sample-web.test"

__all__ = [
    "CONCEPTS",
    "EXPECT",
    "HARD_NOISE_FRACTIONS",
    "MODES",
    "NOISE_FRACTIONS",
    "ORIGIN",
    "PER_SHARD",
    "PRODUCT_SHARE",
    "SOURCE_NAME",
    "SampleWeb",
    "SampleWebServer",
    "caption_truth",
    "generate",
    "metadata_entries",
    "ranked_concepts",
    "serve",
]
