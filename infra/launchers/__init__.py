"""Compute launchers: processes Dagster starts through Pipes (torchrun training today)."""
