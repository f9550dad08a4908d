"""Stage `train`: the diffusion training loop (spec §3.15-3.16) with atomic checkpoints, exact resume and DDP.

Plain torch + `torchrun` rather than Lightning Fabric / Accelerate: the loop needs control of every random draw for
bit-exact resume, and DDP + autocast + accumulation are a few lines here (neither library is in the install).

* Randomness: step s draws its items from `default_rng([seed, s])`; micro-batch g (g = rank * accum + m, the same
  global index whatever the world size) draws targets, input view, timesteps, noise, posterior samples and condition
  dropout from a generator seeded with (seed, s, g). So a resumed run equals an uninterrupted one bit for bit on CPU,
  and 2 DDP processes equal 1 process with 2 accumulation micro-batches (up to all-reduce summation order).
  CPU kernels split their reductions per thread, so the thread count is part of the state: a resume runs with the
  run's thread count, and batches and the loaded optimizer state are copied into torch-allocated memory (their
  alignment never varies; a file's bytes land wherever the reader's buffer happens to be). The contract, measured
  by tests/pipelines/test_train.py and docs/training.md: a resumed run equals an uninterrupted one exactly as well as two
  uninterrupted runs on the same machine equal each other (bit for bit on every machine measured so far).
* Checkpoints every `ckpt_every` steps under `<storage>/runs/<name>/checkpoints/step_NNNNNN/` (model, AdamW, LR
  schedule, step, losses, RNG, threads, config), temp + rename, `last` names the newest; only rank 0 writes. A
  resume refuses a changed configuration (other than steps / checkpoint interval / preview) unless forced, and
  reads the training state through the allow-listed reader (storage.safe_pickle).
* The finished model is exported as a content-addressed checkpoint (storage.checkpoints) with its model config, the
  training config, the first stage it used and the manifest of view-store content hashes it was trained on.
* `tiny` without --init trains its first stage first (pipelines.first_stage), once per run; `paper` needs --init.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from model.diffusion.config import PRESETS
from pipelines import catalog
from pipelines.settings import Settings
from storage.atomic import atomic_directory, atomic_write_text
from storage.errors import InvalidContentError, MissingFileError
from storage.ids import validate_name


def _p(default, help: str, **meta):
    """A config field with its help text (shown by the CLI and in the Dagster launchpad)."""
    return field(default=default, metadata={"help": help, **meta})


@dataclass(frozen=True)
class TrainConfig:
    """One diffusion training run; the single source of the CLI flags and the checkpoint assets' run config."""

    preset: str = _p("tiny", "network preset (tiny-narrow: the body reference model's narrower UNet)",
                     choices=tuple(PRESETS))
    dataset: str = _p("facescape", "training data", choices=catalog.DATASET_NAMES)
    topology: str | None = _p(None, "the tracked meshes the views are conditioned on; none: the dataset's default",
                              choices=catalog.topology_names())
    steps: int = _p(100, "optimizer steps")
    batch_size: int = _p(2, "global batch (over processes and accumulation micro-batches)")
    grad_accum: int = _p(1, "micro-batches per step")
    lr: float | None = _p(None, "learning rate; none: 5e-5 (paper, released) or 1e-3 (tiny, from scratch)")
    volume_lr_mult: float = _p(10.0, "learning-rate multiplier of the volume and time-embedding group")
    warmup_steps: int = _p(100, "linear warm-up steps")
    warmup_start: float = _p(0.02, "warm-up starting fraction of the learning rate")
    finetune_unet: bool = _p(True, "train the UNet too (off: only the conditioning branches)")
    condition_dropout: float | None = _p(None, "per-condition dropout; none: 0.05 without an init, else 0")
    precision: str = _p("32", "32 or bf16 (autocast)", choices=("32", "bf16"))
    gradient_checkpointing: bool = _p(False, "recompute UNet activations in backward (less memory)")
    ckpt_every: int = _p(50, "steps between resumable checkpoints")
    seed: int = _p(6033, "seed of every random draw")
    init: str | None = _p(None, "start weights: a released .ckpt, its kind recognised from its keys (Morphable "
                                "Diffusion: the whole network; syncdreamer-pretrain.ckpt: the release's drop "
                                "semantics), or a checkpoint folder (loaded strictly)")
    first_stage: str | None = _p(None, "tiny: a first-stage checkpoint folder; none: trained at the start")
    first_stage_steps: int = _p(600, "tiny: steps of that first stage")
    preview_steps: int = _p(10, "DDIM steps of the final preview sheet (0: none)")
    loss_views: int = _p(1, "target views supervised per sample (1 = released; more = more signal per volume)")
    shuffled_expression: bool = _p(True, "FaceScape: the input view shows another expression than the targets "
                                         "(released); off: the same expression")
    name: str | None = _p(None, "run name (default: <preset>-<dataset>, -<topology> for another than the default)")

    def resolved_lr(self) -> float:
        return self.lr if self.lr is not None else (5e-5 if self.preset == "paper" else 1e-3)

    def resolved_dropout(self) -> float:
        return self.condition_dropout if self.condition_dropout is not None else (0.0 if self.init else 0.05)

    def resolved_topology(self) -> str:
        """The topology trained on (the dataset's default when none is set); one the dataset does not have is
        refused."""
        return catalog.topology(self.dataset, self.topology).name

    def run_name(self) -> str:
        """The run's folder name under runs/ and checkpoints/ (a plain name: no '/', '..' or spaces)."""
        default = f"{self.preset}-{self.dataset}"
        if self.resolved_topology() != catalog.dataset(self.dataset).default_topology:
            default += f"-{self.resolved_topology()}"
        return validate_name(self.name or default, "run name (--name)")


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    checkpoint: Path | None = None  # the exported content-addressed checkpoint (rank 0, when the run finished)
    loss_plot: Path | None = None
    preview: Path | None = None
    views_manifest: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Dist:
    rank: int = 0
    world: int = 1
    device: str = "cpu"

    @property
    def main(self) -> bool:
        return self.rank == 0


def _init_distributed() -> _Dist:
    """torchrun sets WORLD_SIZE / RANK / LOCAL_RANK: NCCL on GPUs (one per process), gloo on CPU."""
    import torch
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = f"cuda:{local}" if cuda else "cpu"
    if cuda:
        torch.cuda.set_device(local)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    return _Dist(dist.get_rank() if world > 1 else 0, world, device)


def model_config_for(cfg: TrainConfig, vae: dict | None = None):
    from model.diffusion.config import PRESETS, VAEConfig

    mc = PRESETS[cfg.preset](catalog.dataset(cfg.dataset).projection)
    mc = dataclasses.replace(mc, unet=dataclasses.replace(mc.unet, gradient_checkpointing=cfg.gradient_checkpointing))
    if vae is not None:
        mc = dataclasses.replace(mc, vae=VAEConfig(**{k: tuple(v) if isinstance(v, list) else v
                                                      for k, v in vae.items()}))
    return mc


def _collate(items: list[dict], device: str) -> dict:
    import torch

    # copies into torch's own (64-byte aligned) memory: numpy's buffers land at varying alignments, and vectorised
    # CPU kernels may round differently with the alignment of their inputs
    return {k: torch.tensor(np.stack([it[k] for it in items]), device=device) for k in items[0]}


#: fields that may change between a run and its --resume without changing what the resumed steps compute
RESUMABLE_CHANGES = ("steps", "ckpt_every", "preview_steps")


def _save_state(run_dir: Path, step: int, model, opt, sched, losses: list[float], cfg: TrainConfig) -> Path:
    import torch
    from safetensors.torch import save_file

    target = run_dir / "checkpoints" / f"step_{step:06d}"
    with atomic_directory(target) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()},
                  str(tmp / "model.safetensors"))
        torch.save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "step": step, "losses": losses,
                    "rng": torch.get_rng_state(), "threads": torch.get_num_threads()}, tmp / "training_state.pt")
        (tmp / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=1))
    atomic_write_text(run_dir / "last", target.name)
    return target


def config_changes(saved: dict, cfg: TrainConfig) -> dict[str, tuple]:
    """{field: (saved, now)} for the fields that differ and would change what a resumed run computes."""
    now = dataclasses.asdict(cfg)
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}  # a field newer than the run: default
    before = {k: saved.get(k, defaults[k]) for k in now}
    before["topology"] = catalog.topology(before["dataset"], before["topology"]).name  # (None: the default)
    now["topology"] = cfg.resolved_topology()
    return {k: (before[k], now[k]) for k in now if k not in RESUMABLE_CHANGES and before[k] != now[k]}


def _resume_folder(run_dir: Path, cfg: TrainConfig, force: bool, log) -> Path:
    """The run's last checkpoint folder, after checking that the configuration did not change."""
    from storage.jsonfile import read_json

    last = run_dir / "last"
    if not last.is_file():
        raise MissingFileError(run_dir, "nothing to resume (no `last` checkpoint)", "start without --resume")
    folder = run_dir / "checkpoints" / last.read_text().strip()
    saved = read_json(folder / "config.json", "the resumed run's training configuration", "start without --resume")
    changed = config_changes(saved, cfg)
    if changed and not force:
        listed = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in changed.items())
        raise InvalidContentError(folder, f"the run was trained with another configuration ({listed}); resuming "
                                          "with it would not continue the same run",
                                  "resume with the same settings, use a new --name, or pass --force to continue "
                                  "anyway (no longer bitwise equal to an uninterrupted run)")
    if changed:
        log(f"resuming with a changed configuration (--force): {changed}")
    return folder


def _load_state(folder: Path, model, opt, sched, device: str, log) -> tuple[int, list[float]]:
    import torch
    from safetensors.torch import load_file

    from storage.safe_pickle import load_torch

    model.load_state_dict(load_file(str(folder / "model.safetensors"), device=device), strict=True)
    state = load_torch(folder / "training_state.pt", mmap=False, what="a training state",
                       fix="resume from an earlier checkpoint of the run, or start without --resume")
    opt.load_state_dict(_torch_owned(state["optimizer"]))
    sched.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"].cpu())
    threads = int(state.get("threads", torch.get_num_threads()))
    if threads != torch.get_num_threads():  # CPU reductions split work per thread: same count, same bits
        log(f"resume: using the run's {threads} CPU threads (this process had {torch.get_num_threads()})")
        torch.set_num_threads(threads)
    return int(state["step"]), list(state["losses"])


def _torch_owned(obj):
    """The same structure with every tensor copied into torch's own (64-byte aligned) allocation."""
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.clone(memory_format=torch.contiguous_format)
    if isinstance(obj, dict):
        return {k: _torch_owned(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_torch_owned(v) for v in obj)
    return obj


def _first_stage(settings: Settings, cfg: TrainConfig, run_dir: Path, dist_: _Dist, log, writer) -> str | None:
    """The first-stage checkpoint folder this run uses (recorded in the run folder, so --resume reuses it)."""
    import torch.distributed as tdist

    record = run_dir / "first_stage"
    if cfg.first_stage or cfg.init:
        return cfg.first_stage
    if record.is_file():
        return record.read_text().strip()
    if dist_.main:
        from pipelines.first_stage import FirstStageConfig, train_first_stage

        res = train_first_stage(settings, FirstStageConfig(preset="tiny", steps=cfg.first_stage_steps,  # (one VAE)
                                                           seed=cfg.seed), log=log, writer=writer)
        atomic_write_text(record, str(res.checkpoint))
    if dist_.world > 1:
        tdist.barrier()
    return record.read_text().strip()


def init_vae_config(init: str | None) -> dict | None:
    """The autoencoder configuration (latent scale included) of a checkpoint folder used as --init: a tiny model
    fine-tuned from our reference model must encode with the reference's first stage, scale and all."""
    if not init or not Path(init).is_dir() or not (Path(init) / "config.json").is_file():
        return None
    from storage.jsonfile import read_json

    doc = read_json(Path(init) / "config.json", "the init checkpoint's configuration", "re-export the checkpoint")
    return (doc.get("model") or {}).get("vae")


def initialise(settings: Settings, model, init: str | Path, log=print) -> dict[str, int]:
    """Start weights, `init`: one of our checkpoint folders (an imported init, or a trained / published model to
    fine-tune) loaded strictly, or a released file imported once through the import cache with its kind recognised
    from its keys: a Morphable Diffusion file keeps its whole network (the 3DMM branch included), a SyncDreamer file
    the release's drop semantics (its volume nets start from this run's initialisation)."""
    from model.diffusion.checkpoints import import_morphable, import_syncdreamer
    from pipelines.import_checkpoint import import_checkpoint
    from storage.checkpoints import load_checkpoint

    if Path(init).is_dir():
        tensors, _config = load_checkpoint(init)
        return import_morphable(model, tensors, str(init)).summary()
    out = import_checkpoint(settings, init, "auto", projection=model.cfg.projection, log=log)
    tensors, _config = load_checkpoint(out.folder)
    if out.kind == "morphable":
        return {"kind": out.kind, **import_morphable(model, tensors, str(init)).summary()}
    # the imported folder holds the whole network; the parts the release leaves at their initialisation are
    # exactly those the drop filter removes from it, so this run's own initialisation stays for them
    import_syncdreamer(model, tensors, str(out.folder))
    return {"kind": out.kind, **out.report}


def views_manifest(storage_root: str | Path, dataset: str, topology: str, subjects: list[str]) -> dict[str, str]:
    """{subject: content hash of its view store of `topology`}: what a checkpoint was trained on."""
    from storage.views import ViewStore, store_path

    return {s: ViewStore.open(store_path(storage_root, dataset, topology, s)).manifest["content_hash"]
            for s in sorted(subjects)}


def changed_training_views(storage_root: str | Path, dataset: str, topology: str,
                           trained_on: dict[str, str]) -> dict[str, str]:
    """{subject: "old -> new" content hash} of the view stores that differ from the manifest a checkpoint was
    trained on (a store that no longer opens counts as "missing")."""
    from storage.errors import DataError
    from storage.views import ViewStore, store_path

    changed = {}
    for subject, digest in trained_on.items():
        try:
            now = ViewStore.open(store_path(storage_root, dataset, topology, subject)).manifest["content_hash"]
        except DataError:
            now = "missing"
        if now != digest:
            changed[subject] = f"{digest[:8]} -> {now[:8]}"
    return changed


def train(settings: Settings, cfg: TrainConfig, resume: bool = False, log=print, force: bool = False,
          cache_encodings: bool = True) -> TrainResult:
    """Train (or with `resume`, continue exactly) the run `cfg.run_name()`; `force` resumes despite a changed
    configuration. `cache_encodings`: the frozen VAE / CLIP encodings of the training views are computed once per
    view (pipelines.frozen_encodings), not in every step (False: the released per-step encoding)."""
    import torch
    import torch.distributed as tdist
    from pipelines.progress import Progress

    from model.diffusion.network import MorphableDiffusion, parameter_groups
    from pipelines.training_data import MultiViewDataset, SplitConfig

    t0 = time.perf_counter()
    cfg.resolved_topology()  # (a topology the dataset does not have: refused before anything runs)
    dist_ = _init_distributed()
    if cfg.batch_size % (dist_.world * cfg.grad_accum):
        raise ValueError(f"batch_size {cfg.batch_size} must be a multiple of processes x grad_accum "
                         f"({dist_.world} x {cfg.grad_accum})")
    if cfg.preset == "paper" and not cfg.init and not resume:
        raise ValueError("the paper preset starts from the released weights: pass --init syncdreamer-pretrain.ckpt "
                         "(its first stage is Stable Diffusion's VAE); see docs/training.md")
    run_dir = Path(settings.storage_root) / "runs" / cfg.run_name()
    resume_from = _resume_folder(run_dir, cfg, force, log) if resume else None
    run_dir.mkdir(parents=True, exist_ok=True)
    writer = None
    if dist_.main:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(run_dir / "tensorboard"))
    fs_path = _first_stage(settings, cfg, run_dir, dist_, log, writer)
    fs_tensors, fs_config = (None, None)
    if fs_path:
        from pipelines.first_stage import load_first_stage

        fs_tensors, fs_config = load_first_stage(fs_path)
    mc = model_config_for(cfg, fs_config["vae"] if fs_config else init_vae_config(cfg.init))
    ds = MultiViewDataset(settings.storage_root, cfg.dataset,
                          SplitConfig(image_size=mc.image_size, shuffled_expression=cfg.shuffled_expression),
                          seed=cfg.seed, topology=cfg.resolved_topology())
    torch.manual_seed(cfg.seed)
    model = MorphableDiffusion(mc)
    if fs_tensors is not None:  # exactly the first stage's keys, strictly
        model.first_stage_model.load_state_dict({k.removeprefix("first_stage_model."): v
                                                 for k, v in fs_tensors.items()}, strict=True)
    if cfg.init and not resume:
        log(f"initialised from {cfg.init}: {initialise(settings, model, cfg.init, log)}")
    model.to(dist_.device)
    opt = torch.optim.AdamW(parameter_groups(model, cfg.resolved_lr(), cfg.volume_lr_mult, cfg.finetune_unet))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, cfg.warmup_start + (1 - cfg.warmup_start)
                                                                 * s / max(cfg.warmup_steps, 1)))
    step, losses = (_load_state(resume_from, model, opt, sched, dist_.device, log) if resume_from else (0, []))
    model.train()
    model.first_stage_model.eval()
    model.clip_image_encoder.eval()
    encodings = None
    if cache_encodings:
        from pipelines.frozen_encodings import FrozenEncodings

        encodings = FrozenEncodings(model, ds, settings.storage_root, dist_.device)
    net = model
    if dist_.world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[int(dist_.device.split(":")[1])] if dist_.device.startswith("cuda") else None)
    autocast = torch.autocast(dist_.device.split(":")[0], dtype=torch.bfloat16, enabled=cfg.precision == "bf16")
    per = cfg.batch_size // (dist_.world * cfg.grad_accum)
    bar = Progress(cfg.steps, f"train {cfg.run_name()}", log if dist_.main else None, start=step,
                   live=None if dist_.main else False)
    while step < cfg.steps:
        idx = np.random.default_rng([cfg.seed, step]).integers(len(ds), size=cfg.batch_size)
        opt.zero_grad(set_to_none=True)
        step_loss = torch.zeros((), device=dist_.device)
        for m in range(cfg.grad_accum):
            g = dist_.rank * cfg.grad_accum + m
            sel = range(g * per, (g + 1) * per)
            picks = [(int(idx[j]), step * cfg.batch_size + j) for j in sel]
            batch = _collate([ds.sample(i, d, images=encodings is None) for i, d in picks], dist_.device)
            if encodings is not None:
                batch.update(encodings.batch([ds.draw(i, d) for i, d in picks]))
            gen = torch.Generator(device=dist_.device).manual_seed(cfg.seed * 1_000_003 + step * 1_009 + g)
            sync = net.no_sync() if dist_.world > 1 and m < cfg.grad_accum - 1 else contextlib.nullcontext()
            with sync, autocast:
                loss = net(batch, gen, cfg.resolved_dropout(), cfg.loss_views) / cfg.grad_accum
            loss.backward()
            step_loss += loss.detach()
        if dist_.world > 1:
            tdist.all_reduce(step_loss, op=tdist.ReduceOp.AVG)
        opt.step()
        sched.step()
        losses.append(float(step_loss))
        step += 1
        bar.update(1, note=f"loss {np.mean(losses[-10:]):.4f}")
        if writer is not None:
            writer.add_scalar("train/loss", losses[-1], step)
            writer.add_scalar("train/lr", sched.get_last_lr()[0], step)
        if step % cfg.ckpt_every == 0 or step == cfg.steps:
            if dist_.main:
                _save_state(run_dir, step, model, opt, sched, losses, cfg)
                log(f"step {step}/{cfg.steps} loss {np.mean(losses[-cfg.ckpt_every:]):.4f}")
            if dist_.world > 1:
                tdist.barrier()
    bar.close()
    if encodings is not None and dist_.main:
        log(encodings.summary())
    result = TrainResult(run_dir, step, losses, 0.0)
    if dist_.main:
        _export(settings, cfg, model, mc, ds, fs_path, result, writer)
        writer.close()
    if dist_.world > 1:
        tdist.barrier()
    result.seconds = time.perf_counter() - t0
    return result


def _export(settings: Settings, cfg: TrainConfig, model, mc, ds, fs_path, result: TrainResult, writer) -> None:
    """Content-addressed checkpoint + loss curve + preview sheet (rank 0)."""
    from pipelines.plots import loss_curve
    from storage.checkpoints import save_checkpoint

    subjects = sorted({it.subject for it in ds.items})
    result.views_manifest = views_manifest(settings.storage_root, cfg.dataset, cfg.resolved_topology(), subjects)
    training = {**dataclasses.asdict(cfg), "topology": cfg.resolved_topology()}
    config = {"model": dataclasses.asdict(mc), "training": training, "first_stage": fs_path,
              "views": result.views_manifest, "steps": result.step, "final_loss": float(np.mean(result.losses[-20:]))}
    result.checkpoint = save_checkpoint(settings.storage_root, cfg.run_name(), model.state_dict(), config)
    atomic_write_text(result.run_dir / "exported", str(result.checkpoint))
    result.loss_plot = loss_curve(result.losses, result.run_dir / "reports" / "loss_curve.png",
                                  f"{cfg.run_name()} ε-MSE")
    if cfg.preview_steps > 0:
        result.preview = preview_sheet(model, ds, result.run_dir / "reports" / "preview.png", cfg.preview_steps,
                                       cfg.seed, writer, result.step)


def preview_sheet(model, ds, path: Path, steps: int, seed: int, writer=None, step: int = 0) -> Path:
    """Input, 16 ground-truth targets and 16 sampled views of the dataset's first item, as one PNG."""
    from PIL import Image

    from model.diffusion.ddim import DDIMConfig
    from pipelines.generate import sample_views
    from storage.thumbnails import contact_sheet

    was_training = model.training
    model.eval()
    item = ds.sample(0, 0)
    views = sample_views(model, item["input_image"], item["target_K"], item["target_RT"], item["vertices"],
                         DDIMConfig(steps=steps, seed=seed))
    model.train(was_training)
    gt = ((item["target_image"] + 1) * 127.5).round().astype(np.uint8)
    inp = ((item["input_image"] + 1) * 127.5).round().astype(np.uint8)
    blank = np.full_like(inp, 255)
    size = inp.shape[0]
    sheet = contact_sheet([inp, *gt, blank, *views], tile=size, columns=len(gt) + 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(sheet).save(path)
    if writer is not None:
        writer.add_image("preview/input_targets_samples", sheet, step, dataformats="HWC")
    return path
