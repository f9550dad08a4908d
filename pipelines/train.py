"""Stage `train`: the diffusion training loop (spec §3.15-3.16) with atomic checkpoints and exact resume.

Plain torch: every random choice of step s (items, target/input views, timesteps, noise, posterior samples, view
selection, condition dropout) is drawn from generators seeded with (seed, s), and the model, AdamW and LR-schedule
states are saved together, so `--resume` continues bit-for-bit on CPU. (Multi-GPU DDP and the GPU/Pipes assets are
the next step; see docs/training.md.)
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipelines.settings import Settings
from storage.atomic import atomic_directory, atomic_write_text


@dataclass(frozen=True)
class TrainConfig:
    preset: str = "tiny"
    dataset: str = "facescape"
    steps: int = 100
    batch_size: int = 2
    lr: float | None = None  # None: 5e-5 (paper, released) or 1e-3 (tiny, from scratch)
    volume_lr_mult: float = 10.0
    warmup_steps: int = 100
    warmup_start: float = 0.02
    finetune_unet: bool = True
    condition_dropout: float | None = None  # None: 0.05 per condition when not starting from a checkpoint (§8.14)
    precision: str = "32"  # or "bf16" (autocast)
    gradient_checkpointing: bool = False
    ckpt_every: int = 50
    seed: int = 6033
    init: str | None = None  # syncdreamer-pretrain.ckpt (released drop semantics)
    name: str | None = None

    def resolved_lr(self) -> float:
        return self.lr if self.lr is not None else (5e-5 if self.preset == "paper" else 1e-3)

    def resolved_dropout(self) -> float:
        return self.condition_dropout if self.condition_dropout is not None else (0.0 if self.init else 0.05)

    def run_name(self) -> str:
        return self.name or f"{self.preset}-{self.dataset}"


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0


def model_config_for(cfg: TrainConfig):
    from model.diffusion.config import PRESETS

    mc = PRESETS[cfg.preset]("orthographic" if cfg.dataset == "thuman" else "perspective")
    return dataclasses.replace(mc, unet=dataclasses.replace(mc.unet, gradient_checkpointing=cfg.gradient_checkpointing))


def _collate(items: list[dict]) -> dict:
    import torch

    return {k: torch.as_tensor(np.stack([it[k] for it in items])) for k in items[0]}


def _batch(ds, step: int, cfg: TrainConfig) -> dict:
    rng = np.random.default_rng([cfg.seed, step])
    idx = rng.integers(len(ds), size=cfg.batch_size)
    return _collate([ds.sample(int(i), step * cfg.batch_size + j) for j, i in enumerate(idx)])


def _save_state(run_dir: Path, step: int, model, opt, sched, losses: list[float], cfg: TrainConfig) -> Path:
    import torch
    from safetensors.torch import save_file

    target = run_dir / "checkpoints" / f"step_{step:06d}"
    with atomic_directory(target) as tmp:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp / "model.safetensors"))
        torch.save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "step": step, "losses": losses,
                    "rng": torch.get_rng_state()}, tmp / "training_state.pt")
        (tmp / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=1))
    atomic_write_text(run_dir / "last", target.name)
    return target


def _load_state(run_dir: Path, model, opt, sched) -> tuple[int, list[float]]:
    import torch
    from safetensors.torch import load_file

    last = run_dir / "last"
    if not last.is_file():
        raise FileNotFoundError(f"{run_dir}: nothing to resume (no `last` checkpoint); start without --resume")
    folder = run_dir / "checkpoints" / last.read_text().strip()
    model.load_state_dict(load_file(str(folder / "model.safetensors")), strict=True)
    state = torch.load(folder / "training_state.pt", map_location="cpu", weights_only=True)
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"])
    return int(state["step"]), list(state["losses"])


def train(settings: Settings, cfg: TrainConfig, resume: bool = False, log=print) -> TrainResult:
    import torch

    from model.diffusion.checkpoints import import_syncdreamer, read_checkpoint
    from model.diffusion.network import MorphableDiffusion, parameter_groups
    from pipelines.training_data import MultiViewDataset, SplitConfig

    t0 = time.perf_counter()
    mc = model_config_for(cfg)
    ds = MultiViewDataset(settings.storage_root, cfg.dataset, SplitConfig(image_size=mc.image_size), seed=cfg.seed)
    torch.manual_seed(cfg.seed)
    model = MorphableDiffusion(mc)
    if cfg.init and not resume:
        rep = import_syncdreamer(model, read_checkpoint(cfg.init), str(cfg.init))
        log(f"initialised from {cfg.init}: {rep.summary()}")
    opt = torch.optim.AdamW(parameter_groups(model, cfg.resolved_lr(), cfg.volume_lr_mult, cfg.finetune_unet))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, cfg.warmup_start + (1 - cfg.warmup_start)
                                                                 * s / max(cfg.warmup_steps, 1)))
    run_dir = Path(settings.storage_root) / "runs" / cfg.run_name()
    run_dir.mkdir(parents=True, exist_ok=True)
    step, losses = _load_state(run_dir, model, opt, sched) if resume else (0, [])
    model.train()
    model.first_stage_model.eval()
    model.clip_image_encoder.eval()
    autocast = torch.autocast("cpu" if not torch.cuda.is_available() else "cuda", dtype=torch.bfloat16,
                              enabled=cfg.precision == "bf16")
    while step < cfg.steps:
        batch = _batch(ds, step, cfg)
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        opt.zero_grad(set_to_none=True)
        with autocast:
            loss = model.training_loss(batch, gen, cfg.resolved_dropout())
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        step += 1
        if step % cfg.ckpt_every == 0 or step == cfg.steps:
            _save_state(run_dir, step, model, opt, sched, losses, cfg)
            log(f"step {step}/{cfg.steps} loss {np.mean(losses[-cfg.ckpt_every:]):.4f}")
    return TrainResult(run_dir, step, losses, time.perf_counter() - t0)
