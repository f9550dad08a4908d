"""Evaluation protocols and generated evaluation sets on the stand-in."""
import numpy as np

import pytest
import torch

from model.diffusion.ddim import DDIMConfig
from pipelines.evaluation_sets import generate_eval_set
from pipelines.protocols import PROTOCOLS, get_protocol, groups_of, resolve
from storage.eval_sets import EvalSet
from storage.views import ViewStore, store_path
from pipelines import catalog

QUIET = dict(log=lambda *_: None)


@pytest.fixture(scope="module")
def tiny_checkpoint(model_data, tmp_path_factory):
    import dataclasses

    from model.diffusion.config import tiny
    from model.diffusion.network import MorphableDiffusion
    from storage.checkpoints import save_checkpoint

    torch.manual_seed(1)
    model = MorphableDiffusion(tiny("orthographic"))  # the THuman protocol's cameras
    return save_checkpoint(tmp_path_factory.mktemp("ckpt"), "tiny", model.state_dict(),
                           {"model": dataclasses.asdict(model.cfg)})


def test_facescape_protocols_follow_the_documented_rules(model_data):
    st = ViewStore.open(store_path(model_data.storage_root, "facescape", "flame", "122"))
    pairs = resolve(PROTOCOLS["facescape_novel_view"], model_data.storage_root)
    assert {p.subject for p in pairs} == {"122"}  # only test subjects
    assert [p.item for p in pairs] == st.items
    for p in pairs:
        own = st.views_of(p.item)
        assert p.input_item == p.item
        frontal = np.abs(st.angles[own, 0]) + np.abs(st.angles[own, 1])
        assert p.input_view == own[np.argmin(frontal)]  # the most frontal view, not the most negative azimuth
        assert all(abs(st.angles[v, 0]) < 90 for v in p.target_views) and len(p.target_views) > 16
    nes = resolve(PROTOCOLS["facescape_novel_expression"], model_data.storage_root)
    assert [(p.item, p.input_item) for p in nes] == [(p.item, p.input_item) for p in
                                                      resolve(PROTOCOLS["facescape_novel_expression"],
                                                              model_data.storage_root)]  # seeded
    assert len(nes) == 1 and nes[0].item == "6_jaw_right" and nes[0].input_item in ("1_neutral", "2_smile")
    demo = resolve(PROTOCOLS["demo"], model_data.storage_root)
    assert [p.subject for p in demo] == ["1", "2", "3"]  # the training identities, their held-out expression
    assert all(len(p.target_views) == 16 and p.item == "6_jaw_right" and p.input_item != p.item for p in demo)
    thuman = resolve(PROTOCOLS["thuman_novel_view"], model_data.storage_root)
    assert [p.subject for p in thuman] == ["2201"] and len(thuman[0].target_views) == 16
    with pytest.raises(ValueError, match="unknown protocol"):
        get_protocol("nope")


def test_protocol_inputs_are_exactly_the_stores_a_protocol_reads(model_data, tmp_path):
    """What evaluation/<dataset>/protocol_views records: each protocol's pairs and the content hash of exactly the
    stores they read; its digest moves when one of those stores goes or changes, not when another does."""
    import shutil

    from pipelines.protocols import changed_protocol_inputs, protocol_inputs

    root = model_data.storage_root
    names = ("demo", "facescape_novel_view", "facescape_novel_expression", "thuman_novel_view", "thuman_novel_pose")
    before = {name: protocol_inputs(name, root) for name in names}
    for name, reads in before.items():
        pairs = resolve(PROTOCOLS[name], root)
        assert list(reads.pairs) == pairs and set(reads.stores) == {s for p in pairs for s in (p.subject, p.input_store_subject)}
        assert all(h == ViewStore.open(store_path(root, PROTOCOLS[name].dataset, catalog.dataset(PROTOCOLS[name].dataset).default_topology, s)).manifest["content_hash"]
                   for s, h in reads.stores.items())
        assert changed_protocol_inputs(name, root, reads.stores) == []
        assert changed_protocol_inputs(name, root, {**reads.stores, "ghost": "0" * 16}) == ["ghost"]
    assert set(before["facescape_novel_view"].stores) == {"122"} and set(before["demo"].stores) == {"1", "2", "3"}
    assert changed_protocol_inputs("facescape_novel_view", root, {"122": "f" * 16}) == ["122"]
    copy = tmp_path / "store"
    shutil.copytree(root / "views", copy / "views")
    shutil.rmtree(store_path(copy, "facescape", "flame", "3"))  # a training identity's store gone
    after = {name: protocol_inputs(name, copy) for name in names}
    assert after["demo"].digest != before["demo"].digest and "3" not in after["demo"].stores
    assert all(after[n].digest == before[n].digest for n in names if n != "demo")  # (digests: no paths in them)


def test_groups_pad_like_the_release():
    assert groups_of(list(range(20))) == [list(range(16)), list(range(16, 20)) + list(range(12))]
    assert groups_of([3, 4]) == [[3, 4] * 8]


@pytest.mark.numerics
def test_model_eval_set_is_deterministic_and_baselines_are_what_they_say(model_data, tiny_checkpoint):
    a = generate_eval_set(model_data, "thuman_novel_view", tiny_checkpoint, sampler=DDIMConfig(steps=2), **QUIET)
    b = generate_eval_set(model_data, "thuman_novel_view", tiny_checkpoint, sampler=DDIMConfig(steps=2),
                          overwrite=True, **QUIET)
    assert a.path == b.path and not b.reused
    pa, pb = next(EvalSet.open(a.path).pairs()), next(EvalSet.open(b.path).pairs())
    assert np.array_equal(pa.arrays["generated"], pb.arrays["generated"])
    assert pa.arrays["generated"].shape == (16, 64, 64, 3) and pa.arrays["gt"].shape == (16, 64, 64, 3)
    again = generate_eval_set(model_data, "thuman_novel_view", tiny_checkpoint, sampler=DDIMConfig(steps=2),
                              **QUIET)
    assert again.reused
    copy = next(EvalSet.open(generate_eval_set(model_data, "demo", method="copy_input", **QUIET).path).pairs())
    assert (copy.arrays["generated"] == copy.arrays["input"][None]).all()
    mean = next(EvalSet.open(generate_eval_set(model_data, "demo", method="mean_train", **QUIET).path).pairs())
    assert (mean.arrays["generated"] == mean.arrays["generated"][:1]).all()
    # the mean training image, recomputed independently: every training subject's views (FaceScape test subjects
    # 122/212 held out), area-resized to 64 px with OpenCV, accumulated in float64
    import cv2

    from storage.views import ViewStore, store_path

    total, count = np.zeros((64, 64, 3)), 0
    for subject in ("1", "2", "3"):
        store = ViewStore.open(store_path(model_data.storage_root, "facescape", "flame", subject))
        for i in range(len(store)):
            total += cv2.resize(store.rgb(i), (64, 64), interpolation=cv2.INTER_AREA)
            count += 1
    assert np.array_equal(mean.arrays["generated"][0], np.round(total / count).astype(np.uint8))


@pytest.mark.numerics
def test_mesh_silhouettes_match_the_stored_masks(model_data):
    """The tracked FLAME mesh ray-cast at a store's target cameras covers the stored (scan) silhouettes: an
    independent check of the frames and intrinsics the mesh-IoU metric relies on."""
    from model.bodies.flame import load_flame_model
    from model.metrics.image import silhouette_iou
    from pipelines.evaluation_sets import _resize, mesh_silhouettes
    from pipelines.training_data import scale_intrinsics

    faces = load_flame_model(model_data.flame_model_dir / "generic_model.pkl").faces
    st = ViewStore.open(store_path(model_data.storage_root, "facescape", "flame", "122"))
    item = st.items[0]
    views = st.views_of(item)[:6]
    k = scale_intrinsics(st.K[views], "facescape", 64)
    rendered = mesh_silhouettes(st.geometry(item).vertices, faces, k, st.RT[views].astype(np.float64), 64)
    stored = _resize(st.mask_many(views), 64, nearest=True)
    ious = [silhouette_iou(m, np.where(r[..., None] > 0, 0, 255).astype(np.uint8).repeat(3, -1))
            for m, r in zip(stored, rendered)]
    assert min(ious) > 0.75, ious  # FLAME has no hair or shoulders: close, not equal


def test_ablation_sets_change_one_condition(model_data, tmp_path):
    """`wrong_mesh` conditions on the next identity's mesh of the same item; ablation sets are sets of their own
    (named by the ablation) with the same pairs and ground truth, and mesh silhouettes for FaceScape."""
    import dataclasses

    from model.diffusion.config import tiny
    from model.diffusion.network import MorphableDiffusion
    from pipelines.evaluation_sets import _dataset_subjects, wrong_mesh
    from storage.checkpoints import save_checkpoint

    subjects = _dataset_subjects(model_data, "facescape", "flame")
    assert subjects == ["1", "2", "3", "122"]
    item = "6_jaw_right"
    other = wrong_mesh(model_data, "facescape", "flame", "122", item, subjects)
    first = ViewStore.open(store_path(model_data.storage_root, "facescape", "flame", "1")).geometry(item).vertices
    assert np.array_equal(other, first)  # cyclically after 122 comes 1
    torch.manual_seed(2)
    model = MorphableDiffusion(tiny())
    ckpt = save_checkpoint(tmp_path, "tiny", model.state_dict(), {"model": dataclasses.asdict(model.cfg)})
    sets = {a: generate_eval_set(model_data, "facescape_novel_expression", ckpt, sampler=DDIMConfig(steps=1),
                                 ablation=a, **QUIET) for a in ("none", "no_mesh", "wrong_mesh")}
    assert len({r.path for r in sets.values()}) == 3
    assert sets["no_mesh"].path.name.startswith("model-no_mesh-")
    pairs = {a: next(EvalSet.open(r.path).pairs()) for a, r in sets.items()}
    assert EvalSet.open(sets["wrong_mesh"].path).manifest["ablation"] == "wrong_mesh"
    for a in ("no_mesh", "wrong_mesh"):
        assert np.array_equal(pairs[a].arrays["gt"], pairs["none"].arrays["gt"])
    masks = pairs["none"].arrays
    assert masks["mesh_mask_target"].shape == masks["gt"].shape[:3]
    assert (masks["mesh_mask_target"] != masks["mesh_mask_input"]).any()  # the jaw moved between expressions
    with pytest.raises(ValueError, match="ablation"):
        generate_eval_set(model_data, "demo", method="copy_input", ablation="no_mesh", **QUIET)


def test_sampler_precision_from_the_experiments_file_reaches_the_evaluation_set(model_data, tiny_checkpoint,
                                                                                 tmp_path):
    """`[sampler] precision / compile / batch_view_num` travel as the evaluation asset sends them (the experiment's
    sampler as a dict, through the GPU worker's task) into the set's name and header; at their defaults they leave
    the set's name as it was before the fields existed."""
    import dataclasses

    from pipelines.experiments import load_experiments
    from pipelines.worker import run_eval_set

    path = tmp_path / "experiments.toml"
    path.write_text(TOML.format(ckpt=tiny_checkpoint))
    experiments = load_experiments(path).experiments
    fast, plain = experiments["bf16-thuman"], experiments["fp32-thuman"]
    assert (fast.sampler.precision, fast.sampler.compile, fast.sampler.batch_view_num) == ("bf16", "off", 16)
    assert plain.sampler.identity() == {k: v for k, v in dataclasses.asdict(plain.sampler).items()
                                        if k not in ("precision", "compile")}
    metas = {}
    for exp in (fast, plain):
        task = {"protocol": "thuman_novel_view", "checkpoint": str(tiny_checkpoint), "method": "model",
                "sampler": dataclasses.asdict(exp.sampler)}
        metas[exp.name], _ = run_eval_set(model_data, task, lambda *_: None)
    sampler = metas["bf16-thuman"]["sampler"].value
    assert (sampler["precision"], sampler["precision_resolved"], sampler["batch_view_num"]) == ("bf16", "bf16", 16)
    assert metas["fp32-thuman"]["sampler"].value["precision_resolved"] == "fp32"  # auto on a CPU
    before = generate_eval_set(model_data, "thuman_novel_view", tiny_checkpoint, sampler=DDIMConfig(steps=2), **QUIET)
    assert metas["fp32-thuman"]["dagster/uri"] == str(before.path) != metas["bf16-thuman"]["dagster/uri"]
    with pytest.raises(ValueError, match="precision 'fp64'"):
        DDIMConfig(precision="fp64")


TOML = """
[first_stage]
steps = 3

[experiments.bf16-thuman]
kind = "published"
dataset = "thuman"
file = "{ckpt}"
sampler = {{ steps = 2, precision = "bf16", compile = "off", batch_view_num = 16 }}

[experiments.fp32-thuman]
kind = "published"
dataset = "thuman"
file = "{ckpt}"
sampler = {{ steps = 2 }}
"""
