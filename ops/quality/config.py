"""The quality settings: heuristic rules (a named preset, any rule set on its own), the CLIP score and the judge.

The models themselves are loaded by the ops from these settings; nothing here does any I/O.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from ops.quality.heuristics import PRESETS, HeuristicConfig
from ops.quality.judge import JudgeConfig


@dataclass(frozen=True)
class HeuristicRules:
    """A preset as the starting point, then each rule that is set (not None) on its own; 0 (or an empty language
    list) turns a rule off. For 64 px images, ``HeuristicRules(min_side=0)`` keeps DataComp's language and
    caption rules without its 200 px rule."""

    preset: str = "datacomp_basic"
    languages: tuple[str, ...] | None = None
    min_words: int | None = None
    max_words: int | None = None
    min_chars: int | None = None
    max_chars: int | None = None
    min_side: int | None = None
    max_aspect_ratio: float | None = None

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(f"heuristics preset must be one of {sorted(PRESETS)}, not {self.preset!r}")

    def resolve(self) -> HeuristicConfig:
        rules = {k: v for k, v in asdict(self).items() if k != "preset" and v is not None}
        if "languages" in rules:
            rules["languages"] = tuple(rules["languages"])
        return replace(PRESETS[self.preset], **rules)


@dataclass(frozen=True)
class ClipScoreConfig:
    """Which CLIP model scores the pairs, and the filter on its score.

    The weights come from exactly one of: an open_clip ``pretrained`` tag or checkpoint path, an MLflow
    ``mlflow_uri`` (``runs:/…`` or ``models:/…``), the newest version of ``registered_model`` once one exists
    (the model this pipeline trained on an earlier run), or ``bootstrap``: the round-0 model the graph trains in
    this run (:mod:`ops.bootstrap`), architecture included. Otherwise ``model`` is the open_clip architecture
    (with ``architecture_config`` for a custom one); without it there is no CLIP score. The filter is an absolute
    ``threshold`` or a ``top_fraction`` over all shards; the global threshold of a top fraction moves only when the
    share it keeps drifts more than ``tolerance`` from the target, so adding a shard rarely changes older shards'
    decisions.
    """

    model: str | None = None
    pretrained: str | None = None
    mlflow_uri: str | None = None
    registered_model: str | None = None
    architecture_config: dict[str, Any] | None = None
    bootstrap: bool = False
    threshold: float | None = None
    top_fraction: float | None = None
    tolerance: float = 0.01
    batch_size: int = 64

    def __post_init__(self) -> None:
        if self.bootstrap:
            if self.model is not None or self.architecture_config is not None:
                raise ValueError("a CLIP score from the bootstrap takes its architecture from it: leave model unset")
        elif self.model is None:
            return
        sources = [s for s in (self.pretrained, self.mlflow_uri, self.registered_model) if s is not None]
        if len(sources) != (0 if self.bootstrap else 1):
            raise ValueError(
                "a CLIP score needs weights: set exactly one of pretrained, mlflow_uri, registered_model, bootstrap"
            )
        if (self.threshold is None) == (self.top_fraction is None):
            raise ValueError("with a CLIP model, set exactly one of threshold and top_fraction")
        if self.top_fraction is not None and not 0.0 < self.top_fraction <= 1.0:
            raise ValueError(f"top_fraction must be in (0, 1], got {self.top_fraction}")

    @property
    def configured(self) -> bool:
        """Whether the settings ask for a CLIP score at all."""
        return self.model is not None or self.bootstrap


@dataclass(frozen=True)
class QualityConfig:
    """Filters run cheapest first: heuristics, then the CLIP score, then the VLM judge."""

    heuristics: HeuristicRules = field(default_factory=HeuristicRules)
    clip: ClipScoreConfig = field(default_factory=ClipScoreConfig)
    judge: JudgeConfig = field(default_factory=JudgeConfig)
