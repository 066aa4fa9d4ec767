"""The recaption op: a synthetic caption beside the raw one for every sample that reaches it.

Synthetic captions help CLIP most when mixed with the raw alt text rather than replacing it (LaCLIP, VeCLIP,
Recap-DataComp), so this stage never touches the raw caption: it writes ``recaption/<shard>.parquet`` with
``synthetic_text`` and the ``captioner`` that wrote it. Captions are kept whole however long; training samples
sentences to fit CLIP's 77 tokens. Generation is greedy and bounded by ``max_new_tokens``.

Every entering sample stays kept unless its image cannot be decoded: a sample without a synthetic caption (no
captioner configured, or an empty answer) still trains on its raw caption, so ``synthetic_text`` is null rather
than the sample being dropped. The prompt may quote the raw caption through ``{caption}`` (VeCLIP-style fusion).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pyarrow as pa
import pyarrow.compute as pc
from PIL import Image

from infra.lake import Lake
from ops import graph
from ops.quality.checkpoint import run_batches
from ops.quality.judge import render_prompt
from ops.report import StageReport
from ops.stage import Decisions, run_shard_stage
from ops.vlm.backend import Captioner

UNDECODABLE = "undecodable"
REASONS: tuple[str, ...] = (UNDECODABLE,)
MAX_NEW_TOKENS = 1024
RECAPTION_PROMPT = (
    "Describe this image in detail in a few sentences: the main subjects and their attributes, what they are "
    "doing, the setting, and any clearly readable text. Describe only what is visible."
)
SCHEMA = pa.schema(
    [
        ("uid", pa.string()),
        ("synthetic_text", pa.string()),
        ("captioner", pa.string()),
        ("kept", pa.bool_()),
        ("reason", pa.string()),
    ]
)


@dataclass(frozen=True)
class RecaptionConfig:
    """The captioner (a VLM checkpoint folder or hub id run by ``backend``; none: no synthetic captions) and how
    it is asked; the prompt may quote the raw caption as ``{caption}``."""

    model: str | None = None
    backend: str = "hf"
    prompt: str = RECAPTION_PROMPT
    max_new_tokens: int = 160
    max_caption_chars: int = 1000
    batch_size: int = 8

    def __post_init__(self) -> None:
        if not 1 <= self.max_new_tokens <= MAX_NEW_TOKENS:
            raise ValueError(f"max_new_tokens must be in 1..{MAX_NEW_TOKENS}, got {self.max_new_tokens}")


def recaption_shard(lake: Lake, shard: str, config: RecaptionConfig, captioner: Captioner | None) -> StageReport:
    """Caption every sample the stage's declared input kept; publish the table, then the report."""

    def decide(samples: pa.Table) -> Decisions:
        uids = samples["uid"].to_pylist()
        if captioner is None:
            n = len(uids)
            table = pa.table(
                {
                    "uid": uids,
                    "synthetic_text": [None] * n,
                    "captioner": [None] * n,
                    "kept": [True] * n,
                    "reason": [""] * n,
                },
                schema=SCHEMA,
            )
            return Decisions(table, extra={"captioner": "no captioner configured"})
        before = captioner.model_seconds
        caption_of = dict(zip(uids, samples["text"].to_pylist(), strict=True))

        def process(batch: list[str], images: list[Image.Image | None]) -> pa.Table:
            ok = [i for i, im in enumerate(images) if im is not None]
            prompts = [render_prompt(config.prompt, caption_of[batch[i]], config.max_caption_chars) for i in ok]
            answers = captioner.generate([images[i] for i in ok], prompts, config.max_new_tokens) if ok else []
            texts: list[str | None] = [None] * len(batch)
            for i, answer in zip(ok, answers, strict=True):
                texts[i] = answer.strip() or None
            return pa.table(
                {
                    "uid": batch,
                    "synthetic_text": texts,
                    "captioner": [captioner.name if i in ok else None for i in range(len(batch))],
                    "kept": [im is not None for im in images],
                    "reason": ["" if im is not None else UNDECODABLE for im in images],
                },
                schema=SCHEMA,
            )

        settings = {"captioner": captioner.name, "config": asdict(config)}
        pairs = list(zip(uids, samples["key"].to_pylist(), strict=True))
        home = graph.stage("recaption").home
        rows, staged = run_batches(lake, home, shard, settings, pairs, config.batch_size, SCHEMA, process)
        table = rows.take(pc.index_in(samples["uid"], value_set=rows["uid"]))
        captioned = table["synthetic_text"].drop_null()
        extra = {
            "captioner": captioner.name,
            "captioned": len(captioned),
            "empty_captions": int(pc.sum(table["kept"]).as_py() or 0) - len(captioned),
            "mean_words": float(pc.mean(pc.list_value_length(pc.utf8_split_whitespace(captioned))).as_py() or 0.0),
            "model_seconds": captioner.model_seconds - before,
        }
        return Decisions(table, extra=extra, after_publish=staged.clear)

    return run_shard_stage(lake, graph.stage("recaption"), shard, decide, columns=["key", "text"])
