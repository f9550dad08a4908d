"""Stage `train-reference`: the project's own pretrained tiny model, the demo's starting point (as SyncDreamer's
weights are the paper's).

One resumable command builds it from nothing, through the same stages a user runs:

1. a large stand-in (`ReferenceConfig.facescape_subjects` identities x `expressions`, `thuman_subjects` bodies) with
   its own seed, whose identities are therefore disjoint from the demo stand-in's (seed 0);
2. tracking and view stores of every subject (`workers` processes);
3. the tiny first stage on those views, then the diffusion model (`pipelines.train`, exact resume);
4. export to `pretrained/<name>/`: `model.safetensors` (float16: the repository keeps it under 30 MB),
   `recipe.json` (the exact command, both configs, data seed and spec, the stand-in's content hash, steps/s, wall
   time, the loss curve's tail) and `loss_curve.png`.

Everything lives under `<data_root>/reference/` (its own stand-in and store), so the demo's store is untouched.
An interrupted run is continued by running the same command again: finished subjects are skipped and training
resumes from its last checkpoint bit for bit.
"""
from __future__ import annotations

import dataclasses
import json
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from pipelines import catalog
from pipelines.settings import Settings, load_settings
from pipelines.train import TrainConfig
from storage.atomic import atomic_directory

PRETRAINED_DIR = Path(__file__).resolve().parent.parent / "pretrained"
_TRAIN_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def _p(default, help: str, **meta):
    return field(default=default, metadata={"help": help, **meta})


def _train(name: str, default):
    """A TrainConfig field (its help and choices) with the reference recipe's default."""
    return field(default=default, metadata=_TRAIN_FIELDS[name].metadata)


@dataclass(frozen=True)
class ReferenceConfig:
    """The reference model's recipe; the single source of `morphable train-reference`'s flags."""

    dataset: str = _train("dataset", "facescape")
    preset: str = _p("", "network preset; empty: the dataset's (facescape: tiny; thuman: tiny-narrow, 6 MB, so "
                         "that both shipped models keep the repository's weights under 30 MB)")
    data_seed: int = _p(1000, "seed of the reference stand-in (the demo's is 0: other identities)")
    facescape_subjects: int = _p(-1, "FaceScape identities of the reference stand-in; -1: the dataset's "
                                     "(facescape: 64; thuman: 0, a body model reads no face)")
    thuman_subjects: int = _p(64, "THuman scans of the reference stand-in")
    thuman_poses: str = _p("", "the stand-in's body poses (standing | varied); empty: the dataset's (facescape: "
                               "standing; thuman: varied, so that the model learns to follow the SMPL-X it is given)")
    first_stage_init: str = _p("", "autoencoder to use as it is (a checkpoint folder) instead of training one; "
                                   "empty: the dataset's (facescape: trained; thuman: the FaceScape reference's, "
                                   "the one first stage every tiny experiment of the demo shares)")
    expressions: int = _p(4, "expressions per identity (06 is held out of training, as in the paper)")
    first_id: int = _p(4, "first identity id (the demo stand-in uses 1-3 and 122)")
    # the diffusion training's fields (TrainConfig's help and choices; bf16 ran 2.7x slower than 32 on the 2-core
    # CPU the shipped model was built on)
    first_stage_steps: int = _train("first_stage_steps", 600)
    steps: int = _train("steps", 4000)
    batch_size: int = _train("batch_size", 4)
    loss_views: int = _train("loss_views", 4)
    lr: float = _train("lr", 1e-3)
    warmup_steps: int = _train("warmup_steps", 100)
    precision: str = _train("precision", "32")
    ckpt_every: int = _train("ckpt_every", 250)
    workers: int = _p(0, "processes preparing subjects (0: one per CPU core)")
    name: str = _p("", "name of the model (default: tiny-<dataset>-reference)")

    def model_name(self) -> str:
        return self.name or f"tiny-{self.dataset}-reference"

    def resolved(self) -> "ReferenceConfig":
        """The recipe with every dataset-dependent default filled in (what is recorded and run)."""
        body = self.dataset == "thuman"
        return dataclasses.replace(
            self, preset=self.preset or ("tiny-narrow" if body else "tiny"),
            facescape_subjects=(0 if body else 64) if self.facescape_subjects < 0 else self.facescape_subjects,
            thuman_poses=self.thuman_poses or ("varied" if body else "standing"),
            first_stage_init=self.first_stage_init or (str(PRETRAINED_DIR / "tiny-facescape-reference") if body
                                                       else ""))


def reference_settings(settings: Settings) -> Settings:
    """Settings whose stand-in and store live under `<data_root>/reference/` (never the demo's)."""
    return load_settings(env={"MORPHABLE_DATA_ROOT": str(Path(settings.data_root) / "reference")})


def _prepare_subject(args: tuple) -> tuple[str, str, float]:
    """Track + views of one subject unless its view store is complete for the current track (a worker's task)."""
    settings, dataset, subject = args
    from pipelines.track import track
    from pipelines.views import views
    from storage.errors import DataError
    from storage.views import ViewStore, store_path

    t0 = time.perf_counter()
    try:
        ViewStore.open(store_path(settings.storage_root, dataset, catalog.dataset(dataset).default_topology, subject))
        return dataset, subject, 0.0
    except DataError:
        pass
    track(settings, dataset, subject)
    views(settings, dataset, subject)
    return dataset, subject, time.perf_counter() - t0


def prepare_reference_data(settings: Settings, cfg: ReferenceConfig, log=print) -> dict:
    """The reference stand-in, tracked and rendered; returns {seconds per stage, subjects}."""
    from pipelines.demo_data import StandinSpec, ensure_demo_data
    from pipelines.ingest import discover_subjects
    from pipelines.parallel import default_workers, process_pool
    from pipelines.progress import Progress

    spec = StandinSpec.with_counts(cfg.facescape_subjects, cfg.thuman_subjects, cfg.expressions, heldout=0,
                                   first_id=cfg.first_id, thuman_poses=cfg.thuman_poses)
    t0 = time.perf_counter()
    workers = cfg.workers or default_workers()
    report = ensure_demo_data(settings.synthetic_root, cfg.data_seed, spec=spec, workers=workers)
    t1 = time.perf_counter()
    log(f"reference stand-in: {report.counts} ({'written' if report.created else 'already there'}, "
        f"{t1 - t0:.0f} s)")
    datasets = [d for d in catalog.DATASET_NAMES if d != "facescape" or cfg.facescape_subjects]
    tasks = [(settings, d, s) for d in datasets for s in discover_subjects(settings, d)]
    bar = Progress(len(tasks), "reference subjects tracked and rendered", log)
    with process_pool(max(1, min(workers, len(tasks)))) as pool:
        for _dataset, _subject, _sec in pool.map(_prepare_subject, tasks):
            bar.update(1)
    bar.close()
    t2 = time.perf_counter()
    return {"standin_seconds": round(t1 - t0, 1), "prepare_seconds": round(t2 - t1, 1), "spec": spec.as_dict(),
            "standin_content_hash": _standin_hash(settings.synthetic_root), "counts": report.counts}


def _standin_hash(root: Path) -> str:
    return json.loads((Path(root) / "MANIFEST.json").read_text())["content_hash"]


def train_config(cfg: ReferenceConfig, first_stage: str | None) -> TrainConfig:
    shared = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name in _TRAIN_FIELDS and f.name != "name"}
    return TrainConfig(**shared, first_stage=first_stage, preview_steps=20, name=cfg.model_name())


def train_reference(settings: Settings, cfg: ReferenceConfig, out_dir: Path = PRETRAINED_DIR, log=print) -> Path:
    """Build (or continue) the reference model and export it to `out_dir/<name>/`; returns that folder."""
    from pipelines.first_stage import FirstStageConfig, train_first_stage
    from pipelines.train import train
    from storage.atomic import atomic_write_text

    t0 = time.perf_counter()
    asked, cfg = cfg, cfg.resolved()
    ref = reference_settings(settings)
    data = prepare_reference_data(ref, cfg, log)
    run_dir = Path(ref.storage_root) / "runs" / cfg.model_name()
    run_dir.mkdir(parents=True, exist_ok=True)
    record = run_dir / "first_stage"
    t_fs = time.perf_counter()
    if not record.is_file():
        datasets = catalog.DATASET_NAMES if cfg.facescape_subjects else ("thuman",)
        fs = train_first_stage(ref, FirstStageConfig(steps=0 if cfg.first_stage_init else cfg.first_stage_steps,
                                                     init=cfg.first_stage_init or None, datasets=datasets), log=log)
        atomic_write_text(record, str(fs.checkpoint))
        atomic_write_text(run_dir / "first_stage_psnr.json", json.dumps(fs.psnr_heldout))
    first_stage = record.read_text().strip()
    t_train = time.perf_counter()
    tcfg = train_config(cfg, first_stage)
    resume = (run_dir / "last").is_file()
    start_step = int((run_dir / "last").read_text().strip().split("_")[1]) if resume else 0
    if resume:
        log(f"resuming {cfg.model_name()} from step {start_step}")
    result = train(ref, tcfg, resume=resume, log=log)
    t_end = time.perf_counter()
    steps_per_s = (result.step - start_step) / max(t_end - t_train, 1e-9)
    timing = {"standin_s": data["standin_seconds"], "prepare_s": data["prepare_seconds"],
              "first_stage_s": round(t_train - t_fs, 1), "train_s_this_process": round(t_end - t_train, 1),
              "wall_s_this_process": round(t_end - t0, 1), "steps_this_process": result.step - start_step,
              "steps_per_second_this_process": round(steps_per_s, 3)}
    timing["checkpoint_intervals"] = checkpoint_intervals(run_dir)
    return export_reference(result.checkpoint, cfg, tcfg, data, timing, result.losses, out_dir,
                            json.loads((run_dir / "first_stage_psnr.json").read_text())
                            if (run_dir / "first_stage_psnr.json").is_file() else {}, asked)


def export_reference(checkpoint: Path, cfg: ReferenceConfig, tcfg, data: dict, timing: dict, losses: list[float],
                     out_dir: Path, first_stage_psnr: dict, asked: ReferenceConfig | None = None) -> Path:
    """float16 weights + config + recipe into `out_dir/<name>/` (atomically). The recipe's command holds the flags
    given (`asked`; the dataset-dependent defaults resolve on any machine), its `reference_config` what they
    resolved to here."""
    import numpy as np
    from safetensors.torch import load_file

    from pipelines.plots import loss_curve
    from storage.checkpoints import tensors_hash, write_checkpoint_files

    tensors = load_file(str(Path(checkpoint) / "model.safetensors"))
    half = {k: (v.half() if v.is_floating_point() else v) for k, v in tensors.items()}
    config = json.loads((Path(checkpoint) / "config.json").read_text())
    recipe = {
        "command": "morphable train-reference " + " ".join(
            f"--{k.replace('_', '-')} {shlex.quote(str(v))}" for k, v in dataclasses.asdict(asked or cfg).items()
            if v != getattr(ReferenceConfig, k, None) and k != "workers"),
        "argv": [Path(sys.argv[0]).name, *sys.argv[1:]],
        "reference_config": dataclasses.asdict(cfg), "training_config": dataclasses.asdict(tcfg),
        "data": {"seed": cfg.data_seed, **data}, "timing": timing,
        "first_stage_psnr_heldout": first_stage_psnr, "final_loss": float(np.mean(losses[-100:])) if losses else None,
        "loss_every_100": [float(np.mean(losses[i:i + 100])) for i in range(0, len(losses), 100)],
        "source_checkpoint_hash": Path(checkpoint).name, "weights_sha256_of": "model.safetensors",
        "float16_tensors_hash": tensors_hash(half),
    }
    target = out_dir / cfg.model_name()
    with atomic_directory(target) as tmp:
        config["stored_dtype"] = "float16"
        # a checkpoint folder in the store's format: usable as --init, --checkpoint or a published experiment
        recipe["files"] = write_checkpoint_files(tmp, half, config)
        (tmp / "recipe.json").write_text(json.dumps(recipe, indent=1))
        if losses:
            loss_curve(losses, tmp / "loss_curve.png", f"{cfg.model_name()} ε-MSE")
    return target


def checkpoint_intervals(run_dir: Path) -> dict:
    """The run's throughput from its resumable checkpoints' write times, over every process that trained it
    (a resumed or paused run included): steps/s per interval and their median."""
    import numpy as np

    folders = sorted((run_dir / "checkpoints").glob("step_*"))
    marks = [(int(f.name.split("_")[1]), f.stat().st_mtime) for f in folders]
    rates = [round((b[0] - a[0]) / (b[1] - a[1]), 3) for a, b in zip(marks, marks[1:]) if b[1] > a[1]]
    return {"steps": [m[0] for m in marks], "steps_per_second": rates,
            "median_steps_per_second": float(np.median(rates)) if rates else None}
