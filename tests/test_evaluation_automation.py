"""Evaluation automation at simulated ticks (Dagster's automation-condition test helper): a new checkpoint data
version regenerates its evaluation sets once; the weekly cron tick regenerates them once, not again at the next
evaluation of the same week; nothing fires without a change or a tick."""
import datetime as dt

import dagster as dg


def _report(instance, key: list[str], version: str) -> None:
    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key,
                                                                tags={"dagster/data_version": version}))


def test_new_checkpoint_and_weekly_tick_without_duplicates(embedded):
    from assets_defs.definitions import defs
    from assets_defs.evaluation import EVAL_CRON, generated_key
    from assets_defs.instance import get_instance

    assert EVAL_CRON == "0 4 * * 1"
    instance = get_instance()
    key = generated_key("facescape_novel_view")
    selection = dg.AssetSelection.assets(key)
    sunday = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.timezone.utc)
    _report(instance, ["facescape", "checkpoint"], "ckpt-a")
    _report(instance, key.path, "set-a")

    def tick(when, cursor=None):
        return dg.evaluate_automation_conditions(defs=defs, instance=instance, asset_selection=selection,
                                                 evaluation_time=when, cursor=cursor)

    first = tick(sunday)
    assert first.total_requested == 0  # up to date, no tick passed
    later = tick(sunday + dt.timedelta(hours=6), first.cursor)
    assert later.total_requested == 0
    _report(instance, ["facescape", "checkpoint"], "ckpt-b")  # a new checkpoint
    changed = tick(sunday + dt.timedelta(hours=7), later.cursor)
    assert changed.get_num_requested(key) == 1
    _report(instance, key.path, "set-b")  # the requested run happened
    settled = tick(sunday + dt.timedelta(hours=8), changed.cursor)
    assert settled.total_requested == 0
    monday = dt.datetime(2026, 11, 23, 4, 5, tzinfo=dt.timezone.utc)  # just after the weekly tick
    weekly = tick(monday, settled.cursor)
    assert weekly.get_num_requested(key) == 1
    again = tick(monday + dt.timedelta(minutes=30), weekly.cursor)
    assert again.total_requested == 0  # one run per tick, not one per evaluation
