"""Model benchmarks: tiny-preset training step (forward + backward) on CPU, with the in-run comparisons
PyTorch SDPA (default kernels) vs the math attention kernel, and gradient checkpointing on. On a CUDA machine it
also times the paper preset's 16-view DDIM generation and peak memory, fp32 vs bf16. Prints JSON."""
from __future__ import annotations

import argparse
import dataclasses
import json
import time

import torch


def step_time(model, batch, repeats: int = 3) -> float:
    model.train()
    times = []
    for i in range(repeats + 1):
        t = time.perf_counter()
        loss = model.training_loss(batch, torch.Generator().manual_seed(i))
        loss.backward()
        model.zero_grad(set_to_none=True)
        if i:
            times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=2)
    args = ap.parse_args()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from model.diffusion.config import paper, tiny
    from model.diffusion.network import MorphableDiffusion
    from model.diffusion.example_batch import example_batch as _batch

    torch.manual_seed(0)
    cfg = tiny()
    model = MorphableDiffusion(cfg)
    batch = _batch(cfg, b=args.batch)
    out: dict = {"device": "cpu", "threads": torch.get_num_threads(), "batch": args.batch,
                 "tiny_parameters": sum(p.numel() for p in model.parameters())}
    out["tiny_train_step_s"] = round(step_time(model, batch), 3)
    with sdpa_kernel(SDPBackend.MATH):
        out["tiny_train_step_s_math_attention"] = round(step_time(model, batch), 3)
    ck = MorphableDiffusion(dataclasses.replace(cfg, unet=dataclasses.replace(cfg.unet, gradient_checkpointing=True)))
    out["tiny_train_step_s_grad_checkpointing"] = round(step_time(ck, batch), 3)
    out["tiny_steps_per_s"] = round(1 / out["tiny_train_step_s"], 2)
    if torch.cuda.is_available():
        from model.diffusion.ddim import DDIMConfig, sample
        from model.diffusion.network import ConditionedDenoiser

        big = MorphableDiffusion(paper()).cuda().eval()
        pb = {k: v.cuda() for k, v in _batch(paper(), b=1).items()}
        inp = pb["input_image"].permute(0, 3, 1, 2)
        for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            torch.cuda.reset_peak_memory_stats()
            with torch.no_grad(), torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32):
                den = ConditionedDenoiser(big, pb, big.clip_embedding(inp), big.encode_images(inp))
                torch.cuda.synchronize()
                t = time.perf_counter()
                sample(den, (1, 16, 4, 32, 32), big.alphas_cumprod.cpu().numpy(), DDIMConfig(), device="cuda")
                torch.cuda.synchronize()
            out[f"paper_generation_s_{name}"] = round(time.perf_counter() - t, 2)
            out[f"paper_peak_memory_gib_{name}"] = round(torch.cuda.max_memory_allocated() / 2 ** 30, 2)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
