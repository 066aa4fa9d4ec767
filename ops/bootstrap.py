"""The bootstrap: round 0 of the CapFilt loop, inside one run of the graph.

Without weights on the machine there is no CLIP model to score with, no judge and no captioner, so the model
filters would change nothing. The ``bootstrap`` stage trains one on the data the graph has already curated
without models (round 0: what dedup, MetaCLIP curation and the heuristics kept, balanced over the global entry
counts) and the stages after it score, judge, filter and recaption with it (round 1), before ``dataset`` and
``model`` train the final CLIP on the result. A CoCa serves all three roles: its two towers give the CLIP score
and the judge's similarity, its text decoder the judge's caption likelihood and the synthetic captions.

Which stages use it is said once, in their own settings: a CLIP score with ``bootstrap=True``, a judge or a
captioner whose ``model`` is :data:`BOOTSTRAP` (backend ``coca``). The stage trains only when some setting names
it, so configuring a real VLM (HF or vLLM) in its place needs no other change; with no user it records that and
trains nothing. Its output, :data:`OUTPUT`, names the registered model version every user loads, so all of round
1 is decided by exactly one model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from infra.lake import Lake
from ops import graph
from ops.training.config import ModelConfig, TrainingSettings, is_coca

if TYPE_CHECKING:
    from ops.quality.config import QualityConfig
    from ops.recaption.shard import RecaptionConfig

BOOTSTRAP = "bootstrap"  # the model setting of a judge or captioner that means "the round-0 model of this graph"
OUTPUT = "bootstrap/model.json"
COCA_BACKEND = "coca"


@dataclass(frozen=True)
class BootstrapConfig(TrainingSettings):
    """How round 0's model is trained: an open_clip CoCa (name containing "coca", or a custom config with a
    ``multimodal_cfg``) by the same open_clip_train path as ``model``, registered as ``registered_model``."""

    architecture: str = "coca_ViT-B-32"
    epochs: int = 2
    registered_model: str = "clipfoundry-bootstrap"

    def training(self) -> ModelConfig:
        """The training settings as the ``model`` stage's, so both train through one path."""
        return ModelConfig(**asdict(self))


@dataclass(frozen=True)
class BootstrapModel:
    """What round 0 produced: the registered version every round-1 stage loads, and how it was made."""

    registered_model: str
    version: str
    architecture: str
    architecture_config: dict[str, Any] | None
    dataset_version: str
    samples: int
    metrics: dict[str, float] = field(default_factory=dict)
    round: int = 0

    @property
    def uri(self) -> str:
        return f"models:/{self.registered_model}/{self.version}"

    @property
    def name(self) -> str:
        return f"{self.registered_model}/{self.version}"


def users(quality: QualityConfig, recaption: RecaptionConfig) -> list[str]:
    """The stages whose settings name the bootstrap model, each checked to be a use the bootstrap can serve."""
    found = []
    if quality.clip.bootstrap:
        found.append("clip_scores")
    for stage, vlm in (("judge_scores", quality.judge), ("recaption", recaption)):
        if vlm.model == BOOTSTRAP:
            if vlm.backend != COCA_BACKEND:
                raise ValueError(f"{stage}: the bootstrap model is a CoCa; set backend 'coca', not {vlm.backend!r}")
            found.append(stage)
    return found


def curation_round(lake: Lake) -> int:
    """Which CapFilt round the final dataset closes: 1 when the bootstrap trained a model for some stage to use,
    else 0 (no model filter, or models from elsewhere)."""
    if not lake.exists(OUTPUT):
        return 0
    found = lake.read_json(OUTPUT)
    return 1 if found.get("model") is not None and found.get("used_by") else 0


def check_trainable(config: BootstrapConfig) -> None:
    """Refuse, before any data is written, an architecture that cannot caption (not a CoCa)."""
    if not is_coca(config.architecture, config.architecture_config):
        raise ValueError(
            f"the bootstrap trains a CoCa (it captions and judges); {config.architecture!r} is not one: name an "
            "open_clip CoCa (e.g. coca_ViT-B-32) or give a config with a multimodal_cfg"
        )


def round0_through() -> str:
    """The per-shard stage whose kept samples are round 0's data: the one the ``bootstrap`` stage reads."""
    return next(d for d in graph.stage(BOOTSTRAP).deps if graph.stage(d).per_shard)


def write_bootstrap(lake: Lake, model: BootstrapModel | None, used_by: list[str]) -> None:
    """Publish round 0's outcome (or that nothing uses it) for the stages that read it."""
    lake.write_json(OUTPUT, {"used_by": used_by, "model": asdict(model) if model is not None else None})


def read_bootstrap(lake: Lake) -> BootstrapModel:
    """The round-0 model a round-1 stage must use; a clear error when the bootstrap has not produced one."""
    if not lake.exists(OUTPUT):
        raise FileNotFoundError(f"{OUTPUT} is missing: materialize the bootstrap stage first")
    found = lake.read_json(OUTPUT)
    if found.get("model") is None:
        raise ValueError(
            f"a setting names the bootstrap model, but the bootstrap trained none (its users were {found['used_by']}): "
            "re-materialize the bootstrap stage with the current settings"
        )
    return BootstrapModel(**found["model"])
