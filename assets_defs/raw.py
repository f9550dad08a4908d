"""Raw data assets: the synthetic stand-in, the body-model files, raw subjects (observable) and their inventory.

Thin wrappers: each calls one `pipelines` function and turns its result into metadata.
"""

import dagster as dg

from assets_defs.automation import POLICY
from assets_defs.partitions import DATASETS, SUBJECT_PARTITIONS
from assets_defs.resources import SettingsResource

RAW_GROUP = "raw"


@dg.asset(key=["raw", "synthetic_standin"], group_name=RAW_GROUP, code_version="1", kinds={"python", "numpy"},
          owners=["team:morphable"], automation_condition=POLICY,
          description="Deterministic synthetic stand-in in the real FaceScape / THuman / FLAME / SMPL-X formats. "
                      "Generated only when the settings point at it (the embedded default).")
def synthetic_standin(context: dg.AssetExecutionContext, settings: SettingsResource) -> dg.MaterializeResult:
    from pipelines.demo_data import ensure_demo_data

    s = settings.load()
    if not s.uses_synthetic_data:
        context.log.info("settings point at real data; the synthetic stand-in is not needed")
        return dg.MaterializeResult(metadata={"used": False, "settings": s.source})
    report = ensure_demo_data(s.synthetic_root, s.synthetic_seed)
    sheet = _facescape_sheet(s)
    return dg.MaterializeResult(
        metadata={"used": True, "dagster/uri": str(report.root), "seed": s.synthetic_seed,
                  "generated_now": report.created, "seconds": round(report.seconds, 2), **report.counts,
                  "preview": dg.MetadataValue.md(sheet)},
        data_version=dg.DataVersion(_manifest_hash(report.root)),
    )


def _manifest_hash(root) -> str:
    import json

    return json.loads((root / "MANIFEST.json").read_text())["content_hash"]


def _facescape_sheet(settings) -> str:
    """A contact sheet of the first subject's frontal-ish views, as inline markdown."""
    from storage.facescape import FaceScapeDataset
    from storage.thumbnails import contact_sheet, markdown_image

    ds = FaceScapeDataset(settings.facescape_root)
    subject = ds.subjects()[0]
    images = []
    for expr in ds.expressions(subject):
        tup = ds.tuple(subject, expr)
        images += [ds.read_image(tup, v) for v in tup.valid_views[5:11]]
    return markdown_image(contact_sheet(images, tile=80, columns=6), f"FaceScape subject {subject}")


@dg.asset(key=["raw", "body_models"], deps=[synthetic_standin], group_name=RAW_GROUP, code_version="1",
          kinds={"python", "pytorch"}, owners=["team:morphable"], automation_condition=POLICY,
          description="FLAME, SMPL-X and FaceScape bilinear model files, loaded through the project's loaders "
                      "(no chumpy) with one forward pass each.",
          check_specs=[dg.AssetCheckSpec("forward_passes_finite", asset=["raw", "body_models"])])
def body_models(settings: SettingsResource) -> dg.MaterializeResult:
    from pipelines.ingest import validate_body_models

    info = validate_body_models(settings.load())
    ok = all(v["finite"] for v in info.values())
    flat = {f"{model}/{k}": v for model, d in info.items() for k, v in d.items()}
    return dg.MaterializeResult(metadata=flat, check_results=[
        dg.AssetCheckResult(passed=ok, check_name="forward_passes_finite", metadata={"models": list(info)})])


def _raw_subject_source(dataset: str) -> dg.SourceAsset:
    @dg.observable_source_asset(key=[dataset, "raw_subject"], partitions_def=SUBJECT_PARTITIONS[dataset],
                                group_name=RAW_GROUP,
                                description=f"Raw {dataset} files of one subject; data version = hash of the "
                                            "subject's files' contents (sha256 per file, cached by size and mtime).")
    def raw_subject(context, settings: SettingsResource) -> dg.DataVersionsByPartition:
        from pipelines.ingest import subject_data_versions

        keys = context.instance.get_dynamic_partitions(SUBJECT_PARTITIONS[dataset].name)
        return dg.DataVersionsByPartition(subject_data_versions(settings.load(), dataset, keys))

    return raw_subject


#: per dataset of the catalog
RAW_SUBJECTS = {d: _raw_subject_source(d) for d in DATASETS}


def _inventory_asset(dataset: str, source: dg.SourceAsset) -> dg.AssetsDefinition:
    key = [dataset, "raw_inventory"]

    @dg.asset(key=key, deps=[synthetic_standin, source], partitions_def=SUBJECT_PARTITIONS[dataset],
              group_name=RAW_GROUP, code_version="2", kinds={"python", "pandas"}, owners=["team:morphable"],
              automation_condition=POLICY,
              description=f"One {dataset} subject opened through the raw-format readers (every file: cameras, "
                          "images, meshes, fits): counts, data version, and the error if it fails validation.",
              check_specs=[dg.AssetCheckSpec("subject_valid", asset=key)])
    def raw_inventory(context: dg.AssetExecutionContext, settings: SettingsResource) -> dg.MaterializeResult:
        from pipelines.ingest import validate_subject

        report = validate_subject(settings.load(), dataset, context.partition_key)
        if not report.ok:
            context.log.error(f"{dataset} subject {report.subject}: {report.error}")
        details = {k: v for k, v in report.details.items() if not isinstance(v, dict)}
        return dg.MaterializeResult(
            data_version=dg.DataVersion(report.data_version or "invalid"),
            metadata={"files": report.n_files, "data_version": report.data_version, **details,
                      "error": report.error or ""},
            check_results=[dg.AssetCheckResult(passed=report.ok, check_name="subject_valid",
                                               metadata={"error": report.error or ""})])

    return raw_inventory


INVENTORY_ASSETS = {d: _inventory_asset(d, RAW_SUBJECTS[d]) for d in DATASETS}
