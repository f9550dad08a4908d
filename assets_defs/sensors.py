"""Subject discovery: adds a dynamic partition for every new raw subject folder."""

import os

import dagster as dg

from assets_defs.partitions import SUBJECT_PARTITIONS
from assets_defs.resources import SettingsResource


def new_subject_requests(instance: dg.DagsterInstance, settings) -> list[dg.AddDynamicPartitionsRequest]:
    """One add-request per dataset holding the subjects on disk that are not yet partitions."""
    from pipelines.ingest import discover_subjects
    from storage.errors import DataError

    requests = []
    for dataset, pdef in SUBJECT_PARTITIONS.items():
        try:
            on_disk = discover_subjects(settings, dataset)
        except DataError:
            continue  # dataset root not there (yet); nothing to add
        known = set(instance.get_dynamic_partitions(pdef.name))
        new = [s for s in on_disk if s not in known]
        if new:
            requests.append(pdef.build_add_request(new))
    return requests


@dg.sensor(name="raw_subject_discovery", minimum_interval_seconds=60,
           default_status=dg.DefaultSensorStatus.RUNNING if os.environ.get("MORPHABLE_SENSORS") == "on"
           else dg.DefaultSensorStatus.STOPPED,
           description="Adds new FaceScape / THuman subject folders as dynamic partitions.")
def raw_subject_discovery(context: dg.SensorEvaluationContext, settings: SettingsResource) -> dg.SensorResult:
    requests = new_subject_requests(context.instance, settings.load())
    added = sum(len(r.partition_keys) for r in requests)
    return dg.SensorResult(dynamic_partitions_requests=requests,
                           skip_reason=None if added else dg.SkipReason("no new subjects"))
