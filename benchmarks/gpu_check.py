"""GPU check (one CUDA device, about 5-8 minutes): what only a GPU can show, as JSON.

* paper preset, random weights, 16 views x 50 DDIM steps with CFG 2 (the released sampler): latency and peak
  memory in fp32 (the released setting), bf16 autocast (SDPA attention), and bf16 + torch.compile of the UNet when
  it compiles; goals: >= 4x the fp32 latency, <= 6 GB peak in bf16;
* paper-preset training samples/s at batch 8 per GPU, fp32 vs bf16 autocast.
Run by benchmarks/gpu_check.sh, which also runs the CUDA test subset (pytest -m gpu)."""
from __future__ import annotations

import json
import os
import time

import torch


def generation(model, batch, dtype, steps: int = 50, batch_view_num: int = 8) -> dict:
    from model.diffusion.ddim import DDIMConfig, sample
    from model.diffusion.network import ConditionedDenoiser

    inp = batch["input_image"].permute(0, 3, 1, 2)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    with torch.no_grad(), torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32):
        t = time.perf_counter()
        den = ConditionedDenoiser(model, batch, model.clip_embedding(inp), model.encode_images(inp))
        sample(den, (1, 16, 4, 32, 32), model.alphas_cumprod.cpu().numpy(),
               DDIMConfig(steps=steps, cfg_scale=2.0, batch_view_num=batch_view_num), device="cuda")
        torch.cuda.synchronize()
    return {"seconds": round(time.perf_counter() - t, 2),
            "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2 ** 30, 2)}


def training(model, cfg, dtype, batch_size: int = 8, steps: int = 6) -> dict:
    from model.diffusion.example_batch import example_batch

    model.train()
    batch = {k: v.cuda() for k, v in example_batch(cfg, b=batch_size).items()}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-6)
    torch.cuda.reset_peak_memory_stats()
    times = []
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
    model.eval()
    best = min(times[1:])
    return {"samples_per_s": round(batch_size / best, 2),
            "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2 ** 30, 2), "finite": bool(loss.isfinite())}


def record(out: dict, key: str, value) -> None:
    """Print each figure as soon as it exists and keep the JSON so far in $GPU_CHECK_JSON: a run cut short by the
    device's time limit still reports what it measured."""
    out[key] = value
    print(json.dumps({key: value}), flush=True)
    target = os.environ.get("GPU_CHECK_JSON")
    if target:
        with open(target + ".tmp", "w") as fh:
            json.dump(out, fh, indent=1)
        os.replace(target + ".tmp", target)


def main() -> None:
    from model.diffusion.config import paper
    from model.diffusion.example_batch import example_batch
    from model.diffusion.network import MorphableDiffusion

    if not torch.cuda.is_available():
        raise SystemExit("gpu_check needs a CUDA device")
    out: dict = {}
    record(out, "device", torch.cuda.get_device_name(0))
    record(out, "torch", torch.__version__)
    record(out, "goals", {"speedup_at_least": 4.0, "bf16_peak_gib_at_most": 6.0})
    torch.manual_seed(0)
    cfg = paper()
    model = MorphableDiffusion(cfg).cuda().eval()
    batch = {k: v.cuda() for k, v in example_batch(cfg, b=1).items()}
    sections = os.environ.get("GPU_CHECK_SECTIONS", "generation,training,compiled").split(",")
    generation(model, batch, torch.float32, steps=2)  # CUDA context, cuDNN/cuBLAS heuristics: outside the timing
    record(out, "generation_fp32", generation(model, batch, torch.float32))
    if "generation" in sections:
        record(out, "generation_bf16", generation(model, batch, torch.bfloat16))
        record(out, "bf16_speedup", round(out["generation_fp32"]["seconds"] / out["generation_bf16"]["seconds"], 2))
        # all 16 views in one UNet batch: half the kernel launches per step (the step is launch-bound, see
        # docs/benchmarks.md)
        record(out, "generation_bf16_views16", generation(model, batch, torch.bfloat16, batch_view_num=16))
    if "training" in sections:
        for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            record(out, f"training_batch8_{name}", training(model, cfg, dtype))
    if "compiled" in sections:
        # last: compiling takes minutes, and everything above is already reported. "reduce-overhead" replays the
        # UNet as CUDA graphs, which is what a launch-bound step needs.
        unet = model.model.diffusion_model
        for mode, views in (("default", 8), ("reduce-overhead", 8), ("reduce-overhead", 16)):
            key = f"generation_bf16_compiled_{mode}_views{views}"
            try:
                torch._dynamo.reset()
                model.model.diffusion_model = torch.compile(unet, mode=mode, dynamic=False)
                generation(model, batch, torch.bfloat16, steps=3, batch_view_num=views)  # compile, untimed
                record(out, key, generation(model, batch, torch.bfloat16, batch_view_num=views))
                record(out, key + "_speedup", round(out["generation_fp32"]["seconds"] / out[key]["seconds"], 2))
            except Exception as exc:  # noqa: BLE001 - reported, the rest of the check still ran
                record(out, key, f"did not compile: {type(exc).__name__}: {str(exc)[:200]}")
            finally:
                model.model.diffusion_model = unet
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
