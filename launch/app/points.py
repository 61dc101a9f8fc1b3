"""The points of a sweep, composed, typed, derived and checked before anything is launched or
submitted; each knows what its job produces."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from .. import jobs
from ..config import RunConfig
from ..errors import ConfigError


@dataclass
class SweepPoint:
    """One point of a sweep: its overrides, its typed config and what its job produces."""

    index: int
    overrides: list[str]
    config: RunConfig
    outputs: jobs.Outputs

    @property
    def run_dir(self) -> Path:
        """The folder the point's job writes (its run folder, or an output folder)."""
        return self.outputs.folder

    @property
    def world(self) -> int:
        """Ranks of this run (tp x pp x dp)."""
        p = self.config.parallel
        return p.tp * p.pp * p.dp


def run_part(cfg: DictConfig) -> DictConfig:
    """The run's own config (everything but the `hydra` node), resolved."""
    body = OmegaConf.create({k: v for k, v in cfg.items() if k != "hydra"})
    OmegaConf.resolve(body)
    return body


def _label(index: int, overrides: list[str]) -> str:
    return f"sweep point #{index} ({' '.join(overrides) or 'no overrides'})"


def resolve_point(cfg: DictConfig, index: int, overrides: list[str]) -> SweepPoint:
    """Type, derive, check and place one composed point; ConfigError lists all its problems."""
    label = _label(index, overrides)
    try:
        typed = jobs.typed(run_part(cfg))
    except ConfigError as exc:
        raise ConfigError(f"{label}: {exc}") from None
    except Exception as exc:  # OmegaConf validation of a typed field, a missing key...
        raise ConfigError(f"{label}: {type(exc).__name__}: {exc}") from None
    problems = []
    try:
        typed = jobs.derive(typed)
    except ConfigError as exc:
        problems.append(str(exc))
    problems += jobs.check_config(typed)
    if problems:
        raise ConfigError(f"{label}:\n      - " + "\n      - ".join(
            p.replace("\n", "\n        ") for p in dict.fromkeys(problems)))
    return SweepPoint(index, list(overrides), typed, jobs.outputs(typed))


def check_all(points: list[SweepPoint], errors: list[str]) -> None:
    """Refuse the whole sweep when any point is invalid (all problems listed at once) or two
    points would write the same outputs."""
    seen: dict[tuple, int] = {}
    for p in points:
        key = (p.outputs.folder, p.outputs.record, p.outputs.files)
        if key in seen:
            errors.append(f"sweep points #{seen[key]} and #{p.index} compute the same run "
                          f"({p.run_dir.name}); drop the duplicate or vary a seed")
        seen[key] = p.index
    if errors:
        shown = errors[:10] + ([f"... and {len(errors) - 10} more"] if len(errors) > 10 else [])
        raise ConfigError(f"nothing was launched: {len(errors)} problem(s) in the sweep:\n  - "
                          + "\n  - ".join(shown))


def compose_points(load_config, job_overrides, initial_index: int = 0) -> list[SweepPoint]:
    """Every point of a batch of a sweep, checked. `load_config(overrides)` composes one."""
    points, errors = [], []
    for i, overrides in enumerate(job_overrides):
        try:
            cfg = load_config(list(overrides))
        except Exception as exc:  # Hydra: a misspelt key, a group option that does not exist
            errors.append(f"{_label(initial_index + i, list(overrides))}: "
                          f"{type(exc).__name__}: {exc}")
            continue
        try:
            points.append(resolve_point(cfg, initial_index + i, list(overrides)))
        except ConfigError as exc:
            errors.append(str(exc))
    check_all(points, errors)
    return points
