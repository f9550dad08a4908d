"""SMPL-X through the `smplx` package: file validation, construction with THuman's conventions, forward.

`smplx.SMPLX` hard-wires the extra-keypoint vertex ids of the real 10,475-vertex model (the largest is 9929). A
model with fewer vertices constructs but fails in forward(); `load_smplx` then maps those keypoints onto vertex 0
so smaller research models still run (documented, and reported in `SmplxInfo.patched_keypoints`).

`smplx.SMPLX` opens its file itself with `np.load(allow_pickle=True)` / `pickle.load`, which would run whatever a
modified file holds. So the file is read here through the allow-listed reader (storage.safe_pickle), and smplx
is handed a private copy holding only the numeric arrays it uses.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from model.bodies.errors import BodyModelError, require_array, require_file
from storage.safe_pickle import load_npz, load_pickle

if TYPE_CHECKING:
    import smplx

SMPLX_NUM_JOINTS = 55
SMPLX_PARENTS = np.array(
    [-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 15, 15, 15, 20, 25, 26, 20, 28, 29,
     20, 31, 32, 20, 34, 35, 20, 37, 38, 21, 40, 41, 21, 43, 44, 21, 46, 47, 21, 49, 50, 21, 52, 53], dtype=np.int64)
SMPLX_FIX = ("download models_smplx_v1_1 from https://smpl-x.is.tue.mpg.de and set smplx_model_dir to the folder "
             "holding SMPLX_NEUTRAL.npz / SMPLX_MALE.npz / SMPLX_FEMALE.npz")
#: The body model THuman 2.0/2.1 fits were made with (ICON lib/renderer/mesh.py, THuman issue #23).
THUMAN_SMPLX_KWARGS = dict(gender="male", use_pca=True, num_pca_comps=12, flat_hand_mean=False, num_betas=10,
                           num_expression_coeffs=10)


@dataclass(frozen=True)
class SmplxInfo:
    path: Path
    num_vertices: int
    num_faces: int
    shapedirs_width: int
    patched_keypoints: bool


def smplx_model_file(model_dir: str | Path, gender: str = "neutral", ext: str = "npz") -> Path:
    """The file `smplx` opens for a folder: SMPLX_{GENDER}.{ext} (a file path is returned unchanged)."""
    p = Path(model_dir)
    return p if p.is_file() else p / f"SMPLX_{gender.upper()}.{ext}"


def read_smplx_arrays(path: str | Path) -> dict:
    """The arrays of an SMPL-X `.npz` or `.pkl`, read without running code (object arrays via the allow-list)."""
    path = require_file(Path(path), "SMPL-X model file", SMPLX_FIX)
    if path.suffix == ".npz":
        return load_npz(path, "an SMPL-X .npz model", SMPLX_FIX)
    data = load_pickle(path, "an SMPL-X .pkl model", SMPLX_FIX)
    if not isinstance(data, dict):
        raise BodyModelError(path, f"holds a {type(data).__name__}, expected a dict of arrays", SMPLX_FIX)
    return data


def validate_smplx_file(path: str | Path) -> SmplxInfo:
    """Check the keys and shapes `smplx.SMPLX` relies on, with a named error instead of a deep traceback."""
    return validate_smplx_arrays(Path(path), read_smplx_arrays(path))


def validate_smplx_arrays(path: Path, data: dict) -> SmplxInfo:
    require_array(path, data, "v_template", (None, 3))
    v = int(data["v_template"].shape[0])
    require_array(path, data, "f", (None, 3))
    require_array(path, data, "shapedirs", (v, 3, None))
    require_array(path, data, "posedirs", (v, 3, (SMPLX_NUM_JOINTS - 1) * 9))
    require_array(path, data, "weights", (v, SMPLX_NUM_JOINTS))
    require_array(path, data, "J_regressor", (SMPLX_NUM_JOINTS, v))
    require_array(path, data, "kintree_table", (2, SMPLX_NUM_JOINTS))
    for key in ("hands_componentsl", "hands_componentsr"):
        require_array(path, data, key, (45, 45))
    require_array(path, data, "lmk_faces_idx", (51,))
    width = int(data["shapedirs"].shape[-1])
    if 20 < width < 400:
        raise BodyModelError(path, f"shapedirs has {width} columns; smplx expects 20 (v1.0) or >= 400 (v1.1), "
                                   "otherwise identity and expression bases overlap", SMPLX_FIX)
    if not np.all(np.isfinite(np.asarray(data["v_template"], dtype=np.float64))):
        raise BodyModelError(path, "v_template contains NaN or infinite values", SMPLX_FIX)
    return SmplxInfo(path, v, int(data["f"].shape[0]), width, patched_keypoints=v < 9930)


def _numeric_arrays(data: dict) -> dict[str, np.ndarray]:
    """Only numeric arrays (sparse matrices made dense); object arrays such as joint2num are not used by smplx."""
    import scipy.sparse

    out = {}
    for key, value in data.items():
        value = value.toarray() if scipy.sparse.issparse(value) else np.asarray(value)
        if value.dtype != object:
            out[key] = value
    return out


def load_smplx(model_dir: str | Path, gender: str = "neutral", batch_size: int = 1, ext: str = "npz",
               **kwargs: object) -> "smplx.SMPLX":
    """Construct `smplx.SMPLX` from a folder or file after validating it; runs forward() for any vertex count."""
    import smplx
    import torch

    path = smplx_model_file(model_dir, gender, ext)
    data = read_smplx_arrays(path)
    info = validate_smplx_arrays(path, data)
    with tempfile.TemporaryDirectory(prefix="morphable-smplx-") as folder:
        clean = Path(folder) / "SMPLX_CLEAN.npz"
        np.savez(clean, **_numeric_arrays(data))
        model = smplx.SMPLX(model_path=str(clean), gender=gender, batch_size=batch_size, ext="npz", **kwargs)
    if info.patched_keypoints:
        sel = model.vertex_joint_selector
        sel.extra_joints_idxs = torch.zeros_like(sel.extra_joints_idxs)
    return model


def load_thuman_smplx(model_dir: str | Path, batch_size: int = 1) -> "smplx.SMPLX":
    """The SMPL-X configuration THuman's released fits use: male, 12 PCA hand components, flat_hand_mean=False."""
    return load_smplx(model_dir, batch_size=batch_size, **THUMAN_SMPLX_KWARGS)
