"""Stage `views`: training views per subject, from raw data and tracked meshes, into the zarr view store.

FaceScape (per expression): valid views with |azimuth| <= 90 deg; the silhouette of the aligned scan in the
undistorted view by ray casting, only where the crop and the resize read it; the released square crop of the
undistorted image (only the crop undistorted); resize to 256 (area / nearest); K updated; per-view colour calibration
(rejected views are dropped). The same bytes as undistorting, casting and resizing whole images. THuman: 16 fixed orthographic target views + N random-elevation input views of the textured scan.
Both: the tracked mesh of each item in the model frame, voxelised for the sparse conditioning.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from model import frames
from model.geometry.voxels import voxelize
from pipelines import catalog
from pipelines.catalog import TopologySpec
from pipelines.settings import Settings
from storage.tracks import read_track
from storage.thuman import THumanDataset
from storage.views import ItemGeometry, ViewSet, write_views

RENDER_VERSION = "views-5"  # 3: store format 4 (manifest lists every file); 4: one store per topology;
# 5: the colour calibration's robust fit solved exactly (model/render/huber.py), calibrated views change
IMAGE_SIZE = 256
MAX_ABS_AZIMUTH = 90.0
THUMAN_INPUT_VIEWS = 16
THUMAN_INPUT_MAX_ELEVATION = 20.0


@dataclass
class ViewsOutcome:
    path: object
    n_views: int
    seconds: float
    per_view_seconds: float
    rejected: dict[str, list[int]]
    track_data_version: str


def _white_background(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Pixels outside the mask become white: training composites onto white anyway (spec §2.2), the studio
    background is never used, and uniform pixels cost nothing in the store."""
    return np.where(mask[..., None] > 0, rgb, np.uint8(255)).astype(np.uint8)


def _geometry(vertices: np.ndarray) -> ItemGeometry:
    vox = voxelize(vertices)
    return ItemGeometry(vertices.astype(np.float32), vox.coord, vox.out_sh, vox.bounds)


def _k4(k3: np.ndarray) -> np.ndarray:
    k = np.eye(4)
    k[:3, :3] = k3
    return k


def facescape_expression_views(ds, subject: str, expression: str, size: int = IMAGE_SIZE) -> dict:
    """Crops, masks, cameras (model frame) and calibration of one expression; rejected views left out."""
    from model.parallel import ordered_map
    from model.render.color_calibration import calibrate_views
    from model.render.crops import resize_rgb, undistorted_crop
    from model.render.raycast import MeshRaycaster
    from model.render.silhouette import crop_silhouette

    tup = ds.tuple(subject, expression)
    scale, align = ds.alignment(subject, tup.expression_index)
    scan = ds.read_scan(tup)
    scan_model = frames.sfm_to_model_points(scan.vertices, scale, align)
    caster = MeshRaycaster(scan_model, scan.faces)  # one BVH for the expression's views

    def one_view(view: int) -> dict | None:  # a view's crop, mask, cameras and depth; None when it is left out
        cam = tup.cameras[view]
        rt = frames.sfm_to_model_extrinsics(cam.Rt, scale, align)
        az, el = frames.camera_angles_model(rt)
        if abs(float(az)) > MAX_ABS_AZIMUTH:
            return None
        centre_x = float((-rt[:, :3].T @ rt[:, 3])[0])  # camera centre x: which silhouette edge anchors the crop
        # the silhouette of the undistorted view, cast only where the crop and the resize read it
        crop = crop_silhouette(caster, cam.K, rt, cam.width, cam.height, centre_x, size)
        if crop is None:
            return None
        image = undistorted_crop(ds.read_image(tup, view), cam.K, cam.distortion, crop.top, crop.left, crop.size)
        rgb, k = resize_rgb(image, cam.K, crop.top, crop.left, crop.size, size)
        depth = caster.cast(k, rt, size, size).depth
        return {"rgb": rgb, "mask": crop.mask * 255, "K": _k4(k), "RT": rt, "angles": np.asarray([az, el]),
                "view_id": np.asarray(view), "depth": depth}

    # the views side by side on the process's cores (decode, undistortion, resize and casts release the GIL;
    # each view is computed alone, so the bytes do not depend on the thread count)
    views = [v for v in ordered_map(one_view, tup.valid_views) if v is not None]
    kept = {key: [v[key] for v in views] for key in ("rgb", "mask", "K", "RT", "angles", "view_id", "depth")}
    cal = calibrate_views(kept["rgb"], kept["depth"], [k[:3, :3] for k in kept["K"]], kept["RT"], scan_model,
                          frames.FACE_SCALE)
    keep = [i for i, img in enumerate(cal.images) if img is not None]
    out = {key: np.stack([kept[key][i] for i in keep]) for key in ("mask", "K", "RT", "angles", "view_id")}
    out["rgb"] = np.stack([cal.images[i] for i in keep])  # still with the studio background, as the release keeps
    out["rejected"] = [int(kept["view_id"][i]) for i in range(len(cal.images)) if cal.images[i] is None]
    out["calibrated"] = [int(kept["view_id"][i]) for i in range(len(cal.images)) if cal.applied[i]]
    out["l1"] = {int(kept["view_id"][i]): (float(cal.l1_before[i]), float(cal.l1_after[i]))
                 for i in range(len(cal.images))}
    return out


def facescape_views(settings: Settings, subject: str, topology: TopologySpec) -> ViewsOutcome:
    """Every expression's views, conditioned on `topology`'s tracked meshes."""
    from storage.facescape import FaceScapeDataset

    t0 = time.perf_counter()
    track = read_track(settings.storage_root, "facescape", subject, topology.tracker_version)
    ds = FaceScapeDataset(settings.facescape_root, settings.facescape_rt_scale_dict)
    parts, items, rejected = [], {}, {}
    for i, expr in enumerate(ds.expressions(subject)):
        v = facescape_expression_views(ds, subject, expr)
        v["item"] = np.full(len(v["view_id"]), i)
        parts.append(v)
        items[expr] = _geometry(track.vertices[expr])
        rejected[expr] = v["rejected"]
    cat = {k: np.concatenate([p[k] for p in parts]) for k in ("rgb", "mask", "K", "RT", "angles", "view_id", "item")}
    cat["rgb"] = _white_background(cat["rgb"], cat["mask"])
    views = ViewSet(**cat, role=np.zeros(len(cat["item"]), np.int8), items=items, attrs={
        "projection": catalog.dataset("facescape").projection, "tracker_version": track.tracker_version,
        "track_data_version": track.data_version, "render_version": RENDER_VERSION, "rejected_views": rejected})
    path = write_views(settings.storage_root, "facescape", topology.name, subject, views)
    seconds = time.perf_counter() - t0
    n_raw = sum(len(p["view_id"]) + len(p["rejected"]) for p in parts)
    return ViewsOutcome(path, len(cat["item"]), seconds, seconds / max(n_raw, 1), rejected, track.data_version)


def thuman_views(settings: Settings, uid: str, topology: TopologySpec, n_input: int = THUMAN_INPUT_VIEWS,
                 seed: int = 0) -> ViewsOutcome:
    from model.render.orthographic import ortho_projection, orbit_extrinsics, render_textured_ortho_views, target_cameras
    t0 = time.perf_counter()
    track = read_track(settings.storage_root, "thuman", uid, topology.tracker_version)
    norm = track.params["scan"]["normalization"]
    s, centre = float(norm[0]), -np.asarray(norm[1:], np.float64)
    dataset = catalog.dataset("thuman").open(settings)
    scan = dataset.read_scan(uid)
    verts = frames.thuman_file_to_model_points(scan.mesh.vertices, uid, s, centre)
    az_t, el_t, rt_t = target_cameras()
    rng = np.random.default_rng([seed, int(uid)])
    az_i = np.arange(n_input) * 2 * np.pi / max(n_input, 1)
    el_i = np.deg2rad(rng.uniform(-THUMAN_INPUT_MAX_ELEVATION, THUMAN_INPUT_MAX_ELEVATION, n_input))
    rt_all = np.concatenate([rt_t, orbit_extrinsics(az_i, el_i)]) if n_input else rt_t
    az_all, el_all = np.concatenate([az_t, az_i]), np.concatenate([el_t, el_i])
    rgbs, hits = render_textured_ortho_views(verts, scan.mesh.faces, scan.mesh.uv, scan.mesh.uv_faces, scan.texture,
                                             rt_all)
    masks = [hit.astype(np.uint8) * 255 for hit in hits]
    n = len(rt_all)
    views = ViewSet(rgb=_white_background(np.stack(rgbs), np.stack(masks)), mask=np.stack(masks), K=np.repeat(ortho_projection()[None], n, 0), RT=rt_all,
                    angles=np.degrees(np.stack([az_all, el_all], -1)), view_id=np.arange(n), item=np.zeros(n),
                    role=np.r_[np.zeros(len(rt_t)), np.ones(n_input)].astype(np.int8),
                    items={"scan": _geometry(track.vertices["scan"])},
                    attrs={"projection": catalog.dataset("thuman").projection, "tracker_version": track.tracker_version,
                           "track_data_version": track.data_version, "render_version": RENDER_VERSION,
                           **_same_person(dataset, uid)})
    path = write_views(settings.storage_root, "thuman", topology.name, uid, views)
    seconds = time.perf_counter() - t0
    return ViewsOutcome(path, n, seconds, seconds / n, {}, track.data_version)


def _same_person(dataset: THumanDataset, uid: str) -> dict[str, str]:
    """{"same_person_as": uid} where the dataset's same-person table pairs this scan with another scan of its
    person (the novel-pose protocol's input), else nothing (so other stores keep their content hash)."""
    other = dataset.same_person().get(str(uid))
    return {"same_person_as": other} if other else {}


def views(settings: Settings, dataset: str, subject: str, topology: str | None = None) -> ViewsOutcome:
    """Render one subject's view store for a topology of the catalog (None: the dataset's default)."""
    return catalog.dataset(dataset).views(settings, subject, topology)
