"""The study YAML: presets load and validate; every bad input is refused on load, with the key
named and the fix said, before anything is composed, run or submitted."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from asymptote.launch.study import spec as spec_module
from asymptote.launch.study.errors import StudyError
from asymptote.launch.study.spec import load_spec, model_size, presets

PAPER_DATA = ["run.corpus=[/data/dclm.jsonl]", "run.tokenizer=/models/llama3/tokenizer.json"]


def refused(*overrides: str, source: str = "miniature") -> str:
    with pytest.raises(StudyError) as info:
        load_spec(source, list(overrides))
    return str(info.value)


def test_presets_exist_and_the_miniature_is_in_the_overfitting_regime():
    assert {"miniature", "paper"} <= set(presets())
    s = load_spec("miniature")
    assert len(s.models) >= 4 and "tiny_m" in s.models
    assert s.seed_tokens == [32768] and s.run.corpus == ["shipped"]
    assert s.standard.weight_decay == 0.1 and 16 in s.standard.epochs
    assert len(s.standard_tokens) >= 3 and 32768 in s.standard_tokens  # L(D) for efficiency
    assert 16 in s.regularized.epochs.grid
    assert max(s.regularized.weight_decay.grid) >= 8 * s.standard.weight_decay
    assert len(s.regularized.epochs.grid) * len(s.regularized.lr.grid) \
        * len(s.regularized.weight_decay.grid) <= s.regularized.max_runs
    sizes = [model_size(m) for m in s.models]
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes)
    assert model_size(s.teacher) >= max(model_size(x) for x in s.distill.students)
    assert s.launcher.kind == "local"


def test_paper_preset_has_the_papers_grids_and_needs_your_corpus():
    message = refused(source="paper")
    assert "run.corpus must be given" in message and "run.tokenizer must be given" in message
    s = load_spec("paper", PAPER_DATA)
    g = s.regularized
    assert g.lr.grid == [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2] and g.lr.spacing == "half_decade"
    assert g.weight_decay.grid == [0, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4]
    assert g.epochs.grid == [1, 2, 4, 8, 16, 32, 64] and g.epochs.min == 1
    assert g.max_runs >= 6 * 8 * 7
    assert s.models == ["150m", "300m", "600m", "1_4b"] and s.seed_tokens[0] == 209715200
    assert s.ensemble.k_max == 8 and s.ensemble.recipe == "paper_rule"
    assert s.launcher.kind == "slurm"


def test_unknown_keys_are_named_with_the_valid_ones_and_a_close_match():
    message = refused("modles=[tiny]")
    assert "unknown key 'modles'" in message and "did you mean 'models'?" in message
    assert "valid keys: name, out, seed_tokens, models" in message
    nested = refused("regularized.lr.spacingg=double")
    assert "unknown key 'regularized.lr.spacingg'" in nested and "'spacing'" in nested
    assert "valid keys of regularized.lr: grid, spacing, min, max" in nested


def test_empty_grids_are_refused():
    assert "seed_tokens is empty" in refused("seed_tokens=[]")
    assert "models is empty" in refused("models=[]")
    assert "regularized.weight_decay.grid is empty" in refused("regularized.weight_decay.grid=[]")
    assert "standard.epochs is empty" in refused("standard.epochs=[]")
    assert load_spec("miniature", ["standard.seed_tokens=[]"]).standard_tokens == [32768]


def test_ensemble_models_must_be_sizes_of_the_study_and_hold_the_teacher():
    assert "['tiny_xl'] not in models" in refused("ensemble.models=[tiny,tiny_xl]")
    assert "ensemble.models []: empty" in refused("ensemble.models=[]")
    message = refused("ensemble.models=[tiny_s]", "distill.teacher=tiny_m")
    assert "the teacher 'tiny_m' is not in ensemble.models ['tiny_s']" in message
    assert load_spec("miniature", ["ensemble.models=[tiny]"]).ensemble_models == ["tiny"]


def test_a_student_larger_than_its_teacher_is_refused():
    message = refused("distill.students=[tiny_l]", "distill.teacher=tiny_m")
    assert "'tiny_l'" in message and "larger than the teacher 'tiny_m'" in message
    # The default teacher is the largest size: a student may equal it.
    assert load_spec("miniature", ["distill.teacher=null", "distill.students=[tiny_l]"]).teacher \
        == "tiny_l"
    assert "not one of models" in refused("distill.teacher=tiny_xl")


def test_a_budget_smaller_than_one_grid_is_refused():
    message = refused("regularized.max_runs=2")
    assert "regularized.max_runs=2 is smaller than one grid" in message
    assert "= 3 runs per cell" in message


def test_unknown_model_presets_are_refused_with_a_suggestion():
    message = refused("models=[tiny_s,tiny_mm]")
    assert "'tiny_mm' is not a model preset" in message and "did you mean 'tiny_m'?" in message
    assert "'tyni' is not a model preset" in refused("distill.students=[tyni]")


def test_values_no_run_could_use():
    assert "whole number" in refused("regularized.epochs.grid=[1.5]")
    assert "must be > 0" in refused("standard.lr=[0.0]")
    assert "repeats a value" in refused("seed_tokens=[65536,65536]")
    assert "needs at least 3 ensemble sizes" in refused("ensemble.k_max=2")
    assert "did you mean 'half_decade'" in refused("regularized.lr.spacing=half_decades")
    assert "not in the D grid" in refused("distill.seed_tokens=1000")
    assert "must be in [0, 1)" in refused("distill.sequence.weights=[1.0]")
    assert "run.global_batch: Value 'many'" in refused("run.global_batch=many")
    assert "launcher.kind='pbs'" in refused("launcher.kind=pbs")
    assert "not a finite number" in refused("standard.lr=[.inf]")
    owned = refused("run.overrides=[optim.lr=0.1,parallel.tp=1,ensemble.k_max=2]")
    assert "['optim.lr=0.1', 'ensemble.k_max=2'] set keys the study sets itself" in owned
    assert load_spec("miniature", ["run.overrides=[parallel.tp=1,optim.beta2=0.99]"])


def test_every_problem_is_listed_at_once():
    message = refused("models=[]", "regularized.max_runs=1", "ensemble.k_max=1")
    assert "3 problem(s)" in message


def test_a_study_file_builds_on_a_preset(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("base: miniature\nout: /scratch/s\nmodels: [tiny, tiny_m, tiny_l]\n"
                    "regularized:\n  max_runs: 40\n")
    s = load_spec(path)
    assert s.out == "/scratch/s" and s.models == ["tiny", "tiny_m", "tiny_l"]
    assert s.regularized.max_runs == 40 and s.regularized.lr.grid == [3e-3]  # rest of the preset
    assert load_spec(path, ["out=/x"]).out == "/x"
    bad = tmp_path / "bad.yaml"
    bad.write_text("base: miniature\nstandard:\n  weigth_decay: 0.2\n")
    message = str(pytest.raises(StudyError, load_spec, bad).value)
    assert str(bad) in message and "'standard.weigth_decay'" in message
    assert "did you mean 'weight_decay'?" in message
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    assert "mapping" in str(pytest.raises(StudyError, load_spec, tmp_path / "list.yaml").value)
    missing = str(pytest.raises(StudyError, load_spec, "minature").value)
    assert "neither a study YAML file nor a preset" in missing and "'miniature'" in missing


def test_every_field_of_the_schema_has_a_docstring():
    tree = ast.parse(Path(spec_module.__file__).read_text())
    undocumented = []
    for cls in (n for n in tree.body if isinstance(n, ast.ClassDef)):
        body = cls.body
        for i, node in enumerate(body):
            if isinstance(node, ast.AnnAssign):
                nxt = body[i + 1] if i + 1 < len(body) else None
                if not (isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                        and isinstance(nxt.value.value, str)):
                    undocumented.append(f"{cls.name}.{node.target.id}")
    assert undocumented == []
