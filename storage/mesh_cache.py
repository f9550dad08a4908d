"""Decoded meshes kept as arrays, keyed by the content hash of their file: a 25 MB THuman OBJ is parsed once (0.5 s
of text), then read back in milliseconds by every stage that needs it (tracking, views, each re-run).

The key is the file's sha256, the content hash the raw-data sensor records for it, so an edited scan is a new entry
and a copied or touched one is not. It is read from a `ContentHashCache` when one is given (a stat when the file is
unchanged); the stages hash the file themselves instead (~20 ms for 25 MB), because the store's shared hash cache is
one JSON file for every raw file of every dataset and loading it per step would cost more than hashing. Entries are
uncompressed `.npz` files read without pickle; a damaged or unreadable entry is decoded again from the OBJ and
replaced, never trusted.
"""
from __future__ import annotations

import logging
import zipfile
from pathlib import Path

import numpy as np

from storage.atomic import atomic_file
from storage.hashing import ContentHashCache, hash_file
from storage.meshes import Mesh, read_obj

log = logging.getLogger(__name__)
FORMAT = 1  # bump when the entry's layout or the OBJ reader's output changes
_ARRAYS = ("vertices", "faces", "uv", "uv_faces", "vertex_colors")


class MeshCache:
    """`read_obj` through a folder of decoded entries (<root>/<sha256>-v<FORMAT>.npz)."""

    def __init__(self, root: str | Path, hashes: ContentHashCache | None = None) -> None:
        self.root = Path(root)
        self.hashes = hashes

    def entry(self, path: str | Path) -> Path:
        if self.hashes is None:
            digest = hash_file(path)
        else:
            digest = self.hashes.sha256(Path(path))
            self.hashes.save()
        return self.root / f"{digest}-v{FORMAT}.npz"

    def read_obj(self, path: str | Path) -> Mesh:
        path = Path(path)
        if not path.is_file():
            return read_obj(path)  # the reader's own error names the file and the fix
        entry = self.entry(path)
        if entry.is_file():
            try:
                return _load(entry)
            except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
                log.warning("mesh cache entry %s is unreadable (%s): decoding %s again", entry, exc, path)
        mesh = read_obj(path)
        try:
            with atomic_file(entry) as tmp:
                with open(tmp, "wb") as fh:
                    np.savez(fh, **{k: getattr(mesh, k) for k in _ARRAYS if getattr(mesh, k) is not None},
                             material_file=np.array(mesh.material_file or ""))
        except OSError as exc:  # a read-only store: decode every time, as without a cache
            log.warning("cannot write mesh cache entry %s (%s)", entry, exc)
        return mesh


def _load(entry: Path) -> Mesh:
    with np.load(entry, allow_pickle=False) as z:
        arrays = {k: z[k] for k in _ARRAYS if k in z.files}
        material = str(z["material_file"])
    v, f = arrays["vertices"], arrays["faces"]
    if v.ndim != 2 or v.shape[1] != 3 or f.ndim != 2 or f.shape[1] != 3 or len(v) == 0 or len(f) == 0 \
            or f.min() < 0 or f.max() >= len(v) or not np.isfinite(v).all():
        raise ValueError("arrays of the wrong shape or range")
    return Mesh(v.astype(np.float64, copy=False), f.astype(np.int64, copy=False), arrays.get("uv"),
                arrays.get("uv_faces"), arrays.get("vertex_colors"), material_file=material or None)
