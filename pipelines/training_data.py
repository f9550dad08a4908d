"""The training / validation dataset over view stores: yields exactly the batch dict of spec §2.3.

FaceScape item = (subject, target expression): 16 target views sampled without replacement among the expression's
views with |azimuth| <= 90 (and the release's upside-down filter), an input view with |azimuth| <= 40 taken from a
*different* expression when `shuffled_expression` (never a held-out one), and the target expression's mesh.
THuman item = one scan: its 16 fixed target views in random order, one random-elevation input view.
Images are on white (the stores keep the background white) and mapped to [-1, 1], HWC. Stores are opened once per worker process.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipelines import catalog
from pipelines.catalog import FACESCAPE_HELDOUT_EXPRESSIONS, FACESCAPE_TEST_SUBJECTS, THUMAN_FIRST_VAL_UID
from storage.views import ViewStore, store_path, store_subjects, topology_folder

N_TARGETS = 16


@dataclass(frozen=True)
class SplitConfig:
    """Paper defaults: FaceScape test subjects 122, 212, 326-359 and held-out expression 6 (jaw_right);
    THuman validation uids from 2201."""

    split: str = "train"  # "train" or "val"
    facescape_test_subjects: tuple[str, ...] = FACESCAPE_TEST_SUBJECTS
    heldout_expressions: tuple[int, ...] = FACESCAPE_HELDOUT_EXPRESSIONS
    thuman_first_val_uid: int = THUMAN_FIRST_VAL_UID
    shuffled_expression: bool = True
    input_max_abs_azimuth: float = 40.0
    target_max_abs_azimuth: float = 90.0
    upside_down_euler_deg: float = 90.0
    image_size: int = 256
    subjects: tuple[str, ...] | None = None  # restrict to these subjects (None: every store of the split)


def is_heldout(dataset: str, subject: str, config: SplitConfig = SplitConfig()) -> bool:
    """The one rule for held-out subjects, the dataset's (pipelines.catalog): FaceScape test subjects, THuman uids
    from the first validation uid."""
    return catalog.dataset(dataset).heldout(subject, config)


def scale_intrinsics(k: np.ndarray, dataset: str, image_size: int) -> np.ndarray:
    """K (..., 4, 4) for images resized from 256 to `image_size`: a perspective dataset's pixel intrinsics follow
    the resize, an orthographic one's NDC matrices do not."""
    k = np.array(k, np.float32)
    if catalog.dataset(dataset).projection == "perspective" and image_size != 256:
        k[..., :2, :] *= image_size / 256.0
    return k


def expression_index(name: str) -> int:
    return int(name.split("_")[0])


def _upright(rt_model: np.ndarray, limit: float) -> np.ndarray:
    """The release's filter: |Euler 'xyz'[2]| of the CAPSTUDIO rotation within `limit` degrees."""
    from scipy.spatial.transform import Rotation

    from model.frames import model_to_cap_extrinsics

    r = model_to_cap_extrinsics(rt_model)[..., :3, :3]
    return np.abs(Rotation.from_matrix(r).as_euler("xyz", degrees=True)[..., 2]) <= limit


@dataclass
class _Item:
    dataset: str
    subject: str
    target: str  # expression name or "scan"
    target_views: np.ndarray
    input_views: dict[str, np.ndarray] = field(default_factory=dict)  # input expression -> view indices


class MultiViewDataset:
    """A torch-style map dataset (no torch import needed to build it): `len()`, `ds[i]` -> dict of numpy arrays."""

    def __init__(self, storage_root: str | Path, dataset: str, config: SplitConfig = SplitConfig(),
                 seed: int = 6033, topology: str | None = None) -> None:
        self.root, self.dataset, self.config, self.seed = Path(storage_root), dataset, config, seed
        self.spec = catalog.dataset(dataset)
        self.topology = self.spec.topology(topology).name  # whose meshes condition the items
        self._stores: dict[str, ViewStore] = {}
        self._pid = os.getpid()
        self.items: list[_Item] = []
        self.skipped: list[str] = []
        folder = topology_folder(self.root, dataset, self.topology)
        subjects = store_subjects(self.root, dataset, self.topology)
        if config.subjects is not None:
            subjects = [s for s in subjects if s in config.subjects]
        for subject in subjects:
            if self._in_split(subject):
                self._index(subject)
        if not self.items:
            raise ValueError(f"no {config.split} items for {dataset} under {folder} (subjects found: {subjects}); "
                             "materialize the views assets or run `morphable views`")

    def _in_split(self, subject: str) -> bool:
        return is_heldout(self.dataset, subject, self.config) == (self.config.split == "val")

    def store(self, subject: str) -> ViewStore:
        if os.getpid() != self._pid:  # a DataLoader worker: open fresh handles once in this process
            self._stores, self._pid = {}, os.getpid()
        if subject not in self._stores:
            self._stores[subject] = ViewStore.open(store_path(self.root, self.dataset, self.topology, subject))
        return self._stores[subject]

    def _index(self, subject: str) -> None:
        st = self.store(subject)
        cfg = self.config
        if self.spec.item_layout == "scan":
            targets, inputs = st.views_of("scan", role=0), st.views_of("scan", role=1)
            inputs = inputs if len(inputs) else targets
            self.items.append(_Item(self.dataset, subject, "scan", targets, {"scan": inputs}))
            return
        upright = _upright(st.RT, cfg.upside_down_euler_deg)
        az = np.abs(st.angles[:, 0])
        inputs = {}
        for name in st.items:
            views = st.views_of(name)
            ok = views[upright[views] & (az[views] <= cfg.input_max_abs_azimuth)]
            if len(ok) and expression_index(name) not in cfg.heldout_expressions:
                inputs[name] = ok
        for name in st.items:
            held = expression_index(name) in cfg.heldout_expressions
            if held != (cfg.split == "val"):
                continue
            views = st.views_of(name)
            cand = views[upright[views] & (az[views] <= cfg.target_max_abs_azimuth)]
            choices = {k: v for k, v in inputs.items() if k != name} if cfg.shuffled_expression else \
                ({name: inputs[name]} if name in inputs else {})
            if len(cand) < N_TARGETS or not choices:
                self.skipped.append(f"{subject}/{name}: {len(cand)} target candidates, inputs from {list(choices)}")
                continue
            self.items.append(_Item(self.dataset, subject, name, cand, choices))

    def __len__(self) -> int:
        return len(self.items)

    def _images(self, st: ViewStore, indices: np.ndarray) -> np.ndarray:
        """(n, S, S, 3) float32 in [-1, 1] on a white background (stores keep the background white already)."""
        img = st.rgb_many(indices)
        size = self.config.image_size
        if img.shape[1] != size:
            import cv2

            img = np.stack([cv2.resize(x, (size, size), interpolation=cv2.INTER_AREA) for x in img])
        out = img.astype(np.float32)
        out *= 2.0 / 255.0
        out -= 1.0
        return out

    def _scaled_k(self, k: np.ndarray) -> np.ndarray:
        return scale_intrinsics(k, self.dataset, self.config.image_size)

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        return self.sample(i, int(os.environ.get("MORPHABLE_EPOCH", "0")))

    def draw(self, i: int, draw: int) -> tuple[str, np.ndarray, int]:
        """(subject, target view indices, input view index) of item `i` for `draw`."""
        item = self.items[i]
        rng = np.random.default_rng([self.seed, i, draw])
        if self.spec.item_layout == "scan":
            targets = rng.permutation(item.target_views)[:N_TARGETS]
        else:
            targets = rng.choice(item.target_views, N_TARGETS, replace=False)
        in_name = list(item.input_views)[rng.integers(len(item.input_views))]
        return item.subject, targets, int(rng.choice(item.input_views[in_name]))

    def images(self, subject: str, indices: np.ndarray) -> np.ndarray:
        """The views `indices` of `subject` as the model reads them: (n, S, S, 3) float32 in [-1, 1]."""
        return self._images(self.store(subject), np.asarray(indices))

    def sample(self, i: int, draw: int, images: bool = True) -> dict[str, np.ndarray]:
        """Item `i` with its random choices (targets, input view) fixed by `draw`: training asks for a draw per
        step, so a resumed run sees exactly the batches an uninterrupted one would. `images=False` leaves the
        images out (a run whose encodings are cached reads them from there)."""
        item = self.items[i]
        subject, targets, in_view = self.draw(i, draw)
        st = self.store(subject)
        geo = st.geometry(item.target)
        pixels = {"target_image": self._images(st, targets),
                  "input_image": self._images(st, np.array([in_view]))[0]} if images else {}
        return {
            **pixels,
            "input_elevation": np.zeros(1, np.float32), "input_azimuth": np.zeros(1, np.float32),
            "target_elevation": np.zeros(N_TARGETS, np.float32), "target_azimuth": np.zeros(N_TARGETS, np.float32),
            "input_K": self._scaled_k(st.K[in_view])[:3, :3] if self.spec.projection == "perspective"
            else self._scaled_k(st.K[in_view]), "input_RT": st.RT[in_view].astype(np.float32),
            "target_K": np.stack([self._scaled_k(st.K[v]) for v in targets]),
            "target_RT": st.RT[targets].astype(np.float32),
            "vertices": geo.vertices.astype(np.float32), "coord": geo.coord.astype(np.int32),
            "out_sh": geo.out_sh.astype(np.int32), "bounds": geo.bounds.astype(np.float32),
        }

    def describe(self, i: int) -> str:
        it = self.items[i]
        return f"{it.dataset}/{it.subject}/{it.target}"


def torch_dataset(storage_root: str | Path, dataset: str, config: SplitConfig = SplitConfig(), seed: int = 6033,
                  topology: str | None = None):
    """The same dataset as a `torch.utils.data.Dataset` (for DataLoader workers and samplers)."""
    import torch.utils.data

    class _TorchMultiView(MultiViewDataset, torch.utils.data.Dataset):
        pass

    return _TorchMultiView(storage_root, dataset, config, seed, topology)
