"""Tracked meshes per subject, one asset per topology of the catalog (FLAME and bilinear on FaceScape, SMPL-X on
THuman): `<dataset>/<topology>/tracks`.

code_version = tracker version; data version = hash of the rounded fitted parameters, so re-tracking with an
unchanged tracker leaves downstream assets untouched.
"""
import dagster as dg

from assets_defs import raw
from assets_defs.automation import POLICY
from assets_defs.partitions import LINES, SUBJECT_PARTITIONS, line_key
from assets_defs.pools import CPU_POOL
from assets_defs.resources import SettingsResource
from pipelines.catalog import TopologySpec

TRACKING_GROUP = "tracking"


class FitQualityConfig(dg.Config):
    """Threshold of the `fit_quality` check (mm) on the topology's p95 error (pipelines/catalog.py: FaceScape
    point-to-surface of the FLAME fit to the registered mesh or of the registered mesh to its scan, 5 mm; THuman
    scan-to-mesh, 40 mm)."""

    max_p95_mm: float | None = None  # none: the topology's bar in the catalog


def fit_quality(topology: TopologySpec, rec, cfg: FitQualityConfig) -> tuple[bool, dict]:
    """Vertices finite and every item's p95 error (the topology's `quality_metric`) under the threshold. An item
    without a measured error fails."""
    import numpy as np

    items = {k: v for k, v in rec.metrics.items() if not k.startswith("_")}
    key = topology.quality_metric
    threshold = topology.quality_bar_mm if cfg.max_p95_mm is None else cfg.max_p95_mm
    unmeasured = sorted(k for k, v in items.items() if key not in v)
    non_finite = sorted(k for k, v in rec.vertices.items() if not np.isfinite(v).all())
    worst = max((float(v[key]) for v in items.values() if key in v), default=float("nan"))
    passed = bool(items) and not unmeasured and not non_finite and worst <= threshold
    info = {"worst_p95_mm": worst, "threshold_mm": threshold}
    if unmeasured:
        info["items_without_error"] = ", ".join(unmeasured)
    if non_finite:
        info["items_with_non_finite_vertices"] = ", ".join(non_finite)
    return passed, info


def _metrics_markdown(metrics: dict) -> str:
    items = {k: v for k, v in metrics.items() if not k.startswith("_")}
    cols = sorted({c for v in items.values() for c in v})
    rows = ["| item | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for k, v in items.items():
        rows.append(f"| {k} | " + " | ".join(f"{v[c]:.3f}" if isinstance(v.get(c), float) else str(v.get(c, ""))
                                             for c in cols) + " |")
    return "\n".join(rows)


def _tracks_asset(topology: TopologySpec, source) -> dg.AssetsDefinition:
    key = line_key(topology, "tracks")
    dataset, version = topology.dataset, topology.tracker_version

    @dg.asset(key=key, deps=[source], partitions_def=SUBJECT_PARTITIONS[dataset], code_version=version,
              group_name=TRACKING_GROUP, pool=CPU_POOL, kinds={"pytorch", "numpy"}, owners=["team:morphable"],
              automation_condition=POLICY,
              description=f"{topology.name.upper()} meshes of one {dataset} subject in the model frame: "
                          f"{topology.description} (tracker {version}), in the track store.",
              check_specs=[dg.AssetCheckSpec("fit_quality", asset=key,
                                             description="vertices finite and fit error under the threshold")])
    def tracks(context: dg.AssetExecutionContext, settings: SettingsResource,
               config: FitQualityConfig) -> dg.MaterializeResult:
        from pipelines.track import track
        from storage.tracks import track_dir

        s = settings.load()
        outcome = track(s, dataset, context.partition_key, topology.name)
        rec = outcome.record
        passed, info = fit_quality(topology, rec, config)
        return dg.MaterializeResult(
            data_version=dg.DataVersion(rec.data_version),
            metadata={"dagster/uri": str(track_dir(s.storage_root, dataset, rec.subject, version)),
                      "tracker_version": version, "items": len(rec.items), "vertices": int(rec.faces.max()) + 1,
                      "seconds": round(outcome.seconds, 2), "fit": dg.MetadataValue.md(_metrics_markdown(rec.metrics)),
                      **{f"quality/{k}": v for k, v in info.items()}},
            check_results=[dg.AssetCheckResult(check_name="fit_quality", passed=passed, metadata=info)])

    return tracks


#: per line (`<dataset>_<topology>`)
TRACK_ASSETS = {line: _tracks_asset(t, raw.RAW_SUBJECTS[t.dataset]) for line, t in LINES.items()}
