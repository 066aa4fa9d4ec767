"""The fixed vocabularies of the crawl stage: why a pair was dropped, and why a source record was not used.

Pair reasons are listed in precedence order: a pair that fails several checks carries the first one. Defects of
the pair itself (no text, no image) come first, then the page owner's decisions (opt-out) and page-level caps,
then the pair's own text and URL checks, and duplicates last, so that "duplicate" only ever means "a copy of a
pair that was kept".
"""

from __future__ import annotations

INVALID_UTF8 = "invalid_utf8"  # a URL-list row whose URL or text is not UTF-8
NO_TEXT = "no_text"
NO_SRC = "no_src"
OPT_OUT = "opt_out"
PAGE_IMAGE_CAP = "page_image_cap"
TEXT_TOO_LONG = "text_too_long"
DATA_URI = "data_uri"
BAD_SCHEME = "bad_scheme"
INVALID_URL = "invalid_url"
URL_TOO_LONG = "url_too_long"
PRIVATE_ADDRESS = "private_address"
DUPLICATE_PAIR = "duplicate_pair"

PAIR_REASONS: tuple[str, ...] = (
    INVALID_UTF8,
    NO_TEXT,
    NO_SRC,
    OPT_OUT,
    PAGE_IMAGE_CAP,
    TEXT_TOO_LONG,
    DATA_URI,
    BAD_SCHEME,
    INVALID_URL,
    URL_TOO_LONG,
    PRIVATE_ADDRESS,
    DUPLICATE_PAIR,
)

# Record failures: the record (or file) was damaged; counted under ``records_failed.<reason>``.
TRUNCATED_RECORD = "truncated_record"  # the file ends inside the record (pairs before the cut are kept)
CORRUPT_RECORD = "corrupt_record"  # a skipped span: junk between records, a gzip member that fails to inflate
LENGTH_MISMATCH = "length_mismatch"  # Content-Length disagrees with where the record ends (pairs kept)
OVERSIZED_RECORD = "oversized_record"  # a body past 32 MiB (its first 32 MiB parsed), or a gzip bomb member
NOT_A_WARC = "not_a_warc"  # no WARC record could be read from the file at all
MALFORMED_HTTP = "malformed_http"  # a response record whose HTTP message cannot be parsed
DECODE_ERROR = "decode_error"  # body not decodable: bad content-encoding, or binary where HTML was declared
MALFORMED_JSON = "malformed_json"  # a WAT metadata record that is not valid JSON
BAD_URL_LIST = "bad_url_list"  # a URL-list parquet that cannot be read or lacks the url/text columns
PARSE_ERROR = "parse_error"  # the last guard: anything else a page made a parser raise

RECORD_FAILURES: tuple[str, ...] = (
    TRUNCATED_RECORD,
    CORRUPT_RECORD,
    LENGTH_MISMATCH,
    OVERSIZED_RECORD,
    NOT_A_WARC,
    MALFORMED_HTTP,
    DECODE_ERROR,
    MALFORMED_JSON,
    BAD_URL_LIST,
    PARSE_ERROR,
)

# Records that are fine but carry no candidate pairs; counted under ``records_ignored.<reason>``.
# WARC record types other than response (warcinfo, request, metadata, resource, revisit, conversion, ...) are
# ignored under their own type name.
NOT_HTTP = "not_http"
HTTP_STATUS = "http_status"  # not 200
NOT_HTML = "not_html"
NO_MARKUP = "no_markup"  # an HTML response whose body, decoded, holds no markup at all
NO_HTML_METADATA = "no_html_metadata"  # a WAT record about a non-HTML or non-response record
