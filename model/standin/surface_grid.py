"""Triangulated latitude/longitude grids on the unit sphere: the parametric domain of the synthetic head.

Sampling the same continuous head at two grid resolutions gives two different topologies of one shape, as FLAME
(5,023 vertices) and FaceScape TU (26,317 vertices) are two topologies of real heads.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from model import portable_math as pm


@dataclass(frozen=True)
class SphereGrid:
    directions: np.ndarray  # (V, 3) unit vectors; index 0 = north pole (+y), last = south pole (-y)
    faces: np.ndarray  # (F, 3) int64, counter-clockwise seen from outside
    uv: np.ndarray  # (T, 2) texture coordinates in [0, 1] (seam column duplicated)
    uv_faces: np.ndarray  # (F, 3) int64 indices into uv


def sphere_grid(n_lat: int, n_lon: int, lon_offset: float = 0.0) -> SphereGrid:
    """Rings of `n_lon` vertices at `n_lat` latitudes plus two poles; azimuth 0 faces +z (the face)."""
    theta = np.linspace(0, np.pi, n_lat + 2)[1:-1]  # polar angle from +y
    phi = (np.arange(n_lon) + lon_offset) / n_lon * 2 * np.pi - np.pi  # azimuth, 0 = +z, starts at the back
    th, ph = np.meshgrid(theta, phi, indexing="ij")
    (s_th, c_th), (s_ph, c_ph) = pm.sincos(th), pm.sincos(ph)
    ring = np.stack([s_th * s_ph, c_th, s_th * c_ph], -1).reshape(-1, 3)
    dirs = np.concatenate([[[0.0, 1.0, 0.0]], ring, [[0.0, -1.0, 0.0]]])
    north, south = 0, len(dirs) - 1

    def vid(i: int, j: int) -> int:
        return 1 + i * n_lon + (j % n_lon)

    faces, uvf = [], []
    # texture coordinates: (n_lat) x (n_lon + 1) grid with a duplicated seam column, plus one per pole wedge
    uv_ring = np.stack(np.meshgrid((np.arange(n_lon + 1) + lon_offset) / n_lon, 1 - (theta / np.pi)), -1)
    uv = [uv_ring.reshape(-1, 2)]
    base_north = uv[0].shape[0]
    uv.append(np.stack([(np.arange(n_lon) + 0.5 + lon_offset) / n_lon, np.ones(n_lon)], -1))
    base_south = base_north + n_lon
    uv.append(np.stack([(np.arange(n_lon) + 0.5 + lon_offset) / n_lon, np.zeros(n_lon)], -1))

    def tid(i: int, j: int) -> int:
        return i * (n_lon + 1) + j

    for j in range(n_lon):
        # orientation: increasing azimuth goes from -z... to +x; winding chosen so normals point outwards
        faces.append([north, vid(0, j + 1), vid(0, j)])
        uvf.append([base_north + j, tid(0, j + 1), tid(0, j)])
        faces.append([south, vid(n_lat - 1, j), vid(n_lat - 1, j + 1)])
        uvf.append([base_south + j, tid(n_lat - 1, j), tid(n_lat - 1, j + 1)])
        for i in range(n_lat - 1):
            a, b, c, d = vid(i, j), vid(i, j + 1), vid(i + 1, j), vid(i + 1, j + 1)
            ta, tb, tc, td = tid(i, j), tid(i, j + 1), tid(i + 1, j), tid(i + 1, j + 1)
            faces += [[a, b, c], [b, d, c]]
            uvf += [[ta, tb, tc], [tb, td, tc]]
    faces_a = np.asarray(faces, dtype=np.int64)
    # make the winding outward-facing regardless of the azimuth direction convention
    v0, v1, v2 = (dirs[faces_a[:, k]] for k in range(3))
    if np.mean(np.sum(np.cross(v1 - v0, v2 - v0) * (v0 + v1 + v2), axis=1)) < 0:
        faces_a = faces_a[:, [0, 2, 1]]
        uvf = [[f[0], f[2], f[1]] for f in uvf]
    return SphereGrid(dirs, faces_a, np.concatenate(uv), np.asarray(uvf, dtype=np.int64))
