"""Stage `track`: body-model meshes per subject in the model frame, written to the track store.

The track functions of the catalog's topologies (pipelines/catalog.py names them, with their tracker versions):
FLAME fitted to FaceScape's registered TU meshes, the TU meshes themselves (bilinear), THuman's released SMPL-X fit.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from model import frames
from model.tracking.flame_fit import FitTarget, FlameFitConfig, fit_flame
from pipelines import catalog
from pipelines.settings import Settings
from storage.errors import InvalidContentError, MissingFileError
from storage.facescape import FaceScapeDataset
from storage.hashing import hash_json
from storage.tracks import TrackRecord, write_track

log = logging.getLogger(__name__)



@dataclass
class TrackOutcome:
    record: TrackRecord
    seconds: float


def _landmark_indices(settings: Settings, n_vertices: int) -> np.ndarray:
    path = settings.facescape_landmark_indices
    if not path.is_file():
        raise MissingFileError(path, "FaceScape landmark_indices.npz not found",
                               "copy toolkit/predef/landmark_indices.npz and set facescape_landmark_indices")
    with np.load(path) as z:
        idx = z["v10"].astype(np.int64)
    if idx.shape != (68,) or idx.max() >= n_vertices:
        raise InvalidContentError(path, f"v10 landmark indices do not fit a {n_vertices}-vertex TU mesh",
                                  "use the toolkit file that matches the registered meshes (v1.0 topology)")
    return idx


def tu_vertex_count(settings: Settings) -> int:
    """The TU (models_reg) topology's vertex count: the length of the toolkit's `predef/sym_dict_old.npy` (its
    left/right vertex map; 26,317 for FaceScape), found beside `landmark_indices.npz`."""
    from storage.safe_pickle import load_npy

    path = settings.facescape_landmark_indices.parent / "sym_dict_old.npy"
    fix = "copy toolkit/predef/sym_dict_old.npy from the FaceScape toolkit beside landmark_indices.npz"
    sym = load_npy(path, "the TU topology's symmetry map (it defines the registered meshes' vertex count)", fix)
    if not isinstance(sym, np.ndarray) or sym.ndim != 1 or not len(sym):
        raise InvalidContentError(path, "expected a 1-D vertex index array", fix)
    return len(sym)


def read_registered_meshes(settings: Settings, ds: FaceScapeDataset, subject: str) -> dict:
    """Every expression's registered TU mesh, refused by name unless it has the TU topology (the toolkit's vertex
    count, the same faces in every expression): a mesh of another topology would otherwise be tracked and rendered
    without a word."""
    expected = tu_vertex_count(settings)
    meshes, faces = {}, None
    for e in ds.expressions(subject):
        tup = ds.tuple(subject, e)
        mesh = ds.read_registered_mesh(tup)
        if len(mesh.vertices) != expected:
            raise InvalidContentError(tup.registered_mesh, f"registered mesh has {len(mesh.vertices)} vertices; the "
                                                           f"TU topology (toolkit sym_dict_old.npy) has {expected}",
                                      "use the models_reg mesh of this FaceScape release (same topology as the "
                                      "bilinear model)")
        if faces is not None and not np.array_equal(mesh.faces, faces):
            raise InvalidContentError(tup.registered_mesh, "its faces differ from the subject's other expressions",
                                      "every registered mesh must share the TU topology; re-extract models_reg")
        faces = mesh.faces
        meshes[e] = mesh
    return meshes


def _registration_errors(ds: FaceScapeDataset, subject: str, meshes: dict) -> dict[str, dict[str, float]]:
    """Per expression: distance (mm) from the registered mesh's vertices to its raw scan (TU frame): how well the
    registered mesh follows the captured surface."""
    from model.tracking.geometry import surface_error_mm

    out = {}
    for e, mesh in meshes.items():
        tup = ds.tuple(subject, e)
        scale, align = ds.alignment(subject, tup.expression_index)
        scan = ds.read_scan(tup)
        scan_tu = frames.sfm_to_tu_points(scan.vertices, scale, align)
        out[e] = {"vertices": len(mesh.vertices), **surface_error_mm(mesh.vertices, scan_tu, scan.faces, 1.0)}
    return out


def track_facescape_bilinear(settings: Settings, subject: str) -> TrackOutcome:
    """The registered TU meshes themselves (the bilinear model's topology), in the model frame, with their
    registration error against the raw scans."""
    t0 = time.perf_counter()
    ds = FaceScapeDataset(settings.facescape_root, settings.facescape_rt_scale_dict)
    meshes = read_registered_meshes(settings, ds, subject)
    verts = {e: frames.tu_to_model_points(m.vertices) for e, m in meshes.items()}
    params = {e: {"vertices_hash": hash_json(np.round(m.vertices, 2).tolist())} for e, m in meshes.items()}
    faces = next(iter(meshes.values())).faces
    record = TrackRecord("facescape", subject, catalog.topology("facescape", "bilinear").tracker_version, params,
                         verts, faces, _registration_errors(ds, subject, meshes))
    return TrackOutcome(write_track(settings.storage_root, record), time.perf_counter() - t0)


def track_facescape_flame(settings: Settings, subject: str, config: FlameFitConfig | None = None) -> TrackOutcome:
    """FLAME fitted to every expression's registered TU mesh (one identity, per-expression the rest)."""
    from model.bodies.flame import load_flame_landmarks, load_flame_model

    t0 = time.perf_counter()
    ds = FaceScapeDataset(settings.facescape_root, settings.facescape_rt_scale_dict)
    meshes = read_registered_meshes(settings, ds, subject)
    model = load_flame_model(settings.flame_model_dir)
    lmk = load_flame_landmarks(settings.flame_model_dir)
    targets = []
    for e, m in meshes.items():
        idx = _landmark_indices(settings, len(m.vertices))
        v = m.vertices / frames.TU_UNITS_PER_METRE
        targets.append(FitTarget(e, v, m.faces, v[idx[17:]]))
    cfg = config or FlameFitConfig()
    fit = fit_flame(model, lmk, targets, cfg)
    params: dict = {"_subject": {"shape": fit.shape}}
    params.update(fit.expressions)
    record = TrackRecord("facescape", subject, catalog.topology("facescape", "flame").tracker_version, params,
                         {e: frames.flame_to_model_points(v) for e, v in fit.vertices.items()}, model.faces,
                         {**fit.errors, "_config": cfg.as_dict()})
    return TrackOutcome(write_track(settings.storage_root, record), time.perf_counter() - t0)


def track_thuman(settings: Settings, uid: str, refine: bool = False) -> TrackOutcome:
    """SMPL-X from the released fit, in the model (Blender) frame, with the scan-to-mesh error.

    `refine` adds a rigid ICP of the SMPL-X mesh onto the scan (correspondences trimmed at 30 mm), for fits that
    are misaligned with their scans (as some THuman 2.1 fits were before their re-release).
    """
    import torch

    from model.bodies.smplx_body import load_thuman_smplx
    from model.tracking.geometry import SurfaceQuery

    t0 = time.perf_counter()
    ds = catalog.dataset("thuman").open(settings)
    fit = ds.read_fit(uid)
    scan = ds.read_scan(uid)
    model = load_thuman_smplx(settings.smplx_model_dir)
    with torch.no_grad():
        v = model(**{k: torch.tensor(x) for k, x in fit.as_smplx_kwargs().items()}).vertices[0].numpy()
    fit_file = frames.y_up_to_thuman_file(v.astype(np.float64) * fit.scale + fit.translation, uid)
    s, centre = frames.thuman_normalization(fit_file, uid, fit.scale)
    verts = frames.thuman_file_to_model_points(fit_file, uid, s, centre)
    scan_model = frames.thuman_file_to_model_points(scan.mesh.vertices, uid, s, centre)
    faces = model.faces.astype(np.int64)
    mm_per_unit = 1000.0 / frames.THUMAN_TARGET_SCALE  # model units = 0.6 x SMPL-X metres
    refinement: dict = {}
    if refine:
        from model.tracking.geometry import rigid_icp

        before = SurfaceQuery(verts, faces).distance(scan_model).mean() * mm_per_unit
        rot, t = rigid_icp(verts, SurfaceQuery(scan_model, scan.mesh.faces), trim=30.0 / mm_per_unit)
        verts = verts @ rot.T + t
        refinement = {"refine_rotation": rot, "refine_translation": t}
    dist = SurfaceQuery(verts, faces).distance(scan_model)
    metrics = {"scan": {"scan_to_mesh_mean_mm": float(dist.mean() * mm_per_unit),
                        "scan_to_mesh_p95_mm": float(np.percentile(dist, 95) * mm_per_unit),
                        "up_axis": scan.up_axis}}
    if refine:
        metrics["scan"]["before_refinement_mean_mm"] = float(before)
    params = {"scan": {**{k: getattr(fit, k) for k in ("betas", "global_orient", "body_pose", "left_hand_pose",
                                                        "right_hand_pose", "jaw_pose", "leye_pose", "reye_pose",
                                                        "expression")},
                       "fit_scale": fit.scale, "fit_translation": fit.translation,
                       "normalization": [s, *(-centre)], **refinement}}
    version = catalog.topology("thuman", "smplx_refined" if refine else "smplx").tracker_version
    record = TrackRecord("thuman", str(uid), version, params, {"scan": verts}, faces, metrics)
    return TrackOutcome(write_track(settings.storage_root, record), time.perf_counter() - t0)


def track(settings: Settings, dataset: str, subject: str, topology: str | None = None) -> TrackOutcome:
    """Track one subject with a topology of the catalog (None: the dataset's default)."""
    return catalog.topology(dataset, topology).track(settings, subject)
