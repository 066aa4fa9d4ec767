"""download: fetch one shard's kept crawl pairs with img2dataset into a webdataset tar plus a ledger.

img2dataset does the downloading exactly as DataComp runs it; this module only feeds it the shard's kept pairs
and turns its per-row parquet into our ledger (every input uid kept, or dropped with a reason from
``REASONS``). img2dataset writes into a private staging folder on local disk; the finished tar, ledger and stats
are then published into the lake one file at a time (atomic on disk and on S3), the report last. A re-run starts
from a fresh staging folder, so it is idempotent and never trips over img2dataset's own incremental state.
"""

from __future__ import annotations

import json
import math
import os
import re
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from infra.lake import Lake
from ops import graph
from ops.decoder_limit import check_decoder_limit, set_default
from ops.optout import OPT_OUT_DIRECTIVES
from ops.report import StageReport
from ops.stage import Decisions, run_shard_stage
from ops.tarscan import iter_samples, sample_keys

DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's decompression-bomb limit

REASONS = frozenset(
    {
        "http_client_error",
        "redirect_error",
        "private_address",
        "http_server_error",
        "timeout",
        "connection_error",
        "opt_out",
        "not_an_image",
        "image_too_small",
        "image_too_large",
        "decompression_bomb",
        "deadline_exceeded",
        "body_too_large",
        "bad_aspect_ratio",
        "hash_mismatch",
        "download_error",
        "missing_from_downloader",
    }
)

LEDGER_SCHEMA = pa.schema(
    [
        ("uid", pa.string()),
        ("key", pa.string()),
        ("url", pa.string()),
        ("kept", pa.bool_()),
        ("reason", pa.string()),
        ("error_message", pa.string()),
        ("width", pa.int64()),
        ("height", pa.int64()),
        ("original_width", pa.int64()),
        ("original_height", pa.int64()),
        ("sha256", pa.string()),
    ]
)


@dataclass(frozen=True)
class DownloadConfig:
    """img2dataset settings; the defaults are DataComp's (512 px, keep_ratio_largest, jpg, 2 retries), plus the
    guard's limits (see :mod:`ops.download_guard`)."""

    image_size: int = 512
    resize_mode: str = "keep_ratio_largest"
    resize_only_if_bigger: bool = True
    encode_format: str = "jpg"
    encode_quality: int = 95
    timeout: int = 10
    retries: int = 2
    thread_count: int = 64
    min_image_size: int = 0
    max_image_area: float | None = None  # pixels; None: no limit
    max_aspect_ratio: float | None = None  # None: no limit
    user_agent_token: str = "clipfoundry"
    disallowed_header_directives: tuple[str, ...] = OPT_OUT_DIRECTIVES  # the crawl's opt-out rule (ops.optout)
    allow_networks: tuple[str, ...] = ()  # non-public networks the guard admits (the demo: 127.0.0.0/8)
    max_image_pixels: int = DEFAULT_MAX_PIXELS  # refuse bigger images before decoding (Pillow's bomb limit)
    request_deadline: float = 60.0  # seconds one request may take in all, redirects and body included
    max_body_bytes: int = 32 << 20  # the largest image body downloaded
    # "origin=replacement" pairs: fetch URLs of an origin from another one, without changing the URLs (and so the
    # uids) the crawl recorded; the demo maps its sample web's fixed origin to the port it is served on
    origin_overrides: tuple[str, ...] = ()


def paths(shard: str) -> dict[str, str]:
    """Lake paths of one shard's download outputs: the ledger is the stage's table (see :mod:`ops.graph`)."""
    stage = graph.stage("download")
    return {
        "tar": f"download/{shard}.tar",
        "ledger": stage.table(shard),
        "stats": f"download/{shard}_stats.json",
        "report": stage.report(shard),
    }


def iter_tar_samples(lake: Lake, shard: str) -> Iterator[tuple[str, dict[str, bytes]]]:
    """The samples of ``download/<shard>.tar`` in tar order, every header verified; read to its end, the tar must
    hold exactly the keys the ledger kept, so a damaged tar fails its reader (:class:`ops.tarscan.CorruptTar`)
    instead of making every sample after the damage look missing."""
    ledger = lake.read_parquet(paths(shard)["ledger"], columns=["key", "kept"])
    keys = ledger.filter(pc.field("kept"))["key"].to_pylist()
    with lake.open(paths(shard)["tar"]) as f:
        yield from iter_samples(f, lake.uri(paths(shard)["tar"]), keys)


_HTTP = re.compile(r"HTTP Error (\d{3})")


def classify_error(status: str | None, message: str | None) -> str:
    """Map img2dataset's free-text error to our fixed reason vocabulary (the raw text is kept beside it)."""
    msg = (message or "").lower()
    if status == "success":
        return ""
    if "download deadline exceeded" in msg:
        return "deadline_exceeded"
    if "response body too large" in msg:
        return "body_too_large"
    if "cv_io_max_image_pixels" in msg:  # OpenCV's own limit, behind the header guard
        return "decompression_bomb"
    if m := _HTTP.search(message or ""):
        return {"3": "redirect_error", "5": "http_server_error"}.get(m.group(1)[0], "http_client_error")
    if "blocked non-public address" in msg:
        return "private_address"
    if "x-robots-tag" in msg:
        return "opt_out"
    if "timed out" in msg or "timeout" in msg:
        return "timeout"
    if "image too small" in msg:
        return "image_too_small"
    if "decompression bomb" in msg:
        return "decompression_bomb"
    if "area too large" in msg:
        return "image_too_large"
    if "aspect ratio" in msg:
        return "bad_aspect_ratio"
    if "hash mismatch" in msg:
        return "hash_mismatch"
    if status == "failed_to_resize" or "decod" in msg or "cannot identify" in msg:
        return "not_an_image"
    if "urlopen error" in msg or "connection" in msg or "remote end closed" in msg or "name or service" in msg:
        return "connection_error"
    return "download_error"


def download_shard(lake: Lake, shard: str, config: DownloadConfig) -> StageReport:
    """Download the pairs the crawl kept and publish tar, ledger, stats and report (the report last)."""

    def decide(todo: pa.Table) -> Decisions:
        with tempfile.TemporaryDirectory(prefix=f"clipfoundry-download-{shard}-") as staging:
            work = Path(staging)
            out = _run_img2dataset(todo, work, config) if todo.num_rows else _empty_outputs(work)
            produced = _ledger(todo, pq.read_table(out["parquet"]))
            ledger, mismatched, hashes = check_hashes(produced, todo["expected_sha256"])
            if mismatched:
                _drop_from_tar(out["tar"], mismatched)
            target = paths(shard)
            extra = {"tar_samples": len(sample_keys(out["tar"])), "bytes": out["tar"].stat().st_size, **hashes}
            lake.put_file(out["tar"], target["tar"])
            lake.put_file(out["stats"], target["stats"])
        extra["config"] = json.dumps(asdict(config), default=str)
        return Decisions(ledger, extra=extra)

    return run_shard_stage(lake, graph.stage("download"), shard, decide, columns=["url", "text", "expected_sha256"])


def override_origins(urls: list[str], overrides: tuple[str, ...]) -> list[str]:
    """The URLs to fetch: each URL under an overridden origin re-based onto its replacement."""
    pairs = []
    for entry in overrides:
        origin, sep, replacement = entry.partition("=")
        if not sep or "://" not in origin or "://" not in replacement:
            raise ValueError(f"origin override {entry!r} is not 'scheme://host[:port]=scheme://host[:port]'")
        pairs.append((origin.rstrip("/") + "/", replacement.rstrip("/") + "/"))
    out = []
    for url in urls:
        for origin, replacement in pairs:
            if url.startswith(origin):
                url = replacement + url[len(origin) :]
                break
        out.append(url)
    return out


def tar_problems(_lake: Lake, _shard: str, report: StageReport) -> list[str]:
    """The download's own rule beside the ledger: the published tar holds exactly the kept samples."""
    if report.extra.get("tar_samples") != report.rows_kept:
        return [f"tar holds {report.extra.get('tar_samples')} samples, ledger keeps {report.rows_kept}"]
    return []


def check_hashes(ledger: pa.Table, expected: pa.ChunkedArray) -> tuple[pa.Table, set[str], dict[str, int]]:
    """Drop, as ``hash_mismatch``, every kept image whose SHA-256 differs from the one its URL list claims.

    img2dataset hashes the bytes it downloaded (``compute_hash``), before any resizing, so the ledger's ``sha256``
    is what the claim is about. Its own ``verify_hash`` is not used: it compares every row, and a row with no
    claim fails as a mismatch, so a list in which only some rows claim a hash could not be verified at all.
    Returns the ledger, the tar keys to remove and the counts for the report.
    """
    claims = expected.to_pylist()
    kept, reasons = ledger["kept"].to_pylist(), ledger["reason"].to_pylist()
    keys, digests = ledger["key"].to_pylist(), ledger["sha256"].to_pylist()
    remove: set[str] = set()
    checked = 0
    for i, claim in enumerate(claims):
        if claim is None or not kept[i]:
            continue
        checked += 1
        if digests[i] != claim:
            kept[i], reasons[i] = False, "hash_mismatch"
            remove.add(keys[i])
    counts = {"sha256_claimed": len(claims) - expected.null_count, "sha256_checked": checked}
    if not remove:
        return ledger, remove, counts
    ledger = ledger.set_column(ledger.schema.get_field_index("kept"), "kept", pa.array(kept, pa.bool_()))
    ledger = ledger.set_column(ledger.schema.get_field_index("reason"), "reason", pa.array(reasons, pa.string()))
    return ledger, remove, counts


def _drop_from_tar(path: Path, keys: set[str]) -> None:
    """Rewrite a local webdataset tar without the samples of ``keys`` (every file named ``<key>.<ext>``)."""
    kept = path.with_name(f"{path.stem}.checked.tar")
    with tarfile.open(path) as source, tarfile.open(kept, "w", format=tarfile.PAX_FORMAT) as out:
        for member in source:
            if member.name.rsplit("/", 1)[-1].split(".", 1)[0] in keys:
                continue
            out.addfile(member, source.extractfile(member) if member.isfile() else None)
    kept.replace(path)


def _run_img2dataset(todo: pa.Table, work: Path, config: DownloadConfig) -> dict[str, Path]:
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    os.environ.setdefault("WANDB_MODE", "disabled")
    set_default(DEFAULT_MAX_PIXELS)  # OpenCV reads its limit once, when it loads: before img2dataset imports it
    from img2dataset import download  # heavy import (albumentations, wandb, OpenCV): only when a shard has work

    from ops.download_guard import Limits, guarded_img2dataset

    check_decoder_limit()
    limits = Limits(config.request_deadline, config.max_body_bytes, tuple(config.disallowed_header_directives))

    src = work / "input.parquet"
    fetch = {
        "uid": todo["uid"],
        "url": pa.array(override_origins(todo["url"].to_pylist(), config.origin_overrides), pa.string()),
        "caption": todo["text"],
    }
    pq.write_table(pa.table(fetch), src)
    out_dir = work / "out"
    with guarded_img2dataset(config.allow_networks, config.max_image_pixels, limits):
        download(
            url_list=str(src),
            input_format="parquet",
            url_col="url",
            caption_col="caption",
            save_additional_columns=["uid"],
            output_format="webdataset",
            output_folder=str(out_dir),
            processes_count=1,
            thread_count=config.thread_count,
            number_sample_per_shard=max(todo.num_rows, 1),
            oom_shard_count=5,
            image_size=config.image_size,
            resize_mode=config.resize_mode,
            resize_only_if_bigger=config.resize_only_if_bigger,
            encode_format=config.encode_format,
            encode_quality=config.encode_quality,
            timeout=config.timeout,
            retries=config.retries,
            min_image_size=config.min_image_size,
            max_image_area=config.max_image_area or math.inf,
            max_aspect_ratio=config.max_aspect_ratio or math.inf,
            user_agent_token=config.user_agent_token,
            disallowed_header_directives=None,  # the guard applies the crawl's opt-out rule instead
            compute_hash="sha256",
            enable_wandb=False,
            incremental_mode="incremental",
        )
    produced = {
        "tar": out_dir / "00000.tar",
        "parquet": out_dir / "00000.parquet",
        "stats": out_dir / "00000_stats.json",
    }
    missing = [str(p) for p in produced.values() if not p.exists()]
    if missing:
        raise RuntimeError(f"img2dataset finished without writing {missing}; see its log above")
    return produced


def _empty_outputs(work: Path) -> dict[str, Path]:
    """An empty shard still publishes a (valid, empty) tar, ledger and stats so downstream stages see it."""
    work.mkdir(parents=True, exist_ok=True)
    tar_path = work / "empty.tar"
    with tarfile.open(tar_path, "w"):
        pass
    parquet = work / "empty.parquet"
    pq.write_table(pa.table({"uid": pa.array([], pa.string())}), parquet)
    stats = work / "empty_stats.json"
    stats.write_text(json.dumps({"count": 0, "successes": 0, "failed_to_download": 0, "failed_to_resize": 0}))
    return {"tar": tar_path, "parquet": parquet, "stats": stats}


def _ledger(todo: pa.Table, produced: pa.Table) -> pa.Table:
    """One row per input uid, in input order; uids img2dataset failed to report are dropped loudly, not lost."""
    rows = {uid: i for i, uid in enumerate(produced["uid"].to_pylist())} if produced.num_rows else {}
    cols = {
        name: produced[name].to_pylist() if name in produced.column_names else None
        for name in (
            "key",
            "status",
            "error_message",
            "width",
            "height",
            "original_width",
            "original_height",
            "sha256",
        )
    }
    out: dict[str, list] = {f.name: [] for f in LEDGER_SCHEMA}
    for uid, url in zip(todo["uid"].to_pylist(), todo["url"].to_pylist(), strict=True):
        i = rows.get(uid)
        out["uid"].append(uid)
        out["url"].append(url)
        if i is None:
            out["kept"].append(False)
            out["reason"].append("missing_from_downloader")
            for name in (
                "key",
                "error_message",
                "width",
                "height",
                "original_width",
                "original_height",
                "sha256",
            ):
                out[name].append(None)
            continue
        status = cols["status"][i] if cols["status"] else None
        message = cols["error_message"][i] if cols["error_message"] else None
        out["kept"].append(status == "success")
        out["reason"].append(classify_error(status, message))
        out["error_message"].append(message)
        for name in ("key", "width", "height", "original_width", "original_height", "sha256"):
            out[name].append(cols[name][i] if cols[name] else None)
    return pa.Table.from_pydict(out, schema=LEDGER_SCHEMA)
