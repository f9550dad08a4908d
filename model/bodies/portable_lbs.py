"""FLAME and SMPL-X forwards in portable float64 numpy: what the synthetic stand-in poses its heads and bodies with.

The stand-in must be the same bytes for a seed on every CPU. The torch forwards (`FlameLayer`, `smplx.SMPLX`) give
results that depend on the kernels torch picks for the CPU (`ATEN_CPU_CAPABILITY`, MKL) and on the thread count, so
the generator uses these instead: the same formulas as `smplx.lbs` (blend shapes, joint regression, Rodrigues,
kinematic chain, skinning, barycentric and dynamic-contour landmarks), evaluated with `model.portable_math` (einsum
reductions, no BLAS, portable sin/cos/atan2). Tests check them against the torch forwards to 1e-12. Fitting and
everything differentiable keeps using torch.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from model import portable_math as pm
from model.bodies.flame import FlameLandmarkEmbedding, FlameModelData


def lbs(betas: np.ndarray, pose: np.ndarray, v_template: np.ndarray, shapedirs: np.ndarray, posedirs: np.ndarray,
        j_regressor: np.ndarray, parents: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One body: (vertices (V, 3), joints (J, 3)) for betas (L,), axis-angle pose (J*3,), shapedirs (V, 3, L),
    posedirs (P, V*3) as `smplx` stores them (P = (J-1)*9), j_regressor (J, V), parents (J,) and weights (V, J)."""
    v_shaped = np.add(v_template, np.einsum("l,vkl->vk", betas, shapedirs))
    joints = np.einsum("jv,vk->jk", j_regressor, v_shaped)
    rot = pm.rodrigues(np.asarray(pose, np.float64).reshape(-1, 3))
    pose_feature = np.subtract(rot[1:], np.eye(3)).reshape(-1)
    v_posed = np.add(v_shaped, np.einsum("p,pq->q", pose_feature, posedirs).reshape(-1, 3))
    posed_joints, rel = _rigid_transform(rot, joints, parents)
    t = np.einsum("vj,jab->vab", weights, rel)
    verts = np.add(np.einsum("vab,vb->va", t[:, :3, :3], v_posed), t[:, :3, 3])
    return verts, posed_joints


def _rigid_transform(rot: np.ndarray, joints: np.ndarray, parents: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """smplx.lbs.batch_rigid_transform for one body: posed joints and the joints' relative 4x4 transforms."""
    rel_joints = joints.copy()
    rel_joints[1:] = np.subtract(joints[1:], joints[parents[1:]])
    local = np.zeros((len(joints), 4, 4))
    local[:, :3, :3], local[:, :3, 3], local[:, 3, 3] = rot, rel_joints, 1.0
    chain = [local[0]]
    for i in range(1, len(parents)):
        chain.append(pm.matmul(chain[parents[i]], local[i]))
    transforms = np.stack(chain)
    posed = transforms[:, :3, 3].copy()
    offset = np.einsum("jab,jb->ja", transforms[:, :3, :3], joints)
    rel = transforms.copy()
    rel[:, :3, 3] = np.subtract(transforms[:, :3, 3], offset)
    return posed, rel


def _coefficients(values: np.ndarray | None, n: int) -> np.ndarray:
    out = np.zeros(n)
    if values is not None:
        v = np.asarray(values, np.float64).reshape(-1)
        out[:min(len(v), n)] = v[:n]
    return out


def flame_forward(model: FlameModelData, params: Mapping[str, np.ndarray],
                  landmarks: FlameLandmarkEmbedding | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """(vertices (V, 3), 68 landmarks or None): what `FlameLayer` computes for one set of parameters (shape,
    expression, global_orient, neck_pose, jaw_pose, eye_pose, transl; each optional)."""
    betas = np.concatenate([_coefficients(params.get("shape"), model.n_shape),
                            _coefficients(params.get("expression"), model.n_expression)])
    pose = np.concatenate([_coefficients(params.get(k), n) for k, n in
                           (("global_orient", 3), ("neck_pose", 3), ("jaw_pose", 3), ("eye_pose", 6))])
    v = model.num_vertices
    posedirs = model.posedirs.reshape(v * 3, -1).T
    verts, _ = lbs(betas, pose, model.v_template, model.shapedirs, posedirs, model.j_regressor, model.parents,
                   model.weights)
    if params.get("transl") is not None:
        verts = np.add(verts, _coefficients(params["transl"], 3))
    if landmarks is None:
        return verts, None
    row = _contour_row(pose)
    faces = np.concatenate([landmarks.dynamic_faces[row], landmarks.static_faces])
    bary = np.concatenate([landmarks.dynamic_bary[row], landmarks.static_bary])
    return verts, barycentric_points(verts, model.faces, faces, bary)


def _contour_row(pose: np.ndarray) -> int:
    """The dynamic-contour table row for the neck chain's yaw, as smplx.lbs.find_dynamic_lmk_idx_and_bcoords."""
    rot = pm.rodrigues(pose.reshape(-1, 3)[[1, 0]])
    rel = pm.matmul(rot[1], rot[0])  # bmm(R_root, bmm(R_neck, I))
    sy = np.sqrt(np.add(np.multiply(rel[0, 0], rel[0, 0]), np.multiply(rel[1, 0], rel[1, 0])))
    yaw = float(pm.arctan2(-rel[2, 0], sy))
    angle = int(np.round(min(-yaw * 180.0 / np.pi, 39.0)))
    if angle < 0:
        angle = 78 if angle < -39 else 39 - angle
    return angle


def barycentric_points(vertices: np.ndarray, faces: np.ndarray, face_idx: np.ndarray, bary: np.ndarray
                       ) -> np.ndarray:
    """Points given by face indices and barycentric coordinates (smplx.lbs.vertices2landmarks)."""
    return np.einsum("lfi,lf->li", vertices[faces[np.asarray(face_idx, np.int64)]], np.asarray(bary, np.float64))


def smplx_forward(arrays: Mapping[str, np.ndarray], params: Mapping[str, np.ndarray], num_betas: int = 10,
                  num_expression: int = 10, num_pca: int = 12, flat_hand_mean: bool = False) -> np.ndarray:
    """Vertices (V, 3) of `smplx.SMPLX(use_pca=True, num_pca_comps=num_pca, flat_hand_mean=...)` built from the
    arrays of a SMPL-X `.npz`, for betas, expression, global_orient, body_pose, jaw_pose, leye_pose, reye_pose and
    left/right_hand_pose (PCA coefficients); no translation."""
    shapedirs = np.asarray(arrays["shapedirs"], np.float64)
    start = 300 if shapedirs.shape[-1] >= 400 else 10  # smplx's SHAPE_SPACE_DIM, or an SMPL+H-sized basis
    dirs = np.concatenate([shapedirs[:, :, :num_betas], shapedirs[:, :, start:start + num_expression]], -1)
    betas = np.concatenate([_coefficients(params.get("betas"), num_betas),
                            _coefficients(params.get("expression"), num_expression)])
    hands = []
    for side in "lr":
        comps = np.asarray(arrays[f"hands_components{side}"], np.float64)[:num_pca]
        pose = pm.matmul(_coefficients(params.get(f"{'left' if side == 'l' else 'right'}_hand_pose"), num_pca), comps)
        mean = np.zeros(45) if flat_hand_mean else np.asarray(arrays[f"hands_mean{side}"], np.float64)
        hands.append(np.add(pose, mean))
    pose = np.concatenate([_coefficients(params.get("global_orient"), 3), _coefficients(params.get("body_pose"), 63),
                           _coefficients(params.get("jaw_pose"), 3), _coefficients(params.get("leye_pose"), 3),
                           _coefficients(params.get("reye_pose"), 3), *hands])
    v = len(arrays["v_template"])
    posedirs = np.asarray(arrays["posedirs"], np.float64).reshape(-1, np.asarray(arrays["posedirs"]).shape[-1]).T
    parents = np.asarray(arrays["kintree_table"][0]).astype(np.int64)
    parents[0] = -1
    verts, _ = lbs(betas, pose, np.asarray(arrays["v_template"], np.float64), dirs, posedirs.reshape(-1, v * 3),
                   np.asarray(arrays["J_regressor"], np.float64), parents, np.asarray(arrays["weights"], np.float64))
    return verts
