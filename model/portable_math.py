"""Float64 maths whose results are the same bits on every x86-64 CPU, thread count and library build choice.

Why: the synthetic stand-in must be a function of its seed. numpy's `@`, `dot` and `linalg` go through OpenBLAS /
LAPACK, whose kernels (chosen per CPU, `OPENBLAS_CORETYPE`) and thread split change the summation order; numpy's
`exp`, `log`, `power`, `arctan`, `arcsin`, ... have AVX2 / AVX-512 kernels that differ from each other and from libm
in the last bit (`NPY_DISABLE_CPU_FEATURES` shows it); torch picks kernels by `ATEN_CPU_CAPABILITY`. Everything
here is built from operations IEEE 754 rounds exactly the same way everywhere (+, -, *, /, sqrt, floor, rint,
ldexp, frexp, comparisons) applied in a fixed order: one numpy ufunc per operation (so no fused multiply-add),
reductions written out term by term or done by `np.einsum` without `optimize` (its own loops, never BLAS).

Accuracy: the elementary functions agree with numpy's to a few units in the last place (tests check 4e-16
relative); they are for generating data deterministically, not a faster libm. Arguments of `sin` / `cos` must stay
below 1e5 in magnitude (Cody-Waite reduction), which covers angles and the stand-in's patterns.
"""
from __future__ import annotations

import math

import numpy as np

PI = math.pi
HALF_PI = math.pi / 2
# pi/2 in three parts whose products with an integer k (|k| < 2**20) are exact (fdlibm's split)
_PIO2_1 = 1.57079632673412561417e+00
_PIO2_2 = 6.07710050630396597660e-11
_PIO2_3 = 2.02226624879595063154e-21
_LN2_HI = 6.93147180369123816490e-01  # ln 2 with 32 significant bits: k * _LN2_HI is exact for |k| < 2**21
_LN2_LO = 1.90821492927058770002e-10
_INV_LN2 = 1.44269504088896338700e+00
_SQRT_HALF = 0.70710678118654752440

# Taylor coefficients, highest degree first (Horner)
_SIN = [(-1) ** k / math.factorial(2 * k + 1) for k in range(9, 0, -1)]  # x^19 .. x^3 (without the leading x)
_COS = [(-1) ** k / math.factorial(2 * k) for k in range(9, 0, -1)]  # x^18 .. x^2 (without the leading 1)
_EXP = [1.0 / math.factorial(k) for k in range(14, 0, -1)]  # r^14 .. r^1 (without the leading 1)
_ATANH = [1.0 / (2 * k + 1) for k in range(13, 0, -1)]  # s^27 .. s^3 (without the leading s)
_ATAN = [(-1) ** k / (2 * k + 1) for k in range(15, 0, -1)]  # t^31 .. t^3 (without the leading t)


def _f64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def _horner(coeffs: list[float], z: np.ndarray) -> np.ndarray:
    """c0 z^(n-1) + ... + c_{n-1}, evaluated as ((c0 z + c1) z + ...) with one rounding per operation."""
    acc = np.full_like(z, coeffs[0])
    for c in coeffs[1:]:
        acc = np.add(np.multiply(acc, z), c)
    return acc


def _reduce_half_pi(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(r, quadrant) with x = quadrant * pi/2 + r, |r| <= pi/4 (plus rounding)."""
    if np.any(np.abs(x) > 1e5):
        raise ValueError("portable sin/cos take arguments below 1e5 in magnitude")
    k = np.rint(np.multiply(x, 1.0 / HALF_PI))
    r = np.subtract(np.subtract(np.subtract(x, np.multiply(k, _PIO2_1)), np.multiply(k, _PIO2_2)),
                    np.multiply(k, _PIO2_3))
    return r, np.mod(k.astype(np.int64), 4)


def _sin_kernel(r: np.ndarray) -> np.ndarray:
    z = np.multiply(r, r)
    return np.add(r, np.multiply(np.multiply(r, z), _horner(_SIN, z)))


def _cos_kernel(r: np.ndarray) -> np.ndarray:
    z = np.multiply(r, r)
    return np.add(1.0, np.multiply(z, _horner(_COS, z)))


def sincos(x) -> tuple[np.ndarray, np.ndarray]:
    """(sin x, cos x)."""
    x = _f64(x)
    r, q = _reduce_half_pi(x)
    s, c = _sin_kernel(r), _cos_kernel(r)
    sin = np.select([q == 0, q == 1, q == 2], [s, c, np.negative(s)], np.negative(c))
    cos = np.select([q == 0, q == 1, q == 2], [c, np.negative(s), np.negative(c)], s)
    return sin, cos


def sin(x) -> np.ndarray:
    return sincos(x)[0]


def cos(x) -> np.ndarray:
    return sincos(x)[1]


def exp(x) -> np.ndarray:
    """e**x (0 below -745, inf above 709.78, as numpy)."""
    x = _f64(x)
    xc = np.clip(np.where(np.isnan(x), 0.0, x), -1100.0, 710.0)
    k = np.rint(np.multiply(xc, _INV_LN2))
    r = np.subtract(np.subtract(xc, np.multiply(k, _LN2_HI)), np.multiply(k, _LN2_LO))
    p = np.add(1.0, np.multiply(r, _horner(_EXP, r)))
    with np.errstate(over="ignore"):
        out = np.ldexp(p, k.astype(np.int64))
    return np.where(np.isnan(x), np.nan, out)


def log(x) -> np.ndarray:
    """Natural logarithm of x > 0 (-inf at 0, nan below)."""
    x = _f64(x)
    safe = np.where(x > 0, x, 1.0)
    m, e = np.frexp(safe)  # safe = m 2**e, m in [0.5, 1)
    low = m < _SQRT_HALF
    m = np.where(low, np.multiply(m, 2.0), m)
    e = np.where(low, e - 1, e).astype(np.float64)
    f = np.subtract(m, 1.0)
    s = np.divide(f, np.add(2.0, f))
    z = np.multiply(s, s)
    log_m = np.multiply(2.0, np.add(s, np.multiply(np.multiply(s, z), _horner(_ATANH, z))))
    out = np.add(np.multiply(e, _LN2_HI), np.add(log_m, np.multiply(e, _LN2_LO)))
    return np.select([x > 0, x == 0], [out, -np.inf], np.nan)


def power(x, y) -> np.ndarray:
    """x**y for x >= 0 and a real exponent (0**y = 0 for y > 0), as exp(y log x)."""
    x = _f64(x)
    out = exp(np.multiply(y, log(np.where(x > 0, x, 1.0))))
    return np.where(x > 0, out, np.where(x == 0, 0.0, np.nan))


def int_power(x, n: int) -> np.ndarray:
    """x**n for an integer n >= 0, by repeated squaring (a fixed sequence of multiplications)."""
    if n < 0:
        raise ValueError("int_power takes n >= 0")
    x = _f64(x)
    out = np.ones_like(x)
    base = x
    while n:
        if n & 1:
            out = np.multiply(out, base)
        n >>= 1
        if n:
            base = np.multiply(base, base)
    return out


def _atan_unit(t: np.ndarray) -> np.ndarray:
    """arctan of t in [0, 1]: two half-angle steps bring t below tan(pi/16), then the series."""
    for _ in range(2):
        t = np.divide(t, np.add(1.0, np.sqrt(np.add(1.0, np.multiply(t, t)))))
    z = np.multiply(t, t)
    return np.multiply(4.0, np.add(t, np.multiply(np.multiply(t, z), _horner(_ATAN, z))))


def arctan2(y, x) -> np.ndarray:
    """Angle of (x, y) in [-pi, pi], with numpy's conventions for zeros (atan2(+-0, -0) = +-pi)."""
    y, x = np.broadcast_arrays(_f64(y), _f64(x))
    ay, ax = np.abs(y), np.abs(x)
    big, small = np.maximum(ay, ax), np.minimum(ay, ax)
    t = np.divide(small, np.where(big > 0, big, 1.0))
    a = _atan_unit(t)
    a = np.where(ay > ax, np.subtract(HALF_PI, a), a)
    a = np.where(np.signbit(x), np.subtract(PI, a), a)
    return np.where(np.signbit(y), np.negative(a), a)


def arctan(x) -> np.ndarray:
    return arctan2(x, np.ones_like(_f64(x)))


def arcsin(x) -> np.ndarray:
    """arcsin of x in [-1, 1]."""
    x = _f64(x)
    return arctan2(x, np.sqrt(np.multiply(np.subtract(1.0, x), np.add(1.0, x))))


def arccos(x) -> np.ndarray:
    x = _f64(x)
    return arctan2(np.sqrt(np.multiply(np.subtract(1.0, x), np.add(1.0, x))), x)


def hypot(a, b) -> np.ndarray:
    return np.sqrt(np.add(np.multiply(a, a), np.multiply(b, b)))


# ------------------------------------------------------------------------------------------------------------
# linear algebra without BLAS

def matmul(a, b) -> np.ndarray:
    """a @ b for (..., n, k) x (..., k, m) or with 1-D operands as numpy treats them, by einsum (fixed order)."""
    a, b = _f64(a), _f64(b)
    if a.ndim == 1 and b.ndim == 1:
        return np.einsum("k,k->", a, b)
    if b.ndim == 1:
        return np.einsum("...k,k->...", a, b)
    if a.ndim == 1:
        return np.einsum("k,...km->...m", a, b)
    return np.einsum("...nk,...km->...nm", a, b)


def transform_points(points, rotation, translation=None) -> np.ndarray:
    """points @ rotation.T (+ translation) for (N, 3) points and a 3x3 rotation."""
    out = np.einsum("nk,jk->nj", _f64(points), _f64(rotation))
    return out if translation is None else np.add(out, _f64(translation))


def dot3(a, b) -> np.ndarray:
    """Dot products over the last axis of length 3, summed in the order x, y, z."""
    a, b = _f64(a), _f64(b)
    return np.add(np.add(np.multiply(a[..., 0], b[..., 0]), np.multiply(a[..., 1], b[..., 1])),
                  np.multiply(a[..., 2], b[..., 2]))


def norm(v, axis: int = -1, keepdims: bool = False) -> np.ndarray:
    """Euclidean norm along `axis` (terms summed in index order)."""
    v = _f64(v)
    sq = np.multiply(v, v)
    moved = np.moveaxis(sq, axis, 0)
    acc = moved[0].copy()
    for term in moved[1:]:
        acc = np.add(acc, term)
    out = np.sqrt(acc)
    return np.expand_dims(out, axis) if keepdims else out


def cross(a, b) -> np.ndarray:
    a, b = _f64(a), _f64(b)
    a, b = np.broadcast_arrays(a, b)
    return np.stack([np.subtract(np.multiply(a[..., 1], b[..., 2]), np.multiply(a[..., 2], b[..., 1])),
                     np.subtract(np.multiply(a[..., 2], b[..., 0]), np.multiply(a[..., 0], b[..., 2])),
                     np.subtract(np.multiply(a[..., 0], b[..., 1]), np.multiply(a[..., 1], b[..., 0]))], -1)


def solve(a, b) -> np.ndarray:
    """x with a x = b for a small square a (Gaussian elimination with partial pivoting, row operations in order)."""
    a = _f64(a).copy()
    x = _f64(b).copy()
    n = len(a)
    for col in range(n):
        piv = col + int(np.argmax(np.abs(a[col:, col])))
        if a[piv, col] == 0:
            raise np.linalg.LinAlgError("singular matrix")
        if piv != col:
            a[[col, piv]], x[[col, piv]] = a[[piv, col]], x[[piv, col]]
        for row in range(col + 1, n):
            f = a[row, col] / a[col, col]
            a[row, col:] = np.subtract(a[row, col:], np.multiply(f, a[col, col:]))
            x[row] = np.subtract(x[row], np.multiply(f, x[col]))
    for row in range(n - 1, -1, -1):
        acc = x[row]
        for k in range(row + 1, n):
            acc = np.subtract(acc, np.multiply(a[row, k], x[k]))
        x[row] = np.divide(acc, a[row, row])
    return x


def orthonormal_columns(m) -> np.ndarray:
    """Q of a QR decomposition with positive diagonal R (modified Gram-Schmidt, twice for stability)."""
    q = _f64(m).copy()
    n = q.shape[1]
    for _ in range(2):
        for j in range(n):
            for i in range(j):
                q[:, j] = np.subtract(q[:, j], np.multiply(np.einsum("k,k->", q[:, i], q[:, j]), q[:, i]))
            q[:, j] = np.divide(q[:, j], np.sqrt(np.einsum("k,k->", q[:, j], q[:, j])))
    return q


def rodrigues(axis_angle) -> np.ndarray:
    """(..., 3) axis-angle -> (..., 3, 3) rotation matrices, with smplx.lbs.batch_rodrigues's formula
    (angle = |v + 1e-8|, so a zero vector gives the identity)."""
    v = _f64(axis_angle)
    angle = norm(np.add(v, 1e-8), axis=-1, keepdims=True)
    d = np.divide(v, angle)
    s, c = sincos(angle)
    x, y, z = d[..., 0], d[..., 1], d[..., 2]
    zero = np.zeros_like(x)
    k = np.stack([np.stack([zero, np.negative(z), y], -1), np.stack([z, zero, np.negative(x)], -1),
                  np.stack([np.negative(y), x, zero], -1)], -2)
    eye = np.broadcast_to(np.eye(3), k.shape)
    return np.add(np.add(eye, np.multiply(s[..., None], k)),
                  np.multiply(np.subtract(1.0, c)[..., None], matmul(k, k)))


# ------------------------------------------------------------------------------------------------------------
# meshes

def vertex_normals(vertices, faces) -> np.ndarray:
    """Unit vertex normals: the area-weighted sum of the incident faces' normals (each face's cross product added
    to its three vertices in face order, so the sums do not depend on threads or kernels)."""
    v = _f64(vertices)
    f = np.asarray(faces, np.int64)
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    fn = cross(np.subtract(b, a), np.subtract(c, a))
    acc = np.zeros_like(v)
    for k in range(3):
        np.add.at(acc, f[:, k], fn)
    length = norm(acc, axis=1, keepdims=True)
    return np.divide(acc, np.where(length > 0, length, 1.0))


def ray_triangle_hits(origins, directions, triangles) -> tuple[np.ndarray, np.ndarray]:
    """(t, barycentrics (N, 3)) of rays o + t d against the plane of each ray's triangle (N, 3, 3), in float64
    (Moller-Trumbore): a hit's exact position once an accelerated caster has found which triangle it is."""
    o, d, tri = _f64(origins), _f64(directions), _f64(triangles)
    e1, e2 = np.subtract(tri[:, 1], tri[:, 0]), np.subtract(tri[:, 2], tri[:, 0])
    p = cross(d, e2)
    det = dot3(e1, p)
    inv = np.divide(1.0, np.where(det != 0, det, 1.0))
    s = np.subtract(o, tri[:, 0])
    u = np.multiply(dot3(s, p), inv)
    q = cross(s, e1)
    w = np.multiply(dot3(d, q), inv)
    t = np.multiply(dot3(e2, q), inv)
    return t, np.stack([np.subtract(np.subtract(1.0, u), w), u, w], -1)


def closest_points_on_mesh(vertices, faces, points) -> tuple[np.ndarray, np.ndarray]:
    """(face index, barycentrics) of the closest surface point to each point (ties: the lowest face index).

    Exact search in float64: faces whose bounding sphere could hold a point nearer than the nearest vertex are
    tested with the closest-point-on-triangle regions (Ericson, Real-Time Collision Detection 5.1.5)."""
    v = _f64(vertices)
    f = np.asarray(faces, np.int64)
    tri = v[f]
    centre = np.divide(np.add(np.add(tri[:, 0], tri[:, 1]), tri[:, 2]), 3.0)
    radius = np.max(np.stack([norm(np.subtract(tri[:, k], centre), axis=1) for k in range(3)], 1), axis=1)
    out_f = np.zeros(len(points), np.int64)
    out_b = np.zeros((len(points), 3))
    for i, p in enumerate(_f64(points)):
        bound = np.min(norm(np.subtract(v, p), axis=1))
        cand = np.flatnonzero(np.subtract(norm(np.subtract(centre, p), axis=1), radius) <= bound * (1 + 1e-9))
        bary = _closest_on_triangles(tri[cand], p)
        q = np.einsum("nk,nkc->nc", bary, tri[cand])
        best = int(np.argmin(norm(np.subtract(q, p), axis=1)))
        out_f[i], out_b[i] = cand[best], bary[best]
    return out_f, out_b


def _closest_on_triangles(tri: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Barycentrics of the point of each triangle (N, 3, 3) closest to p (3,)."""
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    ab, ac = np.subtract(b, a), np.subtract(c, a)
    ap, bp, cp = np.subtract(p, a), np.subtract(p, b), np.subtract(p, c)
    d1, d2 = dot3(ab, ap), dot3(ac, ap)
    d3, d4 = dot3(ab, bp), dot3(ac, bp)
    d5, d6 = dot3(ab, cp), dot3(ac, cp)
    va = np.subtract(np.multiply(d3, d6), np.multiply(d5, d4))
    vb = np.subtract(np.multiply(d5, d2), np.multiply(d1, d6))
    vc = np.subtract(np.multiply(d1, d4), np.multiply(d3, d2))

    def safe_div(x, y):
        return np.divide(x, np.where(y != 0, y, 1.0))

    n = len(tri)
    out = np.zeros((n, 3))
    done = np.zeros(n, bool)

    def assign(mask, bary):
        nonlocal done
        m = mask & ~done
        out[m] = bary[m]
        done |= m

    zeros, ones = np.zeros(n), np.ones(n)
    assign((d1 <= 0) & (d2 <= 0), np.stack([ones, zeros, zeros], -1))  # vertex a
    assign((d3 >= 0) & (d4 <= d3), np.stack([zeros, ones, zeros], -1))  # vertex b
    t_ab = safe_div(d1, np.subtract(d1, d3))
    assign((vc <= 0) & (d1 >= 0) & (d3 <= 0), np.stack([np.subtract(1.0, t_ab), t_ab, zeros], -1))  # edge ab
    assign((d6 >= 0) & (d5 <= d6), np.stack([zeros, zeros, ones], -1))  # vertex c
    t_ac = safe_div(d2, np.subtract(d2, d6))
    assign((vb <= 0) & (d2 >= 0) & (d6 <= 0), np.stack([np.subtract(1.0, t_ac), zeros, t_ac], -1))  # edge ac
    t_bc = safe_div(np.subtract(d4, d3), np.add(np.subtract(d4, d3), np.subtract(d5, d6)))
    assign((va <= 0) & (np.subtract(d4, d3) >= 0) & (np.subtract(d5, d6) >= 0),
           np.stack([zeros, np.subtract(1.0, t_bc), t_bc], -1))  # edge bc
    denom = safe_div(ones, np.add(np.add(va, vb), vc))
    w_b, w_c = np.multiply(vb, denom), np.multiply(vc, denom)
    assign(~done, np.stack([np.subtract(np.subtract(1.0, w_b), w_c), w_b, w_c], -1))  # inside the face
    return out
