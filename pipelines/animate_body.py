"""Stage `animate-body`: a THuman subject driven through a SMPL-X pose sequence -> 16 views per frame, and videos.

The body counterpart of `pipelines.animate`: the same samplers (`AnimationConfig`: shared noise by default), the
same outputs (frames, per-view and grid videos, `animation.json` with the temporal scores along the driving meshes,
here through the orthographic cameras), on the THuman line's cameras. The person is a tracked subject with a view
store: its input view (the input-only render nearest the horizon, as the THuman protocol picks) is the input image,
its SMPL-X track the identity that `pipelines.body_driving.pose_meshes` poses frame by frame, and the 16 fixed target
views the cameras.
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from pipelines.animate import AnimationConfig, AnimationOutcome, animate_views, temporal_scores, write_animation
from pipelines.body_driving import PoseSequence, read_pose_file, write_pose_file
from pipelines.settings import Settings


def body_cameras(settings: Settings, uid: str, topology: str = "smplx"):
    """(input image (256, 256, 3) uint8, K (16, 4, 4) NDC, RT (16, 3, 4)) of a THuman subject's view store."""
    from storage.errors import MissingFileError
    from storage.views import ViewStore, store_path

    path = store_path(settings.storage_root, "thuman", topology, uid)
    if not (path / "manifest.json").is_file():
        raise MissingFileError(path, f"no view store of THuman subject {uid}",
                               f"run `morphable track --dataset thuman --subject {uid}` and `morphable views "
                               f"--dataset thuman --subject {uid}` (or materialize thuman/{topology}/views)")
    st = ViewStore.open(path)
    inputs = st.views_of("scan", role=1)
    inputs = inputs if len(inputs) else st.views_of("scan", role=0)
    inp = int(inputs[np.argmin(np.abs(st.angles[inputs, 1]))])
    targets = st.views_of("scan", role=0)
    return st.rgb_many(np.array([inp]))[0], st.K[targets].astype(np.float64), st.RT[targets].astype(np.float64)


def animate_body(settings: Settings, checkpoint: str | Path, uid: str, driving: str | Path | PoseSequence,
                 out_dir: str | Path, sampler=None, config: AnimationConfig = AnimationConfig(), log=None,
                 topology: str = "smplx") -> AnimationOutcome:
    """Sample the 16 target views of THuman subject `uid` in every pose of `driving` (a pose file, a fit, or a
    sequence) and write the videos (see the module docstring)."""
    from model.diffusion.ddim import DDIMConfig
    from pipelines.body_driving import pose_meshes
    from pipelines.evaluation_sets import _resize
    from pipelines.model_loading import load_model
    from pipelines.training_data import scale_intrinsics
    from storage.atomic import output_folder

    sequence = driving if isinstance(driving, PoseSequence) else read_pose_file(driving)
    image, ks, rts = body_cameras(settings, uid, topology)
    meshes, faces = pose_meshes(settings, uid, sequence, topology)
    ddim = sampler or DDIMConfig()
    model = load_model(checkpoint, projection="orthographic", use="body animation (THuman cameras)",
                       settings=settings, sampler=ddim).model
    size = model.cfg.image_size
    if len(rts) != model.cfg.view_num:
        raise ValueError(f"THuman subject {uid} has {len(rts)} target views; the model generates {model.cfg.view_num}")
    ks = scale_intrinsics(ks, "thuman", size).astype(np.float64)
    out = Path(out_dir)
    t0 = time.perf_counter()
    with output_folder(out) as tmp:
        inp = _resize(image[None], size)[0].astype(np.float32) / 127.5 - 1.0
        views = animate_views(model, inp, ks, rts, meshes, ddim, config, log=log)
        videos = write_animation(tmp, views, sequence.fps)
        scores = temporal_scores(views, meshes, faces, ks, rts, projection="orthographic")
        if log:
            log(f"temporal consistency: warping error {scores['warping_error']:.5f}, background flicker "
                f"{scores['flicker']:.5f} (0 = consistent; docs/evaluation.md)")
        write_pose_file(tmp / "poses.npz", sequence)
        np.savez(tmp / "meshes.npz", vertices=meshes.astype(np.float32), faces=faces, intrinsics=ks, extrinsics=rts)
        seconds = time.perf_counter() - t0
        (tmp / "animation.json").write_text(json.dumps({
            "checkpoint": str(checkpoint), "subject": uid, "driving": sequence.source, "frames": sequence.frames,
            "views": int(len(rts)), "fps": sequence.fps, "animation": dataclasses.asdict(config),
            "sampler": dataclasses.asdict(ddim), "seconds": round(seconds, 2), "temporal": scores,
            "videos": [str(p.relative_to(tmp)) for p in videos]}, indent=1))
    return AnimationOutcome(out, views, seconds, [out / p.relative_to(tmp) for p in videos], meshes, None, ks, rts,
                            scores)
