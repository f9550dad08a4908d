"""Training-view store: one zarr v3 store per subject and topology, `<root>/views/<dataset>/<topology>/<subject>.zarr`
(the images and cameras of a subject are the same in each of its topologies; the items' meshes are not).

    rgb      (N, 3, H, W) uint8 planes (G, R-G, B-G) mod 256: a reversible colour decorrelation (as lossless
             JPEG-LS / JPEG XL use) that makes zstd ~27 % smaller; one chunk per view, zstd level 15; pixels
             outside the mask are white (what training composites onto). `ViewStore.rgb*` return plain RGB; the
             encoding is recorded in attrs["rgb_encoding"].
    mask     (N, H, W) uint8 (0/255), one chunk per view, zstd
    K        (N, 4, 4) float32   pinhole K in the top-left 3x3 (FaceScape) or the orthographic 4x4 (THuman)
    RT       (N, 3, 4) float32   world-to-camera, model frame (OpenCV)
    angles   (N, 2) float32      azimuth, elevation (degrees)
    view_id  (N,) int32          camera index in the raw data
    item     (N,) int32          index into attrs["items"] (expression or "scan")
    role     (N,) int8           0 = target view, 1 = input-only view (THuman random-elevation renders)
    items/<name>/{vertices (Nv,3) f32, coord (Nv,3) i32, out_sh (3,) i32, bounds (2,3) f32}
attrs: dataset, topology, subject, items, projection, tracker_version, track_data_version, render_version, image_size.

Written into a temporary sibling under the subject's writer lock and renamed into place; `manifest.json` (content
hash, counts, and every file of the store with its size) is the last file written. `ViewStore.open` accepts a store
only when its manifest is there and every file it lists is present with its size, so a store that lost a chunk or
its array metadata is refused by name instead of failing later inside training.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from storage.atomic import atomic_directory
from storage.errors import CorruptFileError, MissingFileError
from storage.ids import validate_subject_id
from storage.jsonfile import read_json

MANIFEST = "manifest.json"
STORE_FORMAT = "morphable-views-4"  # 4: the manifest lists every file
ZSTD_LEVEL = {"rgb": 15, "mask": 5}  # "mask" also serves the small arrays
RGB_ENCODING = "G,R-G,B-G uint8 planes"


def encode_rgb(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) RGB -> (3, H, W) planes G, R-G, B-G (uint8, wrapping)."""
    p = rgb.transpose(2, 0, 1)
    return np.stack([p[1], p[0] - p[1], p[2] - p[1]]).astype(np.uint8)


def decode_rgb(planes: np.ndarray) -> np.ndarray:
    """(..., 3, H, W) planes -> (..., H, W, 3) RGB."""
    g = planes[..., 0, :, :]
    return np.stack([planes[..., 1, :, :] + g, g, planes[..., 2, :, :] + g], axis=-1)


@dataclass
class ItemGeometry:
    vertices: np.ndarray
    coord: np.ndarray
    out_sh: np.ndarray
    bounds: np.ndarray


@dataclass
class ViewSet:
    """Everything one subject's store holds, in memory (what the renderers produce)."""

    rgb: np.ndarray
    mask: np.ndarray
    K: np.ndarray
    RT: np.ndarray
    angles: np.ndarray
    view_id: np.ndarray
    item: np.ndarray
    role: np.ndarray
    items: dict[str, ItemGeometry]
    attrs: dict[str, Any] = field(default_factory=dict)


def topology_folder(root: str | Path, dataset: str, topology: str) -> Path:
    """The folder of one (dataset, topology)'s view stores."""
    return Path(root) / "views" / validate_subject_id(dataset) / validate_subject_id(topology)


def store_path(root: str | Path, dataset: str, topology: str, subject: str) -> Path:
    return topology_folder(root, dataset, topology) / f"{validate_subject_id(subject)}.zarr"


def store_subjects(root: str | Path, dataset: str, topology: str) -> list[str]:
    """The subjects with a view store of (dataset, topology), sorted; stores being written or replaced left out."""
    folder = topology_folder(root, dataset, topology)
    return sorted(p.name[:-5] for p in folder.glob("*.zarr") if ".tmp-" not in p.name and ".old-" not in p.name) \
        if folder.is_dir() else []


def _codecs(name: str) -> dict:
    import zarr.codecs

    return {"compressors": [zarr.codecs.ZstdCodec(level=ZSTD_LEVEL[name])]}


def write_views(root: str | Path, dataset: str, topology: str, subject: str, views: ViewSet,
                slow_write_s: float = 0.0) -> Path:
    """Write the store atomically and return its path. `slow_write_s` (tests only) sleeps after each view."""
    import zarr

    target = store_path(root, dataset, topology, subject)
    n, h, w = views.mask.shape
    digest = hashlib.sha256()
    with atomic_directory(target) as tmp:
        g = zarr.open_group(str(tmp), mode="w", zarr_format=3)
        rgb = g.create_array("rgb", shape=(n, 3, h, w), chunks=(1, 3, h, w), dtype="uint8", **_codecs("rgb"))
        mask = g.create_array("mask", shape=(n, h, w), chunks=(1, h, w), dtype="uint8", **_codecs("mask"))
        if slow_write_s:  # (tests: a writer killed half-way)
            for i in range(n):
                rgb[i] = encode_rgb(views.rgb[i])
                mask[i] = views.mask[i]
                time.sleep(slow_write_s)
        elif n:  # every chunk in one call: zarr encodes and writes them concurrently (the same chunk bytes)
            rgb[:] = np.stack([encode_rgb(x) for x in views.rgb])
            mask[:] = views.mask
        for i in range(n):
            digest.update(views.rgb[i].tobytes())
            digest.update(views.mask[i].tobytes())
        small = {"K": views.K.astype(np.float32), "RT": views.RT.astype(np.float32),
                 "angles": views.angles.astype(np.float32), "view_id": views.view_id.astype(np.int32),
                 "item": views.item.astype(np.int32), "role": views.role.astype(np.int8)}
        for name, arr in small.items():
            g.create_array(name, data=arr, **_codecs("mask"))
            digest.update(arr.tobytes())
        items = g.create_group("items")
        for name, geo in views.items.items():
            ig = items.create_group(name)
            coord = geo.coord.astype(np.int16 if geo.coord.max() < 2 ** 15 else np.int32)  # voxel ids fit int16
            for key, arr in (("vertices", geo.vertices.astype(np.float32)), ("coord", coord),
                             ("out_sh", geo.out_sh.astype(np.int32)), ("bounds", geo.bounds.astype(np.float32))):
                ig.create_array(key, data=arr, **_codecs("mask"))
                digest.update(arr.astype(np.int32 if key == "coord" else arr.dtype).tobytes())
        g.attrs.update({**views.attrs, "dataset": dataset, "topology": topology, "subject": subject, "items": list(views.items),
                        "format": STORE_FORMAT, "image_size": [h, w], "rgb_encoding": RGB_ENCODING})
        files = {p.relative_to(tmp).as_posix(): p.stat().st_size for p in sorted(tmp.rglob("*")) if p.is_file()}
        (tmp / MANIFEST).write_text(json.dumps({"format": STORE_FORMAT, "n_views": int(n),
                                                "items": list(views.items), "content_hash": digest.hexdigest()[:32],
                                                "files": files}))
    return target


class ViewStore:
    """Lazy reader: arrays are read per view on access; the zarr group is opened once per process."""

    def __init__(self, path: Path, manifest: dict[str, Any]) -> None:
        import zarr

        self.path = path
        self.manifest = manifest
        self.group = zarr.open_group(str(path), mode="r", zarr_format=3)
        self.attrs = dict(self.group.attrs)
        self._small = {k: self.group[k][:] for k in ("K", "RT", "angles", "view_id", "item", "role")}
        self._fast = self._fast_path_ok()

    def _fast_path_ok(self) -> bool:
        """Whether chunks can be decoded directly (our writer's codecs, default chunk keys, local files)."""
        try:
            meta = {k: json.loads((self.path / k / "zarr.json").read_text()) for k in ("rgb", "mask")}
        except OSError:
            return False
        names = {k: [c["name"] for c in m["codecs"]] for k, m in meta.items()}
        keys = all(m.get("chunk_key_encoding", {}).get("name") == "default" for m in meta.values())
        return keys and all(n == ["bytes", "zstd"] for n in names.values())

    def _chunk(self, name: str, index: int) -> np.ndarray:
        """One view decoded straight from its chunk file (bypasses zarr's async machinery: ~10x less overhead).
        Returns (H, W) for masks and (H, W, 3) for colour."""
        import numcodecs

        ndim = 4 if name == "rgb" else 3
        raw = numcodecs.Zstd().decode((self.path / name / "c" / str(int(index)) / "/".join("0" * (ndim - 1)))
                                      .read_bytes())
        data = np.frombuffer(raw, np.uint8)
        h, w = self.attrs["image_size"]
        return data.reshape(h, w) if name == "mask" else decode_rgb(data.reshape(3, h, w))

    @classmethod
    def open(cls, path: str | Path) -> "ViewStore":
        path = Path(path)
        manifest = path / MANIFEST
        fix = "delete it and run `morphable views` for this subject again (or re-materialize its views asset)"
        if ".tmp-" in path.name or ".old-" in path.name or not path.is_dir():
            raise MissingFileError(path, "view store not found", "materialize the views asset or run "
                                                                  "`morphable views` for this subject")
        if not manifest.is_file():
            raise CorruptFileError(path, "view store is incomplete (no manifest.json: its writer did not finish)", fix)
        doc = read_json(manifest, "a view store manifest", fix)
        if doc.get("format") != STORE_FORMAT:
            raise CorruptFileError(path, f"store format {doc.get('format')!r}, this version reads {STORE_FORMAT!r}",
                                   fix)
        for rel, size in doc["files"].items():
            f = path / rel
            if not f.is_file() or f.stat().st_size != size:
                state = "missing" if not f.is_file() else f"{f.stat().st_size} bytes, {size} written"
                raise CorruptFileError(path, f"view store is incomplete or damaged ({rel}: {state})", fix)
        return cls(path, doc)

    def __len__(self) -> int:
        return int(self.manifest["n_views"])

    @property
    def items(self) -> list[str]:
        return list(self.attrs["items"])

    def __getattr__(self, name: str) -> np.ndarray:
        small = self.__dict__.get("_small", {})
        if name in small:
            return small[name]
        raise AttributeError(name)

    def rgb(self, index: int | slice) -> np.ndarray:
        """(H, W, 3) for one view, (n, H, W, 3) for a slice."""
        if isinstance(index, (int, np.integer)):
            return self.rgb_many(np.array([index]))[0]
        return decode_rgb(self.group["rgb"][index])

    def mask(self, index: int | slice) -> np.ndarray:
        if isinstance(index, (int, np.integer)):
            return self.mask_many(np.array([index]))[0]
        return self.group["mask"][index]

    def rgb_many(self, indices: np.ndarray) -> np.ndarray:
        """(n, H, W, 3) views in the order given (contiguous)."""
        if self._fast:
            return np.stack([self._chunk("rgb", i) for i in np.asarray(indices, np.int64)])
        return decode_rgb(self._many("rgb", indices))

    def mask_many(self, indices: np.ndarray) -> np.ndarray:
        return self._many("mask", indices)

    def _many(self, name: str, indices: np.ndarray) -> np.ndarray:
        idx = np.asarray(indices, np.int64)
        if self._fast:
            return np.stack([self._chunk(name, i) for i in idx])
        order = np.argsort(idx)
        data = self.group[name].get_orthogonal_selection((idx[order],))
        out = np.empty_like(data)
        out[order] = data
        return out

    def geometry(self, item: str) -> ItemGeometry:
        cache = self.__dict__.setdefault("_geometry", {})
        if item not in cache:  # small and used by every sample of the item: read once
            g = self.group["items"][item]
            cache[item] = ItemGeometry(g["vertices"][:], g["coord"][:].astype(np.int32), g["out_sh"][:], g["bounds"][:])
        return cache[item]

    def views_of(self, item: str, role: int | None = None) -> np.ndarray:
        """Indices of the views of an item (optionally only targets (0) or inputs (1))."""
        sel = self._small["item"] == self.items.index(item)
        if role is not None:
            sel &= self._small["role"] == role
        return np.nonzero(sel)[0]

    def verify(self) -> bool:
        """Recompute the content hash (slow: reads every view)."""
        digest = hashlib.sha256()
        for i in range(len(self)):
            digest.update(self.rgb(i).tobytes())
            digest.update(self.mask(i).tobytes())
        for k in ("K", "RT", "angles", "view_id", "item", "role"):
            digest.update(self._small[k].tobytes())
        for name in self.items:
            geo = self.geometry(name)
            for arr in (geo.vertices, geo.coord, geo.out_sh, geo.bounds):
                digest.update(np.ascontiguousarray(arr).tobytes())
        return digest.hexdigest()[:32] == self.manifest["content_hash"]
