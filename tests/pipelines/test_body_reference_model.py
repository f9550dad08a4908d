"""The shipped body reference model (pretrained/tiny-thuman-reference): its files match its recipe, the repository's
weights stay under 30 MB, and it does the task on a person it never saw, for novel views and for a novel pose, better
than both baselines (the body line's quality regression test)."""
import json

import numpy as np
import pytest

from tests.conftest import REPO

PRETRAINED = REPO / "pretrained" / "tiny-thuman-reference"
DEMO_SCANS = {"0003", "0526", "1024", "2201", "2301", "2401"}  # the demo stand-in's (seed 0)


def test_shipped_body_reference_matches_its_recipe():
    from safetensors.torch import load_file

    from storage.checkpoints import tensors_hash
    from storage.hashing import hash_file

    recipe = json.loads((PRETRAINED / "recipe.json").read_text())
    for name, digest in recipe["files"].items():
        assert hash_file(PRETRAINED / name) == digest, name
    tensors = load_file(str(PRETRAINED / "model.safetensors"))
    assert {str(v.dtype) for v in tensors.values() if v.is_floating_point()} == {"torch.float16"}
    assert tensors_hash(tensors) == json.loads((PRETRAINED / "manifest.json").read_text())["hash"]
    config = json.loads((PRETRAINED / "config.json").read_text())
    assert config["model"]["preset"] == "tiny-narrow" and config["model"]["projection"] == "orthographic"
    assert config["training"] == {**recipe["training_config"], "topology": "smplx"}  # (the recipe's None resolved)
    assert config["training"]["dataset"] == "thuman" and config["steps"] == recipe["training_config"]["steps"]
    data = recipe["data"]
    assert data["seed"] != 0 and len(data["spec"]["thuman_uids"]) >= 64
    assert not set(data["spec"]["thuman_uids"]) & DEMO_SCANS and data["spec"]["thuman_poses"] == "varied"
    assert recipe["reference_config"]["first_stage_init"].endswith("tiny-facescape-reference")
    assert recipe["command"].startswith("morphable train-reference") and "--dataset thuman" in recipe["command"]


def test_the_shipped_weights_stay_under_30_mb():
    total = sum(f.stat().st_size for f in (REPO / "pretrained").rglob("*") if f.is_file())
    assert total <= 30 * 2 ** 20, total


def test_the_body_reference_shares_the_face_references_autoencoder():
    """Every tiny experiment of the demo encodes with one first stage: the body model's must be the face model's."""
    from safetensors.torch import load_file

    face = load_file(str(REPO / "pretrained" / "tiny-facescape-reference" / "model.safetensors"))
    body = load_file(str(PRETRAINED / "model.safetensors"))
    keys = [k for k in face if k.startswith("first_stage_model.")]
    assert keys and all(np.array_equal(face[k].numpy(), body[k].numpy()) for k in keys)


def _scores(generated, gt, mask, mesh_target=None, mesh_input=None) -> dict:
    from model.metrics.image import psnr, silhouette_iou

    out = {"masked_psnr": float(np.mean([psnr(g, p, m) for g, p, m in zip(gt, generated, mask)])),
           "iou": float(np.mean([silhouette_iou(m, p) for p, m in zip(generated, mask)]))}
    if mesh_target is not None:
        out["iou_target"] = float(np.mean([silhouette_iou(m, p) for p, m in zip(generated, mesh_target)]))
        out["iou_input"] = float(np.mean([silhouette_iou(m, p) for p, m in zip(generated, mesh_input)]))
    return out


@pytest.mark.numerics
def test_body_reference_beats_the_baselines_on_an_unseen_person(model_data):
    """Held-out scan 2201 of the session's stand-in: its 16 novel views, and the novel pose 2301 driven from 2201's
    input view; 10 DDIM steps, fixed seed."""
    import cv2

    from model.diffusion.ddim import DDIMConfig
    from pipelines import catalog
    from pipelines.evaluation_sets import mean_training_image, mesh_silhouettes, other_pose_in_frame
    from pipelines.generate import sample_views
    from pipelines.model_loading import load_model
    from pipelines.protocols import get_protocol, resolve
    from pipelines.training_data import scale_intrinsics
    from storage.tracks import read_track
    from storage.views import ViewStore, store_path

    from model.bodies.smplx_body import load_thuman_smplx
    from model.metrics.body_keypoints import body_pck
    from model.metrics.image import silhouette

    body = load_thuman_smplx(model_data.smplx_model_dir)
    model = load_model(PRETRAINED, projection="orthographic").model
    size = model.cfg.image_size
    root = model_data.storage_root
    mean_img = mean_training_image(root, "thuman", size)
    faces = read_track(root, "thuman", "2201", catalog.topology("thuman", "smplx").tracker_version).faces
    results = {}
    for name in ("thuman_novel_view", "thuman_novel_pose"):
        pair = resolve(get_protocol(name), root)[0]
        st = ViewStore.open(store_path(root, "thuman", "smplx", pair.subject))
        src = ViewStore.open(store_path(root, "thuman", "smplx", pair.input_store_subject))
        views = np.asarray(pair.target_views)
        gt = np.stack([cv2.resize(x, (size, size), interpolation=cv2.INTER_AREA) for x in st.rgb_many(views)])
        mask = np.stack([cv2.resize(x, (size, size), interpolation=cv2.INTER_NEAREST) for x in st.mask_many(views)])
        inp = cv2.resize(src.rgb_many(np.array([pair.input_view]))[0], (size, size), interpolation=cv2.INTER_AREA)
        k, rt = scale_intrinsics(st.K[views], "thuman", size), st.RT[views].astype(np.float64)
        target = st.geometry("scan").vertices
        gen = sample_views(model, inp.astype(np.float32) / 127.5 - 1.0, k, rt, target, DDIMConfig(steps=10, seed=6033))
        meshes = {}
        if pair.input_subject:
            placed = other_pose_in_frame(model_data, "thuman", "smplx", pair.input_subject, pair.subject)
            meshes = {"mesh_target": mesh_silhouettes(target, faces, k, rt, size, "orthographic"),
                      "mesh_input": mesh_silhouettes(placed, faces, k, rt, size, "orthographic")}
        copied = np.repeat(inp[None], len(views), 0)
        results[name] = {"model": _scores(gen, gt, mask, **meshes),
                         "copy_input": _scores(copied, gt, mask),
                         "mean_train": _scores(np.repeat(mean_img[None], len(views), 0), gt, mask)}
        for method, images in (("model", gen), ("copy_input", copied)):  # body PCK of the fitted SMPL-X
            shown = np.stack([silhouette(x) for x in images])
            results[name][method]["pck"] = float(body_pck(body, shown, k, rt, target, target).pck.mean())
    print(json.dumps(results, indent=1))
    for name, r in results.items():
        best_baseline = max(r["copy_input"]["masked_psnr"], r["mean_train"]["masked_psnr"])
        assert r["model"]["masked_psnr"] >= best_baseline + MARGIN_DB[name], (name, r)
        assert r["model"]["iou"] >= max(r["copy_input"]["iou"], r["mean_train"]["iou"]) + MARGIN_IOU, (name, r)
    pose = results["thuman_novel_pose"]["model"]
    assert pose["iou_target"] >= pose["iou_input"] + MARGIN_POSE_IOU, pose  # the views follow the new pose
    for name, r in results.items():  # the fitted body's joints land nearer the target's than the copied input's
        assert r["model"]["pck"] >= r["copy_input"]["pck"] + MARGIN_PCK[name], (name, r)


# measured on this project's 2-core AVX2 machine (2026-12-07, the shipped weights): novel views 11.77 dB vs 11.06
# (copy) / 10.34 (mean), IoU 0.702 vs 0.584 / 0.451; novel pose 10.99 dB vs 8.51 / 8.99, IoU 0.642 vs 0.485 / 0.401,
# IoU with the target pose's SMPL-X 0.585 vs the input pose's 0.396. The margins keep about half of each lead: a
# regression bar, not the quality bar (+2 dB, IoU 0.8), which this model does not reach on novel views.
# Body PCK (SMPL-X fitted to the silhouettes): novel views 1.000 vs 0.643 (copy), novel pose 0.679 vs 0.545.
MARGIN_DB = {"thuman_novel_view": 0.35, "thuman_novel_pose": 1.0}
MARGIN_IOU = 0.05
MARGIN_POSE_IOU = 0.1
MARGIN_PCK = {"thuman_novel_view": 0.15, "thuman_novel_pose": 0.05}


def test_one_recipe_command_builds_either_reference():
    """`morphable train-reference` without flags rebuilds the face model's recipe as shipped; with `--dataset
    thuman`, the body model's: its narrower preset, varied poses, no faces, and the face model's autoencoder."""
    from pipelines.reference import ReferenceConfig

    face = ReferenceConfig().resolved()
    shipped = json.loads((REPO / "pretrained" / "tiny-facescape-reference" / "recipe.json").read_text())
    assert all(getattr(face, k) == v for k, v in shipped["reference_config"].items() if k not in ("steps",)), face
    assert (face.preset, face.thuman_poses, face.first_stage_init) == ("tiny", "standing", "")
    body = ReferenceConfig(dataset="thuman").resolved()
    assert (body.preset, body.facescape_subjects, body.thuman_poses) == ("tiny-narrow", 0, "varied")
    assert body.first_stage_init.endswith("tiny-facescape-reference")
    assert ReferenceConfig(dataset="thuman", preset="tiny", facescape_subjects=8).resolved().facescape_subjects == 8
