"""What producing an experiment's model runs, decided from its definition (pipelines/experiments.py) and the
settings: a training (the worker's `train` task, with the released init for the paper preset and the graph's first
stage where the experiment trains on it), the import of a published checkpoint (`import`), or nothing (a baseline:
its record names its method). The checkpoint asset runs the step and records the result."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable

from pipelines.experiments import Experiment
from pipelines.metadata import Metadata
from pipelines.records import CheckpointRecord, EvalSetRecord, ProtocolViewsRecord


@dataclass(frozen=True)
class CheckpointStep:
    task: str | None  # the worker task ("train" | "import"); None: nothing to run (a baseline)
    config: dict[str, Any] = field(default_factory=dict)
    gpus: int = 1
    digest: str = ""  # a baseline's version (a run's is its weights' hash)
    metadata: Metadata = field(default_factory=dict)


def checkpoint_step(settings, experiment: Experiment, first_stage_folder: Callable[[], str], resume: bool = False,
                    gpus: int = 1) -> CheckpointStep:
    """The step producing `experiment`'s model. `first_stage_folder` is asked only by a training that reads the
    graph's first stage (Experiment.needs_first_stage)."""
    exp = experiment
    if exp.kind == "baseline":
        return CheckpointStep(None, digest=f"baseline-{exp.method}{exp.image_size}",
                              metadata={"kind": "baseline", "method": exp.method, "image_size": exp.image_size})
    if exp.kind == "published":
        from storage.checkpoints import find_checkpoint

        file = exp.file if exp.file is not None else find_checkpoint(settings.storage_root, exp.checkpoint)
        return CheckpointStep("import", {"file": str(file), "projection": exp.projection, "topology": exp.topology,
                                         "name": exp.name})
    cfg = exp.train_config()
    if cfg.preset == "paper" and not cfg.init and settings.syncdreamer_checkpoint:
        cfg = dataclasses.replace(cfg, init=str(settings.syncdreamer_checkpoint))
    if exp.needs_first_stage():
        cfg = dataclasses.replace(cfg, first_stage=first_stage_folder())
    return CheckpointStep("train", {**dataclasses.asdict(cfg), "resume": resume}, gpus=gpus)


def checkpoint_record(experiment: Experiment, folder: str | None, digest: str) -> CheckpointRecord:
    return CheckpointRecord(experiment=experiment.name, kind=experiment.kind, dataset=experiment.dataset,
                            topology=experiment.topology, folder=folder, checkpoint_hash=digest,
                            method=experiment.method, image_size=experiment.image_size)


@dataclass(frozen=True)
class EvalSetStep:
    """What generating one (experiment, protocol) evaluation set runs: the worker's `eval_set` task for a model,
    the same stage in process for a baseline (no network)."""

    config: dict[str, Any]
    in_process: bool


def eval_set_step(settings, experiment: Experiment, protocol: str, checkpoint: CheckpointRecord,
                  views: ProtocolViewsRecord) -> EvalSetStep:
    """The step, after checking that the protocol's view stores are still the ones its lineage recorded (a store
    re-rendered since would make the set read other data than its lineage says)."""
    from pipelines.protocols import ablation_protocol, changed_protocol_inputs

    changed = changed_protocol_inputs(protocol, settings.storage_root, views.stores, views.topology)
    if changed:
        raise StaleInputsError(f"the {views.dataset}/{views.topology} view stores of {', '.join(changed)} changed "
                               f"since the protocol_views partition [{protocol}] recorded them: materialize that "
                               "partition again (the automation does), then this set", changed)
    if checkpoint.kind == "baseline":
        return EvalSetStep({"protocol": protocol, "method": checkpoint.method, "image_size": checkpoint.image_size,
                            "topology": checkpoint.topology}, in_process=True)
    return EvalSetStep({"protocol": protocol, "checkpoint": checkpoint.folder, "method": "model",
                        "topology": checkpoint.topology, "sampler": dataclasses.asdict(experiment.sampler),
                        "ablations": list(experiment.ablations) if ablation_protocol(protocol) else []},
                       in_process=False)


class StaleInputsError(RuntimeError):
    """The view stores an evaluation would read differ from those its lineage recorded."""

    def __init__(self, message: str, subjects: list[str]) -> None:
        super().__init__(message)
        self.subjects = subjects


def eval_set_record(experiment: str, protocol: str, checkpoint: CheckpointRecord, views: ProtocolViewsRecord,
                    eval_set: str, ablation_sets: dict[str, str] | None) -> EvalSetRecord:
    return EvalSetRecord(experiment=experiment, protocol=protocol, kind=checkpoint.kind, eval_set=eval_set,
                         checkpoint_hash=checkpoint.checkpoint_hash, protocol_views=views.digest,
                         ablation_sets=dict(ablation_sets or {}))
