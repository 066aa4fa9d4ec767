"""The safety stage: each kind of personal data found in generated captions however it is written, no ordinary
caption dropped, and the stage's books on a real lake.

Captions are generated from seeded templates, so every run checks the same few hundred varied strings. Check
digits (Luhn, IBAN mod 97) are computed here, independently of :mod:`ops.safety`.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable

import pytest

from infra.lake import Lake
from ops import graph
from ops.quality.config import HeuristicRules, QualityConfig
from ops.safety import (
    EMAIL,
    IBAN,
    IP_ADDRESS,
    NATIONAL_ID,
    PAYMENT_CARD,
    PHONE,
    REASONS,
    SafetyConfig,
    pii_reason,
    safety_shard,
)
from ops.stage import conservation_problems
from tests.ops.lakes import Pair, Settings, ingest, jpeg, run

N = 60  # captions per generator
AROUND = [
    "{}",
    "contact: {}",
    "Call {} today!",
    "photo by Anna ({})",
    "{}, sunset over the bay",
    "IMG_0042 - {} - beach",
    "for sale, details at {}.",
]


def luhn_digit(body: str) -> str:
    """The check digit that makes ``body + digit`` pass Luhn (ISO/IEC 7812)."""
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return str((10 - total % 10) % 10)


def card_number(rng: random.Random) -> str:
    prefix, length = rng.choice([("4", 16), ("51", 16), ("55", 16), ("34", 15), ("37", 15), ("6011", 16), ("4", 19)])
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    return body + luhn_digit(body)


def spaced(digits: str, groups: list[int], sep: str) -> str:
    out, i = [], 0
    for g in groups:
        out.append(digits[i : i + g])
        i += g
    if i < len(digits):
        out.append(digits[i:])
    return sep.join(out)


def written_card(rng: random.Random, number: str) -> str:
    groups = [4, 6, 5] if len(number) == 15 else [4, 4, 4, 4]
    return spaced(number, groups, rng.choice([" ", "-", ""]))


IBAN_LENGTHS = {"DE": 22, "GB": 22, "FR": 27, "NL": 18, "ES": 24, "IT": 27, "CH": 21, "BE": 16, "PL": 28}


def iban(rng: random.Random, valid: bool = True) -> str:
    country = rng.choice(sorted(IBAN_LENGTHS))
    n = IBAN_LENGTHS[country] - 4
    bban = "".join(rng.choice(string.digits if i % 3 else string.ascii_uppercase + string.digits) for i in range(n))
    if country in ("NL", "GB"):
        bban = "".join(rng.choice(string.ascii_uppercase) for _ in range(4)) + bban[4:]
    number = int("".join(str(int(c, 36)) for c in bban + country + "00"))
    check = 98 - number % 97
    if not valid:
        check = rng.choice([c for c in range(2, 99) if c != check])
    return f"{country}{check:02d}{bban}"


def written_iban(rng: random.Random, code: str) -> str:
    return spaced(code, [4] * 8, " ") if rng.random() < 0.6 else code


def email(rng: random.Random) -> str:
    user = rng.choice(["anna", "j.smith", "first.last+photos", "x_y-z", "info", "M.Mueller2024", "a"])
    domain = rng.choice(["example.com", "mail.example.co.uk", "studio-42.de", "EXAMPLE.ORG", "uni.edu", "x.io"])
    return f"{user}@{domain}"


def phone(rng: random.Random) -> str:
    def d(n: int) -> str:
        return "".join(rng.choice(string.digits) for _ in range(n))

    return rng.choice(
        [
            f"+1 {d(3)} {d(3)} {d(4)}",
            f"+1-{d(3)}-{d(3)}-{d(4)}",
            f"({d(3)}) {d(3)}-{d(4)}",
            f"{d(3)}-{d(3)}-{d(4)}",
            f"{d(3)}.{d(3)}.{d(4)}",
            f"+44 20 {d(4)} {d(4)}",
            f"+33 1 {d(2)} {d(2)} {d(2)} {d(2)}",
            f"+49 30 {d(4)} {d(4)}",
            f"+49 (0) 30 {d(3)} {d(4)}",
            f"+91 {d(5)} {d(5)}",
            f"0{d(2)} {d(4)} {d(4)}",
        ]
    )


def ssn(rng: random.Random, valid: bool = True) -> str:
    area = rng.choice([rng.randint(1, 665), rng.randint(667, 899)])
    group, serial = rng.randint(1, 99), rng.randint(1, 9999)
    if not valid:
        area, group, serial = rng.choice(
            [
                (0, group, serial),
                (666, group, serial),
                (rng.randint(900, 999), group, serial),
                (area, 0, serial),
                (area, group, 0),
            ]
        )
    return f"{area:03d}-{group:02d}-{serial:04d}"


def ipv4(rng: random.Random) -> str:
    return ".".join(str(rng.choice([rng.randint(0, 255), 0, 1, 10, 192, 255])) for _ in range(4))


def ipv4_invalid(rng: random.Random) -> str:
    parts = [str(rng.randint(0, 255)) for _ in range(4)]
    parts[rng.randrange(4)] = str(rng.randint(256, 999))
    return ".".join(parts)


GENERATORS: dict[str, Callable[[random.Random], str]] = {
    EMAIL: email,
    PAYMENT_CARD: lambda rng: written_card(rng, card_number(rng)),
    IBAN: lambda rng: written_iban(rng, iban(rng)),
    NATIONAL_ID: ssn,
    PHONE: phone,
    IP_ADDRESS: ipv4,
}


def captions(make: Callable[[random.Random], str], seed: int) -> list[str]:
    rng = random.Random(seed)
    return [rng.choice(AROUND).format(make(rng)) for _ in range(N)]


@pytest.mark.parametrize("kind", REASONS)
def test_each_kind_is_found_however_it_is_written(kind):
    missed = [c for c in captions(GENERATORS[kind], seed=REASONS.index(kind)) if pii_reason(c, SafetyConfig()) != kind]
    assert missed == []


def test_a_check_switched_off_is_not_applied():
    caption = f"contact: {email(random.Random(0))}"
    assert pii_reason(caption, SafetyConfig(checks=(PHONE,))) == ""
    assert pii_reason(caption, SafetyConfig()) == EMAIL
    with pytest.raises(ValueError, match="unknown safety checks"):
        SafetyConfig(checks=("pii_email", "pii_passport"))


def test_the_first_kind_in_precedence_names_the_drop():
    assert pii_reason("mail anna@example.com or call +1 415 555 0132", SafetyConfig()) == EMAIL
    assert pii_reason("call +1 415 555 0132 from 10.0.0.1", SafetyConfig()) == PHONE


def ordinary(rng: random.Random) -> str:
    """A caption with the numbers ordinary alt text is full of."""
    year, month, day = rng.randint(1900, 2030), rng.randint(1, 12), rng.randint(1, 28)
    w, h = rng.choice([(1920, 1080), (3840, 2160), (800, 600), (1280, 720), (640, 480)])
    return rng.choice(
        [
            f"Summer holiday {year}",
            f"wallpaper {w}x{h}",
            f"wallpaper {w} x {h} px",
            f"{w}×{h} HD background",
            f"price ${rng.randint(1, 9999)}.{rng.randint(0, 99):02d}",
            f"now only {rng.randint(1, 999)},{rng.randint(0, 99):02d} €",
            f"EUR {rng.randint(1, 99)}.{rng.randint(100, 999)},00",
            f"{rng.randint(1, 9)} {rng.randint(100, 999)} {rng.randint(100, 999)} won",
            f"Samsung SM-G{rng.randint(900, 999)}B, 128 GB",
            f"RTX {rng.choice([3060, 3080, 4090])} graphics card",
            f"Sony WH-{rng.randint(1000, 1200)}XM{rng.randint(3, 5)} headphones",
            f"taken on {year}-{month:02d}-{day:02d}",
            f"taken on {day:02d}.{month:02d}.{year}",
            f"posted {month:02d}/{day:02d}/{year} at {rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}",
            f"festival {day:02d}.{month:02d}.{year} - {day + 1:02d}.{month:02d}.{year}",
            f"open {day:02d}.{month:02d}.-{day + 2:02d}.{month:02d}.{year}",
            f"version {rng.randint(0, 9)}.{rng.randint(0, 20)}.{rng.randint(0, 99)}",
            f"release v{rng.randint(0, 9)}.{rng.randint(0, 9)}.{rng.randint(0, 9)}.{rng.randint(0, 9)}",
            f"Python {rng.randint(2, 3)}.{rng.randint(0, 13)} logo",
            f"route {rng.randint(1, 99)}, mile {rng.randint(1, 400)}.{rng.randint(0, 9)}",
            f"{rng.randint(2, 12)} pack, {rng.randint(100, 999)} ml, {rng.randint(1, 9)}.{rng.randint(0, 9)} kg",
            f"score {rng.randint(0, 9)}-{rng.randint(0, 9)}, {rng.randint(10000, 99999)} fans",
            f"ISBN 978-{rng.randint(0, 9)}-{rng.randint(100, 999)}-{rng.randint(10000, 99999)}-{rng.randint(0, 9)}",
            f"lot {rng.randint(1, 999)} of {rng.randint(1000, 9999)}",
            f"population {rng.randint(1, 999):,} ({year} census)".replace(",", " "),
            f"coordinates {rng.uniform(-90, 90):.4f}, {rng.uniform(-180, 180):.4f}",
            f"{rng.choice(['logo', 'icon', 'hero-banner'])}@{rng.randint(2, 3)}x.{rng.choice(['png', 'jpg', 'webp'])}",
            f"sprite sheet, retina assets {rng.choice(['btn', 'nav'])}@2x.png",
            f"EAN {rng.randint(10**12, 10**13 - 1)}",
            f"floor mats for {year} {year + 1} {year + 2} models",
            f"seasons {year}-{year + 1}-{year + 2}",
            f"{rng.randint(1, 9)},{rng.randint(100, 999)},{rng.randint(100, 999)} views",
            f"{rng.randint(10, 99)} {rng.randint(100, 999)} {rng.randint(100, 999)} {rng.randint(100, 999)} km",
        ]
    )


def test_ordinary_captions_full_of_numbers_are_kept():
    rng = random.Random(7)
    flagged = {c: pii_reason(c, SafetyConfig()) for c in (ordinary(rng) for _ in range(600))}
    assert {c: r for c, r in flagged.items() if r} == {}


@pytest.mark.parametrize(
    "caption",
    [
        "4111 1111 1111 1112",  # a card-like number failing Luhn
        "1111 1111 1111 1111",  # one repeated digit, though it passes Luhn
        "000-12-3456",  # no SSN has area 000, 666 or 900-999, group 00 or serial 0000
        "666-12-3456",
        "912-34-5678",
        "123-00-4567",
        "123-45-0000",
        "256.1.1.1 and 1.2.3.999",  # octets above 255
        "10.0.0",  # three parts: a version, not an address
        "me at example dot com",
        "@example.com",
    ],
)
def test_numbers_that_only_look_like_personal_data_are_kept(caption):
    assert pii_reason(caption, SafetyConfig()) == ""


def test_invalid_check_digits_are_not_personal_data():
    rng = random.Random(3)
    for _ in range(N):
        number = card_number(rng)
        wrong = number[:-1] + str((int(number[-1]) + rng.randint(1, 9)) % 10)
        assert pii_reason(written_card(rng, wrong), SafetyConfig()) == ""
        assert pii_reason(written_iban(rng, iban(rng, valid=False)), SafetyConfig()) != IBAN
        assert pii_reason(ssn(rng, valid=False), SafetyConfig()) == ""
        assert pii_reason(f"build {ipv4_invalid(rng)}", SafetyConfig()) != IP_ADDRESS


def test_the_stage_drops_captions_with_personal_data_and_balances_its_books(tmp_path):
    lake = Lake(str(tmp_path))
    rng = random.Random(11)
    texts = {f"pii{i}": f"a red bicycle, {GENERATORS[kind](rng)}" for i, kind in enumerate(REASONS)}
    texts |= {f"ok{i}": f"a red bicycle leaning on a wall, {ordinary(rng)}" for i in range(6)}
    pairs = [Pair(name, text, jpeg(i, (320, 240))) for i, (name, text) in enumerate(texts.items())]
    uids = ingest(lake, "s0", pairs)
    run(lake, ["s0"], "safety", Settings(quality=QualityConfig(heuristics=HeuristicRules(preset="none"))))
    stage = graph.stage("safety")
    table = lake.read_parquet(stage.table("s0"))
    assert table["uid"].to_pylist() == list(uids.values())  # everything entered: quality filters nothing here
    reason = dict(zip(table["uid"].to_pylist(), table["reason"].to_pylist(), strict=True))
    assert {name: reason[uid] for name, uid in uids.items()} == {
        **{f"pii{i}": kind for i, kind in enumerate(REASONS)},
        **{f"ok{i}": "" for i in range(6)},
    }
    assert conservation_problems(lake, stage, "s0") == []
    report = lake.read_json(stage.report("s0"))
    assert report["rows_kept"] == 6 and report["extra"]["checks"] == ",".join(REASONS)


def test_a_shard_where_nothing_entered(tmp_path):
    lake = Lake(str(tmp_path))
    ingest(lake, "s0", [Pair("gone", "a red bicycle leaning on a blue wall", None)])
    run(lake, ["s0"], "quality")
    report = safety_shard(lake, "s0", SafetyConfig())
    assert report.rows_in == 0 and lake.read_parquet(graph.stage("safety").table("s0")).num_rows == 0
    assert conservation_problems(lake, graph.stage("safety"), "s0") == []
