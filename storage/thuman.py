"""THuman 2.0 / 2.1 scans and their released SMPL-X fits.

    <scans>/<uid>/<uid>.obj + material0.mtl + material0.jpeg      textured scan (per-scan units)
    <fits>/<uid>/smplx_param.pkl (+ mesh_smplx.obj)                SMPL-X fit: scan = smplx(params) * scale + translation

uids 0000-0525 are y-up; 0526 and above are z-up (consumers take verts[:, [1, 2, 0]] to get y-up). The fit pickles
store `scale` and `translation` as `trimesh.caching.TrackedArray`; they are read through the allow-listed reader
(storage.safe_pickle: no trimesh import, no code from the file) and returned as plain arrays.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from storage.errors import InvalidContentError, MissingFileError
from storage.hashing import list_files
from storage.ids import validate_subject_id
from storage.images import read_rgb
from storage.mesh_cache import MeshCache
from storage.meshes import Mesh, read_obj
from storage.safe_pickle import load_pickle

Z_UP_FROM_UID = 526
FIT_KEYS = {"betas": 10, "global_orient": 3, "body_pose": 63, "left_hand_pose": None, "right_hand_pose": None,
            "jaw_pose": 3, "leye_pose": 3, "reye_pose": 3, "expression": 10}


@dataclass(frozen=True)
class SmplxFit:
    """One released THuman SMPL-X fit; hand poses are PCA coefficients (12) or full axis-angle (45)."""

    betas: np.ndarray
    global_orient: np.ndarray
    body_pose: np.ndarray
    left_hand_pose: np.ndarray
    right_hand_pose: np.ndarray
    jaw_pose: np.ndarray
    leye_pose: np.ndarray
    reye_pose: np.ndarray
    expression: np.ndarray
    scale: float
    translation: np.ndarray  # (3,)

    def as_smplx_kwargs(self) -> dict[str, np.ndarray]:
        """Keyword arguments for an SMPL-X forward pass (batch of one), without scale and translation."""
        return {k: getattr(self, k)[None].astype(np.float32) for k in FIT_KEYS}


@dataclass(frozen=True)
class THumanScan:
    uid: str
    mesh: Mesh
    texture: np.ndarray  # (H, W, 3) uint8
    up_axis: str  # "y" for uid < 0526, "z" from 0526 on

    def vertices_y_up(self) -> np.ndarray:
        """Vertices in the y-up convention of the 2.0 scans and of the SMPL-X fits."""
        v = self.mesh.vertices
        return v[:, [1, 2, 0]] if self.up_axis == "z" else v


def up_axis_of(uid: str) -> str:
    return "z" if int(uid) >= Z_UP_FROM_UID else "y"


def read_smplx_fit(path: str | Path) -> SmplxFit:
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(path, "SMPL-X fit not found",
                               "download the THuman SMPL-X fits and set thuman_smplx_fits to their folder")
    data = load_pickle(path, "a THuman SMPL-X fit pickle", "re-extract smplx_param.pkl")
    if not isinstance(data, dict):
        raise InvalidContentError(path, "expected a dict of parameters", "re-extract smplx_param.pkl")
    missing = [k for k in list(FIT_KEYS) + ["scale", "translation"] if k not in data]
    if missing:
        raise InvalidContentError(path, f"missing keys {missing}", "use the released smplx_param.pkl")
    vals: dict[str, Any] = {}
    for key, width in FIT_KEYS.items():
        arr = np.asarray(data[key], dtype=np.float64).reshape(-1)
        if width is not None and arr.shape != (width,):
            raise InvalidContentError(path, f"{key!r} has {arr.size} values, expected {width}",
                                      "use the released smplx_param.pkl")
        if width is None and arr.size not in (12, 45):
            raise InvalidContentError(path, f"{key!r} has {arr.size} values, expected 12 (PCA) or 45",
                                      "use the released smplx_param.pkl")
        vals[key] = arr
    scale = np.asarray(data["scale"], dtype=np.float64).reshape(-1)
    transl = np.asarray(data["translation"], dtype=np.float64).reshape(-1)
    if scale.size < 1 or transl.shape != (3,):
        raise InvalidContentError(path, "scale must hold one value and translation three",
                                  "use the released smplx_param.pkl")
    for key, arr in list(vals.items()) + [("scale", scale), ("translation", transl)]:
        if not np.all(np.isfinite(arr)):
            raise InvalidContentError(path, f"{key!r} contains NaN or infinite values", "re-extract the fit")
    if scale[0] <= 0:
        raise InvalidContentError(path, f"scale must be positive, got {scale[0]}", "re-extract the fit")
    return SmplxFit(**vals, scale=float(scale[0]), translation=transl)


def _texture_of(obj_path: Path, mesh: Mesh) -> Path:
    mtl = obj_path.parent / (mesh.material_file or "material0.mtl")
    if not mtl.is_file():
        raise MissingFileError(mtl, "material file not found", "restore material0.mtl next to the scan")
    for line in mtl.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.strip().startswith("map_Kd"):
            tex = obj_path.parent / line.split(None, 1)[1].strip()
            if not tex.is_file():
                raise MissingFileError(tex, "texture image named by the material file not found",
                                       "restore material0.jpeg next to the scan")
            return tex
    raise InvalidContentError(mtl, "no map_Kd texture line", "restore the released material0.mtl")


SAME_PERSON_FILE = "same_person.json"


class THumanDataset:
    def __init__(self, root: str | Path, fits_root: str | Path | None = None, mesh_cache: MeshCache | None = None
                 ) -> None:
        """`mesh_cache`: decoded scans kept by content hash (storage.mesh_cache), shared by every stage."""
        self.root = Path(root)
        self.fits_root = Path(fits_root) if fits_root else None
        self.mesh_cache = mesh_cache
        if not self.root.is_dir():
            raise MissingFileError(self.root, "THuman scan folder not found",
                                   "set thuman_root in morphable.toml (or MORPHABLE_THUMAN_ROOT)")

    def subjects(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and p.name.isdigit())

    def same_person(self) -> dict[str, str]:
        """{scan uid: uid of another scan of the same person} from `<root>/same_person.json` (optional; THuman's
        release names no persons, the stand-in writes one for its held-out scans' other poses): what the novel-pose
        protocol pairs. A malformed file is an error naming it."""
        path = self.root / SAME_PERSON_FILE
        if not path.is_file():
            return {}
        from storage.jsonfile import read_json

        doc = read_json(path, "the same-person table", f"write {{\"<scan uid>\": \"<uid of the same person>\"}}")
        if not isinstance(doc, dict) or not all(isinstance(k, str) and isinstance(v, str) and k.isdigit()
                                                and v.isdigit() and k != v for k, v in doc.items()):
            raise InvalidContentError(path, "not a table of scan uid -> another scan uid of the same person",
                                      'write {"2301": "2201", ...} (digits only, a scan never its own person)')
        return dict(doc)

    def scan_path(self, uid: str) -> Path:
        uid = validate_subject_id(str(uid))
        path = self.root / uid / f"{uid}.obj"
        if not path.is_file():
            raise MissingFileError(path, f"THuman scan {uid!r} not found", f"choose one of {self.subjects()[:10]}")
        return path

    def read_scan(self, uid: str) -> THumanScan:
        path = self.scan_path(uid)
        mesh = self.mesh_cache.read_obj(path) if self.mesh_cache is not None else read_obj(path)
        if mesh.uv is None:
            raise InvalidContentError(path, "scan has no texture coordinates (vt)", "re-extract the scan")
        return THumanScan(str(uid), mesh, read_rgb(_texture_of(path, mesh)), up_axis_of(uid))

    def fit_path(self, uid: str) -> Path:
        if self.fits_root is None:
            raise MissingFileError(None, "no SMPL-X fit folder configured", "set thuman_smplx_fits")
        return self.fits_root / validate_subject_id(str(uid)) / "smplx_param.pkl"

    def read_fit(self, uid: str) -> SmplxFit:
        return read_smplx_fit(self.fit_path(uid))

    def read_fit_mesh(self, uid: str) -> Mesh:
        """The released `mesh_smplx.obj` (THuman 2.1), in the scan's frame."""
        return read_obj(self.fit_path(uid).parent / "mesh_smplx.obj")

    def file_list(self, uid: str) -> list[tuple[str, str]]:
        """(relative path, path) of every file of a scan and its fit, sorted: the basis of its raw data version."""
        uid = validate_subject_id(str(uid))
        out = list_files(self.root / uid, f"{uid}/")
        if self.fits_root is not None and (self.fits_root / uid).is_dir():
            out += list_files(self.fits_root / uid, f"fits/{uid}/")
        return sorted(out)
