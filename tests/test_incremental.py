"""Incremental reprocessing through a real instance: a new tracker version that changes one subject's fit
re-renders only that subject's views (automation on data-version change), and the checkpoint's
`training_inputs_current` check reports the changed training input while retraining stays explicit."""
import dagster as dg
import pytest

from model import frames


def _materializations(instance, key: list[str], after: int = 0) -> list[tuple[str, int]]:
    records = instance.fetch_materializations(dg.AssetKey(key), limit=1000).records
    return sorted((r.partition_key, r.storage_id) for r in records if r.storage_id > after)


@pytest.mark.slow
def test_new_tracker_rerenders_only_the_changed_subject(embedded, monkeypatch):
    import pipelines.track as track_mod
    from assets_defs.definitions import SUBJECT_JOBS, defs
    from assets_defs.instance import get_instance
    from assets_defs.partitions import thuman_subjects
    from assets_defs.views import VIEW_ASSETS

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    instance = get_instance()
    instance.add_dynamic_partitions(thuman_subjects.name, ["0003", "0526"])
    subjects = defs.resolve_job_def(SUBJECT_JOBS["thuman"].name)
    for uid in ("0003", "0526"):
        assert subjects.execute_in_process(instance=instance, partition_key=uid).success
    model = defs.resolve_job_def("model_job")
    trained = model.execute_in_process(
        instance=instance, asset_selection=[dg.AssetKey(["model", "first_stage"]), dg.AssetKey(["thuman", "checkpoint"])],
        run_config={"ops": {"model__first_stage": {"config": {"steps": 3}},
                            "thuman__checkpoint": {"config": {"steps": 1, "batch_size": 1, "preview_steps": 0}}}})
    assert trained.success
    check = dg.AssetCheckKey(dg.AssetKey(["thuman", "checkpoint"]), "training_inputs_current")
    assert [e.passed for e in trained.get_asset_check_evaluations() if e.asset_check_key == check] == [True]
    before_tracks = _track_versions(instance)
    selection = dg.AssetSelection.assets(VIEW_ASSETS["thuman"])
    settled = dg.evaluate_automation_conditions(defs=defs, instance=instance, asset_selection=selection)
    assert settled.total_requested == 0  # everything is up to date
    last_id = max(sid for _, sid in _materializations(instance, ["thuman", "views"]))

    # tracker v2: a corrected normalisation of the pre-0526 scans changes exactly one subject's parameters
    original = frames.thuman_normalization

    def v2_normalization(points, uid, fit_scale):
        s, centre = original(points, uid, fit_scale)
        return (s * 1.02, centre) if int(uid) < 526 else (s, centre)

    monkeypatch.setattr(track_mod.frames, "thuman_normalization", v2_normalization)
    monkeypatch.setattr(track_mod, "SMPLX_TRACKER_VERSION", "smplx-release-2")
    monkeypatch.setitem(track_mod.TRACKERS["thuman"], "smplx", "smplx-release-2")
    track_job = dg.define_asset_job("retrack", selection=[dg.AssetKey(["thuman", "smplx_tracks"])],
                                    partitions_def=thuman_subjects)
    retrack_defs = dg.Definitions.merge(defs, dg.Definitions(jobs=[track_job]))
    for uid in ("0003", "0526"):
        assert retrack_defs.resolve_job_def("retrack").execute_in_process(instance=instance, partition_key=uid).success
    after_tracks = _track_versions(instance)
    assert after_tracks["0526"] == before_tracks["0526"] and after_tracks["0003"] != before_tracks["0003"]

    # automation: only 0003's views are requested; run what it asks for, as the daemon would
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance, asset_selection=selection,
                                               cursor=settled.cursor)
    requested = result.get_requested_partitions(dg.AssetKey(["thuman", "views"]))
    assert requested == {"0003"}
    views_job = dg.define_asset_job("rerender", selection=[dg.AssetKey(["thuman", "views"])],
                                    partitions_def=thuman_subjects)
    rerender = dg.Definitions.merge(defs, dg.Definitions(jobs=[views_job])).resolve_job_def("rerender")
    for uid in sorted(requested):
        assert rerender.execute_in_process(instance=instance, partition_key=uid).success
    assert [p for p, _ in _materializations(instance, ["thuman", "views"], after=last_id)] == ["0003"]

    # the checkpoint says its training input changed (0003 is a training uid); nothing retrains by itself
    check_job = dg.define_asset_job("inputs_check", selection=dg.AssetSelection.checks(check))
    checked = dg.Definitions.merge(defs, dg.Definitions(jobs=[check_job])).resolve_job_def(
        "inputs_check").execute_in_process(instance=instance)
    evaluation = checked.get_asset_check_evaluations()[0]
    assert not evaluation.passed and set(evaluation.metadata["changed_since_training"].value) == {"0003"}
    assert not dg.evaluate_automation_conditions(defs=defs, instance=instance,
                                                 asset_selection=dg.AssetSelection.assets(
                                                     dg.AssetKey(["thuman", "checkpoint"]))).total_requested


def _track_versions(instance) -> dict[str, str]:
    out = {}
    for uid in ("0003", "0526"):
        rec = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(["thuman", "smplx_tracks"]), asset_partitions=[uid]),
            limit=1).records[0]
        out[uid] = rec.asset_materialization.tags["dagster/data_version"]
    return out
