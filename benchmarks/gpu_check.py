"""GPU check (one CUDA device, at most about 7 minutes): what only a GPU can show, as JSON.

* Generation, paper preset, random weights, 16 views x 50 DDIM steps with CFG 2 (the released sampler), through the
  user's path (`load`-equivalent weight storage + `pipelines.generate.sample_views`, the input's encoding and the
  decode included): latency, peak memory and the ratio to fp32 for every sampler variant a user can select
  (precision fp32 | bf16 | fp16, batch_view_num 8 | 16, compile off | reduce-overhead); bf16 both as autocast over
  fp32 weights and with the weights stored in bf16 (what an inference load does). Goals: >= 4x fp32, <= 6 GiB peak.
* Training, paper preset: samples/s and peak memory at batch 8, 32 and the largest of 48 / 64 / 70 that fits
  (70 = the release's per-GPU batch), fp32 vs bf16 autocast, with gradient checkpointing where plain does not fit.
Each figure is printed as it is measured (and kept in $GPU_CHECK_JSON): a run cut short still reports what it
measured. GPU_CHECK_SECTIONS (default generation,training,compiled) selects parts.
Run by benchmarks/gpu_check.sh, which also runs the CUDA test subset (pytest -m gpu)."""
from __future__ import annotations

import copy
import dataclasses
import json
import os
import time

import numpy as np
import torch


def record(out: dict, key: str, value) -> None:
    """Print each figure as soon as it exists and keep the JSON so far in $GPU_CHECK_JSON."""
    out[key] = value
    print(json.dumps({key: value}), flush=True)
    target = os.environ.get("GPU_CHECK_JSON")
    if target:
        with open(target + ".tmp", "w") as fh:
            json.dump(out, fh, indent=1)
        os.replace(target + ".tmp", target)


def inputs(cfg):
    from pipelines.generate import virtual_cameras

    rng = np.random.default_rng(0)
    ks, rts = virtual_cameras(cfg.image_size, cfg.view_num)
    image = rng.uniform(-1, 1, (cfg.image_size, cfg.image_size, 3)).astype(np.float32)
    vertices = rng.normal(size=(5023, 3)) * [0.08, 0.1, 0.08]  # a FLAME-sized vertex count
    return image, ks, rts, vertices


def generation(cpu_model, sampler, store: bool) -> dict:
    """One timed 16-view sampling (after an untimed 3-step run: CUDA context, cuDNN heuristics, compilation)."""
    from model.diffusion.precision import autocast_dtype, store_autocast_weights
    from pipelines.generate import sample_views

    model = copy.deepcopy(cpu_model).cuda().eval()
    low = autocast_dtype(sampler.precision)
    if store and low is not None:
        store_autocast_weights(model, low)
    image, ks, rts, vertices = inputs(model.cfg)
    sample_views(model, image, ks, rts, vertices, dataclasses.replace(sampler, steps=3))
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    views = sample_views(model, image, ks, rts, vertices, sampler)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - t
    peak = torch.cuda.max_memory_allocated() / 2 ** 30
    model.model.use_compiled("off")
    del model
    torch.cuda.empty_cache()
    return {"seconds": round(seconds, 2), "peak_memory_gib": round(peak, 2), "views_std": round(float(views.std()), 1)}


def training(cpu_model, cfg, dtype, batch_size: int, checkpointing: bool = False, steps: int = 5) -> dict:
    from model.diffusion.example_batch import example_batch
    from model.diffusion.network import MorphableDiffusion

    if checkpointing:
        cfg = dataclasses.replace(cfg, unet=dataclasses.replace(cfg.unet, gradient_checkpointing=True))
    model = MorphableDiffusion(cfg).cuda()
    model.load_state_dict(cpu_model.state_dict())
    model.train()
    batch = {k: v.cuda() for k, v in example_batch(cfg, b=batch_size).items()}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-6)
    torch.cuda.reset_peak_memory_stats()
    times = []
    try:
        for i in range(steps):
            torch.cuda.synchronize()
            t = time.perf_counter()
            with torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32):
                loss = model.training_loss(batch, torch.Generator(device="cuda").manual_seed(i))
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            torch.cuda.synchronize()
            times.append(time.perf_counter() - t)
        best = min(times[1:])
        return {"samples_per_s": round(batch_size / best, 2), "gradient_checkpointing": checkpointing,
                "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2 ** 30, 2),
                "finite": bool(loss.isfinite())}
    except torch.cuda.OutOfMemoryError:
        return {"out_of_memory": True, "gradient_checkpointing": checkpointing}
    finally:
        del model, opt, batch
        torch.cuda.empty_cache()


GENERATION_VARIANTS = [  # (key, sampler fields, store weights in the low precision)
    ("fp32_views8", {"precision": "fp32", "batch_view_num": 8}, False),  # the released setting: the baseline
    ("fp32_views16", {"precision": "fp32", "batch_view_num": 16}, False),
    ("bf16_autocast_views8", {"precision": "bf16", "batch_view_num": 8}, False),
    ("bf16_views8", {"precision": "bf16", "batch_view_num": 8}, True),
    ("bf16_views16", {"precision": "bf16", "batch_view_num": 16}, True),
    ("fp16_views16", {"precision": "fp16", "batch_view_num": 16}, True),
]
COMPILED_VARIANTS = [
    ("bf16_views8_reduce-overhead", {"precision": "bf16", "batch_view_num": 8, "compile": "reduce-overhead"}, True),
    ("bf16_views16_reduce-overhead", {"precision": "bf16", "batch_view_num": 16, "compile": "reduce-overhead"}, True),
]


def main() -> None:
    from model.diffusion.config import paper
    from model.diffusion.ddim import DDIMConfig
    from model.diffusion.network import MorphableDiffusion

    if not torch.cuda.is_available():
        raise SystemExit("gpu_check needs a CUDA device")
    out: dict = {}
    record(out, "device", torch.cuda.get_device_name(0))
    record(out, "torch", torch.__version__)
    record(out, "goals", {"generation_speedup_at_least": 4.0, "generation_peak_gib_at_most": 6.0,
                          "training_speedup_at_least": 2.5})
    sections = os.environ.get("GPU_CHECK_SECTIONS", "generation,training,compiled").split(",")
    torch.manual_seed(0)
    cfg = paper()
    cpu_model = MorphableDiffusion(cfg).eval()
    with torch.no_grad():  # the released zero-initialised output layers would make every eps 0
        for p in cpu_model.parameters():
            if not p.any():
                p.normal_(0, 1e-3)
    released = DDIMConfig(steps=50, cfg_scale=2.0)
    variants = (GENERATION_VARIANTS if "generation" in sections else GENERATION_VARIANTS[:1]) + \
        (COMPILED_VARIANTS if "compiled" in sections else [])
    for key, fields, store in variants:
        name = f"generation_{key}"
        try:
            record(out, name, generation(cpu_model, dataclasses.replace(released, **fields), store))
        except Exception as exc:  # noqa: BLE001 - reported; the rest of the check still runs
            record(out, name, f"failed: {type(exc).__name__}: {str(exc)[:300]}")
            continue
        base = out.get("generation_fp32_views8")
        if isinstance(base, dict):
            out[name]["vs_fp32"] = round(base["seconds"] / out[name]["seconds"], 2)
            print(json.dumps({name + ".vs_fp32": out[name]["vs_fp32"]}), flush=True)
    if "training" in sections:
        for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            for batch in (8, 32):
                record(out, f"training_{name}_batch{batch}", training(cpu_model, cfg, dtype, batch))
            for batch in (70, 64, 48):  # the largest that fits, plain first, then with gradient checkpointing
                result = training(cpu_model, cfg, dtype, batch)
                if result.get("out_of_memory"):
                    result = training(cpu_model, cfg, dtype, batch, checkpointing=True)
                if not result.get("out_of_memory"):
                    record(out, f"training_{name}_batch{batch}", result)
                    break
        for batch in (8, 32):
            fp32, bf16 = out.get(f"training_fp32_batch{batch}", {}), out.get(f"training_bf16_batch{batch}", {})
            if "samples_per_s" in fp32 and "samples_per_s" in bf16:
                record(out, f"training_bf16_vs_fp32_batch{batch}", round(bf16["samples_per_s"] / fp32["samples_per_s"], 2))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
