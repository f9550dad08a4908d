"""Metrics against independent references: scikit-image, a loop-free LPIPS formula, SciPy's sqrtm, hand-made
landmarks, and dlib Re-ID on real face images."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from model.metrics.image import mask_background, psnr, silhouette_iou, ssim
from tests.conftest import TESTDATA
from tests.metric_weights import write_random_inception, write_random_vgg

RNG = np.random.default_rng(0)


def _pairs(n=4, size=64):
    a = RNG.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + RNG.integers(-40, 41, a.shape), 0, 255).astype(np.uint8)
    return a, b


@pytest.mark.numerics
def test_psnr_and_ssim_equal_scikit_image():
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    for a, b in zip(*_pairs()):
        assert psnr(a, b) == pytest.approx(peak_signal_noise_ratio(a, b, data_range=255), abs=1e-9)
        assert ssim(a, b) == pytest.approx(structural_similarity(a, b, channel_axis=2, data_range=255), abs=1e-12)
    m = np.zeros((64, 64), np.uint8)
    m[10:20, 10:20] = 255
    a, b = _pairs(1)
    inside = (a[0][m > 0].astype(float) - b[0][m > 0]) ** 2
    assert psnr(a[0], b[0], m) == pytest.approx(10 * np.log10(255 ** 2 / inside.mean()))
    assert (mask_background(b[0], m)[m == 0] == 255).all()


def test_silhouette_iou_closed_form():
    img = np.full((10, 10, 3), 255, np.uint8)
    img[:5, :4] = 100  # 20 px foreground
    gt = np.zeros((10, 10), np.uint8)
    gt[:5, 2:6] = 1  # 20 px, overlap 10
    assert silhouette_iou(gt, img) == pytest.approx(10 / 30)


@pytest.mark.numerics
def test_lpips_equals_a_direct_formula(tmp_path):
    from model.metrics.lpips_vgg import LPIPSVGG, lpips_linear_weights

    state = write_random_vgg(tmp_path / "vgg16-397923af.pth")
    model = LPIPSVGG.from_files(tmp_path / "vgg16-397923af.pth")
    lin = lpips_linear_weights()
    a, b = _pairs(3)
    got = model.distance(a, b)

    def feats(x):  # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 from the raw state dict
        x = (x - torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)) / torch.tensor([0.458, 0.448, 0.450]).view(
            1, 3, 1, 1)
        out = []
        for block, convs in enumerate(((0, 2), (5, 7), (10, 12, 14), (17, 19, 21), (24, 26, 28))):
            if block:
                x = F.max_pool2d(x, 2)
            for c in convs:
                x = F.relu(F.conv2d(x, state[f"features.{c}.weight"], state[f"features.{c}.bias"], padding=1))
            out.append(x)
        return out

    x = torch.tensor(a).permute(0, 3, 1, 2).float() / 127.5 - 1
    y = torch.tensor(b).permute(0, 3, 1, 2).float() / 127.5 - 1
    ref = sum((((fx / fx.norm(dim=1, keepdim=True)) - (fy / fy.norm(dim=1, keepdim=True))) ** 2
               * lin[f"lin{k}.model.1.weight"].view(1, -1, 1, 1)).sum(1).mean((1, 2))
              for k, (fx, fy) in enumerate(zip(feats(x), feats(y))))
    np.testing.assert_allclose(got, ref.numpy(), rtol=1e-4)
    assert model.distance(a, a) == pytest.approx(np.zeros(3), abs=1e-6)
    with pytest.raises(FileNotFoundError, match="metric_weights_dir"):
        LPIPSVGG.from_files(tmp_path / "missing.pth")


@pytest.mark.numerics
def test_frechet_distance_equals_scipy_sqrtm():
    from scipy.linalg import sqrtm

    from model.metrics.fid import fid_from_features, frechet_distance

    x = RNG.normal(size=(200, 16))
    y = RNG.normal(size=(150, 16)) @ RNG.normal(size=(16, 16)) * 0.3 + 0.5
    m1, s1, m2, s2 = x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False)
    ref = ((m1 - m2) ** 2).sum() + np.trace(s1 + s2 - 2 * sqrtm(s1 @ s2).real)
    assert frechet_distance(m1, s1, m2, s2) == pytest.approx(ref, rel=1e-8)
    assert fid_from_features(x, x) == pytest.approx(0.0, abs=1e-8)


@pytest.mark.numerics
def test_fid_inception_loads_its_key_layout_and_pools_2048(tmp_path):
    from model.metrics.fid import FIDInceptionV3

    state = FIDInceptionV3().state_dict()
    assert len(state) > 500 and "Mixed_7c.branch3x3dbl_3b.bn.running_var" in state
    assert state["fc.weight"].shape == (1008, 2048)
    write_random_inception(tmp_path / "inc.pth")
    model = FIDInceptionV3.from_file(tmp_path / "inc.pth")
    a, _ = _pairs(2)
    f = model.features(a)
    assert f.shape == (2, 2048) and np.isfinite(f).all()
    assert np.allclose(model.features(a[::-1]), f[::-1])


@pytest.mark.numerics
def test_pck_on_hand_made_landmarks():
    from model.metrics.face import pck

    gt = np.zeros((68, 2))
    gt[:, 0] = np.arange(68)
    gt[39], gt[42] = (0.0, 100.0), (50.0, 100.0)  # inter-canthal distance 50 -> threshold 10 px
    pred = gt.copy()
    pred[:17] += (0, 9.9)  # within
    pred[17:34] += (10.1, 0)  # outside
    assert pck(pred, gt) == pytest.approx(51 / 68)


@pytest.mark.numerics
def test_reid_matches_itself_and_a_light_augmentation_not_another_face():
    from PIL import Image, ImageEnhance
    from skimage.data import astronaut

    from model.metrics.face import face_scores

    with Image.open(TESTDATA / "stylegan1_256.png") as im:
        face = im.convert("RGB").resize((256, 256), Image.BICUBIC)
    aug = np.asarray(ImageEnhance.Brightness(face).enhance(1.1))
    aug = np.clip(aug.astype(int) + RNG.integers(-6, 7, aug.shape), 0, 255).astype(np.uint8)
    face = np.asarray(face)
    same = face_scores(face, face)
    assert same.reid == 1.0 and same.reid_distance == pytest.approx(0.0, abs=1e-6) and same.pck == 1.0
    assert face_scores(face, aug).reid == 1.0
    other = np.asarray(Image.fromarray(astronaut()).resize((256, 256), Image.BICUBIC))
    assert face_scores(face, other).reid == 0.0
