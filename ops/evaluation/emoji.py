"""A real cross-style zero-shot set: the same emoji drawn by Noto and by EmojiOne, from two Debian packages.

- ``ruby-tanuki-emoji`` ships Google's Noto emoji PNGs (``emoji_u1f468_200d_1f469_200d_1f467.png``: code points
  in lower-case hex joined by ``_``, ZWJ kept, FE0F dropped; flags as ``DE.png``, the two regional indicator
  letters) and, in its vendor folder, Unicode's ``emoji-test.txt``, which names every sequence.
- ``ruby-gemojione`` ships EmojiOne PNGs named by the ``unicode`` field of its ``config/index.json``
  (``1F468-1F469-1F467.png``: upper-case hex joined by ``-``, both ZWJ and FE0F dropped), with EmojiOne's own
  names, categories and keywords.

A concept is a code point sequence with FE0F/FE0E and ZWJ removed (the only form both file namings agree on);
the two sets are joined on it. Every concept is named with its Unicode CLDR short name from ``emoji-test.txt``
("grinning face", "flag: Germany", "family: man, woman, girl"), in both styles, so a cross-style result measures
the change of drawing, not a change of vocabulary; EmojiOne's own names and keywords are kept beside it.

Skin tones: a sequence with a Fitzpatrick modifier (U+1F3FB..U+1F3FF) is a variant of the sequence without it.
``variants="base"`` (the default) keeps only the unmodified emoji: five recolourings of one drawing are not five
concepts, and as classes (400 of 1,769) they would make nearly a quarter of the set a skin-colour test.
``variants="merge"`` keeps the recoloured images as extra samples of their base concept (same class, same name).
Gendered forms ("woman dancing", "man dancing", the families; EmojiOne 3.3 has no ZWJ gender variants such as
"woman running") are separate concepts: their names differ and so do their drawings. The bare modifiers and
hair components are components, not emoji, and are left out.

:func:`build` writes the training shards of one style (webdataset: ``png`` + ``txt`` caption + ``json``) and two
classification sets in :mod:`ops.evaluation.sets`' webdataset format: the other style (the cross-style test)
and the training style itself (the same concepts as seen in training, the reference). ``python -m
ops.evaluation.emoji build --train-style noto --out DIR`` does the same from the command line.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from ops.dataset.tars import TarWriter

GEMS_DIR = Path("/usr/share/rubygems-integration/all/gems")
PACKAGES = {"noto": "ruby-tanuki-emoji", "emojione": "ruby-gemojione"}
STYLES = tuple(PACKAGES)
ALIASES = {"tanuki": "noto", "gemojione": "emojione"}
CAPTION_TEMPLATE = "an emoji of {}."
TEMPLATES = ("an emoji of {}.", "a {} emoji.", "{}")
VARIANTS = ("base", "merge")
CAPTIONS = ("name", "keywords")
DEFAULT_SIZE = 64

_IGNORED = {0xFE0E, 0xFE0F, 0x200D}  # variation selectors and the zero-width joiner
SKIN_TONES = frozenset(range(0x1F3FB, 0x1F400))
_TEST_LINE = re.compile(
    r"^(?P<cps>[0-9A-F]+(?: [0-9A-F]+)*)\s*;\s*(?P<status>[\w-]+)\s*#\s*\S+\s+E[\d.]+\s+(?P<name>.+)$"
)
_NOTO_FILE = re.compile(r"^emoji_u(?P<cps>[0-9a-f]+(?:_[0-9a-f]+)*)\.png$")
_FLAG_FILE = re.compile(r"^(?P<letters>[A-Z]{2})\.png$")

Key = tuple[int, ...]


class EmojiPackageMissing(FileNotFoundError):
    """An emoji package is not installed (or not where it was said to be)."""


def join_key(codepoints: Iterable[int]) -> Key:
    """The sequence both packages agree on: code points without variation selectors and ZWJ."""
    return tuple(c for c in codepoints if c not in _IGNORED)


def base_key(key: Key) -> Key:
    """The key without skin-tone modifiers (a bare modifier stays itself)."""
    stripped = tuple(c for c in key if c not in SKIN_TONES)
    return stripped or key


def key_name(key: Key) -> str:
    """Lower-case hex joined by ``-`` (``1f468-1f469-1f467``): a webdataset-safe sample key."""
    return "-".join(f"{c:04x}" for c in key)


# --- the installed packages -------------------------------------------------------------------------------------


def _package_dir(gem: str, style: str, given: str | Path | None) -> Path:
    """``given``, else the newest ``<gem>-<version>`` under the Debian gems folder; a clear error if absent."""
    if given is not None:
        path = Path(given)
        if not path.is_dir():
            raise EmojiPackageMissing(f"{path}: no such folder (given for the {style} emoji, {PACKAGES[style]})")
        return path
    found = sorted(GEMS_DIR.glob(f"{gem}-*"), key=lambda p: _version(p.name[len(gem) + 1 :]))
    if not found:
        raise EmojiPackageMissing(
            f"the {style} emoji are not installed: install the Debian package {PACKAGES[style]} "
            f"(apt-get install {PACKAGES[style]}, or make system-deps), or pass its gem folder "
            f"(no {GEMS_DIR}/{gem}-* found)"
        )
    return found[-1]


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(x) if x.isdigit() else -1 for x in text.split("."))


def _need(path: Path, style: str) -> Path:
    if not path.exists():
        raise EmojiPackageMissing(f"{path} is missing: is {PACKAGES[style]} fully installed?")
    return path


def tanuki_dir(given: str | Path | None = None) -> Path:
    return _package_dir("tanuki_emoji", "noto", given)


def gemojione_dir(given: str | Path | None = None) -> Path:
    return _package_dir("gemojione", "emojione", given)


@dataclass(frozen=True)
class UnicodeName:
    sequence: str  # the fully-qualified sequence, e.g. "1F3F3 FE0F 200D 1F308"
    name: str
    group: str
    status: str  # "fully-qualified" or "component"


def unicode_names(emoji_test: str | Path) -> dict[Key, UnicodeName]:
    """Names from Unicode's ``emoji-test.txt`` by join key; the fully-qualified form names each sequence (its
    unqualified and minimally-qualified forms have the same key and name) and components are marked."""
    names: dict[Key, UnicodeName] = {}
    group = ""
    for line in Path(emoji_test).read_text(encoding="utf-8").splitlines():
        if line.startswith("# group:"):
            group = line.split(":", 1)[1].strip()
            continue
        m = _TEST_LINE.match(line)
        if not m or m["status"] not in ("fully-qualified", "component"):
            continue
        cps = [int(x, 16) for x in m["cps"].split()]
        names.setdefault(join_key(cps), UnicodeName(m["cps"], m["name"].strip(), group, m["status"]))
    return names


def noto_images(folder: str | Path) -> dict[Key, Path]:
    """tanuki_emoji's Noto PNGs by join key (``emoji_u<hex>_<hex>.png``, flags as ``<ISO letters>.png``)."""
    out: dict[Key, Path] = {}
    for path in sorted(Path(folder).glob("*.png")):
        if m := _NOTO_FILE.match(path.name):
            key = join_key(int(x, 16) for x in m["cps"].split("_"))
        elif m := _FLAG_FILE.match(path.name):
            key = tuple(0x1F1E6 + ord(c) - ord("A") for c in m["letters"])
        else:
            continue
        out.setdefault(key, path)
    return out


@dataclass(frozen=True)
class EmojiOneEntry:
    path: Path
    name: str  # EmojiOne's own name ("billiards" for U+1F3B1, which Unicode calls "pool 8 ball")
    category: str
    keywords: tuple[str, ...]


def emojione_images(index_json: str | Path, png_dir: str | Path) -> dict[Key, EmojiOneEntry]:
    """gemojione's PNGs by join key, with its names, categories and keywords (entries without a PNG skipped)."""
    out: dict[Key, EmojiOneEntry] = {}
    for entry in json.loads(Path(index_json).read_text(encoding="utf-8")).values():
        path = Path(png_dir) / f"{entry['unicode']}.png"
        if not path.exists():
            continue
        key = join_key(int(x, 16) for x in entry["unicode"].split("-"))
        keywords = tuple(dict.fromkeys(k.strip() for k in entry.get("keywords", []) if k.strip()))
        out.setdefault(key, EmojiOneEntry(path, entry["name"], entry.get("category", ""), keywords))
    return out


# --- the join ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Concept:
    """One emoji present in both styles: its Unicode name and its images per style (base image first)."""

    key: Key
    name: str
    group: str
    sequence: str
    emojione_name: str
    keywords: tuple[str, ...]
    images: dict[str, tuple[Path, ...]] = field(hash=False)


@dataclass(frozen=True)
class EmojiSources:
    """Both installed packages, read: the Unicode names and each style's images by join key."""

    names: dict[Key, UnicodeName]
    noto: dict[Key, Path]
    emojione: dict[Key, EmojiOneEntry]

    def paths(self, style: str) -> dict[Key, Path]:
        if style == "noto":
            return self.noto
        return {k: e.path for k, e in self.emojione.items()}


def load_sources(tanuki: str | Path | None = None, gemojione: str | Path | None = None) -> EmojiSources:
    """Read both packages (their Debian install paths unless given); a missing one names the package to install."""
    t, g = tanuki_dir(tanuki), gemojione_dir(gemojione)
    return EmojiSources(
        names=unicode_names(_need(t / "vendor" / "unicode" / "emoji-test.txt", "noto")),
        noto=noto_images(_need(t / "app" / "assets" / "images" / "tanuki_emoji", "noto")),
        emojione=emojione_images(
            _need(g / "config" / "index.json", "emojione"), _need(g / "assets" / "png", "emojione")
        ),
    )


def shared_concepts(sources: EmojiSources, variants: str = "base") -> list[Concept]:
    """Concepts drawn in both styles and named by Unicode, in ``emoji-test.txt`` order.

    ``variants="base"``: one image per style, the unmodified emoji. ``"merge"``: the skin-toned images of a
    concept follow its base image (a toned pair counts only when both styles draw that tone).
    """
    if variants not in VARIANTS:
        raise ValueError(f"variants must be one of {VARIANTS}, not {variants!r}")
    noto, emojione = sources.paths("noto"), sources.paths("emojione")
    shared = set(noto) & set(emojione)
    bases = [
        key
        for key, unicode in sources.names.items()  # emoji-test.txt order
        if key in shared and unicode.status == "fully-qualified" and base_key(key) == key
    ]
    images = {key: [key] for key in bases}
    if variants == "merge":
        for key in sorted(shared - set(images)):
            if base_key(key) in images:
                images[base_key(key)].append(key)
    concepts = []
    for key in bases:
        unicode, entry = sources.names[key], sources.emojione[key]
        drawn = {"noto": tuple(noto[k] for k in images[key]), "emojione": tuple(emojione[k] for k in images[key])}
        concepts.append(Concept(key, unicode.name, unicode.group, unicode.sequence, entry.name, entry.keywords, drawn))
    names = [c.name for c in concepts]
    if len(set(names)) != len(names):
        raise ValueError("two concepts share a Unicode name; class names must be unique")
    return concepts


def subset(concepts: Sequence[Concept], n: int | None, seed: int = 0) -> list[Concept]:
    """``n`` concepts drawn at random (fixed by ``seed``), kept in their original order; all if ``n`` is None."""
    if n is None or n >= len(concepts):
        return list(concepts)
    chosen = set(random.Random(seed).sample(range(len(concepts)), n))
    return [c for i, c in enumerate(concepts) if i in chosen]


# --- images and captions ----------------------------------------------------------------------------------------


def rgb_png(path: str | Path, size: int | None = DEFAULT_SIZE) -> bytes:
    """The emoji on a white background as an RGB PNG, ``size`` px square (None: its own size).

    Transparency (RGBA, palette or grey + alpha) is composited onto white before resizing, so edges blend into
    white rather than into the black of transparent pixels; a non-square image is centred on a white square.
    """
    with Image.open(path) as im:
        rgba = im.convert("RGBA")
    canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    canvas.alpha_composite(rgba)
    rgb = canvas.convert("RGB")
    if rgb.width != rgb.height:
        side = max(rgb.size)
        square = Image.new("RGB", (side, side), (255, 255, 255))
        square.paste(rgb, ((side - rgb.width) // 2, (side - rgb.height) // 2))
        rgb = square
    if size is not None and rgb.size != (size, size):
        rgb = rgb.resize((size, size), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    rgb.save(buf, format="PNG")
    return buf.getvalue()


def caption(concept: Concept, captions: str = "name", max_keywords: int = 5) -> str:
    """``an emoji of <Unicode name>.``; with ``captions="keywords"`` EmojiOne's first keywords not already in
    the name follow it (``an emoji of grinning face: happy, joy, smile, grin, smiling.``)."""
    if captions not in CAPTIONS:
        raise ValueError(f"captions must be one of {CAPTIONS}, not {captions!r}")
    text = CAPTION_TEMPLATE.format(concept.name)
    if captions == "keywords":
        words = set(re.findall(r"\w+", concept.name.lower()))
        extra = [k for k in concept.keywords if k.lower() not in words][:max_keywords]
        if extra:
            text = f"{text[:-1]}: {', '.join(extra)}."
    return text


# --- writing ----------------------------------------------------------------------------------------------------


def _samples(concepts: Sequence[Concept], style: str) -> Iterable[tuple[int, Concept, int, Path]]:
    for index, concept in enumerate(concepts):
        for variant, path in enumerate(concept.images[style]):
            yield index, concept, variant, path


def _shards(folder: Path, rows: Sequence[tuple[str, dict[str, bytes]]], per_shard: int) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for start in range(0, max(len(rows), 1), per_shard):
        writer = TarWriter(folder / f"{start // per_shard:05d}.tar")
        for key, files in rows[start : start + per_shard]:
            writer.add(key, files)
        writer.close()
        paths.append(str(writer.path))
    return paths


def _meta(concept: Concept, style: str, index: int, path: Path) -> bytes:
    record = {
        "class": index,
        "name": concept.name,
        "sequence": concept.sequence,
        "group": concept.group,
        "emojione_name": concept.emojione_name,
        "style": style,
        "file": path.name,
    }
    return json.dumps(record, ensure_ascii=False).encode()


def write_training_shards(
    concepts: Sequence[Concept],
    style: str,
    folder: str | Path,
    captions: str = "name",
    size: int | None = DEFAULT_SIZE,
    samples_per_shard: int = 512,
    seed: int = 0,
) -> list[str]:
    """(image, caption) pairs of one style as webdataset tars, shuffled once (fixed by ``seed``) so every
    shard mixes all groups; returns the tar paths, numbered from 00000."""
    rows = [
        (
            f"{key_name(c.key)}_{v}",
            {"png": rgb_png(path, size), "txt": caption(c, captions).encode(), "json": _meta(c, style, i, path)},
        )
        for i, c, v, path in _samples(concepts, style)
    ]
    random.Random(seed).shuffle(rows)
    return _shards(Path(folder), rows, samples_per_shard)


def write_eval_set(
    concepts: Sequence[Concept],
    style: str,
    folder: str | Path,
    size: int | None = DEFAULT_SIZE,
    templates: Sequence[str] = TEMPLATES,
    samples_per_shard: int = 4096,
) -> list[str]:
    """A classification set for :func:`ops.evaluation.sets.load_classification_set`: webdataset tars of
    ``png`` + ``cls`` (the concept's index), ``classes.json`` (Unicode names) and ``templates.json``."""
    folder = Path(folder)
    rows = [
        (
            f"{key_name(c.key)}_{v}",
            {"png": rgb_png(path, size), "cls": str(i).encode(), "json": _meta(c, style, i, path)},
        )
        for i, c, v, path in _samples(concepts, style)
    ]
    paths = _shards(folder, rows, samples_per_shard)
    (folder / "classes.json").write_text(json.dumps([c.name for c in concepts], ensure_ascii=False, indent=0))
    (folder / "templates.json").write_text(json.dumps(list(templates)))
    return paths


def other_style(style: str) -> str:
    style = ALIASES.get(style, style)
    if style not in STYLES:
        raise ValueError(f"unknown emoji style {style!r}: choose from {STYLES} (or {sorted(ALIASES)})")
    return next(s for s in STYLES if s != style)


def build(
    out: str | Path,
    train_style: str = "noto",
    variants: str = "base",
    captions: str = "name",
    size: int | None = DEFAULT_SIZE,
    limit: int | None = None,
    seed: int = 0,
    tanuki: str | Path | None = None,
    gemojione: str | Path | None = None,
    samples_per_shard: int = 512,
) -> dict[str, Any]:
    """Write ``out/train/*.tar`` (the training style's pairs), ``out/eval/<other style>`` (the cross-style set)
    and ``out/eval/<training style>`` (the same concepts in the training style), plus ``out/build.json``.

    ``limit`` keeps that many concepts (a seeded random subset) for quick runs. Returns the summary written to
    ``build.json``: counts, the training tars and the eval set folders.
    """
    from ops.training import brace_pattern  # training imports torch; only building shards needs it here

    train_style = ALIASES.get(train_style, train_style)
    eval_style = other_style(train_style)
    out = Path(out)
    concepts = subset(shared_concepts(load_sources(tanuki, gemojione), variants), limit, seed)
    tars = write_training_shards(concepts, train_style, out / "train", captions, size, samples_per_shard, seed)
    eval_sets = {}
    for style in (eval_style, train_style):
        write_eval_set(concepts, style, out / "eval" / style, size)
        eval_sets[style] = str(out / "eval" / style)
    n_samples = sum(len(c.images[train_style]) for c in concepts)
    summary = {
        "train_style": train_style,
        "eval_style": eval_style,
        "packages": {s: PACKAGES[s] for s in STYLES},
        "variants": variants,
        "captions": captions,
        "image_size": size,
        "concepts": len(concepts),
        "train_samples": n_samples,
        "eval_samples": {s: sum(len(c.images[s]) for c in concepts) for s in eval_sets},
        "train_data": brace_pattern(tars),
        "train_tars": tars,
        "eval_sets": eval_sets,
        "chance_top1": 1 / len(concepts) if concepts else None,
        "templates": list(TEMPLATES),
    }
    (out / "build.json").write_text(json.dumps(summary, indent=1))
    return summary


# --- command line -----------------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m ops.evaluation.emoji",
        description="Cross-style emoji sets from ruby-tanuki-emoji (Noto) and ruby-gemojione (EmojiOne).",
    )
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser(
        "build",
        help="training shards of one style and zero-shot sets of both",
        description="Writes OUT/train/*.tar, OUT/eval/<style>/ for both styles and OUT/build.json. To evaluate a "
        "model with the evaluation asset, put OUT under the lake root and add its lake-relative "
        "'<OUT>/eval/<other style>' to EvaluationSettings.classification_sets.",
    )
    b.add_argument("--train-style", default="noto", choices=[*STYLES, *ALIASES])
    b.add_argument("--out", required=True, type=Path)
    b.add_argument("--variants", default="base", choices=VARIANTS, help="skin-tone variants: drop or merge")
    b.add_argument("--captions", default="name", choices=CAPTIONS, help="Unicode name, or name + keywords")
    b.add_argument("--size", type=int, default=DEFAULT_SIZE, help="image side in px (0: keep each file's size)")
    b.add_argument("--limit", type=int, default=None, help="keep this many concepts (seeded random subset)")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--samples-per-shard", type=int, default=512)
    b.add_argument("--tanuki-dir", default=None, help="tanuki_emoji gem folder (default: the Debian install)")
    b.add_argument("--gemojione-dir", default=None, help="gemojione gem folder (default: the Debian install)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        summary = build(
            args.out,
            train_style=args.train_style,
            variants=args.variants,
            captions=args.captions,
            size=args.size or None,
            limit=args.limit,
            seed=args.seed,
            tanuki=args.tanuki_dir,
            gemojione=args.gemojione_dir,
            samples_per_shard=args.samples_per_shard,
        )
    except EmojiPackageMissing as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(
        f"{summary['concepts']} concepts; {summary['train_samples']} {summary['train_style']} training samples: "
        f"{summary['train_data']}"
    )
    for style, folder in summary["eval_sets"].items():
        print(f"eval set ({style}): {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
