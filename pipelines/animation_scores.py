"""Per-frame scores of an animation: does each frame show the driving expression, the input's person and (where a
ground truth exists) the true image? Beside `animate.temporal_scores` (is the sequence consistent over time).

Per frame, over the views within `FRONTAL_AZIMUTH` of the front (where dlib's 68-point detector and face descriptor
work; the tiny preset's 64 px views are detected upscaled, `model.metrics.face`):
- `expression_nme`: the detected landmarks against the driving FLAME's 68 landmarks projected into the view, as a
  normalised mean error (inter-ocular distance; lower is better). It follows the expression: a frame that keeps the
  first expression while the mesh opens the jaw scores the jaw's displacement. Where dlib's detector finds no face
  (often, at 64 px), the 68 points are predicted in a fixed box per view: that of the first frame's projected
  landmarks, the same in every frame, so that the box carries nothing of the expression being scored and any
  change of the points over time comes from the image;
- `face_found`: the fraction of those views in which the detector itself found the face;
- `identity_distance`: the face descriptor's distance to the input image's (same person: < 0.6, `identity_match`;
  the same fixed box where the detector misses).
With a ground truth (the stand-in's sweep, `pipelines.standin_sweep`), over all views: `masked_psnr` inside the true
silhouette, `ssim` (generated pixels outside it set white, as the evaluation does) and the `silhouette_iou` of the generated foreground with the true silhouette.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

FRONTAL_AZIMUTH = 30.0


def frontal_views(rts: np.ndarray, limit: float = FRONTAL_AZIMUTH) -> np.ndarray:
    """Indices of the (face, model-frame) cameras within `limit` degrees of azimuth of the front."""
    from model.frames import camera_angles_model

    azimuth, _ = camera_angles_model(np.asarray(rts, np.float64))
    return np.flatnonzero(np.abs(azimuth) <= limit)


def projected_landmarks(landmarks: np.ndarray, ks: np.ndarray, rts: np.ndarray) -> np.ndarray:
    """(T, N, 68, 2) pixel positions of every frame's 3-D landmarks (T, 68, 3) in every view."""
    from model.render.cameras import project

    return np.stack([np.stack([project(frame, k, rt)[0] for k, rt in zip(ks, rts)]) for frame in landmarks])


def frame_scores(views: np.ndarray, landmarks: np.ndarray, ks: np.ndarray, rts: np.ndarray, input_image: np.ndarray,
                 truth: np.ndarray | None = None, truth_masks: np.ndarray | None = None) -> pd.DataFrame:
    """One row per frame. `views` (T, N, S, S, 3) uint8, `landmarks` (T, 68, 3) model frame, `ks` (N, 3, 3) for S
    px, `rts` (N, 3, 4), `input_image` uint8 HWC; `truth` (T, N, S, S, 3) uint8 and `truth_masks` (T, N, S, S)."""
    from model.metrics.face import face_descriptor, identity_distance, landmark_error, landmarks68_px
    from model.metrics.image import mask_background, psnr, silhouette_iou, ssim

    front = frontal_views(rts)
    points = projected_landmarks(landmarks, ks, rts)
    reference = face_descriptor(input_image)
    rows = []
    for t in range(views.shape[0]):
        # the fallback box: the first frame's projected landmarks, the same in every frame (it carries nothing of
        # the expression being scored)
        detected = [landmarks68_px(views[t, i], fallback=points[0, i]) for i in front]
        row = {"frame": t,
               "expression_nme": _nanmean([landmark_error(p, points[t, i]) for (p, _), i in zip(detected, front)]),
               "face_found": float(np.mean([found for _, found in detected])) if len(front) else float("nan"),
               "identity_distance": _nanmean([identity_distance(reference, views[t, i], points[0, i])
                                              for i in front])}
        if truth is not None:
            n = views.shape[1]
            row["masked_psnr"] = _nanmean(psnr(truth[t, i], views[t, i], truth_masks[t, i]) for i in range(n))
            row["ssim"] = _nanmean(ssim(truth[t, i], mask_background(views[t, i], truth_masks[t, i]))
                                   for i in range(n))  # (the evaluation's rule: white outside the truth)
            row["silhouette_iou"] = _nanmean(silhouette_iou(truth_masks[t, i], views[t, i]) for i in range(n))
        rows.append(row)
    return pd.DataFrame(rows)


def summary(per_frame: pd.DataFrame, temporal: dict[str, float]) -> dict[str, float]:
    """The sequence's row: the per-frame scores' means, the fraction of frames whose identity matches the input,
    and the temporal scores."""
    from model.metrics.face import REID_THRESHOLD

    out = {c: _nanmean(per_frame[c]) for c in per_frame.columns if c != "frame"}
    distance = per_frame["identity_distance"].to_numpy(np.float64)
    out["identity_match"] = float(np.mean(distance[np.isfinite(distance)] < REID_THRESHOLD)) \
        if np.isfinite(distance).any() else float("nan")
    return {**out, **{k: float(v) for k, v in temporal.items()}}


def _nanmean(values) -> float:
    a = np.asarray(list(values), np.float64)
    return float(np.nanmean(a)) if np.isfinite(a).any() else float("nan")
