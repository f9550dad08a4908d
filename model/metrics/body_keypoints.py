"""Body PCK from fitted keypoints: SMPL-X fitted to a generated view set's silhouettes, its joints projected into
every view and compared with the target SMPL-X's projected joints.

Why fitted and not detected: no body keypoint detector is available offline (OpenPose, ViTPose and the like are hub
downloads), and at 64 px a body's limbs are 1-3 px wide, below what such detectors resolve. What a generated view
set does give is 16 silhouettes from cameras whose poses are known, which pins a body down the way multi-view
trackers do: SMPL-X (shape, body pose and a similarity in the model frame) is fitted so that its vertices project
inside every view's silhouette and cover it. The fit starts from SMPL-X's rest pose (a T-pose); only its placement
(a similarity from the torso) comes from the SMPL-X the model was conditioned on, which is model input (on
`wrong_mesh`, another body's), so the limbs must come from the images.

The keypoints are the 14 joints of the LSP convention, regressed from the posed vertices by the model's
J_regressor for the fit and the target alike (the standard evaluation use of the regressor; it commutes with
similarities, its rows summing to one). PCK@0.2 is normalised by the target's 3D torso diameter (left shoulder to
right hip) in pixels, so that side views are not judged more strictly than frontal ones.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

#: LSP's 14 keypoints as SMPL-X joints (the body joints share SMPL's order)
LSP_JOINTS: dict[str, int] = {"r_ankle": 8, "r_knee": 5, "r_hip": 2, "l_hip": 1, "l_knee": 4, "l_ankle": 7,
                              "r_wrist": 21, "r_elbow": 19, "r_shoulder": 17, "l_shoulder": 16, "l_elbow": 18,
                              "l_wrist": 20, "neck": 12, "head": 15}
KEYPOINT_JOINTS = np.array(list(LSP_JOINTS.values()), np.int64)
TORSO_JOINTS = (LSP_JOINTS["l_shoulder"], LSP_JOINTS["r_hip"])  # the LSP torso diameter
PCK_THRESHOLD = 0.2
TORSO_LBS_JOINTS = (0, 3, 6, 9)  # pelvis, spine1-3: vertices skinned to them move rigidly enough for a placement


@dataclass(frozen=True)
class BodyFitConfig:
    """The silhouette fit. Its defaults were chosen on the demo stand-in (tests/model/test_body_keypoints.py): on a
    body's own mesh silhouettes they recover the joints to PCK >= 0.9 from the T-pose."""

    placement_iterations: int = 40  # similarity and shape only
    iterations: int = 160  # then everything
    points: int = 700  # vertices projected per view (an even stride over the mesh)
    coverage_pixels: int = 400  # silhouette pixels per view that must lie near a projected vertex (an even stride)
    lr: float = 0.03
    pose_prior: float = 0.02  # weight of mean(body_pose^2) (radians^2) against the pixel losses
    shape_prior: float = 0.01  # weight of mean(betas^2)


def joints_of(j_regressor: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """(J, 3) joints regressed from posed SMPL-X vertices (V, 3) in any frame."""
    vertices = np.asarray(vertices, np.float64)
    if vertices.shape != (j_regressor.shape[1], 3):
        raise ValueError(f"body keypoints: vertices of shape {vertices.shape}, the SMPL-X model has "
                         f"{j_regressor.shape[1]} vertices; body PCK needs meshes of the SMPL-X topology")
    return np.asarray(j_regressor, np.float64) @ vertices


def project_orthographic(points: np.ndarray, k: np.ndarray, rt: np.ndarray, size: int) -> np.ndarray:
    """(N, P, 2) continuous pixel coordinates (pixel i spans [i, i + 1]) of points (P, 3) at N orthographic
    cameras: K the views' NDC matrices (x_ndc = K[0, 0] x_cam), RT (N, 3, 4) world-to-camera, as the ray caster."""
    points = np.asarray(points, np.float64)
    rt, k = np.asarray(rt, np.float64), np.asarray(k, np.float64)
    cam = np.einsum("nij,pj->npi", rt[:, :3, :3], points) + rt[:, None, :3, 3]
    ndc = cam[..., :2] * np.stack([k[:, 0, 0], k[:, 1, 1]], -1)[:, None]
    return (ndc + 1.0) / 2.0 * size


def torso_pixels(joints: np.ndarray, k: np.ndarray, size: int) -> float:
    """The torso diameter (left shoulder to right hip, in 3D) in pixels of an orthographic view."""
    a, b = TORSO_JOINTS
    return float(np.linalg.norm(joints[a] - joints[b]) * float(np.asarray(k)[0, 0, 0]) / 2.0 * size)


def pck_per_view(pred_px: np.ndarray, gt_px: np.ndarray, torso_px: float,
                 threshold: float = PCK_THRESHOLD) -> np.ndarray:
    """(N,) fraction of keypoints per view whose pixel error is below threshold x the torso diameter."""
    if not np.isfinite(torso_px) or torso_px <= 0:
        return np.full(len(gt_px), np.nan)
    err = np.linalg.norm(np.asarray(pred_px, np.float64) - np.asarray(gt_px, np.float64), axis=-1)
    return (err < threshold * torso_px).mean(-1)


def _similarity(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Umeyama: scale, rotation, translation with dst ~ s R src + t (least squares, no reflection)."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    u, sig, vt = np.linalg.svd(b.T @ a / len(src))
    d = np.eye(3)
    d[2, 2] = np.sign(np.linalg.det(u @ vt)) or 1.0
    rot = u @ d @ vt
    scale = float(np.trace(np.diag(sig) @ d) / (a ** 2).sum(1).mean())
    return scale, rot, mu_d - scale * rot @ mu_s


def _nearest_distance(targets, valid, points):
    """(N, T) distance from each target (N, T, 2; `valid` marks the real ones of a padded batch) to its nearest
    point of the same view (N, P, 2), differentiable in the points. The argmin is found without autograd, by one
    batched product (|p|^2 - 2 t.p ranks the points as the distance does): a dense (T, P) backward would cost 20x
    the forward, and only the chosen pairs need gradients, which are the gradient of the min itself."""
    import torch

    with torch.no_grad():
        rank = torch.baddbmm((points ** 2).sum(-1)[:, None], targets, points.transpose(1, 2), alpha=-2.0)
        nearest = rank.argmin(-1)  # (N, T)
    chosen = torch.gather(points, 1, nearest[..., None].expand(-1, -1, 2))
    return (targets - chosen).norm(dim=-1) * valid


class SubsetLBS:
    """smplx's linear blend skinning (smplx.lbs.lbs) evaluated for a subset of the vertices, with the jaw, eyes and
    hands at the model's mean pose and no expression (what `model(betas=, body_pose=)` returns at those rows). The
    joints still come from the whole shaped mesh (a precomputed regressor of the shape basis), so the subset's
    positions equal the full forward's (tests/model/test_body_keypoints.py); a fit iteration costs ~1/7 of one."""

    def __init__(self, model, index: np.ndarray) -> None:
        import torch

        self.index = torch.as_tensor(np.asarray(index, np.int64))
        idx = self.index
        shapedirs = model.shapedirs.detach()  # (V, 3, betas)
        self.v_template = model.v_template.detach()[idx]
        self.shapedirs = shapedirs[idx]
        j_reg = model.J_regressor.detach()
        self.j_template = j_reg @ model.v_template.detach()
        self.j_shapedirs = torch.einsum("jv,vcb->jcb", j_reg, shapedirs)
        cols = (idx[:, None] * 3 + torch.arange(3)).reshape(-1)
        self.posedirs = model.posedirs.detach()[:, cols]  # (486, 3 P)
        self.weights = model.lbs_weights.detach()[idx]
        self.parents = model.parents
        self.pose_mean = model.pose_mean.detach().reshape(-1)  # (165,): zero for the body, the mean hands

    def __call__(self, betas, body_pose):
        import torch
        from smplx.lbs import batch_rigid_transform, batch_rodrigues

        full = torch.cat([torch.zeros(3), body_pose.reshape(-1), torch.zeros(len(self.pose_mean) - 66)]) \
            + self.pose_mean
        rots = batch_rodrigues(full.reshape(-1, 3))  # (55, 3, 3)
        b = betas.reshape(-1)
        v_shaped = self.v_template + torch.einsum("pcb,b->pc", self.shapedirs, b)
        joints = self.j_template + torch.einsum("jcb,b->jc", self.j_shapedirs, b)
        feature = (rots[1:] - torch.eye(3)).reshape(1, -1)
        v_posed = v_shaped + (feature @ self.posedirs).reshape(-1, 3)
        _, transforms = batch_rigid_transform(rots[None], joints[None], self.parents)
        t = (self.weights @ transforms[0].reshape(-1, 16)).reshape(-1, 4, 4)
        return torch.einsum("pij,pj->pi", t[:, :3, :3], v_posed) + t[:, :3, 3]


@dataclass(frozen=True)
class BodyFit:
    vertices: np.ndarray  # (V, 3) fitted SMPL-X in the model frame
    loss: float  # final silhouette loss (pixels: mean distance outside + mean uncovered distance)


def fit_to_silhouettes(model, masks: np.ndarray, k: np.ndarray, rt: np.ndarray, init_vertices: np.ndarray,
                       cfg: BodyFitConfig = BodyFitConfig()) -> BodyFit:
    """SMPL-X (an `smplx.SMPLX` of batch 1) fitted to N orthographic silhouettes (N, S, S) (nonzero = body) at
    cameras K (N, 4, 4), RT (N, 3, 4), starting from the rest pose placed on `init_vertices`' torso."""
    import torch
    from scipy.ndimage import distance_transform_edt
    from smplx.lbs import batch_rodrigues

    masks = np.asarray(masks) > 0
    size = masks.shape[-1]
    if not masks.any(axis=(1, 2)).all():  # an empty view has no body to fit: nothing to cover, nowhere inside
        raise ValueError("body fit: a view's silhouette is empty")
    outside = torch.tensor(np.stack([distance_transform_edt(~m) for m in masks]), dtype=torch.float32)[:, None]
    centres = [np.argwhere(m)[:, ::-1] + 0.5 for m in masks]  # (u, v) of each view's silhouette pixels
    centres = [c[::max(1, -(-len(c) // cfg.coverage_pixels))] for c in centres]
    longest = max(len(c) for c in centres)
    fg = torch.tensor(np.stack([np.pad(c, ((0, longest - len(c)), (0, 0))) for c in centres]), dtype=torch.float32)
    valid = torch.tensor(np.stack([np.arange(longest) < len(c) for c in centres]), dtype=torch.float32)
    n_fg = valid.sum(1)
    rot_c = torch.tensor(np.asarray(rt, np.float64)[:, :3, :3], dtype=torch.float32)
    t_c = torch.tensor(np.asarray(rt, np.float64)[:, :3, 3], dtype=torch.float32)
    ndc = torch.tensor(np.stack([np.asarray(k)[:, 0, 0], np.asarray(k)[:, 1, 1]], -1), dtype=torch.float32)

    with torch.no_grad():
        rest = model().vertices[0].double().numpy()
    weights = model.lbs_weights.detach().numpy()
    torso = weights[:, list(TORSO_LBS_JOINTS)].sum(1) > 0.9
    s0, r0, t0 = _similarity(rest[torso], np.asarray(init_vertices, np.float64)[torso])
    subset = SubsetLBS(model, np.arange(0, rest.shape[0], max(1, rest.shape[0] // cfg.points)))

    log_s = torch.tensor([np.log(s0)], dtype=torch.float32, requires_grad=True)
    rot0 = torch.tensor(r0, dtype=torch.float32)
    w = torch.zeros(1, 3, requires_grad=True)
    trans = torch.tensor(t0, dtype=torch.float32, requires_grad=True)
    betas = torch.zeros(1, model.num_betas, requires_grad=True)
    pose = torch.zeros(1, 63, requires_grad=True)

    def placed(vertices: torch.Tensor) -> torch.Tensor:
        rot = batch_rodrigues(w)[0] @ rot0
        return torch.exp(log_s) * vertices @ rot.T + trans

    def silhouette_loss(points: torch.Tensor) -> torch.Tensor:
        cam = torch.einsum("nij,pj->npi", rot_c, points) + t_c[:, None]
        px = (cam[..., :2] * ndc[:, None] + 1.0) / 2.0 * size  # (N, P, 2)
        grid = (px / size * 2.0 - 1.0)[:, :, None]  # align_corners=False: -1 is pixel 0's left edge
        inside = torch.nn.functional.grid_sample(outside, grid, align_corners=False, padding_mode="border").mean()
        cover = (_nearest_distance(fg, valid, px).sum(1) / n_fg).mean()
        return inside + cover

    opt = torch.optim.Adam([log_s, w, trans, betas], lr=cfg.lr)
    for it in range(cfg.placement_iterations + cfg.iterations):
        if it == cfg.placement_iterations:
            opt = torch.optim.Adam([log_s, w, trans, betas, pose], lr=cfg.lr)
        opt.zero_grad()
        sil = silhouette_loss(placed(subset(betas, pose)))
        loss = sil + cfg.pose_prior * (pose ** 2).mean() + cfg.shape_prior * (betas ** 2).mean()
        loss.backward()
        opt.step()
    with torch.no_grad():
        final = placed(model(betas=betas, body_pose=pose).vertices[0])
        sil = silhouette_loss(final[subset.index])
    return BodyFit(final.double().numpy(), float(sil))


@contextmanager
def _one_thread():
    """The fit's tensors are small (16 x 700 points), so one thread costs little, and a fixed reduction order makes
    the fit, and so the PCK, repeat whatever thread count the evaluating process runs with."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass(frozen=True)
class BodyKeypointScores:
    pck: np.ndarray  # (N,) per view
    fitted_px: np.ndarray  # (N, 14, 2)
    target_px: np.ndarray  # (N, 14, 2)
    fit_loss: float


def body_pck(model, generated_masks: np.ndarray, k: np.ndarray, rt: np.ndarray, target_vertices: np.ndarray,
             condition_vertices: np.ndarray, cfg: BodyFitConfig = BodyFitConfig()) -> BodyKeypointScores:
    """PCK@0.2 per view of the SMPL-X fitted to the generated silhouettes against the target SMPL-X's joints."""
    j_reg = model.J_regressor.detach().double().numpy()
    size = np.asarray(generated_masks).shape[-1]
    target = joints_of(j_reg, target_vertices)
    joints_of(j_reg, condition_vertices)  # (checks the topology before fitting)
    with _one_thread():
        fit = fit_to_silhouettes(model, generated_masks, k, rt, condition_vertices, cfg)
    fitted = joints_of(j_reg, fit.vertices)
    t_px = project_orthographic(target[KEYPOINT_JOINTS], k, rt, size)
    f_px = project_orthographic(fitted[KEYPOINT_JOINTS], k, rt, size)
    return BodyKeypointScores(pck_per_view(f_px, t_px, torso_pixels(target, k, size)), f_px, t_px, fit.loss)
