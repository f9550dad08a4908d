"""One source of truth for a stage's parameters: its config dataclass. The CLI flags (here) and the Dagster run
config (assets_defs.run_config) are generated from the dataclass's fields, defaults and `metadata["help"]`, so a
parameter never has two defaults or goes missing from one entry point. Callers override defaults explicitly
(e.g. an asset's larger training budget) or leave fields out that they set themselves (the dataset of a
per-dataset asset).
"""
from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any, Iterable


def field_types(cls: type) -> dict[str, tuple[type, bool]]:
    """{field: (base type, optional)} with `X | None` unwrapped (annotations are strings under PEP 563)."""
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        args = typing.get_args(tp)
        optional = (typing.get_origin(tp) in (typing.Union, types.UnionType)) and type(None) in args
        if optional:
            tp = next(a for a in args if a is not type(None))
        out[f.name] = (tp, optional)
    return out


def field_default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return dataclasses.MISSING


def config_fields(cls: type, exclude: Iterable[str] = ()) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if f.name not in set(exclude) and not f.metadata.get("internal")]


def add_config_arguments(parser: argparse.ArgumentParser, cls: type, exclude: Iterable[str] = (),
                         defaults: dict[str, Any] | None = None) -> None:
    """One `--field-name` flag per field of `cls` (bools get --x / --no-x), with the dataclass's default and help."""
    types_ = field_types(cls)
    defaults = defaults or {}
    for f in config_fields(cls, exclude):
        tp, optional = types_[f.name]
        default = defaults.get(f.name, field_default(f))
        help_ = f.metadata.get("help", "")
        shown = f"{help_} (default: {default})" if help_ else f"default: {default}"
        flag = "--" + f.name.replace("_", "-")
        kwargs: dict[str, Any] = {"dest": f.name, "default": default, "help": shown}
        if "choices" in f.metadata:
            kwargs["choices"] = f.metadata["choices"]
        if tp is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
        elif typing.get_origin(tp) is tuple:
            parser.add_argument(flag, nargs="+", type=typing.get_args(tp)[0], **kwargs)
        else:
            parser.add_argument(flag, type=tp, **kwargs)


def config_from_arguments(cls: type, args: argparse.Namespace, **fixed: Any) -> Any:
    """An instance of `cls` from the parsed flags (fields without a flag keep their default; `fixed` wins)."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
    for name, (tp, _optional) in field_types(cls).items():
        if typing.get_origin(tp) is tuple and isinstance(values.get(name), list):
            values[name] = tuple(values[name])
    return cls(**{**values, **fixed})
