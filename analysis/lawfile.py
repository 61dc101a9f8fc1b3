"""Load user-defined laws from Python files (``--law-file``): the file registers them on import."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Sequence

from .errors import AnalysisError


def load_law_files(paths: Sequence[str]) -> list[str]:
    """Execute each file (which calls :func:`asymptote.analysis.laws.law`); returns the law names
    registered by them."""
    from .laws import LAWS

    before = set(LAWS)
    for i, path in enumerate(paths):
        p = Path(path)
        if not p.is_file():
            raise AnalysisError(f"law file not found: {path}")
        spec = importlib.util.spec_from_file_location(f"asymptote_user_laws_{i}_{p.stem}", p)
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            raise AnalysisError(f"law file {path} failed to load: {exc.__class__.__name__}: {exc}") from exc
    return sorted(set(LAWS) - before)
