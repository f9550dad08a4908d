"""Declarative automation: views re-render only for subjects whose tracked-mesh data version changed."""
import dagster as dg


def _report_track(instance, uid: str, data_version: str) -> None:
    instance.report_runless_asset_event(dg.AssetMaterialization(
        asset_key=["thuman", "smplx_tracks"], partition=uid, tags={"dagster/data_version": data_version}))


def test_views_follow_track_data_versions(embedded):
    from assets_defs.definitions import SUBJECT_JOBS, defs
    from assets_defs.instance import get_instance
    from assets_defs.partitions import thuman_subjects
    from assets_defs.views import VIEW_ASSETS

    instance = get_instance()
    instance.add_dynamic_partitions(thuman_subjects.name, ["0003", "0526"])
    job = defs.resolve_job_def(SUBJECT_JOBS["thuman"].name)
    versions = {}
    for uid in ("0003", "0526"):
        res = job.execute_in_process(instance=instance, partition_key=uid)
        assert res.success
        mats = [e.event_specific_data.materialization for e in res.get_asset_materialization_events()]
        versions[uid] = next(m.tags["dagster/data_version"] for m in mats
                             if m.asset_key == dg.AssetKey(["thuman", "smplx_tracks"]))
    selection = dg.AssetSelection.assets(VIEW_ASSETS["thuman"])
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance, asset_selection=selection)
    assert result.total_requested == 0  # everything up to date
    # re-tracking with an unchanged tracker: same data version -> nothing re-renders
    for uid in ("0003", "0526"):
        _report_track(instance, uid, versions[uid])
    same = dg.evaluate_automation_conditions(defs=defs, instance=instance, asset_selection=selection,
                                             cursor=result.cursor)
    # a better tracker changes one subject's parameters -> only that subject's views are requested
    _report_track(instance, "0526", "a-new-parameter-hash")
    changed = dg.evaluate_automation_conditions(defs=defs, instance=instance, asset_selection=selection,
                                                cursor=same.cursor)
    key = dg.AssetKey(["thuman", "views"])
    assert same.get_num_requested(key) == 0
    assert changed.get_requested_partitions(key) == {"0526"}
