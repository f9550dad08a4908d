"""Stage `generate`: one input image + a target mesh (or an expression image) -> 16 consistent views.

Outputs in `out_dir`: views/00.png ... 15.png (RGBA, alpha = not-white), sheet.png (input + 16 views), and a NeuS2
dataset neus2/transforms.json + neus2/images/NN.png whose frame k is view k (the release's export is off by one and
names the file transform.json, spec §8 item 3).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model import frames
from pipelines.settings import Settings

VIRTUAL_FOCAL_256 = 1545.23757707405  # released virtual trajectory, for 256 px images
VIRTUAL_RADIUS = 4.5


@dataclass
class GenerateOutcome:
    out_dir: Path
    views: np.ndarray  # (16, H, W, 3) uint8
    K: np.ndarray  # (16, 3, 3)
    RT: np.ndarray  # (16, 3, 4)


def virtual_cameras(image_size: int, n: int = 16, radius: float = VIRTUAL_RADIUS) -> tuple[np.ndarray, np.ndarray]:
    """The released virtual trajectory: a horizontal half circle (-90..90 deg) at `radius`, looking at the origin."""
    from scipy.spatial.transform import Rotation

    f = VIRTUAL_FOCAL_256 * image_size / 256
    k = np.array([[f, 0, image_size / 2], [0, f, image_size / 2], [0, 0, 1.0]])
    rts = []
    for theta in np.linspace(-90, 90, n):
        c = radius * np.array([np.sin(np.deg2rad(theta)), 0.0, np.cos(np.deg2rad(theta))])
        r = Rotation.from_euler("xyz", (-180.0, theta, 0.0), degrees=True).as_matrix()
        rts.append(np.concatenate([r, (-r @ c)[:, None]], 1))
    return np.repeat(k[None], n, 0), np.stack(rts)


def real_cameras(path: str | Path, image_size: int) -> tuple[np.ndarray, np.ndarray]:
    """The released 'real' trajectory file (16 FaceScape cameras in the model frame, for 256 px images)."""
    import pickle

    with open(path, "rb") as fh:
        d = pickle.load(fh)
    k = np.asarray(d["intrinsics"], np.float64).copy()
    k[:, :2] *= image_size / 256
    return k, np.asarray(d["extrinsics"], np.float64)


def _input_image(path: str | Path, size: int) -> np.ndarray:
    """Square centre crop, resized, alpha (if any) composited on white; [-1, 1] HWC float32."""
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGBA")
        w, h = im.size
        s = min(w, h)
        im = im.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)).resize((size, size),
                                                                                            Image.BICUBIC)
        rgba = np.asarray(im).astype(np.float32) / 255.0
    rgb = rgba[..., :3] * rgba[..., 3:] + (1 - rgba[..., 3:])
    return rgb * 2 - 1


def _rgba(img: np.ndarray) -> np.ndarray:
    """RGB uint8 -> RGBA with alpha 0 where every channel is > 240 (the released rule for white backgrounds)."""
    alpha = np.where((img > 240).all(-1), 0, 255).astype(np.uint8)
    return np.concatenate([img, alpha[..., None]], -1)


def export_neus2(out: Path, images: np.ndarray, k: np.ndarray, rt: np.ndarray) -> Path:
    """transforms.json with frame k = view k; c2w = inv([RT; 0001]) with the y and z columns negated (OpenGL)."""
    from PIL import Image

    (out / "images").mkdir(parents=True, exist_ok=True)
    frames_ = []
    for i, (img, kk, r) in enumerate(zip(images, k, rt)):
        Image.fromarray(_rgba(img)).save(out / "images" / f"{i:02d}.png")
        c2w = np.linalg.inv(np.concatenate([r, [[0, 0, 0, 1.0]]]))
        c2w[:3, 1:3] *= -1
        frames_.append({"file_path": f"images/{i:02d}.png", "transform_matrix": c2w.tolist(),
                        "intrinsic_matrix": np.asarray(kk).tolist()})
    h, w = images.shape[1:3]
    doc = {"w": w, "h": h, "aabb_scale": 1.0, "scale": 1.0, "offset": [0.5, 0.5, 0.5], "frames": frames_}
    (out / "transforms.json").write_text(json.dumps(doc, indent=1))
    return out / "transforms.json"


def sample_views(model, input_image: np.ndarray, ks: np.ndarray, rts: np.ndarray, vertices: np.ndarray,
                 ddim) -> np.ndarray:
    """The model's 16 views (N, H, W, 3) uint8 for one input image (H, W, 3) in [-1, 1], target cameras
    (K (N, 3, 3) or (N, 4, 4), RT (N, 3, 4)) and mesh vertices in the model frame; seeded by `ddim.seed`."""
    import torch

    from model.diffusion.ddim import sample
    from model.diffusion.network import ConditionedDenoiser
    from model.geometry.voxels import voxelize

    cfg = model.cfg
    dev = next(model.parameters()).device
    vox = voxelize(vertices)
    ks = np.asarray(ks)
    if ks.shape[-1] == 4:  # already the model's 4x4 form (THuman's orthographic NDC matrices)
        k4 = ks
    else:
        k4 = np.repeat(np.eye(4)[None], len(ks), 0)
        k4[:, :3, :3] = ks
    batch = {"target_K": torch.tensor(k4[None], dtype=torch.float32, device=dev),
             "target_RT": torch.tensor(np.asarray(rts)[None], dtype=torch.float32, device=dev),
             "vertices": torch.tensor(vertices[None], dtype=torch.float32, device=dev),
             "coord": torch.tensor(vox.coord[None], device=dev), "out_sh": torch.tensor(vox.out_sh[None], device=dev),
             "bounds": torch.tensor(vox.bounds[None], device=dev)}
    x = torch.tensor(input_image, dtype=torch.float32, device=dev).permute(2, 0, 1)[None]
    gen = torch.Generator(device=dev).manual_seed(ddim.seed)
    with torch.no_grad():
        den = ConditionedDenoiser(model, batch, model.clip_embedding(x),
                                  model.first_stage_model.encode(x, True, gen) * cfg.vae.scale_factor)
        lat = sample(den, (1, cfg.view_num, 4, cfg.latent_size, cfg.latent_size), model.alphas_cumprod.cpu().numpy(),
                     ddim, device=str(dev))
        imgs = model.decode_latents(lat)[0]
    return ((imgs.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def generate(settings: Settings, checkpoint: str | Path, image: str | Path, out_dir: str | Path,
             mesh: str | Path | None = None, expression: str | Path | None = None, trajectory: str = "virtual",
             trajectory_file: str | Path | None = None, seed: int = 6033, steps: int = 50, cfg_scale: float = 2.0,
             batch_view_num: int = 8) -> GenerateOutcome:
    from PIL import Image

    from model.diffusion.config import ModelConfig
    from model.diffusion.ddim import DDIMConfig
    from model.diffusion.network import MorphableDiffusion
    from storage.checkpoints import load_checkpoint
    from storage.meshes import read_obj
    from storage.thumbnails import contact_sheet

    if (mesh is None) == (expression is None):
        raise ValueError("give exactly one of --mesh (a FLAME mesh) or --expression (an image to fit FLAME to)")
    tensors, config = load_checkpoint(checkpoint)
    cfg = ModelConfig.from_dict(config["model"])
    model = MorphableDiffusion(cfg)
    model.load_state_dict(tensors, strict=True)
    model.eval()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if expression is not None:
        from pipelines.fit_image import fit_image

        fit = fit_image(settings, expression, out / "expression_fit")
        verts = frames.flame_to_model_points(fit.fit.vertices)
    else:
        verts = frames.flame_to_model_points(read_obj(mesh).vertices)
    size = cfg.image_size
    if trajectory == "virtual":
        ks, rts = virtual_cameras(size, cfg.view_num)
    elif trajectory == "real":
        if trajectory_file is None:
            raise ValueError("--trajectory real needs --trajectory-file (facescape_test_traj.pkl)")
        ks, rts = real_cameras(trajectory_file, size)
    else:
        raise ValueError(f"unknown trajectory {trajectory!r}; choose virtual or real")
    inp = _input_image(image, size)
    views = sample_views(model, inp, ks, rts, verts, DDIMConfig(steps=steps, cfg_scale=cfg_scale,
                                                               batch_view_num=batch_view_num, seed=seed))
    (out / "views").mkdir(exist_ok=True)
    for i, v in enumerate(views):
        Image.fromarray(_rgba(v)).save(out / "views" / f"{i:02d}.png")
    inp_u8 = ((inp + 1) * 127.5).round().astype(np.uint8)
    Image.fromarray(contact_sheet([inp_u8, *views], tile=size, columns=len(views) + 1)).save(out / "sheet.png")
    export_neus2(out / "neus2", views, ks, rts)
    return GenerateOutcome(out, views, ks, rts)
