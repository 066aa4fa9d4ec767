"""The dedup ops end to end on the real fixture photos, split over download-shaped shards in a test lake."""

from __future__ import annotations

import io
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pytest
from PIL import Image, ImageEnhance

from infra.lake import Lake
from ops.dedup import REASONS, SCHEMA, DedupConfig, build_index, cluster_size_histogram, dedup_shard, hash_shard
from ops.dedup.crops import FINGERPRINT_VERSION, N_WINDOWS
from ops.dedup.layout import decisions_path, details_path, hashes_path
from ops.ledger import check_ledger
from ops.tarscan import CorruptTar
from tests.ops.dedup.lakes import sample, write_shard
from tests.ops.lakes import jpeg
from tests.ops.tar_damage import KINDS, damaged

EXACT_GROUPS = [{"img1.png", "img4.png"}, {"img2.jpg", "img5.jpg"}, {"img3.jpg", "img6.jpg", "img7.jpg"}]
SHARD_A = ["img1.png", "img2.jpg", "img3.jpg", "blip.jpg", "cat.jpg", "img8.jpg", "img9.jpg", "img10.jpg"]
SHARD_A += ["img_pair_1.jpg", "img_pair_2.jpg"]
SHARD_B = ["img4.png", "img5.jpg", "img6.jpg"]
SHARD_C = ["img7.jpg"]


def _encode(image: Image.Image, fmt: str = "JPEG", quality: int = 90) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, quality=quality) if fmt == "JPEG" else image.save(out, fmt)
    return out.getvalue()


def _crop(image: Image.Image, area: float) -> Image.Image:
    """A centred crop keeping ``area`` of the pixels."""
    k = area**0.5
    w, h = image.size
    cw, ch = round(w * k), round(h * k)
    x, y = (w - cw) // 2, (h - ch) // 2
    return image.crop((x, y, x + cw, y + ch))


def _cut(image: Image.Image, left: float = 0, top: float = 0, right: float = 0, bottom: float = 0) -> Image.Image:
    """A crop that cuts these shares of the width (left, right) and height (top, bottom) away."""
    w, h = image.size
    return image.crop((round(w * left), round(h * top), w - round(w * right), h - round(h * bottom)))


def _shift(image: Image.Image) -> Image.Image:
    return Image.fromarray(np.clip(np.asarray(image, dtype=np.int16) + np.array([10, -6, 4]), 0, 255).astype(np.uint8))


class Photos:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def raw(self, name: str) -> bytes:
        return (self.folder / name).read_bytes()

    def image(self, name: str) -> Image.Image:
        return Image.open(self.folder / name).convert("RGB")

    def original(self, name: str) -> dict:
        return sample(name, self.raw(name), ext=name.rsplit(".", 1)[1])


def _near_copies(photos: Photos) -> tuple[list[dict], list[dict]]:
    """Perturbed copies of the fixture photos (shard b) and crops that keep at least 90% of the area, centred or
    not, some also resized or re-encoded (shard c)."""
    cat, img8, img9 = photos.image("cat.jpg"), photos.image("img8.jpg"), photos.image("img9.jpg")
    img10, blip, img2 = photos.image("img10.jpg"), photos.image("blip.jpg"), photos.image("img2.jpg")
    mild = [
        sample("cat@resize50", _encode(cat.resize((cat.width // 2, cat.height // 2), Image.BILINEAR))),
        sample("cat@q50", _encode(cat, quality=50)),
        sample("img8@q95", _encode(img8, quality=95)),
        sample("img8@shift", _encode(_shift(img8))),
        sample("img9@resize75", _encode(img9.resize((img9.width * 3 // 4, img9.height * 3 // 4), Image.BICUBIC))),
        sample("img2@brightness", _encode(ImageEnhance.Brightness(img2).enhance(1.08))),
        sample("cat@q75", _encode(cat, quality=75)),
        sample("blip@png", _encode(blip, "PNG"), ext="png"),
    ]
    corner = 1 - 0.9**0.5  # cut from two adjacent sides, keeping 90% of the area
    crops = [
        sample("img10@crop90", _encode(_crop(img10, 0.90))),
        sample("cat@crop95", _encode(_crop(cat, 0.95))),
        sample("img9@crop95", _encode(_crop(img9, 0.95))),
        sample("blip@corner", _encode(_cut(blip, right=corner, bottom=corner))),
        sample("img8@corner", _encode(_cut(img8, left=corner, top=corner), quality=60)),
        sample("cat@left10", _encode(_cut(cat, left=0.10))),
        sample("img2@bottom10", _encode(_cut(img2, bottom=0.10), quality=50)),
        sample("img9@sides", _encode(_cut(img9, left=0.05, right=0.05))),
        sample("img10@offcentre", _encode(_shift(_cut(img10, left=0.01, top=0.06, right=0.04, bottom=0.0)))),
        sample("cat@crop_resize", _encode(_cut(cat, top=0.04, right=0.04).resize((300, 230), Image.BICUBIC))),
    ]
    return mild, crops


@pytest.fixture(scope="module")
def photos(fixtures_dir) -> Photos:
    return Photos(fixtures_dir / "dedup_photos")


@pytest.fixture(scope="module")
def shards(photos) -> dict[str, list[dict]]:
    mild, crops = _near_copies(photos)
    # the same (URL, text) pair and image, downloaded again by another shard
    again = dict(photos.original("img10.jpg"), name="img10@again")
    broken = sample("broken", photos.raw("img2.jpg")[:5000])
    return {
        "shard-a": [photos.original(n) for n in SHARD_A] + [broken],
        "shard-b": [photos.original(n) for n in SHARD_B] + mild,
        "shard-c": [photos.original(n) for n in SHARD_C] + crops + [again],
    }


def _names(shards: dict[str, list[dict]]) -> dict[str, str]:
    """uid -> sample name; a uid met twice is named after its first sample."""
    names: dict[str, str] = {}
    for samples in shards.values():
        for s in samples:
            names.setdefault(s["uid"], s["name"])
    return names


@pytest.fixture(scope="module")
def hashed(tmp_path_factory, shards) -> Lake:
    """A lake whose three shards are downloaded and hashed once; tests rebuild the index as they need."""
    lake = Lake(str(tmp_path_factory.mktemp("dedup") / "lake"))
    for shard, samples in shards.items():
        write_shard(lake, shard, samples, failed=2, missing=1 if shard == "shard-a" else 0)
        hash_shard(lake, shard, DedupConfig()).check()
    return lake


def _decide(lake: Lake, config: DedupConfig, shards=("shard-a", "shard-b", "shard-c")) -> dict[str, dict]:
    """Build the index, run dedup_shard on every shard, check the books, and return rows by (shard, key)."""
    build_index(lake, list(shards), config).check()
    rows = {}
    for shard in shards:
        report = dedup_shard(lake, shard, config)
        table = lake.read_parquet(f"dedup/{shard}.parquet")
        assert table.schema.equals(SCHEMA)
        downloaded = lake.read_parquet(f"download/{shard}.parquet").to_pylist()
        expected = [r["uid"] for r in downloaded if r["kept"]]
        assert check_ledger(table, REASONS, report, expected_uids=expected) == []
        assert lake.exists(f"dedup/{shard}.report.json")
        for row in table.to_pylist():
            rows[(shard, row["key"])] = dict(row, shard=shard)
    return rows


def _by_name(rows: dict, shards: dict[str, list[dict]]) -> dict[str, dict]:
    out = {}
    for shard, samples in shards.items():
        for i, s in enumerate(samples):
            out[s["name"]] = rows[(shard, f"{i:09d}")]
    return out


def _survivor_name(row: dict, names: dict[str, str]) -> str:
    return names[row["uid"]] if row["kept"] else names[row["duplicate_of"]]


def test_exact_groups_across_shards_are_found(hashed, shards):
    rows = _by_name(_decide(hashed, DedupConfig()), shards)
    names = _names(shards)
    for group in EXACT_GROUPS:
        kept = [n for n in group if rows[n]["kept"]]
        assert len(kept) == 1, group
        for n in group - set(kept):
            assert rows[n]["reason"] == "exact_duplicate"
            assert _survivor_name(rows[n], names) == kept[0]
        assert len({rows[n]["pixel_sha256"] for n in group}) == 1
        assert min(rows[n]["cluster_size"] for n in group) >= len(group)


def test_perturbed_copies_in_other_shards_are_near_or_exact_duplicates(hashed, shards):
    rows = _by_name(_decide(hashed, DedupConfig()), shards)
    names = _names(shards)
    expected = {
        "cat@resize50": "near_duplicate",
        "cat@q50": "near_duplicate",
        "img8@q95": "near_duplicate",
        "img8@shift": "near_duplicate",
        "img9@resize75": "near_duplicate",
        "img2@brightness": "near_duplicate",
        "cat@q75": "near_duplicate",
        "blip@png": "exact_duplicate",
    }
    for name, reason in expected.items():
        original = rows[name.split("@")[0] + ".jpg"]
        assert _survivor_name(rows[name], names) == _survivor_name(original, names), name
        assert rows[name]["reason"] in ("", reason), name
    assert rows["img10@again"]["reason"] == "duplicate_pair"
    assert rows["img10@again"]["duplicate_of"] == rows["img10.jpg"]["uid"] == rows["img10@again"]["uid"]
    assert rows["img10@again"]["duplicate_of_shard"] == "shard-a"


CROPS = ["img10@crop90", "cat@crop95", "img9@crop95", "blip@corner", "img8@corner", "cat@left10", "img2@bottom10"]
CROPS += ["img9@sides", "img10@offcentre", "cat@crop_resize"]


def test_crops_in_other_shards_are_near_duplicates_at_the_default_config(hashed, shards):
    """Crops keeping 90-95% of the area (centred, from a corner, from one or two sides, off-centre, and crops
    also re-encoded, shifted in colour or resized) are dropped as near duplicates of the original in another
    shard: the original is larger, so it survives."""
    rows = _by_name(_decide(hashed, DedupConfig()), shards)
    names = _names(shards)
    for name in CROPS:
        original = name.split("@")[0] + ".jpg"
        assert rows[name]["reason"] == "near_duplicate", name
        assert _survivor_name(rows[name], names) == _survivor_name(rows[original], names), name
        assert rows[name]["duplicate_of_shard"] != "shard-c", name


def test_full_image_phash_alone_misses_the_crops(hashed, shards):
    """Without crop matching (and unchecked, as before it existed) most of these crops are 4-16 bits from their
    original and stay apart: the window hashes are what finds them."""
    legacy = DedupConfig(crop_radius=None, min_similarity=None)
    rows = _by_name(_decide(hashed, legacy), shards)
    assert sum(rows[name]["kept"] for name in CROPS) >= len(CROPS) // 2


def test_distinct_photos_are_not_merged(hashed, shards):
    rows = _by_name(_decide(hashed, DedupConfig()), shards)
    names = _names(shards)
    assert len({_survivor_name(rows[n], names) for n in SHARD_A}) == len(SHARD_A)


def test_checking_keeps_look_alikes_apart_even_at_a_wide_radius(hashed, shards):
    """The fixture illustrations img_pair_1/2 share their layout (plane vs boat, full pHashes 4 bits apart): an
    unchecked radius of 10 merges them, the checked one does not, and still finds the crops."""
    names = _names(shards)
    unchecked = _by_name(_decide(hashed, DedupConfig(phash_radius=10, crop_radius=None, min_similarity=None)), shards)
    assert _survivor_name(unchecked["img_pair_2.jpg"], names) == _survivor_name(unchecked["img_pair_1.jpg"], names)
    checked = _by_name(_decide(hashed, DedupConfig(phash_radius=10, crop_radius=10)), shards)
    assert len({_survivor_name(checked[n], names) for n in SHARD_A}) == len(SHARD_A)
    for name in CROPS:
        assert _survivor_name(checked[name], names) == _survivor_name(checked[name.split("@")[0] + ".jpg"], names)


def test_undecodable_and_missing_images_are_dropped_with_their_reason(hashed, shards):
    rows = _by_name(_decide(hashed, DedupConfig()), shards)
    assert rows["broken"]["kept"] is False
    assert rows["broken"]["reason"] == "undecodable"
    assert rows["broken"]["phash"] is None
    table = hashed.read_parquet("dedup/shard-a.parquet").to_pylist()
    missing = [r for r in table if r["reason"] == "missing_image"]
    assert len(missing) == 1 and missing[0]["key"] == f"{len(shards['shard-a']):09d}"


def test_survivors_do_not_depend_on_shard_order(tmp_path, hashed, shards):
    """The same samples in shards named so that they sort the other way round keep the same survivors: the
    survivor is chosen by (pixels, uid), so only which copy of a repeated uid is kept follows shard names."""
    first = _decide(hashed, DedupConfig())
    lake = Lake(str(tmp_path / "lake"))
    renamed = {"shard-a": "shard-z", "shard-b": "shard-y", "shard-c": "shard-x"}
    Path(lake.path("download")).mkdir(parents=True)
    for old, new in renamed.items():
        for suffix in ("tar", "parquet"):
            shutil.copy(hashed.path(f"download/{old}.{suffix}"), Path(lake.path("download")) / f"{new}.{suffix}")
        hash_shard(lake, new, DedupConfig())
    second = _decide(lake, DedupConfig(), shards=("shard-z", "shard-y", "shard-x"))

    def decisions(rows: dict) -> Counter:
        """Per uid: a uid met twice (the same URL and text) keeps one copy, whichever shard holds it."""
        return Counter((r["uid"], r["kept"], r["reason"], r["duplicate_of"]) for r in rows.values())

    assert decisions(first) == decisions(second)
    assert {r["uid"] for r in first.values() if r["kept"]} == {r["uid"] for r in second.values() if r["kept"]}


def test_adding_a_shard_hashes_only_that_shard(tmp_path, shards):
    """Old shards' hash files stay untouched, and their tars are not even needed to rebuild the index."""
    lake = Lake(str(tmp_path / "lake"))
    for shard in ("shard-a", "shard-b"):
        write_shard(lake, shard, shards[shard])
        hash_shard(lake, shard, DedupConfig())
    _decide(lake, DedupConfig(), shards=("shard-a", "shard-b"))

    def stamps() -> dict:
        return {
            path: (Path(lake.path(path)).stat().st_mtime_ns, lake.read_bytes(path))
            for s in ("shard-a", "shard-b")
            for path in (hashes_path(s), details_path(s))
        }

    before = stamps()
    for shard in ("shard-a", "shard-b"):
        lake.delete(f"download/{shard}.tar")
    write_shard(lake, "shard-c", shards["shard-c"])
    hash_shard(lake, "shard-c", DedupConfig())
    rows = _decide(lake, DedupConfig())
    assert stamps() == before
    names = _names(shards)
    img7 = next(r for r in rows.values() if names[r["uid"]] == "img7.jpg")
    assert img7["reason"] == "exact_duplicate" and names[img7["duplicate_of"]] in {"img3.jpg", "img6.jpg"}
    for crop in ("blip@corner", "cat@left10"):  # crops in the new shard, found against the old ones' hashes
        row = next(r for r in rows.values() if names[r["uid"]] == crop)
        assert row["reason"] == "near_duplicate" and row["duplicate_of_shard"] in {"shard-a", "shard-b"}
    assert cluster_size_histogram(lake)[3] >= 1


def test_eval_contamination_drops_near_copies_of_eval_images(tmp_path, hashed, shards, photos):
    """One eval set in the lake (eval/<name>/<class>/*.png) and one in a local folder. Copies and crops of the eval
    images are dropped, and so is a training image that an eval image is a crop of; its look-alike is not."""
    img9 = photos.image("img9.jpg")
    hashed.write_bytes("eval/tinybench/class0/a.png", _encode(img9.resize((256, 192), Image.BICUBIC), "PNG"))
    hashed.write_bytes("eval/tinybench/class1/not-an-image.png", b"garbage")
    local = tmp_path / "localbench" / "cls"
    local.mkdir(parents=True)
    (local / "b.png").write_bytes(_encode(photos.image("img8.jpg"), "PNG"))
    (local / "c.png").write_bytes(_encode(_cut(photos.image("img_pair_1.jpg"), right=0.08).resize((400, 436)), "PNG"))
    config = DedupConfig(eval_sets=("eval/tinybench", str(tmp_path / "localbench")))
    report = build_index(hashed, ["shard-a", "shard-b", "shard-c"], config)
    assert report.extra["eval.tinybench.images"] == 2 and report.extra["eval.tinybench.undecodable"] == 1
    rows = _by_name(_decide(hashed, config), shards)
    dirty = {"img9.jpg", "img9@resize75", "img9@crop95", "img9@sides", "img8.jpg", "img8@q95", "img8@shift"}
    dirty |= {"img8@corner", "img_pair_1.jpg"}
    assert {n for n, r in rows.items() if r["reason"] == "eval_contamination"} == dirty
    assert report.dropped["eval_contamination"] == len(dirty)
    assert rows["img9.jpg"]["duplicate_of"] == "class0/a.png"
    assert rows["img9.jpg"]["duplicate_of_shard"] == "eval:tinybench"
    assert rows["img8.jpg"]["duplicate_of_shard"] == "eval:localbench"
    assert rows["img_pair_1.jpg"]["duplicate_of"] == "cls/c.png"
    assert rows["img_pair_2.jpg"]["kept"]


def test_the_index_refuses_a_stale_config(hashed):
    build_index(hashed, ["shard-a", "shard-b", "shard-c"], DedupConfig())
    for other in (DedupConfig(phash_radius=4), DedupConfig(crop_radius=8), DedupConfig(min_similarity=0.95)):
        with pytest.raises(ValueError, match="another config"):
            dedup_shard(hashed, "shard-a", other)


def test_crop_matching_cannot_go_unchecked():
    with pytest.raises(ValueError, match="min_similarity"):
        DedupConfig(min_similarity=None)
    assert not DedupConfig(crop_radius=None, min_similarity=None).verified


def test_hash_tables_hold_window_hashes_and_a_detail_file(hashed, shards):
    table = hashed.read_parquet(hashes_path("shard-a"))
    meta = {k.decode(): v.decode() for k, v in table.schema.metadata.items()}
    assert meta["fingerprint_version"] == FINGERPRINT_VERSION
    decoded = table.filter(pc.equal(table["reason"], ""))
    assert all(len(w) == N_WINDOWS for w in decoded["window_phash"].to_pylist())
    details = hashed.read_parquet(details_path("shard-a"))
    assert details["key"].to_pylist() == decoded["key"].to_pylist()
    assert all(len(d) == 64 * 64 for d in details["detail"].to_pylist())


def test_tables_hashed_before_crop_matching_are_refused_unless_it_is_off(tmp_path, shards):
    """A hash table without the fingerprint version (written before window hashes existed) cannot be checked:
    the index asks for a re-hash, or compares full-image pHashes only, unchecked, as it used to."""
    lake = Lake(str(tmp_path / "lake"))
    write_shard(lake, "old", shards["shard-b"])
    hash_shard(lake, "old", DedupConfig())
    table = lake.read_parquet(hashes_path("old"))
    legacy = table.drop_columns(["window_phash"]).replace_schema_metadata({"embed_model": "", "embed_pretrained": ""})
    lake.write_parquet(hashes_path("old"), legacy)
    lake.delete(details_path("old"))
    with pytest.raises(ValueError, match="re-run hash_shard"):
        build_index(lake, ["old"], DedupConfig())
    config = DedupConfig(crop_radius=None, min_similarity=None)
    build_index(lake, ["old"], config).check()
    assert dedup_shard(lake, "old", config).rows_dropped >= 2


def test_empty_and_undecodable_only_shards(tmp_path):
    lake = Lake(str(tmp_path / "lake"))
    write_shard(lake, "empty", [], failed=3)
    write_shard(lake, "broken", [sample("junk", b"not an image")])
    for shard in ("empty", "broken"):
        hash_shard(lake, shard, DedupConfig()).check()
    assert build_index(lake, [], DedupConfig()).rows_in == 0
    rows = _decide(lake, DedupConfig(), shards=("empty", "broken"))
    assert [r["reason"] for r in rows.values()] == ["undecodable"]
    assert cluster_size_histogram(lake) == {}


def test_an_eval_set_nothing_resembles_drops_nothing(tmp_path, photos):
    lake = Lake(str(tmp_path / "lake"))
    write_shard(lake, "s", [photos.original(n) for n in ("cat.jpg", "img8.jpg")])
    hash_shard(lake, "s", DedupConfig())
    lake.write_bytes("eval/other/c/x.png", _encode(photos.image("blip.jpg"), "PNG"))
    report = build_index(lake, ["s"], DedupConfig(eval_sets=("eval/other",)))
    assert report.rows_kept == 2 and not report.dropped


def test_the_index_names_the_shards_whose_decisions_changed(tmp_path, shards, photos):
    """Only those have to run ``dedup`` again: none after an unchanged rebuild, a new shard alone when it brings
    nothing the others hold, and old shards too when a new, better copy takes their survivor's place."""
    lake = Lake(str(tmp_path / "lake"))
    for shard in ("shard-a", "shard-b"):
        write_shard(lake, shard, shards[shard])
        hash_shard(lake, shard, DedupConfig())
    assert build_index(lake, ["shard-a", "shard-b"], DedupConfig()).extra["affected_shards"] == ["shard-a", "shard-b"]
    assert build_index(lake, ["shard-b", "shard-a"], DedupConfig()).extra["affected_shards"] == []

    write_shard(lake, "shard-new", [sample("unrelated", jpeg(5, (300, 200)))])
    hash_shard(lake, "shard-new", DedupConfig())
    grown = ["shard-a", "shard-b", "shard-new"]
    assert build_index(lake, grown, DedupConfig()).extra["affected_shards"] == ["shard-new"]

    # a smaller copy joins cat's cluster: the old survivor stays, only its cluster grows, so no old shard is named
    cat = photos.image("cat.jpg")
    write_shard(lake, "shard-small", [sample("cat@half", _encode(cat.resize((cat.width // 2, cat.height // 2))))])
    hash_shard(lake, "shard-small", DedupConfig())
    grown.append("shard-small")
    report = build_index(lake, grown, DedupConfig())
    assert report.extra["affected_shards"] == ["shard-small"]
    [small] = lake.read_parquet(decisions_path("shard-small")).to_pylist()
    assert small["reason"] == "near_duplicate" and small["duplicate_of_shard"] in ("shard-a", "shard-b")
    assert small["cluster_size"] >= 3  # the file records the grown cluster all the same

    write_shard(lake, "shard-big", [sample("cat@x2", _encode(cat.resize((cat.width * 2, cat.height * 2))))])
    hash_shard(lake, "shard-big", DedupConfig())
    report = build_index(lake, [*grown, "shard-big"], DedupConfig())
    # the larger copy survives: cat in shard-a is now its duplicate, and so are cat's copies in shard-b and shard-small
    assert report.extra["affected_shards"] == ["shard-a", "shard-b", "shard-big", "shard-small"]
    dedup_shard(lake, "shard-a", DedupConfig())
    rows = _by_name(
        {("shard-a", r["key"]): r for r in lake.read_parquet("dedup/shard-a.parquet").to_pylist()},
        {"shard-a": shards["shard-a"]},
    )
    assert rows["cat.jpg"]["reason"] == "near_duplicate" and rows["cat.jpg"]["duplicate_of_shard"] == "shard-big"

    every = [*grown, "shard-big"]
    assert build_index(lake, every, DedupConfig(phash_radius=4)).extra["affected_shards"] == sorted(every)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("where", [3, 1_001, 77_777])
def test_a_damaged_tar_fails_hashing_instead_of_dropping_the_rest(tmp_path: Path, shards, kind: str, where: int):
    """Damage anywhere in the tar (a header, a cut, a sample gone) fails the step with the tar's name; no hash table
    is published, and no sample after the damage passes for a missing image."""
    lake = Lake(str(tmp_path / "lake"))
    write_shard(lake, "s", shards["shard-a"])
    lake.write_bytes("download/s.tar", damaged(lake.read_bytes("download/s.tar"), kind, where))
    with pytest.raises(CorruptTar, match=r"download/s\.tar"):
        hash_shard(lake, "s", DedupConfig())
    assert not lake.exists(hashes_path("s"))
