"""Blocking asset checks: the books of each per-shard stage must balance before anything downstream runs.

Every per-shard stage declared in :mod:`ops.graph` gets the same check, ``rows_conserved``: its published table is
read back and compared with what its declared input kept, its reason vocabulary and its report
(:func:`ops.stage.conservation_problems`); the asset reports the result through its ``check_specs``.
"""

from __future__ import annotations

from dagster import AssetCheckSpec

ROWS_CONSERVED = "rows_conserved"


def conservation_spec(asset: str) -> AssetCheckSpec:
    return AssetCheckSpec(
        ROWS_CONSERVED,
        asset=asset,
        blocking=True,
        description="rows in = rows kept + rows dropped, every drop has a reason from the stage's vocabulary, and "
        "the rows are exactly the samples its declared input kept",
    )
