"""The GPU-heavy stages as a separate process: `python -m pipelines.worker` under Dagster Pipes.

The orchestrator (assets_defs/gpu_steps.py) launches this with CUDA_VISIBLE_DEVICES set to the one GPU it holds
(empty on a CPU machine) and extras {"task": ..., "config": {...}, "settings_file": ...}. The worker runs the
stage, streams logs, and reports the materialization (metadata + data version) back; a crash here cannot take the
orchestrator down, and the process exit frees the GPU.

Tasks: first_stage (FirstStageConfig), train (TrainConfig), eval_set (protocol / method / checkpoint / sampler),
import (a published file), animation (experiment / sequence / checkpoint / sampler).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np

from pipelines.metadata import JsonValue, Markdown, Metadata, PathValue, to_wire


def _md_png(path: str | Path, alt: str) -> dict[str, Any]:
    from storage.thumbnails import markdown_png_file

    return Markdown(markdown_png_file(path, alt))


def device_info() -> str:
    import torch

    if torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name(0)}, CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')})"
    return f"cpu ({torch.get_num_threads()} threads)"


def run_first_stage(settings, config: dict, log: Callable[[str], None]) -> tuple[Metadata, str]:
    from pipelines.first_stage import FirstStageConfig, psnr_bars_db, train_first_stage
    from storage.thumbnails import contact_sheet, markdown_image

    cfg = FirstStageConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in config.items()})
    res = train_first_stage(settings, cfg, log=log)
    sheet = contact_sheet(list(res.reconstructions), tile=64, columns=len(res.reconstructions) // 2)
    meta = {"dagster/uri": str(res.checkpoint), "checkpoint_hash": res.checkpoint.name,
            "psnr_heldout": JsonValue(res.psnr_heldout),
            "psnr_target_db": JsonValue(psnr_bars_db()), "latent_scale_factor": res.scale_factor,
            "steps": cfg.steps,
            "seconds": round(res.seconds, 1), "device": device_info(),
            "heldout_vs_reconstruction": Markdown(markdown_image(sheet, "held-out (top) and decoded (bottom)"))}
    return meta, res.checkpoint.name


def run_train(settings, config: dict, log: Callable[[str], None]) -> tuple[Metadata, str]:
    from pipelines.train import TrainConfig, train

    resume = bool(config.pop("resume", False))
    cfg = TrainConfig(**config)
    res = train(settings, cfg, resume=resume, log=log)
    if res.checkpoint is None:  # a torchrun rank > 0: rank 0 exports and reports
        return {}, ""
    meta = {"dagster/uri": str(res.checkpoint), "checkpoint_hash": res.checkpoint.name, "steps": res.step,
            "final_loss": float(np.mean(res.losses[-20:])), "seconds": round(res.seconds, 1),
            "steps_per_second": round(len(res.losses) / max(res.seconds, 1e-9), 3), "device": device_info(),
            "run_dir": PathValue(str(res.run_dir)),
            "tensorboard": f"tensorboard --logdir {res.run_dir / 'tensorboard'}",
            "training_views": JsonValue(res.views_manifest),
            "training_config": JsonValue(config),
            "loss_curve": _md_png(res.loss_plot, "loss curve")}
    if res.preview is not None:
        meta["sample_sheet"] = _md_png(res.preview, "input, ground truth (row 1) and samples (row 2)")
    return meta, res.checkpoint.name


def run_eval_set(settings, config: dict, log: Callable[[str], None]) -> tuple[Metadata, str]:
    """A protocol's evaluation set, and with `ablations` (a model's), the conditioning ablations' sets from the same
    loaded weights in the same run."""
    import hashlib

    from model.diffusion.ddim import DDIMConfig
    from pipelines.evaluation_sets import generate_eval_set, load_for_protocol
    from pipelines.protocols import get_protocol
    from storage.eval_sets import EvalSet
    from storage.thumbnails import contact_sheet, markdown_image

    method, sampler = config.get("method", "model"), DDIMConfig(**config.get("sampler", {}))
    model = None
    if method == "model" and config.get("ablations"):
        model = load_for_protocol(settings, config["checkpoint"], get_protocol(config["protocol"]), sampler=sampler)
    topology = config.get("topology")  # (a model's own is checked against it)
    res = generate_eval_set(settings, config["protocol"], config.get("checkpoint"), method, sampler,
                            image_size=config.get("image_size"), log=log, model=model, topology=topology)
    ablations = {a: generate_eval_set(settings, config["protocol"], config.get("checkpoint"), method, sampler,
                                      log=log, ablation=a, model=model, topology=topology)
                 for a in config.get("ablations", ())}
    es = EvalSet.open(res.path)
    first = next(es.pairs())
    n = min(8, len(first.arrays["gt"]))
    sheet = contact_sheet([*first.arrays["gt"][:n], *first.arrays["generated"][:n]], tile=64, columns=n)
    meta = {"dagster/uri": str(res.path), "pairs": res.pairs, "views": res.views, "method": res.method,
            "checkpoint_hash": res.checkpoint_hash, "seconds": round(res.seconds, 1), "reused": res.reused,
            "device": device_info(), "topology": es.manifest.get("topology"),
            "sampler": JsonValue({**(es.manifest.get("sampler") or {}),
                                  "precision_resolved": es.manifest.get("sampler_precision")}),
            "sample": Markdown(markdown_image(sheet, f"{first.key}: ground truth (top), generated (bottom)"))}
    version = es.manifest["content_hash"]
    if ablations:
        meta["ablation_sets"] = JsonValue({a: str(r.path) for a, r in ablations.items()})
        meta["ablation_seconds"] = round(sum(r.seconds for r in ablations.values()), 1)
        digests = [version] + [EvalSet.open(r.path).manifest["content_hash"] for r in ablations.values()]
        version = hashlib.sha256("".join(digests).encode()).hexdigest()[:32]
    return meta, version


def run_import(settings, config: dict, log: Callable[[str], None]) -> tuple[Metadata, str]:
    """A published experiment: the released file (or one of our checkpoint folders) into the store, once."""
    from pathlib import Path

    from pipelines.import_checkpoint import import_checkpoint
    from storage.checkpoints import checkpoint_hash

    source = Path(config["file"])
    if source.is_dir():
        folder, meta = source, {"source": str(source), "imported": False}
    else:
        out = import_checkpoint(settings, source, "morphable", projection=config["projection"],
                                topology=config.get("topology"), name=config.get("name"), log=log)
        folder = out.folder
        meta = {"source": str(source), "source_sha256": out.source_sha256, "preset": out.preset,
                "import_report": JsonValue(out.report), "reused_import": out.reused,
                "seconds": round(out.seconds, 1)}
    digest = checkpoint_hash(folder)
    return {"dagster/uri": str(folder), "checkpoint_hash": digest, **meta}, digest


def run_animation(settings, config: dict, log: Callable[[str], None]) -> tuple[Metadata, str]:
    """An experiment's checkpoint driven through an animation sequence (pipelines/animations.py)."""
    from pipelines.animations import run_animation_task

    return run_animation_task(settings, config, log)


TASKS = {"first_stage": run_first_stage, "train": run_train, "eval_set": run_eval_set, "import": run_import,
         "animation": run_animation}


def main() -> None:
    import json

    from dagster_pipes import open_dagster_pipes

    from pipelines.settings import load_settings

    if int(os.environ.get("RANK", "0")) > 0:  # torchrun ranks > 0 train silently; rank 0 talks to Dagster
        spec = json.loads(os.environ["MORPHABLE_WORKER_TASK"])
        TASKS[spec["task"]](load_settings(spec["settings_file"] or None), dict(spec["config"]), lambda *_: None)
        return
    with open_dagster_pipes() as pipes:
        task = pipes.get_extra("task")
        settings = load_settings(pipes.extras.get("settings_file") or None)
        pipes.log.info(f"{task} on {device_info()}")
        meta, version = TASKS[task](settings, dict(pipes.get_extra("config")), pipes.log.info)
        pipes.report_asset_materialization(metadata=to_wire(meta), data_version=version)


if __name__ == "__main__":
    main()
