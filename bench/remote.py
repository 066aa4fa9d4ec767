"""Sources by reference: crawling a WARC streamed over HTTP from 127.0.0.1 against crawling the same file in the
lake, and registering a Common Crawl-sized manifest.

The WARC is the crawl benchmark's input (the four fixture WARCs concatenated). The mirror
(:class:`infra.sample_web.mirror.MirrorServer`) runs in its own process, as a real server would, so its work does
not share the crawl's interpreter. Both crawls run the full op with default settings (8 MiB ranges, read ahead
one range), interleaved, median of the runs; their tables must be equal. The manifest is 100,000 Common Crawl-shaped
lines, gzip-compressed; the first pass registers every line, the second finds nothing new, the third one appended
line.
"""

from __future__ import annotations

import gzip
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import REPO, best_of
from bench.crawl import build_input
from infra.lake import Lake
from infra.remote import RemoteConfig, RemoteFile
from ops import graph
from ops.crawl import CrawlConfig, crawl_shard
from ops.sources import sync

_SERVE = (
    "import sys, time; from pathlib import Path; from infra.sample_web.mirror import MirrorServer; "
    "m = MirrorServer(Path(sys.argv[1])); print(m.url, flush=True); time.sleep(10**6)"
)


def _manifest_lines(n: int) -> list[str]:
    return [
        f"crawl-data/CC-MAIN-2024-10/segments/1707947{i // 1000:06d}.{i % 7}/warc/"
        f"CC-MAIN-20240220211055-20240221001055-{i:05d}.warc.gz"
        for i in range(n)
    ]


def registration(lines: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        lake = Lake(tmp)
        manifest = _manifest_lines(lines)
        lake.write_bytes("sources/cc/warc.paths.gz", gzip.compress("\n".join(manifest).encode()))
        start = time.perf_counter()
        new, refused = sync(lake, set())
        first = time.perf_counter() - start
        start = time.perf_counter()
        again, _ = sync(lake, set(new))
        second = time.perf_counter() - start
        manifest.append("crawl-data/CC-MAIN-2024-10/segments/x/warc/appended.warc.gz")
        lake.write_bytes("sources/cc/warc.paths.gz", gzip.compress("\n".join(manifest).encode()))
        start = time.perf_counter()
        appended, _ = sync(lake, set(new))
        third = time.perf_counter() - start
        registry_mb = Path(lake.path("registry/shards.json")).stat().st_size / 1e6
    assert len(new) == lines and not refused and not again and appended == ["cc.warc.appended"]
    return {"lines": lines, "first_s": first, "again_s": second, "appended_s": third, "registry_mb": registry_mb}


def run(copies: int = 60, repeats: int = 5, manifest_lines: int = 100_000) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        path = build_input(work, copies)
        lake = Lake(str(work))
        local = "sources/bench/repeated.warc.gz"
        server = subprocess.Popen(
            [sys.executable, "-c", _SERVE, str(path.parent)], cwd=REPO, stdout=subprocess.PIPE, text=True
        )
        try:
            url = f"{server.stdout.readline().strip()}/{path.name}"
            config = CrawlConfig()
            sources = {"lake": local, "remote": url}
            times: dict[str, list[float]] = {label: [] for label in sources}
            cpu: dict[str, list[float]] = {label: [] for label in sources}
            for _ in range(repeats):
                for label, source in sources.items():
                    used = time.process_time()
                    t, _ = best_of(lambda s=source, k=label: crawl_shard(lake, s, k, config), 1)
                    cpu[label].append(time.process_time() - used)
                    times[label].append(t)
            equal = lake.read_parquet(graph.stage("crawl").table("lake")).equals(
                lake.read_parquet(graph.stage("crawl").table("remote"))
            )
            with RemoteFile(url, RemoteConfig()) as f:
                f.read()
                requests = f.requests
        finally:
            server.terminate()
            server.wait(timeout=30)
        size_mb = path.stat().st_size / 1e6
        report = crawl_shard(lake, local, "lake", config)
    result: dict = {
        "copies": copies,
        "file_mb": size_mb,
        "pages": report.extra.get("pages", 0),
        "pairs": report.rows_in,
        "tables_equal": equal,
        "range_requests_per_read": requests,
        **{f"{label}_s": statistics.median(ts) for label, ts in times.items()},
        **{f"{label}_runs_s": ts for label, ts in times.items()},
        **{f"{label}_cpu_s": statistics.median(ts) for label, ts in cpu.items()},
    }
    result["ratio"] = result["lake_s"] / result["remote_s"]
    result["registration"] = registration(manifest_lines)
    reg = result["registration"]
    lines = [
        f"Input: the four fixture WARCs concatenated {copies}× ({size_mb:,.1f} MB gzip, {result['pages']:,} HTML "
        f"pages, {result['pairs']:,} candidate pairs), the full crawl op with default settings, one process, "
        f"interleaved, median of {repeats} runs. Remote: streamed from a range-serving HTTP mirror in another "
        f"process on 127.0.0.1 in {requests} range requests of 8 MiB, the next range read ahead; never copied "
        "into the lake. The goal is ≥ 0.9× the lake's throughput.",
        "",
        "| source | seconds | pages/s | throughput vs lake | CPU seconds (all threads of the crawl's process) |",
        "|---|---|---|---|---|",
        f"| lake file (local disk) | {result['lake_s']:.2f} | {result['pages'] / result['lake_s']:,.0f} | 1.00× | "
        f"{result['lake_cpu_s']:.2f} |",
        f"| by reference, `http://127.0.0.1` | {result['remote_s']:.2f} | "
        f"{result['pages'] / result['remote_s']:,.0f} | {result['ratio']:.2f}× | {result['remote_cpu_s']:.2f} |",
        "",
        "Every run, seconds (the machine is shared; wall times swing with its load): lake "
        + ", ".join(f"{t:.2f}" for t in times["lake"])
        + "; remote "
        + ", ".join(f"{t:.2f}" for t in times["remote"])
        + ".",
        "",
        f"Tables equal, row for row: {'yes' if equal else 'NO'}.",
        "",
        f"Registering a `warc.paths.gz` of {reg['lines']:,} Common Crawl-shaped lines (`ops.sources.sync`, what the "
        "new-sources sensor runs each tick), local lake:",
        "",
        "| pass | seconds |",
        "|---|---|",
        f"| first: every line a new shard | {reg['first_s']:.2f} |",
        f"| again: nothing new | {reg['again_s']:.2f} |",
        f"| one line appended | {reg['appended_s']:.2f} |",
        "",
        f"The registry then holds {reg['lines'] + 1:,} shards in {reg['registry_mb']:.1f} MB of JSON.",
    ]
    result["markdown"] = "\n".join(lines)
    return result


if __name__ == "__main__":
    print(run()["markdown"])
