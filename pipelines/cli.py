"""``clipfoundry`` command line: questions about the data lake that need no Dagster run.

clipfoundry trace <uid> [--shard S ...]     what every stage decided about one sample, and why
"""

from __future__ import annotations

import argparse
import json
import sys

from ops.lineage import trace
from pipelines.profiles import resources


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="clipfoundry", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_trace = sub.add_parser("trace", help="what happened to one uid across all stages")
    p_trace.add_argument("uid")
    p_trace.add_argument("--shard", action="append", help="limit to these shards (faster on big lakes)")
    p_trace.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    args = parser.parse_args(argv)

    lake = resources()["lake"].lake()
    rows = trace(lake, args.uid, args.shard)
    if not rows:
        print(f"uid {args.uid} not found under {lake.root_uri}", file=sys.stderr)
        return 1
    for row in rows:
        if args.json:
            print(json.dumps(row, default=str))
            continue
        verdict = "kept" if row["kept"] else f"dropped: {row['reason']}"
        detail = {k: v for k, v in row.items() if k not in ("stage", "shard", "kept", "reason") and v not in (None, "")}
        print(f"{row['stage']:<10} {row['shard']:<24} {verdict:<28} {json.dumps(detail, default=str)[:200]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
