"""The points of a sweep, composed and validated before anything is launched or submitted."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from .config import RunConfig
from .run_dir import RunDir
from .validate import ConfigError, validate


@dataclass
class SweepPoint:
    """One point of a sweep: its overrides, where its run lives, and its typed config."""

    index: int
    overrides: list[str]
    run_dir: Path
    config: RunConfig

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


def resolve_point(cfg: DictConfig, index: int, overrides: list[str]) -> SweepPoint:
    """Type, validate and place one composed point; ConfigError names the point."""
    from .jobs import prepare_config
    from .train import to_run_config

    try:
        body = prepare_config(run_part(cfg))  # as launch() does, so the folder name matches
        run_cfg = to_run_config(body)
        validate(run_cfg)
    except ConfigError as exc:
        detail = str(exc).replace("\n  - ", "\n      - ")
        raise ConfigError(f"sweep point #{index} ({' '.join(overrides) or 'no overrides'}): "
                          f"{detail}") from None
    except Exception as exc:  # OmegaConf validation of a typed field, a missing key...
        raise ConfigError(f"sweep point #{index} ({' '.join(overrides) or 'no overrides'}): "
                          f"{type(exc).__name__}: {exc}") from None
    run_dir = RunDir.for_config(OmegaConf.to_container(body)).root
    return SweepPoint(index, list(overrides), run_dir.resolve(), run_cfg)


def check_all(points: list[SweepPoint], errors: list[str]) -> None:
    """Refuse the whole sweep when any point is invalid (all problems listed at once) or two
    points would share a run folder."""
    seen: dict[Path, int] = {}
    for p in points:
        if p.run_dir in seen:
            errors.append(f"sweep points #{seen[p.run_dir]} and #{p.index} compute the same run "
                          f"({p.run_dir.name}); drop the duplicate or vary a seed")
        seen[p.run_dir] = p.index
    if errors:
        shown = errors[:10] + ([f"... and {len(errors) - 10} more"] if len(errors) > 10 else [])
        raise ConfigError(f"nothing was launched: {len(errors)} problem(s) in the sweep:\n  - "
                          + "\n  - ".join(shown))


def compose_points(load_config, job_overrides, initial_index: int = 0) -> list[SweepPoint]:
    """Every point of a batch of a sweep, validated. `load_config(overrides)` composes one."""
    points, errors = [], []
    for i, overrides in enumerate(job_overrides):
        try:
            points.append(resolve_point(load_config(list(overrides)), initial_index + i,
                                        list(overrides)))
        except ConfigError as exc:
            errors.append(str(exc))
    check_all(points, errors)
    return points
