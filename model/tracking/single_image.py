"""Single-image FLAME fit: 68 detected landmarks -> FLAME shape, expression, jaw, head rotation and a camera.

The camera is weak-perspective (scale in pixels per metre, image translation), adequate for portrait framing; the
17 contour landmarks use FLAME's dynamic (yaw-dependent) embedding, the other 51 the static one. Seconds on a CPU.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from model.bodies.flame import FlameLandmarkEmbedding, FlameModelData
from model.bodies.flame_layer import build_flame_layer

if TYPE_CHECKING:
    import torch

SINGLE_IMAGE_TRACKER_VERSION = "flame-image-1"


@dataclass(frozen=True)
class SingleImageConfig:
    n_shape: int = 50
    n_expression: int = 50
    iters: int = 300
    lr: float = 0.02
    w_shape: float = 1e-2
    w_expression: float = 1e-3
    w_jaw: float = 1e-1
    contour_weight: float = 0.5
    seed: int = 0


@dataclass
class SingleImageFit:
    shape: np.ndarray
    expression: np.ndarray
    jaw_pose: np.ndarray
    global_orient: np.ndarray
    camera_scale: float  # pixels per metre
    camera_translation: np.ndarray  # (2,) pixels
    landmarks_detected: np.ndarray  # (68, 2)
    landmarks_projected: np.ndarray  # (68, 2)
    vertices: np.ndarray  # (V, 3) canonical FLAME frame (no head rotation): the mesh used for generation
    image_size: tuple[int, int]  # (width, height)

    @property
    def pixel_error(self) -> float:
        return float(np.linalg.norm(self.landmarks_projected - self.landmarks_detected, axis=1).mean())

    @property
    def relative_error(self) -> float:
        """Mean landmark reprojection error as a fraction of the image size (larger side)."""
        return self.pixel_error / max(self.image_size)

    def params(self) -> dict:
        return {"shape": self.shape, "expression": self.expression, "jaw_pose": self.jaw_pose,
                "global_orient": self.global_orient, "camera_scale": self.camera_scale,
                "camera_translation": self.camera_translation}


def _project(points: "torch.Tensor", scale: "torch.Tensor", trans: "torch.Tensor") -> "torch.Tensor":
    """Weak perspective into pixels: x right, y down (FLAME y is up)."""
    import torch

    return torch.stack([points[..., 0], -points[..., 1]], -1) * scale + trans


def fit_flame_to_landmarks(model: FlameModelData, embedding: FlameLandmarkEmbedding, landmarks: np.ndarray,
                           image_size: tuple[int, int], config: SingleImageConfig = SingleImageConfig()
                           ) -> SingleImageFit:
    """Fit FLAME and a weak-perspective camera to (68, 2) landmarks given in pixels."""
    import torch

    torch.manual_seed(config.seed)
    dt = torch.float64
    layer = build_flame_layer(model, embedding, dtype=dt)
    target = torch.as_tensor(landmarks, dtype=dt)
    size = float(np.linalg.norm(landmarks.max(0) - landmarks.min(0)))  # face size for normalisation
    with torch.no_grad():
        lmk0 = layer(shape=torch.zeros(1, 1, dtype=dt)).landmarks[0]
    # closed-form init of scale and translation from the inner landmarks
    src = torch.stack([lmk0[17:, 0], -lmk0[17:, 1]], -1).numpy()
    dst = landmarks[17:]
    s0 = np.sqrt(((dst - dst.mean(0)) ** 2).sum() / ((src - src.mean(0)) ** 2).sum())
    t0 = dst.mean(0) - s0 * src.mean(0)
    p = lambda x: torch.nn.Parameter(torch.as_tensor(x, dtype=dt).clone())  # noqa: E731
    log_s, trans = p([np.log(s0)]), p(t0)
    shape, expr = p(np.zeros((1, min(config.n_shape, model.n_shape)))), p(np.zeros((1, min(config.n_expression, model.n_expression))))
    jaw, rot = p(np.zeros((1, 3))), p(np.zeros((1, 3)))
    weights = torch.ones(68, dtype=dt)
    weights[:17] = config.contour_weight
    opt = torch.optim.Adam([log_s, trans, shape, expr, jaw, rot], lr=config.lr)
    for it in range(config.iters):
        opt.zero_grad()
        out = layer(shape=shape, expression=expr, jaw_pose=jaw, global_orient=rot)
        proj = _project(out.landmarks[0], torch.exp(log_s), trans)
        err = ((proj - target) / size).pow(2).sum(-1)
        loss = (weights * err).mean() + config.w_shape * shape.pow(2).mean() + \
            config.w_expression * expr.pow(2).mean() + config.w_jaw * jaw.pow(2).mean()
        loss.backward()
        opt.step()
    with torch.no_grad():
        out = layer(shape=shape, expression=expr, jaw_pose=jaw, global_orient=rot)
        proj = _project(out.landmarks[0], torch.exp(log_s), trans).numpy()
        canonical = layer(shape=shape, expression=expr, jaw_pose=jaw).vertices[0].numpy()
    return SingleImageFit(shape[0].detach().numpy(), expr[0].detach().numpy(), jaw[0].detach().numpy(),
                          rot[0].detach().numpy(), float(torch.exp(log_s).item()), trans.detach().numpy(),
                          np.asarray(landmarks, np.float64), proj, canonical, tuple(image_size))


def fit_flame_to_image(model: FlameModelData, embedding: FlameLandmarkEmbedding, image: np.ndarray,
                       config: SingleImageConfig = SingleImageConfig(), source: str = "image") -> SingleImageFit:
    """Detect 68 landmarks (dlib) in an RGB image and fit FLAME to them; NoFaceError when there is no face."""
    from model.tracking.landmarks2d import detect_landmarks

    pts, _box = detect_landmarks(image, source=source)
    return fit_flame_to_landmarks(model, embedding, pts, (image.shape[1], image.shape[0]), config)
