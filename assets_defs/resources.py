"""Resources: the project settings, resolved from the settings file and MORPHABLE_* variables."""
from __future__ import annotations

import dagster as dg

from pipelines.settings import Settings, load_settings


class SettingsResource(dg.ConfigurableResource):
    """Where every dataset, body model and store lives. Empty `settings_file` = $MORPHABLE_SETTINGS,
    ./morphable.toml, or the embedded default (the synthetic stand-in)."""

    settings_file: str = ""

    def load(self) -> Settings:
        return load_settings(self.settings_file or None)
