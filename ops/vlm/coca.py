"""The bootstrapped captioner and judge: an open_clip CoCa that the pipeline trained on its own curated data.

CoCa is a CLIP (image and text towers, contrastive embeddings) with a text decoder that reads the image's
tokens, so one model both writes captions and judges a pair two ways: the contrastive similarity of image and
caption, and how likely its captioner finds the caption given the image (the mean log-probability per token,
end token included, so captions of different lengths compare). Captions are decoded by
:mod:`ops.vlm.decoding` (beam search; greedy with one beam). CoCa follows no prompt: ``generate`` ignores the
prompts a VLM would get and writes the caption it was trained to write.

The model comes from MLflow (``models:/<name>/<version>``, ``models:/<name>/latest``, ``models:/<name>@<alias>``,
``runs:/…``, an artifact URI, or a downloaded model folder), logged by :func:`infra.tracking.log_coca_model`
with its architecture beside it, or from an ``epoch_<n>.pt`` checkpoint of open_clip_train together with the
architecture it was trained as. A registry URI is resolved to its version number first, so the name this
backend gives every caption and verdict (``<architecture>@models:/<name>/<version>``) says exactly which model
decided.
"""

from __future__ import annotations

import json
import re
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ops.vlm.backend import PairScores, VlmConfig
from ops.vlm.decoding import DecodeConfig, decode
from ops.vlm.hf import pick_device

_OPTIONS = ("architecture", "architecture_config", "tracking_uri", "num_beams", "length_penalty")
_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>[^/]+)|@(?P<alias>[^/]+))/?$")
_SPACE_BEFORE_PUNCTUATION = re.compile(r"\s+([.,;:!?)\]'])")


class CocaBackend:
    """A CoCa in eval mode on one device: captions (:meth:`generate`) and pair scores (:meth:`score_pairs`).

    ``engine_kwargs``: ``architecture`` (the open_clip model name; required with a checkpoint file, read from
    the logged model otherwise) and ``architecture_config`` (a custom config to register under that name),
    ``tracking_uri`` (the MLflow tracking/registry server; default: MLflow's own, ``MLFLOW_TRACKING_URI``),
    ``num_beams`` (1, greedy) and ``length_penalty`` (1.0) for decoding.
    """

    def __init__(self, config: VlmConfig) -> None:
        options = dict(config.engine_kwargs)
        unknown = sorted(set(options) - set(_OPTIONS))
        if unknown:
            raise ValueError(f"unknown coca engine_kwargs {unknown}; expected some of {list(_OPTIONS)}")
        self.device, dtype = pick_device(config.device, config.dtype)
        loaded = load_coca(
            config.model,
            architecture=options.get("architecture"),
            architecture_config=options.get("architecture_config"),
            tracking_uri=options.get("tracking_uri"),
        )
        self.model = loaded.model.to(self.device, dtype).eval()
        self.preprocess, self.tokenizer = loaded.preprocess, loaded.tokenizer
        self.architecture, self.source = loaded.architecture, loaded.source
        self.name = config.name or f"{loaded.architecture}@{loaded.source}"
        self.num_beams = int(options.get("num_beams", 1))
        self.length_penalty = float(options.get("length_penalty", 1.0))
        self.start, self.end = _special_tokens(self.tokenizer)
        self.pad = int(getattr(self.model, "pad_id", 0))
        context = min(int(self.tokenizer.context_length), int(self.model.context_length))
        self.max_new_tokens = context - 1  # the start token takes one position
        self.model_seconds = 0.0

    def _pixels(self, images: Sequence[Image.Image]) -> torch.Tensor:
        pixels = torch.stack([self.preprocess(im) for im in images])
        return pixels.to(self.device, next(self.model.parameters()).dtype)

    def _timed(self, fn: Any) -> Any:
        start = time.perf_counter()
        out = fn()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.model_seconds += time.perf_counter() - start
        return out

    @torch.inference_mode()
    def generate(self, images: Sequence[Image.Image], prompts: Sequence[str], max_new_tokens: int) -> list[str]:
        """One caption per image; ``prompts`` are not read (CoCa follows none). At most ``max_new_tokens``
        tokens, and never more than the model's context holds."""
        if len(images) != len(prompts):
            raise ValueError(f"{len(images)} images but {len(prompts)} prompts")
        if not images:
            return []
        pixels = self._pixels(images)
        _, image_embs = self._timed(lambda: self.model._encode_image(pixels))

        def next_logprobs(rows: torch.Tensor, prefixes: torch.Tensor) -> torch.Tensor:
            return self._timed(lambda: self._next_logprobs(image_embs[rows.to(self.device)], prefixes))

        config = DecodeConfig(min(max_new_tokens, self.max_new_tokens), self.num_beams, self.length_penalty)
        return [self.detokenize(d.tokens) for d in decode(next_logprobs, len(images), self.start, self.end, config)]

    def _next_logprobs(self, image_embs: torch.Tensor, prefixes: torch.Tensor) -> torch.Tensor:
        _, token_embs = self.model.text(prefixes.to(self.device))
        logits = last_position_logits(self.model.text_decoder, image_embs, token_embs)
        return torch.log_softmax(logits.float(), dim=-1).cpu()

    def detokenize(self, tokens: Sequence[int]) -> str:
        """Text of generated tokens, with the tokenizer's spaces before punctuation removed ("a cat.")."""
        text = self.tokenizer.decode(list(tokens))
        return _SPACE_BEFORE_PUNCTUATION.sub(r"\1", " ".join(text.split()))

    @torch.inference_mode()
    def score_pairs(self, images: Sequence[Image.Image], captions: Sequence[str | None]) -> PairScores:
        """Similarity and length-normalised caption log-likelihood per pair (a missing caption scores as "").

        The text tower runs once on the captions padded to the context, as in training; its token outputs
        before the padding are what teacher forcing needs (the tower is causal), so the decoder then runs only
        up to the longest caption of the batch. A caption longer than the context is cut, its last token
        replaced by the end token, as the tokenizer does for training.
        """
        if len(images) != len(captions):
            raise ValueError(f"{len(images)} images but {len(captions)} captions")
        if not images:
            return PairScores(np.zeros(0, np.float32), np.zeros(0, np.float32))
        pixels = self._pixels(images)
        tokens = self.tokenizer([c or "" for c in captions]).to(self.device)
        length = int((tokens != self.pad).sum(dim=1).max())

        def forward() -> tuple[torch.Tensor, torch.Tensor]:
            image_latent, image_embs = self.model._encode_image(pixels, normalize=True)
            text_latent, token_embs = self.model._encode_text(tokens, normalize=True)
            similarity = (image_latent * text_latent).sum(dim=-1)
            logits = self.model.text_decoder(image_embs, token_embs[:, : length - 1])
            labels = tokens[:, 1:length]
            logprobs = torch.log_softmax(logits.float(), dim=-1).gather(-1, labels[..., None])[..., 0]
            counted = labels != self.pad
            likelihood = (logprobs * counted).sum(dim=1) / counted.sum(dim=1).clamp(min=1)
            return similarity, likelihood

        similarity, likelihood = self._timed(forward)
        return PairScores(
            similarity.float().cpu().numpy().astype(np.float32), likelihood.cpu().numpy().astype(np.float32)
        )


def last_position_logits(decoder: torch.nn.Module, image_embs: torch.Tensor, text_embs: torch.Tensor) -> torch.Tensor:
    """The decoder's next-token logits at the last position only.

    open_clip's ``MultimodalTransformer.forward`` projects every position onto the vocabulary (49,408 tokens),
    which a decoding step throws away but for the last; this runs the same blocks and projects only that one.
    Tested equal to the model's own forward.
    """
    seq_len = text_embs.shape[1]
    batch_first = getattr(decoder, "batch_first", True)
    if not batch_first:
        image_embs, text_embs = image_embs.permute(1, 0, 2), text_embs.permute(1, 0, 2)
    for block, cross in zip(decoder.resblocks, decoder.cross_attn, strict=True):
        text_embs = block(text_embs, attn_mask=decoder.attn_mask[:seq_len, :seq_len])
        text_embs = cross(text_embs, k_x=image_embs, v_x=image_embs)
    last = text_embs[:, -1] if batch_first else text_embs[-1]
    return decoder.ln_final(last) @ decoder.text_projection


def _special_tokens(tokenizer: Any) -> tuple[int, int]:
    start, end = getattr(tokenizer, "sot_token_id", None), getattr(tokenizer, "eot_token_id", None)
    if start is None or end is None:
        raise ValueError(
            f"the CoCa backend decodes with open_clip's CLIP tokenizer (start/end-of-text tokens); "
            f"this model's tokenizer is a {type(tokenizer).__name__}"
        )
    return int(start), int(end)


@dataclass(frozen=True)
class LoadedCoca:
    """A CoCa ready for inference, with its preprocessing, tokenizer, architecture and where it came from."""

    model: Any
    preprocess: Any
    tokenizer: Any
    architecture: str
    source: str


def load_coca(
    source: str,
    *,
    architecture: str | None = None,
    architecture_config: dict[str, Any] | None = None,
    tracking_uri: str | None = None,
) -> LoadedCoca:
    """A CoCa from a checkpoint file or an MLflow model (see the module docstring), on the CPU."""
    import open_clip

    from ops.training.checkpoint import load_trained, register_model_config

    if Path(source).is_file():
        if architecture is None:
            raise ValueError(f"{source} is a checkpoint file: give its architecture (engine_kwargs 'architecture')")
        model, preprocess, tokenizer = load_trained(source, architecture, architecture_config)
        label = str(source)
    else:
        import mlflow.pytorch

        from infra.tracking import ARCHITECTURE_FILE

        uri, label = resolve_model_uri(source, tracking_uri)
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(source) if Path(source).is_dir() else Path(_download(uri, tmp, tracking_uri))
            described = local / ARCHITECTURE_FILE
            if described.exists():
                logged = json.loads(described.read_text())
                architecture = architecture or logged["architecture"]
                architecture_config = architecture_config or logged.get("architecture_config")
            if architecture is None:
                raise ValueError(f"{source} has no {ARCHITECTURE_FILE}: give its architecture (engine_kwargs)")
            model = mlflow.pytorch.load_model(str(local), map_location="cpu")
        visual = model.visual
        preprocess = open_clip.image_transform(
            visual.image_size,
            is_train=False,
            mean=getattr(visual, "image_mean", None),
            std=getattr(visual, "image_std", None),
        )
        if architecture_config is not None:
            register_model_config(architecture, architecture_config)
        tokenizer = open_clip.get_tokenizer(architecture)
    if not hasattr(model, "text_decoder"):
        raise TypeError(f"{source} is a {type(model).__name__} ({architecture}), not an open_clip CoCa")
    return LoadedCoca(model.eval(), preprocess, tokenizer, architecture, label)


def resolve_model_uri(uri: str, tracking_uri: str | None = None) -> tuple[str, str]:
    """(where to download the model from, the label to record). A ``models:/`` URI is pinned to its version:
    ``models:/name/latest`` and ``models:/name@alias`` become ``models:/name/<n>``; other URIs are their own label.
    """
    match = _MODELS_URI.match(uri)
    if match is None:
        return uri, uri
    from mlflow import MlflowClient

    name, version, alias = match["name"], match["version"], match["alias"]
    if alias is None and version != "latest" and not version.isdigit():
        raise ValueError(f"{uri}: give a version number, 'latest' or an alias (MLflow 3 deprecates stages)")
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    if alias is not None:
        version = str(client.get_model_version_by_alias(name, alias).version)
    elif version == "latest":
        versions = client.search_model_versions(f"name = '{name}'")
        if not versions:
            raise ValueError(f"{uri}: the registered model {name!r} has no version")
        version = str(max(int(v.version) for v in versions))
    return client.get_model_version_download_uri(name, version), f"models:/{name}/{version}"


def _download(uri: str, folder: str, tracking_uri: str | None) -> str:
    from mlflow.artifacts import download_artifacts

    return download_artifacts(artifact_uri=uri, dst_path=folder, tracking_uri=tracking_uri)
