"""Per-view colour calibration against per-vertex mean colours (spec §1.3), vectorised over vertices.

For every view, scan vertices are projected, tested for visibility against the view's depth, and sampled. A view
whose colours differ too much from the multi-view mean (L1 > 0.085, or a red-outlier ratio > 0.03) is rejected;
otherwise an affine colour map (3x4) fitted with the release's Huber loss (sklearn's HuberRegressor at epsilon 1, which
is a least-absolute-deviations fit; `model.render.huber` solves it exactly for every view and channel at once) is
applied if it brings the view closer to the mean.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from model.parallel import ordered_map
from model.render.huber import lad_fit
from model.render.sampling import bilinear_sample

SPECULAR = 0.7
VISIBILITY_M = 0.003
MAX_L1 = 0.085
RED_DELTA, RED_DARK, MAX_RED_RATIO = 0.3, 50 / 255, 0.03
#: the Huber fit sees at most this many visible vertices per view, evenly spaced (the release fits every one; at real
#: scan densities that is 10^5 points per view for 12 parameters, and the fit dominated preprocessing; measured in
#: docs/benchmarks.md). The demo's scans never reach it, so their views are unchanged.
MAX_FIT_POINTS = 8192


@dataclass(frozen=True)
class CalibrationResult:
    images: list[np.ndarray | None]  # calibrated uint8 RGB per view; None = rejected
    l1_before: np.ndarray
    l1_after: np.ndarray
    red_ratio: np.ndarray
    applied: np.ndarray  # bool: the affine map was applied


def calibrate_views(images: list[np.ndarray], depths: list[np.ndarray], ks: list[np.ndarray], rts: list[np.ndarray],
                    vertices: np.ndarray, units_per_metre: float) -> CalibrationResult:
    """`depths`: per-view camera-z maps of the mesh (0 = background), in the same units as `vertices`."""
    n_views, n_vert = len(images), len(vertices)
    colours = np.zeros((n_views, n_vert, 3))
    visible = np.zeros((n_views, n_vert), bool)

    def sample(i: int) -> tuple[np.ndarray, np.ndarray]:  # view i's depth-visible vertices and their colours
        cam = vertices @ rts[i][:, :3].T + rts[i][:, 3]
        uv = (cam @ ks[i].T)[:, :2] / cam[:, 2:3]
        depth = depths[i]
        h, w = depth.shape
        px, py = np.round(uv[:, 0]).astype(int), np.round(uv[:, 1]).astype(int)
        inside = (px >= 0) & (px < w) & (py >= 0) & (py < h) & (cam[:, 2] > 0)
        d = np.zeros(n_vert)
        d[inside] = depth[py[inside], px[inside]]
        seen = np.flatnonzero(inside & (d > 0) & (np.abs(d - cam[:, 2]) < VISIBILITY_M * units_per_metre))
        return seen, bilinear_sample(images[i].astype(np.float64) / 255.0, uv[seen])  # (only where a colour is read)

    # the views side by side on the process's cores (each alone: the same bits for any thread count)
    for i, (seen, col) in enumerate(ordered_map(sample, range(n_views))):
        visible[i, seen] = col.mean(1) < SPECULAR
        colours[i, seen] = col
    count = visible.sum(0)
    mean = (colours * visible[..., None]).sum(0) / (count[:, None] + 1e-4)
    out: list[np.ndarray | None] = [None] * n_views
    l1_before, l1_after, red, applied = (np.zeros(n_views) for _ in range(4))
    applied = applied.astype(bool)
    fits: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}  # view -> (x, m, fit rows)
    for i in range(n_views):
        vis = visible[i] & (count > 1)
        if vis.sum() < 20:
            out[i] = images[i]
            continue
        c, m = colours[i][vis], mean[vis]
        l1_before[i] = np.abs(c - m).mean()
        red[i] = np.mean((np.abs(c[:, 0] - m[:, 0]) > RED_DELTA) & np.all(c < RED_DARK, axis=1))
        if l1_before[i] > MAX_L1 or red[i] > MAX_RED_RATIO:
            continue  # rejected (None)
        x = np.concatenate([c, np.ones((len(c), 1))], 1)
        fit = np.linspace(0, len(c) - 1, MAX_FIT_POINTS).round().astype(int) if len(c) > MAX_FIT_POINTS \
            else np.arange(len(c))
        fits[i] = (x, m, fit)
    maps = _affine_maps({i: (x[fit], m[fit] - x[fit, :3]) for i, (x, m, fit) in fits.items()})

    def apply(i: int) -> tuple[float, np.ndarray | None]:  # view i's L1 after the map, and its mapped image
        x, m, _ = fits[i]
        after = float(np.abs(np.clip(x @ maps[i].T, 0, 1) - m).mean())
        if after >= l1_before[i]:
            return float(l1_before[i]), None
        flat = images[i].reshape(-1, 3).astype(np.float64) / 255.0
        res = np.clip(np.concatenate([flat, np.ones((len(flat), 1))], 1) @ maps[i].T, 0, 1)
        return after, (res.reshape(images[i].shape) * 255 + 0.5).astype(np.uint8)

    for i, (after, mapped) in zip(fits, ordered_map(apply, list(fits))):
        l1_after[i] = after
        out[i] = images[i] if mapped is None else mapped
        applied[i] = mapped is not None
    return CalibrationResult(out, l1_before, l1_after, red, applied)


def _affine_maps(problems: dict[int, tuple[np.ndarray, np.ndarray]]) -> dict[int, np.ndarray]:
    """Per view, the 3x4 colour map I + A fitted with the release's robust loss (sklearn's Huber at epsilon 1, an
    LAD fit: `model.render.huber`), all views' three channels solved at once: {view: (x (N, 4), target (N, 3))}."""
    if not problems:
        return {}
    keys = list(problems)
    n = max(len(problems[k][0]) for k in keys)
    x = np.zeros((3 * len(keys), n, 4))
    y = np.zeros((3 * len(keys), n))
    w = np.zeros((3 * len(keys), n))
    for v, k in enumerate(keys):
        xv, target = problems[k]
        for ch in range(3):
            x[3 * v + ch, :len(xv)], y[3 * v + ch, :len(xv)], w[3 * v + ch, :len(xv)] = xv, target[:, ch], 1.0
    coef = lad_fit(x, y, w).coef.reshape(len(keys), 3, 4)
    return {k: coef[v] + np.eye(3, 4) for v, k in enumerate(keys)}
