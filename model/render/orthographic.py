"""The release's THuman cameras (Blender orthographic, ortho_scale 1.2, distance 1.5, looking at the origin, z up)
and an orthographic textured ray-cast renderer."""
from __future__ import annotations

import numpy as np

from model.render.cameras import look_at

ORTHO_SCALE = 1.2
DISTANCE = 1.5
NEAR, FAR = 0.1, 100.0
N_TARGET_VIEWS = 16


def ortho_projection(ortho_scale: float = ORTHO_SCALE, near: float = NEAR, far: float = FAR) -> np.ndarray:
    """Blender's 4x4 orthographic projection: NDC x, y in [-1, 1] (y down with OpenCV extrinsics)."""
    k = np.diag([2 / ortho_scale, 2 / ortho_scale, -2 / (far - near), 1.0])
    k[2, 3] = -(far + near) / (far - near)
    return k


def orbit_extrinsics(azimuths: np.ndarray, elevations: np.ndarray, distance: float = DISTANCE) -> np.ndarray:
    """(N, 3, 4) OpenCV world-to-camera matrices of cameras at (cos az cos el, sin az cos el, sin el) * distance,
    looking at the origin with world z up (Blender's TRACK_TO)."""
    out = []
    for az, el in zip(azimuths, elevations):
        eye = distance * np.array([np.cos(az) * np.cos(el), np.sin(az) * np.cos(el), np.sin(el)])
        out.append(look_at(eye, np.zeros(3), up=np.array([0.0, 0.0, 1.0])))
    return np.stack(out)


def target_cameras() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The 16 fixed target views: azimuth k * 22.5 degrees, elevation 0 (as thuman_meta.pkl)."""
    az = np.arange(N_TARGET_VIEWS) * 2 * np.pi / N_TARGET_VIEWS
    el = np.zeros(N_TARGET_VIEWS)
    return az, el, orbit_extrinsics(az, el)


def ortho_rays(rt: np.ndarray, size: int, ortho_scale: float = ORTHO_SCALE) -> tuple[np.ndarray, np.ndarray]:
    """Parallel rays through pixel centres: pixel (u, v) <-> NDC ((u + 0.5) / size * 2 - 1, ...)."""
    c = (np.arange(size) + 0.5) / size * 2 - 1
    x, y = np.meshgrid(c * ortho_scale / 2, c * ortho_scale / 2)
    cam = np.stack([x.ravel(), y.ravel(), np.zeros(x.size)], -1)
    rot, t = rt[:, :3], rt[:, 3]
    origins = (cam - t) @ rot  # R^T (p - t) for row vectors
    direction = rot[2]  # camera +z in world coordinates
    return origins - direction * 10.0, np.broadcast_to(direction, origins.shape)


def render_textured_ortho_views(vertices: np.ndarray, faces: np.ndarray, uv: np.ndarray, uv_faces: np.ndarray,
                                texture: np.ndarray, rts: np.ndarray, size: int = 256, environment: float = 0.7
                                ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """RGB (uint8) and mask of a textured mesh under a uniform environment (colour = albedo x environment), for
    every camera of `rts` (N, 3, 4), from one ray-casting scene whose BVH is built once per scan, not per view.

    With a uniform environment and no occlusion, Lambertian shading is constant, so this is what Cycles renders
    without its ambient occlusion, inter-reflections, glossy term and noise (see docs/views.md).
    """
    import cv2
    import open3d as o3d

    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(np.ascontiguousarray(vertices, np.float32)),
                        o3d.core.Tensor(np.ascontiguousarray(faces, np.uint32)))
    h, w = texture.shape[:2]
    rgbs, masks = [], []
    for rt in rts:
        origins, dirs = ortho_rays(rt, size)
        ans = scene.cast_rays(o3d.core.Tensor(np.concatenate([origins, dirs], 1).astype(np.float32)))
        ids = ans["primitive_ids"].numpy().astype(np.int64)
        hit = ids != 4294967295
        b = ans["primitive_uvs"].numpy().astype(np.float64)[hit]
        bary = np.stack([1 - b[:, 0] - b[:, 1], b[:, 0], b[:, 1]], -1)
        tex_uv = np.einsum("nk,nkc->nc", bary, uv[uv_faces[ids[hit]]])
        map_x = (tex_uv[:, 0] * w - 0.5).astype(np.float32)
        map_y = ((1 - tex_uv[:, 1]) * h - 0.5).astype(np.float32)
        albedo = cv2.remap(texture, map_x[:, None], map_y[:, None], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        rgb = np.zeros((size * size, 3))
        rgb[hit] = albedo.reshape(-1, 3) / 255.0 * environment
        rgbs.append((np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8).reshape(size, size, 3))
        masks.append(hit.reshape(size, size))
    return rgbs, masks
