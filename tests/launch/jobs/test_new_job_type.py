"""A job type is one module and one YAML: a new one, written here into a folder of
$ASYMPTOTE_JOBS_PATH, runs through the launcher, is checked before it starts, and appears in
manifest.json and `asymptote status`, without touching any file of the package."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

TOY_MODULE = textwrap.dedent('''
    """job=toy: writes one number into its run folder (a test's job type)."""

    from dataclasses import dataclass, field

    from asymptote.launch.config import RunConfig, to_dict
    from asymptote.launch.run_dir import RunDir


    @dataclass
    class ToyConfig:
        """The toy's section."""

        value: float = 1.0
        """The number it writes; must be >= 0."""


    @dataclass
    class Config(RunConfig):
        """The shared config plus the toy's section."""

        toy: ToyConfig = field(default_factory=ToyConfig)
        """The toy's own settings."""


    def check(cfg, world=None):
        return [] if cfg.toy.value >= 0 else [f"toy.value={cfg.toy.value} must be >= 0"]


    def run(cfg):
        run = RunDir.for_config(to_dict(cfg))
        final = {"val_loss": cfg.toy.value}
        run.update(name=run.root.name, job="toy", status="done", config=to_dict(cfg), step=1,
                   steps=1, final=final)
        return final
''')

TOY_YAML = "# @package _global_\njob: toy\ntoy:\n  value: 2.0\n"


@pytest.fixture
def toy_env(tmp_path) -> dict:
    folder = tmp_path / "jobs"
    folder.mkdir()
    (folder / "toy.py").write_text(TOY_MODULE)
    (folder / "toy.yaml").write_text(TOY_YAML)
    env = dict(os.environ, ASYMPTOTE_JOBS_PATH=str(folder), OMP_NUM_THREADS="1")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT", "MASTER_ADDR"):
        env.pop(key, None)
    return env


def _run(env, *args, module="asymptote.launch.app.main"):
    return subprocess.run([sys.executable, "-m", module, *args], env=env, capture_output=True,
                          text=True, timeout=300)


def test_a_new_job_type_runs_through_launcher_manifest_and_status(toy_env, tmp_path):
    out = tmp_path / "runs"
    done = _run(toy_env, "-m", "job=toy", "toy.value=0.5,1.5", f"out={out}")
    assert done.returncode == 0, done.stderr[-3000:]
    runs = sorted(p.parent for p in out.glob("*/run.json"))
    assert [json.loads((r / "run.json").read_text())["final"]["val_loss"] for r in runs] \
        == [0.5, 1.5]
    assert all(r.name.startswith("toy-tiny-") for r in runs)
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(manifest["runs"]) == [r.name for r in runs]
    status = _run(toy_env, "status", str(out), "--json", module="asymptote.launch.app.cli")
    assert status.returncode == 0, status.stderr
    assert [p["state"] for p in json.loads(status.stdout)["points"]] == ["DONE", "DONE"]
    # The YAML's default applies, and the section is the toy's only.
    single = _run(toy_env, "job=toy", f"out={tmp_path / 'single'}")
    assert single.returncode == 0, single.stderr[-3000:]
    (record,) = (tmp_path / "single").glob("*/run.json")
    assert json.loads(record.read_text())["final"]["val_loss"] == 2.0


def test_a_new_job_type_is_checked_before_anything_runs(toy_env, tmp_path):
    out = tmp_path / "runs"
    bad = _run(toy_env, "-m", "job=toy", "toy.value=1,-1,-2", f"out={out}")
    assert bad.returncode != 0
    assert "nothing was launched: 2 problem(s)" in bad.stderr
    assert "toy.value=-1.0 must be >= 0" in bad.stderr and "toy.value=-2.0" in bad.stderr
    assert not list(out.glob("*/run.json"))
    # Without the jobs folder the job does not exist, and the message lists the known ones.
    env = {k: v for k, v in toy_env.items() if k != "ASYMPTOTE_JOBS_PATH"}
    unknown = _run(env, "job=toy", f"out={out}")
    assert unknown.returncode != 0 and "job" in unknown.stderr and "pretrain" in unknown.stderr


def test_other_jobs_sections_do_not_exist(tmp_path):
    from asymptote.launch.app.register import compose

    cfg = compose(["job=pretrain"], return_hydra_config=False)
    assert "distill" not in cfg and "split" not in cfg and cfg.job == "pretrain"
    cfg = compose(["job=distill", "distill.mode=logit"], return_hydra_config=False)
    assert cfg.distill.mode == "logit" and "cpt" not in cfg
    with pytest.raises(Exception, match="distill"):
        compose(["job=pretrain", "distill.mode=logit"], return_hydra_config=False)


def _undocumented(path: Path) -> list[str]:
    """Dataclass fields of `path` without a docstring right after them."""
    import ast

    missing = []
    for node in ast.parse(path.read_text()).body:
        if not isinstance(node, ast.ClassDef) or not any(
                getattr(d, "id", None) == "dataclass" for d in node.decorator_list):
            continue
        for i, stmt in enumerate(node.body):
            if isinstance(stmt, ast.AnnAssign):
                nxt = node.body[i + 1] if i + 1 < len(node.body) else None
                if not (isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                        and isinstance(nxt.value.value, str) and nxt.value.value.strip()):
                    missing.append(f"{path.name}:{node.name}.{stmt.target.id}")
    return missing


def test_every_config_field_is_documented():
    root = Path(__file__).resolve().parents[3]
    paths = [root / "launch" / "config.py", root / "models" / "config.py",
             root / "data" / "config.py", root / "data" / "cluster.py",
             *sorted((root / "launch" / "jobs").glob("*.py"))]
    missing = [m for p in paths for m in _undocumented(p)]
    assert missing == []


def test_every_job_has_a_yaml_a_config_and_a_run():
    from asymptote.launch import jobs

    names = jobs.known()
    assert {"pretrain", "ensemble_member", "ensemble_eval", "generate", "distill", "split", "cpt",
            "evaluate"} <= set(names)
    for name in names:
        job = jobs.get(name)
        assert job.yaml.is_file() and callable(job.module.run) and callable(job.module.check)
