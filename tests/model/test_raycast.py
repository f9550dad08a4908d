"""Ray casting and mesh densification: the region-limited, compact `RayHits` equals casting every pixel of the image
(open3d directly, the independent reference), and midpoint subdivision keeps the surface and its texture mapping."""
import numpy as np
import trimesh

from model.render.cameras import intrinsics, look_at, pixel_rays
from model.render.raycast import MeshRaycaster, interpolate_at_hits, raycast_mesh
from model.standin.subdivision import subdivide_textured


def _sphere():
    mesh = trimesh.creation.icosphere(subdivisions=3, radius=0.1)
    return np.asarray(mesh.vertices), np.asarray(mesh.faces)


def _every_pixel(vertices, faces, k, rt, width, height, distortion=None):
    import open3d as o3d

    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(vertices.astype(np.float32)), o3d.core.Tensor(faces.astype(np.uint32)))
    origins, dirs = pixel_rays(k, rt, width, height, distortion)
    ans = scene.cast_rays(o3d.core.Tensor(np.concatenate([origins, dirs], 1).astype(np.float32)))
    ids = ans["primitive_ids"].numpy()
    hit = ids != 4294967295
    return hit.reshape(height, width), ids.astype(np.int64).reshape(height, width), \
        ans["t_hit"].numpy().reshape(height, width)


def test_region_cast_equals_casting_every_pixel():
    vertices, faces = _sphere()
    width, height = 160, 120
    k = intrinsics(300.0, width, height)
    distortion = np.array([-0.05, 0.01, 1e-4, -2e-4, 0.0])
    for eye in ([0.0, 0.0, 0.6], [0.3, 0.1, 0.45], [-0.2, -0.15, 0.5]):
        rt = look_at(np.array(eye), np.zeros(3))
        hits = raycast_mesh(vertices, faces, k, rt, width, height, distortion)
        mask, ids, t = _every_pixel(vertices, faces, k, rt, width, height, distortion)
        assert 200 < mask.sum() < mask.size and np.array_equal(hits.mask, mask)
        np.testing.assert_array_equal(hits.face[mask], ids[mask])
        np.testing.assert_allclose(hits.t[mask], t[mask], rtol=1e-5)  # open3d casts float32 rays
        # our distances and barycentrics are float64 on the hit triangle: the ray reaches the interpolated point
        origins, dirs = pixel_rays(k, rt, width, height, distortion)
        np.testing.assert_allclose(origins[mask.ravel()] + hits.t[mask][:, None] * dirs[mask.ravel()],
                                   hits.points[mask], atol=1e-13)
        assert hits.bary[mask].min() > -1e-5 and np.allclose(hits.bary[mask].sum(1), 1.0, atol=1e-12)
        assert np.isinf(hits.t[~mask]).all() and (hits.depth[~mask] == 0).all() and (hits.face[~mask] == -1).all()
        # compact values at the hits are the full images' values at the mask, in the same order
        for name in ("depth", "face", "bary", "points"):
            np.testing.assert_array_equal(hits.at_hits(name), getattr(hits, name)[mask])
        np.testing.assert_array_equal(hits.at_hits("view_dirs"), hits.view_dirs[mask])
        # hit points lie on the sphere, depth is their camera z
        radius = np.linalg.norm(hits.points[mask], axis=1)
        np.testing.assert_allclose(radius, 0.1, atol=2e-3)
        cam_z = hits.points[mask] @ rt[:3, :3].T[:, 2] + rt[2, 3]
        np.testing.assert_allclose(hits.depth[mask], cam_z, rtol=1e-9)


def test_one_scene_for_many_cameras_equals_one_scene_per_camera():
    vertices, faces = _sphere()
    caster = MeshRaycaster(vertices, faces)
    k = intrinsics(200.0, 96, 96)
    for eye in ([0.0, 0.0, 0.5], [0.4, 0.0, 0.3]):
        rt = look_at(np.array(eye), np.zeros(3))
        a, b = caster.cast(k, rt, 96, 96), raycast_mesh(vertices, faces, k, rt, 96, 96)
        assert a.roi == b.roi and np.array_equal(a.mask, b.mask)
        np.testing.assert_array_equal(interpolate_at_hits(a, faces, vertices), interpolate_at_hits(b, faces, vertices))


def test_subdivision_keeps_the_surface_and_the_texture_mapping():
    vertices, faces = _sphere()
    uv = np.c_[vertices[:, 0], vertices[:, 1]] * 3 + 0.5  # a mapping that is linear on every face
    v2, f2, uv2, uvf2 = subdivide_textured(vertices, faces, uv, faces.copy(), times=2)
    assert len(f2) == 16 * len(faces) and len(uvf2) == len(f2)
    # every new vertex is a combination of an original face's corners: the surface is unchanged (area equal)
    area = trimesh.Trimesh(vertices, faces, process=False).area
    np.testing.assert_allclose(trimesh.Trimesh(v2, f2, process=False).area, area, rtol=1e-9)
    # texture coordinates still follow the positions corner for corner (the mapping is linear per face)
    np.testing.assert_allclose(uv2[uvf2].reshape(-1, 2), v2[f2].reshape(-1, 3)[:, :2] * 3 + 0.5, atol=1e-12)
