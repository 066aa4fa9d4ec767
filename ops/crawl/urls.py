"""Image URL resolution and the URL policy.

About 40% of image URLs on the web are relative, so every ``src`` is resolved against the page and its
``<base href>`` the way a browser does; dropping them would bias the pool against large sites. The policy then
refuses what the downloader must never be asked to fetch: inline ``data:`` images, non-HTTP schemes, and hosts
that are IP literals in loopback, private, link-local, reserved, multicast or otherwise non-global ranges. Those
literals come in many spellings that resolvers accept (``http://2130706433/``, ``http://0x7f.1/``,
``http://[::ffff:127.0.0.1]/``, full-width digits), so hosts are parsed with the WHATWG URL Standard's rules
and written back in canonical form, which is also what the downloader will connect to.

Host names are not resolved here: DNS belongs to the downloader, which must check the addresses it actually
connects to (a name can resolve to a private address at download time).
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urljoin, urlsplit, urlunsplit

import idna

from ops.crawl.reasons import BAD_SCHEME, DATA_URI, INVALID_URL, PRIVATE_ADDRESS, URL_TOO_LONG
from ops.netpolicy import AddressPolicy, IPAddress

_TRIM = "".join(map(chr, range(0x21)))  # C0 controls and space: what the URL Standard trims from both ends
_DROP_INNER = str.maketrans("", "", "\t\n\r")  # ... and removes anywhere inside
# The URL Standard's forbidden domain code points (C0 controls, space, DEL and the delimiters), and a few more a
# host name never holds. A resolver reads "02274\f6-a" as the number 02274 (it stops at the form feed): such a host
# is invalid here, never a name.
_FORBIDDEN_HOST_CHARS = frozenset([*map(chr, range(0x21)), "\x7f", *' "#%/:<>?@[\\]^`{|}'])
# Host and port as the URL Standard allows them: a bracketed IPv6 literal or a name without brackets, then an
# optional numeric port. Python's parser reads "ff:[324b::]" as the host 324b:: and ignores what comes before.
_AUTHORITY = re.compile(r"(\[[^\[\]]*\]|[^\[\]:]*)(:[0-9]*)?")
_LOOPBACKS = (ipaddress.IPv4Address("127.0.0.1"), ipaddress.IPv6Address("::1"))
_CACHE_LIMIT = 200_000
_DIGITS = {16: frozenset("0123456789abcdefABCDEF"), 10: frozenset("0123456789"), 8: frozenset("01234567")}


def clean_src(raw: str | None) -> str:
    """An attribute value as the URL parser sees it: trimmed of controls and spaces, inner tabs/newlines removed."""
    if not raw:
        return ""
    src = raw.strip(_TRIM)
    if "\t" in src or "\n" in src or "\r" in src:
        src = src.translate(_DROP_INNER)
    return src


def _slashes(url: str) -> str:
    """Backslashes before the query read as slashes, as the URL Standard reads them in http(s) URLs."""
    if "\\" not in url:
        return url
    head, sep, query = url.partition("?")
    return head.replace("\\", "/") + sep + query


def parse_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """Parse a host that ends in a number as the URL Standard does (1-4 parts, decimal, octal or hex).

    Returns None when the host is not a valid IPv4 address in any of those spellings.
    """
    parts = host.split(".")
    if parts[-1] == "" and len(parts) > 1:
        parts.pop()
    if not 1 <= len(parts) <= 4:
        return None
    numbers = []
    for part in parts:
        if part == "":
            return None
        if part[:2] in ("0x", "0X"):
            digits, base = part[2:], 16
        elif len(part) > 1 and part[0] == "0":
            digits, base = part[1:], 8
        else:
            digits, base = part, 10
        if not _DIGITS[base].issuperset(digits):
            return None
        numbers.append(int(digits, base) if digits else 0)
    last = numbers.pop()
    if any(n > 255 for n in numbers) or last >= 256 ** (4 - len(numbers)):
        return None
    value = last
    for i, n in enumerate(numbers):
        value += n << (8 * (3 - i))
    return ipaddress.IPv4Address(value)


def _ends_in_number(host: str) -> bool:
    labels = host.split(".")
    if labels[-1] == "" and len(labels) > 1:
        labels.pop()
    last = labels[-1]
    if last.isascii() and last.isdigit():
        return True
    return last[:2] in ("0x", "0X") and _DIGITS[16].issuperset(last[2:])


def _to_ascii_host(host: str) -> str | None:
    """IDNA-encode an internationalised host name (UTS 46, as browsers do); None when it is not a valid name."""
    try:
        return idna.encode(host, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError, ValueError):
        pass
    try:  # IDNA 2003 still accepts names (emoji domains) that browsers reach and IDNA 2008 refuses
        return host.encode("idna").decode("ascii").lower()
    except UnicodeError:
        return None


class UrlPolicy:
    """Resolves image URLs and decides which ones the downloader may fetch.

    One instance per shard: it caches resolutions and host verdicts, since a site's pages repeat their images and
    a page's images mostly share a few hosts.
    """

    def __init__(self, allow_networks: tuple[str, ...] = (), max_url_chars: int = 2048) -> None:
        self._addresses = AddressPolicy(allow_networks)
        self._max_url_chars = max_url_chars
        self._hosts: dict[str, tuple[str | None, bool]] = {}
        self._resolved: dict[tuple[str, str], tuple[str, str]] = {}

    def base_for(self, page_url: str, base_href: str | None) -> str:
        """The URL relative sources resolve against: ``<base href>`` resolved against the page, if it is http(s).

        A base that does not resolve to an http(s) URL with a host, or is longer than a URL may be, is ignored, so a
        broken ``<base>`` costs the page its relative images only when the page URL itself is unusable.
        """
        page_url = _slashes(page_url)
        href = _slashes(clean_src(base_href)) if base_href else ""
        if not href:
            return page_url
        try:
            base = urljoin(page_url, href) if page_url else href
            parts = urlsplit(base)
        except ValueError:
            return page_url
        if parts.scheme in ("http", "https") and parts.hostname and len(base) <= self._max_url_chars:
            return base.split("#", 1)[0]
        return page_url

    def resolve(self, src: str, base: str) -> tuple[str, str]:
        """``(url, reason)`` for a cleaned, non-empty ``src``; reason is "" when the URL may be fetched.

        ``url`` is the absolute URL without fragment, or the source as written when it cannot be resolved.
        Results are cached: sites repeat their logos and buttons on every page.
        """
        if len(src) > self._max_url_chars:  # too long to keep (and to cache): a page could repeat it thousands of times
            return self._resolve(src, base)
        key = (src, base)
        found = self._resolved.get(key)
        if found is None:
            if len(self._resolved) >= _CACHE_LIMIT:
                self._resolved.clear()
            found = self._resolved[key] = self._resolve(src, base)
        return found

    def _resolve(self, src: str, base: str) -> tuple[str, str]:
        if src[:5].lower() == "data:":
            return src, DATA_URI
        src = _slashes(src)
        if src.startswith(("http://", "https://")):
            url = src
        else:
            try:
                url = urljoin(base, src) if base else src
            except ValueError:
                return src, INVALID_URL
        url = url.split("#", 1)[0]
        try:
            parts = urlsplit(url)
            host = parts.hostname
            _ = parts.port
        except ValueError:
            return url, INVALID_URL
        if parts.scheme not in ("http", "https"):
            return url, BAD_SCHEME if parts.scheme else INVALID_URL
        userinfo, at, hostport = parts.netloc.rpartition("@")
        if not host or not _AUTHORITY.fullmatch(hostport):
            return url, INVALID_URL
        canonical, blocked = self._host_verdict(host)
        if canonical is None:
            return url, INVALID_URL
        if hostport.startswith("["):
            raw_host, _, port = hostport[1:].partition("]")
            port, host_text = port[1:], f"[{canonical}]"
        else:
            raw_host, _, port = hostport.partition(":")
            host_text = canonical
        if raw_host != canonical or not url.startswith(parts.scheme + "://"):
            netloc = f"{userinfo}{at}{host_text}" + (f":{port}" if port else "")
            url = urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
        if len(url) > self._max_url_chars:
            return url, URL_TOO_LONG
        if blocked:
            return url, PRIVATE_ADDRESS
        return url, ""

    def _host_verdict(self, host: str) -> tuple[str | None, bool]:
        """(canonical host or None when invalid, whether it is a blocked address); cached per shard."""
        verdict = self._hosts.get(host)
        if verdict is None:
            if len(self._hosts) >= _CACHE_LIMIT:
                self._hosts.clear()
            verdict = self._hosts[host] = self._judge_host(host)
        return verdict

    def _judge_host(self, host: str) -> tuple[str | None, bool]:
        if ":" in host:  # urlsplit only lets colons through inside brackets: an IPv6 literal
            try:
                ip = ipaddress.IPv6Address(host.split("%", 1)[0])
            except ValueError:
                return None, False
            return ip.compressed, self.is_blocked(ip)
        if not host.isascii():
            ascii_host = _to_ascii_host(host)
            if ascii_host is None:
                return None, False
            host = ascii_host
        if _FORBIDDEN_HOST_CHARS.intersection(host) or host.strip(".") == "":
            return None, False
        if _ends_in_number(host):
            ip4 = parse_ipv4(host)
            if ip4 is None:
                return None, False
            return str(ip4), self.is_blocked(ip4)
        name = host.rstrip(".")
        if name == "localhost" or name.endswith(".localhost"):
            return host, all(self.is_blocked(ip) for ip in _LOOPBACKS)
        return host, False

    def is_blocked(self, ip: IPAddress) -> bool:
        return self._addresses.is_blocked(ip)
