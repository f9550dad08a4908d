"""FaceScape bilinear model v1.6 (`facescape_bm_v1.6_*.npz`): loader and forward.

Follows the toolkit's `facescape_bm` semantics: the stored core (3V, 52, n_id) is converted to the residual form
(expression slices minus the neutral slice; slice 0 kept), then `verts = core . id . exp` with `exp[0] = 1`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model.bodies.errors import BodyModelError, require_array, require_file
from storage.safe_pickle import load_npz

BILINEAR_FIX = ("download the FaceScape bilinear model v1.6 (facescape_bm_v1.6_847_50_52_id_front.npz) and set "
                "facescape_bilinear_model")
N_EXPRESSION = 52


@dataclass(frozen=True)
class BilinearModel:
    core: np.ndarray  # (3V, 52, n_id) residual core
    faces: np.ndarray  # (F, 3) 0-based
    id_mean: np.ndarray  # (n_id,)
    id_var: np.ndarray  # (n_id,)
    landmark_indices: np.ndarray | None  # (68,) vertex indices (lm_list_v16)
    texcoords: np.ndarray | None
    uv_faces: np.ndarray | None  # (F, 3) 0-based

    @property
    def num_vertices(self) -> int:
        return self.core.shape[0] // 3

    def vertices(self, id_vec: np.ndarray, exp_vec: np.ndarray) -> np.ndarray:
        """(V, 3) vertices for an identity vector (n_id,) and an expression vector (52,) with exp[0] = 1."""
        id_vec, exp_vec = np.asarray(id_vec, np.float32), np.asarray(exp_vec, np.float32)
        if id_vec.shape != (self.core.shape[2],) or exp_vec.shape != (N_EXPRESSION,):
            raise ValueError(f"expected id ({self.core.shape[2]},) and exp ({N_EXPRESSION},), "
                             f"got {id_vec.shape} and {exp_vec.shape}")
        return (self.core @ id_vec @ exp_vec).reshape(-1, 3).astype(np.float64)


def load_bilinear_model(path: str | Path) -> BilinearModel:
    path = require_file(Path(path), "FaceScape bilinear model", BILINEAR_FIX)
    data = load_npz(path, "the FaceScape bilinear model (.npz)", BILINEAR_FIX)  # object arrays: contour lists
    require_array(path, data, "shape_bm_core", (None, N_EXPRESSION, None))
    core = np.asarray(data["shape_bm_core"], dtype=np.float32)  # float32 halves memory; mm precision is ample
    if core.shape[0] % 3:
        raise BodyModelError(path, f"shape_bm_core first axis {core.shape[0]} is not 3 x vertices", BILINEAR_FIX)
    if not np.all(np.isfinite(core)):
        raise BodyModelError(path, "shape_bm_core contains NaN or infinite values", BILINEAR_FIX)
    n_id = core.shape[2]
    require_array(path, data, "fv_indices", (None, 3))
    require_array(path, data, "id_mean", (n_id,))
    require_array(path, data, "id_var", (n_id,))
    residual = core - core[:, :1, :]
    residual[:, 0, :] = core[:, 0, :]
    faces = np.asarray(data["fv_indices"]).astype(np.int64) - 1  # stored 1-based
    if faces.min() < 0 or faces.max() >= core.shape[0] // 3:
        raise BodyModelError(path, "fv_indices out of range (they must be 1-based vertex indices)", BILINEAR_FIX)
    uv_faces = np.asarray(data["ft_indices"]).astype(np.int64) - 1 if "ft_indices" in data else None
    return BilinearModel(
        core=residual, faces=faces, id_mean=np.asarray(data["id_mean"], np.float64),
        id_var=np.asarray(data["id_var"], np.float64),
        landmark_indices=np.asarray(data["lm_list_v16"]).astype(np.int64) if "lm_list_v16" in data else None,
        texcoords=np.asarray(data["texcoords"], np.float64) if "texcoords" in data else None,
        uv_faces=uv_faces,
    )
