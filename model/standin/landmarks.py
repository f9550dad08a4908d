"""Landmark embeddings of the synthetic head, calibrated with the same detector the pipeline uses (dlib 68).

The real FLAME embeddings place each landmark where annotators (and detectors trained on them) put it. To give the
synthetic head the same property, we render its template frontally and at neck yaws of -39..39 degrees, detect the 68
landmarks with dlib, cast each detected pixel back onto the surface, and embed the surface points into the "FLAME"
mesh. The static embedding comes from the frontal view; the 79-row dynamic contour table from the turned views.
"""
from __future__ import annotations

import numpy as np

from model import portable_math as pm
from model.standin import head
from model.bodies.flame import FlameLandmarkEmbedding, FlameModelData
from model.standin.rigging import embed_points
from model.standin.appearance import Appearance, head_albedo
from model.render.cameras import intrinsics, look_at
from model.render.raycast import interpolate_at_hits, raycast_mesh

_CAL_APPEARANCE = Appearance(skin=np.array([0.82, 0.62, 0.5]), hair=np.array([0.15, 0.1, 0.07]),
                             lips=np.array([0.78, 0.34, 0.3]), iris=np.array([0.25, 0.18, 0.1]),
                             shirt=np.zeros(3), pants=np.zeros(3), stripe=8.0)
_SIZE, _FOCAL, _DIST = 400, 1400.0, 0.9


def _yaw(deg: float) -> np.ndarray:
    s, c = (float(x) for x in pm.sincos(np.deg2rad(deg)))
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _render(verts: np.ndarray, faces: np.ndarray, dirs: np.ndarray, k: np.ndarray, rt: np.ndarray):
    hits = raycast_mesh(verts, faces, k, rt, _SIZE, _SIZE)
    normals = pm.vertex_normals(verts, faces)
    img = np.full((_SIZE, _SIZE, 3), 0.45)
    n = interpolate_at_hits(hits, faces, normals)
    n /= pm.norm(n, axis=1, keepdims=True)
    light = 0.45 + 0.55 * np.clip(pm.dot3(n, np.array([0.3, 0.4, 0.87])), 0, None)
    img[hits.mask] = head_albedo(interpolate_at_hits(hits, faces, dirs), _CAL_APPEARANCE) * light[:, None]
    return (np.clip(img, 0, 1) * 255).astype(np.uint8), hits


def _back_project(pix: np.ndarray, hits) -> np.ndarray:
    """Surface point under each pixel; pixels off the silhouette walk towards the face centre until they hit."""
    centre = pix.mean(0)
    out = np.zeros((len(pix), 3))
    for i, p in enumerate(pix):
        for step in np.linspace(0, 1, 41):
            x, y = np.round(p + (centre - p) * step * 0.25).astype(int)
            if 0 <= y < _SIZE and 0 <= x < _SIZE and hits.mask[y, x]:
                out[i] = hits.points[y, x]
                break
    return out


def calibrated_landmarks(model: FlameModelData, dense: head.HeadSample) -> tuple[FlameLandmarkEmbedding, np.ndarray]:
    """(embedding into `model`, the 68 template landmark points) from dlib detections on renders of `dense`."""
    from model.tracking.landmarks2d import NoFaceError, detect_landmarks

    k = intrinsics(_FOCAL, _SIZE, _SIZE)
    centre = np.array([0.0, -0.01, 0.0])
    rt = look_at(centre + np.array([0, 0, _DIST]), centre)
    pivot = head.joint_positions()[1]  # the neck joint
    contours: dict[int, np.ndarray] = {}
    points68 = None
    for angle in range(-39, 40, 3):
        rot = _yaw(-angle)  # FLAME's table row `angle` = -(head yaw) in degrees
        verts = pm.transform_points(dense.template - pivot, rot) + pivot
        img, hits = _render(verts, dense.grid.faces, dense.grid.directions, k, rt)
        try:
            pix, _ = detect_landmarks(img)
        except NoFaceError:
            continue
        pts = pm.transform_points(_back_project(pix, hits) - pivot, rot.T) + pivot  # back into the template frame
        contours[angle] = pts[:17]
        if angle == 0:
            points68 = pts
    if points68 is None:
        raise RuntimeError("dlib found no face on the frontal render of the synthetic head")
    full_f, full_b = embed_points(model.v_template, model.faces, points68)
    dyn_f = np.zeros((79, 17), np.int64)
    dyn_b = np.zeros((79, 17, 3))
    done = np.array(sorted(contours))
    for row in range(79):
        angle = row if row <= 39 else 39 - row
        nearest = int(done[np.argmin(np.abs(done - angle))])
        dyn_f[row], dyn_b[row] = embed_points(model.v_template, model.faces, contours[nearest])
    emb = FlameLandmarkEmbedding(full_f[17:], full_b[17:], dyn_f, dyn_b, full_f, full_b)
    return emb, points68
