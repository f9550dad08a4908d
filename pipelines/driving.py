"""Driving sequences for animation: FLAME expressions over time, and the meshes they give an identity.

Three sources, one type (`DrivingSequence`):
- a parameter file (`.npz` or `.json`: "expression" (T, E), optional "jaw_pose" (T, 3) axis-angle and "fps"),
  read without pickle;
- a folder of images (a video's frames): the single-image FLAME fit of each, in name order, smoothed over time
  (a Gaussian of `smoothing` frames: per-frame fits jitter, and the jitter would animate the head);
- an interpolation between two expressions (linear in the coefficients, spherical in the jaw rotation).
The identity (shape) is the input image's, so a sequence drives any face: `sequence_meshes` applies it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pipelines.settings import Settings
from storage.errors import InvalidContentError, MissingFileError

if TYPE_CHECKING:
    from model.bodies.flame import FlameLandmarkEmbedding, FlameModelData

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
FILE_FIX = ("give an .npz or .json with 'expression' (T, E) FLAME expression coefficients, optionally 'jaw_pose' "
            "(T, 3) axis-angle and 'fps'")


@dataclass(frozen=True)
class DrivingSequence:
    """T frames of FLAME expression coefficients (T, E) and jaw rotations (T, 3, axis-angle); `source` says where
    they came from (a file, a folder, an interpolation)."""

    expression: np.ndarray
    jaw_pose: np.ndarray
    fps: float
    source: str

    def __post_init__(self) -> None:
        e, j = np.asarray(self.expression), np.asarray(self.jaw_pose)
        if e.ndim != 2 or len(e) < 1 or j.shape != (len(e), 3):
            raise ValueError(f"{self.source}: expression {e.shape} / jaw_pose {j.shape}; expected (T, E) / (T, 3)")
        if not (np.isfinite(e).all() and np.isfinite(j).all()) or not (np.isfinite(self.fps) and self.fps > 0):
            raise ValueError(f"{self.source}: NaN or infinite values, or fps {self.fps} not positive")

    @property
    def frames(self) -> int:
        return len(self.expression)


def read_parameter_file(path: Path, key: str, kind: str, fix: str) -> dict:
    """The arrays of a parameter-sequence file (`.npz` read without pickled objects, or `.json`), which must hold
    `key`; a driving sequence's (faces) and a pose sequence's (bodies, `pipelines.body_driving`)."""
    from storage.jsonfile import read_json
    from storage.safe_pickle import load_npz

    if path.suffix not in (".npz", ".json"):
        raise InvalidContentError(path, f"unknown {kind} file type {path.suffix!r}", fix)
    what = f"a {kind} sequence"
    doc = load_npz(path, what, fix) if path.suffix == ".npz" else read_json(path, what, fix)
    if not isinstance(doc, dict) or key not in doc:
        raise InvalidContentError(path, f"no {key!r} entry", fix)
    return doc


def write_parameter_file(path: str | Path, **arrays) -> Path:
    """An `.npz` that `read_parameter_file` reads, written atomically."""
    import io

    from storage.atomic import atomic_write_bytes

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def read_driving_file(path: str | Path) -> DrivingSequence:
    """A FLAME parameter sequence from `.npz` (no pickled objects) or `.json`."""
    path = Path(path)
    doc = read_parameter_file(path, "expression", "driving", FILE_FIX)
    try:
        expression = np.asarray(doc["expression"], np.float64)
        if expression.ndim == 1:
            expression = expression[None]
        jaw = np.asarray(doc.get("jaw_pose", np.zeros((len(expression), 3))), np.float64).reshape(-1, 3)
        fps = float(np.asarray(doc.get("fps", 25.0)))
        return DrivingSequence(expression, jaw, fps, str(path))
    except (TypeError, ValueError) as exc:
        raise InvalidContentError(path, f"not a driving sequence ({exc})", FILE_FIX) from None


def write_driving_file(path: str | Path, sequence: DrivingSequence) -> Path:
    """The `.npz` form `read_driving_file` reads (written atomically)."""
    return write_parameter_file(path, expression=sequence.expression, jaw_pose=sequence.jaw_pose,
                                fps=np.float64(sequence.fps))


def interpolate(start: np.ndarray, end: np.ndarray, frames: int, jaw_start: np.ndarray | None = None,
                jaw_end: np.ndarray | None = None, fps: float = 25.0) -> DrivingSequence:
    """`frames` expressions from `start` to `end` (both included): linear in the coefficients, the jaw rotation
    along the shortest arc (slerp)."""
    from scipy.spatial.transform import Rotation, Slerp

    if frames < 2:
        raise ValueError(f"an interpolation needs at least 2 frames, got {frames}")
    start, end = np.asarray(start, np.float64).ravel(), np.asarray(end, np.float64).ravel()
    n = max(len(start), len(end))
    start, end = np.pad(start, (0, n - len(start))), np.pad(end, (0, n - len(end)))
    w = np.linspace(0.0, 1.0, frames)
    expression = (1 - w)[:, None] * start + w[:, None] * end
    jaws = Rotation.from_rotvec(np.stack([np.zeros(3) if jaw_start is None else np.asarray(jaw_start, float),
                                          np.zeros(3) if jaw_end is None else np.asarray(jaw_end, float)]))
    jaw = Slerp([0.0, 1.0], jaws)(w).as_rotvec()
    return DrivingSequence(expression, jaw, fps, f"interpolation over {frames} frames")


def smooth(sequence: DrivingSequence, sigma: float) -> DrivingSequence:
    """A Gaussian over time (`sigma` in frames; ends held, so a sequence is not pulled towards zero there)."""
    from scipy.ndimage import gaussian_filter1d

    if sigma <= 0 or sequence.frames < 2:
        return sequence
    return DrivingSequence(gaussian_filter1d(sequence.expression, sigma, axis=0, mode="nearest"),
                           gaussian_filter1d(sequence.jaw_pose, sigma, axis=0, mode="nearest"), sequence.fps,
                           f"{sequence.source}, smoothed (sigma {sigma:g} frames)")


def image_frames(folder: str | Path) -> list[Path]:
    """The folder's images in name order (a video's frames as ffmpeg writes them: 0001.png, 0002.png, ...)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MissingFileError(folder, "driving folder not found", "give a folder of frame images or a parameter file")
    frames = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not frames:
        raise InvalidContentError(folder, "no images in the driving folder",
                                  f"put the frames there as {', '.join(IMAGE_SUFFIXES)} files")
    return frames


def _fit_frame(path: Path, model, embedding) -> tuple[np.ndarray, np.ndarray, float]:
    """(expression, jaw pose, landmark error in px) of one image's single-image FLAME fit (dlib landmarks)."""
    from model.tracking.single_image import fit_flame_to_image
    from storage.images import read_rgb

    fit = fit_flame_to_image(model, embedding, read_rgb(path), source=str(path))
    return fit.expression.ravel(), fit.jaw_pose.ravel(), fit.pixel_error


def _flame_files(settings: Settings):
    from model.bodies.flame import load_flame_landmarks, load_flame_model

    return load_flame_model(settings.flame_model_dir), load_flame_landmarks(settings.flame_model_dir)


def image_expression(settings: Settings, path: str | Path) -> DrivingSequence:
    """One image's FLAME expression and jaw (the single-image fit) as a one-frame sequence."""
    expression, jaw, _ = _fit_frame(Path(path), *_flame_files(settings))
    return DrivingSequence(expression[None], jaw[None], 25.0, str(path))


def fit_image_sequence(settings: Settings, folder: str | Path, smoothing: float = 1.0, fps: float = 25.0,
                       log=None) -> DrivingSequence:
    """The single-image FLAME fit of every frame of `folder` (dlib landmarks), smoothed over `smoothing` frames."""
    paths = image_frames(folder)
    files = _flame_files(settings)
    expressions, jaws = [], []
    for i, path in enumerate(paths):
        expression, jaw, error = _fit_frame(path, *files)
        expressions.append(expression)
        jaws.append(jaw)
        if log:
            log(f"fitted FLAME to frame {i + 1}/{len(paths)} ({path.name}): landmark error {error:.1f} px")
    raw = DrivingSequence(np.stack(expressions), np.stack(jaws), fps, f"{len(paths)} frames of {folder}")
    return smooth(raw, smoothing)


def endpoint(settings: Settings, path: str | Path) -> DrivingSequence:
    """An interpolation's end: a parameter file as read, an image as its single-image fit."""
    return read_driving_file(path) if Path(path).suffix in (".npz", ".json") else image_expression(settings, path)


def read_driving(settings: Settings, driving: str | Path, smoothing: float = 1.0, log=None) -> DrivingSequence:
    """A driving sequence from a parameter file or a folder of frames."""
    path = Path(driving)
    if path.is_dir():
        return fit_image_sequence(settings, path, smoothing, log=log)
    if not path.exists():
        raise MissingFileError(path, "driving input not found", "give a folder of frames or a parameter file")
    return read_driving_file(path)


def sequence_meshes(model: "FlameModelData", shape: np.ndarray, sequence: DrivingSequence,
                    landmarks: "FlameLandmarkEmbedding | None" = None):
    """(T, V, 3) FLAME vertices (canonical frame, metres, no head rotation: what generation conditions on) of the
    identity `shape` through the sequence's expressions; with a landmark embedding, (vertices, (T, 68, 3)
    landmarks)."""
    import torch

    from model.bodies.flame_layer import build_flame_layer

    layer = build_flame_layer(model, landmarks, dtype=torch.float64)
    t = sequence.frames
    with torch.no_grad():
        out = layer(shape=torch.as_tensor(np.asarray(shape, np.float64).reshape(1, -1)).expand(t, -1),
                    expression=torch.as_tensor(sequence.expression), jaw_pose=torch.as_tensor(sequence.jaw_pose))
    if landmarks is None:
        return out.vertices.numpy()
    return out.vertices.numpy(), out.landmarks.numpy()
