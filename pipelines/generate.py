"""Stage `generate`: one input image + a target mesh (or an expression image) -> 16 consistent views.

Outputs in `out_dir`: views/00.png ... 15.png (RGBA, alpha = not-white), sheet.png (input + 16 views), and a NeuS2
dataset neus2/transforms.json + neus2/images/NN.png whose frame k is view k (the release's export is off by one and
names the file transform.json, spec §8 item 3).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from model import frames
from pipelines import catalog
from pipelines.settings import Settings

if TYPE_CHECKING:
    from model.diffusion.ddim import DDIMConfig

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
    """A camera trajectory file: the released `facescape_test_traj.pkl` (read through the allow-listed reader), or
    the same content as JSON / NPZ ({"intrinsics": (N, 3, 3), "extrinsics": (N, 3, 4)}, model frame, 256 px)."""
    from storage.errors import InvalidContentError
    from storage.safe_pickle import load_npz, load_pickle

    path = Path(path)
    fix = "give facescape_test_traj.pkl, or a .json / .npz with 'intrinsics' (N,3,3) and 'extrinsics' (N,3,4)"
    if path.suffix == ".json":
        from storage.jsonfile import read_json

        doc = read_json(path, "a camera trajectory", fix)
    elif path.suffix == ".npz":
        doc = load_npz(path, "a camera trajectory", fix)
    else:
        doc = load_pickle(path, "a camera trajectory pickle", fix)
    if not isinstance(doc, dict) or not {"intrinsics", "extrinsics"} <= set(doc):
        raise InvalidContentError(path, "a trajectory needs the keys 'intrinsics' and 'extrinsics'", fix)
    try:
        k = np.asarray(doc["intrinsics"], np.float64).copy()
        rt = np.asarray(doc["extrinsics"], np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidContentError(path, f"camera matrices are not numeric ({exc})", fix) from None
    if k.ndim != 3 or k.shape[1:] != (3, 3) or rt.shape != (len(k), 3, 4):
        raise InvalidContentError(path, f"intrinsics {k.shape} / extrinsics {rt.shape}; expected (N, 3, 3) / "
                                        "(N, 3, 4)", fix)
    if not (np.isfinite(k).all() and np.isfinite(rt).all()):
        raise InvalidContentError(path, "camera matrices hold NaN or infinite values", fix)
    k[:, :2] *= image_size / 256
    return k, rt


def _input_image(path: str | Path, size: int) -> np.ndarray:
    """Square centre crop, resized, alpha (if any) composited on white; [-1, 1] HWC float32."""
    from PIL import Image

    from storage.images import read_image

    im = Image.fromarray(read_image(path, "RGBA"))
    w, h = im.size
    s = min(w, h)
    im = im.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)).resize((size, size), Image.BICUBIC)
    rgba = np.asarray(im).astype(np.float32) / 255.0
    rgb = rgba[..., :3] * rgba[..., 3:] + (1 - rgba[..., 3:])
    return rgb * 2 - 1


def check_face(path: str | Path) -> None:
    """Refuse an input image with no detectable face (dlib HOG, as the single-image fit uses): the model was trained
    on faces, and a flat or unrelated image would give 16 confident-looking views of nothing."""
    from model.tracking.landmarks2d import NoFaceError, detect_landmarks
    from storage.errors import InvalidContentError
    from storage.images import read_rgb

    try:
        detect_landmarks(read_rgb(path), source=str(path))
    except NoFaceError:
        raise InvalidContentError(path, "no face found in the input image (dlib HOG detector)",
                                  "use a photo with one clearly visible, roughly frontal face, or pass "
                                  "--no-face-check to generate anyway") from None


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
                 ddim, ablation: str = "none", progress=None) -> np.ndarray:
    """The model's 16 views (N, H, W, 3) uint8 for one input image (H, W, 3) in [-1, 1], target cameras
    (K (N, 3, 3) or (N, 4, 4), RT (N, 3, 4)) and mesh vertices in the model frame; seeded by `ddim.seed`.
    `ablation` ("no_mesh", "no_image"; network.ABLATION_KEEP) drops a conditioning branch; `progress()` is called
    after each view batch of each step. The network runs in
    `ddim.precision` (autocast) and `ddim.compile`; the DDIM state, the encoders and the VAE decode stay fp32."""
    return decode_views(model, sample_latents(model, input_image, ks, rts, vertices, ddim, ablation, progress))


def sample_latents(model, input_image: np.ndarray, ks: np.ndarray, rts: np.ndarray, vertices: np.ndarray,
                   ddim, ablation: str = "none", progress=None, init=None, strength: float = 1.0):
    """`sample_views`' latents (1, N, C, h, w), before decoding; `init` / `strength`: a warm start from other
    latents (`model.diffusion.ddim.sample`), as an animation's frames use."""
    import torch

    from model.diffusion.ddim import sample
    from model.diffusion.network import ABLATION_KEEP, ConditionedDenoiser
    from model.diffusion.precision import autocast_dtype
    from model.geometry.voxels import voxelize

    if ablation not in ABLATION_KEEP:
        raise ValueError(f"unknown ablation {ablation!r}; choose one of {sorted(ABLATION_KEEP)}")
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
    dtype = autocast_dtype(ddim.resolved_precision(dev.type))
    model.model.use_compiled(ddim.compile)
    with torch.no_grad():
        den = ConditionedDenoiser(model, batch, model.clip_embedding(x),
                                  model.first_stage_model.encode(x, True, gen) * cfg.vae.scale_factor,
                                  keep=ABLATION_KEEP[ablation])
        with torch.autocast(dev.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            return sample(den, (1, cfg.view_num, 4, cfg.latent_size, cfg.latent_size),
                          model.alphas_cumprod.cpu().numpy(), ddim, device=str(dev), progress=progress, init=init,
                          strength=strength)


def decode_views(model, latents) -> np.ndarray:
    """(N, H, W, 3) uint8 views of latents (1, N, C, h, w), decoded by the VAE in fp32."""
    import torch

    with torch.no_grad():
        imgs = model.decode_latents(latents.float())[0]
    return ((imgs.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def generate(settings: Settings, checkpoint: str | Path, image: str | Path, out_dir: str | Path,
             mesh: str | Path | None = None, expression: str | Path | None = None, trajectory: str = "virtual",
             trajectory_file: str | Path | None = None, sampler: "DDIMConfig | None" = None,
             face_check: bool = True, log=None) -> GenerateOutcome:
    """Inputs are read and checked first (trajectory, image, target mesh), then the model; the output folder
    appears complete or not at all."""
    from PIL import Image

    from model.diffusion.ddim import DDIMConfig
    from pipelines.model_loading import load_model
    from storage.atomic import output_folder
    from storage.meshes import read_obj
    from storage.thumbnails import contact_sheet

    if mesh is not None and expression is not None:
        raise ValueError("give at most one of --mesh (a FLAME mesh) or --expression (an image to fit FLAME to); "
                         "neither: the input image's own expression")
    if mesh is None and expression is None:
        expression = image  # novel views of the input's own expression: FLAME fitted to the input image
    if trajectory not in ("virtual", "real"):
        raise ValueError(f"unknown trajectory {trajectory!r}; choose virtual or real")
    if trajectory == "real" and trajectory_file is None:
        raise ValueError("--trajectory real needs --trajectory-file (facescape_test_traj.pkl, or .json / .npz)")
    real = real_cameras(trajectory_file, 256) if trajectory == "real" else None
    _input_image(image, 8)  # decodes the file: a bad image fails here, before anything is loaded
    if face_check:
        check_face(image)
    target = None if expression is not None else read_obj(mesh)
    loaded = load_model(checkpoint, projection="perspective", use="generation (face cameras)", settings=settings,
                        sampler=sampler or DDIMConfig())
    model, cfg = loaded.model, loaded.model.cfg
    trained_on = (loaded.config.get("training") or {}).get("topology") or catalog.dataset("facescape").default_topology
    if trained_on != "flame":  # generation's meshes are FLAME meshes (--mesh, or the FLAME fit of an image)
        raise ValueError(f"{loaded.folder}: trained on {trained_on} meshes; generate conditions on FLAME meshes "
                         "(--mesh, --expression or the input's own FLAME fit): use a checkpoint trained on FLAME")
    out = Path(out_dir)
    with output_folder(out) as tmp:
        if expression is not None:
            from pipelines.fit_image import fit_image

            if log:
                log(f"fitting FLAME to {expression}")
            fit = fit_image(settings, expression, tmp / "expression_fit")
            verts = frames.flame_to_model_points(fit.fit.vertices)
        else:
            verts = frames.flame_to_model_points(target.vertices)
        size = cfg.image_size
        if real is None:
            ks, rts = virtual_cameras(size, cfg.view_num)
        else:
            ks, rts = real[0].copy(), real[1]
            ks[:, :2] *= size / 256
        if len(ks) != cfg.view_num:
            from storage.errors import InvalidContentError

            raise InvalidContentError(trajectory_file, f"{len(ks)} cameras; the model generates {cfg.view_num} views",
                                      f"give a trajectory with {cfg.view_num} cameras")
        inp = _input_image(image, size)
        ddim = sampler or DDIMConfig()
        bar = None
        if log:
            from model.diffusion.ddim import ddim_timesteps
            from pipelines.progress import Progress

            batches = -(-cfg.view_num // ddim.batch_view_num)
            steps = len(ddim_timesteps(ddim.steps, len(model.alphas_cumprod), ddim.timestep_offset))
            bar = Progress(steps * batches, f"sampling {cfg.view_num} views ({steps} DDIM steps x {batches} view "
                                            "batches)", log)
        views = sample_views(model, inp, ks, rts, verts, ddim, progress=bar.update if bar else None)
        if bar:
            bar.close()
        (tmp / "views").mkdir()
        for i, v in enumerate(views):
            Image.fromarray(_rgba(v)).save(tmp / "views" / f"{i:02d}.png")
        inp_u8 = ((inp + 1) * 127.5).round().astype(np.uint8)
        Image.fromarray(contact_sheet([inp_u8, *views], tile=size, columns=len(views) + 1)).save(tmp / "sheet.png")
        export_neus2(tmp / "neus2", views, ks, rts)
    return GenerateOutcome(out, views, ks, rts)
