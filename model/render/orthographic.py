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


def ortho_pixel_boxes(vertices: np.ndarray, rts: np.ndarray, size: int, ortho_scale: float = ORTHO_SCALE,
                      margin: int = 2) -> list[tuple[int, int, int, int]]:
    """Per camera of `rts` (N, 3, 4), (x0, y0, x1, y1) end-exclusive: the pixels whose parallel rays can meet the
    mesh (its vertices' projected bounding box and a margin; a triangle lies within its vertices' hull, so rays
    outside miss). All cameras' projections in one product."""
    rows = np.asarray(rts)[:, :2, :3].reshape(-1, 3)  # camera x and y axes of every view
    cam = rows @ np.ascontiguousarray(np.asarray(vertices, np.float64).T)  # (2N, V): 8x faster than (V, 2N)
    lo = cam.min(1).reshape(-1, 2) + np.asarray(rts)[:, :2, 3]
    hi = cam.max(1).reshape(-1, 2) + np.asarray(rts)[:, :2, 3]
    boxes = []
    for low, high in zip(lo, hi):
        a = np.floor((low / (ortho_scale / 2) + 1) / 2 * size - 0.5) - margin  # inverse of `ortho_rays` centres
        b = np.ceil((high / (ortho_scale / 2) + 1) / 2 * size - 0.5) + margin + 1
        x0, y0 = (int(np.clip(c, 0, size)) for c in a)
        x1, y1 = (int(np.clip(c, 0, size)) for c in b)
        boxes.append((x0, y0, max(x1, x0), max(y1, y0)))
    return boxes


def render_textured_ortho_views(vertices: np.ndarray, faces: np.ndarray, uv: np.ndarray, uv_faces: np.ndarray,
                                texture: np.ndarray, rts: np.ndarray, size: int = 256, environment: float = 0.7
                                ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """RGB (uint8) and mask of a textured mesh under a uniform environment (colour = albedo x environment), for
    every camera of `rts` (N, 3, 4), from one ray-casting scene whose BVH is built once per scan, not per view.

    With a uniform environment and no occlusion, Lambertian shading is constant, so this is what Cycles renders
    without its ambient occlusion, inter-reflections, glossy term and noise (see docs/views.md). Only the rays of
    each view's `ortho_pixel_boxes` box are cast, all views' in one call (the rest miss): the same bytes as casting every
    pixel of every view, at a fraction of the rays.
    """
    import cv2
    import open3d as o3d

    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(np.ascontiguousarray(vertices, np.float32)),
                        o3d.core.Tensor(np.ascontiguousarray(faces, np.uint32)))
    pixels, rays = [], []
    for rt, (x0, y0, x1, y1) in zip(rts, ortho_pixel_boxes(vertices, rts, size)):
        origins, dirs = ortho_rays(rt, size)  # every pixel's ray (per-pixel bits as in a full cast), then the box's
        idx = (np.arange(y0, y1)[:, None] * size + np.arange(x0, x1)[None]).ravel()
        pixels.append(idx)
        rays.append(np.concatenate([origins[idx], dirs[idx]], 1).astype(np.float32))
    ans = scene.cast_rays(o3d.core.Tensor(np.concatenate(rays)))
    ids_all = ans["primitive_ids"].numpy().astype(np.int64)
    uvs_all = ans["primitive_uvs"].numpy()
    h, w = texture.shape[:2]
    rgbs, masks = [], []
    start = 0
    for idx in pixels:
        ids, b = ids_all[start:start + len(idx)], uvs_all[start:start + len(idx)]
        start += len(idx)
        hit_box = ids != 4294967295
        b = b.astype(np.float64)[hit_box]
        bary = np.stack([1 - b[:, 0] - b[:, 1], b[:, 0], b[:, 1]], -1)
        tex_uv = np.einsum("nk,nkc->nc", bary, uv[uv_faces[ids[hit_box]]])
        map_x = (tex_uv[:, 0] * w - 0.5).astype(np.float32)
        map_y = ((1 - tex_uv[:, 1]) * h - 0.5).astype(np.float32)
        hit = np.zeros(size * size, bool)
        hit[idx[hit_box]] = True
        rgb = np.zeros((size * size, 3))
        if hit_box.any():
            albedo = cv2.remap(texture, map_x[:, None], map_y[:, None], cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REFLECT)
            rgb[idx[hit_box]] = albedo.reshape(-1, 3) / 255.0 * environment
        rgbs.append((np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8).reshape(size, size, 3))
        masks.append(hit.reshape(size, size))
    return rgbs, masks
