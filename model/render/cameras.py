"""Pinhole cameras in the OpenCV convention: K (3x3), world-to-camera Rt (3x4), x right, y down, z forward.

Products and norms go through `model.portable_math` (no BLAS), so cameras and rays are the same bits on every CPU:
the synthetic stand-in is rendered with them and must be a function of its seed.
"""
from __future__ import annotations

import numpy as np

from model import portable_math as pm


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray = np.array([0.0, 1.0, 0.0])) -> np.ndarray:
    """World-to-camera [R|t] (3x4) of a camera at `eye` looking at `target`, with image-up close to `up`."""
    forward = np.asarray(target, float) - np.asarray(eye, float)
    forward = forward / pm.norm(forward)
    right = pm.cross(forward, np.asarray(up, float))
    right = right / pm.norm(right)
    down = pm.cross(forward, right)
    rot = np.stack([right, down, forward])  # rows: camera axes in world coordinates
    return np.concatenate([rot, -pm.matmul(rot, np.asarray(eye, float))[:, None]], axis=1)


def camera_center(rt: np.ndarray) -> np.ndarray:
    """Camera centre in world coordinates, -R^T t."""
    return -pm.matmul(np.asarray(rt)[:3, :3].T, np.asarray(rt)[:3, 3])


def intrinsics(focal: float, width: int, height: int, cx: float | None = None, cy: float | None = None) -> np.ndarray:
    return np.array([[focal, 0, (width - 1) / 2 if cx is None else cx],
                     [0, focal, (height - 1) / 2 if cy is None else cy], [0, 0, 1.0]])


def project(points: np.ndarray, k: np.ndarray, rt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates (N, 2) and camera depths (N,) of world points (no lens distortion)."""
    cam = pm.transform_points(points, rt[:3, :3], rt[:3, 3])
    uvw = pm.transform_points(cam, k)
    return uvw[:, :2] / uvw[:, 2:3], cam[:, 2]


def pixel_rays(k: np.ndarray, rt: np.ndarray, width: int, height: int,
               distortion: np.ndarray | None = None,
               roi: tuple[int, int, int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """World-space origins and unit directions (H*W, 3) through every pixel centre of a (distorted) image, or of
    the pixels of `roi` = (x0, y0, x1, y1) (end-exclusive) only, row by row.

    Pixel (u, v) has its centre at integer coordinates, as in OpenCV. With `distortion` (k1 k2 p1 p2 k3) the rays
    are those of the distorted image the camera records, found with cv2.undistortPoints.
    """
    x0, y0, x1, y1 = roi or (0, 0, width, height)
    u, v = np.meshgrid(np.arange(x0, x1, dtype=np.float64), np.arange(y0, y1, dtype=np.float64))
    return pixel_rays_at(k, rt, u.ravel(), v.ravel(), distortion)


def pixel_rays_at(k: np.ndarray, rt: np.ndarray, u: np.ndarray, v: np.ndarray,
                  distortion: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Origins and unit directions (N, 3) of the rays through pixel centres (u, v) (N,): every operation is per
    pixel, so a ray is the same bits whichever other pixels are cast with it."""
    pix = np.stack([np.asarray(u, np.float64), np.asarray(v, np.float64)], -1)
    if distortion is not None and np.any(distortion):
        import cv2

        norm = cv2.undistortPoints(pix.reshape(-1, 1, 2), k, np.asarray(distortion, np.float64)).reshape(-1, 2)
    else:
        norm = (pix - k[:2, 2]) / np.diag(k)[:2]
    dirs_cam = np.concatenate([norm, np.ones((len(norm), 1))], 1)
    rot = rt[:3, :3]
    dirs = pm.transform_points(dirs_cam, rot.T)  # R^T d for row vectors
    dirs /= pm.norm(dirs, axis=1, keepdims=True)
    origins = np.broadcast_to(camera_center(rt), dirs.shape)
    return origins, dirs
