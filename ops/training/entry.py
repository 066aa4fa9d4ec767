"""``python -m ops.training.entry``: open_clip_train's ``main`` with our additions, run by torchrun per rank.

It takes open_clip_train's own arguments plus a few of ours (``--cf-*``), and before calling
``open_clip_train.main.main`` it

- lets DDP wrap a CPU model: open_clip_train passes ``device_ids=[cpu]``, which torch refuses, so CPU (gloo)
  multi-process training fails as shipped; for CPU the ids are dropped, GPU runs are unchanged,
- registers a custom model config (``--cf-model-config x.json`` makes ``--model x`` available),
- replaces tensorboard with :class:`ops.training.scalars.JsonlSummaryWriter` (exact per-step metrics), and
- when caption mixing or online curation is on, puts :class:`ops.training.sampling.SampleChooser` around
  open_clip_train's tar reader while it builds the training pipeline, and attaches the shared epoch counter
  that pipeline creates.

Nothing else of open_clip_train changes: its model, loss, schedule, DDP, checkpoints and resume run as shipped.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

import open_clip
import open_clip_train.data as oc_data
import open_clip_train.main as oc_main
import torch

from ops.training.sampling import SampleChooser
from ops.training.scalars import JsonlBoard


def _ours() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--cf-model-config", default=None)
    p.add_argument("--cf-synthetic-caption-prob", type=float, default=0.0)
    p.add_argument("--cf-online-curation", action="store_true")
    return p


def install_sampling(synthetic_probability: float, online_curation: bool) -> None:
    """Wrap ``get_wds_dataset`` so the training pipeline reads through a :class:`SampleChooser`."""
    build = oc_data.get_wds_dataset

    def get_wds_dataset(args: Any, preprocess_img: Any, is_train: bool, *a: Any, **kw: Any) -> Any:
        if not is_train:
            return build(args, preprocess_img, is_train, *a, **kw)
        read = oc_data.tarfile_to_samples_nothrow
        chooser = SampleChooser(read, args.seed, synthetic_probability, online_curation)
        oc_data.tarfile_to_samples_nothrow = chooser
        try:
            info = build(args, preprocess_img, is_train, *a, **kw)
        finally:
            oc_data.tarfile_to_samples_nothrow = read
        chooser.epoch = info.shared_epoch  # workers start at the first iteration, after this
        return info

    oc_data.get_wds_dataset = get_wds_dataset


class _DistributedDataParallel(torch.nn.parallel.DistributedDataParallel):
    """DDP that accepts open_clip_train's ``device_ids=[cpu]`` by dropping it (torch wants none for CPU)."""

    def __init__(self, module: torch.nn.Module, device_ids: Any = None, *args: Any, **kwargs: Any) -> None:
        if device_ids and all(torch.device(d).type == "cpu" for d in device_ids):
            device_ids = None
        super().__init__(module, device_ids, *args, **kwargs)


def main(argv: Sequence[str]) -> int | None:
    argv = list(argv)
    ours, rest = _ours().parse_known_args(argv[1:] if argv[:1] == ["--"] else argv)
    if ours.cf_model_config:
        open_clip.add_model_config(ours.cf_model_config)
    oc_main.tensorboard = JsonlBoard
    torch.nn.parallel.DistributedDataParallel = _DistributedDataParallel
    if ours.cf_synthetic_caption_prob > 0 or ours.cf_online_curation:
        install_sampling(ours.cf_synthetic_caption_prob, ours.cf_online_curation)
    return oc_main.main(rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
