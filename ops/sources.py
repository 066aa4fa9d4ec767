"""Source files under the lake's ``sources/`` folder, the shard keys derived from them, and the shard registry.

One source file is one shard (a Dagster partition). The key is derived from the file's path, so a person can
tell which file a shard is: ``sources/cc/CC-MAIN-1.warc.gz`` becomes ``cc.CC-MAIN-1``. Keys are restricted to
characters that are safe in file names, URLs and partition keys, which folds some names together (a space and
an underscore, and, on a case-insensitive disk, upper and lower case); a file the lake cannot read by name (an
accent, a bracket) is reported, never registered. So the first registration of a key binds it to its file for
ever, in ``registry/shards.json``: a later file that folds to a registered key is refused loudly, never silently
swapped in, and a shard's source is always the file it was registered with. The registry also keeps the order
shards arrived in.

Sources by reference: a manifest under ``sources/`` in Common Crawl's own ``*.paths`` / ``*.paths.gz`` format (one
path per line, relative to a base URL) registers one shard per line, bound to the line's full URL; the file stays
where it is and the crawl streams it (:mod:`infra.remote`). The base URL is the one line of a ``base_url`` file in
the manifest's folder, or Common Crawl's HTTPS endpoint when there is none; a line that is a whole URL is taken as
it is. A line's key is the manifest's key, a dot, and the key of the line's file name
(``sources/cc/warc.paths.gz``, line ``crawl-data/.../CC-MAIN-1-00000.warc.gz``: ``cc.warc.CC-MAIN-1-00000``), so
the WARC and WAT of one crawl file are different shards. Lines appended later become new shards on the next pass;
a removed line keeps its shard (a registered key never re-points). The same clash rules hold for lines as for
files, and a line that cannot be a shard is reported (a summary per manifest), never registered.
"""

from __future__ import annotations

import json
import re
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime

from infra.credentials import redacted
from infra.lake import Lake, UnsafePathError, check_relative
from infra.remote import check_remote_url, is_remote

SOURCES = "sources"
REGISTRY = "registry/shards.json"
SOURCE_SUFFIXES = (".warc.wat.gz", ".warc.gz", ".wat.gz", ".warc", ".wat", ".parquet")
MANIFEST_SUFFIXES = (".paths.gz", ".paths")
BASE_URL_FILE = "base_url"
DEFAULT_BASE_URL = "https://data.commoncrawl.org/"
MAX_MANIFEST_BYTES = 256 << 20  # inflated; Common Crawl's largest (a crawl's WARC list) is about 10 MiB
MAX_LINE_CHARS = 2048
_RELATIVE_LINE = re.compile(r"^[A-Za-z0-9._~%+=,@-]+(?:/[A-Za-z0-9._~%+=,@-]+)*$")
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


def is_manifest(rel: str) -> bool:
    return rel.startswith(f"{SOURCES}/") and rel.endswith(MANIFEST_SUFFIXES)


def base_url(lake: Lake, manifest_rel: str) -> str:
    """The base URL a manifest's lines are relative to: its folder's ``base_url`` file, else Common Crawl's."""
    folder = manifest_rel.rsplit("/", 1)[0]
    rel = f"{folder}/{BASE_URL_FILE}"
    if not lake.exists(rel):
        return DEFAULT_BASE_URL
    text = lake.read_bytes(rel)[:MAX_LINE_CHARS].decode("utf-8", "replace").strip()
    return check_remote_url(text.rstrip("/") + "/")


def manifest_lines(data: bytes) -> list[str]:
    """The non-blank lines of a manifest file, gzip-compressed or not, inflated up to :data:`MAX_MANIFEST_BYTES`."""
    if data[:2] == b"\x1f\x8b":
        inflater = zlib.decompressobj(31)
        data = inflater.decompress(data, MAX_MANIFEST_BYTES)
        if inflater.unconsumed_tail:
            raise SourceError(f"inflates past {MAX_MANIFEST_BYTES} bytes")
        if not inflater.eof:
            raise SourceError("the gzip stream is cut short")
    return [line.strip() for line in data.decode("utf-8").splitlines() if line.strip()]


def _line_url(line: str, base: str) -> str:
    """The URL of one manifest line. A relative line is plain path characters only, so it cannot carry a query,
    user info or a way out of the base; the base itself was checked once."""
    if len(line) > MAX_LINE_CHARS:
        raise SourceError("the line is too long")
    if is_remote(line):
        return check_remote_url(line)
    path = line.lstrip("/")
    if not _RELATIVE_LINE.match(path) or "/./" in f"/{path}/" or "/../" in f"/{path}/":
        raise SourceError("not a relative path of plain characters")
    return base + path


def _shown(line: str) -> str:
    """What a message may repeat of a manifest line: a URL without user info or query, else the line up to its
    first character that is not a plain path character (``user:secret@...`` shows as ``user…``)."""
    if "://" in line:
        return redacted(line)[:200]
    plain = re.match(r"[A-Za-z0-9._~/-]*", line)[0][:200]
    return plain if plain == line else f"{plain}…"


def manifest_sources(lake: Lake, manifest_rel: str) -> tuple[list[tuple[str, str]], list[str]]:
    """(shard key, URL) for every usable line of a manifest, plus messages: one for a manifest that cannot be read,
    or one per kind of unusable line (how many, and the first of them)."""
    try:
        prefix = shard_key(manifest_rel[: -len(next(s for s in MANIFEST_SUFFIXES if manifest_rel.endswith(s)))])
        base = base_url(lake, manifest_rel)
        lines = manifest_lines(lake.read_bytes(manifest_rel))
    except (ValueError, OSError, zlib.error) as err:
        return [], [f"manifest {manifest_rel!r} cannot be read: {err}"]
    found: list[tuple[str, str]] = []
    bad: dict[str, list[str]] = {}
    for line in lines:
        try:
            url = _line_url(line, base)
            name = url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
            if not name.endswith(SOURCE_SUFFIXES):
                raise SourceError(f"not a {'/'.join(SOURCE_SUFFIXES)} file")
            key = f"{prefix}.{shard_key(name)}"
            check_shard_key(key)
        except (SourceError, ValueError) as err:
            why = re.split(r" from | '", str(err), maxsplit=1)[0]
            bad.setdefault(why, []).append(_shown(line))
            continue
        found.append((key, url))
    messages = [
        f"{len(lines_)} line(s) of manifest {manifest_rel!r} cannot be shards ({why}), e.g. {lines_[0]!r}"
        for why, lines_ in bad.items()
    ]
    return found, messages


def list_sources(lake: Lake) -> tuple[dict[str, str], list[str]]:
    """Map shard key -> source (a lake path, or a manifest line's URL) for every recognised file and manifest
    line, plus messages for those that cannot be shards.

    Two sources that fold to the same key are both reported and neither is listed: which one a key means must not
    depend on listing order.
    """
    candidates: list[tuple[str, str]] = []
    skipped: list[str] = []
    for rel in lake.list(SOURCES):
        if is_manifest(rel):
            lines, messages = manifest_sources(lake, rel)
            candidates += lines
            skipped += messages
            continue
        if not is_source(rel):
            continue
        try:
            candidates.append((shard_key(check_relative(rel)), rel))
        except SourceError as err:
            skipped.append(str(err))
        except UnsafePathError as err:
            skipped.append(f"{rel!r} cannot be a shard: the lake does not read such names ({err})")
    found: dict[str, str] = {}
    clashes: dict[str, dict[tuple[str, str], None]] = {}  # a line listed twice is one source, not a clash
    for key, source in candidates:
        clashes.setdefault(key.casefold(), {})[key, source] = None
        found[key] = source
    for folded, sources in clashes.items():
        if len(sources) > 1:
            shown = sorted(redacted(s) if is_remote(s) else s for _, s in sources)
            skipped.append(f"{shown} all map to shard {folded!r}: rename all but one")
            for key, _ in sources:
                found.pop(key, None)
    return found, skipped


@dataclass(frozen=True)
class Registration:
    """What one pass of the registry over the listing did."""

    new: dict[str, str]
    refused: list[str]


def registry(lake: Lake) -> dict[str, dict]:
    """Registered shards, in the order they arrived: key -> {"path", "registered_at"}. ``path`` is a lake path, or
    the URL of a source by reference."""
    return lake.read_json(REGISTRY) if lake.exists(REGISTRY) else {}


def register(lake: Lake, found: dict[str, str]) -> Registration:
    """Bind every new key in ``found`` to its source; refuse a source whose key (case-folded) is bound elsewhere.

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
            shown = redacted(rel) if is_remote(rel) else rel
            refused.append(f"{shown!r} maps to shard {key!r}, registered for {current[owner]['path']!r}: ignored")
    if new:
        lake.write_bytes(REGISTRY, json.dumps(current, indent=0, separators=(",", ":")).encode())
    return Registration(new, refused)


def source_for(lake: Lake, key: str) -> str:
    """The source a shard was registered with (a lake path, or a URL for a source by reference); a clear error when
    it is unknown or its lake file is gone. A URL is not checked here: the crawl reads it, and says if it is gone.

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
    if is_remote(entry["path"]):
        return entry["path"]
    if not lake.exists(entry["path"]):
        raise SourceError(f"the source of shard {key!r}, {lake.uri(entry['path'])}, is gone")
    return entry["path"]


def sync(lake: Lake, known: set[str]) -> tuple[list[str], list[str]]:
    """Register the files and manifest lines under ``sources/`` and return (shard keys to add as partitions,
    sources refused).

    A registered key whose partition is missing (deleted by hand) is returned again while its lake file exists;
    one by reference, always (asking a remote store about every line would make a pass cost minutes).
    """
    found, unusable = list_sources(lake)
    refused = unusable + register(lake, found).refused
    registered = registry(lake)
    missing = (k for k in registered if k not in known)
    return sorted(k for k in missing if is_remote(registered[k]["path"]) or lake.exists(registered[k]["path"])), refused
