"""`job=pretrain`: train a model from scratch on the D seed tokens for E epochs.

    asymptote-train model=tiny data.seed_tokens=262144 train.epochs=4
"""

from __future__ import annotations

from ..config import RunConfig

Config = RunConfig
"""Pretraining has no section of its own: the shared RunConfig is its whole config."""


def check(cfg: RunConfig, world: int | None = None) -> list[str]:
    """Nothing beyond the shared checks (launch/checks.py)."""
    return []


def run(cfg: RunConfig) -> dict:
    """Train on this rank."""
    from ..train.trainer import run_training

    return run_training(cfg)
