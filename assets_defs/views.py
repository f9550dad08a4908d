"""Training views per subject and topology (zarr view stores), `<dataset>/<topology>/views`: re-materialized only
when the subject's tracked mesh of that topology changed; a topology other than the dataset's default only once an
experiment trains or evaluates on it (LineInUse)."""
import dagster as dg

from assets_defs import raw, tracking
from assets_defs.automation import POLICY, LineInUse
from assets_defs.partitions import EXPERIMENT_PARTITIONS, LINES, SUBJECT_PARTITIONS, line_key
from assets_defs.pools import CPU_POOL
from assets_defs.resources import SettingsResource
from pipelines import catalog
from pipelines.catalog import TopologySpec
from pipelines.views import RENDER_VERSION

VIEWS_GROUP = "views"
MIN_MASK_FRACTION = 0.005


def _checks(store, spec: catalog.DatasetSpec) -> list[dg.AssetCheckResult]:
    import numpy as np

    n = len(store)
    fractions = np.array([(store.mask(i) > 0).mean() for i in range(n)])
    per_item = {name: int(len(store.views_of(name, role=0))) for name in store.items}
    count_ok = bool(per_item) and min(per_item.values()) >= spec.min_target_views
    finite = bool(np.isfinite(store.K).all() and np.isfinite(store.RT).all())
    return [
        dg.AssetCheckResult(check_name="expected_view_count", passed=bool(count_ok),
                            metadata={"target_views_per_item": per_item, "minimum": spec.min_target_views}),
        dg.AssetCheckResult(check_name="non_empty_masks", passed=bool(fractions.min() >= MIN_MASK_FRACTION),
                            metadata={"min_mask_fraction": float(fractions.min())}),
        dg.AssetCheckResult(check_name="finite_cameras", passed=finite),
    ]


def _views_asset(topology: TopologySpec, upstream: dg.AssetsDefinition, raw_source) -> dg.AssetsDefinition:
    key = line_key(topology, "views")
    dataset, spec = topology.dataset, catalog.dataset(topology.dataset)
    in_use = LineInUse(topology.key, EXPERIMENT_PARTITIONS[topology.key].name,
                       topology.name == spec.default_topology)

    @dg.asset(key=key, deps=[upstream, raw_source], partitions_def=SUBJECT_PARTITIONS[dataset],
              code_version=RENDER_VERSION,
              group_name=VIEWS_GROUP, pool=CPU_POOL, kinds={"zarr", "numpy"}, owners=["team:morphable"],
              automation_condition=(POLICY & in_use).with_label("missing, code or upstream data changed; while "
                                                                "the line is used"),
              description=f"256x256 training views, masks, model-frame cameras and the voxelised {topology.name} "
                          f"mesh of one {dataset} subject, in one zarr v3 store.",
              check_specs=[dg.AssetCheckSpec(n, asset=key) for n in
                           ("expected_view_count", "non_empty_masks", "finite_cameras")])
    def views_asset(context: dg.AssetExecutionContext, settings: SettingsResource) -> dg.MaterializeResult:
        from pipelines.views import views
        from storage.thumbnails import contact_sheet, markdown_image
        from storage.views import ViewStore

        outcome = views(settings.load(), dataset, context.partition_key, topology.name)
        store = ViewStore.open(outcome.path)
        picks = list(range(0, len(store), max(1, len(store) // 12)))[:12]
        sheet = markdown_image(contact_sheet([store.rgb(i) for i in picks], tile=96, columns=6), "views")
        return dg.MaterializeResult(
            data_version=dg.DataVersion(store.manifest["content_hash"]),
            metadata={"dagster/uri": str(outcome.path), "views": outcome.n_views, "items": store.items,
                      "seconds": round(outcome.seconds, 2), "seconds_per_view": round(outcome.per_view_seconds, 3),
                      "rejected_views": outcome.rejected, "track_data_version": outcome.track_data_version,
                      "render_version": RENDER_VERSION, "contact_sheet": dg.MetadataValue.md(sheet)},
            check_results=_checks(store, spec))

    return views_asset


#: per line (`<dataset>_<topology>`)
VIEW_ASSETS = {line: _views_asset(t, tracking.TRACK_ASSETS[line], raw.RAW_SUBJECTS[t.dataset])
               for line, t in LINES.items()}
#: per dataset: its default topology's views (what the first stage trains on)
DEFAULT_VIEW_ASSETS = {d: VIEW_ASSETS[catalog.topology(d).key] for d in catalog.DATASET_NAMES}
