"""Definitions, partitions, jobs, schedules, sensors and profiles.

``backfill_policy`` (needed for single-run partition ranges) is marked beta in Dagster 1.13; it is used on
purpose, so its warning is silenced here once instead of on every load.
"""

import warnings

from dagster import BetaWarning

warnings.filterwarnings("ignore", category=BetaWarning)
