"""The colour calibration's robust fit, many problems at once: the minimiser of the objective sklearn's
`HuberRegressor(epsilon=1.0, alpha=0.0, fit_intercept=False)` minimises, solved exactly and batched in numpy.

sklearn minimises over w and a scale sigma > 0 (Owen 2007), with residuals r = y - X w and sample weights s:

    f(w, sigma) = sum_i s_i * (sigma + r_i^2 / sigma)                       where |r_i| <= epsilon * sigma
                + sum_i s_i * (sigma + 2 epsilon |r_i| - epsilon^2 sigma)   elsewhere.

At epsilon = 1 (the release's setting) every term is at least 2 s_i |r_i| (sigma + r^2 / sigma >= 2 |r|), with
equality as sigma -> 0: f's infimum is twice the weighted least-absolute-deviations (LAD) objective, approached as
sigma -> 0, which is where sklearn's L-BFGS-B ends (its scale stops at its 2.2e-15 bound). So the fit is an LAD
regression, and an LAD minimiser interpolates P of the points (a vertex of the linear program).

`lad_fit` finds that vertex: a few iteratively reweighted least-squares steps give a start, the P points of smallest
residual a first vertex, then vertex-to-vertex descent (Barrodale & Roberts' simplex steps, each with an exact
line search: the weighted median of the residuals' zero crossings) until no edge descends, for all problems at once.
sklearn's L-BFGS-B stops short of it, where an iteration lowers the objective by less than 2.2e-9 of itself
(tests/model/test_huber.py: sklearn's objective is never below this one's, which equals an exact LP solver's). Why: sklearn fits one problem at a time in hundreds of Python-level
iterations (~30 ms per colour channel of a view at real size, and short of the minimum by up to 5e-3 of the loss on
some), and an expression has three channels of ~50 views: this solves them together, exactly, in ~2.4x less time
on one core (5-6x on two).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from model.parallel import default_threads, ordered_map


@dataclass(frozen=True)
class RobustFit:
    coef: np.ndarray  # (B, P)
    loss: np.ndarray  # (B,) sum_i s_i |r_i| at the solution (half sklearn's objective as sigma -> 0)
    pivots: int  # vertex steps taken (the most any problem needed)
    optimal: np.ndarray  # (B,) bool: no edge descends from the returned vertex


def lad_loss(x: np.ndarray, y: np.ndarray, weights: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """sum_i s_i |y_i - x_i . w| per problem: x (B, N, P), y and weights (B, N), coef (B, P)."""
    return (weights * np.abs(y - np.einsum("bnp,bp->bn", x, coef))).sum(1)


def _weighted_least_squares(x: np.ndarray, y: np.ndarray, u: np.ndarray) -> np.ndarray:
    xt = x.transpose(0, 2, 1)
    normal = np.matmul(xt, x * u[..., None])
    normal += (1e-13 * np.trace(normal, axis1=1, axis2=2) + 1e-300)[:, None, None] * np.eye(x.shape[2])
    return np.linalg.solve(normal, np.matmul(xt, (u * y)[..., None]))[..., 0]


def _start(x: np.ndarray, y: np.ndarray, weights: np.ndarray, steps: int) -> np.ndarray:
    """IRLS for LAD (weights s / max(|r|, d)), a start close to the solution's vertex."""
    coef = _weighted_least_squares(x, y, weights)
    for _ in range(steps):
        r = np.abs(y - np.einsum("bnp,bp->bn", x, coef))
        floor = np.maximum((weights * r).sum(1) / np.maximum(weights.sum(1), 1) * 1e-3, 1e-12)
        coef = _weighted_least_squares(x, y, weights / np.maximum(r, floor[:, None]))
    return coef


def _first_basis(x: np.ndarray, y: np.ndarray, weights: np.ndarray, coef: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Per problem, P weighted points of smallest |r| whose rows are independent (greedy, in that order), and
    whether P such points exist."""
    b, n, p = x.shape
    r = np.where(weights > 0, np.abs(y - np.einsum("bnp,bp->bn", x, coef)), np.inf)
    order = np.argsort(r, axis=1, kind="stable")
    basis = np.zeros((b, p), np.int64)
    complete = np.ones(b, bool)
    for i in range(b):
        chosen: list[int] = []
        for k in order[i]:
            if not np.isfinite(r[i, k]):
                break
            trial = x[i, chosen + [int(k)]]
            if np.linalg.matrix_rank(trial, tol=1e-10 * max(np.abs(trial).max(), 1e-300)) == len(chosen) + 1:
                chosen.append(int(k))
                if len(chosen) == p:
                    break
        if len(chosen) < p:  # fewer than P independent points: no vertex (least squares instead)
            complete[i] = False
            chosen += [int(order[i, 0])] * (p - len(chosen))
        basis[i] = chosen
    return basis, complete


def _line_minimum(t: np.ndarray, rise: np.ndarray, deficit: np.ndarray, first: int = 256
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Per problem, the crossing where the slope (-deficit at t = 0, + rise_i past crossing t_i) turns
    non-negative: (its index, whether there is one). The minimum is usually among the first crossings, so those are
    partitioned out and sorted first; problems it is not among are sorted whole."""
    m, n = t.shape
    k = np.zeros(m, np.int64)
    has = np.zeros(m, bool)
    todo = np.arange(m)
    if n > 4 * first:
        near = np.argpartition(t, first, axis=1)[:, :first]
        near = np.take_along_axis(near, np.argsort(np.take_along_axis(t, near, 1), axis=1, kind="stable"), 1)
        found, idx = _first_crossing(t, rise, deficit, near)
        k[found], has[found] = idx[found], True
        todo = np.flatnonzero(~found)
    if len(todo):
        order = np.argsort(t[todo], axis=1, kind="stable")
        found, idx = _first_crossing(t[todo], rise[todo], deficit[todo], order)
        k[todo], has[todo] = idx, found
    return k, has


def _first_crossing(t, rise, deficit, order):
    slope = -deficit[:, None] + np.cumsum(np.take_along_axis(rise, order, 1), 1)
    cross = (slope >= 0) & np.isfinite(np.take_along_axis(t, order, 1))
    return cross.any(1), order[np.arange(len(order)), cross.argmax(1)]


def lad_fit(x: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None, start_steps: int = 6,
            max_pivots: int = 500, threads: int | None = None) -> RobustFit:
    """Exact LAD coefficients for each of B problems: x (B, N, P), y (B, N); `weights` (B, N) >= 0 (0 pads a
    problem with fewer points). Problems with fewer than P independent weighted points get a least-squares fit
    of what they have and `optimal` False. The problems are split over `threads` (default `default_threads()`):
    each is solved alone whatever its neighbours, so the result is the same bits for any thread count (numpy
    releases the GIL in the large array operations: 1.7-2x on 2 cores)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    weights = np.ones(y.shape) if weights is None else np.asarray(weights, np.float64)
    threads = min(threads or default_threads(), len(x) // 8 or 1)
    if threads > 1:
        parts = np.array_split(np.arange(len(x)), threads)
        fits = ordered_map(lambda i: _lad_fit(x[i], y[i], weights[i], start_steps, max_pivots), parts, threads)
        return RobustFit(np.concatenate([f.coef for f in fits]), np.concatenate([f.loss for f in fits]),
                         max(f.pivots for f in fits), np.concatenate([f.optimal for f in fits]))
    return _lad_fit(x, y, weights, start_steps, max_pivots)


def _lad_fit(x: np.ndarray, y: np.ndarray, weights: np.ndarray, start_steps: int, max_pivots: int) -> RobustFit:
    b, n, p = x.shape
    basis, solvable = _first_basis(x, y, weights, _start(x, y, weights, start_steps))
    coef = np.zeros((b, p))
    optimal = np.zeros(b, bool)
    if (~solvable).any():
        coef[~solvable] = _weighted_least_squares(x[~solvable], y[~solvable], weights[~solvable])
    active = np.flatnonzero(solvable)
    pivots = 0
    while len(active) and pivots < max_pivots:
        every = len(active) == b  # (no copies of the problems while all of them are still descending)
        xa, ya, sa = (x, y, weights) if every else (x[active], y[active], weights[active])
        ba = basis[active]
        xb = np.take_along_axis(xa, ba[..., None], 1)  # (A, P, P): the basis points' rows
        w = np.linalg.solve(xb, np.take_along_axis(ya, ba, 1)[..., None])[..., 0]
        coef[active] = w
        r = ya - np.matmul(xa, w[..., None])[..., 0]
        in_basis = np.zeros(r.shape, bool)
        np.put_along_axis(in_basis, ba, True, 1)
        r[in_basis] = 0.0
        g = np.matmul((sa * np.sign(r))[:, None, :], xa)[:, 0]
        z = np.linalg.solve(xb.transpose(0, 2, 1), g[..., None])[..., 0]  # X_B^T z = g
        s_basis = np.take_along_axis(sa, ba, 1)
        gain = np.abs(z) - s_basis  # > 0: releasing that basis point descends (slope s_j - |z_j|)
        j = gain.argmax(1)
        best = gain[np.arange(len(active)), j]
        done = best <= 1e-11 * np.maximum(s_basis.max(1), 1e-300) * np.maximum(np.abs(z).max(1), 1.0)
        optimal[active[done]] = True
        keep = ~done
        if not keep.any():
            break
        if not keep.all():
            active, xa, xb, r, sa, ba, z, j, best = (v[keep] for v in (active, xa, xb, r, sa, ba, z, j, best))
        m = len(active)
        sigma = np.sign(z[np.arange(m), j])
        unit = np.zeros((m, p))
        unit[np.arange(m), j] = sigma
        delta = np.linalg.solve(xb, unit[..., None])[..., 0]  # direction: the released point leaves zero
        a = np.matmul(xa, delta[..., None])[..., 0]  # r_i(t) = r_i - t a_i
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where((a != 0) & (sa > 0), r / a, np.inf)
        in_basis = np.zeros(r.shape, bool)
        np.put_along_axis(in_basis, ba, True, 1)
        t[(t <= 0) | in_basis] = np.inf
        k, has = _line_minimum(t, 2 * sa * np.abs(a), best)
        basis[active[has], j[has]] = k[has]
        pivots += 1
        active = active[has]
    if len(active):  # out of pivots: the last vertex reached
        xb = np.take_along_axis(x[active], basis[active][..., None], 1)
        coef[active] = np.linalg.solve(xb, np.take_along_axis(y[active], basis[active], 1)[..., None])[..., 0]
    optimal &= solvable
    return RobustFit(coef, lad_loss(x, y, weights, coef), pivots, optimal)
