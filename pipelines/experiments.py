"""Experiments as data: named model configurations, read from a TOML file, that the graph partitions by.

An experiment is one row of the paper's comparison tables:

    kind = "trained"    a training configuration (every TrainConfig field in [training]) on one dataset/topology;
    kind = "published"  a released checkpoint file (or one of our checkpoint folders) to evaluate as it is, or
                        `checkpoint = "<hash>"`: a checkpoint of the store named by its content hash (an earlier
                        training of an experiment, `morphable checkpoints` lists them), evaluated beside the others;
    kind = "baseline"   a non-learned method ("copy_input": the input view copied; "mean_train": the mean training
                        image) at an image size, evaluated through the same path.

Every experiment also carries its sampler settings ([sampler]: DDIMConfig fields). The file also holds the tiny
first stage's configuration ([first_stage]: FirstStageConfig fields), which trained tiny experiments share.

    [first_stage]
    steps = 450

    [experiments.tiny-facescape]
    kind = "trained"
    dataset = "facescape"
    topology = "flame"
    training = { preset = "tiny", steps = 230, batch_size = 4, loss_views = 4 }
    sampler = { steps = 20, cfg_scale = 1.0 }

A definition's digest (`Experiment.digest`) is what the graph versions it by: change an experiment and exactly its
checkpoint and evaluations become stale. `enabled = false` keeps an entry in the file without making it a partition.
"""
from __future__ import annotations

import dataclasses
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from model.diffusion.config import TINY_PRESETS
from model.diffusion.ddim import DDIMConfig
from pipelines import catalog
from pipelines.animate import AnimationConfig
from pipelines.first_stage import FirstStageConfig
from pipelines.train import TrainConfig
from storage.errors import InvalidContentError, MissingFileError
from storage.hashing import hash_json
from storage.ids import validate_name

DEFAULT_FILE = Path(__file__).with_name("experiments.toml")
KINDS = ("trained", "published", "baseline")
BASELINE_METHODS = ("copy_input", "mean_train")
FIX = "see the documented example in morphable.example.toml (and docs/experiments.md)"


@dataclass(frozen=True)
class Experiment:
    name: str
    kind: str
    dataset: str
    topology: str
    training: TrainConfig | None = None  # kind "trained"
    file: Path | None = None  # kind "published": a released .ckpt / .pt, or a checkpoint folder
    checkpoint: str | None = None  # kind "published", instead of file: a content hash in the checkpoint store
    method: str | None = None  # kind "baseline"
    image_size: int = 64  # kind "baseline": the resolution it is evaluated at
    sampler: DDIMConfig = field(default_factory=DDIMConfig)
    description: str = ""
    ablations: tuple[str, ...] = ()  # conditioning ablations evaluated with the model (evaluation_sets.ABLATIONS)
    animations: tuple[str, ...] = ()  # driving sequences the graph animates it through (pipelines.animations)
    animation: AnimationConfig = field(default_factory=AnimationConfig)  # how those frames are sampled

    @property
    def projection(self) -> str:
        return catalog.dataset(self.dataset).projection

    @property
    def line(self) -> str:
        """`<dataset>_<topology>`: the line of assets (and partitions) it belongs to."""
        return catalog.topology(self.dataset, self.topology).key

    def as_dict(self) -> dict[str, Any]:
        doc = dataclasses.asdict(self)
        doc["file"] = str(self.file) if self.file else None
        return doc

    def digest(self) -> str:
        """Hash of the definition (not of the description): the experiment's version in the graph."""
        doc = self.as_dict()
        doc.pop("description")
        if doc["training"] is not None and doc["training"].get("topology") is None:  # (the experiment's topology:
            doc["training"].pop("topology")  # a later TrainConfig field, so earlier experiments keep their digests)
        if doc["checkpoint"] is None:  # (a later field: absent, so earlier experiments keep their digests)
            doc.pop("checkpoint")
        doc["sampler"] = self.sampler.identity()  # (its later fields likewise)
        for key in ("animations", "animation"):  # the animation assets version themselves by these; the model's
            doc.pop(key)  # checkpoint and evaluations do not depend on them
        return hash_json(doc, 16, spaced=True)

    def needs_first_stage(self) -> bool:
        """Whether producing its checkpoint reads the graph's first stage: a tiny-preset training without an init
        checkpoint or an autoencoder of its own. A published model brings its own autoencoder, a paper-preset
        training SyncDreamer's."""
        return self.kind == "trained" and self.training is not None and self.training.preset in TINY_PRESETS \
            and not self.training.init and not self.training.first_stage

    def reads_training_views(self) -> bool:
        """Whether producing its checkpoint reads the dataset's view stores (training does; an import does not)."""
        return self.kind == "trained"

    def train_config(self) -> TrainConfig:
        if self.training is None:
            raise ValueError(f"experiment {self.name!r} is of kind {self.kind!r}, not trained")
        return dataclasses.replace(self.training, dataset=self.dataset, topology=self.topology, name=self.name)


@dataclass(frozen=True)
class ExperimentSet:
    path: Path
    first_stage: FirstStageConfig
    experiments: dict[str, Experiment]
    disabled: tuple[str, ...] = ()

    def for_dataset(self, dataset: str) -> dict[str, Experiment]:
        return {k: e for k, e in self.experiments.items() if e.dataset == dataset}

    def for_line(self, line: str) -> dict[str, Experiment]:
        """The experiments of one (dataset, topology) line (`<dataset>_<topology>`, catalog.TopologySpec.key)."""
        return {k: e for k, e in self.experiments.items() if e.line == line}

    def get(self, name: str) -> Experiment:
        if name not in self.experiments:
            raise InvalidContentError(self.path, f"no experiment named {name!r} (known: {sorted(self.experiments)})",
                                      "add it to the experiments file or use one of the known names")
        return self.experiments[name]


def _fields(cls: type, table: Any, where: str, path: Path) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise InvalidContentError(path, f"{where} must be a table", FIX)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(table) - names)
    if unknown:
        raise InvalidContentError(path, f"{where}: unknown field(s) {unknown} (known: {sorted(names)})", FIX)
    return {k: tuple(v) if isinstance(v, list) else v for k, v in table.items()}


def _resolve_paths(table: dict[str, Any], keys: tuple[str, ...], path: Path) -> dict[str, Any]:
    """Relative checkpoint paths in `table` made absolute against the experiments file's folder (in place)."""
    for key in keys:
        if table.get(key) and not Path(str(table[key])).expanduser().is_absolute():
            table[key] = str((path.parent / str(table[key])).resolve())
    return table


def _experiment(name: str, doc: dict, path: Path) -> Experiment:
    where = f"[experiments.{name}]"
    allowed = {"kind", "dataset", "topology", "training", "sampler", "file", "checkpoint", "method", "image_size",
               "description", "enabled", "ablations", "animations", "animation"}
    unknown = sorted(set(doc) - allowed)
    if unknown:
        raise InvalidContentError(path, f"{where}: unknown key(s) {unknown} (known: {sorted(allowed)})", FIX)
    kind, dataset = doc.get("kind", "trained"), doc.get("dataset")
    if kind not in KINDS:
        raise InvalidContentError(path, f"{where}: kind {kind!r}; choose one of {KINDS}", FIX)
    if dataset not in catalog.DATASETS:
        raise InvalidContentError(path, f"{where}: dataset {dataset!r}; choose one of {catalog.DATASET_NAMES}", FIX)
    spec = catalog.dataset(dataset)
    topology = doc.get("topology", spec.default_topology)
    if topology not in spec.topology_names(graph_only=True):
        raise InvalidContentError(path, f"{where}: topology {topology!r} is not one of {dataset}'s "
                                        f"{spec.topology_names(graph_only=True)} (pipelines/catalog.py)", FIX)
    try:
        sampler = DDIMConfig(**_fields(DDIMConfig, doc.get("sampler", {}), f"{where} sampler", path))
        kw: dict[str, Any] = {}
        if kind == "trained":
            table = _fields(TrainConfig, doc.get("training", {}), f"{where} training", path)
            if {"dataset", "topology", "name"} & set(table):
                raise InvalidContentError(path, f"{where} training: dataset, topology and name come from the "
                                                "experiment", FIX)
            _resolve_paths(table, ("init", "first_stage"), path)
            kw["training"] = TrainConfig(**table)
        elif kind == "published":
            if bool(doc.get("file")) == bool(doc.get("checkpoint")):
                raise InvalidContentError(path, f"{where}: a published experiment needs file = \"...\" or "
                                                "checkpoint = \"<hash>\" (one of them)", FIX)
            if doc.get("checkpoint"):
                digest = str(doc["checkpoint"])
                if not re.fullmatch(r"[0-9a-f]{8,16}", digest):
                    raise InvalidContentError(path, f"{where}: checkpoint {digest!r} is not a content hash (8 to 16 "
                                                    "lower-case hex digits, as `morphable checkpoints` lists them)",
                                              FIX)
                kw["checkpoint"] = digest
            else:
                file = Path(str(doc["file"])).expanduser()
                kw["file"] = file if file.is_absolute() else (path.parent / file).resolve()
        else:
            if doc.get("method") not in BASELINE_METHODS:
                raise InvalidContentError(path, f"{where}: method {doc.get('method')!r}; choose one of "
                                                f"{BASELINE_METHODS}", FIX)
            kw["method"], kw["image_size"] = doc["method"], int(doc.get("image_size", 64))
    except TypeError as exc:  # wrong value types caught by the dataclasses
        raise InvalidContentError(path, f"{where}: {exc}", FIX) from None
    ablations = tuple(doc.get("ablations", ()))
    if ablations:
        from pipelines.evaluation_sets import ABLATIONS

        bad = [a for a in ablations if a not in ABLATIONS[1:]]
        if kind == "baseline" or bad:
            raise InvalidContentError(path, f"{where}: ablations {list(ablations)}: a trained or published "
                                            f"experiment's, each one of {ABLATIONS[1:]}", FIX)
        kw["ablations"] = ablations
    kw.update(_animations(doc, where, path, kind))
    return Experiment(name=name, kind=kind, dataset=dataset, topology=topology, sampler=sampler,
                      description=str(doc.get("description", "")), **kw)


def _animations(doc: dict, where: str, path: Path, kind: str) -> dict[str, Any]:
    """`animations = ["<sequence>", ...]` (pipelines.animations.ANIMATIONS of the experiment's line) and
    `animation = { mode = ..., strength = ... }` (AnimationConfig fields)."""
    from pipelines.animations import ANIMATIONS

    kw: dict[str, Any] = {}
    names = doc.get("animations", [])
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise InvalidContentError(path, f"{where}: animations must be a list of sequence names", FIX)
    bad = [n for n in names if n not in ANIMATIONS or (ANIMATIONS[n].dataset, ANIMATIONS[n].topology) !=
           (doc.get("dataset"), doc.get("topology", catalog.dataset(doc["dataset"]).default_topology))]
    if names and (kind == "baseline" or bad):
        raise InvalidContentError(path, f"{where}: animations {names}: a trained or published experiment's, each "
                                        f"a sequence of its line ({sorted(ANIMATIONS)}, pipelines/animations.py)", FIX)
    if names:
        kw["animations"] = tuple(names)
    if "animation" in doc:
        try:
            kw["animation"] = AnimationConfig(**_fields(AnimationConfig, doc["animation"], f"{where} animation", path))
        except (TypeError, ValueError) as exc:
            raise InvalidContentError(path, f"{where} animation: {exc}", FIX) from None
    return kw


def load_experiments(path: str | Path | None = None) -> ExperimentSet:
    """The experiments file (default: the embedded one, which holds the demo's experiments)."""
    path = Path(path) if path else DEFAULT_FILE
    if not path.is_file():
        raise MissingFileError(path, "experiments file not found", "set experiments_file to an existing TOML file")
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InvalidContentError(path, f"not valid TOML ({exc})", FIX) from None
    unknown = sorted(set(doc) - {"first_stage", "experiments"})
    if unknown:
        raise InvalidContentError(path, f"unknown top-level table(s) {unknown}", FIX)
    fs_table = _fields(FirstStageConfig, doc.get("first_stage", {}), "[first_stage]", path)
    first_stage = FirstStageConfig(**_resolve_paths(fs_table, ("init",), path))
    experiments, disabled = {}, []
    for name, entry in doc.get("experiments", {}).items():
        validate_name(name, "experiment name")
        if not isinstance(entry, dict):
            raise InvalidContentError(path, f"[experiments.{name}] must be a table", FIX)
        if entry.get("enabled", True) is False:
            disabled.append(name)
            continue
        experiments[name] = _experiment(name, entry, path)
    if not experiments:
        raise InvalidContentError(path, "no (enabled) experiments", FIX)
    return ExperimentSet(path, first_stage, experiments, tuple(disabled))
