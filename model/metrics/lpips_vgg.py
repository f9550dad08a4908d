"""LPIPS (v0.1, VGG) with our own VGG16 trunk: torchvision does not load with CPU torch here, so the trunk is
written in torchvision's key layout (`features.N.weight`) and loads the standard `vgg16-397923af.pth` file from a
configured path; the linear calibration layers are the `lpips` package's own `weights/v0.1/vgg.pth`."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
from torch import nn

VGG_FILE = "vgg16-397923af.pth"
#: torchvision vgg16 `features` (conv channels; "M" = max-pool); LPIPS taps relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
VGG16_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
TAPS = (3, 8, 15, 22, 29)  # indices in `features` after which the tapped ReLU outputs are taken
CHANNELS = (64, 128, 256, 512, 512)
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)


def _features() -> nn.Sequential:
    layers: list[nn.Module] = []
    cin = 3
    for v in VGG16_LAYOUT:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU(inplace=False)]
            cin = v
    return nn.Sequential(*layers)


def lpips_linear_weights() -> dict[str, torch.Tensor]:
    spec = importlib.util.find_spec("lpips")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the lpips package is not installed (scripts/bootstrap.sh installs it --no-deps)")
    path = Path(list(spec.submodule_search_locations)[0]) / "weights" / "v0.1" / "vgg.pth"
    return torch.load(path, map_location="cpu", weights_only=True)


class LPIPSVGG(nn.Module):
    """d(x, y) = sum_l mean_hw || w_l * (unit(f_l(x)) - unit(f_l(y))) ||^2 with inputs scaled to [-1, 1]."""

    def __init__(self) -> None:
        super().__init__()
        self.features = _features()
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in CHANNELS)
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    @classmethod
    def from_files(cls, vgg_path: str | Path, linear: dict[str, torch.Tensor] | None = None) -> "LPIPSVGG":
        vgg_path = Path(vgg_path)
        if not vgg_path.is_file():
            raise FileNotFoundError(f"{vgg_path}: LPIPS needs torchvision's VGG16 weights {VGG_FILE}; put the file "
                                    "in the folder named by metric_weights_dir (MORPHABLE_METRIC_WEIGHTS_DIR)")
        model = cls()
        state = torch.load(vgg_path, map_location="cpu", weights_only=True)
        feats = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
        model.features.load_state_dict(feats, strict=True)
        lin = linear if linear is not None else lpips_linear_weights()
        for i, conv in enumerate(model.lins):
            conv.weight.data.copy_(lin[f"lin{i}.model.1.weight"])
        return model

    def taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        out, h = [], (x - self.shift) / self.scale
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in TAPS:
                out.append(h)
            if i == TAPS[-1]:
                break
        return out

    @torch.no_grad()
    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x, y: (B, 3, H, W) in [-1, 1] -> (B,) distances."""
        total = torch.zeros(x.shape[0], device=x.device)
        for lin, fx, fy in zip(self.lins, self.taps(x), self.taps(y)):
            nx = fx / (fx.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            ny = fy / (fy.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            total += lin((nx - ny) ** 2).mean((1, 2, 3))
        return total

    def distance(self, gt: np.ndarray, generated: np.ndarray, batch: int = 32) -> np.ndarray:
        """uint8 (N, H, W, 3) pairs -> (N,) LPIPS (inputs in [0, 1] with normalize=True, as released)."""
        out = []
        for i in range(0, len(gt), batch):
            a = torch.from_numpy(np.ascontiguousarray(gt[i:i + batch])).permute(0, 3, 1, 2).float() / 127.5 - 1
            b = torch.from_numpy(np.ascontiguousarray(generated[i:i + batch])).permute(0, 3, 1, 2).float() / 127.5 - 1
            out.append(self(a, b).numpy())
        return np.concatenate(out) if out else np.zeros(0)

