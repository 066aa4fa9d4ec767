"""Cross-style zero-shot on real emoji: a small CLIP trained on one art style, evaluated on the other.

The concepts drawn by both Debian packages (``ruby-tanuki-emoji``: Noto; ``ruby-gemojione``: EmojiOne), named
by Unicode (:mod:`ops.evaluation.emoji`). A small random CLIP learns the (image, "an emoji of <name>.") pairs of
one style and is scored zero-shot, with the same class names, on the other style's drawings of the same
concepts, against chance and against the same model on its own training style (the images it was trained on:
how well it learned the pairs, the ceiling for the transfer). Then the reverse direction, if the time budget
allows.

A subset of the concepts (seeded) keeps this within minutes on two CPU cores: a from-scratch model needs tens
of passes over one image per concept before it knows the pairs at all. ``python -m bench.cross_style`` runs it
alone; ``python -m bench.run cross_style`` writes its section of docs/benchmarks.md.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from infra.lake import Lake
from ops.evaluation import emoji, load_classification_set, zero_shot
from ops.training import TrainConfig, load_trained, train

MODEL = "cf-bench-emoji"
MODEL_CONFIG = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
METRICS = ("top1", "top5", "mean_per_class_recall")
LABELS = {"noto": "Noto (tanuki)", "emojione": "EmojiOne (gemojione)"}


def _direction(work: Path, train_style: str, concepts: int, passes: int, epochs: int, seed: int) -> dict:
    """Build the sets, train on ``train_style``, score on both styles; metrics and timings."""
    started = time.perf_counter()
    out = work / train_style
    size = MODEL_CONFIG["vision_cfg"]["image_size"]
    built = emoji.build(out, train_style=train_style, size=size, limit=concepts, seed=seed)
    config = TrainConfig(
        train_data=built["train_data"],
        train_num_samples=built["train_samples"] * passes // epochs,  # resampled: passes spread over the epochs
        logs=str(work / "logs"),
        name=train_style,
        model=MODEL,
        model_config=MODEL_CONFIG,
        batch_size=64,
        epochs=epochs,
        lr=2e-3,
        warmup=20,
        workers=0,  # 32 px PNGs decode in the training process; no loader process to start every epoch
        precision="fp32",
        save_frequency=epochs,
        seed=seed,
        device="cpu",
        extra_args=("--dataset-resampled",),
    )
    result = train(config, poll_seconds=0.5)
    clip, preprocess, tokenizer = load_trained(result.checkpoint, MODEL, MODEL_CONFIG)
    lake = Lake(str(out))
    group_of = {c.name: c.group for c in emoji.shared_concepts(emoji.load_sources())}
    scores, by_group = {}, {}
    for style in (built["eval_style"], train_style):
        eval_set = load_classification_set(lake, f"eval/{style}")
        scored = zero_shot(clip, tokenizer, preprocess, lake, eval_set)
        scores[style] = {k: float(scored["metrics"][k]) for k in METRICS}
        recalls: dict[str, list[float]] = {}
        for row in scored["per_class"].to_pylist():
            if row["recall"] is not None:
                recalls.setdefault(group_of[row["classname"]], []).append(row["recall"])
        by_group[style] = {g: (sum(r) / len(r), len(r)) for g, r in sorted(recalls.items())}
    losses = [s["loss"] for s in result.steps]
    return {
        "train_style": train_style,
        "eval_style": built["eval_style"],
        "concepts": built["concepts"],
        "train_samples": built["train_samples"],
        "steps": len(result.steps),
        "first_loss": losses[0],
        "last_epoch_loss": sum(losses[-len(losses) // epochs :]) / (len(losses) // epochs),
        "train_seconds": result.seconds,
        "seconds": time.perf_counter() - started,
        "cross_style": scores[built["eval_style"]],
        "same_style": scores[train_style],
        "cross_style_by_group": by_group[built["eval_style"]],
        "same_style_by_group": by_group[train_style],
    }


def run(
    concepts: int = 512,
    passes: int = 24,
    epochs: int = 8,
    seed: int = 0,
    budget_s: float = 780.0,
    styles: tuple[str, ...] = ("noto", "emojione"),
) -> dict:
    """Train on each style in ``styles`` in turn, starting the next only when the time it took fits the budget."""
    all_concepts = len(emoji.shared_concepts(emoji.load_sources()))
    result: dict = {
        "shared_concepts": all_concepts,
        "concepts": concepts,
        "passes": passes,
        "epochs": epochs,
        "seed": seed,
        "model": MODEL,
        "model_config": MODEL_CONFIG,
        "directions": [],
        "skipped": [],
    }
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for style in styles:
            elapsed = time.perf_counter() - started
            last = result["directions"][-1]["seconds"] if result["directions"] else 0.0
            if elapsed + last > budget_s:
                result["skipped"].append(style)
                continue
            result["directions"].append(_direction(Path(tmp), style, concepts, passes, epochs, seed))
    result["markdown"] = _markdown(result)
    return result


def _markdown(result: dict) -> str:
    n = min(result["concepts"], result["shared_concepts"])
    chance1, chance5 = 1 / n, min(5, n) / n
    lines = [
        f"{result['shared_concepts']} concepts drawn in both styles (base emoji: skin-tone variants left out), named "
        f"by Unicode; a seeded subset of {n} (one image per concept and style, 32 px on white). {MODEL} (ViT 2×64, "
        f"patch 8; text 2×64), random init, CPU, 1 process, batch 64, lr 2e-3, {result['passes']} passes over the "
        f'training style\'s (image, "an emoji of <name>.") pairs in {result["epochs"]} epochs (shards '
        f"resampled); zero-shot with the templates {', '.join(f'`{t}`' for t in emoji.TEMPLATES)}. Chance: top-1 "
        f'{chance1:.4f}, top-5 {chance5:.4f}. "Own style" scores the images the model was trained on: how well it '
        "learned the pairs, the ceiling for the transfer.",
        "",
        "| trained on | evaluated on | top-1 | top-5 | mean per-class recall | top-1 ÷ chance | top-1 ÷ own style |",
        "|---|---|---|---|---|---|---|",
    ]
    for d in result["directions"]:
        own = d["same_style"]["top1"]
        for label, style, scores in (
            ("own style", d["train_style"], d["same_style"]),
            ("**other style**", d["eval_style"], d["cross_style"]),
        ):
            ratio = "—" if style == d["train_style"] else f"{scores['top1'] / own:.2f}" if own > 0 else "n/a"
            lines.append(
                f"| {LABELS[d['train_style']]} | {label}: {LABELS[style]} | {scores['top1']:.3f} | "
                f"{scores['top5']:.3f} | {scores['mean_per_class_recall']:.3f} | {scores['top1'] / chance1:.1f}× "
                f"| {ratio} |"
            )
    for d in result["directions"]:
        cross, own = d["cross_style_by_group"], d["same_style_by_group"]
        lines += [
            "",
            f"Top-1 by Unicode group, trained on {LABELS[d['train_style']]} (classes in the subset): "
            + "; ".join(f"{g} ({n}) {own[g][0]:.2f} → {cross[g][0]:.2f}" for g, (_, n) in cross.items())
            + " (own style → other style).",
        ]
    lines.append("")
    timings = "; ".join(
        f"{LABELS[d['train_style']]}: {d['steps']} steps, loss {d['first_loss']:.2f} → {d['last_epoch_loss']:.2f} "
        f"(last-epoch mean), training {d['train_seconds']:.0f} s, direction {d['seconds']:.0f} s"
        for d in result["directions"]
    )
    lines.append(f"{timings}; {os.cpu_count()} cores (shared).")
    lines.append(
        "One run per direction, and open_clip_train's sample shuffle is not seeded: reruns move top-1 by a few "
        "points, so compare each cross-style row with chance and with its own-style row rather than the two "
        "directions with each other."
    )
    if result["skipped"]:
        lines.append(f"Not run (time budget): training on {', '.join(LABELS[s] for s in result['skipped'])}.")
    return "\n".join(lines)


if __name__ == "__main__":
    print(run()["markdown"])
