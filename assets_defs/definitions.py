"""The code location: `dagster dev -m assets_defs.definitions` (or `morphable ui`)."""
import dagster as dg

from assets_defs import raw
from assets_defs.tracking import TRACK_ASSETS
from assets_defs.resources import SettingsResource
from assets_defs.sensors import raw_subject_discovery

MATERIALIZABLE = [raw.synthetic_standin, raw.body_models, raw.facescape_raw_inventory, raw.thuman_raw_inventory]
SOURCES = [raw.facescape_raw_subject, raw.thuman_raw_subject]

#: The main job: every materializable asset of the graph (the README's demo command runs it).
main_job = dg.define_asset_job("main_job", selection=dg.AssetSelection.assets(*MATERIALIZABLE),
                               description="Every asset of the graph on the configured data (embedded default: "
                                           "the synthetic stand-in).")
#: Tracked meshes, one job per dataset (partitioned by subject).
TRACK_JOBS = {d: dg.define_asset_job(f"track_{d}", selection=dg.AssetSelection.assets(*assets),
                                     description=f"Track every selected {d} subject partition.")
              for d, assets in TRACK_ASSETS.items()}

#: One observation job per dataset (their partition sets differ): records each raw subject's data version.
OBSERVE_JOBS = {
    src.key.path[0]: dg.define_asset_job(f"observe_{src.key.path[0]}_subjects",
                                         selection=dg.AssetSelection.assets(src.key),
                                         description=f"Record the data version (file-list hash) of every "
                                                     f"{src.key.path[0]} subject.")
    for src in SOURCES
}

defs = dg.Definitions(
    assets=MATERIALIZABLE + SOURCES + [a for assets in TRACK_ASSETS.values() for a in assets],
    jobs=[main_job, *OBSERVE_JOBS.values(), *TRACK_JOBS.values()],
    sensors=[raw_subject_discovery],
    resources={"settings": SettingsResource()},
)
