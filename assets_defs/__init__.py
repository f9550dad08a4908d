"""Dagster only: assets, checks, partitions, sensors, resources and the Definitions (code location)."""
