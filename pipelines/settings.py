"""Project settings: one TOML file plus MORPHABLE_* environment overrides for every user path.

Resolution order for each key (later wins): embedded default -> settings file -> environment variable.
The settings file is `--settings PATH`, else $MORPHABLE_SETTINGS, else `./morphable.toml` if it exists.
The embedded default points every dataset and body-model path at the synthetic stand-in under
`<data_root>/synthetic`, so a fresh checkout runs end to end without licence-gated files.
Relative paths are resolved against the settings file's folder (or the working directory for the default).
"""
from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV_PREFIX = "MORPHABLE_"
DEFAULT_SETTINGS_FILE = "morphable.toml"

#: Every path key, its embedded default (templates may use {data_root} and {synthetic_root}) and what it is.
PATH_KEYS: dict[str, tuple[str | None, str]] = {
    "data_root": (".morphable", "base folder for generated data and the default storage root"),
    "storage_root": ("{data_root}/store", "tracks, view stores, checkpoints, evaluation sets, metric tables"),
    "synthetic_root": ("{data_root}/synthetic", "where `morphable demo-data` writes the synthetic stand-in"),
    "facescape_root": ("{synthetic_root}/facescape", "FaceScape multi-view root: <id>/<k>_<expr>/<view>.jpg"),
    "facescape_rt_scale_dict": (
        "{synthetic_root}/facescape_toolkit/predef/Rt_scale_dict.json",
        "FaceScape toolkit alignment file (multi-view -> TU frame)",
    ),
    "facescape_landmark_indices": (
        "{synthetic_root}/facescape_toolkit/predef/landmark_indices.npz",
        "FaceScape toolkit 68 landmark vertex indices (keys v10, v16)",
    ),
    "facescape_bilinear_model": (
        "{synthetic_root}/facescape_bm/facescape_bm_v1.6_847_50_52_id_front.npz",
        "FaceScape bilinear model v1.6 .npz",
    ),
    "thuman_root": ("{synthetic_root}/thuman/model", "THuman 2.x scans: <uid>/<uid>.obj + material0.*"),
    "thuman_smplx_fits": ("{synthetic_root}/thuman/smplx", "THuman SMPL-X fits: <uid>/smplx_param.pkl"),
    "flame_model_dir": (
        "{synthetic_root}/body_models/flame",
        "FLAME 2020: generic_model.pkl + landmark embeddings",
    ),
    "smplx_model_dir": ("{synthetic_root}/body_models/smplx", "SMPL-X: SMPLX_{NEUTRAL,MALE,FEMALE}.npz"),
    "syncdreamer_checkpoint": (None, "syncdreamer-pretrain.ckpt (training init; optional)"),
    "experiments_file": (None, "experiments TOML: the configurations the graph trains, imports and evaluates "
                               "(default: the embedded demo experiments, pipelines/experiments.toml)"),
    "metric_weights_dir": (
        None,
        "folder with vgg16-397923af.pth (LPIPS) and pt_inception-2015-12-05-6726825d.pth (FID); optional",
    ),
}

SCALAR_KEYS: dict[str, tuple[Any, str]] = {
    "synthetic_seed": (0, "seed of the synthetic stand-in generator"),
}


class SettingsError(ValueError):
    """A settings file or environment override that cannot be used; the message names the key and the fix."""


@dataclass(frozen=True)
class Settings:
    """Resolved settings. Paths are absolute; optional files are None when not configured."""

    data_root: Path
    storage_root: Path
    synthetic_root: Path
    facescape_root: Path
    facescape_rt_scale_dict: Path
    facescape_landmark_indices: Path
    facescape_bilinear_model: Path
    thuman_root: Path
    thuman_smplx_fits: Path
    flame_model_dir: Path
    smplx_model_dir: Path
    syncdreamer_checkpoint: Path | None = None
    experiments_file: Path | None = None
    metric_weights_dir: Path | None = None
    synthetic_seed: int = 0
    source: str = "embedded default"
    overridden: tuple[str, ...] = field(default_factory=tuple)

    @property
    def uses_synthetic_data(self) -> bool:
        """True when any dataset or body-model path lies inside the synthetic stand-in (the demo must create it)."""
        keys = ("facescape_root", "thuman_root", "thuman_smplx_fits", "flame_model_dir", "smplx_model_dir")
        return any(_is_within(getattr(self, k), self.synthetic_root) for k in keys)

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-able view (paths as strings), e.g. for `morphable settings --json` and asset metadata."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = str(v) if isinstance(v, Path) else (list(v) if isinstance(v, tuple) else v)
        return out


def _is_within(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


def _expand(raw: str, base: Path, known: dict[str, Path]) -> Path:
    text = os.path.expanduser(os.path.expandvars(raw))
    try:
        text = text.format(**{k: str(v) for k, v in known.items()})
    except KeyError as exc:
        raise SettingsError(f"unknown placeholder {{{exc.args[0]}}} in path {raw!r}; "
                            f"use {{data_root}} or {{synthetic_root}}") from None
    p = Path(text)
    return (p if p.is_absolute() else base / p).resolve()


def _read_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            doc = tomllib.load(fh)
    except FileNotFoundError:
        raise SettingsError(f"settings file {path} does not exist; create it from morphable.example.toml") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"settings file {path} is not valid TOML: {exc}") from None
    flat: dict[str, Any] = {}
    for section in ("paths", "synthetic"):
        for k, v in (doc.get(section) or {}).items():
            flat[k if section == "paths" else f"synthetic_{k}"] = v
    unknown = sorted(set(flat) - set(PATH_KEYS) - set(SCALAR_KEYS))
    if unknown:
        raise SettingsError(f"settings file {path}: unknown keys {unknown}; known keys are listed in "
                            f"morphable.example.toml")
    return flat


def find_settings_file(explicit: str | Path | None = None, env: dict[str, str] | None = None) -> Path | None:
    """The settings file in force: explicit argument, $MORPHABLE_SETTINGS, ./morphable.toml, or None."""
    env = os.environ if env is None else env
    if explicit:
        return Path(explicit).resolve()
    if env.get(f"{ENV_PREFIX}SETTINGS"):
        return Path(env[f"{ENV_PREFIX}SETTINGS"]).resolve()
    local = Path.cwd() / DEFAULT_SETTINGS_FILE
    return local.resolve() if local.exists() else None


def load_settings(path: str | Path | None = None, env: dict[str, str] | None = None) -> Settings:
    """Resolve settings from the embedded default, the settings file and MORPHABLE_* environment variables."""
    env = dict(os.environ) if env is None else env
    file = find_settings_file(path, env)
    from_file = _read_file(file) if file else {}
    base = file.parent if file else Path.cwd()
    raw: dict[str, Any] = {}
    overridden: list[str] = []
    for key in list(PATH_KEYS) + list(SCALAR_KEYS):
        default = PATH_KEYS[key][0] if key in PATH_KEYS else SCALAR_KEYS[key][0]
        value = default
        env_key = f"{ENV_PREFIX}{key.upper()}"
        if env.get(env_key, "") != "":
            value = env[env_key]
        elif key in from_file:
            value = from_file[key]
        if value is not default:
            overridden.append(key)
        raw[key] = value
    known: dict[str, Path] = {}
    resolved: dict[str, Any] = {}
    for key in PATH_KEYS:  # order matters: data_root and synthetic_root come before the keys that use them
        value = raw[key]
        if value in (None, ""):
            resolved[key] = None
            continue
        resolved[key] = _expand(str(value), base, known)
        known[key] = resolved[key]
    try:
        resolved["synthetic_seed"] = int(raw["synthetic_seed"])
    except (TypeError, ValueError):
        raise SettingsError(f"synthetic_seed must be an integer, got {raw['synthetic_seed']!r}") from None
    return Settings(**resolved, source=str(file) if file else "embedded default", overridden=tuple(overridden))


def describe_keys() -> list[tuple[str, str, str]]:
    """(key, environment variable, description) for every setting, for docs and `morphable settings`."""
    rows = [(k, f"{ENV_PREFIX}{k.upper()}", d) for k, (_, d) in PATH_KEYS.items()]
    rows += [(k, f"{ENV_PREFIX}{k.upper()}", d) for k, (_, d) in SCALAR_KEYS.items()]
    return rows
