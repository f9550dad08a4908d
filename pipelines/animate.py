"""Stage `animate`: one input image + a driving sequence of FLAME expressions -> 16 views per frame, and videos.

Morphable Diffusion samples every call on its own, so a sequence of expressions generated frame by frame
flickers: each frame is a new draw. The sampler here keeps frames coherent (`AnimationConfig.mode`):

- `independent`: the baseline, every frame its own seed (seed + frame), as separate `generate` calls would;
- `shared_noise` (default): every frame the same seed, so the same initial noise and the same noise at every DDIM
  step (eta = 1 adds noise at each step); frames differ only where their meshes do;
- `warm_start`: shared noise, and each frame after the first starts from the previous frame's final latents noised
  to an intermediate step (`strength`: the fraction of the DDIM steps that run again), so what the mesh did not
  change is carried over instead of drawn again, in a fraction of the steps.

Chosen by measurement (`benchmarks/bench_animation.py`, docs/evaluation.md): on a held-out stand-in identity
driven through 16 frames, shared noise lowers the warping error 10.4x against independent seeds at the same
per-frame quality; warm starts lower it a little more (10.9-12.5x) and run 2-3x faster, but their frames lag the
mesh (silhouette IoU and masked PSNR drop), so they are the faster option, not the default.

Outputs in `out_dir` (the folder appears complete or not at all): frames/TTTT/VV.png (RGBA as `generate`),
views/VV.webp (each view animated) and .mp4 where PyAV is installed, grid.webp / grid.gif (all views of each frame),
sequence.npz (the driving sequence as read, `pipelines.driving`), meshes.npz (the conditioning meshes, model
frame) and animation.json (settings, timings).
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipelines.driving import DrivingSequence
from pipelines.settings import Settings

ANIMATION_MODES = ("independent", "shared_noise", "warm_start")


@dataclass(frozen=True)
class AnimationConfig:
    """How an animation's frames are sampled: the single source of the animate flags and run config."""

    mode: str = field(default="shared_noise", metadata={
        "choices": ANIMATION_MODES, "help": "independent: a seed per frame (the baseline); shared_noise: one seed "
                                            "for every frame; warm_start: shared noise and each frame started from "
                                            "the previous one's latents (docs/evaluation.md)"})
    strength: float = field(default=0.5, metadata={
        "help": "warm_start: the fraction of the DDIM steps that run again for each frame after the first"})
    smoothing: float = field(default=1.0, metadata={
        "help": "a folder of driving frames: Gaussian smoothing of the per-frame FLAME fits, in frames (0: none)"})

    def __post_init__(self) -> None:
        if self.mode not in ANIMATION_MODES:
            raise ValueError(f"animation mode {self.mode!r}: choose one of {ANIMATION_MODES}")
        if not 0 < self.strength <= 1:
            raise ValueError(f"animation strength must be in (0, 1], got {self.strength}")
        if self.smoothing < 0:
            raise ValueError(f"smoothing must be >= 0 frames, got {self.smoothing}")


@dataclass
class AnimationOutcome:
    out_dir: Path
    views: np.ndarray  # (T, N, H, W, 3) uint8
    seconds: float
    videos: list[Path]
    meshes: np.ndarray | None = None  # (T, V, 3) the conditioning meshes, model frame
    landmarks: np.ndarray | None = None  # (T, 68, 3) their FLAME landmarks, model frame
    ks: np.ndarray | None = None  # (N, 3, 3) the views' intrinsics at the model's image size
    rts: np.ndarray | None = None  # (N, 3, 4)
    scores: dict | None = None  # temporal_scores


def animate_views(model, input_image: np.ndarray, ks: np.ndarray, rts: np.ndarray, meshes: np.ndarray, ddim,
                  config: AnimationConfig = AnimationConfig(), progress=None, log=None) -> np.ndarray:
    """(T, N, H, W, 3) uint8: the views of every frame's mesh (`meshes` (T, V, 3), model frame) for one input
    image ([-1, 1] HWC) and one camera set, sampled as `config.mode` says."""
    from pipelines.generate import decode_views, sample_latents

    frames, previous = [], None
    t0 = time.perf_counter()
    for t, vertices in enumerate(meshes):
        seed = ddim.seed + t if config.mode == "independent" else ddim.seed
        warm = config.mode == "warm_start" and previous is not None
        latents = sample_latents(model, input_image, ks, rts, vertices, dataclasses.replace(ddim, seed=seed),
                                 progress=progress, init=previous if warm else None,
                                 strength=config.strength if warm else 1.0)
        previous = latents
        frames.append(decode_views(model, latents))
        if log:
            done = time.perf_counter() - t0
            log(f"frame {t + 1}/{len(meshes)} sampled ({config.mode}); {done:.0f} s, about "
                f"{done / (t + 1) * (len(meshes) - t - 1):.0f} s left")
    return np.stack(frames)


def temporal_scores(views: np.ndarray, meshes: np.ndarray, faces: np.ndarray, ks: np.ndarray,
                    rts: np.ndarray, projection: str = "perspective") -> dict[str, float]:
    """How consistent an animation is along its own driving meshes (`model.metrics.temporal`), averaged over the
    views: the warping error, and the flicker of the background (pixels outside both frames' mesh silhouettes,
    dilated by 2 px: nothing there moves). `views` (T, N, H, W, 3) uint8, `meshes` (T, V, 3) in the cameras'
    frame, `ks` (N, 3, 3) for the views' size (orthographic: the 4x4 NDC matrices), `rts` (N, 3, 4). NaN for a
    single frame."""
    from scipy.ndimage import binary_dilation

    from model.metrics.temporal import flicker, flow_from_hits, warping_error
    from model.render.raycast import MeshRaycaster

    t_count, n, size = views.shape[0], views.shape[1], views.shape[2]
    if t_count < 2:
        return {"warping_error": float("nan"), "flicker": float("nan")}
    tolerance = 0.01 * float(np.linalg.norm(meshes[0].max(0) - meshes[0].min(0)))
    casters = [MeshRaycaster(m, faces) for m in meshes]  # one BVH per frame, cast from every camera
    e_warp, flick = [], []
    for i in range(n):
        rt = np.asarray(rts[i], np.float64)[:3]
        if projection == "orthographic":
            k = np.asarray(ks[i], np.float64)
            hits = [c.cast_orthographic(rt, size, 2.0 / k[0, 0]) for c in casters]
        else:
            k = np.asarray(ks[i])[:3, :3]
            hits = [c.cast(k, rt, size, size) for c in casters]
        flows = [flow_from_hits(hits[t], hits[t - 1], meshes[t - 1], faces, k, rt, tolerance, projection)
                 for t in range(1, t_count)]
        sil = np.stack([h.mask for h in hits])
        still = ~binary_dilation(sil[1:] | sil[:-1], np.ones((1, 5, 5), bool))
        e_warp.append(warping_error(views[:, i], flows))
        flick.append(flicker(views[:, i], still))
    return {"warping_error": float(np.nanmean(e_warp)), "flicker": float(np.nanmean(flick))}


def write_animation(out: Path, views: np.ndarray, fps: float) -> list[Path]:
    """The frames as PNGs and the videos (see the module docstring); returns the video paths."""
    from PIL import Image

    from pipelines.generate import _rgba
    from storage.video import grid, mp4_available, write_animated, write_mp4

    for t, frame in enumerate(views):
        (out / "frames" / f"{t:04d}").mkdir(parents=True, exist_ok=True)
        for i, view in enumerate(frame):
            Image.fromarray(_rgba(view)).save(out / "frames" / f"{t:04d}" / f"{i:02d}.png")
    (out / "views").mkdir(exist_ok=True)
    videos = []
    mp4 = mp4_available()
    for i in range(views.shape[1]):
        videos.append(write_animated(out / "views" / f"{i:02d}.webp", views[:, i], fps))
        if mp4:
            videos.append(write_mp4(out / "views" / f"{i:02d}.mp4", views[:, i], fps))
    sheet = grid(views)
    videos += [write_animated(out / "grid.webp", sheet, fps), write_animated(out / "grid.gif", sheet, fps)]
    if mp4:
        videos.append(write_mp4(out / "grid.mp4", sheet, fps))
    return videos


def animate(settings: Settings, checkpoint: str | Path, image: str | Path, driving: str | Path | DrivingSequence,
            out_dir: str | Path, sampler=None, config: AnimationConfig = AnimationConfig(), face_check: bool = True,
            log=None, cameras: tuple[np.ndarray, np.ndarray, int] | None = None) -> AnimationOutcome:
    """Read and check the inputs (image, driving sequence), fit FLAME to the image for its identity, then sample
    every frame's 16 views and write the videos. The views are the released virtual trajectory's unless `cameras`
    gives others: (K (N, 3, 3) for `size` px images, RT (N, 3, 4) model frame, size)."""
    from model import frames as frames_
    from model.bodies.flame import load_flame_landmarks, load_flame_model
    from model.diffusion.ddim import DDIMConfig
    from pipelines.driving import read_driving, sequence_meshes, write_driving_file
    from pipelines.fit_image import fit_image
    from pipelines.generate import _input_image, check_face, virtual_cameras
    from pipelines.model_loading import load_model
    from storage.atomic import output_folder

    _input_image(image, 8)  # decodes the file: a bad image fails here, before anything is loaded
    if face_check:
        check_face(image)
    sequence = driving if isinstance(driving, DrivingSequence) else \
        read_driving(settings, driving, config.smoothing, log=log)
    ddim = sampler or DDIMConfig()
    loaded = load_model(checkpoint, projection="perspective", use="animation (face cameras)", settings=settings,
                        sampler=ddim)
    model, cfg = loaded.model, loaded.model.cfg
    out = Path(out_dir)
    t0 = time.perf_counter()
    with output_folder(out) as tmp:
        identity = fit_image(settings, image, tmp / "identity_fit")  # the input's FLAME shape drives every frame
        flame = load_flame_model(settings.flame_model_dir)
        vertices, landmarks = sequence_meshes(flame, identity.fit.shape, sequence,
                                              load_flame_landmarks(settings.flame_model_dir))
        meshes, landmarks = frames_.flame_to_model_points(vertices), frames_.flame_to_model_points(landmarks)
        if cameras is None:
            ks, rts = virtual_cameras(cfg.image_size, cfg.view_num)
        else:
            ks, rts = given_cameras(cameras, cfg.image_size, cfg.view_num)
        bar = None
        if log:
            from model.diffusion.ddim import ddim_timesteps, warm_start_steps
            from pipelines.progress import Progress

            batches = -(-cfg.view_num // ddim.batch_view_num)
            total = len(model.alphas_cumprod)
            steps = len(ddim_timesteps(ddim.steps, total, ddim.timestep_offset))
            later = warm_start_steps(ddim, total, config.strength) if config.mode == "warm_start" else steps
            bar = Progress((steps + (sequence.frames - 1) * later) * batches,
                           f"animating {sequence.frames} frames x {cfg.view_num} views ({config.mode})", log)
        views = animate_views(model, _input_image(image, cfg.image_size), ks, rts, meshes, ddim, config,
                              progress=bar.update if bar else None, log=log)
        if bar:
            bar.close()
        videos = write_animation(tmp, views, sequence.fps)
        scores = temporal_scores(views, meshes, flame.faces, ks, rts)
        if log:
            log(f"temporal consistency: warping error {scores['warping_error']:.5f}, background flicker "
                f"{scores['flicker']:.5f} (0 = consistent; docs/evaluation.md)")
        write_driving_file(tmp / "sequence.npz", sequence)
        np.savez(tmp / "meshes.npz", vertices=meshes.astype(np.float32), landmarks=landmarks.astype(np.float32),
                 intrinsics=ks, extrinsics=rts, faces=flame.faces)
        seconds = time.perf_counter() - t0
        (tmp / "animation.json").write_text(json.dumps({
            "checkpoint": str(checkpoint), "image": str(image), "driving": sequence.source,
            "frames": sequence.frames, "views": int(cfg.view_num), "fps": sequence.fps,
            "animation": dataclasses.asdict(config), "sampler": dataclasses.asdict(ddim),
            "seconds": round(seconds, 2), "temporal": scores, "videos": [str(p.relative_to(tmp)) for p in videos]}, indent=1))
    return AnimationOutcome(out, views, seconds, [out / p.relative_to(tmp) for p in videos], meshes, landmarks, ks,
                            rts, scores)


def given_cameras(cameras: tuple[np.ndarray, np.ndarray, int], image_size: int, view_num: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(K at `image_size`, RT) of perspective cameras given for `size` px images (pixel intrinsics follow the
    resize, as `training_data.scale_intrinsics` scales the view stores'); the model generates `view_num` views."""
    ks, rts, size = cameras
    ks, rts = np.array(ks, np.float64)[:, :3, :3], np.asarray(rts, np.float64)[:, :3]
    if len(ks) != view_num or len(rts) != view_num:
        raise ValueError(f"{len(ks)} cameras given; the model generates {view_num} views")
    ks[:, :2] *= image_size / size
    return ks, rts
