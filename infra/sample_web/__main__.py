"""``python -m infra.sample_web generate --out DIR --base-url URL`` and ``... serve --site DIR --port N``."""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
from pathlib import Path

from infra.sample_web.generator import generate
from infra.sample_web.server import serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.sample_web", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="write the sample web (site, WARC shards, eval split, ground truth)")
    gen.add_argument("--out", type=Path, required=True)
    gen.add_argument("--base-url", required=True, help="where the site will be served, e.g. http://127.0.0.1:8765")
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--shards", type=int, default=4)
    gen.add_argument("--pages-per-shard", type=int, default=60)
    gen.add_argument("--images-per-page", type=int, default=10)
    gen.add_argument("--eval-per-class", type=int, default=10)
    gen.add_argument("--slow-links", type=int, default=1)
    gen.add_argument("--slow-seconds", type=float, default=3.0)
    gen.add_argument("--mode", choices=("standard", "hard"), default="standard", help="hard: half the captions bad")
    srv = sub.add_parser("serve", help="serve a generated site on 127.0.0.1 until Ctrl-C or SIGTERM")
    srv.add_argument("--site", type=Path, required=True)
    srv.add_argument("--host", default="127.0.0.1")
    srv.add_argument("--port", type=int, default=8765)
    args = parser.parse_args(argv)

    if args.command == "generate":
        web = generate(
            args.out,
            args.base_url,
            n_shards=args.shards,
            pages_per_shard=args.pages_per_shard,
            images_per_page=args.images_per_page,
            eval_per_class=args.eval_per_class,
            slow_links=args.slow_links,
            slow_seconds=args.slow_seconds,
            seed=args.seed,
            mode=args.mode,
        )
        print(web.manifest_path.read_text(), end="")
        return 0

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with serve(args.site, args.host, args.port) as server:
        print(json.dumps({"url": server.url, "site": str(args.site)}), flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
