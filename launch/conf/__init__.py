"""Hydra config tree of asymptote-train (YAML presets; the schema is launch/config.py)."""
