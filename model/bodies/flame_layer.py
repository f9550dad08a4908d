"""FLAME as a torch module: vertices, joints and 68 landmarks for batched parameters.

It reuses `smplx.lbs` (blend shapes, linear blend skinning, barycentric landmarks and the dynamic contour look-up),
so it computes exactly what `smplx.FLAME` computes, from the arrays `model.bodies.flame` reads.
"""
from __future__ import annotations

import numpy as np
import torch
from smplx.lbs import (batch_rigid_transform, batch_rodrigues, blend_shapes, find_dynamic_lmk_idx_and_bcoords, lbs,
                       vertices2landmarks)

from model.bodies.flame import FlameLandmarkEmbedding, FlameModelData, FlameOutput


class FlameLayer(torch.nn.Module):
    """forward(shape (B,n_shape'), expression (B,n_expr'), global_orient (B,3), neck_pose (B,3), jaw_pose (B,3),
    eye_pose (B,6), transl (B,3)); every argument is optional (zeros) and the coefficient tensors may be shorter
    than the model's bases (leading components).

    `n_shape` / `n_expression` keep only the leading components of each basis (a fit that uses 100 of FLAME's 300
    shape and 50 of its 100 expression components blends 150 directions, not 400: the dropped ones have zero
    coefficients, so only the summation's rounding changes)."""

    def __init__(self, model: FlameModelData, landmarks: FlameLandmarkEmbedding | None = None,
                 dtype: torch.dtype | None = None, n_shape: int | None = None,
                 n_expression: int | None = None) -> None:
        super().__init__()
        dtype = dtype or torch.float32
        self.n_shape = min(n_shape or model.n_shape, model.n_shape)
        self.n_expression = min(n_expression or model.n_expression, model.n_expression)
        dirs = model.shapedirs[..., np.r_[0:self.n_shape, model.n_shape:model.n_shape + self.n_expression]]
        self.register_buffer("v_template", torch.tensor(model.v_template, dtype=dtype))
        self.register_buffer("shapedirs", torch.tensor(np.ascontiguousarray(dirs), dtype=dtype))
        v = model.num_vertices
        self.register_buffer("posedirs", torch.tensor(model.posedirs.reshape(v * 3, -1).T, dtype=dtype))
        self.register_buffer("J_regressor", torch.tensor(model.j_regressor, dtype=dtype))
        self.register_buffer("lbs_weights", torch.tensor(model.weights, dtype=dtype))
        self.register_buffer("parents", torch.tensor(model.parents, dtype=torch.long))
        self.register_buffer("faces", torch.tensor(model.faces, dtype=torch.long))
        self.has_landmarks = landmarks is not None
        self.has_full = landmarks is not None and landmarks.full_faces is not None
        if landmarks is not None:
            self.register_buffer("static_faces", torch.tensor(landmarks.static_faces, dtype=torch.long))
            self.register_buffer("static_bary", torch.tensor(landmarks.static_bary, dtype=dtype))
            self.register_buffer("dynamic_faces", torch.tensor(landmarks.dynamic_faces, dtype=torch.long))
            self.register_buffer("dynamic_bary", torch.tensor(landmarks.dynamic_bary, dtype=dtype))
            if self.has_full:
                self.register_buffer("full_faces", torch.tensor(landmarks.full_faces, dtype=torch.long))
                self.register_buffer("full_bary", torch.tensor(landmarks.full_bary, dtype=dtype))
        # the neck chain for the dynamic contour: neck joint up to the root
        self.register_buffer("neck_kin_chain", torch.tensor([1, 0], dtype=torch.long))
        if landmarks is not None:
            self._register_landmark_subset()

    @staticmethod
    def _coeffs(x: torch.Tensor | None, n: int, batch: int, ref: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(batch, n, dtype=ref.dtype, device=ref.device)
        if x is not None:
            k = min(x.shape[-1], n)
            out[:, :k] = x[:, :k]
        return out

    def _betas_pose(self, shape, expression, global_orient, neck_pose, jaw_pose, eye_pose, transl):
        given = [t for t in (shape, expression, global_orient, neck_pose, jaw_pose, eye_pose, transl)
                 if t is not None]
        batch = given[0].shape[0] if given else 1
        ref = self.v_template
        betas = torch.cat([self._coeffs(shape, self.n_shape, batch, ref),
                           self._coeffs(expression, self.n_expression, batch, ref)], dim=1)
        zeros3 = torch.zeros(batch, 3, dtype=ref.dtype, device=ref.device)
        pose = torch.cat([
            global_orient if global_orient is not None else zeros3,
            neck_pose if neck_pose is not None else zeros3,
            jaw_pose if jaw_pose is not None else zeros3,
            eye_pose if eye_pose is not None else torch.zeros(batch, 6, dtype=ref.dtype, device=ref.device),
        ], dim=1)
        return batch, betas, pose

    def landmarks(self, shape=None, expression=None, global_orient=None, neck_pose=None, jaw_pose=None,
                  eye_pose=None, transl=None) -> torch.Tensor:
        """The 68 landmarks (B, 68, 3) of `forward`, skinning only the vertices they are interpolated from (~1/10
        of the mesh): joints from the regressor applied to the blend shapes (linear, so J(template + dirs b) =
        J(template) + J(dirs) b), the rest of LBS per kept vertex. Equal to forward().landmarks up to rounding."""
        if not self.has_landmarks:
            raise ValueError("this FLAME layer was built without a landmark embedding")
        sub = {k: getattr(self, f"lmk_{k}") for k in self._LANDMARK_SUBSET}
        batch, betas, pose = self._betas_pose(shape, expression, global_orient, neck_pose, jaw_pose, eye_pose, transl)
        v_shaped = sub["template"] + blend_shapes(betas, sub["shapedirs"])
        joints = sub["j_template"] + blend_shapes(betas, sub["j_dirs"])
        rot_mats = batch_rodrigues(pose.view(-1, 3)).view(batch, -1, 3, 3)
        eye = torch.eye(3, dtype=pose.dtype, device=pose.device)
        pose_feature = (rot_mats[:, 1:] - eye).view(batch, -1)
        v_posed = v_shaped + torch.matmul(pose_feature, sub["posedirs"]).view(batch, -1, 3)
        _, transforms = batch_rigid_transform(rot_mats, joints, self.parents, dtype=pose.dtype)
        t = torch.matmul(sub["weights"], transforms.view(batch, transforms.shape[1], 16)).view(batch, -1, 4, 4)
        vertices = (t[:, :, :3, :3] @ v_posed[..., None])[..., 0] + t[:, :, :3, 3]
        if transl is not None:
            vertices = vertices + transl[:, None]
        faces_idx = self.static_faces.unsqueeze(0).expand(batch, -1)
        bary = self.static_bary.unsqueeze(0).expand(batch, -1, -1)
        dyn_faces, dyn_bary = find_dynamic_lmk_idx_and_bcoords(
            vertices, pose, self.dynamic_faces, self.dynamic_bary, self.neck_kin_chain, pose2rot=True)
        faces_idx = torch.cat([dyn_faces, faces_idx], dim=1).contiguous()
        bary = torch.cat([dyn_bary, bary], dim=1).contiguous()
        return vertices2landmarks(vertices, sub["faces"], faces_idx, bary)

    _LANDMARK_SUBSET = ("template", "shapedirs", "j_template", "j_dirs", "posedirs", "weights", "faces")

    def _register_landmark_subset(self) -> None:
        """What `landmarks` skins, as non-persistent buffers (they follow `.to()`, no state-dict entries)."""
        used = torch.unique(self.faces[torch.cat([self.static_faces.view(-1), self.dynamic_faces.view(-1)])])
        remap = torch.zeros(self.v_template.shape[0], dtype=torch.long)
        remap[used] = torch.arange(len(used))
        n_v, n_pose = self.v_template.shape[0], self.posedirs.shape[0]
        subset = {
            "template": self.v_template[used], "shapedirs": self.shapedirs[used],
            "j_template": self.J_regressor @ self.v_template,
            "j_dirs": torch.einsum("jv,vck->jck", self.J_regressor, self.shapedirs),
            "posedirs": self.posedirs.view(n_pose, n_v, 3)[:, used].reshape(n_pose, -1),
            "weights": self.lbs_weights[used],
            "faces": remap[self.faces]}  # (faces outside the subset are never indexed)
        for key, value in subset.items():
            self.register_buffer(f"lmk_{key}", value.contiguous(), persistent=False)

    def forward(self, shape=None, expression=None, global_orient=None, neck_pose=None, jaw_pose=None,
                eye_pose=None, transl=None) -> FlameOutput:
        batch, betas, pose = self._betas_pose(shape, expression, global_orient, neck_pose, jaw_pose, eye_pose, transl)
        vertices, joints = lbs(betas, pose, self.v_template, self.shapedirs, self.posedirs,
                               self.J_regressor, self.parents, self.lbs_weights, pose2rot=True)
        if transl is not None:
            vertices = vertices + transl[:, None]
            joints = joints + transl[:, None]
        lmk = full = None
        if self.has_landmarks:
            faces_idx = self.static_faces.unsqueeze(0).expand(batch, -1)
            bary = self.static_bary.unsqueeze(0).expand(batch, -1, -1)  # smplx views these: keep contiguous
            dyn_faces, dyn_bary = find_dynamic_lmk_idx_and_bcoords(
                vertices, pose, self.dynamic_faces, self.dynamic_bary, self.neck_kin_chain, pose2rot=True)
            faces_idx = torch.cat([dyn_faces, faces_idx], dim=1).contiguous()
            bary = torch.cat([dyn_bary, bary], dim=1).contiguous()
            lmk = vertices2landmarks(vertices, self.faces, faces_idx, bary)
            if self.has_full:
                full = vertices2landmarks(vertices, self.faces,
                                          self.full_faces.unsqueeze(0).expand(batch, -1).contiguous(),
                                          self.full_bary.unsqueeze(0).expand(batch, -1, -1).contiguous())
        return FlameOutput(vertices, joints, lmk, full)


def build_flame_layer(model: FlameModelData, landmarks: FlameLandmarkEmbedding | None = None,
                      dtype: "torch.dtype | None" = None, n_shape: int | None = None,
                      n_expression: int | None = None) -> FlameLayer:
    """A `FlameLayer`: FLAME vertices, joints and 68 landmarks for batched parameters (model/bodies/flame.py reads
    the files without torch; this module is the part that needs it)."""
    return FlameLayer(model, landmarks, dtype, n_shape, n_expression)
