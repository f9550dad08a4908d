"""The torch sparse convolution against a dense conv3d reference (at the default thread count)."""
import pytest
import torch
import torch.nn.functional as F

from model.diffusion.sparse import SparseConv3d, SparseConvNet, SparseVolume


def _random_volume(n=300, c=5, shape=(14, 12, 10), seed=0):
    g = torch.Generator().manual_seed(seed)
    idx = torch.stack([torch.randint(0, s, (n,), generator=g) for s in shape], -1)
    return SparseVolume.from_points(torch.randn(n, c, generator=g, dtype=torch.float64), idx, shape)


def _dense_weight(conv):  # spconv [out, kD, kH, kW, in] -> torch [out, in, kD, kH, kW]
    return conv.weight.permute(0, 4, 1, 2, 3)


@pytest.mark.numerics
def test_submanifold_conv_matches_dense_conv3d():
    torch.manual_seed(0)
    x = _random_volume()
    conv = SparseConv3d(5, 7).double()
    out = conv(x)
    ref = F.conv3d(x.dense()[None], _dense_weight(conv), padding=1)[0]
    i = out.indices
    torch.testing.assert_close(out.features, ref[:, i[:, 0], i[:, 1], i[:, 2]].t())
    assert torch.equal(out.indices, x.indices)  # submanifold: same active sites


@pytest.mark.numerics
def test_strided_conv_matches_dense_conv3d_and_its_active_sites():
    torch.manual_seed(1)
    x = _random_volume(n=120, shape=(13, 11, 9))
    conv = SparseConv3d(5, 3, subm=False, stride=2).double()
    out = conv(x)
    ref = F.conv3d(x.dense()[None], _dense_weight(conv), stride=2, padding=1)[0]
    reach = F.conv3d((x.dense().abs().sum(0, keepdim=True) > 0).double()[None], torch.ones(1, 1, 3, 3, 3,
                     dtype=torch.float64), stride=2, padding=1)[0, 0] > 0
    assert out.shape == tuple(reach.shape) and len(out.indices) == int(reach.sum())
    i = out.indices
    torch.testing.assert_close(out.features, ref[:, i[:, 0], i[:, 1], i[:, 2]].t())


@pytest.mark.numerics
def test_duplicates_are_averaged_and_gradients_flow():
    feats = torch.tensor([[1.0], [3.0], [10.0]], requires_grad=True)
    idx = torch.tensor([[0, 0, 0], [0, 0, 0], [1, 1, 1]])
    v = SparseVolume.from_points(feats, idx, (2, 2, 2))
    assert torch.allclose(v.dense()[0, 0, 0, 0], torch.tensor(2.0)) and len(v.indices) == 2
    net = SparseConvNet((1, 2, 3))
    big = _random_volume(n=200, c=1, shape=(16, 16, 16))
    feats2 = big.features.float().requires_grad_(True)
    out = net(SparseVolume(feats2, big.indices, big.shape))
    assert out.shape == (3, 4, 4, 4)  # 1/4 resolution
    out.sum().backward()
    assert feats2.grad is not None and torch.isfinite(feats2.grad).all()
