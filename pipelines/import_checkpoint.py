"""Stage `import-checkpoint`: a released `.ckpt` (Morphable Diffusion or SyncDreamer) into our checkpoint store.

The file is read through the allow-listed reader (model.diffusion.checkpoints.read_checkpoint: tensors only, the
rest of a Lightning checkpoint inert, memory-mapped), its weights are loaded into the network with the release's
semantics (strict for Morphable Diffusion; SyncDreamer's drop filter for a training init), and the result is written
as `<storage>/checkpoints/<name>/<weights hash>/` (model.safetensors + config.json recording the preset, projection,
topology, the source file's name and sha256 and the import report's counts).

Imports are cached by everything that changes the result: the source file's sha256 and the request (kind, preset,
topology, projection, name; `<storage>/checkpoints/.imports/<sha256>-<request digest>.json`), so every command that
accepts a `.ckpt` (generate, evaluate, train --init, the published-checkpoint assets) imports it once per request,
and a second import with another topology is another checkpoint, never the first one's config. The kind (which
network the file holds) is recognised from its keys and the preset from their shapes when not given. A name that
already holds another import or a trained model is refused.
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

from pipelines import catalog
from pipelines.settings import Settings

KINDS = ("auto", "morphable", "syncdreamer")
CHECKPOINT_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")


@dataclass
class ImportOutcome:
    folder: Path
    source_sha256: str
    preset: str
    report: dict[str, int]
    reused: bool
    seconds: float
    kind: str


def is_checkpoint_file(path: str | Path) -> bool:
    """A released checkpoint file (imported on use) rather than one of our checkpoint folders."""
    p = Path(path)
    return p.is_file() and p.suffix in CHECKPOINT_SUFFIXES


def _cache_path(root: Path, sha: str, request: dict) -> Path:
    from storage.hashing import hash_json

    return root / "checkpoints" / ".imports" / f"{sha}-{hash_json(request, 12)}.json"


def _refuse_name_collision(root: Path, name: str, config: dict, source: Path) -> None:
    """A checkpoint name holds one import (or one training run): another file, or the same weights with another
    configuration (topology, projection), under that name would make one of them unreachable."""
    from model.diffusion.checkpoints import CheckpointError
    from storage.jsonfile import read_json

    for other in sorted((root / "checkpoints" / name).glob("*/config.json")):
        theirs = read_json(other, "a checkpoint configuration", "remove the unfinished checkpoint folder")
        if theirs == config:  # this very import, written before (its cache record lost)
            continue
        what = (f"an import of {theirs['imported']['source']} (sha256 {theirs['imported']['source_sha256'][:12]}, "
                f"topology {theirs['training'].get('topology')}, projection {theirs['model']['projection']})"
                if "imported" in theirs else "a trained model")
        raise CheckpointError(source, f"the checkpoint name {name!r} already holds {what} at {other.parent}",
                              "pass another --name (or omit it: the default name holds the kind, preset, topology "
                              "and the file's sha256)")


def recognise_preset(state_dict: dict, projection: str, kind: str, source: str) -> str:
    """The preset whose state-dict keys and shapes the file holds (built on the meta device: no memory)."""
    from model.diffusion.checkpoints import MULTIVIEW_BUFFERS, CheckpointError, syncdreamer_keeps
    from model.diffusion.config import PRESETS
    from model.diffusion.network import state_dict_manifest

    def relevant(key: str) -> bool:
        return key not in MULTIVIEW_BUFFERS and (kind == "morphable" or syncdreamer_keeps(key))

    theirs = {k: list(v.shape) for k, v in state_dict.items() if relevant(k)}
    for name, make in PRESETS.items():
        ours = {k: v["shape"] for k, v in state_dict_manifest(make(projection)).items() if relevant(k)}
        if kind == "morphable" and ours == theirs:
            return name
        if kind == "syncdreamer" and all(ours.get(k) == s for k, s in theirs.items() if k in ours) and \
                len(set(theirs) & set(ours)) > 0.9 * len(ours):
            return name
    raise CheckpointError(source, f"its {len(theirs)} weights match none of the presets ({', '.join(PRESETS)}) "
                                  f"(kind {kind!r})", "check --kind; this may be another architecture's checkpoint")


def import_checkpoint(settings: Settings, path: str | Path, kind: str = "auto", preset: str | None = None,
                      projection: str | None = None, topology: str | None = None, name: str | None = None,
                      log=print) -> ImportOutcome:
    """Import (or find the earlier import of) a released checkpoint file; returns our checkpoint folder."""
    import torch

    from model.diffusion.checkpoints import (CheckpointError, import_morphable, import_syncdreamer, read_checkpoint,
                                             recognise_kind)
    from model.diffusion.config import PRESETS
    from model.diffusion.network import MorphableDiffusion
    from storage.atomic import atomic_write_text
    from storage.checkpoints import read_manifest, save_checkpoint
    from storage.hashing import cached_sha256, store_hash_cache
    from storage.ids import validate_name

    t0 = time.perf_counter()
    path = Path(path)
    if name is not None:
        validate_name(name, "checkpoint name (--name)")
    if kind not in KINDS:
        raise ValueError(f"unknown checkpoint kind {kind!r}; choose one of {KINDS}")
    # the dataset (and so the cameras) of a released model follow from the 3DMM it was trained with
    dataset = catalog.dataset_of_topology(topology) if topology is not None else \
        catalog.dataset_of_projection(projection or "perspective")
    projection = projection or catalog.dataset(dataset).projection
    if not path.is_file():
        raise CheckpointError(path, "checkpoint file not found", "give the path of the released .ckpt")
    root = Path(settings.storage_root)
    sha = cached_sha256(path, store_hash_cache(root))  # a 5.5 GB file is read once per version, not per call
    request = {"kind": kind, "preset": preset, "topology": topology, "projection": projection, "name": name}
    cache = _cache_path(root, sha, request)
    if cache.is_file():
        doc = json.loads(cache.read_text())
        folder = Path(doc["folder"])
        if (folder / "manifest.json").is_file():
            read_manifest(folder)
            return ImportOutcome(folder, sha, doc["preset"], doc["report"], True, time.perf_counter() - t0,
                                 doc.get("kind", kind))
    log(f"importing {path.name} ({path.stat().st_size / 1e9:.2f} GB, sha256 {sha[:12]})")
    state_dict = read_checkpoint(path)
    kind = recognise_kind(state_dict, str(path)) if kind == "auto" else kind
    preset = preset or recognise_preset(state_dict, projection, kind, str(path))
    cfg = PRESETS[preset](projection)
    torch.manual_seed(0)  # the parts a SyncDreamer init leaves at their initialisation are reproducible
    model = MorphableDiffusion(cfg)
    report = (import_morphable if kind == "morphable" else import_syncdreamer)(model, state_dict, str(path))
    counts = report.summary()
    config = {"model": dataclasses.asdict(cfg),
              "training": {"dataset": dataset, "topology": topology, "imported": True},
              "imported": {"kind": kind, "source": path.name, "source_sha256": sha, "report": counts}}
    name = validate_name(name or f"{kind}-{preset}-{topology or dataset}-{sha[:8]}", "checkpoint name (--name)")
    _refuse_name_collision(root, name, config, path)
    folder = save_checkpoint(root, name, model.state_dict(), config, extra={"imported_from_sha256": sha})
    atomic_write_text(cache, json.dumps({"folder": str(folder), "preset": preset, "kind": kind, "report": counts,
                                         "source": str(path), "request": request}))
    log(f"imported {kind} {preset} into {folder} ({counts})")
    return ImportOutcome(folder, sha, preset, counts, False, time.perf_counter() - t0, kind)


def checkpoint_folder(settings: Settings, checkpoint: str | Path, projection: str, log=print) -> Path:
    """Our checkpoint folder for `checkpoint`: the folder itself, or the (cached) import of a released file."""
    if is_checkpoint_file(checkpoint):
        return import_checkpoint(settings, checkpoint, "morphable", projection=projection, log=log).folder
    return Path(checkpoint)
