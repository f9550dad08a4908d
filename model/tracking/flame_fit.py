"""Multi-expression FLAME fitting to registered meshes (FaceScape TU) or scans.

One identity per subject is shared by all its expressions; each expression has its own expression coefficients,
jaw / neck / eye pose and a similarity (scale, rotation, translation) into the target frame. Stages:
  1. closed-form similarity from the 51 inner landmarks (Umeyama);
  2. landmarks only (shape, expression, jaw, similarity);
  3. landmarks + point-to-plane distance to the target surface, correspondences refreshed every few steps
     (open3d BVH), trimmed beyond `max_correspondence_mm`, plus Gaussian priors.
Targets and results are in metres in the target's orientation (TU: y up, face +z). CPU by default; the same code
runs on CUDA (`device`).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from model.bodies.flame import FlameLandmarkEmbedding, FlameModelData
from model.bodies.flame_layer import build_flame_layer
from model.tracking.geometry import SurfaceQuery, surface_error_mm, umeyama



@dataclass(frozen=True)
class FlameFitConfig:
    n_shape: int = 100
    n_expression: int = 50
    iters_landmarks: int = 150
    iters_surface: int = 250
    correspondence_every: int = 10
    lr: float = 0.01
    w_landmarks: float = 1.0
    w_surface: float = 2.0
    w_shape: float = 1e-3
    w_expression: float = 1e-3
    w_pose: float = 1e-2
    max_correspondence_mm: float = 10.0
    device: str = "cpu"
    seed: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class FitTarget:
    name: str
    vertices: np.ndarray  # (N, 3) metres
    faces: np.ndarray  # (F, 3)
    landmarks51: np.ndarray  # (51, 3) metres, dlib order 17..67


@dataclass
class FlameFit:
    shape: np.ndarray  # (n_shape,)
    expressions: dict[str, dict[str, np.ndarray]]  # name -> expression, jaw_pose, neck_pose, eye_pose, rotation, translation, scale
    vertices: dict[str, np.ndarray]  # name -> (V, 3) metres, target frame
    errors: dict[str, dict[str, float]] = field(default_factory=dict)  # name -> mean/p95/max mm (target -> fit)


def fit_flame(model: FlameModelData, landmarks: FlameLandmarkEmbedding, targets: list[FitTarget],
              config: FlameFitConfig = FlameFitConfig(), exclude_vertices: np.ndarray | None = None) -> FlameFit:
    """Fit one FLAME identity and per-target expression, pose and similarity to `targets`."""
    import torch
    from smplx.lbs import batch_rodrigues

    torch.manual_seed(config.seed)
    dev = torch.device(config.device)
    dt = torch.float64 if dev.type == "cpu" else torch.float32
    n_t = len(targets)
    n_shape = min(config.n_shape, model.n_shape)
    n_expr = min(config.n_expression, model.n_expression)
    layer = build_flame_layer(model, landmarks, dtype=dt, n_shape=n_shape, n_expression=n_expr).to(dev)
    mm = 1000.0  # losses in millimetres for good conditioning

    # 1. similarity from the template's inner landmarks
    with torch.no_grad():
        lmk0 = layer(shape=torch.zeros(1, 1, dtype=dt, device=dev)).landmarks[0, 17:].cpu().numpy()
    init = [umeyama(lmk0, t.landmarks51) for t in targets]
    from scipy.spatial.transform import Rotation

    def param(x) -> "torch.nn.Parameter":
        return torch.nn.Parameter(torch.as_tensor(np.asarray(x), dtype=dt, device=dev).clone())

    log_s = param([[np.log(s)] for s, _, _ in init])
    rotv = param([Rotation.from_matrix(r).as_rotvec() for _, r, _ in init])
    transl = param([t for _, _, t in init])
    shape = param(np.zeros((1, n_shape)))
    expr = param(np.zeros((n_t, n_expr)))
    jaw = param(np.zeros((n_t, 3)))
    neck = param(np.zeros((n_t, 3)))
    eyes = param(np.zeros((n_t, 6)))
    tgt_lmk = torch.as_tensor(np.stack([t.landmarks51 for t in targets]), dtype=dt, device=dev)
    queries = [SurfaceQuery(t.vertices, t.faces) for t in targets]
    keep = np.ones(model.num_vertices, bool)
    if exclude_vertices is not None:
        keep[exclude_vertices] = False
    keep_t = torch.as_tensor(keep, device=dev)

    def forward():
        out = layer(shape=shape.expand(n_t, -1), expression=expr, jaw_pose=jaw, neck_pose=neck, eye_pose=eyes)
        rot = batch_rodrigues(rotv)
        s = torch.exp(log_s)[:, :, None]
        verts = s * (out.vertices @ rot.transpose(1, 2)) + transl[:, None]
        lmk = s * (out.landmarks[:, 17:] @ rot.transpose(1, 2)) + transl[:, None]
        return verts, lmk

    def forward_landmarks():  # the landmark stage needs no other vertex: only those skinned
        out = layer.landmarks(shape=shape.expand(n_t, -1), expression=expr, jaw_pose=jaw, neck_pose=neck,
                              eye_pose=eyes)
        return torch.exp(log_s)[:, :, None] * (out[:, 17:] @ batch_rodrigues(rotv).transpose(1, 2)) \
            + transl[:, None]

    def prior():
        return (config.w_shape * (shape ** 2).sum() + config.w_expression * (expr ** 2).sum()
                + config.w_pose * ((jaw ** 2).sum() + (neck ** 2).sum() + (eyes ** 2).sum()))

    opt = torch.optim.Adam([log_s, rotv, transl, shape, expr, jaw, neck, eyes], lr=config.lr)
    for _ in range(config.iters_landmarks):  # 2. landmarks only
        opt.zero_grad()
        lmk = forward_landmarks()
        loss = config.w_landmarks * ((lmk - tgt_lmk) * mm).pow(2).sum(-1).mean() + prior()
        loss.backward()
        opt.step()

    corr_pts = corr_nrm = corr_w = None
    for it in range(config.iters_surface):  # 3. landmarks + point-to-plane
        verts, lmk = forward()
        if it % config.correspondence_every == 0:
            vn = verts.detach().cpu().numpy()
            pts, nrm, wts = [], [], []
            for q, v in zip(queries, vn):
                p, n = q.closest(v)
                d = np.linalg.norm(p - v, axis=1) * mm
                pts.append(p), nrm.append(n), wts.append((d < config.max_correspondence_mm) & keep)
            corr_pts = torch.as_tensor(np.stack(pts), dtype=dt, device=dev)
            corr_nrm = torch.as_tensor(np.stack(nrm), dtype=dt, device=dev)
            corr_w = torch.as_tensor(np.stack(wts), dtype=dt, device=dev) * keep_t
        opt.zero_grad()
        diff = (verts - corr_pts) * mm
        plane = (diff * corr_nrm).sum(-1).pow(2)
        point = diff.pow(2).sum(-1)
        surf = ((plane + 0.1 * point) * corr_w).sum() / corr_w.sum().clamp(min=1)
        loss = (config.w_landmarks * ((lmk - tgt_lmk) * mm).pow(2).sum(-1).mean() + config.w_surface * surf
                + prior())
        loss.backward()
        opt.step()

    with torch.no_grad():
        verts, _ = forward()
    verts_np = verts.cpu().numpy().astype(np.float64)
    fit = FlameFit(shape=shape.detach().cpu().numpy()[0], expressions={}, vertices={})
    for i, t in enumerate(targets):
        fit.expressions[t.name] = {
            "expression": expr[i].detach().cpu().numpy(), "jaw_pose": jaw[i].detach().cpu().numpy(),
            "neck_pose": neck[i].detach().cpu().numpy(), "eye_pose": eyes[i].detach().cpu().numpy(),
            "rotation": rotv[i].detach().cpu().numpy(), "translation": transl[i].detach().cpu().numpy(),
            "scale": float(torch.exp(log_s[i, 0]).detach())}
        fit.vertices[t.name] = verts_np[i]
        fit.errors[t.name] = surface_error_mm(t.vertices, verts_np[i], model.faces, units_per_mm=1 / mm)
    return fit
