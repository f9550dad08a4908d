"""Ground truth for animation: a stand-in FaceScape identity rendered through an expression sweep.

The stand-in knows who each subject is (`demo_data.facescape_identity`: appearance, FLAME shape, TU scale) and how
its views were made (the dense scan head, the procedural albedo, the studio lighting). Rendering that identity at
every frame of a sweep between two of FaceScape's expressions, from the cameras an animation generates, gives each
generated frame its true image: what the person looks like with that expression from that camera. The head is in
the canonical pose (no head rotation, eyes straight: what `animate` conditions on), the background white as in the
view stores, with no colour cast and no sensor noise (the calibrated views' target).

`sweep_sequence` is the driving sequence of such a sweep (the expression table's coefficients, interpolated as
`pipelines.driving.interpolate` does), so the driving FLAME and the rendered head move alike.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipelines.driving import DrivingSequence, interpolate

RENDER_SIZE = 256  # the view stores' size; scored at the model's size after the evaluation's resize


def expression_parameters(name: str) -> tuple[np.ndarray, np.ndarray]:
    """(expression (100,), jaw pose (3,)) of one of FaceScape's expressions on the stand-in ("6_jaw_right")."""
    from pipelines.demo_data import FACESCAPE_EXPRESSION_TABLE

    if name not in FACESCAPE_EXPRESSION_TABLE:
        raise ValueError(f"unknown FaceScape expression {name!r}; choose one of {list(FACESCAPE_EXPRESSION_TABLE)}")
    coefficients, jaw = FACESCAPE_EXPRESSION_TABLE[name]
    expression = np.zeros(100)
    for component, value in coefficients.items():
        expression[component] = value
    return expression, np.asarray(jaw, np.float64)


def sweep_sequence(start: str, end: str, frames: int, fps: float = 8.0) -> DrivingSequence:
    """The driving sequence from expression `start` to `end` over `frames` frames (both ends included)."""
    (e0, j0), (e1, j1) = expression_parameters(start), expression_parameters(end)
    seq = interpolate(e0, e1, frames, j0, j1, fps)
    return DrivingSequence(seq.expression, seq.jaw_pose, fps, f"stand-in sweep {start} -> {end}, {frames} frames")


@dataclass
class SweepTruth:
    """The true frames: `views` (T, N, S, S, 3) uint8 on white, `masks` (T, N, S, S) bool (the head's silhouette),
    at `size` px for the cameras `ks` (N, 3, 3, for that size) and `rts` (N, 3, 4), model frame."""

    views: np.ndarray
    masks: np.ndarray
    size: int


class SweepRenderer:
    """Renders one stand-in identity (`root`: a complete stand-in, `subject`: one of its FaceScape subjects) with
    any expression, from any model-frame camera."""

    def __init__(self, root: str | Path, subject: str) -> None:
        from model.standin import head
        from pipelines.demo_data import facescape_identity

        self.identity = facescape_identity(root, subject)
        self.scan_model, sample = head.build_flame_format(self.identity.sizes.scan_grid)
        self.directions = sample.grid.directions

    def vertices(self, expression: np.ndarray, jaw_pose: np.ndarray, **pose: np.ndarray) -> np.ndarray:
        """The dense head (V, 3) in the model frame: 2.5 x the TU mesh in metres; canonical pose unless `pose`
        gives other FLAME parameters (global_orient, neck_pose, eye_pose, transl)."""
        from model import frames
        from model.bodies.portable_lbs import flame_forward

        params = {"shape": self.identity.shape, "expression": np.asarray(expression, np.float64),
                  "jaw_pose": np.asarray(jaw_pose, np.float64), **pose}
        return frames.flame_to_model_points(self.identity.tu_scale * flame_forward(self.scan_model, params)[0])

    def render(self, vertices: np.ndarray, ks: np.ndarray, rts: np.ndarray, size: int = RENDER_SIZE
               ) -> tuple[np.ndarray, np.ndarray]:
        """((N, size, size, 3) uint8, (N, size, size) bool) of the head `vertices` from every camera."""
        from model.render.raycast import MeshRaycaster, interpolate_at_hits
        from model.standin.appearance import head_albedo
        from pipelines.demo_data import _shade, _vertex_normals

        faces = self.scan_model.faces
        caster = MeshRaycaster(vertices, faces)
        normals = _vertex_normals(vertices, faces)
        images, masks = [], []
        for k, rt in zip(ks, rts):
            hits = caster.cast(np.asarray(k)[:3, :3], np.asarray(rt)[:3], size, size)
            img = np.ones((size, size, 3))
            dirs = interpolate_at_hits(hits, faces, self.directions)
            shaded = _shade(head_albedo(dirs, self.identity.appearance), interpolate_at_hits(hits, faces, normals),
                            hits.at_hits("view_dirs"))
            img[hits.mask] = shaded
            images.append(np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8))
            masks.append(hits.mask.copy())
        return np.stack(images), np.stack(masks)

    def sweep(self, sequence: DrivingSequence, ks: np.ndarray, rts: np.ndarray, size: int = RENDER_SIZE,
              log=None) -> SweepTruth:
        views, masks = [], []
        for t in range(sequence.frames):
            v, m = self.render(self.vertices(sequence.expression[t], sequence.jaw_pose[t]), ks, rts, size)
            views.append(v)
            masks.append(m)
            if log and (t + 1) % 8 == 0:
                log(f"ground truth: frame {t + 1}/{sequence.frames} rendered")
        return SweepTruth(np.stack(views), np.stack(masks), size)


def frontal_camera(size: int = RENDER_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """(K (3, 3), RT (3, 4)) of the virtual trajectory's camera straight in front of the face (azimuth 0)."""
    from pipelines.generate import virtual_cameras

    ks, rts = virtual_cameras(size, 3)  # azimuths -90, 0, 90
    return ks[1], rts[1]
