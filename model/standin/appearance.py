"""Procedural albedo for the synthetic head and body: skin, hair, brows, lips and eyes; clothes on the body."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from model import portable_math as pm
from model.standin.head import EYE_ANGLES, _bump, _smoothstep, angles_of, wrap_angle


@dataclass(frozen=True)
class Appearance:
    skin: np.ndarray
    hair: np.ndarray
    lips: np.ndarray
    iris: np.ndarray
    shirt: np.ndarray
    pants: np.ndarray
    stripe: float  # stripe frequency of the shirt
    hairline: float = 0.46  # elevation (rad) where the hair starts on the forehead; > 1.3: bald
    hair_sides: float = 1.0  # 0: hair only on top, 1: down to the ears, 1.5: long, over the ears and neck
    brow_width: float = 0.022  # angular half-height of the brows
    brow_color: np.ndarray | None = None  # None: the hair colour
    solid_shirt: bool = False  # plain shirt instead of stripes

    @staticmethod
    def sample(rng: np.random.Generator) -> "Appearance":
        """One identity's colours and hair: identities differ in skin tone, hair colour and shape (hairline height,
        length, baldness), brow weight, eye colour and clothes, so that "who is this" needs the input image."""
        tone = rng.uniform(0.2, 0.95)
        skin = np.array([0.45 + 0.5 * tone, 0.3 + 0.45 * tone, 0.22 + 0.4 * tone]) * rng.uniform(0.95, 1.05, 3)
        hair = _HAIR_COLOURS[rng.integers(len(_HAIR_COLOURS))] * rng.uniform(0.8, 1.2, 3)
        bald = rng.uniform() < 0.1
        return Appearance(skin=np.clip(skin, 0, 1), hair=np.clip(hair, 0, 1),
                          lips=skin * rng.uniform([0.85, 0.45, 0.45], [1.0, 0.65, 0.65]),
                          iris=_IRIS_COLOURS[rng.integers(len(_IRIS_COLOURS))] * rng.uniform(0.8, 1.2, 3),
                          shirt=rng.uniform(0.1, 0.9, 3), pants=rng.uniform(0.05, 0.5, 3),
                          stripe=float(rng.uniform(6, 14)),
                          hairline=float(rng.uniform(1.4, 1.5) if bald else rng.uniform(0.3, 0.58)),
                          hair_sides=float(rng.uniform(0.0, 1.6)), brow_width=float(rng.uniform(0.014, 0.034)),
                          brow_color=np.clip(hair * rng.uniform(0.6, 1.0), 0, 1),
                          solid_shirt=bool(rng.uniform() < 0.4))


#: black, dark brown, brown, auburn, red, blond, light blond, grey
_HAIR_COLOURS = np.array([[0.05, 0.04, 0.04], [0.16, 0.1, 0.06], [0.32, 0.2, 0.11], [0.45, 0.2, 0.1],
                          [0.65, 0.3, 0.12], [0.75, 0.6, 0.35], [0.88, 0.8, 0.6], [0.6, 0.6, 0.6]])
#: brown, dark brown, hazel, green, blue, grey
_IRIS_COLOURS = np.array([[0.35, 0.2, 0.1], [0.15, 0.09, 0.05], [0.45, 0.35, 0.15], [0.25, 0.45, 0.25],
                          [0.25, 0.4, 0.7], [0.5, 0.55, 0.6]])


def head_albedo(directions: np.ndarray, app: Appearance) -> np.ndarray:
    """(N, 3) albedo in [0, 1] at head-surface points given by their parametric unit directions."""
    d = directions / pm.norm(directions, axis=1, keepdims=True)
    az, el = angles_of(d)
    out = np.tile(app.skin, (len(d), 1)) * (1 + 0.03 * pm.sin(40 * az) * pm.sin(35 * el))[:, None]
    out *= (1 - 0.08 * _smoothstep(-0.5, -0.9, d[:, 1]))[:, None]  # neck in shade
    blush = 0.12 * _bump(az, el, 0.5, -0.2, 0.15, 0.1, mirror=True)
    out = out * (1 - blush[:, None]) + blush[:, None] * np.array([0.85, 0.4, 0.4])
    lips = np.clip(1.6 * (_bump(az, el, 0.0, -0.37, 0.17, 0.035) + _bump(az, el, 0.0, -0.47, 0.15, 0.035)), 0, 1)
    out = out * (1 - lips[:, None]) + lips[:, None] * app.lips
    brows = np.clip(2.0 * _bump(az, el, 0.37, 0.30, 0.14, app.brow_width, mirror=True) - 0.4, 0, 1)
    out = out * (1 - brows[:, None]) + brows[:, None] * (app.hair if app.brow_color is None else app.brow_color)
    # hair: the top from the hairline up, the back and sides down to an elevation set by the hair's length
    low = 0.2 - 0.55 * app.hair_sides
    hairline = np.maximum(_smoothstep(app.hairline - 0.06, app.hairline + 0.06, el),
                          _smoothstep(-1.7, -2.3, -np.abs(az)) * _smoothstep(low - 0.15, low + 0.15, el)
                          * (app.hairline < 1.3))
    out = out * (1 - hairline[:, None]) + hairline[:, None] * app.hair * (1 + 0.15 * pm.sin(60 * az))[:, None]
    for a0, e0 in EYE_ANGLES:
        r = pm.hypot(wrap_angle(az - a0) / 1.6, el - e0)
        sclera = _smoothstep(0.045, 0.035, r)
        out = out * (1 - sclera[:, None]) + sclera[:, None] * np.array([0.92, 0.9, 0.88])
        iris = _smoothstep(0.024, 0.02, r)
        out = out * (1 - iris[:, None]) + iris[:, None] * app.iris
        pupil = _smoothstep(0.011, 0.008, r)
        out = out * (1 - pupil[:, None]) + pupil[:, None] * 0.03
    return np.clip(out, 0, 1)


def body_texture(kinds: list[str], tiles: np.ndarray, app: Appearance, size: int = 512) -> np.ndarray:
    """(size, size, 3) uint8 atlas: each part's tile painted by its kind (shirt stripes, pants, shoes, skin, hair)."""
    img = np.zeros((size, size, 3))
    for kind, (u0, v0, du, dv) in zip(kinds, tiles):
        x0, x1 = int(u0 * size), int(np.ceil((u0 + du) * size))
        y0, y1 = int((1 - v0 - dv) * size), int(np.ceil((1 - v0) * size))
        h, w = y1 - y0, x1 - x0
        vv = np.linspace(1, 0, h)[:, None] * np.ones((1, w))  # texture v runs upwards
        uu = np.ones((h, 1)) * np.linspace(0, 1, w)[None, :]
        if kind == "shirt":
            stripes = 1.0 if app.solid_shirt else 0.8 + 0.2 * (pm.sin(vv * app.stripe * np.pi) > 0)
            tex = app.shirt * np.broadcast_to(np.asarray(stripes, float)[..., None], (h, w, 1))
        elif kind == "pants":
            tex = app.pants * (0.9 + 0.1 * pm.sin(uu * 40))[..., None]
        elif kind == "shoes":
            tex = np.broadcast_to(np.array([0.12, 0.1, 0.1]), (h, w, 3))
        elif kind == "head":
            top = 0.7 - 0.25 * min(app.hair_sides, 1.2) if app.hairline < 1.3 else 1.1
            hair = _smoothstep(top - 0.1, top, vv)[..., None]
            tex = app.skin * (1 - hair) + app.hair * hair
        else:
            tex = np.broadcast_to(app.skin, (h, w, 3))
        img[y0:y1, x0:x1] = tex
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)
