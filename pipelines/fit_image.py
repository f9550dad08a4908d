"""Stage `fit-image`: single-image FLAME fit for inference (dlib 68 landmarks -> FLAME + camera), written to a folder.

Outputs: mesh.obj (canonical FLAME frame, metres, no head rotation: what generation conditions on), params.json
(parameters, camera, reprojection error), landmarks.png (detected in red, reprojected fit in blue); the folder
appears complete or not at all (storage.atomic.output_folder).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from model.tracking.single_image import SingleImageConfig, SingleImageFit, fit_flame_to_image
from pipelines.settings import Settings
from storage.atomic import output_folder
from storage.images import read_rgb
from storage.meshes import Mesh, write_obj
from storage.tracks import round_params


@dataclass
class ImageFitOutcome:
    fit: SingleImageFit
    mesh_path: Path
    params_path: Path
    overlay_path: Path


def fit_image(settings: Settings, image_path: str | Path, out_dir: str | Path,
              config: SingleImageConfig = SingleImageConfig()) -> ImageFitOutcome:
    from PIL import Image, ImageDraw

    from model.bodies.flame import load_flame_landmarks, load_flame_model

    image_path, out = Path(image_path), Path(out_dir)
    image = read_rgb(image_path)
    model = load_flame_model(settings.flame_model_dir)
    fit = fit_flame_to_image(model, load_flame_landmarks(settings.flame_model_dir), image, config,
                             source=str(image_path))
    with output_folder(out) as tmp:
        write_obj(tmp / "mesh.obj", Mesh(fit.vertices, model.faces))
        params = {**round_params(fit.params(), 6), "image": str(image_path), "image_size": list(fit.image_size),
                  "landmarks_detected": fit.landmarks_detected.tolist(),
                  "reprojection_error_px": fit.pixel_error, "reprojection_error_relative": fit.relative_error}
        (tmp / "params.json").write_text(json.dumps(params, indent=1))
        im = Image.fromarray(image)
        draw = ImageDraw.Draw(im)
        r = max(2, max(image.shape[:2]) // 300)
        for pts, colour in ((fit.landmarks_detected, (255, 40, 40)), (fit.landmarks_projected, (40, 80, 255))):
            for x, y in pts:
                draw.ellipse([x - r, y - r, x + r, y + r], outline=colour, width=max(1, r // 2))
        im.save(tmp / "landmarks.png")
    return ImageFitOutcome(fit, out / "mesh.obj", out / "params.json", out / "landmarks.png")
