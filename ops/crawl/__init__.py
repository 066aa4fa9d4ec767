"""The crawl stage: CommonCrawl WARC / WAT files and URL lists into candidate image-text pairs.

Start at :func:`crawl_shard` (``shard.py``); the modules are named after what they do: ``records`` reads source
files robustly, ``charset`` decodes HTML bodies, ``html`` and ``wat`` list a page's images, ``urls`` resolves
and polices image URLs, ``optout`` reads publisher opt-outs, ``lang`` identifies languages, ``reasons`` holds
the drop and failure vocabularies.
"""

from ops.crawl.reasons import PAIR_REASONS, RECORD_FAILURES
from ops.crawl.shard import SCHEMA, CrawlConfig, crawl_shard

__all__ = ["PAIR_REASONS", "RECORD_FAILURES", "SCHEMA", "CrawlConfig", "crawl_shard"]
