"""Small PNG contact sheets for asset metadata in the Dagster UI (kept tiny: they live in the event log)."""
from __future__ import annotations

import base64
import io

import numpy as np


def contact_sheet(images: list[np.ndarray], tile: int = 96, columns: int = 6) -> np.ndarray:
    """Tile RGB uint8 images (any sizes) into one sheet, each fitted into a `tile` x `tile` cell."""
    from PIL import Image

    rows = max(1, int(np.ceil(len(images) / columns)))
    sheet = Image.new("RGB", (columns * tile, rows * tile), (255, 255, 255))
    for i, img in enumerate(images):
        im = Image.fromarray(np.asarray(img, np.uint8))
        im.thumbnail((tile, tile))
        r, c = divmod(i, columns)
        sheet.paste(im, (c * tile + (tile - im.width) // 2, r * tile + (tile - im.height) // 2))
    return np.asarray(sheet)


def png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(image, np.uint8)).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def markdown_image(image: np.ndarray, alt: str = "thumbnail") -> str:
    """Markdown with the image inlined as base64 PNG (what Dagster's UI renders for MetadataValue.md)."""
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png_bytes(image)).decode()})"


def markdown_png_file(path, alt: str = "plot", max_size: tuple[int, int] = (1100, 600)) -> str:
    """A PNG/JPEG file (e.g. a matplotlib plot) as inline markdown, shrunk to fit `max_size`."""
    from PIL import Image

    with Image.open(path) as im:
        im.thumbnail(max_size)
        return markdown_image(np.asarray(im.convert("RGB")), alt)
