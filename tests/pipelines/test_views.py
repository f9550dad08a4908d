"""Training views: geometric consistency, the released THuman cameras, atomic stores, and the batch dict."""
import os
import signal
import subprocess
import sys
import time

import numpy as np

import pytest

from model.geometry.voxels import voxelize
from pipelines.training_data import MultiViewDataset, SplitConfig
from pipelines.views import RENDER_VERSION
from storage.errors import CorruptFileError, MissingFileError
from storage.safe_pickle import load_pickle
from storage.views import ViewStore, store_path
from tests.conftest import TESTDATA
from pipelines import catalog


@pytest.fixture(scope="module")
def view_settings(model_data):
    """The session's tracked and rendered stand-in (read only here; writers use their own temporary roots)."""
    return model_data


def _inside_fraction(store: ViewStore, item: str, index: int, orthographic: bool) -> float:
    v = store.geometry(item).vertices.astype(np.float64)
    rt, k = store.RT[index].astype(np.float64), store.K[index].astype(np.float64)
    cam = v @ rt[:, :3].T + rt[:, 3]
    if orthographic:
        ndc = (np.concatenate([cam, np.ones((len(cam), 1))], 1) @ k.T)[:, :2]
        pix = (ndc + 1) / 2 * 256 - 0.5
    else:
        uvw = cam @ k[:3, :3].T
        pix = uvw[:, :2] / uvw[:, 2:]
    px, py = np.round(pix[:, 0]).astype(int), np.round(pix[:, 1]).astype(int)
    ok = (px >= 0) & (px < 256) & (py >= 0) & (py < 256)
    # vertices on the occluding contour project onto the silhouette's edge: allow one pixel (the nearest-neighbour
    # resize of the mask moves its edge by up to a pixel)
    from scipy.ndimage import binary_dilation

    mask = binary_dilation(store.mask(index) > 0, np.ones((3, 3), bool))
    inside = np.zeros(len(v), bool)
    inside[ok] = mask[py[ok], px[ok]] > 0
    return float(inside.mean())


@pytest.mark.parametrize("dataset,subject", [("facescape", "1"), ("facescape", "122"), ("thuman", "0003"),
                                             ("thuman", "0526")])
@pytest.mark.numerics
def test_stored_vertices_project_into_the_masks(view_settings, dataset, subject):
    store = ViewStore.open(store_path(view_settings.storage_root, dataset, catalog.topology(dataset).name, subject))
    for i in range(len(store)):
        item = store.items[int(store.item[i])]
        frac = _inside_fraction(store, item, i, dataset == "thuman")
        assert frac >= 0.95, (dataset, subject, i, frac)


def test_thuman_target_cameras_match_the_release(view_settings):
    k4, az, el, dist, poses = load_pickle(TESTDATA / "thuman_meta.pkl")  # the released file, via the safe reader
    store = ViewStore.open(store_path(view_settings.storage_root, "thuman", "smplx", "0526"))
    targets = store.views_of("scan", role=0)
    np.testing.assert_allclose(store.RT[targets], poses, atol=1e-5)
    np.testing.assert_allclose(store.K[targets][0], k4, atol=1e-5)
    np.testing.assert_allclose(np.deg2rad(store.angles[targets, 0]), az, atol=1e-5)
    inputs = store.views_of("scan", role=1)
    assert len(inputs) == 16 and np.all(np.abs(store.angles[inputs, 1]) <= 20)


def test_store_attrs_and_hash(view_settings):
    store = ViewStore.open(store_path(view_settings.storage_root, "facescape", "flame", "1"))
    assert store.attrs["tracker_version"] == "flame-fit-1" and store.attrs["render_version"] == RENDER_VERSION
    assert store.rgb(0).shape == (256, 256, 3) and store.group["rgb"].chunks == (1, 3, 256, 256)
    assert store.verify()
    # the direct chunk decoder equals zarr's own reader
    assert store._fast
    idx = np.array([5, 0, 3])
    from storage.views import decode_rgb

    np.testing.assert_array_equal(store.rgb_many(idx), decode_rgb(store.group["rgb"].get_orthogonal_selection(
        (np.sort(idx),)))[np.argsort(np.argsort(idx))])
    rgb = np.random.default_rng(0).integers(0, 256, (4, 5, 3), dtype=np.uint8)
    from storage.views import encode_rgb

    np.testing.assert_array_equal(decode_rgb(encode_rgb(rgb)), rgb)
    np.testing.assert_array_equal(store.mask_many(idx), store.group["mask"][:][idx])
    geo = store.geometry("2_smile")
    ref = voxelize(geo.vertices)
    np.testing.assert_array_equal(geo.coord, ref.coord)
    assert np.all(geo.out_sh % 4 == 0)


def test_voxelize_closed_form():
    v = np.array([[0.0, 0.0, 0.0], [0.1, 0.05, 0.021], [0.0125, 0.0, 0.0]])
    g = voxelize(v)
    np.testing.assert_array_equal(g.out_sh, [8, 12, 24])  # ceil(extent/0.005) = (5, 10, 20) -> next multiple of 4 above
    np.testing.assert_array_equal(g.coord[1], [4, 10, 20])  # (z, y, x)
    np.testing.assert_array_equal(g.coord[2], [0, 0, 2])  # 0.0125/0.005 = 2.5 rounds to even
    np.testing.assert_allclose(g.bounds, [[0, 0, 0], [0.1, 0.05, 0.021]], atol=1e-7)


def test_killed_writer_leaves_no_store_the_reader_accepts(view_settings, tmp_path):
    """SIGKILL the writer mid-store: nothing is accepted; a rerun succeeds."""
    code = f"""
import sys
from storage.views import ViewStore, write_views, store_path
src = ViewStore.open(store_path({str(view_settings.storage_root)!r}, "thuman", "smplx", "0003"))
from storage.views import ViewSet
n = len(src)
vs = ViewSet(rgb=src.rgb(slice(0, n)), mask=src.mask(slice(0, n)), K=src.K, RT=src.RT, angles=src.angles,
             view_id=src.view_id, item=src.item, role=src.role, items={{"scan": src.geometry("scan")}}, attrs={{}})
write_views({str(tmp_path)!r}, "thuman", "smplx", "0003", vs, slow_write_s=float(sys.argv[1]))
"""
    proc = subprocess.Popen([sys.executable, "-c", code, "0.25"], cwd=str(view_settings.storage_root.parent))
    target = store_path(tmp_path, "thuman", "smplx", "0003")
    deadline = time.time() + 60
    while not list(target.parent.glob("0003.zarr.tmp-*")) and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with pytest.raises((MissingFileError, CorruptFileError)):
        ViewStore.open(target)
    for tmp in target.parent.glob("0003.zarr.tmp-*"):
        with pytest.raises((MissingFileError, CorruptFileError)):
            ViewStore.open(tmp)
    assert subprocess.run([sys.executable, "-c", code, "0"], cwd=str(view_settings.storage_root.parent)).returncode == 0
    assert len(ViewStore.open(target)) == 32
    assert not list(target.parent.glob("0003.zarr.tmp-*"))  # the rerun cleaned the leftovers


def test_concurrent_writers_of_one_subject_leave_one_complete_store(view_settings, tmp_path):
    """Three processes write the same subject's store at once: each waits for the subject's writer lock, all
    succeed, and the store is complete with the content hash of a sequential write (no writer deletes another's
    temporary folder)."""
    code = f"""
import sys
from storage.views import ViewStore, ViewSet, write_views, store_path
src = ViewStore.open(store_path({str(view_settings.storage_root)!r}, "thuman", "smplx", "0003"))
n = len(src)
vs = ViewSet(rgb=src.rgb(slice(0, n)), mask=src.mask(slice(0, n)), K=src.K, RT=src.RT, angles=src.angles,
             view_id=src.view_id, item=src.item, role=src.role, items={{"scan": src.geometry("scan")}}, attrs={{}})
write_views(sys.argv[1], "thuman", "smplx", "0003", vs, slow_write_s=float(sys.argv[2]))
"""
    cwd = str(view_settings.storage_root.parent)
    assert subprocess.run([sys.executable, "-c", code, str(tmp_path / "sequential"), "0"], cwd=cwd).returncode == 0
    sequential = ViewStore.open(store_path(tmp_path / "sequential", "thuman", "smplx", "0003")).manifest["content_hash"]
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "concurrent"), "0.01"], cwd=cwd)
             for _ in range(3)]
    assert [p.wait(300) for p in procs] == [0, 0, 0]
    target = store_path(tmp_path / "concurrent", "thuman", "smplx", "0003")
    store = ViewStore.open(target)  # every file the manifest lists is there
    assert store.manifest["content_hash"] == sequential and store.verify()
    assert store.rgb(len(store) - 1).shape == (256, 256, 3)
    assert not [p.name for p in target.parent.iterdir() if ".tmp-" in p.name or ".old-" in p.name]


@pytest.mark.parametrize("damage", ["chunk", "array_metadata"])
def test_reader_refuses_a_store_with_missing_parts(view_settings, tmp_path, damage):
    import shutil

    src = store_path(view_settings.storage_root, "thuman", "smplx", "0003")
    copy = tmp_path / "0003.zarr"
    shutil.copytree(src, copy)
    (copy / ("rgb/c/5/0/0/0" if damage == "chunk" else "rgb/zarr.json")).unlink()
    with pytest.raises(CorruptFileError, match="incomplete or damaged.*rgb"):
        ViewStore.open(copy)


def test_facescape_batch_dict(view_settings):
    ds = MultiViewDataset(view_settings.storage_root, "facescape")
    assert [ds.describe(i) for i in range(len(ds))] == [f"facescape/{s}/{e}" for s in ("1", "2", "3")
                                                        for e in ("1_neutral", "2_smile")]
    b = ds[1]
    shapes = {"target_image": (16, 256, 256, 3), "input_image": (256, 256, 3), "input_elevation": (1,),
              "target_azimuth": (16,), "input_K": (3, 3), "input_RT": (3, 4), "target_K": (16, 4, 4),
              "target_RT": (16, 3, 4), "vertices": (1922, 3), "coord": (1922, 3), "out_sh": (3,), "bounds": (2, 3)}
    for key, shape in shapes.items():
        assert b[key].shape == shape, key
    assert b["coord"].dtype == np.int32 and b["target_image"].dtype == np.float32
    assert b["target_image"].min() >= -1 and b["target_image"].max() <= 1
    assert not b["target_azimuth"].any() and not b["input_elevation"].any()
    store = ds.store("1")
    # the input view comes from the other (non-held-out) expression and is near-frontal
    in_idx = [i for i in range(len(store)) if np.allclose(store.RT[i], b["input_RT"])][0]
    assert store.items[store.item[in_idx]] == "1_neutral" and abs(store.angles[in_idx, 0]) <= 40
    # white composite: outside the silhouette the target image is exactly white
    t0 = [i for i in range(len(store)) if np.allclose(store.RT[i], b["target_RT"][0])][0]
    assert np.all(b["target_image"][0][store.mask(t0) == 0] == 1.0)
    assert len(set(map(tuple, b["target_RT"].reshape(16, -1).round(5).tolist()))) == 16  # without replacement


def test_val_split_and_thuman(view_settings):
    val = MultiViewDataset(view_settings.storage_root, "facescape", SplitConfig(split="val"))
    assert [val.describe(i) for i in range(len(val))] == ["facescape/122/6_jaw_right"]
    th = MultiViewDataset(view_settings.storage_root, "thuman")
    assert [th.describe(i) for i in range(len(th))] == ["thuman/0003/scan", "thuman/0526/scan", "thuman/1024/scan"]
    b = th[0]
    assert b["target_K"].shape == (16, 4, 4) and b["input_K"].shape == (4, 4) and b["vertices"].shape[1] == 3
    th_val = MultiViewDataset(view_settings.storage_root, "thuman", SplitConfig(split="val"))
    assert [th_val.describe(i) for i in range(len(th_val))] == ["thuman/2201/scan", "thuman/2301/scan",
                                                               "thuman/2401/scan"]
    small = MultiViewDataset(view_settings.storage_root, "facescape", SplitConfig(image_size=64))
    assert small[0]["target_image"].shape == (16, 64, 64, 3)


def test_dataloader_workers(view_settings):
    import torch

    from pipelines.training_data import torch_dataset

    ds = torch_dataset(view_settings.storage_root, "facescape")
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2)))
    assert batch["target_image"].shape == (2, 16, 256, 256, 3) and batch["out_sh"].shape == (2, 3)


@pytest.mark.numerics
def test_colour_calibration_fixes_the_tinted_camera(view_settings):
    """The stand-in's camera 17 has a strong colour cast: calibration corrects (or rejects) it and brings every
    corrected view closer to the multi-view mean colour."""
    from pipelines.demo_data import TINTED_VIEW
    from pipelines.views import facescape_expression_views
    from storage.facescape import FaceScapeDataset

    ds = FaceScapeDataset(view_settings.facescape_root, view_settings.facescape_rt_scale_dict)
    out = facescape_expression_views(ds, "1", "1_neutral")
    assert TINTED_VIEW in out["calibrated"] or TINTED_VIEW in out["rejected"]
    before, after = out["l1"][TINTED_VIEW]
    assert TINTED_VIEW in out["rejected"] or after < 0.7 * before
    for view in out["calibrated"]:
        assert out["l1"][view][1] < out["l1"][view][0]


def test_facescape_views_cast_only_what_they_read_and_equal_the_full_mask_route(view_settings):
    """Every view of a stand-in expression: the crop, the resized mask and the undistorted, resized image from the
    rays and pixels they read are the bytes of the full route (every pixel's ray, cv2.undistort of the image)."""
    import cv2

    from model import frames
    from model.render.crops import crop_and_resize, resize_rgb, silhouette_crop, undistorted_crop
    from model.render.raycast import MeshRaycaster
    from model.render.silhouette import crop_silhouette
    from storage.facescape import FaceScapeDataset

    ds = FaceScapeDataset(view_settings.facescape_root, view_settings.facescape_rt_scale_dict)
    tup = ds.tuple("1", "1_neutral")
    scale, align = ds.alignment("1", tup.expression_index)
    scan = ds.read_scan(tup)
    caster = MeshRaycaster(frames.sfm_to_model_points(scan.vertices, scale, align), scan.faces)
    compared = 0
    for view in tup.valid_views:
        cam = tup.cameras[view]
        rt = frames.sfm_to_model_extrinsics(cam.Rt, scale, align)
        camera_x = float((-rt[:, :3].T @ rt[:, 3])[0])
        full = caster.cast(cam.K, rt, cam.width, cam.height).mask
        got = crop_silhouette(caster, cam.K, rt, cam.width, cam.height, camera_x, 256)
        if not full.any():
            assert got is None
            continue
        top, left, size = silhouette_crop(full, camera_x)
        image = ds.read_image(tup, view)
        rgb, mask, k = crop_and_resize(cv2.undistort(image, cam.K, cam.distortion), full, cam.K, top, left, size)
        rgb2, k2 = resize_rgb(undistorted_crop(image, cam.K, cam.distortion, top, left, size), cam.K, top, left, size)
        assert (got.top, got.left, got.size) == (top, left, size)
        assert np.array_equal(got.mask, mask) and np.array_equal(rgb2, rgb) and np.array_equal(k2, k)
        compared += 1
    assert compared >= 15


def test_a_store_written_in_one_call_has_the_bytes_of_one_written_view_by_view(tmp_path):
    """write_views hands zarr every chunk at once (concurrent encoding); the files equal the view-by-view write."""
    from storage.views import ItemGeometry, ViewSet, write_views

    rng = np.random.default_rng(0)
    n = 5
    vertices = rng.normal(size=(300, 3)).astype(np.float32)
    vox = voxelize(vertices)
    views = ViewSet(rgb=rng.integers(0, 255, (n, 64, 64, 3), dtype=np.uint8),
                    mask=(rng.random((n, 64, 64)) > 0.5).astype(np.uint8) * 255, K=np.repeat(np.eye(4)[None], n, 0),
                    RT=rng.normal(size=(n, 3, 4)), angles=rng.normal(size=(n, 2)), view_id=np.arange(n),
                    item=np.zeros(n), role=np.zeros(n, np.int8),
                    items={"a": ItemGeometry(vertices, vox.coord, vox.out_sh, vox.bounds)}, attrs={"projection": "x"})
    one = write_views(tmp_path / "one", "facescape", "flame", "1", views)
    each = write_views(tmp_path / "each", "facescape", "flame", "1", views, slow_write_s=1e-6)
    files = sorted(p.relative_to(one) for p in one.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(each) for p in each.rglob("*") if p.is_file()) and len(files) > 10
    for rel in files:
        assert (one / rel).read_bytes() == (each / rel).read_bytes(), rel


def test_an_expressions_views_are_the_same_bits_on_any_number_of_threads(view_settings, monkeypatch):
    """The views of an expression (and the calibration's sampling, fit and mapping) run side by side on the
    process's cores ($OMP_NUM_THREADS): one thread and three give the same views, calibration and rejections."""
    from pipelines.views import facescape_expression_views
    from storage.facescape import FaceScapeDataset

    ds = FaceScapeDataset(view_settings.facescape_root, view_settings.facescape_rt_scale_dict)
    runs = []
    for threads in ("1", "3"):
        monkeypatch.setenv("OMP_NUM_THREADS", threads)
        runs.append(facescape_expression_views(ds, "1", "1_neutral"))
    one, three = runs
    for key in ("rgb", "mask", "K", "RT", "angles", "view_id"):
        assert np.array_equal(one[key], three[key]), key
    assert (one["l1"], one["rejected"], one["calibrated"]) == (three["l1"], three["rejected"], three["calibrated"])
    assert len(one["calibrated"]) > 0  # the mapping step ran (the stand-in tints a camera)
