"""A training run as data: the settings, open_clip_train's argv built from them, and the torchrun command."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from braceexpand import braceexpand

from infra.lake import Lake


@dataclass(frozen=True)
class TrainConfig:
    """One open_clip_train run. ``model`` is any open_clip model name, or the name given to ``model_config``.

    ``logs``/``name`` locate the run folder (checkpoints, ``out.log``, ``tensorboard/scalars.jsonl``); a run
    with the same folder resumes from its newest checkpoint, which is how a crashed run continues.
    """

    train_data: str  # brace pattern of local tar paths, e.g. /lake/dataset/v/{00000..00009}.tar
    train_num_samples: int
    logs: str
    name: str
    model: str = "ViT-B-32"
    model_config: dict[str, Any] | None = None
    batch_size: int = 256
    epochs: int = 1
    lr: float = 5e-4
    warmup: int = 500
    wd: float = 0.2
    workers: int = 1
    precision: str = "amp"
    save_frequency: int = 1
    seed: int = 0
    nproc_per_node: int = 1
    device: str = "auto"  # "auto": cuda when torch sees a GPU, else cpu
    synthetic_caption_prob: float = 0.0
    online_curation: bool = False
    log_every_n_steps: int = 1
    coca_caption_loss_weight: float = 2.0  # open_clip_train's defaults; used only when the model is a CoCa
    coca_contrastive_loss_weight: float = 1.0
    extra_args: tuple[str, ...] = ()

    @property
    def is_coca(self) -> bool:
        return is_coca(self.model, self.model_config)

    @property
    def run_dir(self) -> Path:
        return Path(self.logs) / self.name

    @property
    def model_config_path(self) -> Path:
        return Path(self.logs) / f"{self.name}-model" / f"{self.model}.json"

    def resolved_device(self) -> str:
        if self.device != "auto":
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"


@dataclass(frozen=True)
class TrainingSettings:
    """What every training run of the pipeline is set by, the ``model`` stage's and the bootstrap's alike: the
    open_clip architecture (a name, or a custom config registered under it), optimisation, precision, ranks,
    seed, the registered model name, and CoCa's two loss weights (read only when the architecture is a CoCa)."""

    architecture: str = "ViT-B-32"
    architecture_config: dict[str, Any] | None = None
    batch_size: int = 256
    epochs: int = 1
    lr: float = 5e-4
    warmup: int = 500
    workers: int = 1
    precision: str = "amp"
    nproc_per_node: int = 1
    seed: int = 0
    registered_model: str = "clipfoundry-clip"
    coca_caption_loss_weight: float = 2.0  # open_clip_train's defaults
    coca_contrastive_loss_weight: float = 1.0


@dataclass(frozen=True)
class ModelConfig(TrainingSettings):
    """What the ``model`` stage trains; each run's data, run folder and name come from the dataset it trains on.

    ``dataset_resampled`` samples shards with replacement so every rank gets the same number of batches (an
    uneven split of shards over ranks otherwise stalls DDP at the end of an epoch). ``retrain_cron`` set: retrain
    on that schedule instead of on every new dataset version.
    """

    synthetic_caption_prob: float = 0.0
    online_curation: bool = False
    dataset_resampled: bool = True
    retrain_cron: str | None = None

    def train_config(self, train_data: str, samples: int, logs: str, name: str) -> TrainConfig:
        return TrainConfig(
            train_data=train_data,
            train_num_samples=samples,
            logs=logs,
            name=name,
            model=self.architecture,
            model_config=self.architecture_config,
            batch_size=self.batch_size,
            epochs=self.epochs,
            lr=self.lr,
            warmup=self.warmup,
            workers=self.workers,
            precision=self.precision,
            nproc_per_node=self.nproc_per_node,
            synthetic_caption_prob=self.synthetic_caption_prob,
            online_curation=self.online_curation,
            seed=self.seed,
            coca_caption_loss_weight=self.coca_caption_loss_weight,
            coca_contrastive_loss_weight=self.coca_contrastive_loss_weight,
            extra_args=("--dataset-resampled",) if self.dataset_resampled else (),
        )


def is_coca(model: str, model_config: dict[str, Any] | None = None) -> bool:
    """Whether the architecture is a CoCa (an image-conditioned text decoder beside the two towers): open_clip
    builds one from any config with a ``multimodal_cfg``."""
    if model_config is None:
        import open_clip

        model_config = open_clip.get_model_config(model)
    return bool(model_config) and "multimodal_cfg" in model_config


def check_architecture(config: TrainConfig) -> None:
    """Refuse a CoCa config that open_clip would quietly train as something else.

    open_clip builds the CoCa class only when the config also sets ``custom_text`` (else a plain CLIP, decoder
    dropped), and open_clip_train chooses the loss from the model *name*: CoCa's caption + contrastive loss only
    when the name contains "coca" (else CLIP's loss, which fails on CoCa's outputs deep inside the first step).
    """
    if config.model_config is None or "multimodal_cfg" not in config.model_config:
        return
    if not config.model_config.get("custom_text"):
        raise ValueError(f'{config.model}: a CoCa config (with multimodal_cfg) needs "custom_text": true')
    if "coca" not in config.model.lower():
        raise ValueError(
            f"{config.model!r} is a CoCa config, but open_clip_train picks CoCa's loss only for a model name that "
            "contains 'coca'; rename it (e.g. 'coca-" + config.model + "')"
        )


def check_shards(config: TrainConfig) -> int:
    """open_clip_train splits whole shards over ranks and loader workers and asserts on a shortfall deep inside
    every rank; say it here, before anything starts. Returns the number of shards."""
    n = len(list(braceexpand(config.train_data)))
    need = max(1, config.workers) * config.nproc_per_node
    if n < need:
        raise ValueError(
            f"{n} shards for {config.nproc_per_node} ranks × {max(1, config.workers)} workers: need {need}"
        )
    return n


def open_clip_args(config: TrainConfig) -> list[str]:
    """The arguments open_clip_train itself understands (what a plain ``open_clip_train.main`` run gets)."""
    device = config.resolved_device()
    return [
        "--model", config.model,
        "--train-data", config.train_data,
        "--dataset-type", "webdataset",
        "--train-num-samples", str(config.train_num_samples),
        "--batch-size", str(config.batch_size),
        "--epochs", str(config.epochs),
        "--lr", str(config.lr),
        "--warmup", str(config.warmup),
        "--wd", str(config.wd),
        "--workers", str(config.workers),
        "--precision", config.precision,
        "--save-frequency", str(config.save_frequency),
        "--logs", config.logs,
        "--name", config.name,
        "--resume", "latest",
        "--seed", str(config.seed),
        "--device", device,
        "--dist-backend", "nccl" if device.startswith("cuda") else "gloo",
        "--log-every-n-steps", str(config.log_every_n_steps),
        *(_coca_args(config) if config.is_coca else ()),
        *config.extra_args,
    ]  # fmt: skip


def _coca_args(config: TrainConfig) -> tuple[str, ...]:
    return (
        "--coca-caption-loss-weight", str(config.coca_caption_loss_weight),
        "--coca-contrastive-loss-weight", str(config.coca_contrastive_loss_weight),
    )  # fmt: skip


def entry_args(config: TrainConfig) -> list[str]:
    """Arguments for :mod:`ops.training.entry`: open_clip_train's plus ours; writes the custom model config."""
    args = [*open_clip_args(config), "--report-to", "tensorboard"]
    if config.model_config is not None:
        path = config.model_config_path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(config.model_config, indent=1, sort_keys=True))
        args += ["--cf-model-config", str(path)]
    if config.synthetic_caption_prob > 0:
        args += ["--cf-synthetic-caption-prob", str(config.synthetic_caption_prob)]
    if config.online_curation:
        args.append("--cf-online-curation")
    return args


def torchrun(module: str, args: list[str], nproc_per_node: int) -> list[str]:
    """``torchrun --standalone --nproc_per_node N -m module -- args`` with this interpreter.

    The ``--`` matters: torchrun's parser sees every later argument too, and rejects ``--logs`` as an ambiguous
    abbreviation of its own ``--logs-specs``; after ``--`` it passes them on untouched (``--`` included, which
    :mod:`ops.training.entry` drops).
    """
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc_per_node}",
        "-m", module, "--", *args,
    ]  # fmt: skip


def brace_pattern(paths: list[str]) -> str:
    """``dir/{00000..00012}.tar`` for the dataset's numbered shards (all in one folder, numbered from 0)."""
    if not paths:
        raise ValueError("no shards")
    folder = str(Path(paths[0]).parent)
    if len(paths) == 1:
        return paths[0]
    width = len(Path(paths[0]).stem)
    return f"{folder}/{{{0:0{width}d}..{len(paths) - 1:0{width}d}}}.tar"


def dataset_shards(lake: Lake, version: str, local_dir: str | Path | None = None) -> tuple[str, dict[str, Any]]:
    """The brace pattern of a dataset version's tars on local disk, and its manifest.

    A local lake is read in place; from an object store the tars are first copied to ``local_dir`` (training
    reads every shard once per epoch, so a local copy is the cheap way).
    """
    manifest = lake.read_json(f"dataset/{version}/manifest.json")
    names = [s["path"] for s in manifest["shards"]]
    if lake.is_local:
        return brace_pattern([lake.path(f"dataset/{version}/{n}") for n in names]), manifest
    if local_dir is None:
        raise ValueError("a remote lake needs local_dir to copy the shards to")
    folder = Path(local_dir) / version
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        if not (folder / n).exists():  # a copy cut short by a crash stays a .part file and is redone
            lake.get_file(f"dataset/{version}/{n}", folder / f"{n}.part")
            os.replace(folder / f"{n}.part", folder / n)
    return brace_pattern([str(folder / n) for n in names]), manifest
