"""Resumable model passes: each finished batch is saved in the lake before the next one starts.

A model pass over a shard can take hours on CPU and a preempted pod loses everything held in memory, so each
batch's rows are written as one more part file of a hidden staging folder (``<stage>/.staging/<shard>/``, which
:meth:`infra.lake.Lake.list` skips). A re-run reads the parts back, skips those uids and carries on. The folder
is bound to a fingerprint of everything that shapes the result (model, prompt, settings, the exact list of
samples), and parts from any other configuration are thrown away. Because the samples stream in the same order
and the saved parts are whole batches, the remaining samples fall into exactly the batches an uninterrupted run
would have used, so the final table is identical, padding and all.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from itertools import chain
from typing import Any

import pyarrow as pa
from PIL import Image

from infra.lake import Lake
from ops.quality.images import batched, iter_images


def fingerprint(settings: dict[str, Any], uids: Sequence[str]) -> str:
    """A digest of the settings and the exact samples (in order) a pass works on."""
    h = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for uid in uids:
        h.update(b"\0" + uid.encode())
    return h.hexdigest()


class Checkpoint:
    """The saved batches of one pass over one shard."""

    def __init__(self, lake: Lake, stage: str, shard: str, digest: str) -> None:
        self._lake = lake
        self.folder = f"{stage}/.staging/{shard}"
        marker = f"{self.folder}/fingerprint.json"
        if lake.exists(marker) and lake.read_json(marker).get("fingerprint") != digest:
            lake.delete(self.folder)
        if not lake.exists(marker):
            lake.write_json(marker, {"fingerprint": digest})
        self.parts = 0
        while lake.exists(self._part(self.parts)):
            self.parts += 1

    def _part(self, i: int) -> str:
        return f"{self.folder}/part-{i:06d}.parquet"

    def append(self, rows: pa.Table) -> None:
        self._lake.write_parquet(self._part(self.parts), rows)
        self.parts += 1

    def read(self, schema: pa.Schema) -> pa.Table:
        tables = [self._lake.read_parquet(self._part(i)).cast(schema) for i in range(self.parts)]
        return pa.concat_tables(tables) if tables else schema.empty_table()

    def clear(self) -> None:
        self._lake.delete(self.folder)


def run_batches(
    lake: Lake,
    stage: str,
    shard: str,
    settings: dict[str, Any],
    samples: Sequence[tuple[str, str | None]],
    batch_size: int,
    schema: pa.Schema,
    process: Callable[[list[str], list[Image.Image | None]], pa.Table],
) -> tuple[pa.Table, Checkpoint]:
    """Run ``process`` over ``(uid, tar key)`` samples in batches of decoded images, resuming saved batches.

    Returns every row (saved and new) and the checkpoint, which the caller clears once the stage's own table
    is published, so a crash between the two loses nothing.
    """
    checkpoint = Checkpoint(lake, stage, shard, fingerprint(settings, [uid for uid, _ in samples]))
    done = set(checkpoint.read(schema).column("uid").to_pylist())
    wanted = {key: uid for uid, key in samples if key is not None and uid not in done}
    keyless = [(uid, None) for uid, key in samples if key is None and uid not in done]
    for batch in batched(chain(iter_images(lake, shard, wanted), keyless), batch_size):
        uids = [uid for uid, _ in batch]
        checkpoint.append(process(uids, [image for _, image in batch]).cast(schema))
    return checkpoint.read(schema), checkpoint
