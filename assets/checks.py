"""Blocking asset checks: the books of each per-shard stage must balance before anything downstream runs.

Every per-shard stage declared in :mod:`ops.graph` gets the same check, ``rows_conserved``: its published table is
read back and compared with what its declared input kept, its reason vocabulary and its report
(:func:`ops.stage.conservation_problems`); the asset reports the result through its ``check_specs``.
"""

from __future__ import annotations

from dagster import AssetCheckSpec

ROWS_CONSERVED = "rows_conserved"
DROP_SHARE = "drop_share"
NOT_EMPTY = "not_empty"


def conservation_spec(asset: str) -> AssetCheckSpec:
    return AssetCheckSpec(
        ROWS_CONSERVED,
        asset=asset,
        blocking=True,
        description="rows in = rows kept + rows dropped, every drop has a reason from the stage's vocabulary, and "
        "the rows are exactly the samples its declared input kept",
    )


def drop_share_spec(asset: str) -> AssetCheckSpec:
    return AssetCheckSpec(
        DROP_SHARE,
        asset=asset,
        blocking=False,
        description="warns when the stage dropped more than guardrail_settings.max_drop_share of its input, "
        "naming the top reasons and the setting behind each",
    )


def not_empty_spec(asset: str) -> AssetCheckSpec:
    return AssetCheckSpec(
        NOT_EMPTY,
        asset=asset,
        blocking=True,
        description="the dataset holds at least guardrail_settings.min_dataset_samples samples (nothing is trained "
        "on an empty or nearly empty result)",
    )
