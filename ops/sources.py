"""Source files under the lake's ``sources/`` folder, the shard keys derived from them, and the shard registry.

One source file is one shard (a Dagster partition). The key is derived from the file's path, so a person can
tell which file a shard is: ``sources/cc/CC-MAIN-1.warc.gz`` becomes ``cc.CC-MAIN-1``. Keys are restricted to
characters that are safe in file names, URLs and partition keys, which folds some names together (a space and
an underscore, and, on a case-insensitive disk, upper and lower case); a file the lake cannot read by name (an
accent, a bracket) is reported, never registered. So the first registration of a key binds it to its file for
ever, in ``registry/shards.json``: a later file that folds to a registered key is refused loudly, never silently
swapped in, and a shard's source is always the file it was registered with. The registry also keeps the order
shards arrived in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from infra.lake import Lake, UnsafePathError, check_relative

SOURCES = "sources"
REGISTRY = "registry/shards.json"
SOURCE_SUFFIXES = (".warc.wat.gz", ".warc.gz", ".wat.gz", ".warc", ".wat", ".parquet")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
SHARD_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$")


class SourceError(ValueError):
    """A shard key with no source file, or a file that cannot become a shard."""


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
    if not SHARD_KEY.match(key) or ".." in key:
        raise SourceError(f"cannot derive a safe shard key from {rel!r}")
    return key


def check_shard_key(key: str) -> str:
    """Refuse keys that could become unsafe paths (they arrive from the CLI, the UI and sensors)."""
    if not SHARD_KEY.match(key) or ".." in key:
        raise SourceError(f"invalid shard key {key!r}")
    return key


def list_sources(lake: Lake) -> tuple[dict[str, str], list[str]]:
    """Map shard key -> source path for every recognised file, plus messages for files that cannot be shards.

    Two files that fold to the same key are both reported and neither is listed: which one a key means must not
    depend on listing order.
    """
    found: dict[str, str] = {}
    clashes: dict[str, list[str]] = {}
    skipped: list[str] = []
    for rel in lake.list(SOURCES):
        if not is_source(rel):
            continue
        try:
            key = shard_key(check_relative(rel))
        except SourceError as err:
            skipped.append(str(err))
            continue
        except UnsafePathError as err:
            skipped.append(f"{rel!r} cannot be a shard: the lake does not read such names ({err})")
            continue
        folded = key.casefold()
        clashes.setdefault(folded, []).append(rel)
        found[key] = rel
    for folded, paths in clashes.items():
        if len(paths) > 1:
            skipped.append(f"{sorted(paths)} all map to shard {folded!r}: rename all but one")
            for rel in paths:
                found.pop(shard_key(rel), None)
    return found, skipped


@dataclass(frozen=True)
class Registration:
    """What one pass of the registry over the listing did."""

    new: dict[str, str]
    refused: list[str]


def registry(lake: Lake) -> dict[str, dict]:
    """Registered shards, in the order they arrived: key -> {"path", "registered_at"}."""
    return lake.read_json(REGISTRY) if lake.exists(REGISTRY) else {}


def register(lake: Lake, found: dict[str, str]) -> Registration:
    """Bind every new key in ``found`` to its file; refuse a file whose key (case-folded) is bound elsewhere.

    The registry is written once, after the pass, and only when something was added.
    """
    current = registry(lake)
    bound = {key.casefold(): key for key in current}
    new: dict[str, str] = {}
    refused: list[str] = []
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    for key, rel in sorted(found.items()):
        owner = bound.get(key.casefold())
        if owner is None:
            current[key] = {"path": rel, "registered_at": stamp}
            bound[key.casefold()] = key
            new[key] = rel
        elif current[owner]["path"] != rel:
            refused.append(f"{rel!r} maps to shard {key!r}, registered for {current[owner]['path']!r}: ignored")
    if new:
        lake.write_json(REGISTRY, current)
    return Registration(new, refused)


def source_for(lake: Lake, key: str) -> str:
    """The source path a shard was registered with; a clear error when it is unknown or the file is gone.

    A partition added by hand (UI, API) before the sensor saw its file is registered here, on first use.
    """
    check_shard_key(key)
    entry = registry(lake).get(key)
    if entry is None:
        found, _ = list_sources(lake)
        if key in found:
            register(lake, {key: found[key]})
            entry = registry(lake).get(key)
    if entry is None:
        raise SourceError(f"no source file under {lake.uri(SOURCES)} for shard {key!r}")
    if not lake.exists(entry["path"]):
        raise SourceError(f"the source of shard {key!r}, {lake.uri(entry['path'])}, is gone")
    return entry["path"]


def sync(lake: Lake, known: set[str]) -> tuple[list[str], list[str]]:
    """Register the files under ``sources/`` and return (shard keys to add as partitions, files refused).

    A registered key whose partition is missing (deleted by hand) is returned again while its file exists.
    """
    found, unusable = list_sources(lake)
    refused = unusable + register(lake, found).refused
    registered = registry(lake)
    return sorted(k for k in registered if k not in known and lake.exists(registered[k]["path"])), refused
