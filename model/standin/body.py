"""A procedural SMPL-X-format body: 55 joints with SMPL-X's kinematic tree, skinned tube and ellipsoid parts.

Built so that `smplx.SMPLX` loads the written `.npz` unmodified and runs forward(): more than 9,930 vertices, the
special keypoint vertex ids (nose, eyes, ears, toes, heels, fingertips) moved onto the matching anatomy, 400
shape/expression columns (v1.1 layout, 10 + 10 non-zero), 486 pose-corrective columns (zero) and PCA hand bases.
Units: metres, y up, +z forward, T-pose. Everything is deterministic, and the same bits on every CPU: the arithmetic
goes through `model.portable_math` (no BLAS or LAPACK, no CPU-specific sin / exp kernels).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from model import portable_math as pm
from model.bodies.smplx_body import SMPLX_PARENTS

N_BETAS = 10
N_EXPR = 10
MIN_VERTICES = 9930  # smplx.SMPLX's hard-wired keypoint ids go up to 9929

_FINGERS = ("index", "middle", "pinky", "ring", "thumb")
_FINGER_OFFSETS = {"index": (0.088, 0.0, 0.026), "middle": (0.094, 0.0, 0.006), "pinky": (0.078, 0.0, -0.034),
                   "ring": (0.088, 0.0, -0.014), "thumb": (0.025, -0.012, 0.032)}
_FINGER_DIRS = {"index": (1, 0, 0.05), "middle": (1, 0, 0), "pinky": (1, 0, -0.08), "ring": (1, 0, -0.04),
                "thumb": (0.6, -0.1, 0.8)}
_PHALANX = 0.03


def rest_joints(params: np.ndarray | None = None) -> np.ndarray:
    """(55, 3) rest joint positions for shape parameters `params` (N_BETAS,), SMPL-X joint order."""
    p = np.zeros(N_BETAS) if params is None else np.asarray(params, float)
    height, _girth, shoulder, leg, arm, _belly, head, _thick, hip, _chest = p
    s_up = 1 + 0.04 * height
    j = np.zeros((55, 3))
    hip_x = 0.09 * (1 + 0.08 * hip)
    knee_y, ankle_y = -0.48 * (1 + 0.05 * leg + 0.03 * height), -0.88 * (1 + 0.05 * leg + 0.03 * height)
    j[1], j[2] = [hip_x, -0.08, 0.0], [-hip_x, -0.08, 0.0]
    j[3], j[6], j[9] = [0, 0.11 * s_up, -0.01], [0, 0.24 * s_up, 0.0], [0, 0.30 * s_up, 0.01]
    j[4], j[5] = [hip_x + 0.01, knee_y, 0.01], [-hip_x - 0.01, knee_y, 0.01]
    j[7], j[8] = [hip_x + 0.01, ankle_y, -0.03], [-hip_x - 0.01, ankle_y, -0.03]
    j[10], j[11] = [hip_x + 0.02, ankle_y - 0.05, 0.09], [-hip_x - 0.02, ankle_y - 0.05, 0.09]
    j[12] = [0, 0.50 * s_up, -0.01]
    sh = 0.18 * (1 + 0.08 * shoulder)
    j[13], j[14] = [0.07, 0.42 * s_up, 0.0], [-0.07, 0.42 * s_up, 0.0]
    j[15] = [0, 0.58 * s_up, 0.02]
    j[16], j[17] = [sh, 0.43 * s_up, -0.01], [-sh, 0.43 * s_up, -0.01]
    upper, fore = 0.26 * (1 + 0.05 * arm), 0.24 * (1 + 0.05 * arm)
    j[18], j[19] = j[16] + [upper, 0, -0.01], j[17] + [-upper, 0, -0.01]
    j[20], j[21] = j[18] + [fore, 0, 0.01], j[19] + [-fore, 0, 0.01]
    hs = 1 + 0.05 * head
    j[22] = j[15] + np.array([0, 0.02, 0.03]) * hs
    j[23], j[24] = j[15] + np.array([0.03, 0.08, 0.085]) * hs, j[15] + np.array([-0.03, 0.08, 0.085]) * hs
    for side, (wrist, base) in enumerate(((20, 25), (21, 40))):
        sign = 1.0 if side == 0 else -1.0
        for f, name in enumerate(_FINGERS):
            d = np.array(_FINGER_DIRS[name], float) * [sign, 1, 1]
            d /= pm.norm(d)
            start = j[wrist] + np.array(_FINGER_OFFSETS[name]) * [sign, 1, 1]
            for k in range(3):
                j[base + 3 * f + k] = start + d * _PHALANX * k
    return j


def _fingertip(joints: np.ndarray, last: int, prev: int) -> np.ndarray:
    d = joints[last] - joints[prev]
    return joints[last] + d / pm.norm(d) * 0.025


@dataclass
class _Part:
    vertices: np.ndarray
    faces: np.ndarray
    uv: np.ndarray
    uv_faces: np.ndarray
    weights: np.ndarray  # (n, 55)
    kind: str  # texture region: shirt, skin, pants, shoes, head


def _frame(axis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ref = np.array([0.0, 0.0, 1.0]) if abs(axis[2]) < 0.9 else np.array([0.0, 1.0, 0.0])
    e1 = pm.cross(axis, ref)
    e1 /= pm.norm(e1)
    return e1, pm.cross(axis, e1)


def _tube(path: np.ndarray, radii: np.ndarray, n_around: int, kind: str,
          joint_weights: np.ndarray) -> _Part:
    """A closed tube through `path` (K, 3) with elliptical radii (K, 2) and caps; weights (K, 55) per ring."""
    k = len(path)
    axis = path[-1] - path[0]
    axis /= pm.norm(axis)
    e1, e2 = _frame(axis)
    ang = np.arange(n_around) / n_around * 2 * np.pi
    rings = (path[:, None, :] + radii[:, None, 0:1] * pm.cos(ang)[None, :, None] * e1
             + radii[:, None, 1:2] * pm.sin(ang)[None, :, None] * e2)
    cap0 = path[0] - axis * 0.6 * radii[0].min()
    cap1 = path[-1] + axis * 0.6 * radii[-1].min()
    verts = np.concatenate([[cap0], rings.reshape(-1, 3), [cap1]])
    vid = lambda i, a: 1 + i * n_around + (a % n_around)  # noqa: E731
    tid = lambda i, a: i * (n_around + 1) + a  # noqa: E731
    faces, uvf = [], []
    n_uv_grid = k * (n_around + 1)
    for a in range(n_around):
        faces.append([0, vid(0, a + 1), vid(0, a)])
        uvf.append([n_uv_grid, tid(0, a + 1), tid(0, a)])
        faces.append([len(verts) - 1, vid(k - 1, a), vid(k - 1, a + 1)])
        uvf.append([n_uv_grid + 1, tid(k - 1, a), tid(k - 1, a + 1)])
        for i in range(k - 1):
            faces += [[vid(i, a), vid(i, a + 1), vid(i + 1, a)], [vid(i, a + 1), vid(i + 1, a + 1), vid(i + 1, a)]]
            uvf += [[tid(i, a), tid(i, a + 1), tid(i + 1, a)], [tid(i, a + 1), tid(i + 1, a + 1), tid(i + 1, a)]]
    u, v = np.meshgrid(np.arange(n_around + 1) / n_around, np.arange(k) / max(k - 1, 1))
    uv = np.concatenate([np.stack([u.ravel(), v.ravel()], -1), [[0.5, 0.0], [0.5, 1.0]]])
    faces_a = np.asarray(faces, np.int64)
    uvf_a = np.asarray(uvf, np.int64)
    centre = verts.mean(0)
    v0, v1, v2 = (verts[faces_a[:, c]] for c in range(3))
    if np.mean(np.sum(pm.cross(v1 - v0, v2 - v0) * (v0 - centre), 1)) < 0:
        faces_a, uvf_a = faces_a[:, [0, 2, 1]], uvf_a[:, [0, 2, 1]]
    w = np.concatenate([joint_weights[:1], np.repeat(joint_weights, n_around, 0), joint_weights[-1:]])
    return _Part(verts, faces_a, uv, uvf_a, w, kind)


def _onehot_blend(k: int, joint: int, parent: int | None, child: int | None) -> np.ndarray:
    """Per-ring weights along a bone: mostly `joint`, blended with the parent at the start and the child at the end."""
    t = np.linspace(0, 1, k)
    w = np.zeros((k, 55))
    wp = 0.5 * np.clip(1 - t / 0.2, 0, 1) if parent is not None and parent >= 0 else np.zeros(k)
    wc = 0.5 * np.clip((t - 0.8) / 0.2, 0, 1) if child is not None else np.zeros(k)
    w[:, joint] = 1 - wp - wc
    if parent is not None and parent >= 0:
        w[:, parent] += wp
    if child is not None:
        w[:, child] += wc
    return w


def _build_parts(params: np.ndarray) -> list[_Part]:
    p = np.asarray(params, float)
    girth, belly, thick, chest = 1 + 0.06 * p[1], 0.012 * p[5], 1 + 0.06 * p[7], 1 + 0.05 * p[9]
    head_s = 1 + 0.05 * p[6]
    j = rest_joints(p)
    parts: list[_Part] = []
    # torso: pelvis .. neck along the spine, elliptical sections
    ys = np.linspace(-0.16, j[12, 1], 56)
    spine_y = [j[0, 1], j[3, 1], j[6, 1], j[9, 1], j[12, 1]]
    spine_ids = [0, 3, 6, 9, 12]
    rx = np.interp(ys, [-0.16, -0.05, 0.12, 0.25, 0.36, 0.44, j[12, 1]], [0.13, 0.165, 0.135, 0.155, 0.17, 0.12, 0.06])
    rz = np.interp(ys, [-0.16, -0.05, 0.12, 0.25, 0.36, 0.44, j[12, 1]], [0.09, 0.11, 0.10, 0.11, 0.105, 0.08, 0.055])
    rz = rz + belly * pm.exp(-((ys - 0.1) / 0.08) ** 2)
    radii = np.stack([rx * girth * (1 + 0.04 * p[8] * (ys < 0)), rz * girth * chest], -1)
    path = np.stack([np.zeros_like(ys), ys, np.interp(ys, spine_y, j[spine_ids, 2])], -1)
    w = np.zeros((len(ys), 55))
    for i, y in enumerate(ys):
        seg = np.clip(np.searchsorted(spine_y, y) - 1, 0, 3)
        t = np.clip((y - spine_y[seg]) / (spine_y[seg + 1] - spine_y[seg]), 0, 1)
        w[i, spine_ids[seg]] += 1 - t
        w[i, spine_ids[seg + 1]] += t
    parts.append(_tube(path, radii[:, [0, 1]], 56, "shirt", w))
    # neck and head
    parts.append(_tube(np.linspace(j[12], j[15] + [0, 0.02, 0], 8), np.full((8, 2), 0.052 * girth), 24, "skin",
                       _onehot_blend(8, 12, 9, 15)))
    head_c = j[15] + np.array([0, 0.075, 0.01]) * head_s
    k_head = 30
    ys_h = pm.cos(np.linspace(0.05, np.pi - 0.05, k_head))
    hpath = head_c + np.outer(-ys_h, [0, 0.115 * head_s, 0])[::-1]
    hrad = np.sqrt(np.clip(1 - ys_h[::-1] ** 2, 0, 1))[:, None] * np.array([0.08, 0.095]) * head_s
    hw = np.zeros((k_head, 55))
    hw[:, 15] = 1.0
    head = _tube(hpath, hrad, 40, "head", hw)
    # jaw and eyes: vertices of the lower front face / eye spots follow those joints
    rel = head.vertices - head_c
    jaw = (rel[:, 1] < -0.03) & (rel[:, 2] > 0.02)
    head.weights[jaw] = 0.0
    head.weights[jaw, 22] = 1.0
    for eye in (23, 24):
        near = pm.norm(head.vertices - (j[eye] + [0, 0, 0.0]), axis=1) < 0.02
        head.weights[near] = 0.0
        head.weights[near, eye] = 1.0
    parts.append(head)
    # arms, hands, legs, feet
    for side in (0, 1):
        sh, el, wr, col = (16, 18, 20, 13) if side == 0 else (17, 19, 21, 14)
        parts.append(_tube(np.linspace(j[sh], j[el], 16), np.linspace([0.05, 0.048], [0.04, 0.038], 16) * thick,
                           20, "shirt", _onehot_blend(16, sh, col, el)))
        parts.append(_tube(np.linspace(j[el], j[wr], 16), np.linspace([0.04, 0.038], [0.03, 0.026], 16) * thick,
                           20, "skin", _onehot_blend(16, el, sh, wr)))
        palm_end = j[wr] + (j[wr] - j[el]) / pm.norm(j[wr] - j[el]) * 0.085
        parts.append(_tube(np.linspace(j[wr], palm_end, 8), np.tile([0.042, 0.016], (8, 1)), 16, "skin",
                           _onehot_blend(8, wr, el, None)))
        base = 25 if side == 0 else 40
        for f in range(5):
            ids = [base + 3 * f + k for k in range(3)]
            for k, jid in enumerate(ids):
                end = j[ids[k + 1]] if k < 2 else _fingertip(j, ids[2], ids[1])
                r = 0.009 if _FINGERS[f] != "thumb" else 0.011
                parts.append(_tube(np.linspace(j[jid], end, 5), np.full((5, 2), r), 10, "skin",
                                   _onehot_blend(5, jid, wr if k == 0 else ids[k - 1], None)))
        hp, kn, an, ft = (1, 4, 7, 10) if side == 0 else (2, 5, 8, 11)
        parts.append(_tube(np.linspace(j[hp], j[kn], 22), np.linspace([0.085, 0.08], [0.055, 0.055], 22) * thick,
                           26, "pants", _onehot_blend(22, hp, 0, kn)))
        parts.append(_tube(np.linspace(j[kn], j[an], 22), np.linspace([0.053, 0.053], [0.035, 0.035], 22) * thick,
                           24, "pants", _onehot_blend(22, kn, hp, an)))
        toe = j[ft] + [0, -0.005, 0.07]
        heel = j[an] + [0, -0.06, -0.05]
        parts.append(_tube(np.linspace(heel, toe, 12), np.tile([0.04, 0.03], (12, 1)), 20, "shoes",
                           _onehot_blend(12, an, kn, ft)))
    return parts


@dataclass(frozen=True)
class BodyMesh:
    vertices: np.ndarray
    faces: np.ndarray
    uv: np.ndarray
    uv_faces: np.ndarray
    weights: np.ndarray
    part_kind: np.ndarray  # (V,) index into KINDS
    uv_tile: np.ndarray  # (n_parts, 4) atlas rectangles


KINDS = ("shirt", "skin", "pants", "shoes", "head")


def build_body_mesh(params: np.ndarray | None = None) -> BodyMesh:
    """Concatenate all parts; each part's UVs are packed into its own tile of a square texture atlas."""
    parts = _build_parts(np.zeros(N_BETAS) if params is None else params)
    n = len(parts)
    cols = int(np.ceil(np.sqrt(n)))
    verts, faces, uvs, uvf, weights, kinds, tiles = [], [], [], [], [], [], []
    v_off = t_off = 0
    for i, part in enumerate(parts):
        r, c = divmod(i, cols)
        tile = np.array([c / cols, r / cols, 1 / cols, 1 / cols])
        pad = 0.04 * tile[2]
        uvs.append(tile[:2] + pad + part.uv * (tile[2:] - 2 * pad))
        verts.append(part.vertices)
        faces.append(part.faces + v_off)
        uvf.append(part.uv_faces + t_off)
        weights.append(part.weights)
        kinds.append(np.full(len(part.vertices), KINDS.index(part.kind)))
        tiles.append(tile)
        v_off += len(part.vertices)
        t_off += len(part.uv)
    w = np.concatenate(weights)
    return BodyMesh(np.concatenate(verts), np.concatenate(faces), np.concatenate(uvs), np.concatenate(uvf),
                    w / w.sum(1, keepdims=True), np.concatenate(kinds), np.stack(tiles))


def keypoint_targets(joints: np.ndarray, mesh: BodyMesh) -> dict[str, np.ndarray]:
    """Where smplx's hard-wired keypoint vertices should sit on this body (names as in smplx.vertex_ids)."""
    head = joints[15] + [0, 0.075, 0.01]
    t = {"nose": head + [0, 0.0, 0.1], "reye": joints[24] + [0, 0, 0.01], "leye": joints[23] + [0, 0, 0.01],
         "rear": head + [-0.085, 0.0, 0.0], "lear": head + [0.085, 0.0, 0.0],
         "LBigToe": joints[10] + [0.01, -0.01, 0.1], "LSmallToe": joints[10] + [0.04, -0.01, 0.08],
         "LHeel": joints[7] + [0, -0.07, -0.07], "RBigToe": joints[11] + [-0.01, -0.01, 0.1],
         "RSmallToe": joints[11] + [-0.04, -0.01, 0.08], "RHeel": joints[8] + [0, -0.07, -0.07]}
    for side, base, prefix in ((0, 25, "l"), (1, 40, "r")):
        for f, name in enumerate(_FINGERS):
            t[f"{prefix}{name}"] = _fingertip(joints, base + 3 * f + 2, base + 3 * f + 1)
    return t


def keypoint_permutation(mesh: BodyMesh, joints: np.ndarray) -> np.ndarray:
    """A vertex order that puts the vertex nearest each keypoint target at smplx's hard-wired index."""
    from smplx.vertex_ids import vertex_ids

    ids = vertex_ids["smplx"]
    order = np.arange(len(mesh.vertices))
    used: set[int] = set()
    for name, target in keypoint_targets(joints, mesh).items():
        if name not in ids:
            continue
        slot = int(ids[name])
        dist = pm.norm(mesh.vertices[order] - target, axis=1)
        dist[list(used)] = np.inf
        cur = int(np.argmin(dist))  # position in the current order
        order[[slot, cur]] = order[[cur, slot]]
        used.add(slot)
    return order


_GENDER_PARAMS = {"neutral": np.zeros(N_BETAS),
                  "male": np.array([0.8, 0.3, 1.0, 0.3, 0.3, 0.0, 0.3, 0.4, -0.5, 0.4]),
                  "female": np.array([-0.8, -0.3, -1.0, -0.2, -0.3, 0.0, -0.3, -0.4, 1.0, -0.2])}


def build_smplx_arrays(gender: str = "neutral", seed: int = 0) -> dict[str, np.ndarray]:
    """Every array of a `SMPLX_{GENDER}.npz` (v1.1 key layout) for the procedural body."""
    from model.standin.rigging import embed_points, regressor_for
    from model.standin.head import LANDMARKS_ANGLES, direction_of

    rng = np.random.default_rng(seed)
    base_params = _GENDER_PARAMS[gender]
    mesh = build_body_mesh(base_params)
    joints = rest_joints(base_params)
    order = keypoint_permutation(mesh, joints)
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))
    verts = mesh.vertices[order]
    faces = inverse[mesh.faces]
    v = len(verts)
    if v < MIN_VERTICES:
        raise AssertionError(f"procedural body has {v} vertices; smplx needs at least {MIN_VERTICES}")
    shapedirs = np.zeros((v, 3, 400))
    eps = 1e-3
    for i in range(N_BETAS):
        step = base_params.copy()
        step[i] += eps
        shapedirs[:, :, i] = (build_body_mesh(step).vertices[order] - verts) / eps
    # expression: jaw drop, smile, lips forward on the face (vertices weighted to the jaw / head front)
    head_c = joints[15] + np.array([0, 0.075, 0.01])
    rel = verts - head_c
    face_front = np.clip(rel[:, 2] / 0.1, 0, 1) * (pm.norm(rel, axis=1) < 0.13)
    lower = face_front * np.clip(-rel[:, 1] / 0.05, 0, 1)
    shapedirs[:, 1, 300] = -0.01 * lower
    shapedirs[:, 1, 301] = 0.004 * face_front * pm.exp(-((rel[:, 1] + 0.03) / 0.02) ** 2) * np.abs(rel[:, 0]) / 0.04
    shapedirs[:, 2, 302] = 0.004 * face_front * pm.exp(-((rel[:, 1] + 0.03) / 0.02) ** 2)
    kintree = np.stack([SMPLX_PARENTS.copy(), np.arange(55)])
    kintree[0, 0] = 4294967295  # as in the released files (uint32 -1)
    lmk_points = head_c + direction_of(LANDMARKS_ANGLES[17:, 0], LANDMARKS_ANGLES[17:, 1]) * [0.08, 0.115, 0.095]
    lmk_f, lmk_b = embed_points(verts, faces, lmk_points)
    contour = head_c + direction_of(LANDMARKS_ANGLES[:17, 0], LANDMARKS_ANGLES[:17, 1]) * [0.08, 0.115, 0.095]
    c_f, c_b = embed_points(verts, faces, contour)
    comps = pm.orthonormal_columns(rng.normal(size=(45, 45)))
    mean_l = np.tile([0.0, 0.0, 0.15], 15)
    return {
        "v_template": verts, "f": faces.astype(np.int32), "shapedirs": shapedirs,
        "posedirs": np.zeros((v, 3, 486)), "J_regressor": regressor_for(verts, joints, k=24),
        "weights": mesh.weights[order], "kintree_table": kintree,
        "hands_componentsl": comps, "hands_componentsr": comps.copy(),
        "hands_meanl": mean_l, "hands_meanr": mean_l * np.tile([1.0, -1.0, -1.0], 15),
        "hands_coeffsl": rng.normal(scale=0.3, size=(64, 45)), "hands_coeffsr": rng.normal(scale=0.3, size=(64, 45)),
        "lmk_faces_idx": lmk_f, "lmk_bary_coords": lmk_b,
        "dynamic_lmk_faces_idx": np.tile(c_f, (79, 1)), "dynamic_lmk_bary_coords": np.tile(c_b, (79, 1, 1)),
        "vt": mesh.uv, "ft": mesh.uv_faces,
        "joint2num": np.array({f"joint_{i}": i for i in range(55)}, dtype=object),
        "part2num": np.array({k: i for i, k in enumerate(KINDS)}, dtype=object),
        "allow_pickle": np.array(True),
    }
