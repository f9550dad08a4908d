"""The synthetic stand-in: body-model files and FaceScape / THuman raw datasets in the real on-disk formats.

`generate_demo_data(root, seed)` writes, deterministically for a seed:

    body_models/flame/      generic_model.pkl (Python-2 pickle with chumpy shapedirs and an old-scipy sparse
                            J_regressor, like the release), flame_static_embedding.pkl, flame_dynamic_embedding.npy,
                            landmark_embedding.npy (DECA layout, torch tensors inside)
    body_models/smplx/      SMPLX_{NEUTRAL,MALE,FEMALE}.npz (v1.1 key layout; loads in smplx unmodified)
    facescape_bm/           facescape_bm_v1.6_847_50_52_id_front.npz
    facescape_toolkit/predef/Rt_scale_dict.json, landmark_indices.npz
    facescape/<id>/...      4 subjects x 3 expressions x 24 calibrated, distorted, lit, textured views with a
                            studio background, params.json, multi-view scans (SfM frame), models_reg meshes
    thuman/model/<uid>/...  4 textured, clothed, posed body scans (uid >= 0526 written z-up)
    thuman/smplx/<uid>/     smplx_param.pkl (TrackedArray scale/translation, protocol 3) + mesh_smplx.obj
    ground_truth/           every parameter used (never read by the raw-format readers)
    MANIFEST.json           written last: the folder is complete only when it exists

The folder is built in a temporary sibling and renamed into place, so a crash never leaves a partial stand-in.

The bytes are a function of the seed alone: not of the worker count (each subject draws from its own random stream),
nor of the CPU's kernels or thread count. Every number is computed in float64 through `model.portable_math` and
`model.bodies.portable_lbs` (no BLAS, no torch, no CPU-specific transcendental kernels); the manifest records each
file's sha256, and `tests/pipelines/test_demo_data.py` compares two runs under other kernel, thread and worker settings.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model import frames
from model import portable_math as pm
from model.bodies.flame import FlameLandmarkEmbedding, FlameModelData
from model.bodies.portable_lbs import flame_forward, smplx_forward
from model.render.cameras import camera_center, intrinsics, look_at
from model.render.raycast import MeshRaycaster, interpolate_at_hits
from model.standin import body, head
from model.standin.appearance import Appearance, body_texture, head_albedo
from model.standin.subdivision import subdivide_textured
from model.standin.legacy_writers import chumpy_array, dump_numpy1_pickle, dump_py2_pickle, old_scipy_csc
from pipelines.catalog import FACESCAPE_TEST_SUBJECTS, THUMAN_FIRST_VAL_UID
from storage.atomic import SkipWrite, atomic_directory
from storage.facescape import FaceScapeCamera, write_params
from storage.hashing import hash_file, hash_json
from storage.images import write_jpeg
from storage.meshes import Mesh, write_obj, write_ply
from storage.thuman import SAME_PERSON_FILE

log = logging.getLogger(__name__)

#: 4: identities vary in hair shape/colour, brows, eyes, clothes; per-subject random streams. 5: the same bits on
#: every CPU, thread and worker count (portable float64 maths), per-file sha256 in the manifest
GENERATOR_VERSION = "5"
#: expression folder -> (expression coefficients by component, jaw pose axis-angle), FaceScape's 20 in their order
FACESCAPE_EXPRESSION_TABLE: dict[str, tuple[dict[int, float], tuple[float, float, float]]] = {
    "1_neutral": ({}, (0.0, 0.0, 0.0)),
    "2_smile": ({0: 1.5, 8: 0.5}, (0.03, 0.0, 0.0)),
    "3_mouth_stretch": ({1: 1.2}, (0.2, 0.0, 0.0)),
    "4_anger": ({3: 1.5, 9: 0.5}, (0.0, 0.0, 0.0)),
    "5_jaw_left": ({1: 0.3}, (0.12, 0.16, 0.0)),
    "6_jaw_right": ({1: 0.3}, (0.12, -0.16, 0.0)),
    "7_jaw_forward": ({1: 0.2}, (0.08, 0.0, 0.0)),
    "8_mouth_left": ({7: 1.2}, (0.0, 0.0, 0.0)),
    "9_mouth_right": ({7: -1.2}, (0.0, 0.0, 0.0)),
    "10_dimpler": ({8: 1.5}, (0.0, 0.0, 0.0)),
    "11_chin_raiser": ({9: 0.8, 5: 0.3}, (0.0, 0.0, 0.0)),
    "12_lip_puckerer": ({5: 1.5}, (0.0, 0.0, 0.0)),
    "13_lip_funneler": ({5: 1.0, 1: 0.3}, (0.05, 0.0, 0.0)),
    "14_sadness": ({3: 0.8, 0: -0.6}, (0.0, 0.0, 0.0)),
    "15_lip_roll": ({9: 1.5}, (0.0, 0.0, 0.0)),
    "16_grin": ({0: 1.8, 1: 0.4}, (0.1, 0.0, 0.0)),
    "17_cheek_blowing": ({6: 1.5, 5: 0.4}, (0.0, 0.0, 0.0)),
    "18_eye_closed": ({4: 1.5}, (0.0, 0.0, 0.0)),
    "19_brow_raiser": ({2: 1.5}, (0.0, 0.0, 0.0)),
    "20_brow_lower": ({3: 1.5}, (0.0, 0.0, 0.0)),
}
#: which expressions a stand-in of n expressions has: neutral, smile and the held-out 06 first, then in order
_EXPRESSION_ORDER = ("1_neutral", "2_smile", "6_jaw_right") + tuple(
    k for k in FACESCAPE_EXPRESSION_TABLE if k not in ("1_neutral", "2_smile", "6_jaw_right"))
FACESCAPE_TEST_IDS = tuple(int(s) for s in FACESCAPE_TEST_SUBJECTS)  # the paper's held-out FaceScape subjects
DEFAULT_THUMAN_UIDS = ("0003", "0526", "1024", "2201")


@dataclass(frozen=True)
class StandinSpec:
    """Which subjects and expressions the stand-in holds. The default is the demo's small set; `with_counts` makes
    a larger one (e.g. the reference model's 64 identities), with FaceScape-style ids: training ids from `first_id`
    upwards (skipping the test ids), then the paper's test ids."""

    facescape_subjects: tuple[str, ...] = ("1", "2", "3", "122")
    thuman_uids: tuple[str, ...] = DEFAULT_THUMAN_UIDS
    expressions: int = 3
    profile: str = "demo"  # sizes of meshes, images and textures (PROFILES)
    #: "standing": every scan near an A-pose (the demo's); "varied": arms, legs, spine and head drawn over a wide
    #: range (the body reference model's training scans, so that it learns to follow the SMPL-X it is given)
    thuman_poses: str = "standing"
    #: each held-out scan (uid >= 2201) is also written in this many other poses of the same person (uids +100,
    #: +200, ...): the novel-pose protocol's ground truth (THuman's own format has no person ids)
    thuman_pose_variants: int = 0

    @staticmethod
    def with_counts(facescape: int = 4, thuman: int = 4, expressions: int = 3, heldout: int = 1,
                    first_id: int = 1, profile: str = "demo", thuman_poses: str = "standing",
                    thuman_pose_variants: int = 2) -> "StandinSpec":
        if not 1 <= expressions <= len(FACESCAPE_EXPRESSION_TABLE):
            raise ValueError(f"expressions must be 1..{len(FACESCAPE_EXPRESSION_TABLE)}, not {expressions}")
        if not 0 <= heldout <= min(facescape, thuman) or heldout > len(FACESCAPE_TEST_IDS):
            raise ValueError(f"heldout ({heldout}) must be between 0 and the smaller subject count")
        train_fs = [i for i in range(first_id, 10_000) if i not in FACESCAPE_TEST_IDS][:facescape - heldout]
        fs = tuple(str(i) for i in (*train_fs, *FACESCAPE_TEST_IDS[:heldout]))
        n_th = thuman - heldout
        span = max(THUMAN_FIRST_VAL_UID - first_id, 1)
        train_th = sorted({first_id + (i * span) // max(n_th, 1) for i in range(n_th)})
        th = tuple(f"{u:04d}" for u in (*train_th, *range(THUMAN_FIRST_VAL_UID, THUMAN_FIRST_VAL_UID + heldout)))
        if (thuman, heldout, first_id) == (4, 1, 1):
            th = DEFAULT_THUMAN_UIDS  # the demo's set: 0526 is the first scan written z-up (frames test it)
        if profile not in PROFILES:
            raise ValueError(f"unknown profile {profile!r}; choose one of {sorted(PROFILES)}")
        if thuman_poses not in THUMAN_POSE_MODES:
            raise ValueError(f"unknown thuman_poses {thuman_poses!r}; choose one of {THUMAN_POSE_MODES}")
        if not 0 <= thuman_pose_variants <= 7:
            raise ValueError(f"thuman_pose_variants must be 0..7, not {thuman_pose_variants}")
        return StandinSpec(fs, th, expressions, profile, thuman_poses, thuman_pose_variants)

    def pose_variants(self) -> dict[str, tuple[str, int]]:
        """{variant uid: (the person's held-out uid, pose number)} of the extra poses this stand-in writes."""
        return {f"{int(u) + 100 * k:04d}": (u, k) for u in self.thuman_uids if int(u) >= THUMAN_FIRST_VAL_UID
                for k in range(1, self.thuman_pose_variants + 1)}

    @property
    def expression_folders(self) -> tuple[str, ...]:
        return tuple(sorted(_EXPRESSION_ORDER[:self.expressions], key=lambda k: int(k.split("_")[0])))

    def as_dict(self) -> dict:
        out = {"facescape_subjects": list(self.facescape_subjects), "thuman_uids": list(self.thuman_uids),
               "expressions": self.expressions}
        if self.profile != "demo":  # (kept out for the demo profile, so existing stand-ins stay complete)
            out["profile"] = self.profile
        if self.thuman_poses != "standing":  # (likewise)
            out["thuman_poses"] = self.thuman_poses
        if self.thuman_pose_variants:
            out["thuman_pose_variants"] = self.thuman_pose_variants
        return out

    @property
    def sizes(self) -> "StandinProfile":
        return PROFILES[self.profile]


THUMAN_POSE_MODES = ("standing", "varied")
DEFAULT_SPEC = StandinSpec(thuman_pose_variants=2)
FACESCAPE_SUBJECTS = DEFAULT_SPEC.facescape_subjects
THUMAN_UIDS = DEFAULT_SPEC.thuman_uids
FACESCAPE_EXPRESSIONS = {k: FACESCAPE_EXPRESSION_TABLE[k] for k in DEFAULT_SPEC.expression_folders}
#: (azimuth, elevation) in degrees of the 24 cameras; azimuth 0 = frontal, positive = subject's left
VIEW_ANGLES = ([(a, 5) for a in (-120, -100, -75, -60, -45, -30, -15, 0, 15, 30, 45, 60, 75, 100, 120)]
               + [(a, 30) for a in (-60, -30, 0, 30, 60)] + [(a, -20) for a in (-40, 0, 40)] + [(0, 50)])


def view_angles(n: int) -> list[tuple[float, float]]:
    """(azimuth, elevation) in degrees of a rig of `n` cameras: the demo's 24, or for more (FaceScape's rig has ~60
    per expression) the 24 plus rings at elevations 15, -5, 40 and -30 degrees."""
    if n <= len(VIEW_ANGLES):
        return list(VIEW_ANGLES[:n])
    extra, rings = n - len(VIEW_ANGLES), ((15, 110), (-5, 110), (40, 70), (-30, 50))
    per = [extra // len(rings) + (i < extra % len(rings)) for i in range(len(rings))]
    out = list(VIEW_ANGLES)
    for (el, span), k in zip(rings, per):
        out += [(float(a), float(el)) for a in np.linspace(-span, span, k)]
    return out


@dataclass(frozen=True)
class StandinProfile:
    """Sizes of what the stand-in writes. `demo`: small enough for a laptop CPU. `real-size`: the real files'
    dimensions (FaceScape rig images of several megapixels and ~60 cameras, TU meshes of 26,317 vertices, a FLAME
    of 9,976 faces with 300 + 100 components, THuman 2.1 scans of ~330k faces with 2048x2048 textures)."""

    name: str
    image_size: tuple[int, int]  # FaceScape image (width, height)
    cameras: int  # FaceScape cameras per expression
    flame_grid: tuple[int, int, float]
    tu_grid: tuple[int, int, float]
    scan_grid: tuple[int, int, float]
    thuman_subdivisions: int  # midpoint subdivisions of the SMPL-X-topology scan (each x4 faces)
    thuman_texture: int


PROFILES = {p.name: p for p in (
    StandinProfile("demo", (300, 400), 24, head.FLAME_GRID, head.TU_GRID, head.SCAN_GRID, 0, 512),
    # FLAME grid 58 x 86: 4,990 vertices and FLAME 2020's 9,976 faces (a closed surface with that many faces has
    # 4,990 vertices; FLAME's 5,023 include its open neck and eye boundaries); TU grid 95 x 277 + 2 poles: 26,317
    StandinProfile("real-size", (1800, 2400), 60, (58, 86, 0.0), (95, 277, 0.5), (160, 320, 0.25), 2, 2048),
)}
INVALID_VIEW = 11  # one camera flagged valid=false, as the release has
TINTED_VIEW = 17  # one camera with a strong colour cast (colour calibration should reject or fix it)
MANIFEST = "MANIFEST.json"


@dataclass(frozen=True)
class DemoDataReport:
    root: Path
    created: bool
    seconds: float
    counts: dict[str, int]


def is_complete(root: str | Path, seed: int, spec: StandinSpec = DEFAULT_SPEC) -> bool:
    """True when `root` holds a finished stand-in of this generator version, seed and subject set."""
    m = Path(root) / MANIFEST
    if not m.is_file():
        return False
    try:
        doc = json.loads(m.read_text())
    except json.JSONDecodeError:
        return False
    return (doc.get("generator_version") == GENERATOR_VERSION and doc.get("seed") == seed
            and doc.get("spec", DEFAULT_SPEC.as_dict()) == spec.as_dict())


def ensure_demo_data(root: str | Path, seed: int = 0, force: bool = False, spec: StandinSpec = DEFAULT_SPEC,
                     workers: int | None = None) -> DemoDataReport:
    """Generate the stand-in unless a complete one for the same seed and spec is already there (idempotent)."""
    root = Path(root)
    if not force and is_complete(root, seed, spec):
        doc = json.loads((root / MANIFEST).read_text())
        return DemoDataReport(root, False, 0.0, doc["counts"])
    return generate_demo_data(root, seed, reuse_complete=not force, spec=spec, workers=workers)


def generate_demo_data(root: str | Path, seed: int = 0, reuse_complete: bool = False,
                       spec: StandinSpec = DEFAULT_SPEC, workers: int | None = None, log=None) -> DemoDataReport:
    """Write the stand-in (under the root's writer lock; with `reuse_complete`, a stand-in that another process
    finished while we waited for the lock is kept). Subjects are written by `workers` processes (default: one per
    CPU core); each subject draws from its own random stream ([seed, dataset, index]), so the output does not
    depend on the worker count."""
    from pipelines.parallel import default_workers, process_pool
    from pipelines.progress import Progress

    root = Path(root)
    t0 = time.perf_counter()
    written = None
    with atomic_directory(root) as out:
        if reuse_complete and is_complete(root, seed, spec):
            raise SkipWrite
        sizes = spec.sizes
        tu_model, tu_sample = head.build_flame_format(sizes.tu_grid)
        scan_model, scan_sample = head.build_flame_format(sizes.scan_grid)
        flame_model, flame_lmk, lmk_points = _write_flame(out / "body_models" / "flame", scan_sample, sizes.flame_grid)
        _write_bilinear_and_toolkit(out, tu_model, lmk_points, sizes.tu_grid)
        _write_smplx(out / "body_models" / "smplx", seed)  # (each THuman task reads it from there)
        heads = (flame_model, flame_lmk, tu_model, tu_sample, scan_model, scan_sample)
        variants = spec.pose_variants()
        tasks = ([("facescape", i, sid, 0) for i, sid in enumerate(spec.facescape_subjects)]
                 + [("thuman", i, uid, 0) for i, uid in enumerate(spec.thuman_uids)]
                 + [("thuman", spec.thuman_uids.index(person), uid, k) for uid, (person, k) in variants.items()])
        n_workers = max(1, min(workers or default_workers(), len(tasks)))
        bar = Progress(len(tasks), "stand-in subjects", log or log_info)
        alignment: dict[str, dict[str, list]] = {}
        n_images = 0
        args = [(str(out), seed, kind, i, sid, spec.expression_folders, sizes, spec.thuman_poses, k)
                for kind, i, sid, k in tasks]
        if n_workers == 1:
            _set_heads(heads)
            for res in map(_write_subject, args):
                n_images += _collect(res, alignment, bar)
        else:
            with process_pool(n_workers, _set_heads, (heads,)) as pool:
                for res in pool.map(_write_subject, args):
                    n_images += _collect(res, alignment, bar)
        bar.close()
        (out / "facescape_toolkit" / "predef" / "Rt_scale_dict.json").write_text(json.dumps(alignment))
        counts = {"facescape_subjects": len(spec.facescape_subjects), "facescape_expressions": spec.expressions,
                  "facescape_images": n_images, "thuman_scans": len(spec.thuman_uids) + len(variants)}
        if variants:  # (the dataset's own same-person table: storage.thuman.THumanDataset.same_person)
            (out / "thuman" / "model" / SAME_PERSON_FILE).write_text(json.dumps(
                {uid: person for uid, (person, _k) in variants.items()}, indent=1))
        paths = [p for p in sorted(out.rglob("*")) if p.is_file()]
        files = {str(p.relative_to(out)): p.stat().st_size for p in paths}
        digests = {str(p.relative_to(out)): hash_file(p) for p in paths}
        manifest = {"generator_version": GENERATOR_VERSION, "seed": seed, "spec": spec.as_dict(), "counts": counts,
                    "content_hash": hash_json(digests), "files": files, "sha256": digests}
        (out / MANIFEST).write_text(json.dumps(manifest, indent=1))
        written = counts
    if written is None:  # another process completed it while we waited for the lock
        return DemoDataReport(root, False, 0.0, json.loads((root / MANIFEST).read_text())["counts"])
    seconds = time.perf_counter() - t0
    log_info(f"synthetic stand-in written to {root} in {seconds:.1f} s ({n_workers} processes)")
    return DemoDataReport(root, True, seconds, counts)


def log_info(msg: str) -> None:
    log.info(msg)


def _collect(res: tuple[int, dict], alignment: dict, bar) -> int:
    n, align = res
    for k, v in align.items():
        alignment.setdefault(k, {}).update(v)
    bar.update(1)
    return n


_THUMAN_CACHE: dict[str, tuple] = {}
_HEADS: list[tuple] = []  # the head models every FaceScape subject is written from (set once per process)


def _set_heads(heads: tuple) -> None:
    _HEADS[:] = [heads]


def _write_subject(args: tuple) -> tuple[int, dict]:
    """One subject (a worker's task): FaceScape -> (images, alignment entries); THuman -> (0, {})."""
    out_s, seed, kind, index, sid, expressions, sizes, poses, variant = args
    heads = _HEADS[0]
    out = Path(out_s)
    rng = np.random.default_rng([seed, 0 if kind == "facescape" else 1, index])
    # a pose variant replays its person's stream (body shape, clothes, scale, placement) with another pose's draws
    pose_rng = np.random.default_rng([seed, 1, index, variant]) if variant or poses == "varied" else None
    if kind == "facescape":
        alignment: dict[str, dict[str, list]] = {}
        n = _write_facescape_subject(out, sid, rng, *heads, alignment, expressions, sizes)
        return n, alignment
    smplx_dir = out / "body_models" / "smplx"
    if str(smplx_dir) not in _THUMAN_CACHE:
        from model.bodies.smplx_body import THUMAN_SMPLX_KWARGS, read_smplx_arrays, smplx_model_file

        _THUMAN_CACHE.clear()
        arrays = read_smplx_arrays(smplx_model_file(smplx_dir, str(THUMAN_SMPLX_KWARGS["gender"])))
        _THUMAN_CACHE[str(smplx_dir)] = (arrays, _body_layout(smplx_dir))
    model, layout = _THUMAN_CACHE[str(smplx_dir)]
    _write_thuman_scan(out, sid, rng, model, layout, sizes, pose_rng, person=None if not variant else
                       f"{int(sid) - 100 * variant:04d}")
    return 0, {}


# ---------------------------------------------------------------------------------------------------------------
# body-model files

def _write_flame(folder: Path, dense: head.HeadSample, grid: tuple[int, int, float] = head.FLAME_GRID
                 ) -> tuple[FlameModelData, FlameLandmarkEmbedding, np.ndarray]:
    import torch

    from model.standin.landmarks import calibrated_landmarks
    from model.standin.legacy_writers import PickledTorchTensor

    folder.mkdir(parents=True)
    model, _sample = head.build_flame_format(grid)
    lmk, points68 = calibrated_landmarks(model, dense)
    kintree = np.stack([model.parents, np.arange(5)]).astype(np.int64)
    kintree[0, 0] = 4294967295
    dump_py2_pickle({
        "v_template": model.v_template, "f": model.faces.astype(np.uint32), "shapedirs": chumpy_array(model.shapedirs),
        "posedirs": model.posedirs, "J_regressor": old_scipy_csc(model.j_regressor), "J": pm.matmul(model.j_regressor, model.v_template),
        "weights": model.weights, "kintree_table": kintree, "bs_style": "lbs", "bs_type": "lrotmin",
    }, folder / "generic_model.pkl")
    dump_py2_pickle({"lmk_face_idx": lmk.static_faces.astype(np.uint32), "lmk_b_coords": lmk.static_bary},
                    folder / "flame_static_embedding.pkl")
    dyn = {"lmk_face_idx": [r.astype(np.uint32) for r in lmk.dynamic_faces],
           "lmk_b_coords": [r for r in lmk.dynamic_bary]}
    np.save(folder / "flame_dynamic_embedding.npy", np.array(dyn, dtype=object), allow_pickle=True)
    deca = {"static_lmk_faces_idx": lmk.static_faces, "static_lmk_bary_coords": lmk.static_bary,
            "dynamic_lmk_faces_idx": PickledTorchTensor(torch.tensor(lmk.dynamic_faces)),
            "dynamic_lmk_bary_coords": PickledTorchTensor(torch.tensor(lmk.dynamic_bary, dtype=torch.float32)),
            "full_lmk_faces_idx": lmk.full_faces[None], "full_lmk_bary_coords": lmk.full_bary[None].astype(np.float32)}
    np.save(folder / "landmark_embedding.npy", np.array(deca, dtype=object), allow_pickle=True)
    return model, lmk, points68


def _write_bilinear_and_toolkit(out: Path, tu_model: FlameModelData, lmk_points: np.ndarray,
                                tu_grid: tuple[int, int, float] = head.TU_GRID) -> None:
    bl_model, bl_sample = head.build_flame_format(head.BILINEAR_GRID)
    core = head.bilinear_core(bl_sample, bl_model)
    n_id = core.shape[2]
    id_mean = np.zeros(n_id)
    id_mean[0] = 1.0
    id_var = np.r_[0.0, np.ones(head.N_IDENTITY), np.full(n_id - 1 - head.N_IDENTITY, 1e-6)]
    lm_v16 = np.argmin(np.linalg.norm(bl_sample.template[None] - lmk_points[:, None], axis=2), axis=1)
    lm_v10 = np.argmin(np.linalg.norm(tu_model.v_template[None] - lmk_points[:, None], axis=2), axis=1)
    front = np.where(bl_sample.grid.directions[:, 2] > 0.2)[0]
    (out / "facescape_bm").mkdir(parents=True)
    np.savez_compressed(
        out / "facescape_bm" / "facescape_bm_v1.6_847_50_52_id_front.npz",
        shape_bm_core=core, fv_indices=bl_model.faces + 1, ft_indices=bl_sample.grid.uv_faces + 1,
        texcoords=bl_sample.grid.uv, id_mean=id_mean, id_var=id_var, lm_list_v16=lm_v16.astype(np.int64),
        sym_dict=head.symmetry_map(head.BILINEAR_GRID), v_indices_front=front,
        vert_num=np.int64(len(bl_sample.template)), face_num=np.int64(len(bl_model.faces)),
        frontal_vert_num=np.int64(len(front)))
    predef = out / "facescape_toolkit" / "predef"
    predef.mkdir(parents=True)
    np.savez(predef / "landmark_indices.npz", v10=lm_v10.astype(np.int64), v16=lm_v16.astype(np.int64))
    np.save(predef / "sym_dict_old.npy", head.symmetry_map(tu_grid).astype(np.int64))  # the TU topology


def _write_smplx(folder: Path, seed: int) -> Path:
    folder.mkdir(parents=True)
    arrays = body.build_smplx_arrays("neutral", seed)
    for gender, params in body._GENDER_PARAMS.items():
        a = dict(arrays)
        a["v_template"] = arrays["v_template"] + arrays["shapedirs"][:, :, :body.N_BETAS] @ params
        np.savez_compressed(folder / f"SMPLX_{gender.upper()}.npz", **a)
    return folder


# ---------------------------------------------------------------------------------------------------------------
# FaceScape

def _flame_vertices(model: FlameModelData, params: dict[str, np.ndarray]) -> np.ndarray:
    return flame_forward(model, params)[0]


def _shade(albedo: np.ndarray, normals: np.ndarray, view_dirs: np.ndarray | None = None) -> np.ndarray:
    """Studio lighting: ambient + key + fill (Lambert) and a faint specular highlight along the view."""
    n = normals / (pm.norm(normals, axis=-1, keepdims=True) + 1e-12)
    key = np.array([0.45, 0.55, 0.70]) / pm.norm(np.array([0.45, 0.55, 0.70]))
    fill = np.array([-0.6, 0.1, 0.5]) / pm.norm(np.array([-0.6, 0.1, 0.5]))
    light = 0.38 + 0.62 * np.clip(pm.dot3(n, key), 0, None) + 0.25 * np.clip(pm.dot3(n, fill), 0, None)
    out = albedo * light[..., None]
    if view_dirs is not None:
        half = key - view_dirs
        half /= pm.norm(half, axis=-1, keepdims=True)
        out = out + 0.06 * pm.int_power(np.clip(pm.dot3(n, half), 0, 1), 30)[..., None]
    return out


def _background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A studio-like gradient with a faint pattern (separable: sines per row and column, not per pixel)."""
    u, v = np.linspace(0, 1, width)[None, :], np.linspace(0, 1, height)[:, None]
    c0, c1 = rng.uniform(0.25, 0.45, 3), rng.uniform(0.45, 0.7, 3)
    phase = rng.uniform(0, 2 * np.pi, 2)
    pattern = 0.04 * pm.sin(9 * u + phase[0]) * pm.sin(7 * v + phase[1])
    return np.clip(c0 + (c1 - c0) * v[..., None] + pattern[..., None], 0, 1)


def _vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    return pm.vertex_normals(vertices, faces)


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q = rng.normal(size=4)
    q /= pm.norm(q)
    w, x, y, z = q
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def _draw_identity(rng: np.random.Generator) -> tuple[Appearance, np.ndarray, float]:
    """A FaceScape subject's first draws: its appearance, FLAME shape (300) and TU scale (`facescape_identity`
    replays them)."""
    app = Appearance.sample(rng)
    shape = np.zeros(300)
    shape[:head.N_IDENTITY] = rng.normal(size=head.N_IDENTITY)
    return app, shape, float(rng.uniform(0.95, 1.05))


@dataclass(frozen=True)
class StandinIdentity:
    """Who a stand-in FaceScape subject is: what its views were rendered from, beside the expression and pose."""

    subject: str
    appearance: Appearance
    shape: np.ndarray  # (300,) FLAME shape
    tu_scale: float  # the TU mesh is 1000 x tu_scale x the FLAME-format head, in mm
    sizes: "StandinProfile"


def facescape_identity(root: str | Path, subject: str) -> StandinIdentity:
    """Replay the draws a complete stand-in at `root` made for FaceScape `subject` (its MANIFEST gives the seed
    and the subject's index), checked against the shape and TU scale it recorded under ground_truth/."""
    from storage.errors import InvalidContentError, MissingFileError

    root = Path(root)
    if not (root / MANIFEST).is_file():
        raise MissingFileError(root / MANIFEST, "no complete synthetic stand-in here",
                               "run `morphable demo-data` (or `make demo`) first")
    doc = json.loads((root / MANIFEST).read_text())
    subjects = [str(s) for s in doc["spec"]["facescape_subjects"]]
    if str(subject) not in subjects:
        raise InvalidContentError(root / MANIFEST, f"FaceScape subject {subject!r} is not in this stand-in",
                                  f"choose one of {subjects}")
    rng = np.random.default_rng([int(doc["seed"]), 0, subjects.index(str(subject))])
    app, shape, tu_scale = _draw_identity(rng)
    folder = root / "ground_truth" / "facescape" / str(subject)
    truth = next(iter(sorted(folder.glob("*.npz"))), None)
    if truth is None:
        raise MissingFileError(folder, f"no recorded parameters of subject {subject}",
                               "regenerate the stand-in (`morphable demo-data --force`)")
    with np.load(truth) as gt:
        if not (np.array_equal(gt["shape"], shape) and float(gt["tu_scale"]) == tu_scale):
            raise InvalidContentError(truth, f"subject {subject}'s recorded identity differs from the replayed one "
                                             f"(generator version {doc.get('generator_version')})",
                                      "regenerate the stand-in with this code (`morphable demo-data --force`)")
    return StandinIdentity(str(subject), app, shape, tu_scale, PROFILES[doc["spec"].get("profile", "demo")])


def _write_facescape_subject(out: Path, subject: str, rng: np.random.Generator, flame_model: FlameModelData,
                             flame_lmk: FlameLandmarkEmbedding, tu_model: FlameModelData,
                             tu_sample: head.HeadSample, scan_model: FlameModelData, scan_sample: head.HeadSample,
                             alignment: dict[str, dict[str, list]], expressions: tuple[str, ...],
                             sizes: StandinProfile = PROFILES["demo"]) -> int:
    sdir = out / "facescape" / subject
    (sdir / "models_reg").mkdir(parents=True)
    gt_dir = out / "ground_truth" / "facescape" / subject
    gt_dir.mkdir(parents=True)
    app, shape, tu_scale = _draw_identity(rng)
    tex = _uv_texture(app, tu_sample)
    n_images = 0
    for expr_name in expressions:
        psi_spec, jaw = FACESCAPE_EXPRESSION_TABLE[expr_name]
        k = expr_name.split("_")[0]
        expression = np.zeros(100)
        for comp, val in psi_spec.items():
            expression[comp] = val
        params = {"shape": shape, "expression": expression, "global_orient": rng.normal(scale=0.04, size=3),
                  "neck_pose": rng.normal(scale=0.03, size=3), "jaw_pose": np.asarray(jaw, float),
                  "eye_pose": rng.normal(scale=0.05, size=6), "transl": rng.normal(scale=0.003, size=3)}
        flame_v, lmk68 = flame_forward(flame_model, params, flame_lmk)
        tu_v = 1000.0 * tu_scale * _flame_vertices(tu_model, params)
        scan_v = 1000.0 * tu_scale * _flame_vertices(scan_model, params)
        # registered TU mesh (mm, TU frame) with a baked texture
        write_obj(sdir / "models_reg" / f"{expr_name}.obj",
                  Mesh(tu_v, tu_model.faces, tu_sample.grid.uv, tu_sample.grid.uv_faces,
                       material_file=f"{expr_name}.obj.mtl"))
        (sdir / "models_reg" / f"{expr_name}.obj.mtl").write_text(
            f"newmtl material0\nKa 1 1 1\nKd 1 1 1\nKs 0 0 0\nmap_Kd {expr_name}.jpg\n")
        write_jpeg(sdir / "models_reg" / f"{expr_name}.jpg", tex)
        # the tuple's SfM frame: v_TU = R (s v_mv) + t
        sfm_scale = float(rng.uniform(0.004, 0.02))
        sfm_rot = _random_rotation(rng)
        sfm_t = rng.normal(scale=200.0, size=3)
        alignment.setdefault(str(int(subject)), {})[str(int(k))] = [
            sfm_scale, np.concatenate([sfm_rot, sfm_t[:, None]], 1).tolist()]

        def to_sfm(x: np.ndarray) -> np.ndarray:
            return pm.matmul(x - sfm_t, sfm_rot) / sfm_scale  # R^T (x - t) / s for row vectors

        # scan: dense, slightly noisy, vertex-coloured, in the SfM frame
        scan_normals = _vertex_normals(scan_v, scan_model.faces)
        albedo = head_albedo(scan_sample.grid.directions, app)
        colors = np.clip(_shade(albedo, scan_normals) * 255, 0, 255).astype(np.uint8)
        noisy = scan_v + rng.normal(scale=0.15, size=scan_v.shape)
        write_ply(sdir / f"{expr_name}.ply", Mesh(to_sfm(noisy), scan_model.faces, vertex_colors=colors))
        # calibrated views
        folder = sdir / expr_name
        folder.mkdir()
        cams, gains = [], []
        caster = MeshRaycaster(scan_v, scan_model.faces)  # one BVH for the expression's cameras
        center = rng.normal(scale=5.0, size=3)  # the head sits near the TU origin
        width, height = sizes.image_size
        zoom = width / PROFILES["demo"].image_size[0]  # focal length and principal-point noise scale with the image
        for view, (az_deg, el_deg) in enumerate(view_angles(sizes.cameras)):
            az, el = np.deg2rad(az_deg + rng.normal(scale=2)), np.deg2rad(el_deg + rng.normal(scale=2))
            (s_az, c_az), (s_el, c_el) = pm.sincos(az), pm.sincos(el)
            eye = center + rng.uniform(870, 930) * np.array([c_el * s_az, s_el, c_el * c_az])
            roll_up = np.array([rng.normal(scale=0.03), 1.0, 0.0])
            rt_tu = look_at(eye, center + rng.normal(scale=8.0, size=3), roll_up)
            kmat = intrinsics(zoom * rng.uniform(730, 770), width, height, (width - 1) / 2 + zoom * rng.normal(scale=3),
                              (height - 1) / 2 + zoom * rng.normal(scale=3))
            dist = np.array([rng.uniform(-0.08, 0.02), rng.uniform(-0.02, 0.05), rng.normal(scale=5e-4),
                             rng.normal(scale=5e-4), 0.0])
            hits = caster.cast(kmat, rt_tu, width, height, dist)
            dirs = interpolate_at_hits(hits, scan_model.faces, scan_sample.grid.directions)
            normals = interpolate_at_hits(hits, scan_model.faces, scan_normals)
            img = _background(rng, width, height)
            img[hits.mask] = _shade(head_albedo(dirs, app), normals, hits.at_hits("view_dirs"))
            gain = rng.uniform(0.93, 1.07, 3) if view != TINTED_VIEW else np.array([1.3, 0.92, 0.8])
            img = img * gain
            img = img + rng.normal(scale=1.5 / 255, size=img.shape)
            write_jpeg(folder / f"{view}.jpg", np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8))
            # world->camera in the SfM frame: x_cam/s = R_c R x_mv + (R_c t + t_c)/s
            r_mv = pm.matmul(rt_tu[:, :3], sfm_rot)
            t_mv = (pm.matmul(rt_tu[:, :3], sfm_t) + rt_tu[:, 3]) / sfm_scale
            cams.append(FaceScapeCamera(view, kmat, np.concatenate([r_mv, t_mv[:, None]], 1), dist, width,
                                        height, view != INVALID_VIEW, int(rng.integers(2000, 9000)),
                                        f"SN{10000 + view}", f"IMG_{view:04d}.JPG"))
            gains.append(gain)
            n_images += 1
        write_params(folder / "params.json", cams)
        np.savez(gt_dir / f"{expr_name}.npz", **params, tu_scale=tu_scale, flame_vertices=flame_v,
                 flame_landmarks68=lmk68, tu_vertices=tu_v, sfm_scale=sfm_scale, sfm_rotation=sfm_rot,
                 sfm_translation=sfm_t, view_gains=np.stack(gains),
                 camera_centers_tu=np.stack([pm.matmul(sfm_rot, camera_center(c.Rt) * sfm_scale) + sfm_t
                                            for c in cams]))
    return n_images


def _uv_texture(app: Appearance, sample: head.HeadSample, width: int = 512, height: int = 256) -> np.ndarray:
    """Bake the head albedo into the sphere-grid UV layout (u = azimuth, v = 1 - polar angle / pi)."""
    u, v = np.meshgrid((np.arange(width) + 0.5) / width, 1 - (np.arange(height) + 0.5) / height)
    phi, theta = u * 2 * np.pi - np.pi, (1 - v) * np.pi
    (s_ph, c_ph), (s_th, c_th) = pm.sincos(phi), pm.sincos(theta)
    dirs = np.stack([s_th * s_ph, c_th, s_th * c_ph], -1)
    return (head_albedo(dirs.reshape(-1, 3), app).reshape(height, width, 3) * 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------------------------
# THuman

_CLOTH_OFFSET = {"shirt": 0.012, "pants": 0.010, "shoes": 0.004, "skin": 0.0008, "head": 0.002}


@dataclass(frozen=True)
class _BodyLayout:
    """What every synthetic scan shares: per-vertex clothing offsets (SMPL-X vertex order) and the UV atlas."""

    offset: np.ndarray
    uv: np.ndarray
    uv_faces: np.ndarray
    tile_kinds: list[str]
    tiles: np.ndarray


def _body_layout(smplx_dir: Path) -> _BodyLayout:
    mesh = body.build_body_mesh()
    order = body.keypoint_permutation(mesh, body.rest_joints())
    kinds = np.array(body.KINDS)[mesh.part_kind[order]]
    with np.load(smplx_dir / "SMPLX_MALE.npz") as z:
        uv, uv_faces = z["vt"], z["ft"]
    return _BodyLayout(np.array([_CLOTH_OFFSET[k] for k in kinds]), uv, uv_faces, _tile_kinds(mesh), mesh.uv_tile)


def varied_body_pose(rng: np.random.Generator) -> np.ndarray:
    """A SMPL-X body pose (21 joints x axis-angle) over a wide natural range: arms from hanging to raised and
    forward, bent elbows, a leg forward or back, bent knees, a turned and bent spine and head."""
    pose = rng.normal(scale=0.05, size=63)

    def joint(j: int, axis: int, value: float) -> None:
        pose[j * 3 + axis] = value

    for side, sign in ((15, -1.0), (16, 1.0)):  # shoulders: z lowers (left: negative) or raises the arm
        joint(side, 2, sign * rng.uniform(-0.5, 1.3))
        joint(side, 1, sign * rng.uniform(-0.9, 0.4))  # forward / back
    joint(17, 1, -rng.uniform(0.0, 1.8))  # elbows
    joint(18, 1, rng.uniform(0.0, 1.8))
    for hip in (0, 1):  # a leg forward (negative x) or back, and a little sideways
        joint(hip, 0, rng.uniform(-0.8, 0.4))
        joint(hip, 2, (1 if hip else -1) * rng.uniform(0.0, 0.3))
    joint(3, 0, rng.uniform(0.0, 1.2))  # knees
    joint(4, 0, rng.uniform(0.0, 1.2))
    joint(2, 1, rng.uniform(-0.4, 0.4))  # spine twist and bend
    joint(5, 0, rng.uniform(-0.2, 0.3))
    joint(14, 1, rng.uniform(-0.5, 0.5))  # head turn
    return pose


def _write_thuman_scan(out: Path, uid: str, rng: np.random.Generator, smplx_arrays: dict,
                       layout: _BodyLayout, sizes: StandinProfile = PROFILES["demo"],
                       pose_rng: np.random.Generator | None = None, person: str | None = None) -> None:
    """One scan. With `pose_rng` the body pose is drawn from it (`varied_body_pose`) after `rng`'s draws, which
    are made as for a standing scan: so a pose variant of a person (the same `rng`) is that person in another pose."""
    import trimesh

    from model.bodies.smplx_body import THUMAN_SMPLX_KWARGS as K

    betas = rng.normal(scale=0.7, size=10)
    body_pose = rng.normal(scale=0.05, size=63)
    body_pose[15 * 3 + 2] = -rng.uniform(0.9, 1.3)  # left shoulder down
    body_pose[16 * 3 + 2] = rng.uniform(0.9, 1.3)  # right shoulder down
    body_pose[17 * 3 + 1] = -rng.uniform(0.1, 0.6)  # elbows
    body_pose[18 * 3 + 1] = rng.uniform(0.1, 0.6)
    body_pose[3 * 3] = rng.uniform(0.0, 0.3)  # knees
    body_pose[4 * 3] = rng.uniform(0.0, 0.3)
    params = {"betas": betas, "global_orient": np.array([rng.normal(scale=0.05), rng.uniform(-np.pi, np.pi),
                                                         rng.normal(scale=0.05)]),
              "body_pose": body_pose, "left_hand_pose": rng.normal(scale=0.5, size=12),
              "right_hand_pose": rng.normal(scale=0.5, size=12), "jaw_pose": np.array([rng.uniform(0, 0.15), 0, 0]),
              "leye_pose": np.zeros(3), "reye_pose": np.zeros(3), "expression": rng.normal(scale=0.5, size=10)}
    if pose_rng is not None:
        params["body_pose"] = varied_body_pose(pose_rng)
    verts = smplx_forward(smplx_arrays, params, num_betas=K["num_betas"], num_expression=K["num_expression_coeffs"],
                          num_pca=K["num_pca_comps"], flat_hand_mean=K["flat_hand_mean"])
    faces = np.asarray(smplx_arrays["f"]).astype(np.int64)
    scale = float(rng.uniform(0.3, 0.8))
    translation = np.array([rng.uniform(-0.046, 0.067), rng.uniform(0.057, 0.262), rng.uniform(-0.08, 0.038)])
    normals = pm.vertex_normals(verts, faces)
    noise = rng.normal(scale=0.0008, size=verts.shape)
    scan_y_up = (verts + normals * layout.offset[:, None] + noise) * scale + translation
    fit_y_up = verts * scale + translation
    z_up = int(uid) >= frames.THUMAN_Z_UP_FROM_UID
    if person is not None and z_up != (int(person) >= frames.THUMAN_Z_UP_FROM_UID):
        raise ValueError(f"pose variant {uid} would be written in another up axis than its person {person}")
    sdir = out / "thuman" / "model" / uid
    sdir.mkdir(parents=True)
    scan_faces, uv, uv_faces = faces, layout.uv, layout.uv_faces
    if sizes.thuman_subdivisions:  # a THuman-2.1-sized scan: each face split in 4, texture coordinates alike
        scan_y_up, scan_faces, uv, uv_faces = subdivide_textured(scan_y_up, faces, uv, uv_faces,
                                                                 sizes.thuman_subdivisions)
    write_obj(sdir / f"{uid}.obj", Mesh(frames.y_up_to_thuman_file(scan_y_up, uid), scan_faces, uv, uv_faces,
                                        material_file="material0.mtl"))
    (sdir / "material0.mtl").write_text(
        "# https://github.com/mikedh/trimesh\nnewmtl material0\nKa 1.00000000 1.00000000 1.00000000\n"
        "Kd 1.00000000 1.00000000 1.00000000\nKs 0.40000000 0.40000000 0.40000000\nNs 0.00000000\n"
        "map_Kd material0.jpeg\n")
    write_jpeg(sdir / "material0.jpeg", body_texture(layout.tile_kinds, layout.tiles, Appearance.sample(rng),
                                                     sizes.thuman_texture))
    fdir = out / "thuman" / "smplx" / uid
    fdir.mkdir(parents=True)
    fit = {k: v[None].astype(np.float32) for k, v in params.items()}
    fit["scale"] = trimesh.caching.tracked_array(np.array(scale))
    fit["translation"] = trimesh.caching.tracked_array(translation)
    dump_numpy1_pickle(fit, fdir / "smplx_param.pkl")
    write_obj(fdir / "mesh_smplx.obj", Mesh(frames.y_up_to_thuman_file(fit_y_up, uid), faces))
    gt = out / "ground_truth" / "thuman"
    gt.mkdir(parents=True, exist_ok=True)
    np.savez(gt / f"{uid}.npz", **params, scale=scale, translation=translation, up_axis="z" if z_up else "y",
             smplx_vertices_scan_frame=fit_y_up, **({"person": person} if person else {}))


def _tile_kinds(mesh: "body.BodyMesh") -> list[str]:
    """Kind of each atlas tile, from the vertices that carry it."""
    kinds = []
    for tile in mesh.uv_tile:
        inside = np.all((mesh.uv >= tile[:2]) & (mesh.uv <= tile[:2] + tile[2:]), axis=1)
        tex_ids = np.where(inside)[0]
        face = np.where(np.isin(mesh.uv_faces, tex_ids).any(1))[0][0]
        kinds.append(body.KINDS[mesh.part_kind[mesh.faces[face, 0]]])
    return kinds
