"""Stage `ingest`: discover raw subjects and validate them (and the body-model files) through the readers.

Every reader error is a `storage.errors.DataError` naming the file; `validate_dataset` collects them per subject so
one bad subject is reported without hiding the others.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipelines import catalog
from pipelines.settings import Settings
from storage.errors import DataError
from storage.facescape import FaceScapeDataset
from storage.hashing import content_version, store_hash_cache
from storage.thuman import THumanDataset

Dataset = str  # a name of the catalog (pipelines.catalog.DATASET_NAMES)


@dataclass
class SubjectReport:
    dataset: str
    subject: str
    data_version: str  # hash of the subject's files (relative path + content sha256)
    n_files: int
    details: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def open_facescape(settings: Settings) -> FaceScapeDataset:
    return FaceScapeDataset(settings.facescape_root, settings.facescape_rt_scale_dict)


def open_thuman(settings: Settings) -> THumanDataset:
    """The THuman reader, its decoded scans cached under <storage>/cache/meshes (parsed once per file content)."""
    from storage.mesh_cache import MeshCache

    cache = MeshCache(Path(settings.storage_root) / "cache" / "meshes")
    return THumanDataset(settings.thuman_root, settings.thuman_smplx_fits, mesh_cache=cache)


def open_dataset(settings: Settings, dataset: Dataset):
    """The reader of a catalog dataset."""
    return catalog.dataset(dataset).open(settings)


def discover_subjects(settings: Settings, dataset: Dataset) -> list[str]:
    return open_dataset(settings, dataset).subjects()


def subject_data_versions(settings: Settings, dataset: Dataset, subjects: list[str]) -> dict[str, str]:
    """{subject: content hash of every file of the subject} (a same-size rewrite is a change, a copy or touch is
    not); a subject whose folder cannot be listed is "unreadable". One hash cache read and written for them all."""
    try:
        ds = open_dataset(settings, dataset)
    except DataError:  # the dataset root is gone: every subject of it is unreadable
        return {subject: "unreadable" for subject in subjects}
    cache = store_hash_cache(settings.storage_root)
    out = {}
    for subject in subjects:
        try:
            out[subject] = content_version(ds.file_list(subject), cache, save=False)
        except DataError:
            out[subject] = "unreadable"
    cache.save()
    return out


def subject_data_version(settings: Settings, dataset: Dataset, subject: str) -> str:
    return subject_data_versions(settings, dataset, [subject])[subject]


def facescape_details(ds: FaceScapeDataset, subject: str, decode: bool) -> dict[str, Any]:
    expressions = {}
    for expr in ds.expressions(subject):
        tup = ds.tuple(subject, expr)
        scan = ds.read_scan(tup)
        reg = ds.read_registered_mesh(tup) if tup.registered_mesh else None
        if ds.rt_scale_dict_path is not None:
            ds.alignment(subject, tup.expression_index)
        if decode:
            for view in tup.valid_views:
                ds.read_image(tup, view)
        expressions[expr] = {"views": len(tup.cameras), "valid_views": len(tup.valid_views),
                             "scan_vertices": len(scan.vertices),
                             "registered_vertices": len(reg.vertices) if reg is not None else 0}
    return {"expressions": expressions, "n_expressions": len(expressions),
            "n_valid_views": sum(e["valid_views"] for e in expressions.values())}


def thuman_details(ds: THumanDataset, uid: str, decode: bool = False) -> dict[str, Any]:
    scan = ds.read_scan(uid)
    out: dict[str, Any] = {"scan_vertices": len(scan.mesh.vertices), "texture": list(scan.texture.shape[:2]),
                           "up_axis": scan.up_axis}
    if ds.fits_root is not None:
        fit = ds.read_fit(uid)
        out.update(fit_scale=fit.scale, hand_pose_dims=int(fit.left_hand_pose.size))
    return out


def validate_subject(settings: Settings, dataset: Dataset, subject: str, decode_images: bool = False) -> SubjectReport:
    """Open every file of a subject through the readers; a problem is recorded as the report's error."""
    ds = open_dataset(settings, dataset)
    try:
        files = ds.file_list(subject)
        version = content_version(files, store_hash_cache(settings.storage_root))
        report = SubjectReport(dataset, subject, version, len(files))
    except DataError as exc:
        return SubjectReport(dataset, subject, "", 0, error=str(exc))
    try:
        report.details = catalog.dataset(dataset).subject_details(ds, subject, decode_images)
    except DataError as exc:
        report.error = str(exc)
    return report


def validate_dataset(settings: Settings, dataset: Dataset, subjects: list[str] | None = None,
                     decode_images: bool = False) -> list[SubjectReport]:
    subjects = subjects if subjects is not None else discover_subjects(settings, dataset)
    return [validate_subject(settings, dataset, s, decode_images) for s in subjects]


def validate_body_models(settings: Settings) -> dict[str, dict[str, Any]]:
    """Load FLAME, SMPL-X and the bilinear model through the loaders and run one forward pass each."""
    import torch

    from model.bodies.bilinear import load_bilinear_model
    from model.bodies.flame import load_flame_landmarks, load_flame_model
    from model.bodies.flame_layer import build_flame_layer
    from model.bodies.smplx_body import load_smplx

    flame = load_flame_model(settings.flame_model_dir)
    lmk = load_flame_landmarks(settings.flame_model_dir)
    with torch.no_grad():
        out = build_flame_layer(flame, lmk)(expression=torch.zeros(1, 10))
        smplx_out = load_smplx(settings.smplx_model_dir)()
    bilinear = load_bilinear_model(settings.facescape_bilinear_model)
    exp = np.zeros(52)
    exp[0] = 1.0
    bl_vertices = bilinear.vertices(bilinear.id_mean, exp)
    return {
        "flame": {"vertices": flame.num_vertices, "faces": int(len(flame.faces)), "n_shape": flame.n_shape,
                  "n_expression": flame.n_expression, "landmarks": int(out.landmarks.shape[1]),
                  "finite": bool(torch.isfinite(out.vertices).all())},
        "smplx": {"vertices": int(smplx_out.vertices.shape[1]), "joints": int(smplx_out.joints.shape[1]),
                  "finite": bool(torch.isfinite(smplx_out.vertices).all())},
        "bilinear": {"vertices": bilinear.num_vertices, "identity_dims": int(bilinear.core.shape[2]),
                     "finite": bool(np.isfinite(bl_vertices).all())},
    }
