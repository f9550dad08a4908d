"""Partitions: one per raw subject (discovered on disk, per dataset), one per experiment (read from the experiments
file, per line: a dataset x topology of the catalog), and protocol x experiment for the evaluations. So every
partition is a valid combination, and a line's assets read only that line's data."""
from __future__ import annotations

import dagster as dg

from pipelines import catalog
from pipelines.catalog import TopologySpec

DATASETS = catalog.DATASET_NAMES
#: the lines of the graph: {"<dataset>_<topology>": its TopologySpec}, one tracks -> views -> checkpoint ->
#: evaluation chain each
LINES: dict[str, TopologySpec] = {t.key: t for t in catalog.graph_topologies()}

SUBJECT_PARTITIONS = {d: dg.DynamicPartitionsDefinition(name=f"{d}_subjects") for d in DATASETS}
EXPERIMENT_PARTITIONS = {line: dg.DynamicPartitionsDefinition(name=f"{line}_experiments") for line in LINES}

#: the protocols of each dataset (pipelines/protocols.py)
DATASET_PROTOCOLS = {d: list(catalog.dataset(d).protocols) for d in DATASETS}

#: evaluations: every protocol of a line's dataset with every experiment of the line (keys "experiment|protocol")
EVALUATION_PARTITIONS = {
    line: dg.MultiPartitionsDefinition({"experiment": EXPERIMENT_PARTITIONS[line],
                                        "protocol": dg.StaticPartitionsDefinition(DATASET_PROTOCOLS[t.dataset])})
    for line, t in LINES.items()}

#: an evaluation partition reads the checkpoint of its experiment
BY_EXPERIMENT = dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name="experiment")
#: ... and the view stores of its protocol (assets_defs.evaluation: protocol_views)
BY_PROTOCOL = dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name="protocol")


def line_key(topology: TopologySpec, *name: str) -> dg.AssetKey:
    """`<dataset>/<topology>/<name>`: the key of one of a line's assets."""
    return dg.AssetKey([topology.dataset, topology.name, *name])


def evaluation_key(partition_key) -> tuple[str, str]:
    """(experiment, protocol) of an evaluation partition key."""
    keys = partition_key.keys_by_dimension if hasattr(partition_key, "keys_by_dimension") else \
        dict(zip(("experiment", "protocol"), str(partition_key).split("|")))
    return keys["experiment"], keys["protocol"]
