"""Our own checkpoints: `model.safetensors` + `config.json` in a content-addressed folder, written atomically.

    <root>/checkpoints/<name>/<hash>/model.safetensors, config.json, manifest.json
The hash is over the tensors' bytes (sorted keys), so identical weights share one folder and downstream assets can
use it as the data version.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from storage.atomic import atomic_directory
from storage.errors import CorruptFileError, MissingFileError


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
    from safetensors.torch import save_file

    digest = tensors_hash(tensors)
    target = Path(root) / "checkpoints" / name / digest
    if (target / "manifest.json").is_file():
        return target
    with atomic_directory(target) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp / "model.safetensors"))
        (tmp / "config.json").write_text(json.dumps(config, indent=1))
        (tmp / "manifest.json").write_text(json.dumps({"hash": digest, "keys": len(tensors), **(extra or {})}))
    return target


def load_checkpoint(folder: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(tensors, config) of a checkpoint folder written by `save_checkpoint`."""
    from safetensors.torch import load_file

    folder = Path(folder)
    if not (folder / "manifest.json").is_file():
        raise MissingFileError(folder, "no complete checkpoint here (manifest.json missing)",
                               "point at a folder written by `morphable train`")
    try:
        return load_file(str(folder / "model.safetensors")), json.loads((folder / "config.json").read_text())
    except Exception as exc:
        raise CorruptFileError(folder, f"checkpoint cannot be read ({exc})", "re-create it") from exc


def checkpoint_hash(folder: str | Path) -> str:
    """The content hash recorded in a checkpoint folder's manifest (what downstream assets version against)."""
    path = Path(folder) / "manifest.json"
    if not path.is_file():
        raise MissingFileError(folder, "no complete checkpoint here (manifest.json missing)",
                               "point at a folder written by `morphable train`")
    return str(json.loads(path.read_text())["hash"])
