"""Partitions: one per raw subject (discovered on disk), one per experiment (read from the experiments file), and
protocol x experiment for the evaluations. Per dataset, so every partition is a valid combination."""
from __future__ import annotations

import dagster as dg

from pipelines.protocols import PROTOCOLS

DATASETS = ("facescape", "thuman")

facescape_subjects = dg.DynamicPartitionsDefinition(name="facescape_subjects")
thuman_subjects = dg.DynamicPartitionsDefinition(name="thuman_subjects")
SUBJECT_PARTITIONS = {"facescape": facescape_subjects, "thuman": thuman_subjects}

facescape_experiments = dg.DynamicPartitionsDefinition(name="facescape_experiments")
thuman_experiments = dg.DynamicPartitionsDefinition(name="thuman_experiments")
EXPERIMENT_PARTITIONS = {"facescape": facescape_experiments, "thuman": thuman_experiments}

#: the protocols of each dataset (pipelines/protocols.py)
DATASET_PROTOCOLS = {d: sorted(name for name, p in PROTOCOLS.items() if p.dataset == d) for d in DATASETS}

#: evaluations: every protocol of a dataset with every experiment of that dataset (keys "experiment|protocol")
EVALUATION_PARTITIONS = {
    d: dg.MultiPartitionsDefinition({"experiment": EXPERIMENT_PARTITIONS[d],
                                     "protocol": dg.StaticPartitionsDefinition(DATASET_PROTOCOLS[d])})
    for d in DATASETS}

#: an evaluation partition reads the checkpoint of its experiment
BY_EXPERIMENT = dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name="experiment")
#: ... and the view stores of its protocol (assets_defs.evaluation: protocol_views)
BY_PROTOCOL = dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name="protocol")


def evaluation_key(partition_key) -> tuple[str, str]:
    """(experiment, protocol) of an evaluation partition key."""
    keys = partition_key.keys_by_dimension if hasattr(partition_key, "keys_by_dimension") else \
        dict(zip(("experiment", "protocol"), str(partition_key).split("|")))
    return keys["experiment"], keys["protocol"]
