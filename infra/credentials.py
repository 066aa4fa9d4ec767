"""Keeping credentials out of everything Dagster and MLflow store: URIs that carry one are refused before use.

A URI given as configuration (a tracking URI, an S3 endpoint, the lake's root) ends up in a Dagster job snapshot
or run config, and libraries repeat it in their errors (MLflow names its tracking URI, botocore its endpoint), which
land in the event log. Credentials therefore go in the variables each client reads itself (``AWS_*`` passed as
Dagster ``EnvVar``, ``MLFLOW_TRACKING_USERNAME`` / ``_PASSWORD`` / ``_TOKEN``, a database driver's own variables),
and a URI that holds one is refused, with a message that names the parts found but never repeats their values.

What counts: any user info (``user:password@``, or a bare token as user name), and any query parameter whose name
says secret (``password``, ``pwd``, ``secret``, ``token``, ``key``, ``auth``, ``credential``, ``signature``...,
including AWS's ``X-Amz-Credential`` / ``X-Amz-Signature`` / ``X-Amz-Security-Token``).
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlsplit

_SECRET_NAME = re.compile(r"pass|pwd|secret|token|key|auth|credential|signature|^sig$|^sas$|session", re.IGNORECASE)


def credential_parts(uri: str) -> list[str]:
    """What in ``uri`` carries (or may carry) a credential: ``user info`` and ``query parameter <name>``."""
    try:
        parts = urlsplit(uri)
    except ValueError:  # an unparsable URI may hold anything; refuse it whole
        return ["an unparsable URI"]
    found = ["user info"] if "@" in parts.netloc else []
    names = [name for name, _ in parse_qsl(parts.query, keep_blank_values=True)] if parts.query else []
    found += [f"query parameter {name!r}" for name in names if _SECRET_NAME.search(name)]
    return found


def redacted(uri: str) -> str:
    """``uri`` without user info, query or fragment: what a message may repeat of it."""
    try:
        parts = urlsplit(uri)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparsable URI>"
    if not parts.scheme:
        return parts.path
    return f"{parts.scheme}://{host}{port}{parts.path}"


def refuse_credentials(uri: str, what: str, instead: str) -> str:
    """``uri`` itself, or a ``ValueError`` naming ``what`` and the offending parts (never their values)."""
    found = credential_parts(uri)
    if found:
        raise ValueError(f"the {what} {redacted(uri)} carries credentials ({', '.join(found)}); {instead}")
    return uri
