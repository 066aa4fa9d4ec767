"""``make bench``: run every benchmark and rewrite docs/benchmarks.md with the figures of this run.

Select some with ``python -m bench.run crawl download``. Each benchmark module has ``run() -> dict`` with a
``markdown`` section; raw results also go to ``bench/out/<name>.json``.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
from datetime import UTC, datetime

from bench.common import OUT, REPO, machine

BENCHMARKS = {
    "crawl": "crawl: pages/s and pairs/s per core",
    "remote": "remote: crawling by reference (HTTP on 127.0.0.1) vs from the lake; manifest registration",
    "wat": "crawl: WAT vs WARC on the same pages",
    "download": "download: asset vs plain img2dataset",
    "deploy": "deploy: production services vs default, shard scaling",
    "dedup": "dedup: perceptual hashing and near-duplicate recall/precision",
    "scale": "scale: global steps at growing sizes, time and peak memory",
    "curation": "curation: MetaCLIP matching and balancing",
    "quality": "quality and recaption: pipeline overhead around the model (CPU)",
    "training": "training: model wrapper vs plain open_clip_train (CPU)",
    "curation_effect": "curation effect: raw pool vs curated pool at equal samples seen",
    "capfilt": "CapFilt on the hard web: the round-0 CoCa as filter and captioner, and what each pool trains to",
    "cross_style": "cross-style zero-shot: trained on one emoji art style, evaluated on the other (CPU)",
    "automation": "automation: integrating one new shard after N processed shards (real dagster-daemon)",
    "demo_time": "demo: wall time of the automation-driven graph vs the hand-sequenced plan it replaced",
}

INTRO = """# Benchmarks

Written by `make bench` (`python -m bench.run`); each section is measured side by side with its reference in
the same run on the machine named below. These machines are shared and noisy: read ratios, not absolutes, and
rerun before drawing conclusions. Raw figures: `bench/out/*.json`.
"""


def main(argv: list[str]) -> int:
    names = argv or list(BENCHMARKS)
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        print(f"unknown benchmarks {unknown}; choose from {sorted(BENCHMARKS)}", file=sys.stderr)
        return 2
    OUT.mkdir(parents=True, exist_ok=True)
    sections = _existing_sections()
    for name in names:
        started = time.perf_counter()
        result = importlib.import_module(f"bench.{name}").run()
        took = time.perf_counter() - started
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        (OUT / f"{name}.json").write_text(json.dumps(result, indent=2, default=str))
        sections[name] = f"## {BENCHMARKS[name]}\n\n_{stamp}, {machine()}, {took:.0f}s._\n\n{result['markdown']}\n"
        print(sections[name])
        _write(sections)
    return 0


def _existing_sections() -> dict[str, str]:
    """Keep the sections of benchmarks not rerun this time (each records its own date and machine)."""
    path = REPO / "docs" / "benchmarks.md"
    if not path.exists():
        return {}
    found: dict[str, str] = {}
    chunks = path.read_text().split("\n## ")[1:]
    titles = {v: k for k, v in BENCHMARKS.items()}
    for chunk in chunks:
        title, _, _ = chunk.partition("\n")
        if title in titles:
            found[titles[title]] = "## " + chunk.rstrip() + "\n"
    return found


def _write(sections: dict[str, str]) -> None:
    ordered = [sections[k] for k in BENCHMARKS if k in sections]
    (REPO / "docs" / "benchmarks.md").write_text(INTRO + "\n" + "\n".join(ordered))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
