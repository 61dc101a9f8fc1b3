"""Errors of configuration, raised before any work starts."""

from __future__ import annotations


class ConfigError(ValueError):
    """A run config that cannot work; the message names the fix."""


class BaseRunError(ConfigError):
    """A run named as a starting point (a base, teacher or member) cannot serve as asked."""
