"""Study points composed as asymptote-train composes them: typed, derived, checked, and placed in
their content-addressed run folders (launch/run_dir.py) or their jobs' output folders.

Composition goes through launch/app/points.py (Hydra once per base, value overrides on it), so a
study point's folder is exactly the folder `asymptote-train <the same overrides>` writes.
"""

from __future__ import annotations

from ..app.points import SweepPoint


class Placer:
    """Composes points inside one Hydra context; use as a context manager."""

    def __init__(self):
        self._context = None
        self._composer = None
        self._cache: dict[tuple[str, ...], SweepPoint] = {}

    def __enter__(self) -> "Placer":
        from hydra import compose, initialize_config_module

        from ..app.plan import config_groups
        from ..app.points import PointComposer
        from ..app.register import register_all

        register_all()
        self._context = initialize_config_module("asymptote.launch.conf", version_base="1.3")
        self._context.__enter__()

        def load(overrides):
            return compose("config", overrides=list(overrides), return_hydra_config=True)

        self._composer = PointComposer(load, config_groups())
        return self

    def __exit__(self, *exc) -> None:
        self._context.__exit__(*exc)

    def place(self, batch: list[list[str]]) -> list[SweepPoint]:
        """The composed points of `batch` (each a list of overrides), in order; ConfigError
        listing every invalid point otherwise. Points seen before come from a cache."""
        keys = [tuple(o) for o in batch]
        new = list(dict.fromkeys(k for k in keys if k not in self._cache))
        if new:
            for key, point in zip(new, self._composer.points([list(k) for k in new])):
                self._cache[key] = point
        return [self._cache[k] for k in keys]
