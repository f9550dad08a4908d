"""Stage `eval_set`: generate a protocol's evaluation set with a checkpoint, or with one of the two baselines.

Methods
* `model`: the checkpoint's 16-view sampler, DDIM (50 steps, CFG 2.0, batch_view_num 8 as released), one seeded
  sample per group of 16 targets (group g of a pair uses seed + g; the release pads targets to a multiple of 16).
* `copy_input`: the input view copied to every target (the "no 3D at all" baseline).
* `mean_train`: the mean of every training-split view of the dataset (the "average face / body" baseline).

Ablations of `model` (the same weights, sampler and pairs; a set of their own): `no_mesh` zeroes the 3DMM volume's
features, `no_image` the input image (CLIP embedding and input latent), `wrong_mesh` conditions on another
identity's mesh of the same expression (the next subject of the dataset's stores, cyclically).

Every set reads the view stores of one topology (pipelines.catalog): a model's, the one it was trained on (its
config.json; the dataset's default for a model that records none), a baseline's, the one asked for. Where the
dataset's spec scores mesh silhouettes (FaceScape, THuman), the set also stores, per target view, the silhouettes
of that topology's tracked meshes of the target and of the input expression (or pose) at that camera
(`mesh_mask_target`, `mesh_mask_input`): whether generated views follow the mesh they were given is measured
against both. Where it scores body keypoints (THuman), the set also holds the target's and the condition's SMPL-X
vertices (`target_vertices`, `condition_vertices`), which body PCK fits against.
Images are at the checkpoint's resolution (the released evaluation: 256; `tiny`: 64), on white.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from model.diffusion.ddim import DDIMConfig
from pipelines import catalog
from pipelines.protocols import EvalPair, Protocol, get_protocol, groups_of, protocol_inputs
from pipelines.settings import Settings
from pipelines.training_data import scale_intrinsics
from storage.eval_sets import FORMAT, EvalSet, eval_set_path, write_eval_set
from storage.hashing import hash_json
from storage.views import ViewStore, store_path, store_subjects

METHODS = ("model", "copy_input", "mean_train")
ABLATIONS = ("none", "no_mesh", "no_image", "wrong_mesh")
#: sets of a dataset with body keypoints also hold `target_vertices` and `condition_vertices` (in their digest)
BODY_ARRAYS_VERSION = "body-vertices-1"


@dataclass
class EvalSetResult:
    path: Path
    protocol: str
    method: str
    checkpoint_hash: str
    pairs: int
    views: int
    seconds: float
    reused: bool = False


def _resize(images: np.ndarray, size: int, nearest: bool = False) -> np.ndarray:
    import cv2

    if images.shape[1] == size:
        return images
    interp = cv2.INTER_NEAREST if nearest else cv2.INTER_AREA
    return np.stack([cv2.resize(x, (size, size), interpolation=interp) for x in images])


def mean_training_image(storage_root: str | Path, dataset: str, size: int) -> np.ndarray:
    """The per-pixel mean of every training-split view (uint8, on white)."""
    from pipelines.first_stage import collect_views

    imgs = collect_views(storage_root, (dataset,), size)["train"][dataset]
    return imgs.astype(np.float64).mean(0).round().astype(np.uint8)


def generate_eval_set(settings: Settings, protocol: str | Protocol, checkpoint: str | Path | None = None,
                      method: str = "model", sampler: DDIMConfig = DDIMConfig(), image_size: int | None = None,
                      device: str | None = None, log=print, overwrite: bool = False,
                      ablation: str = "none", model=None, topology: str | None = None) -> EvalSetResult:
    """Write the evaluation set (atomically) and return where it is; an existing complete one is reused.
    `model` (optional): the already loaded checkpoint, so that ablations do not load it again. `topology`: whose
    view stores and meshes are read (a model's own is used and a different one refused; None: the dataset's
    default for a baseline)."""
    proto = get_protocol(protocol) if isinstance(protocol, str) else protocol
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")
    if ablation not in ABLATIONS or (ablation != "none" and method != "model"):
        raise ValueError(f"ablation {ablation!r}: choose one of {ABLATIONS} (ablations apply to method 'model')")
    t0 = time.perf_counter()
    if method == "model":
        if checkpoint is None:
            raise ValueError("method 'model' needs a checkpoint (folder or released .ckpt)")
        loaded = model if model is not None else load_for_protocol(settings, checkpoint, proto, device, sampler)
        model, ckpt_hash, checkpoint = loaded.model, loaded.checkpoint_hash, loaded.folder
        size = model.cfg.image_size
        topology = model_topology(loaded.config, proto, topology, checkpoint)
    else:
        size = image_size or 64
        ckpt_hash = f"baseline{size}"
    topology = catalog.topology(proto.dataset, topology).name
    reads = protocol_inputs(proto, settings.storage_root, topology)
    pairs = list(reads.pairs)
    if not pairs:
        raise ValueError(f"protocol {proto.name}: no evaluation pairs under {settings.storage_root}/views/"
                         f"{proto.dataset}/{topology} (held-out subjects' views are missing: materialize them first)")
    inputs = _inputs_digest(proto, pairs, reads.stores, sampler if method == "model" else None, ablation, topology)
    label = method if ablation == "none" else f"{method}-{ablation}"
    target = eval_set_path(settings.storage_root, proto.name, label, f"{ckpt_hash}-{inputs}")
    if (target / "manifest.json").is_file() and not overwrite:
        es = EvalSet.open(target)
        return EvalSetResult(target, proto.name, method, ckpt_hash, len(es), sum(len(p["views"]) for p in
                                                                                 es.manifest["pairs"]), 0.0, True)
    mean_img = mean_training_image(settings.storage_root, proto.dataset, size) if method == "mean_train" else None
    n_views = 0

    from pipelines.progress import Progress

    bar = Progress(sum(len(p.target_views) for p in pairs), f"{proto.name}/{label} views", log)
    subjects = _dataset_subjects(settings, proto.dataset, topology)
    faces = _mesh_faces(settings, proto.dataset, topology, pairs[0].subject)

    def fill(writer) -> None:
        nonlocal n_views
        for pair in pairs:
            arrays = _pair_arrays(settings, proto, topology, pair, size, method, model, sampler, mean_img, ablation,
                                  subjects, faces)
            writer.add(pair.key, {"subject": pair.subject, "item": pair.item, "input_item": pair.input_item,
                                  "input_view": pair.input_view, "views": pair.target_views,
                                  **({"input_subject": pair.input_subject} if pair.input_subject else {})}, **arrays)
            n_views += len(pair.target_views)
            bar.update(len(pair.target_views), note=pair.key)

    header = {"protocol": proto.name, "protocol_definition": proto.__dict__ | {"digest": proto.digest()},
              "method": method, "checkpoint": str(checkpoint) if checkpoint else None,
              "checkpoint_hash": ckpt_hash, "inputs_digest": inputs, "image_size": size, "ablation": ablation,
              "topology": topology,
              "sampler": sampler.__dict__ if method == "model" else None,
              "sampler_precision": (sampler.resolved_precision(next(model.parameters()).device.type)
                                    if method == "model" else None)}
    write_eval_set(target, header, fill)
    bar.close()
    return EvalSetResult(target, proto.name, method, ckpt_hash, len(pairs), n_views, time.perf_counter() - t0)


def model_topology(config: dict, proto: Protocol, asked: str | None, checkpoint) -> str:
    """The topology a checkpoint was trained on (its config.json; the dataset's default where it records none),
    refused when it is not the protocol's dataset's or differs from the one `asked` for."""
    spec = catalog.dataset(proto.dataset)
    own = (config.get("training") or {}).get("topology") or spec.default_topology
    if own not in spec.topology_names():
        raise ValueError(f"{checkpoint}: trained on the {own!r} topology, which {proto.dataset} (protocol "
                         f"{proto.name}) does not have; choose a checkpoint of one of {spec.topology_names()}")
    if asked is not None and asked != own:
        raise ValueError(f"{checkpoint}: trained on {own} meshes, asked to evaluate on {asked} meshes; evaluate a "
                         f"model on the topology it was trained on")
    return own


def load_for_protocol(settings: Settings, checkpoint: str | Path, proto: Protocol, device: str | None = None,
                      sampler: DDIMConfig | None = None):
    """The checkpoint loaded for a protocol's dataset (its projection checked); for `sampler` alone when given."""
    from pipelines.model_loading import load_model

    return load_model(checkpoint, projection=catalog.dataset(proto.dataset).projection, use=f"protocol {proto.name}",
                      device=device, settings=settings, sampler=sampler)


def _dataset_subjects(settings: Settings, dataset: str, topology: str) -> list[str]:
    """Every subject with a view store of the topology, in id order (the cycle `wrong_mesh` walks)."""
    return sorted(store_subjects(settings.storage_root, dataset, topology), key=lambda s: (len(s), s))


def _mesh_faces(settings: Settings, dataset: str, topology: str, subject: str) -> np.ndarray | None:
    """The topology's faces (from the subject's tracks, which its view store was rendered from), for the mesh
    silhouettes; None where the dataset's spec does not score them."""
    if not catalog.dataset(dataset).mesh_silhouettes:
        return None
    from storage.tracks import read_track

    return read_track(settings.storage_root, dataset, subject, catalog.topology(dataset, topology).tracker_version).faces


def wrong_mesh(settings: Settings, dataset: str, topology: str, subject: str, item: str,
               subjects: list[str]) -> np.ndarray:
    """Another identity's mesh of the same item: the next subject (cyclically) whose store has that item and that
    is not another scan of the same person; the subject's own other item when no other identity has it."""
    order = subjects[subjects.index(subject) + 1:] + subjects[:subjects.index(subject)] if subject in subjects \
        else subjects
    own = ViewStore.open(store_path(settings.storage_root, dataset, topology, subject))
    person = own.attrs.get("same_person_as") or subject
    for other in order:
        st = ViewStore.open(store_path(settings.storage_root, dataset, topology, other))
        if (st.attrs.get("same_person_as") or other) == person:  # another pose of the same body is no other body
            continue
        if item in st.items:
            return st.geometry(item).vertices
    others = [i for i in own.items if i != item]
    if not others:
        raise ValueError(f"wrong_mesh ablation: no other identity or item than {subject}/{item} in the {dataset} "
                         "stores")
    return own.geometry(others[0]).vertices


def mesh_silhouettes(vertices: np.ndarray, faces: np.ndarray, k: np.ndarray, rt: np.ndarray,
                     size: int, projection: str = "perspective") -> np.ndarray:
    """(N, size, size) uint8 silhouettes of a mesh (model frame) at N cameras: pinhole (K (N, 3, 3|4, 4) in pixels)
    or orthographic (K the NDC matrices of the THuman views: ortho scale 2 / K[0, 0])."""
    from model.render.raycast import MeshRaycaster

    caster = MeshRaycaster(vertices, faces)
    out = np.zeros((len(rt), size, size), np.uint8)
    for i in range(len(rt)):
        if projection == "orthographic":
            hits = caster.cast_orthographic(np.asarray(rt[i])[:3], size, 2.0 / float(np.asarray(k[i])[0, 0]))
        else:
            hits = caster.cast(np.asarray(k[i])[:3, :3], np.asarray(rt[i])[:3], size, size)
        out[i] = hits.mask.astype(np.uint8) * 255
    return out


def other_pose_in_frame(settings: Settings, dataset: str, topology: str, person: str, subject: str) -> np.ndarray:
    """The SMPL-X of `person` (another scan of the same body), placed in `subject`'s model frame: both scans share
    the fit scale, rotation and placement of their raw files (one person), and each store is centred on its own
    fit's bounding box, so the offset is the difference of the two centres (pipelines.track's normalisation)."""
    from storage.tracks import read_track

    version = catalog.topology(dataset, topology).tracker_version
    norms = [np.asarray(read_track(settings.storage_root, dataset, s, version).params["scan"]["normalization"],
                        np.float64) for s in (person, subject)]
    if not np.isclose(norms[0][0], norms[1][0], rtol=1e-6):
        raise ValueError(f"{dataset} scans {person} and {subject} are paired as one person but their fits' scales "
                         f"differ ({norms[0][0]:.6g} vs {norms[1][0]:.6g}): check same_person.json")
    st = ViewStore.open(store_path(settings.storage_root, dataset, topology, person))
    # model = R v s - centre, normalization = [s, *(-centre)]: the person's points in the subject's frame
    return st.geometry("scan").vertices + (norms[1][1:] - norms[0][1:])


def _inputs_digest(proto: Protocol, pairs: list[EvalPair], stores: dict[str, str], sampler: DDIMConfig | None,
                   ablation: str = "none", topology: str | None = None) -> str:
    """Hash of what the set depends on besides the weights: protocol, pairs, view-store contents (`stores`:
    pipelines.protocols.protocol_inputs), sampler, topology."""
    doc = {"format": FORMAT, "protocol": proto.digest(), "pairs": [p.as_doc() for p in pairs], "stores": stores,
           "sampler": sampler.identity() if sampler else None}
    if ablation != "none":  # (kept out of the digest otherwise, so existing sets keep their names)
        doc["ablation"] = ablation
    if topology not in (None, catalog.dataset(proto.dataset).default_topology):  # (likewise)
        doc["topology"] = topology
    if catalog.dataset(proto.dataset).body_keypoints:  # (the sets hold the vertices body PCK fits against)
        doc["arrays"] = BODY_ARRAYS_VERSION
    return hash_json(doc, 10, spaced=True)


def _pair_arrays(settings: Settings, proto: Protocol, topology: str, pair: EvalPair, size: int, method: str, model,
                 sampler: DDIMConfig, mean_img: np.ndarray | None, ablation: str = "none",
                 subjects: list[str] | None = None, faces: np.ndarray | None = None) -> dict[str, np.ndarray]:
    from pipelines.generate import sample_views

    st = ViewStore.open(store_path(settings.storage_root, proto.dataset, topology, pair.subject))
    src = st if not pair.input_subject else \
        ViewStore.open(store_path(settings.storage_root, proto.dataset, topology, pair.input_subject))
    views = np.asarray(pair.target_views)
    gt = _resize(st.rgb_many(views), size)
    mask = _resize(st.mask_many(views), size, nearest=True)
    inp = _resize(src.rgb_many(np.array([pair.input_view])), size)[0]
    k = scale_intrinsics(st.K[views], proto.dataset, size)
    rt = st.RT[views].astype(np.float64)
    target_verts = st.geometry(pair.item).vertices
    verts = target_verts  # the condition
    if ablation == "wrong_mesh":
        verts = wrong_mesh(settings, proto.dataset, topology, pair.subject, pair.item, subjects or [])
    if method == "copy_input":
        gen = np.repeat(inp[None], len(views), 0)
    elif method == "mean_train":
        gen = np.repeat(mean_img[None], len(views), 0)
    else:
        position = {v: i for i, v in enumerate(pair.target_views)}
        gen = np.empty_like(gt)
        x_in = inp.astype(np.float32) / 127.5 - 1.0
        for g, group in enumerate(groups_of(pair.target_views)):
            idx = [position[v] for v in group]
            out = sample_views(model, x_in, k[idx], rt[idx], verts, replace(sampler, seed=sampler.seed + g),
                               ablation="none" if ablation == "wrong_mesh" else ablation)
            for j, i in enumerate(idx):
                gen[i] = out[j]
    extra = {}
    if faces is not None:  # which mesh do the generated views follow: the target's, the input's, the condition's?
        projection = catalog.dataset(proto.dataset).projection
        input_mesh = (other_pose_in_frame(settings, proto.dataset, topology, pair.input_subject, pair.subject)
                      if pair.input_subject else src.geometry(pair.input_item).vertices)
        extra = {"mesh_mask_target": mesh_silhouettes(target_verts, faces, k, rt, size, projection),
                 "mesh_mask_input": mesh_silhouettes(input_mesh, faces, k, rt, size, projection)}
        if ablation == "wrong_mesh":  # (another body's: do the views follow it rather than the true one?)
            extra["mesh_mask_condition"] = mesh_silhouettes(verts, faces, k, rt, size, projection)
    if catalog.dataset(proto.dataset).body_keypoints:  # body PCK: the joints to reach, the body the fit starts on
        extra.update(target_vertices=np.asarray(target_verts, np.float32),
                     condition_vertices=np.asarray(verts, np.float32))
    return {"generated": gen, "gt": gt, "mask": mask, "input": inp, "view": views.astype(np.int32),
            "angles": st.angles[views].astype(np.float32),
            "K": k.astype(np.float32), "RT": rt.astype(np.float32), **extra}
