"""Bytes on disk and their layouts: raw dataset readers, stores, hashing, atomic writes. Never imports Dagster."""
