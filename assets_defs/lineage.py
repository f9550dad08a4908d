"""Lineage: what an asset partition produced, handed to its downstream partitions through an IO manager.

The model and evaluation assets return a lineage record (pipelines/records.py: where the checkpoint / evaluation set
/ tables are, their content hash, the experiment). This IO manager stores it per asset partition under
`<storage>/lineage/<asset key>/<partition>.json` (atomically) and loads, for a downstream run, exactly the record of
the upstream partition(s) that run depends on (its experiment's checkpoint, its protocol x experiment's evaluation
set), never "the newest materialization of the asset".
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg

from assets_defs.resources import SettingsResource


def _safe(partition: str) -> str:
    return partition.replace("|", "__")


class LineageIOManager(dg.ConfigurableIOManager):
    settings: SettingsResource

    def _path(self, key: dg.AssetKey, partition: str | None) -> Path:
        root = Path(self.settings.load().storage_root) / "lineage" / "/".join(key.path)
        return root / f"{_safe(partition) if partition else '_'}.json"

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        from pipelines.records import record_json
        from storage.atomic import atomic_write_text

        partition = str(context.partition_key) if context.has_partition_key else None
        try:
            text = record_json(obj)
        except TypeError as exc:
            raise TypeError(f"{context.asset_key.to_user_string()}: {exc}") from None
        atomic_write_text(self._path(context.asset_key, partition), text)

    def _read(self, key: dg.AssetKey, partition: str | None) -> Any:
        from pipelines.records import read_record

        path = self._path(key, partition)
        if not path.is_file():
            raise dg.Failure(f"{key.to_user_string()}{'[' + partition + ']' if partition else ''} has no output "
                             f"yet ({path} is missing): materialize it first")
        return read_record(path)

    def read(self, key: dg.AssetKey, partition: str | None = None) -> Any:
        """The record `key`[`partition`] wrote (a Failure naming what to materialize when there is none): for an
        input only some partitions read, declared as a dependency rather than loaded for every run."""
        return self._read(key, partition)

    def read_partitions(self, key: dg.AssetKey, partitions: list[str]) -> dict[str, Any]:
        """{partition: record} of those partitions of `key` that have an output (a check over all of them)."""
        return {p: self._read(key, p) for p in partitions if self._path(key, p).is_file()}

    def load_input(self, context: dg.InputContext) -> Any:
        key = context.asset_key
        if not context.has_asset_partitions:
            return self._read(key, None)
        keys = [str(k) for k in context.asset_partition_keys]
        if context.has_partition_key:  # a partition reads the one upstream partition mapped to it
            if len(keys) != 1:
                raise dg.Failure(f"{key.to_user_string()}: expected one upstream partition, got {keys}")
            return self._read(key, keys[0])
        # an unpartitioned asset (the comparison) reads every upstream partition that has an output
        return {k: self._read(key, k) for k in keys if self._path(key, k).is_file()}
