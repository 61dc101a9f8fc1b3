"""Every field of the domain jobs' config sections (and of the clustering config) is documented."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _undocumented(path: Path, classes: set[str]) -> list[str]:
    tree = ast.parse(path.read_text())
    missing, found = [], set()
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name in classes:
            found.add(node.name)
            body = node.body
            for i, stmt in enumerate(body):
                if isinstance(stmt, ast.AnnAssign):
                    nxt = body[i + 1] if i + 1 < len(body) else None
                    if not (isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                            and isinstance(nxt.value.value, str) and nxt.value.value.strip()):
                        missing.append(f"{node.name}.{stmt.target.id}")
    assert found == classes, f"classes not found in {path}: {classes - found}"
    return missing


@pytest.mark.parametrize("path, classes", [
    ("launch/config_domains.py", {"SplitConfig", "CPTConfig"}),
    ("data/cluster.py", {"ClusterConfig"}),
    ("data/config.py", {"DataConfig"}),
])
def test_every_field_has_a_docstring(path, classes):
    assert _undocumented(ROOT / path, classes) == []


def test_sections_are_in_the_schema_and_outside_other_jobs_identity():
    from omegaconf import OmegaConf

    from asymptote.launch.config import RunConfig
    from asymptote.launch.run_dir import config_hash

    cfg = OmegaConf.to_container(OmegaConf.structured(RunConfig()), resolve=False)
    assert cfg["split"]["base_tokens"] == 0 and cfg["cpt"]["replay_fraction"] == 0.0
    changed = dict(cfg, split=dict(cfg["split"], cluster="c3"), cpt=dict(cfg["cpt"], base="x"))
    assert config_hash(changed) == config_hash(cfg)  # a pretrain run ignores both sections
    changed["job"], cfg["job"] = "split", "split"
    assert config_hash(changed) != config_hash(cfg)
