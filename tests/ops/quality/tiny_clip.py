"""A tiny randomly initialised open_clip model from a registered config, saved as a local checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import open_clip
import torch

NAME = "clipfoundry-tiny-test"
CONFIG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def register(folder: Path) -> str:
    """Register the config under :data:`NAME` (open_clip reads every ``<name>.json`` in the folder)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{NAME}.json").write_text(json.dumps(CONFIG))
    open_clip.add_model_config(folder)
    return NAME


def build_checkpoint(folder: Path, seed: int = 0) -> tuple[torch.nn.Module, Path]:
    """A random model and its state dict saved where ``pretrained=<path>`` loads it."""
    register(folder / "configs")
    torch.manual_seed(seed)
    model = open_clip.create_model(NAME).eval()
    path = folder / "tiny-clip.pt"
    torch.save({"state_dict": model.state_dict()}, path)
    return model, path
