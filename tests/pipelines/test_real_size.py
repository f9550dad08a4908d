"""The real-size profile (`morphable demo-data --profile real-size`): the real files' dimensions in the real formats,
through the same readers and stages as the demo: tracking, views, a training step and an evaluation set. The smallest
real-size case: one FaceScape identity with one expression (60 cameras of 1800x2400) and one THuman scan (327,808
faces, 2048² texture)."""
import numpy as np
import pytest

from tests.conftest import REPO, settings_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def real_size(tmp_path_factory):
    from pipelines.demo_data import StandinSpec, ensure_demo_data

    root = tmp_path_factory.mktemp("real-size")
    spec = StandinSpec.with_counts(facescape=1, thuman=1, expressions=1, heldout=0, profile="real-size")
    ensure_demo_data(root / "synthetic", 0, spec=spec)
    return settings_for(root / "synthetic", root / "data"), spec


def test_the_files_have_the_real_sizes(real_size):
    from model.bodies.flame import load_flame_model
    from storage.facescape import FaceScapeDataset
    from storage.meshes import read_obj
    from storage.thuman import THumanDataset

    settings, spec = real_size
    flame = load_flame_model(settings.flame_model_dir)
    assert flame.faces.shape == (9976, 3) and flame.shapedirs.shape[1:] == (3, 400)
    ds = FaceScapeDataset(settings.facescape_root, settings.facescape_rt_scale_dict)
    (subject,), (expression,) = spec.facescape_subjects, spec.expression_folders
    tup = ds.tuple(subject, expression)
    assert len(tup.cameras) == 60 and {(c.width, c.height) for c in tup.cameras.values()} == {(1800, 2400)}
    assert ds.read_image(tup, 0).shape == (2400, 1800, 3)
    assert read_obj(tup.registered_mesh).vertices.shape == (26317, 3)
    scan = THumanDataset(settings.thuman_root, settings.thuman_smplx_fits).read_scan(spec.thuman_uids[0])
    assert scan.mesh.faces.shape == (327808, 3) and scan.texture.shape == (2048, 2048, 3)


def test_tracking_views_training_and_evaluation_run_at_real_size(real_size):
    from model.diffusion.ddim import DDIMConfig
    from pipelines.evaluation_sets import generate_eval_set
    from pipelines.protocols import Protocol
    from pipelines import catalog
    from pipelines.track import track
    from pipelines.train import TrainConfig, train
    from pipelines.views import views
    from storage.eval_sets import EvalSet
    from storage.tracks import read_track
    from storage.views import ViewStore

    settings, spec = real_size
    subject, uid = spec.facescape_subjects[0], spec.thuman_uids[0]
    track(settings, "facescape", subject)
    fit = read_track(settings.storage_root, "facescape", subject, catalog.topology("facescape", "flame").tracker_version)
    assert next(iter(fit.vertices.values())).shape == (4990, 3)
    errors = {k: v for k, v in fit.metrics.items() if not k.startswith("_")}
    assert all(e["p95_mm"] < 5.0 for e in errors.values()), errors  # FLAME fitted to the 26,317-vertex TU mesh
    track(settings, "thuman", uid)

    fs = views(settings, "facescape", subject)
    th = views(settings, "thuman", uid)
    store = ViewStore.open(fs.path)
    assert fs.n_views >= 30 and store.rgb(0).shape == (256, 256, 3)  # |azimuth| <= 90 of the 60, calibrated
    assert th.n_views == 32

    checkpoint = REPO / "pretrained" / "tiny-facescape-reference"
    res = train(settings, TrainConfig(dataset="facescape", init=str(checkpoint), steps=1, batch_size=1, loss_views=2,
                                      ckpt_every=1, preview_steps=0, warmup_steps=1, shuffled_expression=False),
                log=lambda *_: None)  # (one expression: its own views are the input)
    assert res.step == 1 and np.isfinite(res.losses).all()

    protocol = Protocol("real_size_novel_view", "facescape", "novel_view", subjects=(subject,), max_targets=4)
    out = generate_eval_set(settings, protocol, res.checkpoint, "model", DDIMConfig(steps=2, cfg_scale=1.0),
                            log=lambda *_: None)
    pair = next(EvalSet.open(out.path).pairs())
    assert out.views == 4 and pair.arrays["generated"].shape[1:3] == pair.arrays["gt"].shape[1:3]
    assert np.isfinite(pair.arrays["generated"].astype(float)).all()
