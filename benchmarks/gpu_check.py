"""GPU check (one CUDA device, about 5-8 minutes): what only a GPU can show, as JSON.

* paper preset, random weights, 16 views x 50 DDIM steps with CFG 2 (the released sampler): latency and peak
  memory in fp32 (the released setting), bf16 autocast (SDPA attention), and bf16 + torch.compile of the UNet when
  it compiles; goals: >= 4x the fp32 latency, <= 6 GB peak in bf16;
* paper-preset training samples/s at batch 8 per GPU, fp32 vs bf16 autocast.
Run by benchmarks/gpu_check.sh, which also runs the CUDA test subset (pytest -m gpu)."""
from __future__ import annotations

import json
import time

import torch


def generation(model, batch, dtype, steps: int = 50) -> dict:
    from model.diffusion.ddim import DDIMConfig, sample
    from model.diffusion.network import ConditionedDenoiser

    inp = batch["input_image"].permute(0, 3, 1, 2)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    with torch.no_grad(), torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32):
        t = time.perf_counter()
        den = ConditionedDenoiser(model, batch, model.clip_embedding(inp), model.encode_images(inp))
        sample(den, (1, 16, 4, 32, 32), model.alphas_cumprod.cpu().numpy(),
               DDIMConfig(steps=steps, cfg_scale=2.0, batch_view_num=8), device="cuda")
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


def main() -> None:
    from model.diffusion.config import paper
    from model.diffusion.example_batch import example_batch
    from model.diffusion.network import MorphableDiffusion

    if not torch.cuda.is_available():
        raise SystemExit("gpu_check needs a CUDA device")
    out: dict = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__}
    torch.manual_seed(0)
    cfg = paper()
    model = MorphableDiffusion(cfg).cuda().eval()
    batch = {k: v.cuda() for k, v in example_batch(cfg, b=1).items()}
    out["generation_fp32"] = generation(model, batch, torch.float32)
    out["generation_bf16"] = generation(model, batch, torch.bfloat16)
    out["bf16_speedup"] = round(out["generation_fp32"]["seconds"] / out["generation_bf16"]["seconds"], 2)
    try:
        unet = model.model.diffusion_model
        model.model.diffusion_model = torch.compile(unet)
        generation(model, batch, torch.bfloat16, steps=2)  # compile outside the timing
        out["generation_bf16_compiled"] = generation(model, batch, torch.bfloat16)
        out["bf16_compiled_speedup"] = round(out["generation_fp32"]["seconds"]
                                             / out["generation_bf16_compiled"]["seconds"], 2)
        model.model.diffusion_model = unet
    except Exception as exc:  # noqa: BLE001 - reported, the rest of the check still runs
        out["generation_bf16_compiled"] = f"did not compile: {type(exc).__name__}: {str(exc)[:200]}"
    out["goals"] = {"speedup_at_least": 4.0, "bf16_peak_gib_at_most": 6.0}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        out[f"training_batch8_{name}"] = training(model, cfg, dtype)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
