"""Frame sequences as video files: animated WebP and GIF (Pillow's libwebp / GIF encoders, always installed) and
MP4 (H.264 through PyAV, the FFmpeg binding, when it is installed: `pip install av`).

Each writer takes (T, H, W, 3) uint8 frames and writes atomically (a reader never sees half a video).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from storage.atomic import atomic_save


def _frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise ValueError(f"frames must be (T, H, W, 3) uint8 with T >= 1, got {frames.shape} {frames.dtype}")
    return frames


def write_animated(path: str | Path, frames: np.ndarray, fps: float, lossless: bool = True) -> Path:
    """Animated WebP (`.webp`, lossless by default) or GIF (`.gif`, 256 colours), looping."""
    from PIL import Image

    frames, path = _frames(frames), Path(path)
    if path.suffix not in (".webp", ".gif"):
        raise ValueError(f"{path}: animated images are .webp or .gif")
    images = [Image.fromarray(f) for f in frames]
    duration = max(1, int(round(1000 / fps)))
    options = {"lossless": lossless, "quality": 90} if path.suffix == ".webp" else {"optimize": False}

    def save(tmp: Path) -> None:
        images[0].save(tmp, format=path.suffix[1:].upper(), save_all=True, append_images=images[1:],
                       duration=duration, loop=0, **options)

    return atomic_save(path, save)


def mp4_available() -> bool:
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


def write_mp4(path: str | Path, frames: np.ndarray, fps: float, crf: int = 18) -> Path:
    """H.264 MP4 (yuv420p, even sizes padded by edge pixels) through PyAV; ImportError names the package."""
    from fractions import Fraction

    try:
        import av
    except ImportError:
        raise ImportError("MP4 output needs PyAV: pip install av (animated WebP and GIF need nothing more)") from None
    frames, path = _frames(frames), Path(path)
    h, w = frames.shape[1:3]
    frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")

    def save(tmp: Path) -> None:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
            stream.width, stream.height = frames.shape[2], frames.shape[1]
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": str(crf)}
            for f in frames:
                for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)

    return atomic_save(path, save)


def read_animated(path: str | Path, fps: float | None = None) -> np.ndarray:
    """(T, H, W, 3) uint8 frames of an animated WebP or GIF. The encoders fold a frame identical to the one before
    into a longer display time; given the `fps` it was written at, such frames are counted again (a sequence of one
    repeated frame is written by libwebp as a still image: one frame comes back)."""
    from PIL import Image, ImageSequence

    frames = []
    with Image.open(path) as im:
        for f in ImageSequence.Iterator(im):
            rgb = np.asarray(f.convert("RGB"))  # (decoding the frame sets its duration)
            repeat = max(1, round(f.info.get("duration", 0) * fps / 1000)) if fps else 1
            frames += [rgb] * repeat
    return np.stack(frames)


def grid(views: np.ndarray, columns: int = 4) -> np.ndarray:
    """(T, N, H, W, 3) -> (T, rows * H, columns * W, 3): every view of each frame in one picture (white padding)."""
    views = np.asarray(views)
    t, n, h, w, c = views.shape
    rows = -(-n // columns)
    out = np.full((t, rows * h, columns * w, c), 255, np.uint8)
    for i in range(n):
        r, k = divmod(i, columns)
        out[:, r * h:(r + 1) * h, k * w:(k + 1) * w] = views[:, i]
    return out
