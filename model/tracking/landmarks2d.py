"""68-point facial landmarks with dlib's HOG detector and the shape predictor shipped by `face-recognition-models`."""
from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np

PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"


class NoFaceError(ValueError):
    """No face was found in an image."""


def model_file(name: str) -> Path:
    """A model file of the `face-recognition-models` package, located without importing it (it needs pkg_resources)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the package face-recognition-models is not installed; run scripts/bootstrap.sh")
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; reinstall face-recognition-models")
    return path


@lru_cache(maxsize=1)
def _dlib_models():
    import dlib

    return dlib.get_frontal_face_detector(), dlib.shape_predictor(str(model_file(PREDICTOR_FILE)))


def detect_landmarks(image: np.ndarray, upsample: int = 1, source: str = "image") -> tuple[np.ndarray, tuple]:
    """(68, 2) landmark pixel coordinates (x, y) of the largest face, and its box (left, top, right, bottom)."""
    img = np.ascontiguousarray(np.asarray(image)[..., :3], np.uint8)
    detector, predictor = _dlib_models()
    faces = list(detector(img, upsample))
    if not faces:
        raise NoFaceError(f"{source}: no face found (dlib HOG detector, upsample {upsample}); use a photo with one "
                          "clearly visible, roughly frontal face")
    box = max(faces, key=lambda r: r.width() * r.height())
    shape = predictor(img, box)
    pts = np.array([[shape.part(i).x, shape.part(i).y] for i in range(68)], dtype=np.float64)
    return pts, (box.left(), box.top(), box.right(), box.bottom())
