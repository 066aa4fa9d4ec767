"""The stage graph, declared once.

Every stage of the pipeline is one :class:`Stage` in :func:`stages`, listed in pipeline order. A declaration says
whether the stage works per shard or once over all shards, which stage's kept samples enter it, what else it
reads, where it writes, the reasons it may drop a sample for, and the engine configs its settings come from.
Everything else is derived from this list: the Dagster assets' dependencies, automation conditions and
conservation checks, the jobs, the samples a per-shard op reads (:mod:`ops.stage`), ``clipfoundry trace``, the
demo's summary and the stage table in the README.

A per-shard stage that decides samples *flows*: the next flowing stage takes what it kept, so inserting a stage
is one new entry at its place in the list. A stage that ``annotates`` (scores, hashes) writes a table about the
samples of the stage it takes without narrowing what later stages see.

Stages are looked up when an op runs (``graph.stage("dedup")``), never at import time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from functools import cache
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from infra.lake import Lake
    from ops.report import StageReport

Scope = Literal["shard", "global"]
# When a global stage re-runs: on upstream updates; once (then by hand); or when its input's version changes.
Trigger = Literal["updates", "once", "new_version"]


@dataclass(frozen=True)
class Stage:
    """One stage. ``takes`` and ``reads`` name other stages; ``folder`` is where a per-shard stage writes
    ``<folder>/<shard>.parquet`` and its report; ``output`` is a global stage's main artifact. A global stage
    re-runs when one of the stages it ``follows`` (default: all it reads) changes, as its ``trigger`` says."""

    name: str
    scope: Scope
    group: str
    description: str
    takes: str | None = None
    reads: tuple[str, ...] = ()
    annotates: bool = False
    reasons: tuple[str, ...] = ()
    settings: tuple[type, ...] = ()
    folder: str | None = None
    output: str | None = None
    verify: Callable[[Lake, str, StageReport], list[str]] | None = None
    trigger: Trigger = "updates"
    follows: tuple[str, ...] | None = None
    pool: str | None = None

    @property
    def per_shard(self) -> bool:
        return self.scope == "shard"

    @property
    def deps(self) -> tuple[str, ...]:
        """Every stage this one reads, its input first."""
        return (self.takes, *self.reads) if self.takes else self.reads

    def table(self, shard: str) -> str:
        """The per-shard decision table: one row per entering sample, ``uid``, ``kept``, ``reason`` and more."""
        return f"{self.home}/{shard}.parquet"

    def report(self, shard: str) -> str:
        """The per-shard :class:`ops.report.StageReport`, written last: its presence marks the shard done."""
        return f"{self.home}/{shard}.report.json"

    @property
    def home(self) -> str:
        """The lake folder of a per-shard stage's files."""
        if not self.per_shard:
            raise ValueError(f"{self.name} is a global stage: it has no per-shard table")
        return self.folder or self.name


def _declare(stages: Sequence[Stage]) -> dict[str, Stage]:
    """Fill in each flowing stage's default input (the previous flowing stage) and check the graph."""
    out: dict[str, Stage] = {}
    previous: str | None = None
    for stage in stages:
        if stage.name in out:
            raise ValueError(f"stage {stage.name!r} declared twice")
        if stage.per_shard and stage.takes is None and previous is not None:
            stage = replace(stage, takes=previous)
        for dep in stage.deps:
            if dep not in out:
                raise ValueError(f"{stage.name} depends on {dep!r}, which is not declared before it")
        if stage.takes is not None and not out[stage.takes].per_shard:
            raise ValueError(f"{stage.name} takes the samples of {stage.takes}, a global stage")
        if stage.per_shard and not stage.annotates:
            previous = stage.name
        out[stage.name] = stage
    return out


@cache
def stages() -> dict[str, Stage]:
    """Every stage by name, in pipeline order.

    Built on first use rather than at import: the declarations import each stage's vocabulary and configs, and
    the stage modules import this module, so building it at import time would tie them in a knot.
    """
    from ops.bootstrap import BootstrapConfig
    from ops.crawl.reasons import PAIR_REASONS
    from ops.crawl.shard import CrawlConfig, record_problems
    from ops.curation.config import CurationConfig
    from ops.curation.reasons import REASONS as CURATION_REASONS
    from ops.dataset.writer import REASONS as DATASET_REASONS
    from ops.dataset.writer import DatasetConfig
    from ops.dedup.config import DedupConfig
    from ops.dedup.reasons import HASH_REASONS
    from ops.dedup.reasons import REASONS as DEDUP_REASONS
    from ops.download import REASONS as DOWNLOAD_REASONS
    from ops.download import DownloadConfig, tar_problems
    from ops.evaluation.config import EvaluationConfig
    from ops.guardrails import GuardrailConfig
    from ops.quality.config import QualityConfig
    from ops.quality.reasons import CLIP_SCORE_REASONS, HEURISTIC_REASONS, JUDGE_SCORE_REASONS
    from ops.quality.reasons import REASONS as QUALITY_REASONS
    from ops.recaption.shard import REASONS as RECAPTION_REASONS
    from ops.recaption.shard import RecaptionConfig
    from ops.safety import REASONS as SAFETY_REASONS
    from ops.safety import SafetyConfig
    from ops.training.config import ModelConfig

    return _declare(
        [
            Stage(
                "crawl",
                "shard",
                "ingest",
                "WARC/WAT/URL list → image-text pairs; records framed and every byte accounted for; alt/title text, "
                "relative URLs resolved, opt-out honoured (one rule with download), URL policy, language ID, image "
                "floods capped, in-shard repeats dropped, stable uid",
                reasons=PAIR_REASONS,
                settings=(CrawlConfig,),
                verify=record_problems,
            ),
            Stage(
                "download",
                "shard",
                "ingest",
                "img2dataset into a webdataset tar + ledger; non-public addresses refused after DNS and redirects; "
                "each request held to a deadline and a body limit; decompression bombs refused from the header, "
                "OpenCV's pixel limit behind",
                reasons=DOWNLOAD_REASONS,
                settings=(DownloadConfig,),
                verify=tar_problems,
                pool="download",
            ),
            Stage(
                "image_hashes",
                "shard",
                "dedup",
                "pixel SHA-256, pHash (identical to imagehash), crop windows and detail thumbnails; the only dedup "
                "step that reads pixels",
                annotates=True,
                reasons=HASH_REASONS,
                settings=(DedupConfig,),
                folder="dedup/hashes",
            ),
            Stage(
                "dedup_index",
                "global",
                "dedup",
                "exact, near (incl. crops) and optional semantic clusters across ALL shards, eval decontamination, "
                "survivors by a total order on the samples",
                reads=("image_hashes",),
                settings=(DedupConfig,),
                output="dedup/index/summary.json",
            ),
            Stage(
                "dedup",
                "shard",
                "dedup",
                "the shard's samples kept, or dropped as a duplicate of a named survivor or as eval contamination",
                takes="download",
                reads=("image_hashes", "dedup_index"),
                reasons=DEDUP_REASONS,
                settings=(DedupConfig,),
            ),
            Stage(
                "metaclip_metadata",
                "global",
                "curation",
                "the MetaCLIP entry list: loaded, or built once from WordNet and the crawl's unigrams/PMI bigrams",
                reads=("crawl",),
                settings=(CurationConfig,),
                output="curation/metadata.json",
                trigger="once",
            ),
            Stage(
                "curation",
                "shard",
                "curation",
                "MetaCLIP substring matching (4–6× pyahocorasick); the matched entry ids are stored for balancing",
                reads=("metaclip_metadata",),
                reasons=CURATION_REASONS,
                settings=(CurationConfig,),
            ),
            Stage(
                "entry_counts",
                "global",
                "curation",
                "matches per MetaCLIP entry summed over ALL shards: what balancing divides t by",
                reads=("curation",),
                settings=(CurationConfig,),
                output="curation/entry_counts/counts.parquet",
            ),
            Stage(
                "heuristics",
                "shard",
                "quality",
                "metadata rules before any model (DataComp basic preset, each rule settable): language, caption "
                "length, shorter side, aspect ratio",
                reasons=HEURISTIC_REASONS,
                settings=(QualityConfig,),
            ),
            Stage(
                "bootstrap",
                "global",
                "bootstrap",
                "round 0 of the CapFilt loop: a CoCa trained (open_clip_train, torchrun via Pipes) on what curation "
                "and the heuristics kept, balanced; registered in MLflow and scored zero-shot. The CLIP score, judge "
                "and captioner whose settings name it use it; nothing is trained when none does",
                reads=("heuristics", "entry_counts"),
                settings=(
                    BootstrapConfig,
                    QualityConfig,
                    RecaptionConfig,
                    DatasetConfig,
                    CurationConfig,
                    EvaluationConfig,
                ),
                output="bootstrap/model.json",
                trigger="once",
                pool="gpu",
            ),
            Stage(
                "clip_scores",
                "shard",
                "quality",
                "raw CLIP score of every sample entering quality, kept apart so a top fraction can span all shards",
                reads=("bootstrap",),
                annotates=True,
                reasons=CLIP_SCORE_REASONS,
                settings=(QualityConfig,),
                folder="quality/clip",
                pool="gpu",
            ),
            Stage(
                "clip_score_threshold",
                "global",
                "quality",
                "DataComp's top-fraction threshold over every shard's scores; it moves only when the kept share drifts "
                "past a tolerance",
                reads=("clip_scores",),
                settings=(QualityConfig,),
                output="quality/clip_threshold.json",
            ),
            Stage(
                "judge_scores",
                "shard",
                "quality",
                "the pair judge's (bootstrapped CoCa) similarity and caption likelihood for every sample entering "
                "quality; every sample marked unscored (`judge_off`) when the judge is not in mode `pairs`",
                reads=("bootstrap",),
                annotates=True,
                reasons=JUDGE_SCORE_REASONS,
                settings=(QualityConfig,),
                folder="quality/judge_scores",
                pool="gpu",
            ),
            Stage(
                "judge_score_threshold",
                "global",
                "quality",
                "the pair judge's top-fraction thresholds over every shard's scores, per score; nothing to compute "
                "when the judge is not in mode `pairs`",
                reads=("judge_scores",),
                settings=(QualityConfig,),
                output="quality/judge_threshold.json",
            ),
            Stage(
                "quality",
                "shard",
                "quality",
                "the model filters on what the heuristics kept: CLIP score, then the VLM judge; the first filter "
                "that refuses a sample names it",
                reads=("clip_scores", "clip_score_threshold", "judge_scores", "judge_score_threshold"),
                reasons=QUALITY_REASONS,
                settings=(QualityConfig,),
                pool="gpu",
            ),
            Stage(
                "safety",
                "shard",
                "quality",
                "captions carrying personal data (e-mail, payment card, IBAN, national id, phone, IP address) dropped",
                reasons=SAFETY_REASONS,
                settings=(SafetyConfig,),
            ),
            Stage(
                "recaption",
                "shard",
                "recaption",
                "a VLM caption beside the raw one; none invented when no captioner is configured",
                reads=("bootstrap",),
                reasons=RECAPTION_REASONS,
                settings=(RecaptionConfig,),
                pool="gpu",
            ),
            Stage(
                "dataset",
                "global",
                "training",
                "MetaCLIP balancing (p_keep from the global counts), then versioned webdataset shards with raw and "
                "synthetic captions and lineage; manifest of counts per stage and reason",
                reads=("recaption", "entry_counts"),
                reasons=DATASET_REASONS,
                settings=(DatasetConfig, CurationConfig, GuardrailConfig),
                output="dataset/<version>/manifest.json",
            ),
            Stage(
                "model",
                "global",
                "training",
                "open_clip_train under torchrun through Dagster Pipes; registered in MLflow with the dataset's lineage",
                reads=("dataset",),
                settings=(ModelConfig,),
                output="models/runs/<run>/",
                trigger="new_version",
                pool="gpu",
            ),
            Stage(
                "evaluation",
                "global",
                "training",
                "zero-shot top-1/top-5/mean per-class recall, retrieval R@1/5/10, per language, Neglected Tails, "
                "difference to the previous model",
                reads=("model", "entry_counts"),
                settings=(EvaluationConfig, ModelConfig),
                output="evaluation/<model run>/<set>.parquet",
                pool="gpu",
                follows=("model",),
            ),
        ]
    )


def stage(name: str) -> Stage:
    try:
        return stages()[name]
    except KeyError:
        raise KeyError(f"no stage {name!r}; declared: {list(stages())}") from None


def shard_stages() -> list[Stage]:
    """Per-shard stages in pipeline order."""
    return [s for s in stages().values() if s.per_shard]


def flow(last: str) -> list[Stage]:
    """The chain of stages whose kept samples lead into ``last`` (following ``takes``), first stage first."""
    chain: list[Stage] = []
    name: str | None = last
    while name is not None:
        chain.append(stage(name))
        name = chain[-1].takes
    return chain[::-1]


def last_flowing() -> Stage:
    """The last per-shard stage that decides samples: what it kept is what reaches the dataset."""
    return [s for s in shard_stages() if not s.annotates][-1]


def ancestors(name: str) -> set[str]:
    """Every stage ``name`` depends on, directly or not."""
    seen: set[str] = set()
    todo = list(stage(name).deps)
    while todo:
        dep = todo.pop()
        if dep not in seen:
            seen.add(dep)
            todo.extend(stage(dep).deps)
    return seen


def triggering_deps(name: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(per-shard deps, global deps) whose updates should re-run per-shard stage ``name``.

    A per-shard dep that feeds one of the stage's global deps is left out: its update reaches the stage through
    that global step, which says which shards it affected, instead of running the stage ahead of it. A global step
    that does not follow its inputs' updates (``once``) passes nothing on, so what feeds it still triggers directly.
    """
    s = stage(name)
    global_deps = tuple(d for d in s.deps if not stage(d).per_shard)
    following = [g for g in global_deps if stage(g).trigger == "updates"]
    behind_globals = set().union(*(ancestors(g) for g in following)) if following else set()
    shard_deps = tuple(d for d in s.deps if stage(d).per_shard and d not in behind_globals)
    return shard_deps, global_deps


@cache
def level(name: str) -> int:
    """How many global steps lie before ``name`` on its longest path: stages of one level and scope can run
    together, per-shard ones in one run per shard."""
    s = stage(name)
    return max((level(d) + (1 if s.per_shard and not stage(d).per_shard else 0) for d in s.deps), default=0)


def waves() -> list[tuple[Scope, list[Stage]]]:
    """The stages grouped into runs that can execute together, in order: per-shard stages between two global
    steps, then the global steps that follow them. Each group is one derived job."""
    groups: dict[tuple[int, Scope], list[Stage]] = {}
    for s in stages().values():
        groups.setdefault((level(s.name), s.scope), []).append(s)
    order = sorted(groups, key=lambda k: (k[0], k[1] == "global"))
    return [(scope, groups[key]) for key in order for scope in [key[1]]]


def iter_settings() -> Iterator[type]:
    """Every engine config class some stage declares, once each, in pipeline order."""
    seen: set[type] = set()
    for s in stages().values():
        for config in s.settings:
            if config not in seen:
                seen.add(config)
                yield config


def markdown_table() -> str:
    """The README's table of stages, generated from the declarations (``python -m ops.graph``)."""
    lines = ["| stage | scope | takes | also reads | writes | what it does |", "|---|---|---|---|---|---|"]
    for s in stages().values():
        where = s.table("<shard>") if s.per_shard else s.output or ""
        kind = "shard" + (", annotates" if s.annotates else "") if s.per_shard else "global"
        reads = ", ".join(f"`{r}`" for r in s.reads)
        lines.append(
            f"| `{s.name}` | {kind} | {f'`{s.takes}`' if s.takes else ''} | {reads} | `{where}` | {s.description} |"
        )
    return "\n".join(lines)


def rewrite_readme(path: str) -> None:
    """Put the current :func:`markdown_table` between the README's stage-table markers."""
    begin, end = "<!-- stages: generated by python -m ops.graph README.md -->", "<!-- /stages -->"
    with open(path) as f:
        text = f.read()
    head, _, rest = text.partition(begin)
    _, _, tail = rest.partition(end)
    with open(path, "w") as f:
        f.write(f"{head}{begin}\n{markdown_table()}\n{end}{tail}")


if __name__ == "__main__":
    import sys

    if len(sys.argv) > 1:
        rewrite_readme(sys.argv[1])
    else:
        print(markdown_table())
