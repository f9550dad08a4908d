"""Driving sequences for bodies: SMPL-X poses over time, and the meshes they give a THuman subject.

The body counterpart of `pipelines.driving` (FLAME expressions for faces), from the same kinds of source:
- a pose file (`.npz` read without pickle, or `.json`): "body_pose" (T, 63) or (T, 21, 3) axis-angle of SMPL-X's 21
  body joints, optional "global_orient" (T, 3) and "fps";
- a THuman SMPL-X fit (`smplx_param.pkl`, through the allow-listed reader) as one pose, e.g. an interpolation's end;
- an interpolation between two poses, joint by joint along the shortest arc (slerp), the root orientation likewise.
The person (shape, hands, face, the fit's scale and placement) is the subject's own track: `pose_meshes` replaces its
body pose frame by frame and normalises every frame as the subject's views were (one scale and centre for the whole
sequence, so the body moves in the frame instead of being re-centred).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from storage.errors import InvalidContentError, MissingFileError

N_BODY_JOINTS = 21
POSE_FIX = ("give an .npz or .json with 'body_pose' (T, 63) SMPL-X body joint rotations (axis-angle), optionally "
            "'global_orient' (T, 3) and 'fps', or a THuman smplx_param.pkl")


@dataclass(frozen=True)
class PoseSequence:
    """T frames of SMPL-X body poses (T, 63) and root orientations (T, 3), axis-angle; `source` says where from."""

    body_pose: np.ndarray
    global_orient: np.ndarray
    fps: float
    source: str

    def __post_init__(self) -> None:
        b, g = np.asarray(self.body_pose), np.asarray(self.global_orient)
        if b.ndim != 2 or b.shape[1] != 3 * N_BODY_JOINTS or len(b) < 1 or g.shape != (len(b), 3):
            raise ValueError(f"{self.source}: body_pose {b.shape} / global_orient {g.shape}; expected (T, 63) / (T, 3)")
        if not (np.isfinite(b).all() and np.isfinite(g).all()) or not (np.isfinite(self.fps) and self.fps > 0):
            raise ValueError(f"{self.source}: NaN or infinite values, or fps {self.fps} not positive")

    @property
    def frames(self) -> int:
        return len(self.body_pose)


def read_pose_file(path: str | Path) -> PoseSequence:
    """A pose sequence from `.npz` / `.json`, or one pose from a THuman `smplx_param.pkl`."""
    from pipelines.driving import read_parameter_file

    path = Path(path)
    if not path.is_file():
        raise MissingFileError(path, "pose sequence not found", POSE_FIX)
    if path.suffix == ".pkl":
        from storage.thuman import read_smplx_fit

        fit = read_smplx_fit(path)
        return PoseSequence(fit.body_pose[None], fit.global_orient[None], 25.0, str(path))
    doc = read_parameter_file(path, "body_pose", "pose", POSE_FIX)
    try:
        body = np.asarray(doc["body_pose"], np.float64)
        body = body.reshape(1, -1) if body.ndim == 1 else body.reshape(len(body), -1)
        orient = np.asarray(doc.get("global_orient", np.zeros((len(body), 3))), np.float64).reshape(-1, 3)
        return PoseSequence(body, orient, float(np.asarray(doc.get("fps", 25.0))), str(path))
    except (TypeError, ValueError) as exc:
        raise InvalidContentError(path, f"not a pose sequence ({exc})", POSE_FIX) from None


def write_pose_file(path: str | Path, sequence: PoseSequence) -> Path:
    """The `.npz` form `read_pose_file` reads (written atomically)."""
    from pipelines.driving import write_parameter_file

    return write_parameter_file(path, body_pose=sequence.body_pose, global_orient=sequence.global_orient,
                                fps=np.float64(sequence.fps))


def _slerp(a: np.ndarray, b: np.ndarray, w: np.ndarray) -> np.ndarray:
    """(T, 3) axis-angle rotations from `a` to `b` along the shortest arc at the weights `w`."""
    from scipy.spatial.transform import Rotation, Slerp

    return Slerp([0.0, 1.0], Rotation.from_rotvec(np.stack([a, b])))(w).as_rotvec()


def interpolate_poses(start: PoseSequence, end: PoseSequence, frames: int, fps: float = 25.0) -> PoseSequence:
    """`frames` poses from the last frame of `start` to the first of `end` (both included), each joint and the root
    along the shortest arc."""
    if frames < 2:
        raise ValueError(f"an interpolation needs at least 2 frames, got {frames}")
    w = np.linspace(0.0, 1.0, frames)
    a, b = start.body_pose[-1].reshape(-1, 3), end.body_pose[0].reshape(-1, 3)
    body = np.stack([_slerp(a[j], b[j], w) for j in range(N_BODY_JOINTS)], 1).reshape(frames, -1)
    orient = _slerp(start.global_orient[-1], end.global_orient[0], w)
    return PoseSequence(body, orient, fps, f"interpolation {start.source} -> {end.source}, {frames} frames")


def pose_meshes(settings, uid: str, sequence: PoseSequence, topology: str = "smplx") -> tuple[np.ndarray, np.ndarray]:
    """((T, V, 3) SMPL-X vertices in the model frame, faces) of THuman subject `uid` (its track: shape, hands, face,
    fit scale and translation, normalisation) in every pose of the sequence."""
    import torch

    from model import frames
    from model.bodies.smplx_body import load_thuman_smplx
    from pipelines import catalog
    from storage.tracks import read_track

    track = read_track(settings.storage_root, "thuman", uid, catalog.topology("thuman", topology).tracker_version)
    p = track.params["scan"]
    t = sequence.frames
    model = load_thuman_smplx(settings.smplx_model_dir, batch_size=t)
    kwargs = {k: torch.tensor(np.tile(np.asarray(p[k], np.float32).reshape(1, -1), (t, 1)))
              for k in ("betas", "left_hand_pose", "right_hand_pose", "jaw_pose", "leye_pose", "reye_pose",
                        "expression")}
    kwargs["body_pose"] = torch.tensor(sequence.body_pose, dtype=torch.float32)
    kwargs["global_orient"] = torch.tensor(sequence.global_orient, dtype=torch.float32)
    with torch.no_grad():
        v = model(**kwargs).vertices.numpy().astype(np.float64)
    s, centre = float(p["normalization"][0]), -np.asarray(p["normalization"][1:], np.float64)
    scale, translation = float(p["fit_scale"]), np.asarray(p["fit_translation"], np.float64)
    out = np.stack([frames.thuman_file_to_model_points(frames.y_up_to_thuman_file(x * scale + translation, uid),
                                                       uid, s, centre) for x in v])
    if "refine_rotation" in p:  # (the refined topology's rigid alignment onto the scan)
        out = out @ np.asarray(p["refine_rotation"]).T + np.asarray(p["refine_translation"])
    return out, model.faces.astype(np.int64)
