"""Evaluation sets in the lake: an image folder or webdataset tars, with class names and prompt templates.

Classification sets carry ``classes.json`` and ``templates.json`` next to the images. Each is either a list
(one language, called ``en``) or a mapping language → list; in a multilingual (Babel-ImageNet style) set every
language names the same classes in the same order, so one pass over the images serves all languages.

- image folder: ``<prefix>/<class name with spaces as underscores>/<any>.{png,jpg,jpeg,webp}``
  (the sample web's eval split), folders named after the English (else the first language's) class names;
- webdataset: ``<prefix>/*.tar`` with ``<key>.cls`` (class index) and an image per sample, or, for retrieval,
  ``<key>.txt`` holding the image's captions, one per line.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass

from PIL import Image

from infra.lake import Lake
from ops.tarscan import iter_samples

IMAGE_EXTENSIONS = ("png", "jpg", "jpeg", "webp")
DEFAULT_LANGUAGE = "en"


@dataclass(frozen=True)
class ClassificationSet:
    """Where the labelled images are and how each language names the classes."""

    prefix: str
    kind: str  # "folder" or "webdataset"
    classnames: dict[str, list[str]]
    templates: dict[str, list[str]]

    @property
    def n_classes(self) -> int:
        return len(self.classnames[self.primary_language])

    @property
    def primary_language(self) -> str:
        """English when the set has it, else its first language: folder names and headline metrics use it."""
        return DEFAULT_LANGUAGE if DEFAULT_LANGUAGE in self.classnames else next(iter(self.classnames))


def _by_language(value: list[str] | dict[str, list[str]]) -> dict[str, list[str]]:
    return {DEFAULT_LANGUAGE: list(value)} if isinstance(value, list) else {k: list(v) for k, v in value.items()}


def load_classification_set(lake: Lake, prefix: str) -> ClassificationSet:
    """Read names and templates; a folder with tars is a webdataset, otherwise an image folder."""
    classnames = _by_language(lake.read_json(f"{prefix}/classes.json"))
    templates = _by_language(lake.read_json(f"{prefix}/templates.json"))
    sizes = {len(names) for names in classnames.values()}
    if len(sizes) != 1:
        raise ValueError(f"{prefix}: languages name different numbers of classes {sorted(sizes)}")
    missing = sorted(set(classnames) - set(templates))
    if missing and set(templates) != {DEFAULT_LANGUAGE}:
        raise ValueError(f"{prefix}: no templates for languages {missing}")
    if missing:  # one template list shared by every language
        templates = {lang: templates[DEFAULT_LANGUAGE] for lang in classnames}
    kind = "webdataset" if any(p.endswith(".tar") for p in lake.list(prefix)) else "folder"
    return ClassificationSet(prefix=prefix, kind=kind, classnames=classnames, templates=templates)


def decode_image(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


def iter_labelled(lake: Lake, eval_set: ClassificationSet) -> Iterator[tuple[Image.Image, int]]:
    """(image, class index) for every sample, in a fixed order (sorted paths; tar order)."""
    if eval_set.kind == "webdataset":
        for sample in iter_tar_samples(lake, eval_set.prefix):
            yield decode_image(_image_of(sample)), int(sample["cls"].decode().strip())
        return
    label = {name.replace(" ", "_"): i for i, name in enumerate(eval_set.classnames[eval_set.primary_language])}
    for rel in lake.list(eval_set.prefix):
        parts = rel[len(eval_set.prefix) :].strip("/").split("/")
        if len(parts) == 2 and parts[1].rsplit(".", 1)[-1].lower() in IMAGE_EXTENSIONS:
            if parts[0] not in label:
                raise ValueError(f"{rel}: folder {parts[0]!r} names no class in classes.json")
            yield decode_image(lake.read_bytes(rel)), label[parts[0]]


def iter_captioned(lake: Lake, prefix: str) -> Iterator[tuple[Image.Image, list[str]]]:
    """(image, its captions) from a retrieval webdataset; captions are the non-empty lines of ``.txt``."""
    for sample in iter_tar_samples(lake, prefix):
        captions = [line.strip() for line in sample["txt"].decode().splitlines() if line.strip()]
        yield decode_image(_image_of(sample)), captions


def iter_tar_samples(lake: Lake, prefix: str) -> Iterator[dict[str, bytes]]:
    """Samples of every tar under ``prefix`` (sorted), streamed without extracting."""
    for rel in (p for p in lake.list(prefix) if p.endswith(".tar")):
        with lake.open(rel) as f:
            for _, sample in iter_samples(f, lake.uri(rel)):
                yield sample


def _image_of(sample: dict[str, bytes]) -> bytes:
    for ext in IMAGE_EXTENSIONS:
        if ext in sample:
            return sample[ext]
    raise ValueError(f"sample without an image: keys {sorted(sample)}")
