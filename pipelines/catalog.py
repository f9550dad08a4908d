"""The catalog: every dataset the pipeline reads and every topology (3DMM) tracked on it, in one place.

Everything else reads it: the graph builds one line of assets (tracks -> views -> checkpoint -> evaluation) per
dataset x topology from it, the CLI's choices and the experiments file's validation come from it, and a stage that
behaves differently per dataset asks the dataset's spec rather than its name. A dataset is one `DatasetSpec` here
plus its reader (storage/) and its stage functions (pipelines/track.py, pipelines/views.py); a topology is one
`TopologySpec` in its dataset's entry plus its track function. docs/architecture.md shows a worked example.

The stage functions are named by import path ("module:function") and resolved when called, so this module imports
nothing heavy and every layer may read it.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable


def _resolve(path: str) -> Callable:
    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class TopologySpec:
    """One tracked mesh topology of a dataset: its tracker, the tracker's version (the tracks' code version) and
    the fit-quality bar of the `fit_quality` check."""

    name: str
    dataset: str
    tracker_version: str
    track_function: str  # "module:function", called as f(settings, subject, **track_kwargs) -> TrackOutcome
    description: str
    quality_metric: str  # the per-item error (mm) that `fit_quality` bounds
    quality_bar_mm: float
    track_kwargs: dict[str, Any] = field(default_factory=dict)
    in_graph: bool = True  # False: a tracker variant run from the CLI only (no assets, no experiments)

    @property
    def key(self) -> str:
        """`<dataset>_<topology>`: the name of its experiment partitions."""
        return f"{self.dataset}_{self.name}"

    def track(self, settings, subject: str):
        return _resolve(self.track_function)(settings, subject, **self.track_kwargs)


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset: how it is read, projected, rendered, split, paired and judged."""

    name: str
    title: str
    projection: str  # "perspective" (pixel intrinsics, which follow a resize) | "orthographic" (NDC matrices)
    topologies: tuple[TopologySpec, ...]
    default_topology: str  # tracked and rendered always: the first stage reads its views
    reader: str  # "module:function" (settings) -> the dataset reader (subjects(), file_list(), ...)
    details: str  # "module:function" (reader, subject, decode_images) -> the ingest report's details
    render_views: str  # "module:function" (settings, subject, topology) -> ViewsOutcome
    heldout: Callable[[str, Any], bool]  # (subject, SplitConfig) -> held out?
    #: "expressions": items are a subject's expressions, an input from another expression; "scan": one item per
    #: subject whose input-only renders (view role 1) are the inputs
    item_layout: str
    min_target_views: int  # per item, for the views asset's `expected_view_count` check
    #: held-out reconstruction PSNR (dB) the tiny first stage must reach on its views. THuman's 64² body renders
    #: (limbs 2-3 px wide, printed clothing) lose more to the 8x downsampling than faces: at the default 600 steps on
    #: the demo stand-in, measured under five CPU kernel / thread settings, THuman 23.53-23.67 dB and FaceScape
    #: 26.21-26.33 dB (tests/pipelines/test_first_stage.py); an untrained autoencoder scores 6.1 / 5.2 dB, so 21 dB still
    #: fails a broken one.
    first_stage_bar_db: float
    face_metrics: bool  # PCK and Re-ID are scored (face landmarks / identity)
    mesh_silhouettes: bool  # evaluation scores the generated silhouettes against the conditioning mesh's
    #: PCK on body keypoints: SMPL-X fitted to the generated silhouettes, its joints against the target's
    #: (model.metrics.body_keypoints; the sets then hold the target's and the condition's vertices)
    body_keypoints: bool = False

    def topology(self, name: str | None = None) -> TopologySpec:
        name = name or self.default_topology
        for t in self.topologies:
            if t.name == name:
                return t
        raise ValueError(f"{self.name} has no topology {name!r}; choose one of {self.topology_names()}")

    def topology_names(self, graph_only: bool = False) -> tuple[str, ...]:
        return tuple(t.name for t in self.topologies if t.in_graph or not graph_only)

    def graph_topologies(self) -> tuple[TopologySpec, ...]:
        return tuple(t for t in self.topologies if t.in_graph)

    def open(self, settings):
        return _resolve(self.reader)(settings)

    def subject_details(self, reader, subject: str, decode_images: bool = False) -> dict:
        return _resolve(self.details)(reader, subject, decode_images)

    def views(self, settings, subject: str, topology: str | None = None):
        return _resolve(self.render_views)(settings, subject, self.topology(topology))

    @property
    def protocols(self) -> tuple[str, ...]:
        from pipelines.protocols import PROTOCOLS

        return tuple(sorted(n for n, p in PROTOCOLS.items() if p.dataset == self.name))


#: FaceScape's test subjects (the paper's split) and its held-out expression (jaw_right)
FACESCAPE_TEST_SUBJECTS = tuple(["122", "212"] + [str(i) for i in range(326, 360)])
FACESCAPE_HELDOUT_EXPRESSIONS = (6,)
#: THuman 2.1's first validation uid
THUMAN_FIRST_VAL_UID = 2201

DATASETS: dict[str, DatasetSpec] = {d.name: d for d in (
    DatasetSpec(
        name="facescape", title="FaceScape", projection="perspective",
        topologies=(
            TopologySpec("flame", "facescape", "flame-fit-1", "pipelines.track:track_facescape_flame",
                         "FLAME fitted to the registered TU meshes (one identity, per-expression the rest)",
                         quality_metric="p95_mm", quality_bar_mm=5.0),
            TopologySpec("bilinear", "facescape", "bilinear-tu-2", "pipelines.track:track_facescape_bilinear",
                         "the registered TU meshes (FaceScape's bilinear-model topology), in the model frame",
                         quality_metric="p95_mm", quality_bar_mm=5.0)),
        default_topology="flame",
        reader="pipelines.ingest:open_facescape", details="pipelines.ingest:facescape_details",
        render_views="pipelines.views:facescape_views",
        heldout=lambda subject, split: subject in split.facescape_test_subjects,
        item_layout="expressions", min_target_views=16, first_stage_bar_db=25.0, face_metrics=True,
        mesh_silhouettes=True),
    DatasetSpec(
        name="thuman", title="THuman 2.1", projection="orthographic",
        topologies=(
            TopologySpec("smplx", "thuman", "smplx-release-1", "pipelines.track:track_thuman",
                         "the released SMPL-X fit, posed and normalised like the release's renders",
                         quality_metric="scan_to_mesh_p95_mm", quality_bar_mm=40.0),
            TopologySpec("smplx_refined", "thuman", "smplx-rigid-refined-1", "pipelines.track:track_thuman",
                         "the released SMPL-X fit with a rigid ICP onto the scan (for misaligned fits)",
                         quality_metric="scan_to_mesh_p95_mm", quality_bar_mm=40.0,
                         track_kwargs={"refine": True}, in_graph=False)),
        default_topology="smplx",
        reader="pipelines.ingest:open_thuman", details="pipelines.ingest:thuman_details",
        render_views="pipelines.views:thuman_views",
        heldout=lambda subject, split: int(subject) >= split.thuman_first_val_uid,
        item_layout="scan", min_target_views=16, first_stage_bar_db=21.0, face_metrics=False,
        mesh_silhouettes=True, body_keypoints=True),
)}
#: the datasets' names, in catalog order (CLI choices, partitions, first-stage datasets)
DATASET_NAMES: tuple[str, ...] = tuple(DATASETS)


def dataset(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {DATASET_NAMES}")
    return DATASETS[name]


def topology(dataset_name: str, name: str | None = None) -> TopologySpec:
    """The topology `name` of a dataset (None: its default)."""
    return dataset(dataset_name).topology(name)


def graph_topologies() -> tuple[TopologySpec, ...]:
    """Every (dataset, topology) the graph has a line of assets for."""
    return tuple(t for d in DATASETS.values() for t in d.graph_topologies())


def topology_names(graph_only: bool = False) -> tuple[str, ...]:
    """Every topology name of every dataset (CLI choices)."""
    return tuple(dict.fromkeys(n for d in DATASETS.values() for n in d.topology_names(graph_only)))


def dataset_of_topology(name: str) -> str:
    """The dataset a topology belongs to (a released checkpoint names its 3DMM, not its dataset)."""
    owners = [d.name for d in DATASETS.values() if name in d.topology_names()]
    if len(owners) != 1:
        raise ValueError(f"topology {name!r} belongs to {owners or 'no dataset'}; choose one of {topology_names()}")
    return owners[0]


def dataset_of_projection(projection: str) -> str:
    """The dataset whose cameras are `projection` (a released checkpoint without a topology)."""
    owners = [d.name for d in DATASETS.values() if d.projection == projection]
    if not owners:
        raise ValueError(f"no dataset uses {projection!r} cameras")
    return owners[0]
