"""Experiments in the graph: one dynamic partition per experiment of the experiments file, in its line's partition set
(`<dataset>_<topology>_experiments`), kept in sync by the discovery sensor, and an observable source whose data version is the experiment's definition (plus, for a published
checkpoint, the file's sha256), so that changing one experiment makes exactly its partitions stale."""
from __future__ import annotations

from dataclasses import dataclass, field

import dagster as dg

from assets_defs.partitions import EXPERIMENT_PARTITIONS, LINES, line_key
from assets_defs.resources import SettingsResource

EXPERIMENTS_GROUP = "experiments"


def experiment_version(settings, experiment) -> str:
    """The data version of an experiment: its definition digest, and the published file's content."""
    from pathlib import Path

    from storage.hashing import cached_sha256, store_hash_cache

    version = experiment.digest()
    if experiment.kind == "published" and experiment.file is not None:
        path = Path(experiment.file)
        if path.is_file():
            version += "-" + cached_sha256(path, store_hash_cache(settings.storage_root))[:16]
        elif path.is_dir() and (path / "manifest.json").is_file():
            from storage.checkpoints import checkpoint_hash

            version += "-" + checkpoint_hash(path)
        else:
            version += "-missing"
    init = experiment.training.init if experiment.kind == "trained" and experiment.training else None
    if init and (Path(init) / "manifest.json").is_file():  # starting weights that change retrain the experiment
        from storage.checkpoints import checkpoint_hash

        version += "-init-" + checkpoint_hash(init)
    return version


def _experiment_source(line: str):
    topology = LINES[line]

    @dg.observable_source_asset(
        key=line_key(topology, "experiment"), partitions_def=EXPERIMENT_PARTITIONS[line], group_name=EXPERIMENTS_GROUP,
        description=f"The {topology.dataset} experiments on {topology.name} meshes of the experiments file (settings "
                    "`experiments_file`): data version = the definition's digest (and a published checkpoint's "
                    "sha256).")
    def experiment(context, settings: SettingsResource) -> dg.DataVersionsByPartition:
        from pipelines.experiments import load_experiments

        s = settings.load()
        experiments = load_experiments(s.experiments_file).for_line(line)
        keys = context.instance.get_dynamic_partitions(EXPERIMENT_PARTITIONS[line].name)
        return dg.DataVersionsByPartition({k: experiment_version(s, experiments[k]) for k in keys
                                           if k in experiments})

    return experiment


EXPERIMENT_SOURCES = {line: _experiment_source(line) for line in LINES}


@dataclass
class ExperimentSync:
    requests: list = field(default_factory=list)  # add / delete dynamic-partition requests
    added: dict[str, list[str]] = field(default_factory=dict)  # per line
    removed: dict[str, list[str]] = field(default_factory=dict)


def experiment_sync(instance: dg.DagsterInstance, settings) -> ExperimentSync:
    """Partitions = the enabled experiments of the file. A removed experiment loses its partition (so nothing is
    scheduled for it); its checkpoints, evaluation sets and metric rows stay where they are, and it is reported."""
    from pipelines.experiments import load_experiments

    exps = load_experiments(settings.experiments_file)
    out = ExperimentSync()
    for line, pdef in EXPERIMENT_PARTITIONS.items():
        wanted = set(exps.for_line(line))
        known = set(instance.get_dynamic_partitions(pdef.name))
        if wanted - known:
            out.added[line] = sorted(wanted - known)
            out.requests.append(pdef.build_add_request(out.added[line]))
        if known - wanted:
            out.removed[line] = sorted(known - wanted)
            out.requests.append(pdef.build_delete_request(out.removed[line]))
    return out


def apply_partition_requests(instance: dg.DagsterInstance, requests) -> None:
    """What the sensor's SensorResult does, for the in-process policy loop."""
    for req in requests:
        if isinstance(req, dg.AddDynamicPartitionsRequest):
            instance.add_dynamic_partitions(req.partitions_def_name, list(req.partition_keys))
        else:
            for key in req.partition_keys:
                instance.delete_dynamic_partition(req.partitions_def_name, key)
