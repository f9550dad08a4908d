"""Stage `first_stage`: train the `tiny` preset's KL autoencoder on the view stores (the `paper` preset uses the
Stable Diffusion VAE inside syncdreamer-pretrain.ckpt instead).

One autoencoder serves both datasets (like SD's): it trains on the training-split views of every view store present,
and is judged by decode(encode(x)) PSNR on the views of the held-out subjects (FaceScape test subjects, THuman
validation uids), per dataset. The latent scale factor is measured afterwards as 1 / std of the training latents (the
rule SD used to pick 0.18215), so the diffusion stage sees unit-variance latents.

Output: a content-addressed checkpoint `<storage>/checkpoints/first_stage-<preset>/<hash>/` holding only the
`first_stage_model.*` tensors and {"vae": VAEConfig, "psnr_heldout": ...}.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipelines import catalog
from pipelines.settings import Settings
from pipelines.training_data import is_heldout
from storage.views import ViewStore, topology_folder



@dataclass(frozen=True)
class FirstStageConfig:
    """The tiny first stage's training; the single source of its CLI flags and its asset's run config."""

    preset: str = field(default="tiny", metadata={"help": "network preset (only tiny trains its own VAE)",
                                                  "choices": ("tiny",)})
    steps: int = field(default=600, metadata={"help": "optimizer steps"})
    batch_size: int = field(default=8, metadata={"help": "views per step"})
    lr: float = field(default=3e-3, metadata={"help": "peak learning rate of the one-cycle schedule"})
    kl_weight: float = field(default=1e-6, metadata={"help": "weight of the KL term"})
    seed: int = field(default=6033, metadata={"help": "seed of every random draw"})
    datasets: tuple[str, ...] = field(default=catalog.DATASET_NAMES,
                                      metadata={"help": "datasets whose training views it learns"})
    init: str | None = field(default=None, metadata={
        "help": "start from the autoencoder of a checkpoint folder (a first stage, or a whole tiny model such as "
                "pretrained/tiny-facescape-reference); with steps 0 it is used as it is (measured, not trained)"})


@dataclass
class FirstStageResult:
    checkpoint: Path
    psnr_heldout: dict[str, float]
    scale_factor: float
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    reconstructions: np.ndarray | None = None  # (2k, S, S, 3) uint8: held-out originals above their reconstructions


def psnr_bars_db(datasets: tuple[str, ...] = catalog.DATASET_NAMES) -> dict[str, float]:
    """Each dataset's held-out reconstruction bar (catalog.DatasetSpec.first_stage_bar_db)."""
    return {d: catalog.dataset(d).first_stage_bar_db for d in datasets}


def judge_heldout_psnr(psnr: dict[str, float], datasets: tuple[str, ...] = catalog.DATASET_NAMES
                       ) -> tuple[bool, dict[str, dict]]:
    """Every dataset against its own bar: (all met, {dataset: {psnr_db, bar_db, passed}}). A dataset without
    held-out views is reported as not judged and fails the whole (the check cannot vouch for it)."""
    table, bars = {}, psnr_bars_db(datasets)
    for ds in datasets:
        value = psnr.get(ds)
        table[ds] = {"psnr_db": None if value is None else round(float(value), 2), "bar_db": bars[ds],
                     "passed": value is not None and value >= bars[ds]}
        if value is None:
            table[ds]["note"] = "no held-out views to judge (materialize a held-out subject's views)"
    return all(row["passed"] for row in table.values()), table


def collect_views(storage_root: str | Path, datasets: tuple[str, ...], size: int) -> dict[str, dict[str, np.ndarray]]:
    """{"train"|"heldout": {dataset: (n, size, size, 3) uint8}} from every complete view store of each dataset's
    default topology (a subject's images are the same in all its topologies' stores)."""
    import cv2

    out: dict[str, dict[str, np.ndarray]] = {"train": {}, "heldout": {}}
    for ds in datasets:
        folder = topology_folder(storage_root, ds, catalog.dataset(ds).default_topology)
        parts: dict[str, list[np.ndarray]] = {"train": [], "heldout": []}
        for path in sorted(folder.glob("*.zarr")) if folder.is_dir() else []:
            if ".tmp-" in path.name or ".old-" in path.name:
                continue
            st = ViewStore.open(path)
            imgs = st.rgb_many(np.arange(len(st)))
            if imgs.shape[1] != size:
                imgs = np.stack([cv2.resize(x, (size, size), interpolation=cv2.INTER_AREA) for x in imgs])
            parts["heldout" if is_heldout(ds, path.name[:-5]) else "train"].append(imgs)
        for split, arrs in parts.items():
            if arrs:
                out[split][ds] = np.concatenate(arrs)
    if not out["train"]:
        raise ValueError(f"no training views under {storage_root}/views/{{{','.join(datasets)}}}/<default topology>; "
                         "materialize the views assets (or run `morphable views`) first")
    return out


def _to_tensor(images: np.ndarray):
    import torch

    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)


def reconstruction_psnr(vae, images: np.ndarray, batch: int = 64) -> np.ndarray:
    """Per-image PSNR (dB, images in [0, 255]) of decode(posterior mean)."""
    import torch

    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            x = _to_tensor(images[i:i + batch])
            y = vae.decode(vae.encode(x, sample=False)).clamp(-1, 1)
            mse = ((y - x) ** 2 / 4).mean((1, 2, 3)).clamp_min(1e-12)
            out.append((10 * torch.log10(1 / mse)).numpy())
    return np.concatenate(out)


def train_first_stage(settings: Settings, cfg: FirstStageConfig = FirstStageConfig(), log=print,
                      writer=None) -> FirstStageResult:
    """Train, measure held-out PSNR and the latent scale, save atomically (content-addressed)."""
    import torch

    from model.diffusion.config import PRESETS
    from model.diffusion.vae import AutoencoderKL
    from storage.checkpoints import save_checkpoint

    t0 = time.perf_counter()
    vae_cfg = PRESETS[cfg.preset]().vae
    size = PRESETS[cfg.preset]().image_size
    data = collect_views(settings.storage_root, cfg.datasets, size)
    train_x = _to_tensor(np.concatenate(list(data["train"].values())))
    torch.manual_seed(cfg.seed)
    init_tensors = None
    if cfg.init:
        init_tensors, vae_cfg = _init_autoencoder(cfg.init)
    vae = AutoencoderKL(vae_cfg)
    if init_tensors is not None:
        vae.load_state_dict(init_tensors, strict=True)
        log(f"first stage: starting from {cfg.init}")
    opt = torch.optim.Adam(vae.parameters(), cfg.lr)
    if cfg.steps < 3 and not (cfg.init and cfg.steps == 0):
        raise ValueError(f"first stage: steps must be >= 3, or 0 with an init (got {cfg.steps})")
    total = max(cfg.steps, 3)  # (an init used as it is trains no step; the schedule is never stepped)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=total, pct_start=max(0.1, 2 / total))
    gen = torch.Generator().manual_seed(cfg.seed)
    losses: list[float] = []
    from pipelines.progress import Progress

    bar = Progress(cfg.steps, "first stage", log)
    for step in range(cfg.steps):
        x = train_x[torch.randint(len(train_x), (cfg.batch_size,), generator=gen)]
        flip = torch.rand(cfg.batch_size, generator=gen) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        mean, logvar = vae.encode_moments(x)
        z = mean + torch.exp(0.5 * logvar) * torch.randn(mean.shape, generator=gen)
        y = vae.decode(z)
        kl = 0.5 * (mean ** 2 + logvar.exp() - 1 - logvar).sum((1, 2, 3)).mean()
        loss = (y - x).abs().mean() + ((y - x) ** 2).mean() + cfg.kl_weight * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        bar.update(1, note=f"loss {losses[-1]:.4f}")
        if writer is not None and (step + 1) % 10 == 0:
            writer.add_scalar("first_stage/loss", losses[-1], step + 1)
    bar.close()
    vae.eval()
    psnr = {ds: float(reconstruction_psnr(vae, imgs).mean()) for ds, imgs in data["heldout"].items()}
    # the latent scale is measured on these views, except for an autoencoder used as it is: the diffusion model it
    # came with was trained with its recorded scale
    if cfg.init and cfg.steps == 0:
        scale = vae_cfg.scale_factor
    else:
        with torch.no_grad():
            lat = torch.cat([vae.encode(train_x[i:i + 64], sample=False) for i in range(0, len(train_x), 64)])
        scale = float(1.0 / lat.std())
    held = np.concatenate(list(data["heldout"].values())) if data["heldout"] else \
        np.concatenate(list(data["train"].values()))
    pick = held[np.linspace(0, len(held) - 1, 8).astype(int)]
    with torch.no_grad():
        rec = vae.decode(vae.encode(_to_tensor(pick), sample=False)).clamp(-1, 1)
    rec_u8 = ((rec + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    tensors = {f"first_stage_model.{k}": v for k, v in vae.state_dict().items()}
    config = {"vae": dataclasses.asdict(dataclasses.replace(vae_cfg, scale_factor=scale)),
              "psnr_heldout": psnr, "first_stage_config": dataclasses.asdict(cfg),
              "train_views": {ds: len(v) for ds, v in data["train"].items()}}
    path = save_checkpoint(settings.storage_root, f"first_stage-{cfg.preset}", tensors, config,
                           extra={"psnr_heldout": psnr})
    if writer is not None:
        for ds, v in psnr.items():
            writer.add_scalar(f"first_stage/psnr_heldout_{ds}", v, cfg.steps)
        writer.add_images("first_stage/heldout_vs_reconstruction", np.concatenate([pick, rec_u8]), cfg.steps,
                          dataformats="NHWC")
    log(f"first stage: held-out PSNR {', '.join(f'{k} {v:.2f} dB' for k, v in psnr.items())}; "
        f"latent scale {scale:.4f}; {path}")
    return FirstStageResult(path, psnr, scale, losses, time.perf_counter() - t0, np.concatenate([pick, rec_u8]))


def _init_autoencoder(folder: str | Path):
    """(autoencoder state dict, VAEConfig) of a checkpoint folder: a first stage or a whole tiny model."""
    import torch

    from model.diffusion.config import VAEConfig
    from storage.checkpoints import load_checkpoint

    tensors, config = load_checkpoint(folder)
    vae = config.get("vae") or (config.get("model") or {}).get("vae")
    keys = {k.removeprefix("first_stage_model."): v for k, v in tensors.items() if k.startswith("first_stage_model.")}
    if not vae or not keys:
        raise ValueError(f"{folder}: holds no first stage (first_stage_model.* tensors and a vae config)")
    cfg = VAEConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in vae.items()})
    return {k: v.to(torch.float32) for k, v in keys.items()}, cfg


def load_first_stage(folder: str | Path) -> tuple[dict, dict]:
    """(first_stage_model.* tensors, vae config dict) of a first-stage checkpoint."""
    from storage.checkpoints import load_checkpoint

    tensors, config = load_checkpoint(folder)
    if "vae" not in config or not all(k.startswith("first_stage_model.") for k in tensors):
        raise ValueError(f"{folder}: not a first-stage checkpoint (written by `morphable train-first-stage`)")
    return tensors, config
