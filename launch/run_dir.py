"""A run's folder: its name (readable + config hash), run.json, and the paths inside it."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from .. import atomic

# Keys that do not change what a run computes: a resubmission with other values (another
# layout, cadence or output root) must find the same folder and resume it.
NON_IDENTITY_KEYS = {
    "out", "name", "parallel", "tags",
    "train.eval_every", "train.ckpt_every", "train.keep_checkpoints", "train.log_every",
    "train.keep_at_tokens",
    "train.crash_at_step", "train.max_restarts", "train.peak_flops", "data.cache_dir",
    "data.streaming",
}

# Keys added after run folders existed, with the default that reproduces what runs computed
# before them: a key holding its default is left out of the hash, so those folders keep their
# names (and resume); any other value is part of what the run computes.
LATER_KEYS_DEFAULTS = {
    "model.rope_scaling": None, "model.rope_scaling_factor": 1.0, "model.head_dim": None,
    "model.tie_embeddings": False, "model.qkv_bias": False,
}


def _identity(cfg: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in cfg.items():
        path = f"{prefix}{key}"
        if path in NON_IDENTITY_KEYS:
            continue
        if path in LATER_KEYS_DEFAULTS and value == LATER_KEYS_DEFAULTS[path]:
            continue
        if key == "curate" and isinstance(value, dict) and not value.get("enabled"):
            # A DataConfig's curation (data.curate, cpt.replay.curate) while off, the default,
            # computes nothing: left out, so run folders keep their names from before it existed.
            continue
        out[key] = _identity(value, path + ".") if isinstance(value, dict) else value
    return out


def config_hash(cfg: dict) -> str:
    """8 hex digits identifying what the run computes."""
    blob = json.dumps(_identity(cfg), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:8]


def _short(x: float) -> str:
    return f"{x:g}".replace("e-0", "e-").replace("e+0", "e")


def run_name(cfg: dict, detail: str | None = None) -> str:
    """E.g. `pretrain-tiny-D131072-E2-lr0.003-wd0.1-s0.0-1a2b3c4d`; a job may give its own
    `detail` (e.g. a split run's cluster and token counts) in place of D, E and weight decay."""
    if cfg.get("name"):
        return cfg["name"]
    m, d, t, o, s = cfg["model"], cfg["data"], cfg["train"], cfg["optim"], cfg["seed"]
    if detail is None:
        detail = f"D{d['seed_tokens']}-E{t['epochs']}-lr{_short(o['lr'])}-wd{_short(o['weight_decay'])}"
    else:
        detail = f"{detail}-lr{_short(o['lr'])}"
    return f"{cfg['job']}-{m['name']}-{detail}-s{s['train']}.{s['data']}-{config_hash(cfg)}"


class RunDir:
    """Paths and the run.json record of one run."""

    def __init__(self, root: Path):
        self.root = Path(root)

    @classmethod
    def for_config(cls, cfg: dict) -> "RunDir":
        """The folder `<out>/<name>` of a resolved config."""
        return cls(Path(cfg["out"]).expanduser() / run_name(cfg))

    @property
    def tb(self) -> Path:
        """TensorBoard event folder."""
        return self.root / "tb"

    @property
    def checkpoints(self) -> Path:
        """Checkpoint folder (one subfolder per saved step)."""
        return self.root / "checkpoints"

    @property
    def record_path(self) -> Path:
        """run.json."""
        return self.root / "run.json"

    def read(self) -> dict[str, Any]:
        """run.json as a dict ({} when absent)."""
        try:
            return json.loads(self.record_path.read_text())
        except FileNotFoundError:
            return {}

    def update(self, **fields: Any) -> dict[str, Any]:
        """Merge `fields` into run.json, written atomically (never half a file)."""
        self.root.mkdir(parents=True, exist_ok=True)
        record = self.read()
        record.update(fields)
        record["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        atomic.write_text(self.record_path, json.dumps(record, indent=2, default=str))
        return record
