"""Model size presets. The YAML files in launch/conf/model/ are the single source of truth."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from .config import ModelConfig

PRESET_DIR = Path(__file__).resolve().parent.parent / "launch" / "conf" / "model"


def preset_names() -> list[str]:
    """Names of all model presets, e.g. ['150m', '1_4b', ..., 'tiny']."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def load_preset(name: str) -> ModelConfig:
    """The ModelConfig of a preset; unknown names raise a ValueError listing the known ones."""
    path = PRESET_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ValueError(
            f"unknown model preset {name!r}; choose one of {', '.join(preset_names())} "
            f"(or add a YAML file to {PRESET_DIR})"
        )
    schema = OmegaConf.structured(ModelConfig)
    return OmegaConf.to_object(OmegaConf.merge(schema, OmegaConf.load(path)))
