"""Metric weight files in the standard key layouts with random values (the real files cannot be downloaded here)."""
from pathlib import Path

import torch


def write_random_vgg(path: Path) -> dict[str, torch.Tensor]:
    """torchvision's vgg16 `features.N.weight/bias` layout (+ a classifier key, which the loader ignores)."""
    from model.metrics.lpips_vgg import VGG16_LAYOUT

    torch.manual_seed(0)
    state, idx, cin = {}, 0, 3
    for v in VGG16_LAYOUT:
        if v == "M":
            idx += 1
            continue
        state[f"features.{idx}.weight"] = torch.randn(v, cin, 3, 3) * (2 / (9 * cin)) ** 0.5
        state[f"features.{idx}.bias"] = torch.randn(v) * 0.01
        cin, idx = v, idx + 2
    state["classifier.0.weight"] = torch.zeros(1)
    torch.save(state, path)
    return state


def write_random_inception(path: Path) -> None:
    """pytorch-fid's pt_inception key layout; BatchNorm variances kept positive."""
    from model.metrics.fid import FIDInceptionV3

    torch.manual_seed(0)
    state = {k: (torch.ones_like(v) if k.endswith("running_var") else torch.randn_like(v) * 0.05)
             if v.is_floating_point() else v for k, v in FIDInceptionV3().state_dict().items()}
    torch.save(state, path)
