"""FaceScape multi-view release, merged per subject as DINER / Morphable Diffusion expect.

    <root>/<id>/<k>_<expr>/<view>.jpg + params.json     images and per-tuple cameras (SfM frame)
    <root>/<id>/<k>_<expr>.ply                          multi-view reconstruction (SfM frame)
    <root>/<id>/models_reg/<k>_<expr>.obj (+ .jpg, .obj.mtl)   registered TU mesh (mm, y up, face +z)
    Rt_scale_dict.json (toolkit predef)                 {id: {exp_idx: [scale, Rt 3x4]}}: v_TU = R (s v_mv) + t

Every problem raises a `storage.errors.DataError` naming the file; nothing here converts frames (that is the
frame module's job): cameras and meshes are returned exactly as stored.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from storage.errors import CorruptFileError, InvalidContentError, MissingFileError
from storage.hashing import list_files
from storage.ids import parse_expression_folder, validate_subject_id
from storage.images import read_rgb
from storage.meshes import Mesh, read_obj, read_ply

FACESCAPE_EXPRESSIONS = (
    "1_neutral", "2_smile", "3_mouth_stretch", "4_anger", "5_jaw_left", "6_jaw_right", "7_jaw_forward",
    "8_mouth_left", "9_mouth_right", "10_dimpler", "11_chin_raiser", "12_lip_puckerer", "13_lip_funneler",
    "14_sadness", "15_lip_roll", "16_grin", "17_cheek_blowing", "18_eye_closed", "19_brow_raiser", "20_brow_lower")


@dataclass(frozen=True)
class FaceScapeCamera:
    view: int
    K: np.ndarray  # (3, 3) pixels
    Rt: np.ndarray  # (3, 4) world (SfM) -> camera, OpenCV
    distortion: np.ndarray  # (5,) k1 k2 p1 p2 k3
    width: int
    height: int
    valid: bool
    matches: int = 0
    serial: str = ""
    original_name: str = ""


@dataclass(frozen=True)
class FaceScapeTuple:
    """One (subject, expression) folder with its cameras and files (validated, nothing decoded)."""

    subject: str
    expression: str
    expression_index: int
    folder: Path
    cameras: dict[int, FaceScapeCamera]
    images: dict[int, Path]
    scan: Path
    registered_mesh: Path | None
    warnings: list[str] = field(default_factory=list)

    @property
    def valid_views(self) -> list[int]:
        return [v for v, c in sorted(self.cameras.items()) if c.valid and v in self.images]


def _matrix(path: Path, params: dict, key: str, shape: tuple[int, ...]) -> np.ndarray:
    try:
        arr = np.asarray(params[key], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidContentError(path, f"{key!r} is not numeric ({exc})", "re-extract params.json") from exc
    if arr.shape != shape:
        raise InvalidContentError(path, f"{key!r} has shape {arr.shape}, expected {shape}",
                                  "re-extract params.json (K is 3x3, Rt is 3x4, distortion has 5 values)")
    if not np.all(np.isfinite(arr)):
        raise InvalidContentError(path, f"{key!r} contains NaN or infinite values", "re-extract params.json")
    return arr


def parse_params(path: str | Path) -> dict[int, FaceScapeCamera]:
    """Parse and validate a params.json: 9 keys per view, views numbered 0..N-1."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(path, "camera file params.json not found",
                               "copy params.json from the multi-view archive into this expression folder")
    try:
        params = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CorruptFileError(path, f"not valid JSON ({exc})", "re-extract params.json") from exc
    if not isinstance(params, dict):
        raise InvalidContentError(path, "expected a JSON object with '<view>_<field>' keys", "re-extract params.json")
    cams: dict[int, FaceScapeCamera] = {}
    view = 0
    while f"{view}_Rt" in params:
        missing = [f for f in ("K", "Rt", "distortion", "width", "height", "valid") if f"{view}_{f}" not in params]
        if missing:
            raise InvalidContentError(path, f"view {view} lacks {missing}", "re-extract params.json")
        k = _matrix(path, params, f"{view}_K", (3, 3))
        rt = _matrix(path, params, f"{view}_Rt", (3, 4))
        dist = _matrix(path, params, f"{view}_distortion", (5,))
        rot = rt[:, :3]
        if np.abs(rot @ rot.T - np.eye(3)).max() > 1e-3 or np.linalg.det(rot) < 0:
            raise InvalidContentError(path, f"view {view}: the rotation part of Rt is not a proper rotation",
                                      "re-extract params.json")
        w, h = params[f"{view}_width"], params[f"{view}_height"]
        if not (isinstance(w, int) and isinstance(h, int) and w > 0 and h > 0):
            raise InvalidContentError(path, f"view {view}: width/height must be positive integers, got {w!r}, {h!r}",
                                      "re-extract params.json")
        if k[0, 0] <= 0 or k[1, 1] <= 0:
            raise InvalidContentError(path, f"view {view}: focal lengths must be positive", "re-extract params.json")
        cams[view] = FaceScapeCamera(view, k, rt, dist, w, h, bool(params[f"{view}_valid"]),
                                     int(params.get(f"{view}_matches", 0)), str(params.get(f"{view}_sn", "")),
                                     str(params.get(f"{view}_ori", "")))
        view += 1
    if not cams:
        raise InvalidContentError(path, "no cameras ('0_Rt' missing)", "re-extract params.json")
    return cams


def write_params(path: str | Path, cameras: list[FaceScapeCamera]) -> None:
    """Write a params.json in the release's layout (9 keys per view)."""
    out: dict[str, object] = {}
    for c in cameras:
        out.update({f"{c.view}_K": c.K.tolist(), f"{c.view}_Rt": c.Rt.tolist(),
                    f"{c.view}_distortion": c.distortion.tolist(), f"{c.view}_width": int(c.width),
                    f"{c.view}_height": int(c.height), f"{c.view}_matches": int(c.matches),
                    f"{c.view}_valid": bool(c.valid), f"{c.view}_sn": c.serial, f"{c.view}_ori": c.original_name})
    Path(path).write_text(json.dumps(out), encoding="utf-8")


class FaceScapeDataset:
    """Reader over a FaceScape multi-view root (and optionally the toolkit's Rt_scale_dict.json)."""

    def __init__(self, root: str | Path, rt_scale_dict: str | Path | None = None) -> None:
        self.root = Path(root)
        self.rt_scale_dict_path = Path(rt_scale_dict) if rt_scale_dict else None
        self._alignment: dict | None = None
        if not self.root.is_dir():
            raise MissingFileError(self.root, "FaceScape root folder not found",
                                   "set facescape_root in morphable.toml (or MORPHABLE_FACESCAPE_ROOT)")

    def subjects(self) -> list[str]:
        """Subject folders (numeric ids), in numeric order."""
        ids = [p.name for p in self.root.iterdir() if p.is_dir() and p.name.isdigit()]
        return sorted(ids, key=int)

    def subject_dir(self, subject: str) -> Path:
        d = self.root / validate_subject_id(str(subject))
        if not d.is_dir():
            raise MissingFileError(d, f"FaceScape subject {subject!r} not found",
                                   f"choose one of the subjects under {self.root}")
        return d

    def expressions(self, subject: str) -> list[str]:
        """Expression folder names present for a subject, in expression-index order."""
        d = self.subject_dir(subject)
        names = [p.name for p in d.iterdir() if p.is_dir() and p.name[:1].isdigit()]
        return sorted(names, key=lambda n: parse_expression_folder(n)[0])

    def tuple(self, subject: str, expression: str) -> FaceScapeTuple:
        """Validate one (subject, expression): params.json, an image per valid view, the scan."""
        d = self.subject_dir(subject)
        index, _ = parse_expression_folder(expression)
        folder = d / expression
        if not folder.is_dir():
            raise MissingFileError(folder, f"expression folder {expression!r} not found",
                                   f"available: {self.expressions(subject)}")
        cams = parse_params(folder / "params.json")
        images = {v: folder / f"{v}.jpg" for v in cams if (folder / f"{v}.jpg").is_file()}
        missing = [v for v, c in cams.items() if c.valid and v not in images]
        if missing:
            raise MissingFileError(folder / f"{missing[0]}.jpg",
                                   f"{len(missing)} valid view(s) have no image (views {missing[:10]})",
                                   "re-extract the images of this expression")
        scan = d / f"{expression}.ply"
        if not scan.is_file():
            raise MissingFileError(scan, "multi-view scan not found", "copy <k>_<expr>.ply from the shape archive")
        reg = d / "models_reg" / f"{expression}.obj"
        return FaceScapeTuple(str(subject), expression, index, folder, cams, images, scan,
                              reg if reg.is_file() else None)

    def read_image(self, tup: FaceScapeTuple, view: int) -> np.ndarray:
        cam = tup.cameras[view]
        return read_rgb(tup.images.get(view, tup.folder / f"{view}.jpg"), (cam.width, cam.height))

    def read_scan(self, tup: FaceScapeTuple) -> Mesh:
        return read_ply(tup.scan)

    def read_registered_mesh(self, tup: FaceScapeTuple) -> Mesh:
        if tup.registered_mesh is None:
            raise MissingFileError(self.subject_dir(tup.subject) / "models_reg" / f"{tup.expression}.obj",
                                   "registered TU mesh not found", "copy models_reg from the TU-model archive")
        return read_obj(tup.registered_mesh)

    def alignment(self, subject: str, expression_index: int) -> tuple[float, np.ndarray]:
        """(scale, Rt 3x4) mapping this tuple's SfM frame to the TU frame: v_TU = R (scale v) + t."""
        path = self.rt_scale_dict_path
        if path is None or not path.is_file():
            raise MissingFileError(path, "Rt_scale_dict.json not found",
                                   "copy toolkit/predef/Rt_scale_dict.json from the FaceScape toolkit and set "
                                   "facescape_rt_scale_dict")
        if self._alignment is None:
            try:
                self._alignment = json.loads(path.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise CorruptFileError(path, f"not valid JSON ({exc})", "re-copy it from the toolkit") from exc
        try:
            scale, rt = self._alignment[str(int(subject))][str(int(expression_index))]
        except KeyError:
            raise InvalidContentError(path, f"no entry for subject {subject} expression {expression_index}",
                                      "use the toolkit's complete Rt_scale_dict.json") from None
        rt = np.asarray(rt, np.float64)
        if rt.shape != (3, 4) or not np.all(np.isfinite(rt)) or not np.isfinite(scale) or scale <= 0:
            raise InvalidContentError(path, f"entry {subject}/{expression_index} is not [scale > 0, Rt 3x4]",
                                      "use the toolkit's Rt_scale_dict.json")
        return float(scale), rt

    def file_list(self, subject: str) -> list[tuple[str, str]]:
        """(relative path, path) of every file of a subject, sorted: the basis of its raw data version."""
        d = self.subject_dir(subject)
        return list_files(d, f"{d.name}/")
