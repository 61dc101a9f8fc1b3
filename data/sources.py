"""Where a run's tokens come from: the prepared-data cache (`data.corpus`), or a prepared folder
(`data.prepared`, e.g. written by `asymptote data cluster`), optionally one domain of it
(`data.train_domain`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .config import DataConfig
from .prepare import PreparedData, prepare


class DataSourceError(ValueError):
    """A data source that cannot be used as configured; the message says what to change."""


@dataclass
class DomainData(PreparedData):
    """A prepared folder whose training set is one domain's documents (or the whole mixture)."""

    train_domain: Optional[str] = None

    @property
    def train_prefix(self) -> str:
        """`train_<domain>` when a domain is selected, else the mixture `train`."""
        return str(self.root / (f"train_{self.train_domain}" if self.train_domain else "train"))


def load_prepared(folder: str | Path, train_domain: str | None = None) -> DomainData:
    """Open a prepared folder (manifest.json, tokenizer.json, train*.bin/.idx, val_*.bin/.idx)."""
    from .tokenizer import Tokenizer

    root = Path(folder).expanduser()
    manifest_path = root / "manifest.json"
    if not manifest_path.is_file():
        raise DataSourceError(
            f"data.prepared={folder!s}: not a prepared-data folder (no manifest.json); give the "
            "--out folder of a finished `asymptote data cluster`")
    manifest = json.loads(manifest_path.read_text())
    if train_domain is not None:
        domains = sorted(manifest.get("train_tokens", {}))
        if train_domain not in domains or not (root / f"train_{train_domain}.idx").is_file():
            raise DataSourceError(
                f"data.train_domain={train_domain!r} is not a domain of {root}; it has "
                f"{', '.join(domains)}")
    return DomainData(root, Tokenizer.load(root / "tokenizer.json"), manifest, train_domain)


def prepare_data(cfg: DataConfig, val_tokens_per_domain: int, progress: bool = True) -> PreparedData:
    """The prepared data of a run's data config (see the module docstring)."""
    if cfg.prepared:
        return load_prepared(cfg.prepared, cfg.train_domain)
    if cfg.train_domain:
        raise DataSourceError(
            f"data.train_domain={cfg.train_domain!r} needs data.prepared (a folder written by "
            "`asymptote data cluster`, which keeps one training set per domain)")
    return prepare(cfg, val_tokens_per_domain, progress)
