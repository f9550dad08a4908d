"""Raw-format readers on the stand-in, and every error case producing the named error."""
import json
import pickle

import numpy as np
import pytest

from storage.errors import CorruptFileError, InvalidContentError, InvalidIdError, MissingFileError
from storage.facescape import FaceScapeDataset, parse_params
from storage.meshes import read_obj
from storage.safe_pickle import UnsafePickleError, load_pickle
from storage.thuman import THumanDataset, read_smplx_fit
from tests.conftest import settings_for


def test_facescape_standin_validates(standin_settings):
    ds = FaceScapeDataset(standin_settings.facescape_root, standin_settings.facescape_rt_scale_dict)
    subjects = ds.subjects()
    assert len(subjects) >= 4
    for subject in subjects:
        exprs = ds.expressions(subject)
        assert len(exprs) >= 3
        for expr in exprs:
            tup = ds.tuple(subject, expr)
            assert len(tup.cameras) >= 20 and 0 < len(tup.valid_views) < len(tup.cameras)
            cam = tup.cameras[tup.valid_views[0]]
            assert ds.read_image(tup, cam.view).shape == (cam.height, cam.width, 3)
            scale, rt = ds.alignment(subject, tup.expression_index)
            assert scale > 0 and rt.shape == (3, 4)


def test_alignment_maps_the_scan_onto_the_registered_mesh(standin_settings):
    """v_TU = R (s v_mv) + t brings the multi-view scan onto the TU mesh (distance << 1 mm)."""
    import open3d as o3d

    ds = FaceScapeDataset(standin_settings.facescape_root, standin_settings.facescape_rt_scale_dict)
    tup = ds.tuple("2", "2_smile")
    scale, rt = ds.alignment("2", tup.expression_index)
    scan_tu = (scale * ds.read_scan(tup).vertices) @ rt[:, :3].T + rt[:, 3]
    reg = ds.read_registered_mesh(tup)
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(reg.vertices.astype(np.float32)), o3d.core.Tensor(reg.faces.astype(np.uint32)))
    dist = scene.compute_distance(o3d.core.Tensor(scan_tu.astype(np.float32))).numpy()
    assert np.median(dist) < 0.5 and np.percentile(dist, 95) < 1.5  # mm: scan noise 0.15 mm + chordal error


def test_cameras_see_the_registered_mesh(standin_settings):
    """Every valid camera, moved to the TU frame, projects the registered mesh inside its image."""
    import cv2

    ds = FaceScapeDataset(standin_settings.facescape_root, standin_settings.facescape_rt_scale_dict)
    tup = ds.tuple("1", "1_neutral")
    scale, rt = ds.alignment("1", tup.expression_index)
    verts_tu = ds.read_registered_mesh(tup).vertices
    verts_mv = (verts_tu - rt[:, 3]) @ rt[:, :3] / scale
    for view in tup.valid_views:
        cam = tup.cameras[view]
        pix, _ = cv2.projectPoints(verts_mv, cv2.Rodrigues(cam.Rt[:, :3])[0], cam.Rt[:, 3], cam.K, cam.distortion)
        pix = pix.reshape(-1, 2)
        inside = (pix[:, 0] >= 0) & (pix[:, 0] < cam.width) & (pix[:, 1] >= 0) & (pix[:, 1] < cam.height)
        assert inside.mean() > 0.99, view


def test_thuman_standin_validates(standin_settings):
    ds = THumanDataset(standin_settings.thuman_root, standin_settings.thuman_smplx_fits)
    uids = ds.subjects()
    assert len(uids) >= 4 and any(int(u) < 526 for u in uids) and any(int(u) >= 526 for u in uids)
    for uid in uids:
        scan = ds.read_scan(uid)
        assert scan.up_axis == ("z" if int(uid) >= 526 else "y")
        assert scan.texture.ndim == 3 and scan.mesh.uv is not None
        v = scan.vertices_y_up()
        assert np.ptp(v[:, 1]) > np.ptp(v[:, 0]) * 0.8  # standing: y is the long axis once converted
        fit = ds.read_fit(uid)
        assert 0.16 <= fit.scale <= 0.83 and fit.left_hand_pose.shape == (12,)


def test_fit_pickle_keeps_the_release_layout(standin_settings):
    raw = (standin_settings.thuman_smplx_fits / "0003" / "smplx_param.pkl").read_bytes()
    assert raw[:2] == b"\x80\x03" and b"trimesh.caching\nTrackedArray" in raw and b"numpy.core.multiarray" in raw


# --- error cases ------------------------------------------------------------------------------------------------

def test_corrupt_jpeg_is_named(broken_copy):
    img = broken_copy / "facescape" / "1" / "1_neutral" / "7.jpg"
    img.write_bytes(img.read_bytes()[:400])
    ds = FaceScapeDataset(broken_copy / "facescape")
    tup = ds.tuple("1", "1_neutral")
    with pytest.raises(CorruptFileError, match=r"7\.jpg.*cannot decode image"):
        ds.read_image(tup, 7)


def test_missing_params_json(broken_copy):
    (broken_copy / "facescape" / "2" / "2_smile" / "params.json").unlink()
    with pytest.raises(MissingFileError, match=r"2_smile/params\.json.*not found"):
        FaceScapeDataset(broken_copy / "facescape").tuple("2", "2_smile")


@pytest.mark.parametrize("field,value,message", [
    ("3_K", [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], r"'3_K' has shape \(4, 4\)"),
    ("3_Rt", [[1, 0, 0], [0, 1, 0], [0, 0, 1]], r"'3_Rt' has shape \(3, 3\)"),
    ("3_distortion", [0.1, 0.2], r"'3_distortion' has shape"),
    ("3_K", [[float("nan"), 0, 1], [0, 1, 1], [0, 0, 1]], "NaN"),
    ("3_Rt", [[2, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]], "not a proper rotation"),
    ("3_width", -5, "positive integers"),
])
def test_bad_camera_content(broken_copy, field, value, message):
    path = broken_copy / "facescape" / "3" / "1_neutral" / "params.json"
    params = json.loads(path.read_text())
    params[field] = value
    path.write_text(json.dumps(params).replace("NaN", "NaN"))
    with pytest.raises(InvalidContentError, match=message):
        parse_params(path)


def test_broken_json(broken_copy):
    path = broken_copy / "facescape" / "3" / "1_neutral" / "params.json"
    path.write_text(path.read_text()[:100])
    with pytest.raises(CorruptFileError, match="not valid JSON"):
        parse_params(path)


def test_nan_vertices(broken_copy):
    obj = broken_copy / "facescape" / "1" / "models_reg" / "2_smile.obj"
    lines = obj.read_text().splitlines()
    i = next(k for k, line in enumerate(lines) if line.startswith("v "))
    lines[i] = "v nan 0.0 1.0"
    obj.write_text("\n".join(lines))
    with pytest.raises(InvalidContentError, match=r"2_smile\.obj.*NaN"):
        read_obj(obj)


@pytest.mark.parametrize("key", ["../etc", "1/../2", "..", "", "a b", "x" * 70])
def test_traversal_and_malformed_ids(standin_settings, key):
    with pytest.raises(InvalidIdError):
        FaceScapeDataset(standin_settings.facescape_root).subject_dir(key)
    with pytest.raises(InvalidIdError):
        THumanDataset(standin_settings.thuman_root).scan_path(key)


def test_unknown_subject(standin_settings):
    with pytest.raises(MissingFileError, match="subject '999' not found"):
        FaceScapeDataset(standin_settings.facescape_root).tuple("999", "1_neutral")
    with pytest.raises(MissingFileError, match="scan '9999' not found"):
        THumanDataset(standin_settings.thuman_root).read_scan("9999")


def test_bad_fit_files(broken_copy, tmp_path):
    fit = broken_copy / "thuman" / "smplx" / "0003" / "smplx_param.pkl"
    good = load_pickle(fit)
    bad = dict(good)
    del bad["betas"]
    (tmp_path / "a.pkl").write_bytes(pickle.dumps(bad))
    with pytest.raises(InvalidContentError, match="missing keys"):
        read_smplx_fit(tmp_path / "a.pkl")
    bad = dict(good, body_pose=np.full((1, 63), np.nan, np.float32))
    (tmp_path / "b.pkl").write_bytes(pickle.dumps(bad))
    with pytest.raises(InvalidContentError, match="'body_pose' contains NaN"):
        read_smplx_fit(tmp_path / "b.pkl")
    (tmp_path / "c.pkl").write_bytes(b"cos\nsystem\n(S'echo x'\ntR.")
    with pytest.raises(UnsafePickleError, match="c.pkl: refusing to load global os.system"):
        read_smplx_fit(tmp_path / "c.pkl")


def test_one_bad_subject_does_not_hide_the_others(broken_copy):
    from pipelines.ingest import validate_dataset

    (broken_copy / "facescape" / "3" / "6_jaw_right" / "params.json").unlink()
    reports = {r.subject: r for r in validate_dataset(settings_for(broken_copy), "facescape")}
    assert not reports["3"].ok and "params.json" in reports["3"].error
    assert all(r.ok for s, r in reports.items() if s != "3")


def test_raw_data_version_follows_content_not_size_or_mtime(broken_copy, tmp_path):
    """A scan rewritten at the same size is a change; a touch is not; the hash cache is shared across processes."""
    import os

    from pipelines.ingest import subject_data_version
    from storage.hashing import ContentHashCache, content_version

    settings = settings_for(broken_copy, tmp_path / "data")
    before = subject_data_version(settings, "thuman", "0526")
    scan = broken_copy / "thuman" / "model" / "0526" / "0526.obj"
    text = scan.read_text()
    i = text.index("\nv ") + 3
    digit = next(j for j in range(i, i + 40) if text[j].isdigit())
    flipped = text[:digit] + ("1" if text[digit] != "1" else "2") + text[digit + 1:]
    scan.write_text(flipped)
    assert scan.stat().st_size == len(text.encode())  # same size: a (path, size) version would not see it
    changed = subject_data_version(settings, "thuman", "0526")
    assert changed != before
    os.utime(scan, ns=(1, 1))  # touched: re-read, same content, same version
    assert subject_data_version(settings, "thuman", "0526") == changed
    assert subject_data_version(settings, "thuman", "1024") != changed

    cache_file = tmp_path / "hashes.json"
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(b"x" * 10)
    b.write_bytes(b"y" * 10)
    first, second = ContentHashCache(cache_file), ContentHashCache(cache_file)
    content_version([("a", a)], first)
    content_version([("b", b)], second)  # a second cache object saved after the first: both entries kept
    assert len(json.loads(cache_file.read_text())) == 2
    cache_file.write_text("{not json")  # a broken cache is rebuilt, never trusted
    assert content_version([("a", a)], ContentHashCache(cache_file)) == content_version([("a", a)])
