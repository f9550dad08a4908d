"""FLAME 2020: file loading without chumpy, landmark embeddings, and a batched torch forward.

The forward reuses `smplx.lbs` (blend shapes, linear blend skinning, barycentric landmarks and the dynamic
contour look-up) so it computes exactly what `smplx.FLAME` computes; unlike `smplx.FLAME` it reads the original
`generic_model.pkl` (chumpy, Python-2) directly and also exposes the 68-point landmark embedding used by trackers.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import scipy.sparse

from model.bodies.errors import BodyModelError, require_array, require_file
from storage.safe_pickle import load_npy, load_pickle

if TYPE_CHECKING:
    import torch

FLAME_NUM_JOINTS = 5  # global (root), neck, jaw, left eye, right eye
FLAME_MODEL_FILE = "generic_model.pkl"
STATIC_EMBEDDING_FILE = "flame_static_embedding.pkl"
DYNAMIC_EMBEDDING_FILE = "flame_dynamic_embedding.npy"
DECA_EMBEDDING_FILE = "landmark_embedding.npy"
FLAME_FIX = "download FLAME 2020 from https://flame.is.tue.mpg.de (generic_model.pkl) and set flame_model_dir"


@dataclass(frozen=True)
class FlameModelData:
    """The arrays of a FLAME model file, as plain numpy (float64 / int64)."""

    v_template: np.ndarray  # (V, 3)
    faces: np.ndarray  # (F, 3) int64
    shapedirs: np.ndarray  # (V, 3, n_shape + n_expression)
    posedirs: np.ndarray  # (V, 3, 36)
    j_regressor: np.ndarray  # (5, V) dense
    weights: np.ndarray  # (V, 5)
    parents: np.ndarray  # (5,) int64, parents[0] == -1
    n_shape: int
    n_expression: int

    @property
    def num_vertices(self) -> int:
        return int(self.v_template.shape[0])


@dataclass(frozen=True)
class FlameLandmarkEmbedding:
    """Barycentric landmark embeddings: 51 static, 79x17 dynamic contour rows, and (optionally) the full 68."""

    static_faces: np.ndarray  # (51,) int64
    static_bary: np.ndarray  # (51, 3)
    dynamic_faces: np.ndarray  # (79, 17) int64
    dynamic_bary: np.ndarray  # (79, 17, 3)
    full_faces: np.ndarray | None = None  # (68,) int64
    full_bary: np.ndarray | None = None  # (68, 3)


def _split_shapedirs(width: int) -> tuple[int, int]:
    """smplx's rule: 400 columns = 300 identity + 100 expression; narrower files = 10 + 10 (v1.0 layout)."""
    if width >= 400:
        return 300, width - 300
    if width == 20:
        return 10, 10
    raise ValueError(f"shapedirs has {width} columns; FLAME files have 400 (300+100) or 20 (10+10)")


def load_flame_model(path: str | Path) -> FlameModelData:
    """Read a FLAME model pickle (original chumpy/Python-2 `generic_model.pkl` or a cleaned plain-array copy)."""
    path = Path(path)
    if path.is_dir():
        path = path / FLAME_MODEL_FILE
    require_file(path, "FLAME model file", FLAME_FIX)
    data = load_pickle(path, "a FLAME model pickle", FLAME_FIX)
    if not isinstance(data, dict):
        raise BodyModelError(path, f"holds a {type(data).__name__}, expected a dict of arrays", FLAME_FIX)
    require_array(path, data, "v_template", (None, 3))
    n_vertices = int(np.shape(data["v_template"])[0])
    require_array(path, data, "f", (None, 3))
    require_array(path, data, "shapedirs", (n_vertices, 3, None))
    require_array(path, data, "posedirs", (n_vertices, 3, (FLAME_NUM_JOINTS - 1) * 9))
    require_array(path, data, "weights", (n_vertices, FLAME_NUM_JOINTS))
    require_array(path, data, "kintree_table", (2, FLAME_NUM_JOINTS))
    require_array(path, data, "J_regressor", (FLAME_NUM_JOINTS, n_vertices))
    jreg = data["J_regressor"]
    jreg = jreg.toarray() if scipy.sparse.issparse(jreg) else np.asarray(jreg)
    shapedirs = np.asarray(data["shapedirs"], dtype=np.float64)
    try:
        n_shape, n_expr = _split_shapedirs(shapedirs.shape[-1])
    except ValueError as exc:
        raise BodyModelError(path, str(exc), FLAME_FIX) from None
    parents = np.asarray(data["kintree_table"])[0].astype(np.int64)
    parents[0] = -1  # stored as uint32 max in the original file
    out = FlameModelData(
        v_template=np.asarray(data["v_template"], dtype=np.float64),
        faces=np.asarray(data["f"]).astype(np.int64),
        shapedirs=shapedirs,
        posedirs=np.asarray(data["posedirs"], dtype=np.float64),
        j_regressor=jreg.astype(np.float64),
        weights=np.asarray(data["weights"], dtype=np.float64),
        parents=parents,
        n_shape=n_shape,
        n_expression=n_expr,
    )
    for name in ("v_template", "shapedirs", "posedirs", "j_regressor", "weights"):
        if not np.all(np.isfinite(getattr(out, name))):
            raise BodyModelError(path, f"{name} contains NaN or infinite values", FLAME_FIX)
    if out.faces.min() < 0 or out.faces.max() >= n_vertices:
        raise BodyModelError(path, "face indices out of range of v_template", FLAME_FIX)
    return out


def _embedding_arrays(path: Path, faces: object, bary: object, n: int | None) -> tuple[np.ndarray, np.ndarray]:
    f = np.asarray(faces).astype(np.int64).reshape(-1) if n is not None else np.asarray(faces).astype(np.int64)
    b = np.asarray(bary, dtype=np.float64)
    b = b.reshape(-1, 3) if n is not None else b
    if n is not None and (f.shape != (n,) or b.shape != (n, 3)):
        raise BodyModelError(path, f"landmark embedding has {f.shape[0]} faces / {b.shape} coordinates, "
                                   f"expected {n}", "use the original embedding file")
    return f, b


def load_flame_landmarks(model_dir: str | Path) -> FlameLandmarkEmbedding:
    """Read the landmark embeddings of a FLAME folder.

    Prefers DECA's `landmark_embedding.npy` (static 51, dynamic 79x17 and full 68); otherwise RingNet's
    `flame_static_embedding.pkl` + `flame_dynamic_embedding.npy` (no full-68 embedding then).
    """
    model_dir = Path(model_dir)
    deca = model_dir / DECA_EMBEDDING_FILE
    if deca.is_file():
        d = load_npy(deca, "DECA's landmark embedding", "use DECA's landmark_embedding.npy")
        if not isinstance(d, dict):
            raise BodyModelError(deca, f"holds a {type(d).__name__}, expected a dict", "use DECA's file")
        for key in ("static_lmk_faces_idx", "static_lmk_bary_coords", "dynamic_lmk_faces_idx",
                    "dynamic_lmk_bary_coords"):
            if key not in d:
                raise BodyModelError(deca, f"missing key {key!r}", "use DECA's landmark_embedding.npy")
        sf, sb = _embedding_arrays(deca, d["static_lmk_faces_idx"], d["static_lmk_bary_coords"], 51)
        df, db = _embedding_arrays(deca, d["dynamic_lmk_faces_idx"], d["dynamic_lmk_bary_coords"], None)
        ff = fb = None
        if "full_lmk_faces_idx" in d:
            ff, fb = _embedding_arrays(deca, d["full_lmk_faces_idx"], d["full_lmk_bary_coords"], 68)
        emb = FlameLandmarkEmbedding(sf, sb, df, db, ff, fb)
    else:
        static = require_file(model_dir / STATIC_EMBEDDING_FILE, "FLAME static landmark embedding",
                              "copy flame_static_embedding.pkl from RingNet's flame_model/ folder")
        dynamic = require_file(model_dir / DYNAMIC_EMBEDDING_FILE, "FLAME dynamic landmark embedding",
                               "copy flame_dynamic_embedding.npy from RingNet's flame_model/ folder")
        s = load_pickle(static, "a FLAME static landmark embedding", "use RingNet's flame_static_embedding.pkl")
        sf, sb = _embedding_arrays(static, s["lmk_face_idx"], s["lmk_b_coords"], 51)
        d = load_npy(dynamic, "a FLAME dynamic landmark embedding", "use RingNet's flame_dynamic_embedding.npy")
        df = np.stack([np.asarray(x) for x in d["lmk_face_idx"]]).astype(np.int64)
        db = np.stack([np.asarray(x) for x in d["lmk_b_coords"]]).astype(np.float64)
        emb = FlameLandmarkEmbedding(sf, sb, df, db)
    if emb.dynamic_faces.shape[0] != 79 or emb.dynamic_bary.shape[:2] != emb.dynamic_faces.shape:
        raise BodyModelError(model_dir, f"dynamic contour embedding has shape {emb.dynamic_faces.shape}, "
                                        "expected 79 rows (neck yaw -39..39 degrees)", "use the original file")
    return emb


class FlameOutput(NamedTuple):
    vertices: "torch.Tensor"  # (B, V, 3)
    joints: "torch.Tensor"  # (B, 5, 3)
    landmarks: "torch.Tensor"  # (B, 68, 3): 17 dynamic contour points + 51 static points
    landmarks_full: "torch.Tensor | None"  # (B, 68, 3) from the full embedding when the folder has one


def write_smplx_flame_dir(model: FlameModelData, landmarks: FlameLandmarkEmbedding, out_dir: str | Path) -> Path:
    """Write a cleaned (plain-array) copy that `smplx.FLAME(model_path=out_dir)` loads, e.g. for third-party code.

    `smplx.FLAME` needs a folder with `FLAME_NEUTRAL.pkl`, `flame_static_embedding.pkl` and, for the contour,
    `flame_dynamic_embedding.npy`; it cannot read the original chumpy pickle.
    """
    import pickle  # writing only

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    kintree = np.stack([model.parents.astype(np.int64), np.arange(FLAME_NUM_JOINTS)])
    payload = {"v_template": model.v_template, "f": model.faces.astype(np.uint32), "shapedirs": model.shapedirs,
               "posedirs": model.posedirs, "J_regressor": model.j_regressor, "weights": model.weights,
               "kintree_table": kintree}
    with open(out / "FLAME_NEUTRAL.pkl", "wb") as fh:
        pickle.dump(payload, fh, protocol=2)
    with open(out / STATIC_EMBEDDING_FILE, "wb") as fh:
        pickle.dump({"lmk_face_idx": landmarks.static_faces.astype(np.uint32),
                     "lmk_b_coords": landmarks.static_bary}, fh, protocol=2)
    dyn = {"lmk_face_idx": landmarks.dynamic_faces, "lmk_b_coords": landmarks.dynamic_bary}
    np.save(out / DYNAMIC_EMBEDDING_FILE, np.array(dyn, dtype=object), allow_pickle=True)
    return out
