"""The colour calibration's robust fit (`model.render.huber.lad_fit`) against an exact LP solver (scipy's HiGHS),
sklearn's HuberRegressor at epsilon 1 (what the release calls) and closed forms."""
import numpy as np
from scipy.optimize import linprog
from sklearn.linear_model import HuberRegressor

from model.render.huber import lad_fit, lad_loss


def huber_objective(x: np.ndarray, y: np.ndarray, weights: np.ndarray, coef: np.ndarray, scale: np.ndarray,
                    epsilon: float = 1.0) -> np.ndarray:
    """sklearn's HuberRegressor objective f(w, sigma) (Owen 2007, alpha = 0), per problem; scale (B,) is sigma."""
    r = y - np.einsum("bnp,bp->bn", x, coef)
    sigma = np.asarray(scale, np.float64)[:, None]
    inlier = np.abs(r) <= epsilon * sigma
    per_point = np.where(inlier, sigma + r * r / sigma, sigma + 2 * epsilon * np.abs(r) - epsilon ** 2 * sigma)
    return (weights * per_point).sum(1)


def _colour_problems(b, n, seed=0):
    """Calibration-like problems: x = [rgb, 1], targets a small affine map of it, noise, and 6 % outliers."""
    rng = np.random.default_rng(seed)
    c = rng.uniform(0, 1, (b, n, 3))
    x = np.concatenate([c, np.ones((b, n, 1))], 2)
    y = np.einsum("bnp,bp->bn", x, rng.normal(0, 0.1, (b, 4))) + rng.normal(0, 0.02, (b, n))
    y[:, : n // 16] += rng.normal(0, 0.5, (b, n // 16))
    return x, y


def _exact(x, y, s):
    """LAD by its dual LP: max y.d s.t. X^T d = 0, |d_i| <= s_i; the coefficients are the equality marginals."""
    res = linprog(-y, A_eq=x.T, b_eq=np.zeros(x.shape[1]), bounds=np.c_[-s, s], method="highs-ds")
    assert res.status == 0
    return -res.eqlin.marginals


def test_lad_fit_reaches_the_lp_optimum_and_sklearns_objective():
    x, y = _colour_problems(8, 3000)
    s = np.ones(y.shape)
    s[0, 1500:] = 0.0  # a problem padded to the batch's size
    s[1] = np.random.default_rng(1).uniform(0.5, 2.0, 3000)  # weighted points
    fit = lad_fit(x, y, s)
    assert fit.optimal.all()
    exact = np.stack([_exact(x[i], y[i], s[i]) for i in range(len(x))])
    np.testing.assert_allclose(fit.loss, lad_loss(x, y, s, exact), rtol=1e-12)
    np.testing.assert_allclose(fit.coef, exact, atol=1e-9)
    for i in (0, 2, 3):  # sklearn (unweighted): it stops short of the vertex, never below it
        keep = s[i] > 0
        sk = HuberRegressor(epsilon=1.0, alpha=0.0, max_iter=1000, tol=1e-6, fit_intercept=False).fit(
            x[i][keep], y[i][keep])
        assert sk.scale_ < 1e-12  # epsilon = 1: its scale collapses, its objective is twice the LAD loss
        sk_objective = huber_objective(x[i:i + 1, keep], y[i:i + 1, keep], np.ones((1, keep.sum())),
                                       sk.coef_[None], np.array([sk.scale_]))[0]
        assert 2 * fit.loss[i] <= sk_objective
        assert sk_objective <= 2 * fit.loss[i] * (1 + 1e-6)
        np.testing.assert_allclose(fit.coef[i], sk.coef_, atol=1e-3)


def test_lad_recovers_an_exact_map_through_sparse_outliers():
    """Closed form: with most residuals exactly zero at w0, w0 is the LAD minimiser."""
    rng = np.random.default_rng(2)
    x = np.concatenate([rng.uniform(0, 1, (3, 500, 3)), np.ones((3, 500, 1))], 2)
    w0 = rng.normal(0, 1, (3, 4))
    y = np.einsum("bnp,bp->bn", x, w0)
    y[:, :60] += rng.normal(0, 3.0, (3, 60))
    fit = lad_fit(x, y)
    np.testing.assert_allclose(fit.coef, w0, atol=1e-10)


def test_too_few_independent_points_is_reported_not_solved():
    x = np.zeros((1, 10, 4))
    x[0, :, 3] = 1.0
    x[0, :, 0] = np.arange(10.0)  # rank 2: the 3x4 map is under-determined
    y = np.arange(10.0)[None] * 0.5
    fit = lad_fit(x, y)
    assert not fit.optimal[0] and np.isfinite(fit.coef).all()


def test_the_fit_is_the_same_bits_for_any_thread_count():
    x, y = _colour_problems(40, 2000, seed=4)
    one = lad_fit(x, y, threads=1)
    for threads in (2, 3):
        other = lad_fit(x, y, threads=threads)
        assert np.array_equal(other.coef, one.coef) and np.array_equal(other.loss, one.loss)
        assert np.array_equal(other.optimal, one.optimal)
