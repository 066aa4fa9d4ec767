"""safety: drop samples whose caption carries personal data, before a captioner or a model ever reads it.

Web alt text sometimes holds what a person never meant to publish in a training set: an e-mail address, a phone
number, a payment card, a national id, an IP address or a bank account. A CLIP model trained on such captions
can learn to complete them, and a synthetic captioner may quote them back, so the sample is dropped (the image
is kept nowhere else either) with a reason naming the kind of data found.

Each detector is built to miss rather than to drop an ordinary caption: numbers are common in alt text (years,
sizes, prices, model numbers, ISBNs), so a card number must have 14 to 19 digits and pass the Luhn check (a
13-digit number is an ISBN or EAN far more often than a card), an IBAN its mod-97 check, a phone number needs a
country code, an area code in brackets, or the separators and length of one (not thousands grouping, a date, a
run of years or a dotted quad), an IPv4 address four octets of at most 255 not glued to a word (``v1.2.3.4`` is
a version), and an e-mail address a domain that is not an image file name (``logo@2x.png``). Reasons are in
precedence order; the first match names the drop.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pyarrow as pa

from infra.lake import Lake
from ops import graph
from ops.report import StageReport
from ops.stage import Decisions, run_shard_stage

EMAIL = "pii_email"
PAYMENT_CARD = "pii_payment_card"
IBAN = "pii_iban"
NATIONAL_ID = "pii_national_id"
PHONE = "pii_phone"
IP_ADDRESS = "pii_ip_address"

REASONS: tuple[str, ...] = (EMAIL, PAYMENT_CARD, IBAN, NATIONAL_ID, PHONE, IP_ADDRESS)

_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]{1,64}@(?:[A-Za-z0-9-]{1,63}\.)+[A-Za-z]{2,24}(?![\w-])")
_CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){13,18}(?![\d-])")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b")
_SSN = re.compile(r"(?<![\d-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\d-])")
_PHONE = re.compile(r"(?<![\w+.])(\+\d{1,3}[ .-]?)?(\(\d{1,4}\)[ .-]?)?(\d{1,5}(?:[ .-]\d{1,5}){1,5})(?![\w-]|\.\d)")
_DATE = re.compile(r"\d{1,4}[./-]\d{1,2}[./-]\d{1,4}")
_IPV4 = re.compile(
    r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?!\.?\d)"
)
_YEAR = re.compile(r"(?:19|20)\d\d")
_DOTTED_QUAD = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")
_IMAGE_SUFFIXES = frozenset({"png", "jpg", "jpeg", "gif", "webp", "svg", "bmp", "tif", "tiff", "avif", "heic"})


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _iban_valid(candidate: str) -> bool:
    code = candidate.replace(" ", "")
    if not 15 <= len(code) <= 34:
        return False
    rearranged = code[4:] + code[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def _has_card(text: str) -> bool:
    for m in _CARD.finditer(text):
        digits = re.sub(r"[ -]", "", m.group())
        if 14 <= len(digits) <= 19 and len(set(digits)) > 1 and _luhn(digits):
            return True
    return False


def _has_phone(text: str) -> bool:
    for m in _PHONE.finditer(text):
        country, area, number = m.groups()
        digits = re.sub(r"\D", "", m.group())
        if not 9 <= len(digits) <= 15 or _DATE.fullmatch(number) or _DOTTED_QUAD.fullmatch(number):
            continue
        if country or area:
            return True
        groups = re.split(r"[ .-]", number)
        thousands = all(len(g) == 3 for g in groups[1:])
        years = all(_YEAR.fullmatch(g) for g in groups)
        if len(groups) >= 3 and len(digits) >= 10 and all(len(g) >= 2 for g in groups) and not (thousands or years):
            return True
    return False


def _has_email(text: str) -> bool:
    return any(m.group().rsplit(".", 1)[1].lower() not in _IMAGE_SUFFIXES for m in _EMAIL.finditer(text))


_DETECTORS = {
    EMAIL: _has_email,
    PAYMENT_CARD: _has_card,
    IBAN: lambda t: any(_iban_valid(m.group()) for m in _IBAN.finditer(t)),
    NATIONAL_ID: lambda t: _SSN.search(t) is not None,
    PHONE: _has_phone,
    IP_ADDRESS: lambda t: _IPV4.search(t) is not None,
}


@dataclass(frozen=True)
class SafetyConfig:
    """Which kinds of personal data drop a caption (all by default); remove a reason to stop checking for it."""

    checks: tuple[str, ...] = REASONS

    def __post_init__(self) -> None:
        unknown = sorted(set(self.checks) - set(REASONS))
        if unknown:
            raise ValueError(f"unknown safety checks {unknown}; known: {list(REASONS)}")


def pii_reason(text: str | None, config: SafetyConfig) -> str:
    """The first kind of personal data found in ``text``, in :data:`REASONS` order, or ``""``."""
    if not text:
        return ""
    for reason in REASONS:
        if reason in config.checks and _DETECTORS[reason](text):
            return reason
    return ""


def safety_shard(lake: Lake, shard: str, config: SafetyConfig) -> StageReport:
    """Check the caption of every sample the stage's input kept; publish the table, then the report."""

    def decide(samples: pa.Table) -> Decisions:
        reasons = [pii_reason(text, config) for text in samples["text"].to_pylist()]
        kept = pa.array([not r for r in reasons], pa.bool_())
        table = pa.table({"uid": samples["uid"], "kept": kept, "reason": pa.array(reasons, pa.string())})
        return Decisions(table, extra={"checks": ",".join(config.checks)})

    return run_shard_stage(lake, graph.stage("safety"), shard, decide, columns=["text"])
