"""The error of a study that cannot work, raised before anything runs or is submitted."""

from __future__ import annotations

from ..errors import ConfigError


class StudyError(ConfigError):
    """A study YAML (or its presets and overrides) that cannot work; the message names the fix."""
