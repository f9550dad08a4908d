"""Our own checkpoints: `model.safetensors` + `config.json` in a content-addressed folder, written atomically.

    <root>/checkpoints/<name>/<hash>/model.safetensors, config.json, manifest.json
The hash is over the tensors' bytes (sorted keys), so identical weights share one folder and downstream assets can
use it as the data version. The manifest also records the sha256 of each file; reading verifies them (once per
file version: the result is cached in `.verified` by size and modification time), so flipped bytes or an edited
config.json are refused instead of silently used.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from storage.atomic import SkipWrite, atomic_directory
from storage.errors import CorruptFileError, MissingFileError
from storage.hashing import ContentHashCache, hash_file
from storage.jsonfile import read_json

CHECKPOINT_FILES = ("model.safetensors", "config.json")
NOT_A_CHECKPOINT_FIX = "point at a folder written by `morphable train` or `morphable import-checkpoint`"
CHANGED_FIX = "the file changed after the checkpoint was written; re-create or re-import the checkpoint"


def tensors_hash(tensors: dict[str, Any], length: int = 16) -> str:
    import torch

    h = hashlib.sha256()
    for k in sorted(tensors):
        t = tensors[k].detach().contiguous().cpu()
        h.update(k.encode())
        h.update(str(t.dtype).encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:length]


def save_checkpoint(root: str | Path, name: str, tensors: dict[str, Any], config: dict[str, Any],
                    extra: dict[str, Any] | None = None) -> Path:
    target = Path(root) / "checkpoints" / name / tensors_hash(tensors)
    if (target / "manifest.json").is_file():
        return target
    with atomic_directory(target) as tmp:
        if (target / "manifest.json").is_file():  # another writer finished it while we waited for the lock
            raise SkipWrite
        write_checkpoint_files(tmp, tensors, config, extra)
    return target


def write_checkpoint_files(folder: str | Path, tensors: dict[str, Any], config: dict[str, Any],
                           extra: dict[str, Any] | None = None) -> dict[str, str]:
    """The checkpoint format into an (unfinished, private) folder: model.safetensors, config.json and the manifest
    with the tensors' hash and each file's sha256 (returned). Callers make the folder appear atomically."""
    from safetensors.torch import save_file

    folder = Path(folder)
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(config, indent=1))
    files = {f: hash_file(folder / f) for f in CHECKPOINT_FILES}
    (folder / "manifest.json").write_text(json.dumps({"hash": tensors_hash(tensors), "keys": len(tensors),
                                                      "files": files, **(extra or {})}))
    return files


def read_manifest(folder: str | Path) -> dict[str, Any]:
    folder = Path(folder)
    if not (folder / "manifest.json").is_file():
        raise MissingFileError(folder, "no complete checkpoint here (manifest.json missing)", NOT_A_CHECKPOINT_FIX)
    return read_json(folder / "manifest.json", "a checkpoint manifest", NOT_A_CHECKPOINT_FIX)


def verify_files(folder: str | Path, manifest: dict[str, Any]) -> None:
    """Check each file's sha256 against the manifest, hashing a file only when its size or mtime changed."""
    folder = Path(folder)
    cache = ContentHashCache(folder / ".verified")
    for name, recorded in manifest.get("files", {}).items():
        path = folder / name
        if not path.is_file():
            raise MissingFileError(path, "checkpoint file missing", CHANGED_FIX)
        actual = cache.sha256(path)
        if actual != recorded:
            raise CorruptFileError(path, f"content differs from the checkpoint's manifest (sha256 {actual[:12]}, "
                                         f"recorded {recorded[:12]})", CHANGED_FIX)
    cache.save()


def load_checkpoint(folder: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(tensors, config) of a checkpoint folder written by `save_checkpoint`, verified against its manifest."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    manifest = read_manifest(folder)
    verify_files(folder, manifest)
    try:
        tensors = load_file(str(folder / "model.safetensors"))
    except (SafetensorError, OSError) as exc:
        raise CorruptFileError(folder / "model.safetensors", f"cannot be read ({exc})", CHANGED_FIX) from exc
    if "files" not in manifest and tensors_hash(tensors) != manifest.get("hash"):  # written before files were hashed
        raise CorruptFileError(folder / "model.safetensors", "weights differ from the checkpoint's recorded hash "
                                                             f"{manifest.get('hash')}", CHANGED_FIX)
    config = read_json(folder / "config.json", "a checkpoint configuration", CHANGED_FIX)
    return tensors, config


def checkpoint_hash(folder: str | Path) -> str:
    """The content hash recorded in a checkpoint folder's manifest (what downstream assets version against)."""
    return str(read_manifest(folder)["hash"])


def list_checkpoints(root: str | Path) -> list[dict[str, Any]]:
    """Every complete checkpoint in the store (`<root>/checkpoints/<name>/<hash>/`), oldest first: name, hash,
    folder, written (UTC, ISO) — what an experiment pinned by hash (`checkpoint = "<hash>"`) can name."""
    import datetime as dt

    out = []
    for manifest in Path(root, "checkpoints").glob("*/*/manifest.json"):
        folder = manifest.parent
        if folder.parent.name.startswith(".") or ".tmp-" in folder.name:
            continue
        written = dt.datetime.fromtimestamp(manifest.stat().st_mtime, dt.timezone.utc)
        out.append({"name": folder.parent.name, "hash": folder.name, "folder": str(folder),
                    "written": written.isoformat(timespec="seconds")})
    return sorted(out, key=lambda c: (c["written"], c["name"], c["hash"]))


def find_checkpoint(root: str | Path, digest: str) -> Path:
    """The store's checkpoint folder whose content hash is `digest` (the full 16 hex digits, or a prefix of at
    least 8 that names one checkpoint)."""
    import re

    where = Path(root) / "checkpoints"
    if not re.fullmatch(r"[0-9a-f]{8,16}", digest):
        raise ValueError(f"checkpoint hash {digest!r}: 8 to 16 lower-case hex digits (as `morphable checkpoints` "
                         "lists them)")
    hits = {c["hash"]: Path(c["folder"]) for c in list_checkpoints(root) if c["hash"].startswith(digest)}
    if len(hits) != 1:
        what = "no checkpoint" if not hits else f"{len(hits)} checkpoints ({', '.join(sorted(hits))})"
        raise MissingFileError(where / f"*/{digest}", f"{what} with hash {digest} in the store",
                               "list them with `morphable checkpoints` and give one hash (or more of its digits)")
    return next(iter(hits.values()))
