"""Where one paper-preset DDIM step (16 views, CFG 2) spends its time on a GPU: torch.profiler tables (CUDA and CPU
self time) for fp32 and bf16 autocast, and the share of the step the GPU is busy. Prints text; run on a GPU machine."""
from __future__ import annotations

import time

import torch
from torch.profiler import ProfilerActivity, profile


def main() -> None:
    from model.diffusion.config import paper
    from model.diffusion.ddim import DDIMConfig, sample
    from model.diffusion.example_batch import example_batch
    from model.diffusion.network import ConditionedDenoiser, MorphableDiffusion

    torch.manual_seed(0)
    cfg = paper()
    model = MorphableDiffusion(cfg).cuda().eval()
    batch = {k: v.cuda() for k, v in example_batch(cfg, b=1).items()}
    inp = batch["input_image"].permute(0, 3, 1, 2)
    for dtype in (torch.float32, torch.bfloat16):
        with torch.no_grad(), torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32):
            den = ConditionedDenoiser(model, batch, model.clip_embedding(inp), model.encode_images(inp))
            run = lambda: sample(den, (1, 16, 4, 32, 32), model.alphas_cumprod.cpu().numpy(),  # noqa: E731
                                 DDIMConfig(steps=2, cfg_scale=2.0, batch_view_num=8), device="cuda")
            run()
            torch.cuda.synchronize()
            with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                t = time.perf_counter()
                run()
                torch.cuda.synchronize()
                wall = time.perf_counter() - t
        avg = prof.key_averages()
        cuda_total = sum(e.self_device_time_total for e in avg) / 1e6
        print(f"== {dtype}: 2 DDIM steps wall {wall:.3f} s, GPU busy {cuda_total:.3f} s", flush=True)
        print(avg.table(sort_by="self_cuda_time_total", row_limit=22, max_name_column_width=60), flush=True)
        print(avg.table(sort_by="self_cpu_time_total", row_limit=22, max_name_column_width=60), flush=True)


if __name__ == "__main__":
    main()
