"""One small interface in front of every VLM engine, so the judge and the captioner never know which one runs.

A backend turns (image, prompt) pairs into answers with greedy decoding, so the same pair always gets the same
answer, and can optionally read the probabilities of the digit tokens that follow an answer prefix such as
``score: {`` — a judge score from one forward pass instead of a generated rationale. Both engines build the
prompt text with the checkpoint's own chat template (:func:`chat_prompt`), so they see identical prompts.

The bootstrapped CoCa (``coca``, :mod:`ops.vlm.coca`) is the other kind: it follows no prompt, it captions, and
it judges a pair by scoring it directly (:class:`PairScorer`): the contrastive similarity of image and caption,
and the caption's likelihood under its captioner.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
from PIL import Image

BACKENDS = ("hf", "vllm", "coca")
DIGITS = tuple(str(d) for d in range(10))


@dataclass(frozen=True)
class VlmConfig:
    """Which checkpoint to load and how; everything else (prompts, thresholds) belongs to the op using it.

    ``model`` is a local checkpoint folder or a hub id; with ``local_files_only`` unset, the hub is consulted
    only when ``HF_HUB_OFFLINE`` is not set, so an offline machine never tries the network.
    ``processor_kwargs`` reach ``AutoProcessor.from_pretrained`` (for example Qwen2-VL's ``max_pixels``, which
    bounds the image tokens and so the cost per image); ``engine_kwargs`` reach the engine itself:
    ``from_pretrained`` for HF (``attn_implementation``), ``vllm.LLM`` for vLLM (``gpu_memory_utilization``,
    ``max_model_len``, ``load_format="dummy"`` for random-weight benchmarks). For ``coca``, ``model`` is an
    MLflow model URI or an open_clip_train checkpoint file, and ``engine_kwargs`` hold its loading and decoding
    options (see :class:`ops.vlm.coca.CocaBackend`).
    """

    model: str
    backend: str = "hf"
    name: str | None = None
    device: str | None = None
    dtype: str | None = None
    local_files_only: bool | None = None
    processor_kwargs: dict[str, Any] = field(default_factory=dict)
    engine_kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def display_name(self) -> str:
        """What the tables record as the judge or captioner: the given name, else the checkpoint."""
        return self.name or self.model.rstrip("/")

    @property
    def offline(self) -> bool:
        if self.local_files_only is not None:
            return self.local_files_only
        return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


class Captioner(Protocol):
    """What the recaption stage needs: captions, a name that says which model (and version) wrote them."""

    name: str
    model_seconds: float  # wall time spent inside the model (generate or forward), for overhead accounting

    def generate(self, images: Sequence[Image.Image], prompts: Sequence[str], max_new_tokens: int) -> list[str]:
        """One greedy answer per (image, prompt) pair, special tokens removed, surrounding space stripped."""
        ...


class VlmBackend(Captioner, Protocol):
    """An instruction-following VLM: what the prompted judge and the captioner need from an engine."""

    def score_logits(self, images: Sequence[Image.Image], prompts: Sequence[str], answer_prefix: str) -> np.ndarray:
        """Per pair, the probability of each score 1..10 written right after ``answer_prefix`` (shape n×10)."""
        ...


@dataclass(frozen=True)
class PairScores:
    """Per (image, caption) pair: ``similarity``, the cosine of the normalised image and text embeddings, and
    ``likelihood``, the mean log-probability per caption token (end token included) under the captioner."""

    similarity: np.ndarray
    likelihood: np.ndarray


@runtime_checkable
class PairScorer(Protocol):
    """A judge that scores pairs itself, without a prompt (the bootstrapped CoCa)."""

    name: str
    model_seconds: float

    def score_pairs(self, images: Sequence[Image.Image], captions: Sequence[str | None]) -> PairScores: ...


def load_backend(config: VlmConfig) -> Captioner:
    """Load the engine named by ``config.backend``; vLLM is imported only when it is asked for.

    ``hf`` and ``vllm`` give a :class:`VlmBackend`; ``coca`` a captioner that is also a :class:`PairScorer`.
    """
    if config.backend == "coca":
        from ops.vlm.coca import CocaBackend

        return CocaBackend(config)
    if config.backend == "hf":
        from ops.vlm.hf import HfBackend

        return HfBackend(config)
    if config.backend == "vllm":
        from ops.vlm.vllm_backend import VllmBackend

        return VllmBackend(config)
    raise ValueError(f"unknown VLM backend {config.backend!r}; expected one of {BACKENDS}")


def chat_prompt(processor: Any, prompt: str) -> str:
    """The model's own chat template around one image and one user prompt, ready for the assistant's answer."""
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
    return processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def digit_token_ids(tokenizer: Any) -> list[int]:
    """Token ids of "0".."9"; the logit score needs each digit to be one token (true of Qwen, Llama, Gemma)."""
    ids = []
    for digit in DIGITS:
        encoded = tokenizer.encode(digit, add_special_tokens=False)
        if len(encoded) != 1:
            raise ValueError(f"the logit score needs single-token digits; {digit!r} encodes to {encoded}")
        ids.append(encoded[0])
    return ids


def score_distribution(first: np.ndarray, after_one: np.ndarray) -> np.ndarray:
    """Probabilities of the scores 1..10 from two digit distributions (each n×10, columns are "0".."9").

    ``first`` is the distribution of the digit right after the prefix; ``after_one`` the distribution of the
    next digit once "1" was written, which separates "1" from "10". Mass on non-digit tokens is left out, so a
    row sums to the probability that the model answers with a score at all.
    """
    first = np.asarray(first, dtype=np.float64)
    after_one = np.asarray(after_one, dtype=np.float64)
    out = np.zeros((first.shape[0], 10))
    out[:, 0] = first[:, 1] * (1.0 - after_one[:, 0])
    out[:, 1:9] = first[:, 2:10]
    out[:, 9] = first[:, 1] * after_one[:, 0]
    return out
