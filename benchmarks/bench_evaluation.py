"""Evaluation benchmarks: seconds per evaluated view per metric on the demo protocol's copy-input set (built from
the configured store's views: run `make demo` first; everything it writes goes to a temporary store), and batched
LPIPS / FID feature extraction against the release's one-view-at-a-time loop in the same run. The LPIPS trunk and the FID Inception carry random weights here (the real
files cannot be downloaded on this machine): the architectures, hence the timings, are the real ones. Prints JSON."""
from __future__ import annotations

import json
import time

import numpy as np
import torch

from temp_store import temporary_store_over_views


def main() -> None:
    with temporary_store_over_views() as settings:
        run(settings)


def run(settings) -> None:
    from model.metrics.fid import FIDInceptionV3
    from model.metrics.lpips_vgg import LPIPSVGG, lpips_linear_weights
    from pipelines.evaluate import MetricModels, evaluate_set
    from pipelines.evaluation_sets import generate_eval_set
    from storage.eval_sets import EvalSet

    es = generate_eval_set(settings, "demo", method="copy_input", log=lambda *_: None)
    torch.manual_seed(0)
    lp = LPIPSVGG()
    for i, conv in enumerate(lp.lins):
        conv.weight.data.copy_(lpips_linear_weights()[f"lin{i}.model.1.weight"])
    models = MetricModels(lpips=lp, fid=FIDInceptionV3())
    ev = evaluate_set(settings, es.path, models, log=lambda *_: None)
    out: dict = {"device": "cpu", "threads": torch.get_num_threads(), "views": int(len(ev.tables["per_view"])),
                 "image_size": int(es.path and EvalSet.open(es.path).manifest["image_size"]),
                 "seconds_per_view": {k: round(v, 4) for k, v in ev.seconds_per_view.items()},
                 "total_seconds_per_view": round(ev.seconds / max(len(ev.tables["per_view"]), 1), 4)}
    pair = next(EvalSet.open(es.path).pairs())
    gt, gen = pair.arrays["gt"], pair.arrays["generated"]
    for name, fn in (("lpips", lambda a, b, n: lp.distance(a, b, batch=n)),
                     ("fid_features", lambda a, b, n: models.fid.features(a, batch=n))):
        timings = {}
        for label, n in (("batched", 32), ("one_at_a_time", 1)):
            t = time.perf_counter()
            fn(gt, gen, n)
            timings[label] = (time.perf_counter() - t) / len(gt)
        out[f"{name}_s_per_view_batched"] = round(timings["batched"], 4)
        out[f"{name}_s_per_view_one_at_a_time"] = round(timings["one_at_a_time"], 4)
    assert np.isfinite(ev.tables["per_protocol"]["fid"]).all()
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
