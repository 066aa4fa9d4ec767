"""WAT vs WARC: the same pages crawled from their WARC and from the WAT Common Crawl would publish for it.

Input: the four fixture WARCs concatenated ``copies`` times (as ``bench/crawl.py``), and the WAT written from
that file by :mod:`infra.synthetic.wat` (Common Crawl's layout and extraction rules; the fixtures hold no real
WAT of these pages). Both go through the same ``crawl_shard``, full settings, one process, runs interleaved.
Reported: pairs found, bytes read from storage and inflated (the crawl's own read books), pages/s and CPU
time, and the pairs the WARC gives that the WAT cannot (lazy-loaded ``data-src`` images, ``data-image-title``).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from bench.crawl import build_input
from infra.lake import Lake
from infra.synthetic.wat import write_wat
from ops import graph
from ops.crawl import CrawlConfig, crawl_shard


def run(copies: int = 60, repeats: int = 3) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        warc = build_input(work, copies)
        write_wat(warc, warc.with_name("repeated.warc.wat.gz"))
        lake = Lake(str(work))
        sources = {"WARC": "sources/bench/repeated.warc.gz", "WAT": "sources/bench/repeated.warc.wat.gz"}
        wall: dict[str, list[float]] = {k: [] for k in sources}
        cpu: dict[str, list[float]] = {k: [] for k in sources}
        reports = {}
        for _ in range(repeats):
            for side, rel in sources.items():
                start, cpu_start = time.perf_counter(), time.process_time()
                reports[side] = crawl_shard(lake, rel, side.lower(), CrawlConfig())
                wall[side].append(time.perf_counter() - start)
                cpu[side].append(time.process_time() - cpu_start)
        kept = {}
        for side in sources:
            table = lake.read_parquet(graph.stage("crawl").table(side.lower()))
            table = table.filter(table["kept"])
            kept[side] = set(zip(table["page_url"].to_pylist(), table["url"].to_pylist(), strict=True))
        result: dict = {"copies": copies, "repeats": repeats, "sides": {}}
        for side in sources:
            report = reports[side]
            result["sides"][side] = {
                "pages": report.extra["pages"],
                "records": report.extra["records_in"],
                "rows": report.rows_in,
                "pairs_with_text": report.rows_in - report.dropped.get("no_text", 0),
                "pairs_kept": report.rows_kept,
                "bytes": report.extra["read.bytes_read"],
                "inflated_bytes": report.extra["read.inflated_bytes"],
                "seconds": statistics.median(wall[side]),
                "cpu_seconds": statistics.median(cpu[side]),
            }
        result["kept_only_in_warc"] = len(kept["WARC"] - kept["WAT"])
        result["kept_only_in_wat"] = len(kept["WAT"] - kept["WARC"])
    result["markdown"] = _markdown(result)
    return result


def _markdown(result: dict) -> str:
    sides = result["sides"]
    warc = sides["WARC"]
    lines = [
        f"Input: the four fixture WARCs concatenated {result['copies']}× and the WAT Common Crawl's extractor would "
        "make of them (`infra/synthetic/wat.py`: its layout and rules, fewer bookkeeping fields, so real WAT is "
        "somewhat larger); `crawl_shard` with full settings (language ID included), one process, median of "
        f"{result['repeats']} interleaved runs.",
        "",
        "| source | pages | records | text pairs | pairs kept | MB read | MB inflated | seconds | CPU s | pages/s | "
        "pages per CPU s | bytes vs WARC | pages per CPU s vs WARC |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, s in sides.items():
        lines.append(
            f"| {name} | {s['pages']:,} | {s['records']:,} | {s['pairs_with_text']:,} | {s['pairs_kept']:,} | "
            f"{s['bytes'] / 1e6:.2f} | {s['inflated_bytes'] / 1e6:.2f} | {s['seconds']:.2f} | {s['cpu_seconds']:.2f} | "
            f"{s['pages'] / s['seconds']:,.0f} | {s['pages'] / s['cpu_seconds']:,.0f} | "
            f"{s['bytes'] / warc['bytes']:.2f}× | {warc['cpu_seconds'] / s['cpu_seconds']:.2f}× |"
        )
    lines += [
        "",
        f"Kept pairs (page, image URL) only in the WARC: {result['kept_only_in_warc']:,}; only in the WAT: "
        f"{result['kept_only_in_wat']:,}. Pairs kept are after the crawl's URL checks and its within-shard dedup "
        "(the input repeats the same pages, so each pair is kept once). These pages use no lazy loading "
        "(`data-src`) and no `data-image-title`, the two things WAT cannot carry (tested in "
        "`tests/ops/crawl/test_wat_first.py`); on real crawls WAT loses about 1% of the pairs. The WAT has one "
        "record per WARC record (request, response and metadata alike) plus its own warcinfo; only the responses' "
        "carry HTML metadata.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(run()["markdown"])
