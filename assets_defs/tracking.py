"""Tracked meshes per subject: FLAME and bilinear (FaceScape), SMPL-X (THuman).

code_version = tracker version; data version = hash of the rounded fitted parameters, so re-tracking with an
unchanged tracker leaves downstream assets untouched.
"""
import dagster as dg

from assets_defs import raw
from assets_defs.automation import POLICY
from assets_defs.partitions import SUBJECT_PARTITIONS
from assets_defs.pools import CPU_POOL
from assets_defs.resources import SettingsResource
from pipelines.track import TRACKERS

TRACKING_GROUP = "tracking"


class FitQualityConfig(dg.Config):
    """Thresholds of the `fit_quality` check (mm): FaceScape p95 point-to-surface (FLAME fit to the registered mesh,
    or registered mesh to its scan), THuman p95 scan-to-mesh."""

    facescape_max_p95_mm: float = 5.0
    thuman_max_p95_mm: float = 40.0


def fit_quality(dataset: str, rec, cfg: FitQualityConfig) -> tuple[bool, dict]:
    """Vertices finite and every item's p95 error under the dataset's threshold: FLAME fit -> registered mesh and
    registered mesh -> scan (FaceScape), SMPL-X -> scan (THuman). An item without a measured error fails."""
    import numpy as np

    items = {k: v for k, v in rec.metrics.items() if not k.startswith("_")}
    key, threshold = (("scan_to_mesh_p95_mm", cfg.thuman_max_p95_mm) if dataset == "thuman"
                      else ("p95_mm", cfg.facescape_max_p95_mm))
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


def _tracks_asset(dataset: str, topology: str, source) -> dg.AssetsDefinition:
    key = [dataset, f"{topology}_tracks"]
    version = TRACKERS[dataset][topology]

    @dg.asset(key=key, deps=[source], partitions_def=SUBJECT_PARTITIONS[dataset], code_version=version,
              group_name=TRACKING_GROUP, pool=CPU_POOL, kinds={"pytorch", "numpy"}, owners=["team:morphable"],
              automation_condition=POLICY,
              description=f"{topology.upper()} meshes of one {dataset} subject in the model frame (tracker "
                          f"{version}), in the track store.",
              check_specs=[dg.AssetCheckSpec("fit_quality", asset=key,
                                             description="vertices finite and fit error under the threshold")])
    def tracks(context: dg.AssetExecutionContext, settings: SettingsResource,
               config: FitQualityConfig) -> dg.MaterializeResult:
        from pipelines.track import track
        from storage.tracks import track_dir

        s = settings.load()
        outcome = track(s, dataset, context.partition_key, topology)
        rec = outcome.record
        passed, info = fit_quality(dataset, rec, config)
        return dg.MaterializeResult(
            data_version=dg.DataVersion(rec.data_version),
            metadata={"dagster/uri": str(track_dir(s.storage_root, dataset, rec.subject, version)),
                      "tracker_version": version, "items": len(rec.items), "vertices": int(rec.faces.max()) + 1,
                      "seconds": round(outcome.seconds, 2), "fit": dg.MetadataValue.md(_metrics_markdown(rec.metrics)),
                      **{f"quality/{k}": v for k, v in info.items()}},
            check_results=[dg.AssetCheckResult(check_name="fit_quality", passed=passed, metadata=info)])

    return tracks


facescape_flame_tracks = _tracks_asset("facescape", "flame", raw.facescape_raw_subject)
facescape_bilinear_tracks = _tracks_asset("facescape", "bilinear", raw.facescape_raw_subject)
thuman_smplx_tracks = _tracks_asset("thuman", "smplx", raw.thuman_raw_subject)
TRACK_ASSETS = {"facescape": [facescape_flame_tracks, facescape_bilinear_tracks], "thuman": [thuman_smplx_tracks]}
