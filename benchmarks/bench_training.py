"""Training benchmarks on the view stores of the configured storage (run `make demo` first; what they write goes
to a temporary store): the tiny first stage's steps/s, and full tiny diffusion training steps/s through
`pipelines.train.train` (data loading included): the per-step frozen encoding (the release's) against the cached
one (`ratio`), and fp32 against bf16 autocast, in the same run. On a CUDA machine it
also measures the paper preset's training samples/s and peak memory at the released per-GPU batch (70;
--paper-batch) in fp32 vs bf16, on synthetic batches. Prints JSON."""
from __future__ import annotations

import argparse
import json
import time

import torch

from temp_store import temporary_store_over_views


def tiny_training(settings, steps: int, precision: str, first_stage: str, cache_encodings: bool = True) -> dict:
    """Steps/s through train(); `cache_encodings` False: the per-step VAE / CLIP encoding (the release's)."""
    from pipelines.train import TrainConfig, train

    tag = precision if cache_encodings else f"{precision}_per_step_encoding"
    cfg = TrainConfig(preset="tiny", dataset="facescape", steps=steps, batch_size=2, ckpt_every=steps,
                      first_stage=first_stage, preview_steps=0, precision=precision, name=f"bench-{tag}")
    res = train(settings, cfg, log=lambda *_: None, cache_encodings=cache_encodings)
    per = (res.seconds) / steps
    return {f"tiny_train_s_per_step_{tag}": round(per, 3), f"tiny_steps_per_s_{tag}": round(1 / per, 2)}


def paper_training(batch: int) -> dict:
    from model.diffusion.config import paper
    from model.diffusion.example_batch import example_batch
    from model.diffusion.network import MorphableDiffusion, parameter_groups

    out = {}
    model = MorphableDiffusion(paper()).cuda()
    opt = torch.optim.AdamW(parameter_groups(model, 5e-5))
    data = {k: v.cuda() for k, v in example_batch(paper(), b=batch).items()}
    for name, enabled in (("fp32", False), ("bf16", True)):
        torch.cuda.reset_peak_memory_stats()
        times = []
        for i in range(4):
            torch.cuda.synchronize()
            t = time.perf_counter()
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=enabled):
                loss = model(data, torch.Generator("cuda").manual_seed(i))
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            torch.cuda.synchronize()
            times.append(time.perf_counter() - t)
        out[f"paper_train_samples_per_s_{name}"] = round(batch / min(times[1:]), 2)
        out[f"paper_train_peak_memory_gib_{name}"] = round(torch.cuda.max_memory_allocated() / 2 ** 30, 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--paper-batch", type=int, default=70)
    args = ap.parse_args()
    with temporary_store_over_views() as settings:  # never the user's store: checkpoints and runs are thrown away
        run(settings, args)


def run(settings, args) -> None:
    from pipelines.first_stage import FirstStageConfig, train_first_stage

    out: dict = {"device": "cuda" if torch.cuda.is_available() else "cpu", "threads": torch.get_num_threads()}
    t = time.perf_counter()
    fs = train_first_stage(settings, FirstStageConfig(steps=100), log=lambda *_: None)
    out["first_stage_steps_per_s"] = round(100 / (time.perf_counter() - t), 2)
    # the baseline first, in the same run: the per-step encoding; then the cached one (its first run encodes every
    # view of the training subjects, included in its time), then bf16 on the cache
    out.update(tiny_training(settings, args.steps, "32", str(fs.checkpoint), cache_encodings=False))
    for precision in ("32", "bf16"):
        out.update(tiny_training(settings, args.steps, precision, str(fs.checkpoint)))
    out["ratio"] = round(out["tiny_train_s_per_step_32_per_step_encoding"] / out["tiny_train_s_per_step_32"], 2)
    if torch.cuda.is_available():
        out.update(paper_training(args.paper_batch))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
