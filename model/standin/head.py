"""A procedural morphable head: the continuous shape model behind the synthetic FLAME, TU and bilinear files.

The head is a function of a direction on the unit sphere: an ellipsoid that narrows into a neck, with a nose, eye
sockets and eyeballs, brows, cheekbones, lips, chin and ears. Identity and expression are linear displacement fields
over the same domain, and the jaw, neck and eyes are skinned to five joints exactly like FLAME. Evaluating the model
on two sphere grids yields two topologies of the same surface (our "FLAME" and "TU" meshes), so a fit of one to the
other can be checked against the parameters that produced it. Units: metres, y up, face towards +z.

All arithmetic goes through `model.portable_math` (no BLAS, no CPU-specific sin / exp / atan2 kernels), so the
head is the same bits on every CPU.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from model import portable_math as pm
from model.standin.surface_grid import SphereGrid, sphere_grid

if TYPE_CHECKING:
    from model.bodies.flame import FlameModelData

HEAD_CENTER = np.array([0.0, 0.02, 0.0])
HEAD_AXES = np.array([0.076, 0.104, 0.094])  # half width, half height, half depth
N_IDENTITY = 12  # non-zero identity components (columns 0..11 of the 300 identity columns)
N_EXPRESSION = 10  # non-zero expression components (columns 300..309)
EXPRESSION_NAMES = ("smile", "mouth_stretch", "brow_raise", "brow_lower", "eye_close", "lip_pucker",
                    "cheek_puff", "mouth_left", "dimpler", "lip_roll")
JOINT_NAMES = ("root", "neck", "jaw", "left_eye", "right_eye")
JOINT_PARENTS = np.array([-1, 0, 1, 1, 1])
FLAME_GRID = (40, 48, 0.0)  # our "FLAME" topology: 1,922 vertices
TU_GRID = (64, 80, 0.5)  # our "TU" topology (models_reg meshes): 5,122 vertices
BILINEAR_GRID = (32, 40, 0.5)  # our bilinear-model (v1.6) topology: 1,282 vertices
SCAN_GRID = (96, 128, 0.25)  # the dense multi-view "scan": 12,290 vertices

# 68 landmarks (dlib order) as (azimuth, elevation) in radians on the head; azimuth < 0 is the subject's right.
_T = np.linspace(-1, 1, 17)
_CONTOUR = np.stack([1.25 * _T, -0.80 + 0.60 * pm.power(np.abs(_T), 1.4)], -1)
LANDMARKS_ANGLES = np.concatenate([
    _CONTOUR,
    [[-0.58, 0.24], [-0.48, 0.29], [-0.37, 0.31], [-0.26, 0.30], [-0.15, 0.27]],  # right brow 17-21
    [[0.15, 0.27], [0.26, 0.30], [0.37, 0.31], [0.48, 0.29], [0.58, 0.24]],  # left brow 22-26
    [[0.0, 0.12], [0.0, 0.04], [0.0, -0.05], [0.0, -0.14]],  # nose bridge 27-30
    [[-0.11, -0.22], [-0.055, -0.235], [0.0, -0.24], [0.055, -0.235], [0.11, -0.22]],  # nostrils 31-35
    [[-0.44, 0.12], [-0.38, 0.155], [-0.28, 0.155], [-0.22, 0.12], [-0.28, 0.09], [-0.38, 0.09]],  # right eye
    [[0.22, 0.12], [0.28, 0.155], [0.38, 0.155], [0.44, 0.12], [0.38, 0.09], [0.28, 0.09]],  # left eye 42-47
    [[-0.26, -0.42], [-0.16, -0.37], [-0.06, -0.35], [0.0, -0.36], [0.06, -0.35], [0.16, -0.37],
     [0.26, -0.42], [0.16, -0.48], [0.06, -0.50], [0.0, -0.505], [-0.06, -0.50], [-0.16, -0.48]],  # outer lip
    [[-0.21, -0.42], [-0.08, -0.405], [0.0, -0.405], [0.08, -0.405], [0.21, -0.42], [0.08, -0.43],
     [0.0, -0.43], [-0.08, -0.43]],  # inner lip 60-67
])
EYE_ANGLES = np.array([[0.33, 0.12], [-0.33, 0.12]])  # left (+x), right (-x)


def _smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def angles_of(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(azimuth, elevation) of unit directions: azimuth 0 = +z (front), positive towards +x (subject's left)."""
    return pm.arctan2(d[:, 0], d[:, 2]), pm.arcsin(np.clip(d[:, 1], -1, 1))


def direction_of(az: np.ndarray, el: np.ndarray) -> np.ndarray:
    (s_az, c_az), (s_el, c_el) = pm.sincos(az), pm.sincos(el)
    return np.stack([c_el * s_az, s_el, c_el * c_az], -1)


def _bump(az: np.ndarray, el: np.ndarray, a0: float, e0: float, sa: float, se: float,
          mirror: bool = False) -> np.ndarray:
    """Anisotropic Gaussian in (azimuth, elevation); `mirror` adds the left/right twin at -a0."""
    de = ((el - e0) / se) ** 2
    g = pm.exp(-0.5 * ((wrap_angle(az - a0) / sa) ** 2 + de))
    if mirror:
        g = g + pm.exp(-0.5 * ((wrap_angle(az + a0) / sa) ** 2 + de))
    return g


def wrap_angle(a: np.ndarray) -> np.ndarray:
    """Angles wrapped to [-pi, pi)."""
    return (a + np.pi) % (2 * np.pi) - np.pi


def _signed_side(az: np.ndarray) -> np.ndarray:
    return np.sign(pm.sin(az))


@dataclass(frozen=True)
class HeadSample:
    """The head model sampled on one grid: the template and every basis, ready to write as a FLAME-format file."""

    grid: SphereGrid
    template: np.ndarray  # (V, 3)
    identity: np.ndarray  # (V, 3, N_IDENTITY)
    expression: np.ndarray  # (V, 3, N_EXPRESSION)
    weights: np.ndarray  # (V, 5)


def _base_surface(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Template positions and outward normals (approximate, of the ellipsoid) for directions d."""
    az, el = angles_of(d)
    p = HEAD_CENTER + HEAD_AXES * d
    # neck: below the jaw the surface blends into a cylinder that keeps its radius down to a flat base
    s = _smoothstep(-0.40, -0.92, d[:, 1])[:, None]
    r = pm.norm(d[:, [0, 2]], axis=1)
    h = d[:, [0, 2]] / np.maximum(r, 1e-9)[:, None]
    rad = np.minimum(1.0, r / 0.35)
    neck = np.stack([0.052 * h[:, 0] * rad,
                     HEAD_CENTER[1] - 0.10 - 0.08 * _smoothstep(-0.9, -0.99, d[:, 1]),
                     0.048 * h[:, 1] * rad - 0.022], -1)
    p = (1 - s) * p + s * neck
    normal = d / HEAD_AXES
    normal /= pm.norm(normal, axis=1, keepdims=True)
    features = (
        0.021 * _bump(az, el, 0.0, -0.06, 0.085, 0.17)  # nose ridge
        + 0.010 * _bump(az, el, 0.0, -0.16, 0.07, 0.06)  # nose tip
        + 0.004 * _bump(az, el, 0.10, -0.21, 0.05, 0.04, mirror=True)  # nostril wings
        - 0.013 * _bump(az, el, EYE_ANGLES[0, 0], 0.12, 0.12, 0.075, mirror=True)  # eye sockets
        + 0.010 * _bump(az, el, EYE_ANGLES[0, 0], 0.12, 0.07, 0.045, mirror=True)  # eyeballs
        + 0.007 * _bump(az, el, 0.33, 0.28, 0.2, 0.05, mirror=True)  # brow ridge
        + 0.007 * _bump(az, el, 0.55, -0.06, 0.15, 0.12, mirror=True)  # cheekbones
        + 0.008 * _bump(az, el, 0.0, -0.37, 0.19, 0.045)  # upper lip
        + 0.008 * _bump(az, el, 0.0, -0.475, 0.17, 0.045)  # lower lip
        - 0.004 * _bump(az, el, 0.0, -0.415, 0.22, 0.016)  # mouth line
        + 0.011 * _bump(az, el, 0.0, -0.70, 0.2, 0.1)  # chin
        + 0.016 * _bump(az, el, np.pi / 2, 0.04, 0.1, 0.17, mirror=True)  # ears
    )
    return p + normal * features[:, None], normal


def _identity_fields(d: np.ndarray, normal: np.ndarray) -> np.ndarray:
    az, el = angles_of(d)
    lower = _smoothstep(-0.2, -0.55, el)
    side = _signed_side(az)
    f = np.zeros((len(d), 3, N_IDENTITY))
    f[:, 0, 0] = 0.006 * d[:, 0] / 0.8  # head width
    f[:, 1, 1] = 0.008 * d[:, 1]  # head height
    f[:, 2, 2] = 0.007 * d[:, 2]  # head depth
    f[:, :, 3] = normal * (0.005 * _bump(az, el, 0.0, -0.1, 0.08, 0.16))[:, None]  # nose length
    f[:, 0, 4] = 0.003 * side * _bump(az, el, 0.1, -0.18, 0.06, 0.08, mirror=True)  # nose width
    f[:, 0, 5] = 0.006 * d[:, 0] * lower  # jaw width
    f[:, 2, 6] = 0.005 * _bump(az, el, 0.0, -0.7, 0.25, 0.15)  # chin protrusion
    f[:, :, 7] = normal * (-0.003 * _bump(az, el, 0.33, 0.12, 0.12, 0.08, mirror=True))[:, None]  # eye depth
    f[:, :, 8] = normal * (0.003 * _bump(az, el, 0.33, 0.28, 0.22, 0.06, mirror=True))[:, None]  # brows
    f[:, :, 9] = normal * (0.004 * _bump(az, el, 0.55, -0.25, 0.2, 0.18, mirror=True))[:, None]  # cheeks
    f[:, :, 10] = normal * (0.003 * (_bump(az, el, 0.0, -0.37, 0.18, 0.04)
                                     + _bump(az, el, 0.0, -0.475, 0.16, 0.04)))[:, None]  # lip thickness
    f[:, :, 11] = normal * (0.006 * _bump(az, el, np.pi / 2, 0.04, 0.1, 0.17, mirror=True))[:, None]  # ears
    return f


def _expression_fields(d: np.ndarray, normal: np.ndarray) -> np.ndarray:
    az, el = angles_of(d)
    side = _signed_side(az)
    corners = _bump(az, el, 0.26, -0.42, 0.1, 0.07, mirror=True)
    lips = _bump(az, el, 0.0, -0.42, 0.22, 0.08)
    brows = _bump(az, el, 0.33, 0.28, 0.22, 0.08, mirror=True)
    f = np.zeros((len(d), 3, N_EXPRESSION))
    f[:, 1, 0] = 0.007 * corners + 0.003 * _bump(az, el, 0.5, -0.2, 0.15, 0.12, mirror=True)  # smile: up
    f[:, 0, 0] = 0.005 * side * corners  # ... and out
    f[:, 1, 1] = -0.010 * _bump(az, el, 0.0, -0.6, 0.3, 0.14)  # mouth stretch
    f[:, 1, 2] = 0.007 * brows  # brow raise
    f[:, 1, 3] = -0.004 * brows  # brow lower ...
    f[:, 0, 3] = -0.002 * side * brows  # ... and together
    f[:, 1, 4] = -0.005 * _bump(az, el, 0.33, 0.15, 0.08, 0.04, mirror=True)  # eye close (upper lid)
    f[:, 2, 5] = 0.007 * lips  # lip pucker: forward ...
    f[:, 0, 5] = -0.004 * pm.sin(az) * lips  # ... and narrow
    f[:, :, 6] = normal * (0.010 * _bump(az, el, 0.45, -0.32, 0.15, 0.12, mirror=True))[:, None]  # cheek puff
    f[:, 0, 7] = 0.007 * lips  # mouth left (towards +x)
    f[:, :, 8] = normal * (-0.004 * corners)[:, None]  # dimpler
    f[:, :, 9] = normal * (-0.005 * lips)[:, None]  # lip roll
    return f


def _skinning_weights(d: np.ndarray) -> np.ndarray:
    az, el = angles_of(d)
    w = np.zeros((len(d), 5))
    w[:, 0] = _smoothstep(-0.80, -0.97, d[:, 1])  # root: the base of the neck
    front = _smoothstep(-0.05, 0.45, pm.cos(az))
    w[:, 2] = _smoothstep(-0.395, -0.445, el) * (1 - _smoothstep(-0.75, -0.92, el)) * front  # jaw
    for k, (a0, e0) in enumerate(EYE_ANGLES):
        w[:, 3 + k] = np.clip(1.4 * _bump(az, el, a0, e0, 0.07, 0.05) - 0.2, 0, 1)
    w[:, 1] = np.clip(1 - w[:, 0] - w[:, 2] - w[:, 3] - w[:, 4], 0, 1)
    return w / w.sum(1, keepdims=True)


def joint_positions() -> np.ndarray:
    """Rest positions of root, neck, jaw, left eye, right eye (metres)."""
    eyes_d = direction_of(EYE_ANGLES[:, 0], EYE_ANGLES[:, 1])
    eyes, normals = _base_surface(eyes_d)
    eyes = eyes - 0.014 * normals
    return np.array([[0.0, -0.13, -0.02], [0.0, -0.075, -0.025], [0.0, -0.03, -0.005], eyes[0], eyes[1]])


def sample_head(n_lat: int, n_lon: int, lon_offset: float = 0.0) -> HeadSample:
    """Sample template, bases and skinning weights of the head on a sphere grid."""
    grid = sphere_grid(n_lat, n_lon, lon_offset)
    template, normal = _base_surface(grid.directions)
    return HeadSample(grid, template, _identity_fields(grid.directions, normal),
                      _expression_fields(grid.directions, normal), _skinning_weights(grid.directions))


def build_flame_format(grid_spec: tuple[int, int, float] = FLAME_GRID) -> tuple["FlameModelData", HeadSample]:
    """The head as a FLAME-format model (300+100 shape/expression columns, 5 joints) on a sphere grid."""
    from model.bodies.flame import FlameModelData
    from model.standin.rigging import regressor_for

    h = sample_head(*grid_spec)
    v = len(h.template)
    shapedirs = np.zeros((v, 3, 400))
    shapedirs[:, :, :N_IDENTITY] = h.identity
    shapedirs[:, :, 300:300 + N_EXPRESSION] = h.expression
    model = FlameModelData(
        v_template=h.template, faces=h.grid.faces, shapedirs=shapedirs, posedirs=np.zeros((v, 3, 36)),
        j_regressor=regressor_for(h.template, joint_positions()), weights=h.weights, parents=JOINT_PARENTS.copy(),
        n_shape=300, n_expression=100)
    return model, h


def bilinear_core(sample: HeadSample, flame_tu: "FlameModelData", n_id: int = 50) -> np.ndarray:
    """A FaceScape-v1.6-style stored core (3V, 52, n_id) for the TU sample.

    Identity: id[0] = 1 carries the template, id[1..12] our identity components. Expression slot 0 is neutral;
    slots 1..10 our expression fields, slot 11 a jaw-open shape; the rest equal neutral. Stored in the release's
    absolute form (each slot is a full face); the loader converts it to residuals.
    """
    from model.bodies.portable_lbs import flame_forward

    v = len(sample.template)
    core = np.zeros((3 * v, 52, n_id), np.float32)
    core[:, :, 0] = sample.template.reshape(-1, 1)
    for i in range(N_IDENTITY):
        core[:, :, 1 + i] = sample.identity[:, :, i].reshape(-1, 1)
    for j in range(N_EXPRESSION):
        core[:, 1 + j, 0] += sample.expression[:, :, j].reshape(-1)
    opened, _ = flame_forward(flame_tu, {"jaw_pose": np.array([0.25, 0.0, 0.0])})
    core[:, 1 + N_EXPRESSION, 0] = opened.reshape(-1)
    return core


def symmetry_map(grid_spec: tuple[int, int, float]) -> np.ndarray:
    """Left/right vertex correspondence of a sphere grid whose azimuths are symmetric (offset 0.5)."""
    n_lat, n_lon, offset = grid_spec
    if offset != 0.5:
        raise ValueError("only grids with a half-step azimuth offset are mirror-symmetric")
    ring = np.arange(n_lat)[:, None] * n_lon + (n_lon - 1 - np.arange(n_lon))[None, :]
    return np.concatenate([[0], 1 + ring.ravel(), [1 + n_lat * n_lon]])
