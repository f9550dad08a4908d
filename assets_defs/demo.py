"""The main job: the policy applied to the embedded instance until nothing more is requested (assets_defs/policy.py),
then the comparison across experiments and where the pictures are. On the embedded default this is the whole graph
on the synthetic stand-in with the demo's experiments (pipelines/experiments.toml); a second run with nothing
changed runs nothing."""
import os
import time
import warnings
from dataclasses import dataclass

import dagster as dg

from assets_defs.instance import get_instance
from assets_defs.partitions import EXPERIMENT_PARTITIONS, SUBJECT_PARTITIONS
from assets_defs.resources import SettingsResource


@dataclass
class DemoResult:
    seconds: float
    policy: object  # assets_defs.policy.PolicyResult
    subject_partitions: dict[str, int]
    experiment_partitions: dict[str, int]
    comparison: object = None  # pandas DataFrame (metrics/comparison.parquet)
    pictures: dict[str, str] | None = None

    @property
    def materialized(self) -> list[str]:
        return self.policy.materialized

    @property
    def checks(self) -> dict[str, bool]:
        out: dict[str, bool] = {}
        for run in self.policy.runs:
            for name, passed in run.checks.items():
                out[name] = out.get(name, True) and passed
        return out


def run_demo(settings_file: str = "", log=print) -> DemoResult:
    from assets_defs.definitions import defs
    from assets_defs.policy import run_policy

    if settings_file:
        os.environ["MORPHABLE_SETTINGS"] = os.path.abspath(settings_file)
    for category in (dg.BetaWarning, dg.PreviewWarning, DeprecationWarning):
        warnings.filterwarnings("ignore", category=category)
    t0 = time.perf_counter()
    instance = get_instance()
    settings = SettingsResource().load()
    log(f"Dagster instance: {instance.root_directory}")
    log(f"experiments: {settings.experiments_file or 'the embedded demo experiments (pipelines/experiments.toml)'}")
    result = run_policy(defs, instance, settings, log=log)
    partitions = {d: len(instance.get_dynamic_partitions(p.name)) for d, p in SUBJECT_PARTITIONS.items()}
    experiments = {d: len(instance.get_dynamic_partitions(p.name)) for d, p in EXPERIMENT_PARTITIONS.items()}
    table, pictures = _outputs(settings)
    return DemoResult(time.perf_counter() - t0, result, partitions, experiments, table, pictures)


def _outputs(settings):
    """The comparison table and where the pictures are."""
    import pandas as pd

    path = settings.storage_root / "metrics" / "comparison.parquet"
    table = pd.read_parquet(path) if path.is_file() else None
    pictures = {}
    runs = settings.storage_root / "runs"
    for run in sorted(runs.iterdir()) if runs.is_dir() else []:
        if (run / "reports").is_dir():
            pictures[f"{run.name} training (loss curve, preview)"] = str(run / "reports")
    if table is not None:
        pictures["comparison table and plot"] = str(path.parent)
    pictures["every asset's thumbnails"] = "make ui  ->  http://127.0.0.1:3000"
    return table, pictures
