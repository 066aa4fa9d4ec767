"""``clipfoundry`` command line.

clipfoundry trace <uid> [--shard S ...]        what every stage decided about one sample, and why
clipfoundry materialize [--shard S ...]        the whole graph for these shards (default: all), as one backfill
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid

from ops.lineage import trace
from pipelines.profiles import resources


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="clipfoundry", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_trace = sub.add_parser("trace", help="what happened to one uid across all stages")
    p_trace.add_argument("uid")
    p_trace.add_argument("--shard", action="append", help="limit to these shards (faster on big lakes)")
    p_trace.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    p_mat = sub.add_parser(
        "materialize",
        help="register new source files, then run every stage for the given shards (default: all) as one backfill",
    )
    p_mat.add_argument("--shard", action="append", help="only these shards' per-shard stages (global ones always)")
    p_mat.add_argument("--no-daemon", action="store_true", help="only submit: a running dagster-daemon executes it")
    p_mat.add_argument("--timeout", type=float, default=3600, help="seconds to wait for the backfill (default 3600)")
    args = parser.parse_args(argv)
    return _trace(args) if args.command == "trace" else _materialize(args)


def _trace(args: argparse.Namespace) -> int:
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
        print(f"{row['stage']:<13} {row['shard']:<24} {verdict:<28} {json.dumps(detail, default=str)[:200]}")
    return 0


def _materialize(args: argparse.Namespace) -> int:
    """The same backfill as the UI's "Materialize all"; with no daemon running, one is started until it ends."""
    from dagster import DagsterInstance
    from dagster._core.execution.backfill import BULK_ACTION_TERMINAL_STATUSES, BulkActionStatus, PartitionBackfill
    from dagster._daemon.controller import all_daemons_live

    from infra.pools import ensure_gpu_pool
    from ops.sources import sync
    from pipelines.backfill import whole_graph
    from pipelines.daemon import running_daemon
    from pipelines.definitions import defs
    from pipelines.partitions import shards

    instance = DagsterInstance.get()
    ensure_gpu_pool(instance)
    lake = resources()["lake"].lake()
    new, refused = sync(lake, set(instance.get_dynamic_partitions(shards.name)))
    for message in refused:
        print(f"refused: {message}", file=sys.stderr)
    if new:
        instance.add_dynamic_partitions(shards.name, new)
        print(f"registered {len(new)} new shard(s): {new}")
    known = instance.get_dynamic_partitions(shards.name)
    wanted = args.shard or known
    unknown = sorted(set(wanted) - set(known))
    if unknown or not wanted:
        print(f"unknown shards {unknown}; registered: {known}" if unknown else "no shards registered", file=sys.stderr)
        return 2
    backfill_id = uuid.uuid4().hex[:8]
    instance.add_backfill(
        PartitionBackfill.from_asset_graph_subset(
            backfill_id=backfill_id,
            backfill_timestamp=time.time(),
            tags={"clipfoundry/cli": "materialize"},
            dynamic_partitions_store=instance,
            asset_graph_subset=whole_graph(defs.resolve_asset_graph(), wanted),
            title=f"clipfoundry materialize ({len(wanted)} shards)",
            description="every declared stage: per-shard ones for these shards, global ones once",
            run_config=None,
        )
    )
    print(f"backfill {backfill_id}: every stage for {len(wanted)} shard(s)")
    if args.no_daemon:
        return 0

    def finished() -> BulkActionStatus | None:
        status = instance.get_backfill(backfill_id).status
        return status if status in BULK_ACTION_TERMINAL_STATUSES else None

    def wait() -> BulkActionStatus | None:
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline and not finished():
            time.sleep(2)
        return finished()

    if all_daemons_live(instance):
        status = wait()
    else:
        with running_daemon(os.environ["DAGSTER_HOME"]):
            status = wait()
    print(f"backfill {backfill_id}: {status.value if status else f'not finished after {args.timeout:.0f}s'}")
    return 0 if status == BulkActionStatus.COMPLETED_SUCCESS else 1


if __name__ == "__main__":
    sys.exit(main())
