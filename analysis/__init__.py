"""asymptote.analysis: TensorBoard ingest of whole sweeps, scaling-law fits with intervals,
best-run certificates, data efficiency, optimal split, plots. Never imports torch.

The main entry points are imported lazily (``asymptote analyze --help`` stays fast):

- :func:`asymptote.analysis.report.analyze_sweep` -> :class:`~asymptote.analysis.report.Report`
- :func:`asymptote.analysis.ingest.load_sweep` -> :class:`~asymptote.analysis.ingest.SweepData`
- :func:`asymptote.analysis.fit.fit`, :func:`asymptote.analysis.bootstrap.bootstrap` (import them
  from their modules: ``fit`` and ``bootstrap`` are also module names here)
- :func:`asymptote.analysis.laws.law` (register a user-defined form)
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "analyze_sweep": "report", "Report": "report", "load_sweep": "ingest", "SweepData": "ingest",
    "FitResult": "fit", "law": "laws", "get_law": "laws", "AnalysisError": "errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    """Import an exported name's module on first use."""
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
