"""Image files: decode fully (so truncation is caught here) and report problems with the file's name."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from storage.errors import CorruptFileError, MissingFileError


def read_rgb(path: str | Path, expected_size: tuple[int, int] | None = None) -> np.ndarray:
    """(H, W, 3) uint8 RGB; `expected_size` = (width, height) is checked when given."""
    return read_image(path, "RGB", expected_size)


def read_image(path: str | Path, mode: str = "RGB", expected_size: tuple[int, int] | None = None) -> np.ndarray:
    """(H, W, C) uint8 in PIL `mode` ("RGB", "RGBA", "L"), fully decoded, with errors that name the file."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise MissingFileError(path, "image file not found", "restore the file from the dataset archive")
    try:
        with Image.open(path) as im:
            im.load()  # force a full decode: a truncated JPEG fails here, not later in a worker
            rgb = np.asarray(im if im.mode == mode else im.convert(mode))  # (no copy when already in `mode`)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise CorruptFileError(path, f"cannot decode image ({exc})",
                               "use a complete PNG or JPEG file (this one is truncated or not an image)") from exc
    if expected_size is not None and (rgb.shape[1], rgb.shape[0]) != tuple(expected_size):
        raise CorruptFileError(path, f"image is {rgb.shape[1]}x{rgb.shape[0]} but its camera says "
                                     f"{expected_size[0]}x{expected_size[1]}",
                               "the image and params.json do not belong together; re-extract both")
    return rgb


def write_jpeg(path: str | Path, rgb: np.ndarray, quality: int = 92) -> None:
    from PIL import Image

    Image.fromarray(np.ascontiguousarray(rgb, np.uint8)).save(path, quality=quality)
