"""Source files under the lake's ``sources/`` folder and the shard keys derived from them.

One source file is one shard (a Dagster partition). The key is derived from the file's path so that the sensor,
the CLI and a human all agree on it without a registry: ``sources/cc/CC-MAIN-1.warc.gz`` becomes
``cc.CC-MAIN-1``. Keys are restricted to characters that are safe in file names, URLs and partition keys.
"""

from __future__ import annotations

import re

from infra.lake import Lake

SOURCES = "sources"
SOURCE_SUFFIXES = (".warc.wat.gz", ".warc.gz", ".wat.gz", ".warc", ".wat", ".parquet")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
SHARD_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$")


class SourceError(ValueError):
    """A shard key with no source file, or two source files that claim the same key."""


def is_source(rel: str) -> bool:
    return rel.startswith(f"{SOURCES}/") and rel.endswith(SOURCE_SUFFIXES)


def shard_key(rel: str) -> str:
    """The shard key of a source path relative to the lake root (``sources/...``)."""
    inner = rel[len(SOURCES) + 1 :] if rel.startswith(f"{SOURCES}/") else rel
    for suffix in SOURCE_SUFFIXES:
        if inner.endswith(suffix):
            inner = inner[: -len(suffix)]
            break
    key = _UNSAFE.sub("_", inner.replace("/", ".")).strip("._-")
    if not SHARD_KEY.match(key):
        raise SourceError(f"cannot derive a safe shard key from {rel!r}")
    return key


def check_shard_key(key: str) -> str:
    """Refuse keys that could become unsafe paths (they arrive from the CLI, the UI and sensors)."""
    if not SHARD_KEY.match(key) or ".." in key:
        raise SourceError(f"invalid shard key {key!r}")
    return key


def list_sources(lake: Lake) -> tuple[dict[str, str], list[str]]:
    """Map shard key -> source path for every recognised file, plus messages for files that were skipped."""
    found: dict[str, str] = {}
    skipped: list[str] = []
    for rel in lake.list(SOURCES):
        if not is_source(rel):
            continue
        try:
            key = shard_key(rel)
        except SourceError as err:
            skipped.append(str(err))
            continue
        if key in found:
            skipped.append(f"{rel!r} and {found[key]!r} both map to shard {key!r}; keeping the first")
            continue
        found[key] = rel
    return found, skipped


def source_for(lake: Lake, key: str) -> str:
    """The source path of a shard; a clear error when the file is gone."""
    check_shard_key(key)
    found, _ = list_sources(lake)
    if key not in found:
        raise SourceError(f"no source file under {lake.uri(SOURCES)} for shard {key!r}")
    return found[key]
