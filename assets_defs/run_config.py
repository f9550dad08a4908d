"""Dagster run config generated from the stages' config dataclasses (pipelines.params): the launchpad shows the same
fields, defaults and help texts as the CLI. An asset overrides a default explicitly (a larger training budget) or
leaves out the fields it sets itself (the dataset of a per-dataset checkpoint)."""
from __future__ import annotations

import typing
from typing import Any, Iterable, Optional

import dagster as dg
import pydantic

from pipelines.params import config_fields, field_default, field_types


def dagster_config(cls: type, name: str, exclude: Iterable[str] = (), defaults: dict[str, Any] | None = None,
                   extra: dict[str, tuple[type, Any, str]] | None = None) -> type[dg.Config]:
    """A `dg.Config` class with one field per dataclass field (tuples become lists) plus `extra` fields."""
    types_ = field_types(cls)
    defaults = defaults or {}
    fields: dict[str, Any] = {}
    for f in config_fields(cls, exclude):
        tp, optional = types_[f.name]
        if typing.get_origin(tp) is tuple:
            tp = list[typing.get_args(tp)[0]]
        default = defaults.get(f.name, field_default(f))
        if isinstance(default, tuple):
            default = list(default)
        fields[f.name] = (Optional[tp] if optional else tp,
                          pydantic.Field(default, description=f.metadata.get("help")))
    for key, (tp, default, help_) in (extra or {}).items():
        fields[key] = (tp, pydantic.Field(default, description=help_))
    model = pydantic.create_model(name, __base__=dg.Config, **fields)
    model.__doc__ = (cls.__doc__ or "").strip() or None
    return model
