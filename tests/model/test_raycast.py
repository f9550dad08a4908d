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


def _head():
    """An ellipsoid 'head' with a bump (an extreme a coarse search could miss), in metres."""
    mesh = trimesh.creation.icosphere(subdivisions=4, radius=1.0)
    v = np.asarray(mesh.vertices) * np.array([0.08, 0.11, 0.09])
    v[:, 1] -= 0.02 * np.exp(-((v[:, 0] - 0.03) ** 2 + v[:, 2] ** 2) / 2e-4) * (v[:, 1] < 0)
    return v, np.asarray(mesh.faces)


def test_the_crop_and_its_mask_from_the_rays_they_read_equal_the_full_mask_route():
    """At FaceScape's image size, the crop window and the nearest-neighbour-resized mask computed from ~10^5
    rays equal those of the full-resolution mask (10^6 rays), for cameras on either side and off-centre."""
    import cv2

    from model.render.crops import silhouette_crop
    from model.render.silhouette import crop_silhouette

    vertices, faces = _head()
    caster = MeshRaycaster(vertices, faces)
    width, height = 1800, 2400
    k = intrinsics(5200.0, width, height, cx=911.3, cy=1187.6)
    for eye in ([0.0, 0.02, 0.9], [0.45, -0.05, 0.75], [-0.6, 0.1, 0.6], [0.08, 0.3, 0.8]):
        rt = look_at(np.array(eye), np.array([0.01, -0.01, 0.0]))
        camera_x = float(-(rt[:, :3].T @ rt[:, 3])[0])
        full = caster.cast(k, rt, width, height).mask
        top, left, size = silhouette_crop(full, camera_x)
        want = cv2.resize(full[top:top + size, left:left + size].astype(np.uint8), (256, 256),
                          interpolation=cv2.INTER_NEAREST)
        got = crop_silhouette(caster, k, rt, width, height, camera_x, 256)
        assert (got.top, got.left, got.size) == (top, left, size)
        assert 1000 < want.sum() and np.array_equal(got.mask, want)
        assert got.rays < full.size / 20


def test_nearest_indices_are_opencvs():
    import cv2

    from model.render.crops import nearest_indices

    rng = np.random.default_rng(0)
    for size in (300, 400, 1799, 1800, 2400, 257, 256, 255, 100):
        for out in (256, 64):
            image = rng.integers(0, 255, (size, size), dtype=np.uint8)
            idx = nearest_indices(size, out)
            np.testing.assert_array_equal(image[np.ix_(idx, idx)],
                                          cv2.resize(image, (out, out), interpolation=cv2.INTER_NEAREST))


def test_undistorting_only_the_crop_equals_undistorting_the_image():
    import cv2

    from model.render.crops import undistorted_crop

    rng = np.random.default_rng(3)
    for width, height in ((1800, 2400), (2400, 1800), (300, 400)):
        image = cv2.GaussianBlur(rng.integers(0, 255, (height, width, 3), dtype=np.uint8), (0, 0), 2)
        size = min(width, height)
        for _ in range(3):
            f = rng.uniform(1.5, 2.5) * width
            k = np.array([[f, 0, width / 2 + rng.uniform(-40, 40)], [0, f * rng.uniform(0.999, 1.001),
                                                                      height / 2 + rng.uniform(-40, 40)], [0, 0, 1]])
            distortion = np.array([rng.uniform(-0.2, 0.2), rng.uniform(-0.5, 0.5), rng.uniform(-1e-3, 1e-3),
                                   rng.uniform(-1e-3, 1e-3), 0.0])
            top, left = int(rng.integers(0, height - size + 1)), int(rng.integers(0, width - size + 1))
            want = cv2.undistort(image, k, distortion)[top:top + size, left:left + size]
            np.testing.assert_array_equal(undistorted_crop(image, k, distortion, top, left, size), want)


def test_ortho_views_cast_in_their_boxes_in_one_call_equal_casting_every_pixel_of_each_view():
    import cv2
    import open3d as o3d

    from model.render.orthographic import orbit_extrinsics, ortho_rays, render_textured_ortho_views

    mesh = trimesh.creation.icosphere(subdivisions=4, radius=1.0)
    v = np.asarray(mesh.vertices) * np.array([0.12, 0.08, 0.45]) + np.array([0.02, 0.0, -0.03])  # a tall body
    f = np.asarray(mesh.faces)
    uv = np.c_[(np.arctan2(v[:, 1], v[:, 0]) / (2 * np.pi)) % 1.0, (v[:, 2] + 0.5) / 1.0]
    rng = np.random.default_rng(0)
    texture = cv2.GaussianBlur(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8), (0, 0), 3)
    rts = orbit_extrinsics(np.arange(8) * np.pi / 4, np.deg2rad(rng.uniform(-20, 20, 8)))
    rgbs, masks = render_textured_ortho_views(v, f, uv, f, texture, rts, size=128)

    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(v.astype(np.float32)), o3d.core.Tensor(f.astype(np.uint32)))
    for rt, rgb, mask in zip(rts, rgbs, masks):  # the reference: every pixel of each view, one view at a time
        origins, dirs = ortho_rays(rt, 128)
        ans = scene.cast_rays(o3d.core.Tensor(np.concatenate([origins, dirs], 1).astype(np.float32)))
        ids = ans["primitive_ids"].numpy().astype(np.int64)
        hit = ids != 4294967295
        b = ans["primitive_uvs"].numpy().astype(np.float64)[hit]
        tex_uv = np.einsum("nk,nkc->nc", np.stack([1 - b[:, 0] - b[:, 1], b[:, 0], b[:, 1]], -1), uv[f[ids[hit]]])
        albedo = cv2.remap(texture, (tex_uv[:, 0] * 256 - 0.5).astype(np.float32)[:, None],
                           ((1 - tex_uv[:, 1]) * 256 - 0.5).astype(np.float32)[:, None], cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REFLECT)
        want = np.zeros((128 * 128, 3))
        want[hit] = albedo.reshape(-1, 3) / 255.0 * 0.7
        assert 500 < hit.sum() < 0.5 * hit.size  # the box is a real saving, and the body is seen
        np.testing.assert_array_equal(mask, hit.reshape(128, 128))
        np.testing.assert_array_equal(rgb, (np.clip(want, 0, 1) * 255 + 0.5).astype(np.uint8).reshape(128, 128, 3))
