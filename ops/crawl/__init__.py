"""The crawl stage: CommonCrawl WARC / WAT files and URL lists into candidate image-text pairs.

Start at :func:`crawl_shard` (``shard.py``); the modules are named after what they do: ``framing`` finds the
records (and the spans that are none) of a WARC/WAT file, ``records`` reads them and URL lists, ``books`` checks
that a report's records and bytes add up, ``charset`` decodes HTML bodies, ``html`` and ``wat`` list a page's
images, ``urls`` resolves and polices image URLs, ``lang`` identifies languages, ``reasons`` holds the drop and
failure vocabularies. Publisher opt-out is :mod:`ops.optout`, shared with the download.
"""

from ops.crawl.reasons import PAIR_REASONS, RECORD_FAILURES
from ops.crawl.shard import SCHEMA, CrawlConfig, crawl_shard

__all__ = ["PAIR_REASONS", "RECORD_FAILURES", "SCHEMA", "CrawlConfig", "crawl_shard"]
