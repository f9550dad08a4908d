"""Training views per subject (zarr view stores), re-materialized only when the subject's tracked mesh changed."""
import dagster as dg

from assets_defs import raw, tracking
from assets_defs.automation import POLICY
from assets_defs.partitions import SUBJECT_PARTITIONS
from assets_defs.pools import CPU_POOL
from assets_defs.resources import SettingsResource
from pipelines.views import RENDER_VERSION

VIEWS_GROUP = "views"
MIN_MASK_FRACTION = 0.005


def _checks(store, dataset: str) -> list[dg.AssetCheckResult]:
    import numpy as np

    n = len(store)
    fractions = np.array([(store.mask(i) > 0).mean() for i in range(n)])
    if dataset == "thuman":
        count_ok = len(store.views_of("scan", role=0)) == 16
        count_info = {"target_views": int(len(store.views_of("scan", role=0)))}
    else:
        per_item = {name: int(len(store.views_of(name))) for name in store.items}
        count_ok = min(per_item.values()) >= 16
        count_info = {"views_per_expression": per_item}
    finite = bool(np.isfinite(store.K).all() and np.isfinite(store.RT).all())
    return [
        dg.AssetCheckResult(check_name="expected_view_count", passed=bool(count_ok), metadata=count_info),
        dg.AssetCheckResult(check_name="non_empty_masks", passed=bool(fractions.min() >= MIN_MASK_FRACTION),
                            metadata={"min_mask_fraction": float(fractions.min())}),
        dg.AssetCheckResult(check_name="finite_cameras", passed=finite),
    ]


def _views_asset(dataset: str, upstream: dg.AssetsDefinition, raw_source) -> dg.AssetsDefinition:
    key = [dataset, "views"]

    @dg.asset(key=key, deps=[upstream, raw_source], partitions_def=SUBJECT_PARTITIONS[dataset],
              code_version=RENDER_VERSION,
              group_name=VIEWS_GROUP, pool=CPU_POOL, kinds={"zarr", "numpy"}, owners=["team:morphable"],
              automation_condition=POLICY,
              description=f"256x256 training views, masks, model-frame cameras and the voxelised tracked mesh of one "
                          f"{dataset} subject, in one zarr v3 store.",
              check_specs=[dg.AssetCheckSpec(n, asset=key) for n in
                           ("expected_view_count", "non_empty_masks", "finite_cameras")])
    def views_asset(context: dg.AssetExecutionContext, settings: SettingsResource) -> dg.MaterializeResult:
        from pipelines.views import views
        from storage.thumbnails import contact_sheet, markdown_image
        from storage.views import ViewStore

        outcome = views(settings.load(), dataset, context.partition_key)
        store = ViewStore.open(outcome.path)
        picks = list(range(0, len(store), max(1, len(store) // 12)))[:12]
        sheet = markdown_image(contact_sheet([store.rgb(i) for i in picks], tile=96, columns=6), "views")
        return dg.MaterializeResult(
            data_version=dg.DataVersion(store.manifest["content_hash"]),
            metadata={"dagster/uri": str(outcome.path), "views": outcome.n_views, "items": store.items,
                      "seconds": round(outcome.seconds, 2), "seconds_per_view": round(outcome.per_view_seconds, 3),
                      "rejected_views": outcome.rejected, "track_data_version": outcome.track_data_version,
                      "render_version": RENDER_VERSION, "contact_sheet": dg.MetadataValue.md(sheet)},
            check_results=_checks(store, dataset))

    return views_asset


facescape_views = _views_asset("facescape", tracking.facescape_flame_tracks, raw.facescape_raw_subject)
thuman_views = _views_asset("thuman", tracking.thuman_smplx_tracks, raw.thuman_raw_subject)
VIEW_ASSETS = {"facescape": facescape_views, "thuman": thuman_views}
