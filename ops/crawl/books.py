"""Whether a crawl report's books balance: every record counted once, every byte of the source file read.

The crawl stage's ``rows_conserved`` check proves that every candidate pair is a row; this proves the rows came
from the whole file. A reader that stopped early would still balance its pairs, so the report carries what the
read covered (``read.*``, see :class:`ops.crawl.framing.ReadTotals`) and this checks it against the file.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _sum(extra: Mapping[str, Any], prefix: str) -> int:
    return sum(v for k, v in extra.items() if k.startswith(prefix))


def read_problems(extra: Mapping[str, Any]) -> list[str]:
    """What does not add up in a crawl report's ``extra`` (an empty list when everything does)."""
    problems = []
    failed, ignored = _sum(extra, "records_failed."), _sum(extra, "records_ignored.")
    records_in = extra.get("records_in", 0)
    if records_in != extra.get("records_used", 0) + ignored + failed:
        problems.append("records in != used + ignored + failed")
    if extra.get("records_failed", 0) != failed or extra.get("records_ignored", 0) != ignored:
        problems.append("records failed or ignored != the sum of their reasons")
    if extra.get("source_format") == "url_list":
        if extra.get("url_list.rows") != extra.get("url_list.rows_read", 0) + extra.get("url_list.rows_unread", 0):
            problems.append("URL list rows != rows read + rows in unreadable row groups")
        return problems
    read = {k.split(".", 1)[1]: v for k, v in extra.items() if k.startswith("read.")}
    if "source_bytes" not in read:
        return [*problems, "the report does not say how much of the source file was read"]
    if read["bytes_read"] != read["source_bytes"]:
        problems.append(f"read {read['bytes_read']} of the file's {read['source_bytes']} bytes")
    covered = read["record_bytes"] + read["separator_bytes"] + read["skipped_bytes"]
    if covered != read["inflated_bytes"]:
        problems.append(f"records, separators and skipped spans cover {covered} of {read['inflated_bytes']} bytes")
    frames = read["records"] + read["skipped_spans"] if read["records"] else 1  # no record at all: not_a_warc
    if records_in != frames:
        problems.append(f"{records_in} records counted, {frames} read (records and skipped spans)")
    return problems
