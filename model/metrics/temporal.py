"""Temporal consistency of a generated frame sequence, measured along the driving mesh's own motion.

A sequence of generated views flickers when a surface point changes colour from one frame to the next although the
driving mesh only moved it. The standard measure (Lai et al., ECCV 2018, "Learning Blind Video Temporal
Consistency") is the warping error: warp frame t-1 to frame t along the motion and average the squared difference
over the pixels that are visible in both,

    E_warp = mean_t  sum_p M_t(p) |F_t(p) - F_{t-1}(flow_t(p))|^2 / sum_p M_t(p).

Here the motion is known exactly, from the driving meshes: a pixel of frame t sees a point of a triangle
(barycentric coordinates on that triangle); the same coordinates on frame t-1's mesh give where that point was, and
its projection where to read frame t-1. M_t keeps the pixels whose point was visible at t-1 too (not occluded,
inside the image). Flicker is the mean absolute change between consecutive frames where nothing moved (static
pixels, e.g. the background or a region the mesh leaves in place). Colours are in [0, 1]; both are 0 for a
perfectly consistent sequence.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MeshFlow:
    """Where each pixel of frame t was in frame t-1: `source` (H, W, 2) pixel coordinates (x, y) of frame t-1,
    `valid` (H, W) the pixels that see the mesh at t and whose point was visible at t-1."""

    source: np.ndarray
    valid: np.ndarray


def mesh_flow(vertices_prev: np.ndarray, vertices_next: np.ndarray, faces: np.ndarray, k: np.ndarray,
              rt: np.ndarray, width: int, height: int, occlusion_tolerance: float) -> MeshFlow:
    """The backward flow of a perspective camera (K 3x3, RT 3x4) between two poses of one mesh topology;
    `occlusion_tolerance`: how far (in the mesh's units, along the camera's z) a point may lie behind frame t-1's
    visible surface and still count as seen."""
    from model.render.raycast import MeshRaycaster

    vertices_prev, vertices_next = np.asarray(vertices_prev, np.float64), np.asarray(vertices_next, np.float64)
    if vertices_prev.shape != vertices_next.shape:
        raise ValueError(f"the two frames' meshes differ in shape: {vertices_prev.shape} vs {vertices_next.shape}")
    return flow_from_hits(MeshRaycaster(vertices_next, faces).cast(k, rt, width, height),
                          MeshRaycaster(vertices_prev, faces).cast(k, rt, width, height), vertices_prev, faces, k, rt,
                          occlusion_tolerance)


def flow_from_hits(now, before, vertices_prev: np.ndarray, faces: np.ndarray, k: np.ndarray, rt: np.ndarray,
                   occlusion_tolerance: float, projection: str = "perspective") -> MeshFlow:
    """`mesh_flow` from the two frames' casts at the camera (`model.render.raycast.RayHits`): a sequence casts
    each frame once and pairs the casts. `projection` "orthographic": `k` is the THuman views' 4x4 NDC matrix
    (`MeshRaycaster.cast_orthographic`'s pixel centres), else a pinhole K."""
    height, width = now.shape
    source = np.zeros((height, width, 2))
    valid = np.zeros((height, width), bool)
    ys, xs = np.nonzero(now.mask)
    tri = np.asarray(vertices_prev, np.float64)[np.asarray(faces)[now.face[ys, xs]]]  # the hit triangles, at t-1
    point = np.einsum("nk,nkc->nc", now.bary[ys, xs], tri)
    cam = point @ rt[:, :3].T + rt[:, 3]
    if projection == "orthographic":
        ndc = cam[:, :2] * np.diag(np.asarray(k, np.float64))[:2]
        uv = (ndc + 1) / 2 * np.array([width, height]) - 0.5
    else:
        uvw = cam @ np.asarray(k, np.float64)[:3, :3].T
        uv = uvw[:, :2] / uvw[:, 2:3]
    # inside: between the outer pixel centres (to rounding), where the bilinear read needs no clamping
    eps = 1e-9
    inside = (cam[:, 2] > 0) & (uv[:, 0] >= -eps) & (uv[:, 0] <= width - 1 + eps) & (uv[:, 1] >= -eps) \
        & (uv[:, 1] <= height - 1 + eps)
    px, py = np.round(uv[:, 0]).astype(int), np.round(uv[:, 1]).astype(int)
    seen = np.zeros(len(ys), bool)
    depth = before.depth[py[inside], px[inside]]
    seen[inside] = (depth > 0) & (cam[inside, 2] <= depth + occlusion_tolerance)
    source[ys, xs] = uv
    valid[ys[seen], xs[seen]] = True
    return MeshFlow(source, valid)


def warp(frame: np.ndarray, source: np.ndarray) -> np.ndarray:
    """`frame` (H, W[, C]) read at `source` (H, W, 2) pixel coordinates, bilinearly (pixel centres at integers;
    coordinates outside are clamped to the border)."""
    from model.render.sampling import bilinear_sample

    return bilinear_sample(np.asarray(frame, np.float64), source)


def _unit(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    out = frames.astype(np.float64) / 255.0 if frames.dtype == np.uint8 else frames.astype(np.float64)
    if not np.isfinite(out).all():
        raise ValueError("the frames hold NaN or infinite values")
    return out


def warping_errors(frames: np.ndarray, flows: list[MeshFlow]) -> np.ndarray:
    """Per consecutive pair (t-1, t), the mean squared colour difference of frame t and frame t-1 warped along
    `flows[t-1]`, over its valid pixels (NaN where a pair has none). `frames` (T, H, W[, C]): uint8 or [0, 1]."""
    frames = _unit(frames)
    if len(flows) != len(frames) - 1:
        raise ValueError(f"{len(frames)} frames need {len(frames) - 1} flows, got {len(flows)}")
    out = np.full(len(flows), np.nan)
    for t, flow in enumerate(flows, start=1):
        if not flow.valid.any():
            continue
        diff = frames[t] - warp(frames[t - 1], flow.source)
        sq = diff ** 2 if diff.ndim == 2 else (diff ** 2).mean(-1)
        out[t - 1] = float(sq[flow.valid].mean())
    return out


def warping_error(frames: np.ndarray, flows: list[MeshFlow]) -> float:
    """E_warp: the mean of `warping_errors` over the pairs that have valid pixels."""
    errors = warping_errors(frames, flows)
    return float(np.nanmean(errors)) if np.isfinite(errors).any() else float("nan")


def flicker(frames: np.ndarray, static: np.ndarray) -> float:
    """The mean absolute change between consecutive frames over the `static` pixels ((H, W), or (T-1, H, W) per
    pair), averaged over colour channels."""
    frames = _unit(frames)
    static = np.asarray(static, bool)
    if static.ndim == 2:
        static = np.broadcast_to(static, (len(frames) - 1,) + static.shape)
    if static.shape != (len(frames) - 1,) + frames.shape[1:3]:
        raise ValueError(f"static mask of shape {static.shape} does not fit {len(frames)} frames of "
                         f"{frames.shape[1:3]}")
    if not static.any():
        return float("nan")
    change = np.abs(np.diff(frames, axis=0))
    if change.ndim == 4:
        change = change.mean(-1)
    return float(change[static].mean())
