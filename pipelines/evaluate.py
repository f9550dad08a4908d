"""Stage `evaluate`: the metrics of a generated evaluation set (spec §6.4), as per-view / per-subject /
per-protocol tables.

All on white-composited images at the set's resolution, generated pixels outside the GT alpha set to white (the
release's masking) for SSIM, LPIPS, FID and PSNR; `masked_psnr` (inside the GT mask) and `silhouette_iou` use the raw
generated image (the demo's comparison with the baselines). PCK@0.2 only on views with |azimuth| <= 60 and
|elevation| <= 30, and Re-ID only where the GT has exactly one face, as released; both only for FaceScape. On
THuman, PCK@0.2 is on 14 body keypoints in every view: SMPL-X fitted to the generated views' silhouettes, its
joints against the target SMPL-X's (model.metrics.body_keypoints: fitted, not detected, and why). FID is
pooled over every view of the protocol. A metric whose weights are missing is a column of NaN, named in
`missing_metrics`; the others still run. Where the set holds mesh silhouettes, `iou_target_mesh` /
`iou_input_mesh` are the generated silhouette's IoU with the target mesh's and the input expression's (or, on the
novel-pose protocol, the input pose's SMPL-X's) silhouettes at the same camera: a model that follows the mesh it was
given scores the first higher. Under the `wrong_mesh` ablation, `iou_condition_mesh` is the IoU with the other
identity's mesh the model was conditioned on (elsewhere the condition is the target mesh and it is NaN).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines import catalog
from pipelines.settings import Settings
from storage.eval_sets import EvalSet
from storage.metric_tables import tables_dir, update_history, write_tables

PER_VIEW_METRICS = ("psnr", "ssim", "lpips", "masked_psnr", "silhouette_iou", "pck", "reid", "iou_target_mesh",
                    "iou_input_mesh", "iou_condition_mesh")
PCK_MAX_ABS_AZIMUTH, PCK_MAX_ABS_ELEVATION = 60.0, 30.0


@dataclass
class MetricModels:
    lpips: object | None = None
    fid: object | None = None
    missing: dict[str, str] = field(default_factory=dict)  # metric -> why (which file, where)


def load_metric_models(settings: Settings) -> MetricModels:
    """LPIPS and FID networks from `metric_weights_dir`; a missing file disables only that metric (with the reason)."""
    from model.metrics.fid import INCEPTION_FILE, FIDInceptionV3
    from model.metrics.lpips_vgg import VGG_FILE, LPIPSVGG

    folder = settings.metric_weights_dir
    out = MetricModels()
    for name, loader, file in (("lpips", LPIPSVGG.from_files, VGG_FILE), ("fid", FIDInceptionV3.from_file,
                                                                            INCEPTION_FILE)):
        if folder is None:
            out.missing[name] = (f"{file} not configured: set metric_weights_dir (MORPHABLE_METRIC_WEIGHTS_DIR) to "
                                 f"a folder holding it")
            continue
        try:
            setattr(out, name, loader(Path(folder) / file))
        except FileNotFoundError as exc:
            out.missing[name] = str(exc)
    return out


@dataclass
class Evaluation:
    tables: dict[str, pd.DataFrame]
    paths: dict[str, Path]
    seconds: float
    seconds_per_view: dict[str, float]
    missing: dict[str, str]


def evaluate_set(settings: Settings, eval_set: str | Path, models: MetricModels | None = None,
                 log=print, experiment: str = "") -> Evaluation:
    """Every metric of an evaluation set: per-view, per-subject and per-protocol tables (labelled with the
    experiment when given), written under metrics/<protocol>/[<experiment>/]<set>/ and added to the history."""
    from model.metrics.face import face_scores
    from model.metrics.fid import fid_from_features
    from model.metrics.image import mask_background, psnr, silhouette_iou, ssim

    t0 = time.perf_counter()
    es = EvalSet.open(eval_set)
    models = models or load_metric_models(settings)
    man = es.manifest
    spec = catalog.dataset(man["protocol_definition"]["dataset"])
    face_metrics = spec.face_metrics
    missing = dict(models.missing)
    body = _body_model(settings, missing) if spec.body_keypoints else None
    timing = dict.fromkeys(("psnr_ssim", "lpips", "fid", "face", "body_fit"), 0.0)
    rows, real_feats, fake_feats = [], [], []
    for pair in es.pairs():
        a = pair.arrays
        masked = np.stack([mask_background(g, m) for g, m in zip(a["generated"], a["mask"])])
        t = time.perf_counter()
        base = [{"view": int(v), "azimuth": float(ang[0]), "elevation": float(ang[1]), "psnr": psnr(gt, gm),
                 "ssim": ssim(gt, gm), "masked_psnr": psnr(gt, g, m), "silhouette_iou": silhouette_iou(m, g)}
                for v, ang, gt, g, gm, m in zip(a["view"], a["angles"], a["gt"], a["generated"], masked, a["mask"])]
        for r, key in ((r, k) for r in base for k in ("iou_target_mesh", "iou_input_mesh", "iou_condition_mesh")):
            r[key] = np.nan
        for array, key in (("mesh_mask_target", "iou_target_mesh"), ("mesh_mask_input", "iou_input_mesh"),
                           ("mesh_mask_condition", "iou_condition_mesh")):
            for r, g, mesh_mask in zip(base, a["generated"], a[array] if array in a else ()):
                r[key] = silhouette_iou(mesh_mask, g)
        timing["psnr_ssim"] += time.perf_counter() - t
        t = time.perf_counter()
        lp = models.lpips.distance(a["gt"], masked) if models.lpips is not None else np.full(len(base), np.nan)
        timing["lpips"] += time.perf_counter() - t
        t = time.perf_counter()
        if models.fid is not None:
            real_feats.append(models.fid.features(a["gt"]))
            fake_feats.append(models.fid.features(masked))
        timing["fid"] += time.perf_counter() - t
        t = time.perf_counter()
        for r, d, gt, gm in zip(base, lp, a["gt"], masked):
            r["lpips"] = float(d)
            r["pck"] = r["reid"] = r["reid_distance"] = np.nan
            if face_metrics:
                fs = face_scores(gt, gm)
                r["reid"], r["reid_distance"] = fs.reid, fs.reid_distance
                if abs(r["azimuth"]) <= PCK_MAX_ABS_AZIMUTH and abs(r["elevation"]) <= PCK_MAX_ABS_ELEVATION:
                    r["pck"] = fs.pck
        timing["face"] += time.perf_counter() - t
        t = time.perf_counter()
        if body is not None and "target_vertices" not in a:  # (a set written before body keypoints)
            missing["pck"] = (f"{es.path} holds no target_vertices (written before body keypoints): materialize "
                              "its evaluation set again")
            body = None
        if body is not None:
            for r, score in zip(base, _body_pck(body, a)):
                r["pck"] = score
        timing["body_fit"] += time.perf_counter() - t
        rows.extend({"subject": pair.info["subject"], "item": pair.info["item"], **r} for r in base)
    ablation = man.get("ablation", "none")
    method = man["method"] if ablation == "none" else f"{man['method']}-{ablation}"
    ident = {"protocol": man["protocol"], "experiment": experiment, "method": method,
             "checkpoint_hash": man["checkpoint_hash"], "eval_set": es.path.name}
    per_view = pd.DataFrame([{**ident, **r} for r in rows])
    metric_cols = list(PER_VIEW_METRICS) + ["reid_distance"]
    per_subject = (per_view.groupby(list(ident) + ["subject"], sort=True)[metric_cols].mean().reset_index())
    per_subject["views"] = per_view.groupby("subject").size().sort_index().values
    fid = fid_from_features(np.concatenate(real_feats), np.concatenate(fake_feats)) if real_feats else np.nan
    per_protocol = pd.DataFrame([{**ident, **{c: float(per_view[c].mean()) for c in PER_VIEW_METRICS},
                                  "fid": float(fid), "views": len(per_view),
                                  "pck_views": int(per_view["pck"].notna().sum()),
                                  "reid_views": int(per_view["reid"].notna().sum()),
                                  "missing_metrics": ",".join(sorted(missing))}])
    tables = {"per_view": per_view.sort_values(["subject", "item", "view"]).reset_index(drop=True),
              "per_subject": per_subject, "per_protocol": per_protocol}
    folder = f"{experiment}/{es.path.name}" if experiment else es.path.name
    paths = write_tables(tables_dir(settings.storage_root, man["protocol"], folder), tables)
    update_history(settings.storage_root, per_protocol)
    n = max(len(per_view), 1)
    for name, why in missing.items():
        log(f"{name}: not computed: {why}")
    return Evaluation(tables, paths, time.perf_counter() - t0, {k: v / n for k, v in timing.items()}, missing)


def _body_model(settings: Settings, missing: dict[str, str]):
    """SMPL-X as THuman's fits use it, for body PCK; None (and why, in `missing`) where its file is missing."""
    from model.bodies.errors import BodyModelError
    from model.bodies.smplx_body import load_thuman_smplx

    try:
        return load_thuman_smplx(settings.smplx_model_dir)
    except (BodyModelError, FileNotFoundError) as exc:
        missing["pck"] = f"body keypoints need the SMPL-X model: {exc}"
        return None


def _body_pck(model, arrays: dict[str, np.ndarray]) -> np.ndarray:
    """Per-view body PCK of one pair: SMPL-X fitted to the silhouettes of its generated views that show a body; a
    view showing none scores 0 (no keypoint found there)."""
    from model.metrics.body_keypoints import body_pck
    from model.metrics.image import silhouette

    masks = np.stack([silhouette(g) for g in arrays["generated"]])
    shown = masks.any(axis=(1, 2))
    out = np.zeros(len(masks))
    if shown.any():
        out[shown] = body_pck(model, masks[shown], arrays["K"][shown], arrays["RT"][shown],
                              arrays["target_vertices"], arrays["condition_vertices"]).pck
    return out


def format_table(df: pd.DataFrame, columns: list[str] | None = None) -> str:
    """A fixed-width text table (the CLI's and the demo's summary)."""
    cols = columns or [c for c in df.columns]
    return df[cols].to_string(index=False, float_format=lambda v: f"{v:.4f}", na_rep="n/a")
