"""The README documents every setting and every metric the exporter has."""

from __future__ import annotations

from pathlib import Path

from exporter.metrics import METRIC_NAMES
from exporter.settings import Settings, env_name

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_every_setting_is_documented() -> None:
    for name in Settings.model_fields:
        assert f"`{env_name(name)}`" in README, name
        assert "`--" + name.replace("_", "-") + "`" in README, name


def test_every_metric_is_documented() -> None:
    for name in METRIC_NAMES:
        assert f"`{name}`" in README, name
