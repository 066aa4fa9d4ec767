"""Load a trained checkpoint back as an open_clip model, with its preprocessing and tokenizer, for evaluation."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


def register_model_config(model: str, model_config: dict[str, Any]) -> None:
    """Make a custom architecture known to open_clip by name (its model and tokenizer factories)."""
    import open_clip  # heavy (transformers, timm): imported where a model is needed, not where settings load

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{model}.json"
        path.write_text(json.dumps(model_config))
        open_clip.add_model_config(path)


def load_trained(
    checkpoint: str | Path,
    model: str,
    model_config: dict[str, Any] | None = None,
    device: str | torch.device = "cpu",
) -> tuple[torch.nn.Module, Any, Any]:
    """(model in eval mode, eval preprocess, tokenizer) from an open_clip_train ``epoch_<n>.pt``.

    open_clip's own loader reads the training checkpoint (its ``state_dict``, DDP's ``module.`` prefix
    removed); a custom architecture is registered under ``model`` first, as in training.
    """
    import open_clip

    if model_config is not None:
        register_model_config(model, model_config)
    clip, _, preprocess = open_clip.create_model_and_transforms(model, pretrained=str(checkpoint), device=device)
    clip.eval()
    return clip, preprocess, open_clip.get_tokenizer(model)
